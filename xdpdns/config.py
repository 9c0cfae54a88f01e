"""Configuration: a TOML file and command-line options, parsed once into
frozen dataclasses.  Everything after parsing takes typed values.

The file's shape::

    [server]
    listen = ["127.0.0.1:5353", "[::1]:5353"]
    udp_workers = 2            # default: one per CPU
    tcp_workers = 1            # TCP threads (1 to 64)
    tcp_idle_timeout = 10      # seconds a connection may wait for a query
    tcp_io_timeout = 0.5       # seconds for a query begun to arrive, and
                               # for an answer owed to move
    tcp_max_connections = 256  # open at once; more are closed at once
    tcp_max_client_connections = 32  # from one address (IPv6: its /64)
    tcp_max_queries = 0        # per connection, 0 = no limit
    tcp_lifetime = 0           # seconds per connection, 0 = no limit
    tcp_max_transfers = 10     # zone transfers out at once; more: REFUSED
    ixfr_journal_depth = 20    # changes kept per zone for IXFR out; 0: none
                               # (IXFR gets the whole zone)
    ixfr_journal_size = "64M"  # their bytes per zone at most (K, M, G or a
                               # number of bytes); the oldest go first
    stats_interval = 60        # seconds, 0 = never (and once at shutdown)
    log_level = "info"
    control_socket = "/run/xdpdns/xdpdns.sock"  # `xdpdns stats` asks here
                               # (default: that path as root, else
                               # $XDG_RUNTIME_DIR/xdpdns.sock or /tmp)
    user = "xdpdns"            # started as root, runs as this user once its
                               # sockets and XDP program are set up
    group = "xdpdns"           # default: the user's own group
    syslog = "daemon"          # also log to syslog with this facility
                               # (default: stderr only; under systemd
                               # stderr goes to the journal anyway)
    syslog_socket = "/dev/log" # where syslog listens (the default)
    storage = "/var/lib/xdpdns" # where secondary zones, catalogs and the
                               # serials of zones signed on load are kept
                               # between runs (created when one is needed)

    [templates.edge]           # what catalog members of group "edge" get:
    allow_transfer = ["203.0.113.0/24"]  # zone ACL keys, and notify

    [[catalog]]                # a catalog zone (RFC 9432): its members are
    zone = "catalog.example."  # secondary zones too
    primaries = ["198.51.100.1"]  # of the catalog and its members
    template = "edge"          # for members whose groups name no template

    [metrics]
    listen = "127.0.0.1:9153"  # Prometheus endpoint, GET /metrics (default: off)

    [dnstap]                   # dnstap output (default: off)
    socket = "/run/dnstap.sock"  # a Frame Streams collector's Unix socket
                               # (fstrm_capture, dnstap-receiver, ...)
    sample = 1                 # log one query in this many (each worker
                               # counts its own; in XDP mode the program
                               # picks at random)
    log_queries = true         # AUTH_QUERY messages
    log_responses = true       # AUTH_RESPONSE messages
    identity = "ns1"           # default: the host name
    version = "xdpdns 0.1.0"   # default: this version

    [xdp]                      # XDP mode: absent (or no interface) = socket mode
    interface = "eth0"         # required for XDP mode
    queues = "all"             # or a number of queues
    first_queue = 0
    frames_per_queue = 4096    # UMEM frames of one queue
    frame_size = 2048          # 2048 or 4096
    ring_size = 2048           # rx, tx, fill and completion rings; a power of two
    hugepages = "auto"         # auto | required | off
    hugepage_size = "2M"       # 2M | 1G
    zerocopy = "auto"          # auto | on | off
    mode = "native"            # native (falls back to generic) | generic
    verify_checksums = true    # drop frames whose checksums are wrong
    busy_poll = true           # workers run the NIC's NAPI themselves
                               # (SO_PREFER_BUSY_POLL); false: never spin
    busy_poll_wait_us = 50     # the longest an idle worker busy polls for
                               # the next packet before it sleeps in poll();
                               # it adapts below this to the gaps it sees
                               # (0: sleep at once; at most 1000000)
    answers = "all"            # all: the XDP program answers itself (XDP_TX)
                               # every plain query whose answer the zones
                               # fix; off: every query goes to the workers
    ports = [53]               # UDP destination ports taken by the fast path
    addresses = []             # destination addresses taken; default: every
                               # [server] listen address that is neither a
                               # wildcard nor loopback
    program = "custom.bpf.o"   # default: the XDP program built with xdpdns
    attach = "link"            # link: a bpf_link of its own, alone on the
                               # interface; dispatcher: one program of
                               # libxdp's dispatcher, beside others that
                               # xdp-loader loads (README: "Sharing the
                               # NIC with other XDP programs")

    [resolver]                 # names that plugins answer (resolver hook)
    timeout = 1.0              # seconds; a slower hook's queries get SERVFAIL
    cache_max_ttl = 300        # seconds an answer is cached at most; 0: never
    cache_size = 4096          # cached answers; a power of two
    ring_size = 1024           # deferred queries a worker (UDP or AF_XDP
                               # queue) holds, all hooks together, freed in
                               # the order they came: at least its rate of
                               # claimed queries times timeout; a power of
                               # two; more: SERVFAIL at once

    [[key]]                           # a TSIG key (RFC 8945), one table each
    name = "xfr-key."                 # as the other side names it
    algorithm = "hmac-sha256"         # hmac-sha1, -sha224, -sha256 (default),
                                      # -sha384, -sha512
    secret = "base64..."              # as tsig-keygen or keymgr print it

    [[zone]]
    file = "zones/example.com.zone"   # relative to this file's directory
    origin = "example.com."           # default: the file name without .zone
    allow_query = ["192.0.2.0/24"]    # who may query it (default: everyone,
    deny_query = ["192.0.2.128/25"]   # or only these when any are listed)
    allow_transfer = ["2001:db8::53", { key = "xfr-key." },
                      { key = "xfr-key.", address = "192.0.2.0/24" }]
                                      # who may transfer it (default: no one):
                                      # a prefix, or requests signed with a key
                                      # (from a prefix, when it has an address)
    deny_transfer = []
    notify = ["2001:db8::53", { address = "192.0.2.7", key = "xfr-key." }]
                                      # secondaries told of a new serial
                                      # (NOTIFY), signed when a key is given
    dnssec = { keys = ["Kexample.com.+013+12345"], nsec3 = false,
               validity = 1209600, refresh = 604800 }  # sign it on load

    [[zone]]                          # a secondary zone: no file, no dnssec
    origin = "example.net."           # required
    primaries = ["198.51.100.1", { address = "[2001:db8::1]:53", key = "xfr-key." }]
                                      # transferred from these (IXFR, else
                                      # AXFR), at start, on NOTIFY and on its
                                      # SOA timers, signed when a key is given;
                                      # kept in [server] storage between runs
    allow_notify = ["198.51.100.0/24"] # who may NOTIFY it, as allow_transfer
                                      # (default: its primaries' addresses,
                                      # signed with their keys)

    [plugins.NAME]                    # one table per plugin, parsed by it
    ...

Every error names the file, the key and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import grp
import ipaddress
import os
import pwd
import tomllib
import types
from types import NoneType
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import dns.exception
import dns.name

from xdpdns.hookspecs import ZONE_ACL_KINDS, Prefix, ZoneAcl, ZoneSigning
from xdpdns.tsig import ALGORITHMS, SECRET_MAX, KeyRule, TsigKey

__all__ = [
    "Config",
    "ConfigError",
    "ListenAddress",
    "ServerConfig",
    "XdpConfig",
    "Where",
    "ZoneConfig",
    "default_control_socket",
    "default_zone_path",
    "load_config",
    "parse_listen",
    "parse_prefixes",
    "parse_table",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_PORT = 53
DEFAULT_LISTEN = ("127.0.0.1:5353",)
COMMAND_LINE = "command line"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names file and key."""


