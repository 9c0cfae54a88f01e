"""The data that plugins and xdpdns pass through the hooks of
xdpdns.hookspecs: zone sources, ACL rules, overrides, cookie secrets, rate
limiting settings, resolver claims, queries and answers, with the checks
each makes of itself.  xdpdns.hookspecs re-exports every name, so plugins
import them from either module."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, Union

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataset
import dns.rdatatype

from xdpdns.tsig import KeyRule

if TYPE_CHECKING:
    from xdpdns.config import Where


@dataclass(frozen=True)
class ConfigSection:
    """A ``[plugins.NAME]`` section of the configuration that a plugin owns.

    ``parse(table, where)`` turns the section's TOML table (an empty one when
    the file has no such section) into a frozen dataclass, the only form in
    which the plugin sees its configuration afterwards
    (``config.plugins[NAME]``).  It raises :class:`xdpdns.config.ConfigError`
    through ``where.error(key, expected, value)`` for unknown keys and bad
    values; :func:`xdpdns.config.parse_table` does that for plain dataclasses.
    """

    name: str
    parse: Callable[[Mapping[str, Any], "Where"], Any]


DEFAULT_TTL = 3600
ZONE_ACL_KINDS = ("query", "transfer")


@dataclass(frozen=True)
class ZoneAcl:
    """Who may query a zone and who may transfer it: the ``allow_query``,
    ``deny_query``, ``allow_transfer`` and ``deny_transfer`` keys of a
    ``[[zone]]`` table, compiled into the image with the zone.

    In each list the longest prefix holding a client decides.  A client no
    prefix holds may query unless ``allow_query`` names prefixes (as BIND's
    allow-query: given, it is the list of who is answered), and may transfer
    only when ``allow_transfer`` holds it (as Knot: no transfer without a
    rule that allows it).  A denied query gets REFUSED from the answering
    core.  An allowed client gets the zone by AXFR (or IXFR, answered with
    the whole zone) over TCP (native/io/tcp.c, native/answer/axfr.c); a denied one
    REFUSED with EDE 18 (Prohibited).  The lookup is
    :meth:`xdpdns.engine.Image.zone_allows`.
    """

    allow_query: tuple["Prefix", ...] = ()
    deny_query: tuple["Prefix", ...] = ()
    # Transfer lists may also hold requests signed with a TSIG key alone
    # (xdpdns.tsig.KeyRule): a keyed entry is matched before a plain
    # prefix as long as its own.
    allow_transfer: tuple["Prefix | KeyRule", ...] = ()
    deny_transfer: tuple["Prefix | KeyRule", ...] = ()

    @property
    def configured(self) -> bool:
        """False for a zone with no prefixes at all: the image then holds no
        ACL for it, and its queries pay nothing for the feature."""
        return any((self.allow_query, self.deny_query, self.allow_transfer, self.deny_transfer))

    def rules(self, kind: str) -> list[tuple]:
        """The (prefix, "allow" | "deny") pairs of list ``kind`` ("query"
        or "transfer"), and (prefix, action, key name) triples for its
        keyed entries: what ImageBuilder.set_zone_acl takes."""
        out: list[tuple] = []
        for action in ("allow", "deny"):
            for entry in getattr(self, f"{action}_{kind}"):
                if isinstance(entry, KeyRule):
                    out += [(p, action, entry.key.name) for p in entry.prefixes()]
                else:
                    out.append((entry, action))
        return out

    def default(self, kind: str) -> str:
        """What a client no prefix of list ``kind`` holds gets."""
        if kind == "query":
            return "deny" if self.allow_query else "allow"
        return "deny"


@dataclass(frozen=True)
class ZoneSigning:
    """Signing a zone on load (issue 12; native/zone/zone_sign.c): the keys' file
    bases (BASE.key and BASE.private, as dnssec-keygen and keymgr write
    them), NSEC3 (RFC 9276 parameters) or NSEC, how long signatures are
    valid, and how long before they expire the zone is signed again."""

    keys: tuple[Path, ...]
    nsec3: bool = False
    validity: int = 14 * 86400  # seconds (Knot's rrsig-lifetime)
    refresh: int = 7 * 86400  # seconds before expiry (Knot's rrsig-refresh)


@dataclass(frozen=True)
class ZoneFile:
    """A master file (RFC 1035) to compile natively, with $INCLUDE and $GENERATE."""

    origin: dns.name.Name
    path: Path
    default_ttl: int = DEFAULT_TTL
    acl: ZoneAcl = ZoneAcl()
    signing: ZoneSigning | None = None  # None: served as the file is


@dataclass(frozen=True)
class ZoneData:
    """Records as dnspython objects: (owner name, rdataset) pairs.

    Names may be relative to ``origin``.  ``description`` names the data in
    problem reports (in place of a file name), e.g. "database zones".
    """

    origin: dns.name.Name
    records: Iterable[tuple[dns.name.Name, dns.rdataset.Rdataset]]
    description: str = ""
    acl: ZoneAcl = ZoneAcl()
    signing: ZoneSigning | None = None


# What the zone_sources hook returns a sequence of.
ZoneSource = Union[ZoneFile, ZoneData]


@dataclass(frozen=True)
class Identity:
    """What the server says about itself, compiled into the zone image: the
    TXT answers to CHAOS-class queries for version.bind and version.server,
    hostname.bind and id.server, and the EDNS NSID option (RFC 5001) sent to
    queries that ask for it.  None hides an item (REFUSED; no NSID).  Each
    is at most 255 bytes (a TXT character-string)."""

    version: bytes | None = None
    hostname: bytes | None = None
    id: bytes | None = None
    nsid: bytes | None = None


# The prefixes an address rule covers.
Prefix = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
ADDRESS_ACTIONS = ("allow", "deny")
SOCKET_ACTIONS = ("refuse", "drop")


@dataclass(frozen=True)
class AddressRule:
    """A source address rule: queries from ``prefix`` are allowed or denied.

    Of all rules (from every plugin), the longest prefix that holds a source
    decides; a source no prefix holds gets :attr:`AddressPolicy.default`.
    In XDP mode a denied source's UDP queries are dropped by the XDP program
    before any copy; in socket mode (and over TCP) they get REFUSED or are
    dropped, as :attr:`AddressPolicy.socket_action` says.
    """

    prefix: Prefix
    action: str  # "allow" or "deny"

    def __post_init__(self) -> None:
        if self.action not in ADDRESS_ACTIONS:
            raise ValueError(
                f"address rule {self.prefix}: action {self.action!r}: expected 'allow' or 'deny'"
            )
        if not isinstance(self.prefix, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            raise ValueError(
                f"address rule {self.prefix!r}: expected an ipaddress.IPv4Network or IPv6Network"
            )


@dataclass(frozen=True)
class AddressPolicy:
    """What the address rules leave open: ``default`` ("allow" or "deny")
    for sources that no rule's prefix holds, and ``socket_action``
    ("refuse": a REFUSED response, or "drop": nothing) for denied sources in
    socket mode and over TCP (where "drop" closes the connection)."""

    default: str = "allow"
    socket_action: str = "refuse"

    def __post_init__(self) -> None:
        if self.default not in ADDRESS_ACTIONS:
            raise ValueError(f"address policy default {self.default!r}: expected 'allow' or 'deny'")
        if self.socket_action not in SOCKET_ACTIONS:
            raise ValueError(
                f"address policy socket_action {self.socket_action!r}: expected 'refuse' or 'drop'"
            )


# ---- overrides -------------------------------------------------------------------

# What a query for a name that an override rule holds gets (engine.h,
# XD_OVERRIDE_*): NXDOMAIN or NODATA with AA (and the SOA of the zone that
# holds the name, when one is served), REFUSED, or a fixed answer.
OVERRIDE_ACTIONS = ("nxdomain", "refused", "nodata", "answer")
DEFAULT_OVERRIDE_TTL = 300
MAX_TTL = 2**31 - 1  # RFC 2181 section 8


def _check_rule(what: str, action: str, records: tuple, ttl: int) -> None:
    """The rule part shared by Override and Blocklist: raises ValueError."""
    if action not in OVERRIDE_ACTIONS:
        raise ValueError(
            f"{what}: action {action!r}: expected one of "
            + ", ".join(repr(a) for a in OVERRIDE_ACTIONS)
        )
    if not all(isinstance(r, dns.rdata.Rdata) for r in records):
        raise ValueError(f"{what}: records must be dnspython Rdata objects")
    if (action == "answer") != bool(records):
        raise ValueError(f"{what}: records are needed with action 'answer' and only there")
    types = {r.rdtype for r in records}
    if dns.rdatatype.CNAME in types and (
        len(types) > 1 or sum(r.rdtype == dns.rdatatype.CNAME for r in records) > 1
    ):
        raise ValueError(
            f"{what}: a CNAME stands alone (RFC 1034 3.6.2): no other records "
            "and no second CNAME beside it"
        )
    if any(dns.rdatatype.is_metatype(t) or t == dns.rdatatype.OPT or t == 0 for t in types):
        raise ValueError(f"{what}: records of a type that cannot be data")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
        raise ValueError(f"{what}: ttl {ttl!r}: expected a TTL from 0 to {MAX_TTL}")


@dataclass(frozen=True)
class Override:
    """A rule for one name, compiled into the zone image and applied before
    any zone data: queries for ``name`` (with ``subtree``, also for every
    name below it) get ``action``: "nxdomain", "nodata" (both with AA, and
    the negative SOA of the zone holding the name when one is served),
    "refused", or "answer": ``records`` (class IN, any types but a CNAME
    stands alone), owned by the query name, with TTL ``ttl``.

    Which rule applies to a query name: the exact rule of the name itself,
    else the subtree rule of its longest suffix that has one (the name
    itself included).  A name may have both an exact and a subtree rule.
    """

    name: dns.name.Name
    action: str
    subtree: bool = False
    records: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = DEFAULT_OVERRIDE_TTL

    def __post_init__(self) -> None:
        if not isinstance(self.name, dns.name.Name) or not self.name.is_absolute():
            raise ValueError(f"override {self.name!r}: expected an absolute dns.name.Name")
        object.__setattr__(self, "records", tuple(self.records))
        _check_rule(f"override {self.name}", self.action, self.records, self.ttl)


@dataclass(frozen=True)
class Blocklist:
    """A file of names that all get one rule (the fields as in
    :class:`Override`), read natively: one name per line, a leading ``*.``
    meaning that name's subtree (``subtree`` makes every line a subtree),
    ``#`` starting a comment.  A million names load in well under a second;
    bad lines are problems with the file and line."""

    path: Path
    action: str = "nxdomain"
    subtree: bool = False
    records: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = DEFAULT_OVERRIDE_TTL

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(self.records))
        _check_rule(f"blocklist {self.path}", self.action, self.records, self.ttl)


@dataclass(frozen=True)
class CookieSecrets:
    """The secrets of DNS cookies (RFC 7873, with the server cookies of RFC
    9018): ``current`` (16 bytes, a SipHash-2-4 key) makes every new server
    cookie, or None for no cookies at all (the COOKIE option is ignored, as
    by a server without them); ``previous`` (16 bytes or None) is still
    accepted during a rotation; with ``require``, a UDP query with a client
    cookie but no valid server cookie gets BADCOOKIE instead of an answer.
    Servers that share ``current`` make and accept the same cookies."""

    current: bytes | None
    previous: bytes | None = None
    require: bool = False

    def __post_init__(self) -> None:
        for name in ("current", "previous"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, bytes) or len(value) != 16):
                raise ValueError(f"cookie secret {name}: expected 16 bytes, got {value!r}")
        if self.current is None and (self.previous is not None or self.require):
            raise ValueError("cookie secrets: previous or require without current")


@dataclass(frozen=True)
class RrlSettings:
    """Response rate limiting of UDP responses (TCP is never limited), with
    BIND's and Knot's meaning: every bucket (one client prefix of
    ``ipv4_prefix`` or ``ipv6_prefix`` bits and one kind of response: for
    answers also the name and type, for NODATA and NXDOMAIN the zone, for
    referrals the delegation, errors alone) may get ``rate`` responses a
    second (``nxdomain_rate`` for NXDOMAIN, ``nodata_rate`` for NODATA,
    ``referrals_rate`` for referrals, ``errors_rate`` for other error
    RCODEs; 0: no limit), averaged over ``window`` seconds; every
    ``slip``-th limited response goes out truncated (0: none, 1: all) so
    that real clients retry over TCP.  Sources in ``exempt``, and queries
    with a valid server cookie, are never limited.  ``table_size`` buckets,
    one table that every worker and the XDP program count in, bound the
    memory."""

    rate: int = 20
    nxdomain_rate: int = 20
    errors_rate: int = 20
    nodata_rate: int = 20
    referrals_rate: int = 20
    window: int = 15
    slip: int = 2
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[Prefix, ...] = ()
    table_size: int = 32768

    def __post_init__(self) -> None:
        object.__setattr__(self, "exempt", tuple(ipaddress.ip_network(p) for p in self.exempt))
        for name, low, high in (
            ("rate", 0, 1000000),
            ("nxdomain_rate", 0, 1000000),
            ("errors_rate", 0, 1000000),
            ("nodata_rate", 0, 1000000),
            ("referrals_rate", 0, 1000000),
            ("window", 1, 3600),
            ("slip", 0, 10),
            ("ipv4_prefix", 0, 32),
            ("ipv6_prefix", 0, 128),
            ("table_size", 1, 1 << 24),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(
                    f"rate limiting {name}: expected an integer from {low} to {high}, got {value!r}"
                )


# ---- the resolver hook -------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A name (with ``subtree``, also every name below it) whose queries a
    plugin answers itself through :func:`resolve`.  Compiled into the image
    as an override rule (action RESOLVER, docs/IMAGE.md), so it follows the
    same precedence: the exact rule of the name, else the subtree rule of its
    longest suffix; override rules (the ``overrides`` hook) come first."""

    name: dns.name.Name
    subtree: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, dns.name.Name) or not self.name.is_absolute():
            raise ValueError(f"claim {self.name!r}: expected an absolute dns.name.Name")


