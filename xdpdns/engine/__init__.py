"""The Python face of the C engine (native/engine.h), one module for each of
its sections; xdpdns.engine._c is the only one that imports the cffi
extension.  Pointers and buffers are hidden behind small classes, negative
errno returns become ``OSError(-rc, message)`` with the engine's own words,
and every C object is freed deterministically (``close()`` or ``with``),
with ``ffi.gc`` as the fallback when one is dropped without being closed.

cffi releases the GIL for the duration of every C call, so Python's callers
(the control socket, the resolver's hook threads) and the native workers
run in parallel.
"""

from xdpdns.engine.image import (  # noqa: F401
    Problem,
    ImageInfo,
    ImageBuilder,
    Image,
    PublishedImage,
    tcp_messages,
    ClientAnswer,
)
from xdpdns.engine.journal import (  # noqa: F401
    JOURNAL_KINDS,
    JournalEvent,
    JournalInfo,
    JournalLimits,
)
from xdpdns.engine.core import (  # noqa: F401
    Engine,
    drop_privileges,
)
from xdpdns.engine.stats import (  # noqa: F401
    WorkerStats,
    TcpStats,
    DnstapStats,
)
from xdpdns.engine.xdp import (  # noqa: F401
    PORT_ACTIONS,
    XdpInfo,
    QueueStats,
    ProgStats,
    AnswerEntry,
    AnswersInfo,
    dispatch_remove,
)
from xdpdns.engine.resolver_rings import (  # noqa: F401
    RESOLVER_AA,
    RESOLVER_RECORDS,
    RESOLVER_WIRE,
    RESOLVER_SERVFAIL,
    RESOLVER_HOOKS_MAX,
    ResolverBatch,
    resolver_query_fields,
)
from xdpdns.engine.policy import (  # noqa: F401
    ACL_ACTIONS,
    ACL_SOCKET_ACTIONS,
    COOKIE_STATES,
    RRL_KINDS,
    RrlEvent,
)
from xdpdns.engine.dnssec import (  # noqa: F401
    SigningKeyInfo,
    SigningReport,
    SigningKey,
    nsec3_label,
)
from xdpdns.engine._c import (  # noqa: F401
    MAX_MESSAGE,
    DEFERRED,
)

__all__ = [
    "ACL_ACTIONS",
    "ACL_SOCKET_ACTIONS",
    "AnswerEntry",
    "AnswersInfo",
    "COOKIE_STATES",
    "ClientAnswer",
    "DEFERRED",
    "DnstapStats",
    "Engine",
    "Image",
    "ImageBuilder",
    "ImageInfo",
    "JOURNAL_KINDS",
    "JournalEvent",
    "JournalInfo",
    "JournalLimits",
    "MAX_MESSAGE",
    "PORT_ACTIONS",
    "Problem",
    "ProgStats",
    "PublishedImage",
    "QueueStats",
    "RESOLVER_AA",
    "RESOLVER_HOOKS_MAX",
    "RESOLVER_RECORDS",
    "RESOLVER_SERVFAIL",
    "RESOLVER_WIRE",
    "RRL_KINDS",
    "ResolverBatch",
    "RrlEvent",
    "SigningKey",
    "SigningKeyInfo",
    "SigningReport",
    "TcpStats",
    "WorkerStats",
    "XdpInfo",
    "dispatch_remove",
    "drop_privileges",
    "nsec3_label",
    "resolver_query_fields",
    "tcp_messages",
]