_MISSING = object()


@dataclass(frozen=True)
class Where:
    """Where values come from: a file (or the command line) and a section.

    Plugins' section parsers get one to report errors in the same words as
    the core.  ``base`` is the directory relative paths are taken from.
    """

    file: str
    section: str = ""
    base: Path = field(default_factory=Path)

    def key(self, key: str) -> str:
        if self.file == COMMAND_LINE:
            return key
        return f"{self.section}.{key}" if self.section and key else (self.section or key)

    def error(self, key: str, expected: str, value: Any = _MISSING) -> ConfigError:
        got = "" if value is _MISSING else f", got {value!r}"
        return ConfigError(f"{self.file}: {self.key(key)}: expected {expected}{got}")

    def sub(self, section: str) -> "Where":
        return dataclasses.replace(self, section=section)


@dataclass(frozen=True)
class ListenAddress:
    host: str  # numeric IPv4 or IPv6 address, without brackets
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Remote(ListenAddress):
    """A primary or a secondary the server talks to, and the TSIG key its
    messages are signed with (None: unsigned)."""

    key: TsigKey | None = None


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[ListenAddress, ...] = ()
    udp_workers: int = 1
    tcp_workers: int = 1
    tcp_idle_timeout: float = 10.0
    tcp_io_timeout: float = 0.5
    tcp_max_connections: int = 256
    tcp_max_client_connections: int = 32
    tcp_max_queries: int = 0
    tcp_lifetime: float = 0.0
    tcp_max_transfers: int = 10
    # The journal of changes each zone keeps for IXFR out.
    ixfr_journal_depth: int = 20
    ixfr_journal_size: int = 64 << 20
    stats_interval: float = 60.0
    log_level: str = "info"
    # None: default_control_socket(), decided when the server starts.
    control_socket: Path | None = None
    # Who the server runs as once started (None: as it was started).
    user: str | None = None
    group: str | None = None
    # Syslog's facility (None: no syslog) and socket.
    syslog: str | None = None
    syslog_socket: Path = Path("/dev/log")
    # Where secondary zones, catalogs and signed zones' serials are kept
    # between runs (xdpdns/secondary/storage.py).
    storage: Path = Path("/var/lib/xdpdns")


SYSLOG_FACILITIES = (
    "daemon",
    "user",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)
HUGEPAGES = ("auto", "required", "off")
HUGEPAGE_SIZES = {"2M": 2, "1G": 1024}  # in MiB, as the engine takes them
ZEROCOPY = ("auto", "on", "off")
XDP_MODES = ("native", "generic")
XDP_ANSWERS = ("all", "off")  # [xdp] answers: whether the XDP program answers itself
XDP_ATTACH = ("link", "dispatcher")  # [xdp] attach: alone, or in libxdp's dispatcher
FRAME_SIZES = (2048, 4096)
# The engine's XD_BUSY_POLL_WAIT_MAX_US: longer spinning is never worth it.
BUSY_POLL_WAIT_MAX_US = 1_000_000


@dataclass(frozen=True)
class XdpConfig:
    """The [xdp] section.  ``interface`` None means socket mode."""

    interface: str | None = None
    queues: int = 0  # 0: every queue of the NIC ("all")
    first_queue: int = 0
    frames_per_queue: int = 4096
    frame_size: int = 2048
    ring_size: int = 2048
    hugepages: str = "auto"
    hugepage_size: str = "2M"
    zerocopy: str = "auto"
    mode: str = "native"
    verify_checksums: bool = True
    busy_poll: bool = True
    busy_poll_wait_us: int = 50
    answers: str = "all"
    ports: tuple[int, ...] = (53,)
    # The destination addresses taken (numeric, normalized); empty: every
    # destination.  Filled from [server] listen when the file names none.
    addresses: tuple[str, ...] = ()
    # A compiled XDP object to load instead of the one built with xdpdns
    # (it must define the same maps); None: the packaged one.
    program: Path | None = None
    attach: str = "link"

    @property
    def enabled(self) -> bool:
        return self.interface is not None

    @property
    def hugepage_mb(self) -> int:
        return HUGEPAGE_SIZES[self.hugepage_size]


@dataclass(frozen=True)
class ZoneTemplate:
    """[templates.NAME]: what a catalog's member zones get (their ACL and
    NOTIFY targets) when one of their groups is NAME, or when their
    catalog's ``template`` names it."""

    name: str
    acl: ZoneAcl = ZoneAcl()
    notify: tuple[Remote, ...] = ()


@dataclass(frozen=True)
class CatalogConfig:
    """What makes a secondary zone a catalog (RFC 9432): its members become
    secondary zones of its primaries, configured by template."""

    # By name, which is the group that selects one.
    templates: Mapping[str, ZoneTemplate] = field(
        default_factory=lambda: types.MappingProxyType({})
    )
    default: ZoneTemplate | None = None  # for members no group's template holds

    def template_for(self, groups: Sequence[str]) -> ZoneTemplate | None:
        """The first of groups (in order) that names a template, else the default."""
        for group in groups:
            if group in self.templates:
                return self.templates[group]
        return self.default


@dataclass(frozen=True)
class ZoneConfig:
    file: Path | None  # None: a secondary zone (primaries)
    origin: dns.name.Name
    acl: ZoneAcl = ZoneAcl()
    # Secondaries told of every new serial (NOTIFY, RFC 1996; xdpdns/notify.py).
    notify: tuple[Remote, ...] = ()
    # Signed on load with these keys (dnssec = {...}); None: served as it is.
    signing: ZoneSigning | None = None
    # A secondary zone: transferred from these (xdpdns/secondary/), in
    # this order of preference.
    primaries: tuple[Remote, ...] = ()
    # Who may NOTIFY a secondary zone; empty: its primaries' addresses
    # (signed with a primary's key where it has one).
    allow_notify: tuple[Prefix | KeyRule, ...] = ()
    # [[catalog]]: this secondary zone is a catalog (xdpdns/secondary/catalog.py).
    catalog: CatalogConfig | None = None
    # A member zone: the catalog that made it (no [[zone]] table).
    member_of: dns.name.Name | None = None

    @property
    def secondary(self) -> bool:
        return bool(self.primaries)