_QUESTION_TAIL = struct.Struct("!HH")
_RECORD_HEAD = struct.Struct("!HIH")  # type, TTL, RDLENGTH: engine.h's packed record
_UNPARSED = object()  # ResolverQuery.message not parsed yet
_UNPARSABLE = object()  # ... and dnspython could not parse it


def parse_question(wire: bytes) -> tuple[bytes, int, int]:
    """The question of a DNS message without dnspython: its name in
    lower-case wire form (ASCII letters folded, RFC 4343), type and class.
    Raises ValueError when the message has no well-formed first question
    (a compression pointer counts as malformed: nothing precedes it)."""
    try:
        if wire[4] == 0 and wire[5] == 0:
            raise ValueError("no question")
        pos = 12
        length = wire[pos]
        while length:
            if length > 63:
                raise ValueError("a label longer than 63 bytes, or compressed")
            pos += length + 1
            length = wire[pos]
        if pos - 12 >= 255:
            raise ValueError("a name longer than 255 bytes")
        qtype, qclass = _QUESTION_TAIL.unpack_from(wire, pos + 1)
    except (IndexError, struct.error):
        raise ValueError("the question is cut short") from None
    return wire[12 : pos + 1].lower(), qtype, qclass


def _skip_name(wire: bytes, pos: int) -> int:
    """The offset after the (possibly compressed) name at pos."""
    while True:
        length = wire[pos]
        if length >= 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += length + 1


