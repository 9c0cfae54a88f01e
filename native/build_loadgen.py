"""cffi builder of xdpdns's AF_XDP load generator: the extension module
``xdpdns.bench._loadgen``, used by ``xdpdns bench`` only.

Its API is native/bench/xdpgen.h.  The generator drives AF_XDP sockets with
the engine's own socket, ring and XDP-loading code, so the engine's sources
are compiled in here too; the server's extension (build_engine.py) holds
nothing of the generator.
"""

import re
import sys
from pathlib import Path

from cffi import FFI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_engine import NATIVE, _cdef_text, engine_sources, set_source  # noqa: E402


def _engine_block(pattern: str) -> str:
    """A declaration of engine.h the generator's API uses, as cdef text."""
    match = re.search(pattern, (NATIVE / "engine.h").read_text(), re.M | re.S)
    if match is None:
        raise SystemExit(f"native/engine.h: no block matching {pattern!r}")
    return re.sub(r"/\*.*?\*/", "", match.group(0), flags=re.S)


ffibuilder = FFI()
ffibuilder.cdef(
    _engine_block(r"^struct xd_error \{.*?^\};")
    + "\n"
    + _engine_block(r"^enum \{\n\tXD_ZEROCOPY_AUTO.*?^\};")
    + "\n"
    + _cdef_text(NATIVE / "bench" / "xdpgen.h")
)

set_source(
    ffibuilder,
    "xdpdns.bench._loadgen",
    '#include "bench/xdpgen.h"\n',
    engine_sources() + sorted((NATIVE / "bench").glob("*.c")),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