@dataclass(frozen=True)
class ResolverConfig:
    """The [resolver] section: how queries for names that plugins claim
    (the resolver_claims and resolve hooks, xdpdns/resolver.py) are handled."""

    timeout: float = 1.0
    cache_max_ttl: int = 300
    cache_size: int = 4096
    ring_size: int = 1024


@dataclass(frozen=True)
class MetricsConfig:
    """The [metrics] section: the Prometheus endpoint (None: off)."""

    listen: ListenAddress | None = None


@dataclass(frozen=True)
class DnstapConfig:
    """The [dnstap] section (socket None: off)."""

    socket: Path | None = None
    sample: int = 1
    log_queries: bool = True
    log_responses: bool = True
    identity: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    zones: tuple[ZoneConfig, ...]
    # [plugins.NAME] -> the frozen dataclass the owning plugin parsed it into.
    plugins: Mapping[str, Any]
    # The configuration file, or None when everything came from defaults and
    # the command line.
    source: Path | None = None
    xdp: XdpConfig = XdpConfig()
    resolver: ResolverConfig = ResolverConfig()
    metrics: MetricsConfig = MetricsConfig()
    dnstap: DnstapConfig = DnstapConfig()
    # [[key]]: TSIG keys (RFC 8945), for transfers and NOTIFY.
    keys: tuple[TsigKey, ...] = ()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_control_socket() -> Path:
    """Where the control socket lives unless [server] control_socket says."""
    if os.geteuid() == 0:
        return Path("/run/xdpdns/xdpdns.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "xdpdns.sock"
    return Path(f"/tmp/xdpdns-{os.getuid()}.sock")


def default_zone_path() -> Path:
    """The example zone that `xdpdns serve` loads when given no zones."""
    # A source checkout (also `pip install -e .`) reads zones/ directly ...
    checkout = Path(__file__).resolve().parent.parent / "zones" / "example.com.zone"
    if checkout.is_file():
        return checkout
    # ... an installed package carries the same files as xdpdns.zones.
    from importlib import resources

    return Path(str(resources.files("xdpdns.zones").joinpath("example.com.zone")))


# ---- values ------------------------------------------------------------------


def parse_listen(text: Any, where: Where, key: str) -> ListenAddress:
    """Parses "HOST:PORT", "[HOST6]:PORT" or a bare address (port 53)."""
    expected = "an address like 127.0.0.1:5353 or [::1]:5353"
    if not isinstance(text, str):
        raise where.error(key, expected, text)
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise where.error(key, expected, text)
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise where.error(key, expected, text)
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise where.error(key, expected + " (numeric IPv4 or IPv6 address)", text) from None
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise where.error(key, expected + " (port 0-65535)", text)
    return ListenAddress(str(address), int(port))


PREFIXES = 'a list of IPv4 or IPv6 prefixes or addresses, like ["192.0.2.0/24", "2001:db8::1"]'


def _prefix(text: Any, where: Where, key: str) -> Prefix:
    if not isinstance(text, str):
        raise where.error(key, PREFIXES, text)
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError:
        pass
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise where.error(key, PREFIXES, text) from None
    # 192.0.2.1/24 is a typo for the network or for the address: not guessed.
    raise where.error(
        key, f"a prefix without host bits set ({iface.network} or {iface.ip} alone)", text
    )


def parse_prefixes(value: Any, where: Where, key: str) -> tuple[Prefix, ...]:
    """A list of IPv4 and IPv6 prefixes (a plain address is its /32 or
    /128), each once, in the order given; the [plugins.acl] lists and the
    zones' ACL keys are written alike."""
    if not isinstance(value, list):
        raise where.error(key, PREFIXES, value)
    return tuple(dict.fromkeys(_prefix(item, where, key) for item in value))


def parse_allow_deny(
    table: Mapping[str, Any], where: Where, allow_key: str, deny_key: str
) -> tuple[tuple[Prefix, ...], tuple[Prefix, ...]]:
    """An allow list and a deny list; a prefix may not be in both."""
    allow = parse_prefixes(table.get(allow_key, []), where, allow_key)
    deny = parse_prefixes(table.get(deny_key, []), where, deny_key)
    both = [str(p) for p in deny if p in set(allow)]
    if both:
        raise where.error(deny_key, f"prefixes that are not also in {allow_key}", ", ".join(both))
    return allow, deny


# The prefixes of one list of a zone's ACL, per family: the engine scans a
# list (native/image/image.c), so it stays short (XD_ZONE_ACL_MAX).
ZONE_ACL_MAX = 1024
ZONE_ACL_KEYS = tuple(f"{action}_{kind}" for kind in ZONE_ACL_KINDS for action in ("allow", "deny"))


def parse_zone_acl(
    table: Mapping[str, Any], where: Where, keys: Mapping[dns.name.Name, TsigKey] | None = None
) -> ZoneAcl:
    """The ACL keys of a [[zone]] table; the transfer lists may name
    ``keys``."""
    keys = keys or {}
    lists = {}
    for kind in ZONE_ACL_KINDS:
        if kind == "transfer":
            allow = parse_key_list(table.get("allow_transfer", []), where, "allow_transfer", keys)
            deny = parse_key_list(table.get("deny_transfer", []), where, "deny_transfer", keys)
            both = [str(p) for p in deny if p in set(allow)]
            if both:
                raise where.error(
                    "deny_transfer", "entries that are not also in allow_transfer", ", ".join(both)
                )
        else:
            allow, deny = parse_allow_deny(table, where, f"allow_{kind}", f"deny_{kind}")
        prefixes = [
            p for e in allow + deny for p in (e.prefixes() if isinstance(e, KeyRule) else (e,))
        ]
        for version in (4, 6):
            if sum(p.version == version for p in prefixes) > ZONE_ACL_MAX:
                raise where.error(
                    f"allow_{kind}",
                    f"at most {ZONE_ACL_MAX} IPv{version} "
                    f"prefixes in allow_{kind} and deny_{kind} together",
                )
        lists[f"allow_{kind}"], lists[f"deny_{kind}"] = allow, deny
    return ZoneAcl(**lists)


KEY_LIST = (
    PREFIXES[:-1] + ', or tables { key = "k1" } and { key = "k1", address = "192.0.2.1" } '
    "for requests signed with a [[key]]"
)


def _key_named(value: Any, where: Where, key: str, keys: Mapping[dns.name.Name, TsigKey]):
    """The [[key]] that ``value`` names."""
    try:
        name = dns.name.from_text(value) if isinstance(value, str) and value else None
    except dns.exception.DNSException:
        name = None
    if name is None or name not in keys:
        known = ", ".join(str(k) for k in keys) or "none"
        raise where.error(key, f"the name of a [[key]] table (known keys: {known})", value)
    return keys[name]


def parse_key_list(
    value: Any, where: Where, key: str, keys: Mapping[dns.name.Name, TsigKey]
) -> tuple[Prefix | KeyRule, ...]:
    """A transfer or NOTIFY list: prefixes, and { key, address } tables
    that hold only requests signed with that key."""
    if not isinstance(value, list):
        raise where.error(key, KEY_LIST, value)
    out: list[Prefix | KeyRule] = []
    for item in value:
        if isinstance(item, str):
            out.append(_prefix(item, where, key))
            continue
        if not isinstance(item, dict):
            raise where.error(key, KEY_LIST, item)
        unknown = [k for k in item if k not in ("key", "address")]
        if unknown or "key" not in item:
            raise where.error(key, KEY_LIST + " (tables have a key and an optional address)", item)
        prefix = _prefix(item["address"], where, key) if "address" in item else None
        out.append(KeyRule(_key_named(item["key"], where, key, keys), prefix))
    return tuple(dict.fromkeys(out))


def parse_remote(
    item: Any, where: Where, key: str, keys: Mapping[dns.name.Name, TsigKey], expected: str
) -> Remote:
    """An address like parse_listen's (port 1-65535, not a wildcard), or
    a table { address = ..., key = "k1" } whose messages are signed with
    that [[key]]."""
    tsig = None
    if isinstance(item, dict):
        if "address" not in item or any(k not in ("address", "key") for k in item):
            raise where.error(key, expected + ' (tables are { address = "...", key = "k1" })', item)
        tsig = _key_named(item["key"], where, key, keys) if "key" in item else None
        item = item["address"]
    address = parse_listen(item, where, key)
    if address.port == 0:
        raise where.error(key, expected + " (port 1-65535)", item)
    if address.host in ("0.0.0.0", "::"):
        raise where.error(key, expected + " (not a wildcard address)", item)
    return Remote(address.host, address.port, tsig)


_TSIG_KEY_KEYS = ("name", "algorithm", "secret")


def _parse_tsig_key(table: Any, where: Where) -> TsigKey:
    """A [[key]] table: name, algorithm (hmac-sha256 by default) and the
    secret in base64, as tsig-keygen and keymgr print it."""
    if not isinstance(table, dict):
        raise where.error("", "a [[key]] table", table)
    _known_keys_only(table, where, list(_TSIG_KEY_KEYS))
    for required in ("name", "secret"):
        if required not in table:
            raise where.error(required, f"the key's {required} (required)")
    try:
        name = dns.name.from_text(table["name"]) if isinstance(table["name"], str) else None
    except dns.exception.DNSException:
        name = None
    if name is None or name == dns.name.root:
        raise where.error("name", 'a key name like "xfr-key."', table["name"])
    algorithm = table.get("algorithm", "hmac-sha256")
    if algorithm not in ALGORITHMS:
        raise where.error("algorithm", "one of " + ", ".join(ALGORITHMS), algorithm)
    try:
        secret = base64.b64decode(table["secret"], validate=True)
    except (TypeError, ValueError, binascii.Error):
        secret = b""
    if not 1 <= len(secret) <= SECRET_MAX:
        raise where.error(
            "secret", f"the shared secret in base64 (1 to {SECRET_MAX} bytes)", "(not shown)"
        )
    return TsigKey(name, algorithm, secret)


def _parse_tsig_keys(value: Any, where: Where) -> dict[dns.name.Name, TsigKey]:
    if not isinstance(value, list):
        raise where.error("key", "[[key]] tables", value)
    keys: dict[dns.name.Name, TsigKey] = {}
    for i, table in enumerate(value, 1):
        w = where.sub(f"key[{i}]")
        k = _parse_tsig_key(table, w)
        if k.name in keys:
            raise w.error("name", "each key name once", table["name"])
        keys[k.name] = k
    return keys


def parse_origin(text: Any, where: Where, key: str) -> dns.name.Name:
    if not isinstance(text, str) or not text:
        raise where.error(key, "a domain name like example.com.", text)
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise where.error(key, f"a domain name like example.com. ({exc})", text) from None


def origin_from_file(path: Path, where: Where, key: str) -> dns.name.Name:
    """A zone's origin is its file's name without `.zone` (example.com.zone)."""
    name = path.name.removesuffix(".zone")
    if not name:
        raise where.error(key, "a zone file named ORIGIN.zone, or an explicit origin", str(path))
    return parse_origin(name, where, key)


def parse_zone_option(text: str, where: Where, key: str = "--zone") -> ZoneConfig:
    """Parses --zone FILE or --zone ORIGIN=FILE (paths relative to where.base)."""
    if not isinstance(text, str) or not text:
        raise where.error(key, "FILE or ORIGIN=FILE", text)
    origin_text, sep, file_text = text.partition("=")
    if not sep:
        origin_text, file_text = "", text
    if not file_text or (sep and not origin_text):
        raise where.error(key, "FILE or ORIGIN=FILE", text)
    path = where.base / file_text
    origin = (
        parse_origin(origin_text, where, key) if origin_text else origin_from_file(path, where, key)
    )
    return ZoneConfig(path, origin)


def _type_name(tp: Any) -> str:
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        Path: "a path (a string)",
    }
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) in (tuple, list):
        (inner, *_rest) = typing.get_args(tp)
        return f"a list of {_type_name(inner).removeprefix('a ').removeprefix('an ')}s"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: Where, key: str) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        # Optional[T]: TOML has no null, so a value present is a T.
        args = [a for a in typing.get_args(tp) if a is not NoneType]
        if len(args) == 1:
            tp = args[0]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, str) and value:
            return where.base / value
    elif typing.get_origin(tp) in (tuple, list):
        (inner, *_rest) = typing.get_args(tp)
        if isinstance(value, list):
            try:
                return tuple(_convert(v, inner, where, key) for v in value)
            except ConfigError:
                pass  # reported below for the whole list
    else:
        return value  # a type this helper does not know: the parser checks it
    raise where.error(key, _type_name(tp), value)