def without_tsig(wire: bytes) -> bytes:
    """The message less its TSIG record (RFC 8945: the last one), which the
    engine checked before handing the query over: what dnspython parses
    without the key.  A message without one is returned as it is."""
    try:
        counts = struct.unpack_from("!HHHH", wire, 4)
        pos = 12
        for _ in range(counts[0]):
            pos = _skip_name(wire, pos) + 4
        last = pos
        for _ in range(sum(counts[1:])):
            last = pos
            pos = _skip_name(wire, pos)
            pos += 10 + struct.unpack_from("!H", wire, pos + 8)[0]
        rdtype = struct.unpack_from("!H", wire, _skip_name(wire, last))[0]
    except (IndexError, struct.error):
        return wire
    if not counts[3] or rdtype != 250:  # TSIG
        return wire
    return wire[:10] + struct.pack("!H", counts[3] - 1) + wire[12:last]


class ResolverQuery:
    """One query for :func:`resolve`.

    The cheap fields come straight from the query's bytes, without dnspython:

    - ``wire``: the query as the client sent it (bytes);
    - ``qname``: the question's name in **lower-case wire form** (bytes, e.g.
      ``b"\\x06whoami\\x07example\\x03com\\x00"``; compare with
      ``name.canonicalize().to_wire()``): unambiguous and free, where text
      would need escaping; ``dns.name.from_wire(query.wire, 12)[0]`` or
      ``query.message`` give the dnspython name with the client's case;
    - ``qtype``, ``qclass``: the question's type and class (ints);
    - ``id``: the query's ID (int);
    - ``client_address``: the client's (address, port), address as text;
    - ``transport``: "udp" or "tcp".

    ``message`` is the query parsed by dnspython (a dns.message.QueryMessage),
    parsed the first time a plugin reads it and kept: a plugin that answers
    from the cheap fields never pays for it.  A signed query's TSIG record
    is left out of it (the engine checked it; ``wire`` still has it).  Reading it raises
    dns.exception.DNSException when dnspython cannot parse the query (the
    engine accepted it); the resolver then answers that query SERVFAIL and
    calls the hook again with the rest of the batch.

    Made from ``wire`` (the resolver's way) or, for tests and callers of a
    hook, from a parsed ``message``: ``ResolverQuery(message, (address,
    port), "udp")``.  Treat it as read-only: it is a plain slotted object,
    since a frozen one would cost more than the rest of the query's way
    to the hook.
    """

    __slots__ = (
        "wire",
        "client_address",
        "transport",
        "qname",
        "qtype",
        "qclass",
        "id",
        "_message",
    )

    def __init__(
        self,
        message: Any = None,
        client_address: tuple[str, int] = ("", 0),
        transport: str = "udp",
        *,
        wire: bytes | None = None,
    ) -> None:
        if wire is None:
            if message is None:
                raise ValueError("a ResolverQuery needs its message or its wire")
            wire = message.to_wire()
        self.qname, self.qtype, self.qclass = parse_question(wire)
        self.wire = wire
        self.client_address = client_address
        self.transport = transport
        self.id = wire[0] << 8 | wire[1]
        self._message = _UNPARSED if message is None else message

    @property
    def message(self) -> Any:
        message = self._message
        if message is _UNPARSED:
            try:
                message = dns.message.from_wire(without_tsig(self.wire))
            except Exception:
                self._message = _UNPARSABLE
                raise
            self._message = message
        elif message is _UNPARSABLE:
            raise dns.exception.FormError(
                "dnspython cannot parse this query (the engine accepted it)"
            )
        return message

    @property
    def message_unparsable(self) -> bool:
        """True once reading ``message`` failed (for the resolver)."""
        return self._message is _UNPARSABLE

    def __repr__(self) -> str:
        return (
            f"ResolverQuery(id={self.id}, qname={self.qname!r}, qtype={self.qtype}, "
            f"qclass={self.qclass}, client_address={self.client_address!r}, "
            f"transport={self.transport!r})"
        )