def _known_keys_only(table: Mapping[str, Any], where: Where, known: Sequence[str]) -> None:
    """An error naming the first key of table not in known, and the known
    keys in the order given."""
    for key in table:
        if key not in known:
            raise where.error(key, "one of the known keys: " + ", ".join(known) + " (unknown key)")


def parse_table(cls: type, table: Mapping[str, Any], where: Where) -> Any:
    """Turns a TOML table into the frozen dataclass ``cls``.

    Keys are the dataclass's field names; fields without a default are
    required.  Supports bool, int, float, str, Path (relative to the config
    file) and tuple[T, ...] fields: each field's type is its validator, and
    the table goes through parse_keys as the core's sections do.  Meant for
    plugins' section parsers.
    """
    if not isinstance(table, Mapping):
        raise where.error("", "a table", table)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    validators = {name: _type_validator(hints[name]) for name in sorted(fields)}
    values = parse_keys(table, where, where.section, validators)
    for name, f in fields.items():
        if (
            name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise where.error(name, f"{_type_name(hints[name])} (required)")
    return cls(**values)


def _type_validator(tp: Any) -> "Validator":
    return lambda value, where, key: _convert(value, tp, where, key)


Validator = Callable[[Any, Where, str], Any]


def parse_keys(
    table: Any, where: Where, section: str, validators: Mapping[str, Validator]
) -> dict[str, Any]:
    """The values of a table each of whose keys has a validator (value,
    where, key) -> value, which checks and converts it: only the keys
    present.  An unknown key is an error that names the known ones, in the
    validators' order."""
    if not isinstance(table, Mapping):
        raise where.error("", f"a table [{section}]", table)
    _known_keys_only(table, where, list(validators))
    return {key: validators[key](value, where, key) for key, value in table.items()}


# ---- sections ----------------------------------------------------------------


def _positive_int(value: Any, where: Where, key: str, limit: int = 1 << 20) -> int:
    if isinstance(value, str) and where.file == COMMAND_LINE and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise where.error(key, f"an integer from 1 to {limit}", value)
    return value


_BYTE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _byte_size(value: Any, where: Where, key: str, limit: int = 1 << 40) -> int:
    """A number of bytes, or a string of one with K, M or G after it."""
    number: Any = value
    if isinstance(value, str):
        text = value.strip().upper()
        unit = _BYTE_UNITS.get(text[-1:], 1)
        digits = text[:-1] if text[-1:] in _BYTE_UNITS else text
        number = int(digits) * unit if digits.isdigit() else None
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= limit:
        raise where.error(key, 'a size in bytes, like 65536 or "64M" (K, M, G; 1 to 1T)', value)
    return number


def _seconds(value: Any, where: Where, key: str, allow_zero: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero) or value > 86400:
        bound = "0" if allow_zero else "more than 0"
        raise where.error(key, f"a number of seconds ({bound} to 86400)", value)
    return float(value)


def _log_level(value: Any, where: Where, key: str) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise where.error(key, "one of " + ", ".join(LOG_LEVELS), value)
    return value.lower()


def _listen_list(value: Any, where: Where, key: str) -> tuple[ListenAddress, ...]:
    if not isinstance(value, list) or not value:
        raise where.error(key, 'a non-empty list of addresses like "127.0.0.1:5353"', value)
    addrs = tuple(parse_listen(v, where, key) for v in value)
    if len(set(addrs)) != len(addrs):
        raise where.error(key, "each address once", value)
    return addrs


def _account(value: Any, where: Where, key: str, lookup) -> str:
    """The name of an existing user or group (a number is taken as one)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise where.error(key, f"the name of a {key} on this machine", value)
    name = str(value)
    try:
        lookup(name)
    except KeyError:
        if name.isdigit():
            return name
        hint = " (create it: useradd --system --no-create-home xdpdns)" if key == "user" else ""
        raise where.error(key, f"a {key} that exists on this machine{hint}", value) from None
    return name


# sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
UNIX_PATH_MAX = 107


def _socket_path(value: Any, where: Where, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise where.error(key, "the path of a unix socket", value)
    path = where.base / value
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise where.error(key, f"a unix socket path of at most {UNIX_PATH_MAX} bytes", value)
    return path


# ---- [metrics] -----------------------------------------------------------------


def _directory(value: Any, where: Where, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise where.error(key, "a directory's path (a string)", value)
    return where.base / value


def _syslog_facility(value: Any, where: Where, key: str) -> str:
    if not isinstance(value, str) or value.lower() not in SYSLOG_FACILITIES:
        raise where.error(key, "a syslog facility: " + ", ".join(SYSLOG_FACILITIES), value)
    return value.lower()


_SERVER_KEYS: dict[str, Validator] = {
    "listen": _listen_list,
    "udp_workers": lambda v, w, k: _positive_int(v, w, k, 1024),
    "tcp_workers": lambda v, w, k: _positive_int(v, w, k, 64),
    "tcp_idle_timeout": lambda v, w, k: _seconds(v, w, k, allow_zero=False),
    "tcp_io_timeout": lambda v, w, k: _seconds(v, w, k, allow_zero=False),
    "tcp_max_connections": lambda v, w, k: _positive_int(v, w, k, 1 << 20),
    "tcp_max_client_connections": lambda v, w, k: _positive_int(v, w, k, 1 << 20),
    "tcp_max_queries": lambda v, w, k: _int_range(v, 0, (1 << 32) - 1, w, k),
    "tcp_lifetime": lambda v, w, k: _seconds(v, w, k, allow_zero=True),
    "tcp_max_transfers": lambda v, w, k: _positive_int(v, w, k, 1 << 16),
    "ixfr_journal_depth": lambda v, w, k: _int_range(v, 0, 100000, w, k),
    "ixfr_journal_size": _byte_size,
    "stats_interval": lambda v, w, k: _seconds(v, w, k, allow_zero=True),
    "log_level": _log_level,
    "control_socket": _socket_path,
    "user": lambda v, w, k: _account(v, w, k, pwd.getpwnam),
    "group": lambda v, w, k: _account(v, w, k, grp.getgrnam),
    "syslog": _syslog_facility,
    "syslog_socket": _socket_path,
    "storage": _directory,
}


def _parse_server(table: Any, where: Where) -> dict[str, Any]:
    """The [server] table's values (only the keys present)."""
    return parse_keys(table, where, "server", _SERVER_KEYS)


def _parse_metrics(table: Any, where: Where) -> MetricsConfig:
    return MetricsConfig(**parse_keys(table, where, "metrics", {"listen": parse_listen}))


# ---- [dnstap] ------------------------------------------------------------------

DNSTAP_SAMPLE_MAX = 1 << 24
DNSTAP_TEXT_MAX = 255  # bytes of identity and version, as native/io/dnstap.c


def _parse_dnstap(table: Any, where: Where) -> DnstapConfig:
    if not isinstance(table, dict):
        raise where.error("", "a table [dnstap]", table)
    if not table:
        return DnstapConfig()
    plain = {k: v for k, v in table.items() if k != "socket"}
    cfg = parse_table(DnstapConfig, plain, where)
    if "socket" not in table:
        raise where.error("socket", "the collector's Unix socket path (required)")
    path = _socket_path(table["socket"], where, "socket")
    sample = _int_range(cfg.sample, 1, DNSTAP_SAMPLE_MAX, where, "sample")
    if not (cfg.log_queries or cfg.log_responses):
        raise where.error(
            "log_responses",
            "true when log_queries is false (nothing would be logged)",
            cfg.log_responses,
        )
    for key in ("identity", "version"):
        text = getattr(cfg, key)
        if text is not None and len(text.encode()) > DNSTAP_TEXT_MAX:
            raise where.error(key, f"at most {DNSTAP_TEXT_MAX} bytes", text)
    return dataclasses.replace(cfg, socket=path, sample=sample)


# ---- [resolver] ----------------------------------------------------------------

_RESOLVER_SIZE_MAX = 1 << 20  # as native/io/resolver.c


def _parse_resolver(table: Any, where: Where) -> ResolverConfig:
    cfg = parse_table(ResolverConfig, table, where)
    if not 0 < cfg.timeout <= 60:
        raise where.error("timeout", "a number of seconds (more than 0, at most 60)", cfg.timeout)
    if not 0 <= cfg.cache_max_ttl <= 86400:
        raise where.error("cache_max_ttl", "a number of seconds from 0 to 86400", cfg.cache_max_ttl)
    for key in ("cache_size", "ring_size"):
        n = getattr(cfg, key)
        if n <= 0 or n & (n - 1) or n > _RESOLVER_SIZE_MAX:
            raise where.error(key, f"a power of two from 1 to {_RESOLVER_SIZE_MAX}", n)
    return cfg


# ---- [xdp] -------------------------------------------------------------------

IFNAMSIZ = 16  # the kernel's limit, with the terminating NUL


def _choice(value: Any, choices: Sequence[Any], where: Where, key: str) -> Any:
    if isinstance(value, bool) or value not in choices:
        raise where.error(key, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def _int_range(value: Any, low: int, high: int, where: Where, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise where.error(key, f"an integer from {low} to {high}", value)
    return value


def _interface(value: Any, where: Where, key: str) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value.encode()) >= IFNAMSIZ
        or "/" in value
        or any(c.isspace() for c in value)
    ):
        raise where.error(
            key,
            f"a network interface name (1 to {IFNAMSIZ - 1} characters, no '/' or spaces)",
            value,
        )
    return value


def _xdp_addresses(value: Any, where: Where, key: str) -> tuple[str, ...]:
    expected = "a list of numeric IPv4 or IPv6 addresses"
    if not isinstance(value, list):
        raise where.error(key, expected, value)
    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_address(item)))
        except (TypeError, ValueError):
            raise where.error(key, expected, item) from None
    return tuple(dict.fromkeys(out))


def _xdp_ports(value: Any, where: Where, key: str) -> tuple[int, ...]:
    expected = "a non-empty list of UDP ports (1-65535)"
    if not isinstance(value, list) or not value:
        raise where.error(key, expected, value)
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 65535:
            raise where.error(key, expected, item)
    return tuple(dict.fromkeys(value))


def _xdp_queues(value: Any, where: Where, key: str) -> int:
    if value != "all" and (
        isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256
    ):
        raise where.error(key, '"all" or a number of queues from 1 to 256', value)
    return 0 if value == "all" else value


def _ring_size(value: Any, where: Where, key: str) -> int:
    ok = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 64 <= value <= 1 << 16
        and value & (value - 1) == 0
    )
    if not ok:
        raise where.error(key, "a power of two from 64 to 65536", value)
    return value


def _flag(value: Any, where: Where, key: str) -> bool:
    if not isinstance(value, bool):
        raise where.error(key, "true or false", value)
    return value


def _xdp_program(value: Any, where: Where, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise where.error(key, "the path of a compiled XDP object (.o)", value)
    return where.base / value


def _one_of(choices: Sequence[Any]) -> Validator:
    return lambda v, w, k: _choice(v, choices, w, k)


def _in_range(low: int, high: int) -> Validator:
    return lambda v, w, k: _int_range(v, low, high, w, k)


_XDP_VALIDATORS: dict[str, Validator] = {
    "interface": _interface,
    "queues": _xdp_queues,
    "first_queue": _in_range(0, 255),
    "frames_per_queue": _in_range(64, 1 << 20),
    "frame_size": _one_of(FRAME_SIZES),
    "ring_size": _ring_size,
    "hugepages": _one_of(HUGEPAGES),
    "hugepage_size": _one_of(tuple(HUGEPAGE_SIZES)),
    "zerocopy": _one_of(ZEROCOPY),
    "mode": _one_of(XDP_MODES),
    "answers": _one_of(XDP_ANSWERS),
    "attach": _one_of(XDP_ATTACH),
    "verify_checksums": _flag,
    "busy_poll": _flag,
    "busy_poll_wait_us": _in_range(0, BUSY_POLL_WAIT_MAX_US),
    "ports": _xdp_ports,
    "addresses": _xdp_addresses,
    "program": _xdp_program,
}
# In XdpConfig's field order (an unknown key's error lists them so); a
# field without a validator fails here, at import.
_XDP_KEYS = {f.name: _XDP_VALIDATORS[f.name] for f in dataclasses.fields(XdpConfig)}


def _parse_xdp(table: Any, where: Where) -> dict[str, Any]:
    """The [xdp] table's values (only the keys present)."""
    return parse_keys(table, where, "xdp", _XDP_KEYS)


def _check_xdp(xdp: dict[str, Any], where: Where) -> None:
    """Checks between keys: the rings must fit the frames."""
    frames = xdp.get("frames_per_queue", XdpConfig.frames_per_queue)
    ring = xdp.get("ring_size", XdpConfig.ring_size)
    if frames < ring:
        # The fill ring is kept full; with fewer frames than its size the rx
        # path has nothing left for the tx and completion rings.
        key = "frames_per_queue" if "frames_per_queue" in xdp else "ring_size"
        raise where.error(key, f"frames_per_queue ({frames}) at least ring_size ({ring})")


def served_addresses(listen: Sequence[ListenAddress]) -> tuple[str, ...]:
    """The listen addresses XDP mode takes by default: neither wildcard nor
    loopback (loopback traffic never crosses a NIC)."""
    out = []
    for addr in listen:
        ip = ipaddress.ip_address(addr.host)
        if not ip.is_unspecified and not ip.is_loopback:
            out.append(str(ip))
    return tuple(dict.fromkeys(out))


def _zone_file(value: Any, where: Where, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise where.error(key, "the zone file's path (a string)", value)
    return where.base / value


def _as_given(value: Any, where: Where, key: str) -> Any:
    return value  # checked with the keys it goes with (parse_zone_acl)


def _zone_keys(keys: Mapping[dns.name.Name, TsigKey]) -> dict[str, Validator]:
    """The validators of a [[zone]] table's keys; ``keys`` are the [[key]]
    tables that its lists and remotes may name."""
    return {
        "file": _zone_file,
        "origin": parse_origin,
        "notify": lambda v, w, k: _parse_remotes(v, w, k, keys, NOTIFY_TARGETS, empty=True),
        "primaries": lambda v, w, k: _parse_remotes(v, w, k, keys, PRIMARIES),
        "allow_notify": lambda v, w, k: parse_key_list(v, w, k, keys),
        "dnssec": lambda v, w, k: _parse_signing(v, w.sub(f"{w.section}.dnssec"), w.base),
        **{key: _as_given for key in ZONE_ACL_KEYS},
    }


def _parse_zone(table: Any, where: Where, keys: Mapping[dns.name.Name, TsigKey]) -> ZoneConfig:
    if "primaries" in table:
        return _parse_secondary_zone(table, where, keys)
    if "file" not in table:
        raise where.error(
            "file", "the zone file's path (required), or primaries to transfer it from"
        )
    path = _zone_file(table["file"], where, "file")
    origin = (
        parse_origin(table["origin"], where, "origin")
        if "origin" in table
        else origin_from_file(path, where, "file")
    )
    try:
        values = parse_keys(table, where, where.section, _zone_keys(keys))
        if "allow_notify" in values:
            raise where.error("allow_notify", "no allow_notify: only a zone with primaries has it")
        acl = parse_zone_acl(values, where, keys)
    except ConfigError as exc:
        # zone[2] says where; the origin says which zone it is.
        raise ConfigError(f"{exc} (zone {origin})") from None
    return ZoneConfig(path, origin, acl, values.get("notify", ()), values.get("dnssec"))


def _parse_secondary_zone(
    table: Any, where: Where, keys: Mapping[dns.name.Name, TsigKey]
) -> ZoneConfig:
    """A zone transferred from its primaries: no file, no signing on load."""
    if "origin" not in table:
        raise where.error("origin", "the origin of a zone with primaries (required)")
    origin = parse_origin(table["origin"], where, "origin")
    try:
        # Before their values are read: a dnssec table's key files do not
        # matter in a zone that cannot have one.
        for key in ("file", "dnssec"):
            if key in table:
                raise where.error(
                    key,
                    f"no {key} in a zone with primaries: it is served as they transfer it "
                    "and kept in [server] storage",
                )
        values = parse_keys(table, where, where.section, _zone_keys(keys))
        acl = parse_zone_acl(values, where, keys)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (zone {origin})") from None
    return ZoneConfig(
        None,
        origin,
        acl,
        values.get("notify", ()),
        None,
        values["primaries"],
        values.get("allow_notify", ()),
    )


def _some_zone_keys(keys: Mapping[dns.name.Name, TsigKey], names) -> dict[str, Validator]:
    """The validators of those [[zone]] keys (as _zone_keys checks them)."""
    validators = _zone_keys(keys)
    return {name: validators[name] for name in names}


def _template_keys(keys: Mapping[dns.name.Name, TsigKey]) -> dict[str, Validator]:
    return _some_zone_keys(keys, ("notify",) + ZONE_ACL_KEYS)


def _parse_templates(
    value: Any, where: Where, keys: Mapping[dns.name.Name, TsigKey]
) -> dict[str, ZoneTemplate]:
    """[templates.NAME] tables: what a catalog's member zones get."""
    if not isinstance(value, Mapping):
        raise where.error("templates", "[templates.NAME] tables", value)
    templates = {}
    for name, table in value.items():
        at = where.sub(f"templates.{name}")
        values = parse_keys(table, at, f"templates.{name}", _template_keys(keys))
        templates[name] = ZoneTemplate(
            name, parse_zone_acl(values, at, keys), values.get("notify", ())
        )
    return templates


def _catalog_keys(keys: Mapping[dns.name.Name, TsigKey]) -> dict[str, Validator]:
    return {
        "zone": parse_origin,
        **_some_zone_keys(keys, ("primaries", "allow_notify")),
        "template": _as_given,
        **_some_zone_keys(keys, ZONE_ACL_KEYS),
    }


def _parse_catalog(
    table: Any,
    where: Where,
    keys: Mapping[dns.name.Name, TsigKey],
    templates: Mapping[str, ZoneTemplate],
) -> ZoneConfig:
    """A catalog zone (RFC 9432): a secondary zone whose members are too."""
    values = parse_keys(table, where, where.section, _catalog_keys(keys))
    for key in ("zone", "primaries"):
        if key not in values:
            what = "the catalog zone's name" if key == "zone" else PRIMARIES
            raise where.error(key, f"{what} (required)")
    default = None
    if "template" in values:
        name = values["template"]
        if not isinstance(name, str) or name not in templates:
            known = ", ".join(sorted(templates)) or "none"
            raise where.error("template", f"the name of a [templates.NAME] table ({known})", name)
        default = templates[name]
    return ZoneConfig(
        None,
        values["zone"],
        parse_zone_acl(values, where, keys),
        (),
        None,
        values["primaries"],
        values.get("allow_notify", ()),
        CatalogConfig(types.MappingProxyType(dict(templates)), default),
    )


def _parse_catalogs(
    value: Any,
    where: Where,
    keys: Mapping[dns.name.Name, TsigKey],
    templates: Mapping[str, ZoneTemplate],
) -> list[ZoneConfig]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise where.error("catalog", "[[catalog]] tables", value)
    return [
        _parse_catalog(table, where.sub(f"catalog[{i}]"), keys, templates)
        for i, table in enumerate(value, 1)
    ]


PRIMARIES = 'a non-empty list of primaries\' addresses, like ["198.51.100.1", "[2001:db8::1]:53"]'
NOTIFY_TARGETS = 'a list of secondaries\' addresses, like ["198.51.100.2", "[2001:db8::2]:53"]'


def _parse_remotes(
    value: Any,
    where: Where,
    key: str,
    keys: Mapping[dns.name.Name, TsigKey],
    expected: str,
    empty: bool = False,
) -> tuple[Remote, ...]:
    """Primaries (at least one) or NOTIFY targets: each once, in order."""
    if not isinstance(value, list) or not (value or empty):
        raise where.error(key, expected, value)
    remotes = [parse_remote(item, where, key, keys, expected) for item in value]
    return tuple(dict.fromkeys(remotes))


def _parse_zones(
    value: Any, where: Where, keys: Mapping[dns.name.Name, TsigKey]
) -> list[ZoneConfig]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise where.error("zone", "[[zone]] tables", value)
    return [_parse_zone(table, where.sub(f"zone[{i}]"), keys) for i, table in enumerate(value, 1)]


VALIDITY_MAX = 366 * 86400


def _signing_keys(value: Any, where: Where, key: str) -> tuple[Path, ...]:
    """Key files by their base name (a .key or .private name also does),
    relative to the configuration file; both files must exist."""
    if not isinstance(value, list) or not value or not all(isinstance(k, str) and k for k in value):
        raise where.error(
            key, 'a non-empty list of key file names like "Kexample.com.+013+12345"', value
        )
    bases = []
    for name in value:
        path = where.base / name.removesuffix(".key").removesuffix(".private")
        for suffix in (".key", ".private"):
            if not Path(f"{path}{suffix}").is_file():
                raise where.error(key, f"key files that exist ({path}{suffix} does not)", name)
        bases.append(path)
    return tuple(bases)


_SIGNING_KEYS: dict[str, Validator] = {
    "keys": _signing_keys,
    "nsec3": _flag,
    "validity": _in_range(3600, VALIDITY_MAX),
    "refresh": lambda v, w, k: _int_range(v, 600, VALIDITY_MAX, w, k),
}


def _parse_signing(table: Any, where: Where, base: Path) -> ZoneSigning:
    """dnssec = { keys = ["Kexample.com.+013+12345", ...], nsec3 = false,
    validity = 1209600, refresh = 604800 }: keys by the base of their
    files, relative to base (the configuration file's directory)."""
    if not isinstance(table, dict):
        raise where.error("", "a table { keys = [...], nsec3, validity, refresh }", table)
    values = parse_keys(table, dataclasses.replace(where, base=base), where.section, _SIGNING_KEYS)
    if "keys" not in values:
        raise where.error("keys", "a non-empty list of key file names (required)")
    validity = values.get("validity", ZoneSigning.validity)
    refresh = _int_range(
        values.get("refresh", ZoneSigning.refresh), 600, validity - 600, where, "refresh"
    )
    return ZoneSigning(values["keys"], values.get("nsec3", False), validity, refresh)


def _check_unique_origins(zones: Sequence[ZoneConfig], where: Where, key: str) -> None:
    seen: dict[dns.name.Name, str] = {}
    for z in zones:
        source = (
            str(z.file)
            if z.file is not None
            else "a [[catalog]]"
            if z.catalog is not None
            else "its primaries"
        )
        if z.origin in seen:
            raise where.error(
                key, f"each zone once; {z.origin} comes from both {seen[z.origin]} and {source}"
            )
        seen[z.origin] = source


def _plugin_sections(pm, where: Where) -> dict[str, tuple[Any, str]]:
    """Section name -> (ConfigSection, name of the plugin that owns it)."""
    sections: dict[str, tuple[Any, str]] = {}
    if pm is None:
        return sections
    # One plugin at a time, so that errors can say whose.
    for impl in pm.hook.config_sections.get_hookimpls():
        for section in impl.function() or ():
            if section.name in sections:
                first, second = sorted((sections[section.name][1], impl.plugin_name))
                raise where.error(
                    f"plugins.{section.name}",
                    f"a section owned by one plugin; plugins {first!r} and "
                    f"{second!r} both claim it",
                )
            sections[section.name] = (section, impl.plugin_name)
    return sections


def _parse_plugins(pm, tables: Any, where: Where) -> dict[str, Any]:
    sections = _plugin_sections(pm, where)
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise where.error("plugins", "[plugins.NAME] tables", tables)
    for name in tables:
        if name not in sections:
            known = ", ".join(f"plugins.{n}" for n in sorted(sections)) or "none"
            raise ConfigError(
                f"{where.file}: plugins.{name}: unknown section: no loaded "
                f"plugin owns it (known sections: {known})"
            )
    parsed = {}
    for name, (section, owner) in sections.items():
        w = where.sub(f"plugins.{name}")
        try:
            parsed[name] = section.parse(tables.get(name, {}), w)
        except ConfigError:
            raise
        except Exception as exc:  # a plugin's parser failing is still a config error
            raise ConfigError(
                f"{where.file}: plugins.{name}: the parser of plugin "
                f"{owner!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    return parsed


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


_SECTIONS = (
    "server",
    "key",
    "zone",
    "catalog",
    "templates",
    "xdp",
    "resolver",
    "metrics",
    "dnstap",
    "plugins",
)


def load_config(
    pm=None,
    path: str | os.PathLike | None = None,
    *,
    listen: Sequence[str] | None = None,
    zones: Sequence[str] | None = None,
    udp_workers: str | int | None = None,
    log_level: str | None = None,
    xdp_interface: str | None = None,
    control_socket: str | None = None,
) -> Config:
    """Reads the configuration file (if any) and applies command-line values.

    Command-line lists (``listen``, ``zones``) replace the file's lists.
    Without a file and without zones, the example zone is served.

    :param pm: the plugin manager, whose plugins own the [plugins.NAME]
        sections (None: no plugin sections are allowed).
    """
    data: dict[str, Any] = {}
    source = Path(path) if path is not None else None
    where = Where(COMMAND_LINE)
    if source is not None:
        data = read_toml(source)
        where = Where(str(source), base=source.parent)
    for key in data:
        if key not in _SECTIONS:
            raise where.error(
                key,
                "one of the sections [server], [[key]], [[zone]], [[catalog]], "
                "[templates.NAME], [xdp], [resolver], [metrics], [dnstap], [plugins.NAME] "
                "(unknown section)",
            )

    server = _parse_server(data.get("server", {}), where.sub("server"))
    xdp = _parse_xdp(data.get("xdp", {}), where.sub("xdp"))
    _check_xdp(xdp, where.sub("xdp"))
    resolver = _parse_resolver(data.get("resolver", {}), where.sub("resolver"))
    metrics = _parse_metrics(data.get("metrics", {}), where.sub("metrics"))
    dnstap = _parse_dnstap(data.get("dnstap", {}), where.sub("dnstap"))
    keys = _parse_tsig_keys(data.get("key", []), where)
    zone_list = _parse_zones(data.get("zone", []), where, keys)
    templates = _parse_templates(data.get("templates", {}), where, keys)
    zone_list += _parse_catalogs(data.get("catalog", []), where, keys, templates)
    _check_unique_origins(zone_list, where, "zone")
    plugins = _parse_plugins(pm, data.get("plugins", {}), where)

    cli = Where(COMMAND_LINE, base=Path())
    if listen:
        server["listen"] = _listen_list(list(listen), cli, "--listen")
    if udp_workers is not None:
        server["udp_workers"] = _positive_int(udp_workers, cli, "--udp-workers", 1024)
    if log_level is not None:
        server["log_level"] = _log_level(log_level, cli, "--log-level")
    if xdp_interface is not None:
        xdp["interface"] = _interface(xdp_interface, cli, "--xdp")
    if control_socket is not None:
        server["control_socket"] = _socket_path(control_socket, cli, "--control-socket")
    if zones:
        zone_list = [parse_zone_option(z, cli) for z in zones]
        _check_unique_origins(zone_list, cli, "--zone")
    elif source is None:
        zone_list = [ZoneConfig(default_zone_path(), dns.name.from_text("example.com."))]

    server.setdefault("listen", tuple(parse_listen(a, cli, "listen") for a in DEFAULT_LISTEN))
    server.setdefault("udp_workers", default_workers())
    xdp.setdefault("addresses", served_addresses(server["listen"]))
    return Config(
        server=ServerConfig(**server),
        zones=tuple(zone_list),
        plugins=types.MappingProxyType(plugins),
        source=source,
        xdp=XdpConfig(**xdp),
        resolver=resolver,
        metrics=metrics,
        dnstap=dnstap,
        keys=tuple(keys.values()),
    )