# Types that cannot be data (the engine refuses them too, native/io/resolver.c).
_NOT_DATA = frozenset(
    {0, dns.rdatatype.OPT} | set(range(dns.rdatatype.TKEY, dns.rdatatype.ANY + 1))
)


@dataclass(frozen=True)
class Answer:
    """A response to one query in the fast form: the engine makes the
    message in C, with no dnspython on the way out.

    ``records``: (rdtype, ttl, rdata) triples, ``rdata`` the record's data
    in wire form (bytes: for A the 4 address bytes, for AAAA the 16, for
    TXT each string prefixed by its length byte); every record is owned by
    the query name (a compression pointer to the question, so in the
    client's case) and of class IN, in the answer section, in this order.
    ``rcode``: 0 to 15 (e.g. dns.rcode.NXDOMAIN with no records).  ``aa``:
    the AA bit.

    The response has the query's ID, opcode, RD and CD, its question as the
    client wrote it, and, when the query had EDNS, the server's OPT (DO
    echoed, the client's DNS cookie, the NSID it asked for), exactly as a
    cached answer or a zone answer gets; when the records do not fit the
    client's UDP size (512 bytes without EDNS, else its size up to 1232), TC
    and the question only, so that it retries over TCP.  An Answer with
    records is cached for its smallest TTL (at most ``[resolver]
    cache_max_ttl``; 0: never); one without records is not cached.

    ``packed`` (the records as native/engine.h's xd_engine_resolver_build
    takes them) and ``ttl`` (the smallest TTL, None without records) are
    computed when the Answer is made; a bad record raises ValueError then.
    """

    records: Sequence[tuple[int, int, bytes]] = ()
    rcode: int = 0
    aa: bool = True
    packed: bytes = field(init=False, repr=False, compare=False)
    ttl: "int | None" = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        records = tuple(self.records)
        parts = []
        ttl = None
        for record in records:
            try:
                rdtype, rttl, rdata = record
            except (TypeError, ValueError):
                raise ValueError(
                    f"answer record {record!r}: expected (rdtype, ttl, rdata)"
                ) from None
            if not isinstance(rdata, bytes):
                if not isinstance(rdata, (bytearray, memoryview)):
                    raise ValueError(f"answer record {record!r}: rdata must be bytes (wire form)")
                rdata = bytes(rdata)
            if (
                not isinstance(rdtype, int)
                or isinstance(rdtype, bool)
                or not 0 < rdtype < 65536
                or rdtype in _NOT_DATA
            ):
                raise ValueError(f"answer record {record!r}: a type that cannot be data")
            if not isinstance(rttl, int) or isinstance(rttl, bool) or not 0 <= rttl <= MAX_TTL:
                raise ValueError(f"answer record {record!r}: ttl: expected 0 to {MAX_TTL}")
            if len(rdata) > 65535:
                raise ValueError(f"answer record of type {rdtype}: rdata longer than 65535 bytes")
            parts.append(_RECORD_HEAD.pack(rdtype, rttl, len(rdata)))
            parts.append(rdata)
            if ttl is None or rttl < ttl:
                ttl = rttl
        if (
            not isinstance(self.rcode, int)
            or isinstance(self.rcode, bool)
            or not 0 <= self.rcode <= 15
        ):
            raise ValueError(f"answer rcode {self.rcode!r}: expected 0 to 15 (no extended RCODEs)")
        setattr_ = object.__setattr__
        setattr_(self, "records", records)
        setattr_(self, "aa", bool(self.aa))
        setattr_(self, "packed", b"".join(parts))
        setattr_(self, "ttl", ttl)
