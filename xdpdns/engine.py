"""The Python face of the C engine (native/engine.h).

This is the only module that imports the cffi extension.  It hides pointers
and buffers behind three small classes, turns negative errno returns into
``OSError(-rc, message)`` with the engine's own words, and frees every C
object deterministically (``close()`` or ``with``), with ``ffi.gc`` as the
fallback when an object is dropped without being closed.

cffi releases the GIL for the duration of every C call, so Python's callers
(the control socket, the resolver's hook threads) and the native workers
run in parallel.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import dns.name
import dns.rdata
import dns.rdataset
import dns.rcode
import dns.rdatatype

from xdpdns._engine import ffi, lib

__all__ = [
    "ClientAnswer",
    "AnswerEntry",
    "AnswersInfo",
    "COOKIE_STATES",
    "Engine",
    "Image",
    "ImageBuilder",
    "ImageInfo",
    "PORT_ACTIONS",
    "ProgStats",
    "Problem",
    "QueueStats",
    "RRL_KINDS",
    "RrlEvent",
    "TcpStats",
    "WorkerStats",
    "XdpInfo",
    "MAX_MESSAGE",
    "drop_privileges",
]

# The largest DNS message (RFC 1035 4.2.2: TCP length prefix of 16 bits).
MAX_MESSAGE = 65535


def _raise_for(rc: int, err=None, what: str = "") -> int:
    """Returns rc when it is not negative, else raises OSError(-rc, message).

    The message is the engine's (from err) when it wrote one, else strerror;
    ``what`` says which operation failed when the engine gave no words.
    """
    if rc >= 0:
        return rc
    message = ""
    if err is not None:
        message = ffi.string(err.message).decode("utf-8", "replace")
    if not message:
        message = os.strerror(-rc)
        if what:
            message = f"{what}: {message}"
    raise OSError(-rc, message)


def _wire(name: dns.name.Name, origin: dns.name.Name | None = None) -> bytes:
    if not name.is_absolute():
        if origin is None:
            raise ValueError(f"relative name {name} without an origin")
        name = name.derelativize(origin)
    return name.to_wire()


@dataclass(frozen=True)
class Problem:
    """One problem found in zone data: ``FILE:LINE: SEVERITY: MESSAGE``."""

    severity: str  # "error" or "warning"
    file: str | None
    line: int
    message: str

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        where = self.file or "-"
        if self.line:
            where = f"{where}:{self.line}"
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class ImageInfo:
    version: int
    zones: int
    names: int
    rrsets: int
    records: int
    bytes: int
    overrides: int = 0  # names with override rules
    zone_acls: int = 0  # zones with an ACL


@dataclass(frozen=True)
class WorkerStats:
    received: int
    answered: int
    dropped: int
    truncated: int
    batches: int
    denied: int = 0  # from sources the ACL denies (also in answered or dropped)
    limited: int = 0  # responses rate limiting withheld (dropped, or slipped)
    slipped: int = 0  # of those, sent truncated (also in answered)
    deferred: int = 0  # handed to the resolver hook (answered or dropped when it answers)
    resolver_full: int = 0  # SERVFAIL at once: the worker held as many as it may
    resolver_expired: int = 0  # SERVFAIL: the hook did not answer in time
    # Responses made, by RCODE name and by query type ("other": the types
    # without a counter of their own); only those seen.
    rcodes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    qtypes: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class TcpStats:
    """The TCP workers' counters, summed (xd_tcp_stats)."""

    connections: int = 0  # accepted and served
    open: int = 0  # open now
    rejected: int = 0  # closed at once: tcp_max_connections
    client_rejected: int = 0  # closed at once: tcp_max_client_connections
    received: int = 0  # queries read
    answered: int = 0  # responses written (a transfer counts once)
    dropped: int = 0  # queries that got no response
    denied: int = 0  # queries from sources the ACL denies (refused, or closed)
    denied_closed: int = 0  # connections closed: the ACL drops the client
    idle_closed: int = 0  # closed by tcp_idle_timeout
    io_timeouts: int = 0  # closed: a query or an answer stalled past tcp_io_timeout
    limit_closed: int = 0  # closed after tcp_max_queries or tcp_lifetime
    transfers: int = 0  # zone transfers sent whole
    transfers_refused: int = 0  # REFUSED: tcp_max_transfers were running
    transfers_failed: int = 0  # cut short: the client left or stalled
    deferred: int = 0  # as in WorkerStats
    resolver_full: int = 0
    resolver_expired: int = 0
    rcodes: Mapping[str, int] = dataclasses.field(default_factory=dict)  # as WorkerStats
    qtypes: Mapping[str, int] = dataclasses.field(default_factory=dict)


# What the XDP program does with UDP to a port; the codes come from
# bpf/xdpdns_maps.h through the cffi build.
PORT_ACTIONS = {
    "pass": lib.XD_ACTION_PASS,
    "redirect": lib.XD_ACTION_REDIRECT,
    "drop": lib.XD_ACTION_DROP,
}
_IDENTITY = {"version": lib.XD_IDENTITY_VERSION, "hostname": lib.XD_IDENTITY_HOSTNAME,
             "id": lib.XD_IDENTITY_ID, "nsid": lib.XD_IDENTITY_NSID}
# What a query for a name an override rule holds gets (XD_OVERRIDE_*).
_OVERRIDE_CODES = {"nxdomain": lib.XD_OVERRIDE_NXDOMAIN, "refused": lib.XD_OVERRIDE_REFUSED,
                   "nodata": lib.XD_OVERRIDE_NODATA, "answer": lib.XD_OVERRIDE_ANSWER,
                   # Names claimed by resolver plugins (xdpdns/resolver.py);
                   # not one of hookspecs.OVERRIDE_ACTIONS: no config sets it.
                   "resolver": lib.XD_OVERRIDE_RESOLVER}
_HUGEPAGES = {"off": lib.XD_HUGEPAGES_OFF, "auto": lib.XD_HUGEPAGES_AUTO,
              "required": lib.XD_HUGEPAGES_REQUIRED}
_ZEROCOPY = {"auto": lib.XD_ZEROCOPY_AUTO, "off": lib.XD_ZEROCOPY_OFF,
             "on": lib.XD_ZEROCOPY_REQUIRED}
_ATTACH = {"link": lib.XD_ATTACH_LINK, "dispatcher": lib.XD_ATTACH_DISPATCHER}


@dataclass(frozen=True)
class DnstapStats:
    """The dnstap writer's counters (struct xd_dnstap_stats)."""

    events: int             # queries sampled
    written: int            # messages written to the collector
    lost_full: int          # events lost to a full worker ring
    lost_unconnected: int   # messages lost while no collector listened
    connects: int
    connected: bool
    error: str              # why no collector is connected ("" when none)


@dataclass(frozen=True)
class XdpInfo:
    """What XDP mode ended up with (struct xd_xdp_info)."""

    interface: str
    queues: int
    first_queue: int
    native: bool  # XDP in driver mode, else generic
    zerocopy: bool
    busy_poll: bool  # the workers run the NIC's NAPI themselves
    hugepages: bool  # the UMEM is in hugepages
    numa_node: int  # the NIC's node, -1: none
    umem_bytes: int  # per queue
    warnings: tuple[str, ...]  # fallbacks taken
    attach: str = "link"  # [xdp] attach: "link" or "dispatcher"
    prog_id: int = 0  # the kernel's id of the XDP program

    @property
    def mode(self) -> str:
        return "native" if self.native else "generic"


@dataclass(frozen=True)
class QueueStats:
    """Counters of one AF_XDP queue worker (struct xd_queue_stats).

    ``frames_*`` say where the queue's UMEM frames are now; they add up to
    ``frames_total`` unless a frame leaked.
    """

    queue: int
    received: int
    answered: int
    dropped: int
    bad_checksum: int
    malformed: int
    truncated: int
    tx_full: int
    kicks: int
    batches: int
    frames_fill: int
    frames_rx: int
    frames_tx: int
    frames_free: int
    frames_total: int
    kernel_rx_dropped: int  # the kernel's XDP_STATISTICS for the socket:
    kernel_rx_ring_full: int  # queries lost before the worker saw them
    kernel_fill_empty: int
    cpu: int
    limited: int = 0  # responses rate limiting withheld (dropped, or slipped)
    slipped: int = 0  # of those, sent truncated (also in answered)
    deferred: int = 0  # as in WorkerStats
    resolver_full: int = 0
    resolver_expired: int = 0
    busy_polls: int = 0  # busy polls of an empty rx ring (spinning)
    sleeps: int = 0  # times the worker slept in poll() (idle)
    rcodes: Mapping[str, int] = dataclasses.field(default_factory=dict)  # as WorkerStats
    qtypes: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def frames_accounted(self) -> int:
        return self.frames_fill + self.frames_rx + self.frames_tx + self.frames_free


@dataclass(frozen=True)
class ProgStats:
    """The XDP program's counters, of one CPU or summed (struct xd_prog_stats)."""

    seen: int
    redirected: int
    passed: int
    dropped: int
    malformed: int
    denied: int = 0  # dropped for the source ACL (not in dropped)
    answered_in_xdp: int = 0  # answered by the program itself (XDP_TX)
    # Of those, by RCODE name ("NOERROR": 12, ...); only RCODEs it sent.
    answered_in_xdp_rcodes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # Table answers rate limiting dropped or sent truncated, and of those
    # the truncated ones.
    rate_limited: int = 0
    slipped: int = 0
    # The program's answers by query type, as WorkerStats.qtypes.
    answered_in_xdp_qtypes: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class AnswerEntry:
    """One entry of the XDP program's answer table (struct xd_answers_entry)."""

    name: dns.name.Name
    qtype: int  # 0 with qclass 0: the name's answer to every type without an entry
    qclass: int
    to_worker: bool  # the worker answers this type (too long, or client-dependent)
    dnssec: bool  # the answer to a query with DO=1 (a name whose answers DO changes)
    also_do: bool  # also the answer (or the worker's) with DO=1
    flags: int  # the header's AA and RCODE bits
    counts: tuple[int, int, int]  # answer, authority, additional (no OPT)
    sections: bytes  # what follows the question, pointers relative to offset 12
    csum: int  # the sections' ones' complement sum (memory-order words)


@dataclass(frozen=True)
class AnswersInfo:
    """Where the XDP program's answer table stands (struct xd_answers_info)."""

    state: str  # "off", "on", "paused" (rate limiting is on) or "failed"
    names: int  # names asked about
    entries: int  # keys in the table
    do_entries: int  # of those, answers with DO=1 (names of signed zones)
    skipped: int  # answers left to the workers (too long, client-dependent)
    pages: int
    bytes: int  # the maps' kernel memory (about)
    compile_seconds: float
    install_seconds: float
    message: str  # why it is not on


class _CObject:
    """Owns one C object: freed by close() or a ``with`` block, and by
    ``ffi.gc`` when dropped without either.  ``_closed`` is what using it
    after that says."""

    _closed = "closed"
    _c = None

    def _own(self, ptr, free) -> None:
        self._c = ffi.gc(ptr, free)

    def _ptr(self):
        if self._c is None:
            raise ValueError(self._closed)
        return self._c

    def close(self) -> None:
        if self._c is not None:
            ffi.release(self._c)
            self._c = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageBuilder(_CObject):
    """Collects zones and records and compiles them into an :class:`Image`.

    Zone files go to libzscanner in C (:meth:`load_zonefile`); records that
    plugins hand over as dnspython rdatasets go through :meth:`add_rdataset`
    in uncompressed wire form.  Both end in the same builder and the same
    checks.
    """

    _closed = "the image builder is closed"

    def __init__(self) -> None:
        ptr = lib.xd_builder_new()
        if ptr == ffi.NULL:
            raise MemoryError("xd_builder_new")
        self._own(ptr, lib.xd_builder_free)
        self._origins: dict[int, dns.name.Name] = {}

    def add_source(self, path: str | os.PathLike) -> int:
        """Registers a file name for problem reports; returns its index."""
        rc = lib.xd_builder_add_source(self._ptr(), os.fsencode(path))
        return _raise_for(rc, what=f"add_source {path}")

    def source(self, index: int) -> str | None:
        if index < 0:
            return None
        p = lib.xd_builder_source(self._ptr(), index)
        if p == ffi.NULL:
            return None
        return os.fsdecode(ffi.string(p))

    def add_zone(self, origin: dns.name.Name) -> int:
        """Adds a zone; returns its index.

        Raises FileExistsError for a zone added twice (the builder also
        records that as a problem) and ValueError for a relative origin.
        """
        if not origin.is_absolute():
            raise ValueError(f"zone origin {origin} is not absolute")
        wire = origin.to_wire()
        err = ffi.new("struct xd_error *")
        rc = lib.xd_builder_add_zone(self._ptr(), wire, len(wire), err)
        index = _raise_for(rc, err, f"add_zone {origin}")
        self._origins[index] = origin
        return index

    def add_rdataset(
        self,
        zone: int,
        name: dns.name.Name,
        rdataset: dns.rdataset.Rdataset,
        source: int = -1,
        line: int = 0,
    ) -> int:
        """Adds every record of an rdataset to zone ``zone``.

        Relative names (the owner and names inside rdata) are taken relative
        to the zone's origin.  Records the builder rejects become problems,
        not exceptions; returns how many records were accepted.
        """
        origin = self._origins.get(zone)
        owner = _wire(name, origin)
        b = self._ptr()
        accepted = 0
        for rdata in rdataset:
            rd = rdata.to_wire(origin=origin)
            rc = lib.xd_builder_add_record(
                b, zone, owner, len(owner), rdataset.rdtype, rdataset.rdclass,
                rdataset.ttl, rd, len(rd), source, line,
            )
            if rc == -errno.EINVAL:
                continue  # recorded as a problem by the builder
            _raise_for(rc, what=f"add_record {name}")
            accepted += 1
        return accepted

    def add_records(
        self,
        zone: int,
        records: Iterable[tuple[dns.name.Name, dns.rdataset.Rdataset]],
        source: int = -1,
    ) -> int:
        """Adds (name, rdataset) pairs; returns how many records were accepted."""
        return sum(self.add_rdataset(zone, n, rds, source) for n, rds in records)

    def load_zonefile(self, zone: int, path: str | os.PathLike, default_ttl: int = 3600) -> bool:
        """Reads a master file into zone ``zone`` with libzscanner.

        Every error (syntax, unreadable file) is recorded as a problem with
        its file and line; returns True when the file read without errors.
        """
        rc = lib.xd_builder_load_zonefile(self._ptr(), zone, os.fsencode(path), default_ttl)
        if rc == -errno.ENOMEM:
            raise MemoryError(f"loading {path}")
        return rc == 0

    def add_problem(self, severity: str, message: str, source: int = -1, line: int = 0) -> None:
        level = lib.XD_PROBLEM_ERROR if severity == "error" else lib.XD_PROBLEM_WARNING
        rc = lib.xd_builder_add_problem(self._ptr(), level, source, line, message.encode())
        _raise_for(rc, what="add_problem")

    def set_identity(self, item: str, value: bytes) -> None:
        """Sets what the image says about the server: ``item`` is "version",
        "hostname" or "id" (CHAOS TXT answers) or "nsid" (the EDNS NSID
        option), ``value`` at most 255 bytes.  Items never set stay hidden."""
        if item not in _IDENTITY:
            raise ValueError(f"identity item {item!r}: expected one of " + ", ".join(_IDENTITY))
        if len(value) > 255:
            raise ValueError(f"identity {item}: {len(value)} bytes, at most 255")
        _raise_for(lib.xd_builder_set_identity(self._ptr(), _IDENTITY[item], value, len(value)),
                   what=f"identity {item}")

    def add_override_rule(self, action: str, ttl: int = 0,
                          records: Iterable[dns.rdata.Rdata] = ()) -> int:
        """Creates an override rule that names then share (:meth:`add_override`,
        :meth:`load_blocklist`): ``action`` is "nxdomain", "refused", "nodata"
        or "answer", whose ``records`` (class IN, names in them absolute) go
        out owned by the query name with TTL ``ttl``.  Returns the rule's
        index; raises ValueError for records the engine refuses (a CNAME
        beside other data, a meta type)."""
        if action not in _OVERRIDE_CODES:
            raise ValueError(f"override action {action!r}: expected one of "
                             + ", ".join(_OVERRIDE_CODES))
        b = self._ptr()
        err = ffi.new("struct xd_error *")
        rule = _raise_for(lib.xd_builder_add_override_rule(b, _OVERRIDE_CODES[action], ttl, err),
                          err, "override rule")
        for rdata in records:
            try:
                wire = rdata.to_wire()
            except dns.name.NeedAbsoluteNameOrOrigin:
                raise ValueError(f"override record {rdata}: names must be absolute") from None
            rc = lib.xd_builder_add_override_record(b, rule, rdata.rdtype, wire, len(wire), err)
            if rc == -errno.EINVAL:
                raise ValueError(f"override record {dns.rdatatype.to_text(rdata.rdtype)} "
                                 f"{rdata}: " + ffi.string(err.message).decode("utf-8", "replace"))
            _raise_for(rc, err, "override record")
        return rule

    def add_override(self, name: dns.name.Name, rule: int, subtree: bool = False) -> bool:
        """Applies rule ``rule`` to ``name`` (with ``subtree``, also to every
        name below it).  False when the name had a rule of that kind already:
        the first one added stays, so add in order of precedence."""
        if not name.is_absolute():
            raise ValueError(f"override name {name} is not absolute")
        wire = name.to_wire()
        err = ffi.new("struct xd_error *")
        rc = lib.xd_builder_add_override(self._ptr(), wire, len(wire), 1 if subtree else 0,
                                         rule, err)
        return _raise_for(rc, err, f"override {name}") == 1

    def load_blocklist(self, path: str | os.PathLike, rule: int, subtree: bool = False) -> bool:
        """Applies rule ``rule`` to every name of a blocklist file (one name
        per line, ``*.NAME`` for a subtree, ``#`` comments), read natively.
        Bad lines and an unreadable file become problems with the file and
        line; returns True when the file read without errors."""
        err = ffi.new("struct xd_error *")
        rc = lib.xd_builder_load_blocklist(self._ptr(), os.fsencode(path), rule,
                                           1 if subtree else 0, err)
        if rc == -errno.ENOMEM:
            raise MemoryError(f"loading {path}")
        if rc == -errno.E2BIG:
            _raise_for(rc, err)
        return rc == 0

    def set_zone_acl(self, zone: int, kind: str,
                     rules: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]],
                     default: str) -> None:
        """Sets who may query (``kind`` "query") or transfer ("transfer")
        zone ``zone``: ``rules`` are (prefix, "allow" | "deny") pairs, the
        longest prefix holding a client decides, ``default`` is for clients
        no prefix holds (and clients of unknown family).  A prefix given
        twice keeps its first rule.  A list never set lets every client
        query and none transfer.  ValueError for what the engine refuses."""
        if kind not in _ZONE_ACL_LISTS:
            raise ValueError(f"zone ACL {kind!r}: expected one of " + ", ".join(_ZONE_ACL_LISTS))
        if default not in ACL_ACTIONS:
            raise ValueError(f"zone ACL default {default!r}: expected one of "
                             + ", ".join(ACL_ACTIONS))
        rules = list(rules)
        err = ffi.new("struct xd_error *")
        rc = lib.xd_builder_set_zone_acl(self._ptr(), zone, _ZONE_ACL_LISTS[kind],
                                         _acl_rules(rules), len(rules), ACL_ACTIONS[default], err)
        if rc in (-errno.EINVAL, -errno.E2BIG):
            raise ValueError(ffi.string(err.message).decode("utf-8", "replace"))
        _raise_for(rc, err, f"zone ACL {kind}")

    def sign_zone(self, zone: int, keys: Sequence["SigningKey"], nsec3: bool,
                  inception: int, expiration: int, previous: "Image | None" = None,
                  keep_after: int = 0) -> "SigningReport":
        """Signs zone ``zone`` with ``keys`` (native/zone/zone_sign.c): DNSKEYs,
        the NSEC or NSEC3 chain, RRSIGs valid from ``inception`` to
        ``expiration`` (UNIX times).  Before :meth:`check`.

        With ``previous`` (the image being served), its RRSIGs over RRsets
        that did not change are kept when they expire after ``keep_after``
        rather than made again; ``previous`` must stay published until
        this returns."""
        ptrs = ffi.new("struct xd_sign_key *[]", [k._ptr() for k in keys])
        cfg = ffi.new("struct xd_zone_sign_config *")
        cfg.keys, cfg.nkeys, cfg.nsec3 = ptrs, len(keys), int(nsec3)
        cfg.inception, cfg.expiration = inception, expiration
        if previous is not None:
            cfg.previous, cfg.keep_after = previous._ptr(), keep_after
        report = ffi.new("struct xd_zone_sign_report *")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_builder_sign_zone(self._ptr(), zone, cfg, report, err), err,
                   "signing the zone")
        return SigningReport(report.made, report.kept, report.earliest_expiration)

    def check(self) -> int:
        """Runs the zone checks (recording problems); returns the number of errors."""
        return _raise_for(lib.xd_builder_check(self._ptr()), what="zone checks")

    def problems(self) -> list[Problem]:
        b = self._ptr()
        out = ffi.new("struct xd_problem *")
        result = []
        for i in range(lib.xd_builder_problem_count(b)):
            _raise_for(lib.xd_builder_problem(b, i, out), what="problem")
            severity = "error" if out.severity == lib.XD_PROBLEM_ERROR else "warning"
            result.append(Problem(
                severity,
                self.source(out.source),
                out.line,
                ffi.string(out.message).decode("utf-8", "replace"),
            ))
        return result

    def finish(self) -> "Image":
        """Checks and compiles everything added into an image."""
        out = ffi.new("struct xd_image **")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_builder_finish(self._ptr(), out, err), err, "building the zone image")
        return Image(out[0])


def _image_info(ptr) -> "ImageInfo":
    info = ffi.new("struct xd_image_info *")
    lib.xd_image_info(ptr, info)
    return ImageInfo(info.version, info.zones, info.names, info.rrsets, info.records,
                     info.bytes, info.overrides, info.zone_acls)


class Image(_CObject):
    """An immutable, position-independent zone image."""

    _closed = "the image was closed or handed to an engine"

    def __init__(self, ptr) -> None:
        # Private: images come from ImageBuilder.finish or Image.from_bytes.
        if ptr == ffi.NULL:
            raise ValueError("NULL image")
        self._own(ptr, lib.xd_image_free)
        self.info = _image_info(self._c)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Image":
        """Validates serialized image bytes (raises OSError with the reason)."""
        out = ffi.new("struct xd_image **")
        err = ffi.new("struct xd_error *")
        buf = ffi.from_buffer("uint8_t[]", data)
        _raise_for(lib.xd_image_load(buf, len(data), out, err), err, "loading the zone image")
        return cls(out[0])

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Image":
        return cls.from_bytes(Path(path).read_bytes())

    def answer_table(self, entries: bool = True) -> tuple["AnswersInfo", list["AnswerEntry"]]:
        """The answer table the XDP program would get for this image (what
        XDP mode compiles when the image is published), and its entries
        (none with ``entries`` False: the figures alone, for large zones)."""
        out = ffi.new("struct xd_answers **")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_answers_compile(self._ptr(), out, err), err,
                   "compiling the answer table")
        table = ffi.gc(out[0], lib.xd_answers_free)
        try:
            info = ffi.new("struct xd_answers_info *")
            lib.xd_answers_info_get(table, info)
            found: list[AnswerEntry] = []
            entry = ffi.new("struct xd_answers_entry *")
            for i in range(info.entries if entries else 0):
                _raise_for(lib.xd_answers_entry_get(table, i, entry), what="answer table")
                sections = (bytes(ffi.buffer(entry.sections, entry.len))
                            if entry.sections != ffi.NULL else b"")
                found.append(AnswerEntry(
                    name=dns.name.from_wire(bytes(entry.name[0:entry.name_len]), 0)[0],
                    qtype=entry.qtype, qclass=entry.qclass,
                    to_worker=entry.action == lib.XD_ANSWER_TO_WORKER,
                    dnssec=entry.variant == 1, also_do=bool(entry.also_do), flags=entry.flags,
                    counts=(entry.count[0], entry.count[1], entry.count[2]),
                    sections=sections, csum=entry.csum))
            return _answers_info(info), found
        finally:
            ffi.release(table)

    def to_bytes(self) -> bytes:
        size = ffi.new("size_t *")
        data = lib.xd_image_data(self._ptr(), size)
        return bytes(ffi.buffer(data, size[0]))

    def zone_allows(self, origin: dns.name.Name, kind: str, client: str | None) -> bool:
        """Whether zone ``origin``'s ACL lets ``client`` (an IP address;
        None: unknown) query (``kind`` "query") or transfer it ("transfer"),
        as the answering core decides.  KeyError for a zone not in the image."""
        if kind not in _ZONE_ACL_LISTS:
            raise ValueError(f"zone ACL {kind!r}: expected one of " + ", ".join(_ZONE_ACL_LISTS))
        wire = origin.to_wire()
        rc = lib.xd_image_zone_allows(self._ptr(), wire, len(wire), _ZONE_ACL_LISTS[kind],
                                      _client(client))
        if rc == -errno.ENOENT:
            raise KeyError(f"no zone {origin} in the image")
        return _raise_for(rc, what=f"zone ACL of {origin}") == 1

    def answer(self, query: bytes, tcp: bool = False) -> bytes | None:
        """Answers one query with this image (no engine needed); see Engine.answer."""
        return _answer(lambda q, n, r, c, f: lib.xd_answer(self._ptr(), q, n, r, c, f), query, tcp)

    def _take(self):
        """Hands the C image over to a new owner (the engine)."""
        ptr = self._ptr()
        raw = ffi.cast("struct xd_image *", ptr)
        ffi.gc(ptr, None)  # detaches the destructor (and returns None)
        self._c = None
        return raw


class PublishedImage(Image):
    """The image an engine serves, borrowed (Engine.published_image): valid
    until that engine publishes another one; closing it only forgets it."""

    _closed = "the published image was let go"

    def __init__(self, ptr) -> None:
        if ptr == ffi.NULL:
            raise ValueError("NULL image")
        self._c = ffi.cast("struct xd_image *", ptr)
        self.info = _image_info(self._c)

    def close(self) -> None:
        self._c = None

    def _take(self):
        raise ValueError("a published image belongs to its engine")


_buffers = threading.local()


class _Deferred:
    """What Engine.answer(defer=True) returns for a query that the resolver
    hook must answer: the name is claimed and the cache has no answer."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = _Deferred()


def _answer(call, query: bytes, tcp: bool, defer: bool = False):
    # One response buffer per thread: the resolver's threads and tests may answer
    # from several threads at once, and a fresh 64 KiB buffer per query costs.
    resp = getattr(_buffers, "resp", None)
    if resp is None:
        resp = _buffers.resp = ffi.new("uint8_t[]", MAX_MESSAGE)
    q = ffi.from_buffer("uint8_t[]", query)
    flags = (lib.XD_ANSWER_TCP if tcp else 0) | (lib.XD_ANSWER_DEFER if defer else 0)
    rc = call(q, len(query), resp, MAX_MESSAGE, flags)
    if defer and rc == -errno.EAGAIN:
        return DEFERRED
    _raise_for(rc, what="answer")
    if rc == 0:
        return None
    return bytes(ffi.buffer(resp, rc))


class Engine(_CObject):
    """The published image and the socket-mode UDP workers; close() stops
    the workers and frees the engine and its image."""

    _closed = "the engine is closed"

    def __init__(self) -> None:
        out = ffi.new("struct xd_engine **")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_new(out, err), err, "creating the engine")
        self._own(out[0], lib.xd_engine_free)
        self.image_info: ImageInfo | None = None

    def set_image(self, image: Image) -> None:
        """Publishes image; the engine owns it from now on (image is emptied)."""
        info = image.info
        ptr = image._take()
        rc = lib.xd_engine_set_image(self._ptr(), ptr)
        if rc < 0:
            lib.xd_image_free(ptr)
        _raise_for(rc, what="publishing the zone image")
        self.image_info = info

    def published_image(self) -> PublishedImage | None:
        """The image being served, borrowed until the next set_image (which
        only the caller's thread may make while it holds it); None before
        the first."""
        ptr = lib.xd_engine_image(self._ptr())
        return None if ptr == ffi.NULL else PublishedImage(ptr)

    def answer(self, query: bytes, tcp: bool = False, client: str | None = None,
               now: int | None = None, defer: bool = False):
        """Answers one DNS message; None when nothing must be sent back.

        With tcp=True there is no UDP size limit (the caller writes the
        two-byte length prefix).  ``client`` (the sender's IP address) and
        ``now`` (UNIX time; default: the clock) are what DNS cookies depend
        on; without a client the COOKIE option is ignored.  A name that a
        resolver plugin claims is answered from the resolver cache, else
        SERVFAIL, or with ``defer`` :data:`DEFERRED` (the caller asks the
        resolver, xdpdns/resolver.py).
        """
        return self.answer_client(query, client, tcp=tcp, now=now, defer=defer).wire

    def failure(self) -> str | None:
        """Why a worker thread stopped for an error (the first one), or None
        while every worker runs."""
        out = ffi.new("char[256]")
        if lib.xd_engine_failure(self._ptr(), out, len(out)):
            return ffi.string(out).decode("utf-8", "replace")
        return None

    def udp_start(self, listen: Sequence[tuple[str, int]], workers: int) -> list[int]:
        """Starts UDP workers on every (host, port); returns the bound ports."""
        err = ffi.new("struct xd_error *")
        e = self._ptr()
        _raise_for(lib.xd_engine_udp_start(e, _listen_array(listen), len(listen), workers, err),
                   err, "starting UDP workers")
        return [_raise_for(lib.xd_engine_udp_port(e, i)) for i in range(len(listen))]

    def udp_stop(self) -> None:
        _raise_for(lib.xd_engine_udp_stop(self._ptr()), what="stopping UDP workers")

    def tcp_start(self, listen: Sequence[tuple[str, int]], *, workers: int = 1,
                  max_connections: int = 256, max_client_connections: int = 32,
                  idle_timeout: float = 10.0, io_timeout: float = 0.5,
                  max_queries: int = 0, lifetime: float = 0.0,
                  max_transfers: int = 10) -> list[int]:
        """Starts the TCP workers on every (host, port), with the limits of
        [server]'s tcp_* keys (times in seconds); returns the bound ports."""
        cfg = ffi.new("struct xd_tcp_config *", {
            "workers": workers, "max_connections": max_connections,
            "max_client_connections": max_client_connections,
            "idle_timeout_ms": _ms(idle_timeout), "io_timeout_ms": _ms(io_timeout),
            "max_queries": max_queries, "lifetime_ms": _ms(lifetime),
            "max_transfers": max_transfers})
        err = ffi.new("struct xd_error *")
        e = self._ptr()
        _raise_for(lib.xd_engine_tcp_start(e, _listen_array(listen), len(listen), cfg, err),
                   err, "starting TCP workers")
        return [_raise_for(lib.xd_engine_tcp_port(e, i)) for i in range(len(listen))]

    def tcp_stop(self) -> None:
        """Closes every TCP connection and stops the TCP workers."""
        _raise_for(lib.xd_engine_tcp_stop(self._ptr()), what="stopping TCP workers")

    def tcp_stats(self) -> TcpStats:
        out = ffi.new("struct xd_tcp_stats *")
        lib.xd_engine_tcp_stats(self._ptr(), out)
        c = out.core
        return TcpStats(
            connections=out.connections, open=out.open, rejected=out.rejected,
            client_rejected=out.client_rejected, received=c.received, answered=c.answered,
            dropped=c.dropped, denied=c.denied, denied_closed=out.denied_closed,
            idle_closed=out.idle_closed, io_timeouts=out.io_timeouts,
            limit_closed=out.limit_closed, transfers=out.transfers,
            transfers_refused=out.transfers_refused, transfers_failed=out.transfers_failed,
            deferred=c.deferred, resolver_full=c.resolver_full,
            resolver_expired=c.resolver_expired, rcodes=_rcode_counts(c.rcode),
            qtypes=_qtype_counts(c.qtype))

    def worker_stats(self) -> list[WorkerStats]:
        e = self._ptr()
        out = ffi.new("struct xd_worker_stats *")
        result = []
        for i in range(lib.xd_engine_worker_count(e)):
            _raise_for(lib.xd_engine_worker_stats(e, i, out), what="worker stats")
            result.append(WorkerStats(out.received, out.answered, out.dropped,
                                      out.truncated, out.batches, out.denied,
                                      out.limited, out.slipped, out.deferred,
                                      out.resolver_full, out.resolver_expired,
                                      _rcode_counts(out.rcode), _qtype_counts(out.qtype)))
        return result

    # ---- XDP mode ----------------------------------------------------------

    def xdp_start(self, config, bpf_object: str | os.PathLike | None = None) -> XdpInfo:
        """Attaches the XDP program to ``config.interface`` and starts one
        AF_XDP worker per queue.

        ``config`` is an :class:`xdpdns.config.XdpConfig` (or anything with
        its attributes).  Nothing is redirected until :meth:`xdp_set_port`
        says so.  Raises OSError with the engine's message (a verifier
        rejection carries the verifier's last lines); on failure nothing
        stays attached.
        """
        if bpf_object is None:
            from xdpdns.bpfobj import bpf_object_path

            bpf_object = bpf_object_path()
        cfg = ffi.new("struct xd_xdp_config *")
        _set_chars(cfg, "ifname", config.interface, "interface name")
        _set_chars(cfg, "bpf_object", os.fsdecode(bpf_object), "BPF object path")
        cfg.queues = config.queues
        cfg.first_queue = config.first_queue
        cfg.frames_per_queue = config.frames_per_queue
        cfg.frame_size = config.frame_size
        cfg.ring_size = config.ring_size
        cfg.hugepages = _HUGEPAGES[config.hugepages]
        cfg.hugepage_mb = config.hugepage_mb
        cfg.zerocopy = _ZEROCOPY[config.zerocopy]
        cfg.generic = 1 if config.mode == "generic" else 0
        cfg.verify_checksums = 1 if config.verify_checksums else 0
        cfg.busy_poll = 1 if config.busy_poll else 0
        cfg.answers = _ANSWERS[config.answers]
        cfg.busy_poll_wait_us = config.busy_poll_wait_us
        cfg.attach = _ATTACH[getattr(config, "attach", "link")]
        info = ffi.new("struct xd_xdp_info *")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_xdp_start(self._ptr(), cfg, info, err), err,
                   f"starting XDP mode on {config.interface}")
        warnings = ffi.string(info.warnings).decode("utf-8", "replace")
        return XdpInfo(
            interface=config.interface,
            queues=info.queues,
            first_queue=info.first_queue,
            native=bool(info.native),
            zerocopy=bool(info.zerocopy),
            busy_poll=bool(info.busy_poll),
            hugepages=bool(info.hugepages),
            numa_node=info.numa_node,
            umem_bytes=info.umem_bytes,
            warnings=tuple(w for w in warnings.splitlines() if w.strip()),
            attach=getattr(config, "attach", "link"),
            prog_id=info.prog_id,
        )

    def xdp_stop(self) -> None:
        """Stops the AF_XDP workers and detaches the program (idempotent)."""
        _raise_for(lib.xd_engine_xdp_stop(self._ptr()), what="stopping XDP mode")

    def xdp_set_port(self, port: int, action: str) -> None:
        """Sets what the program does with UDP to ``port`` on every CPU:
        "redirect" (to the queue's worker), "pass" (to the kernel) or "drop"."""
        if action not in PORT_ACTIONS:
            raise ValueError(f"port action {action!r}: expected one of "
                             + ", ".join(PORT_ACTIONS))
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_xdp_set_port(self._ptr(), port, PORT_ACTIONS[action], err),
                   err, f"setting the action of UDP port {port}")

    def xdp_port_actions(self, port: int) -> list[int]:
        """The action codes (PORT_ACTIONS values) that every possible CPU's
        slot of ``port`` holds, read back from the per-CPU map."""
        e = self._ptr()
        size = max(1, os.cpu_count() or 1)
        while True:
            actions = ffi.new("uint32_t[]", size)
            n = _raise_for(lib.xd_engine_xdp_port_actions(e, port, actions, size),
                           what=f"reading the action of UDP port {port}")
            if n <= size:
                return list(actions[0:n])
            size = n

    def xdp_add_address(self, address: str) -> None:
        """Takes only packets to the added addresses (with none: every one)."""
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_xdp_add_address(self._ptr(), family, ip.packed, err), err,
                   f"adding the address {ip}")

    def xdp_queue_stats(self) -> list[QueueStats]:
        """One entry per AF_XDP queue (empty when XDP mode is off)."""
        e = self._ptr()
        out = ffi.new("struct xd_queue_stats *")
        result = []
        for i in range(max(0, lib.xd_engine_xdp_queue_count(e))):
            _raise_for(lib.xd_engine_xdp_queue_stats(e, i, out), what="queue stats")
            c = out.core
            result.append(QueueStats(
                i, c.received, c.answered, c.dropped, out.bad_checksum,
                out.malformed, c.truncated, out.tx_full, out.kicks, c.batches,
                out.frames_fill, out.frames_rx, out.frames_tx, out.frames_free,
                out.frames_total, out.kernel_rx_dropped, out.kernel_rx_ring_full,
                out.kernel_fill_empty, out.cpu, c.limited, c.slipped, c.deferred,
                c.resolver_full, c.resolver_expired, out.busy_polls, out.sleeps,
                _rcode_counts(c.rcode), _qtype_counts(c.qtype)))
        return result

    def xdp_prog_stats(self, cpu: int | None = None) -> ProgStats:
        """The XDP program's counters on one CPU, or summed (cpu None)."""
        out = ffi.new("struct xd_prog_stats *")
        _raise_for(lib.xd_engine_xdp_prog_stats(self._ptr(), -1 if cpu is None else cpu, out),
                   what="XDP program stats")
        return _prog_stats(out)

    def xdp_answers_info(self) -> AnswersInfo:
        """The XDP program's answer table: state, size, how long it took."""
        out = ffi.new("struct xd_answers_info *")
        _raise_for(lib.xd_engine_xdp_answers_info(self._ptr(), out), what="answer table")
        return _answers_info(out)

    def xdp_prog_stats_per_cpu(self) -> list[ProgStats]:
        """The XDP program's counters, one entry per possible CPU."""
        e = self._ptr()
        out = ffi.new("struct xd_prog_stats *")
        ncpus = _raise_for(lib.xd_engine_xdp_prog_stats(e, -1, out), what="XDP program stats")
        result = []
        for cpu in range(ncpus):
            _raise_for(lib.xd_engine_xdp_prog_stats(e, cpu, out), what="XDP program stats")
            result.append(_prog_stats(out))
        return result

    # ---- the source address ACL ----------------------------------------------

    def acl_set(
        self,
        rules: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]],
        default: str = "allow",
        socket_action: str = "refuse",
    ) -> None:
        """Replaces the source ACL: ``rules`` are (prefix, "allow" | "deny")
        pairs, the longest prefix holding a source decides, ``default`` is
        for sources no prefix holds, and ``socket_action`` ("refuse" or
        "drop") is what socket mode does with denied sources (XDP mode drops
        them in the XDP program).  A prefix given twice keeps its first
        rule.  Socket-mode workers and, when XDP mode runs, the XDP program
        switch to the new rules at once; on failure the old ones stay."""
        rules = list(rules)
        if default not in ACL_ACTIONS:
            raise ValueError(f"ACL default {default!r}: expected one of "
                             + ", ".join(ACL_ACTIONS))
        if socket_action not in ACL_SOCKET_ACTIONS:
            raise ValueError(f"ACL socket action {socket_action!r}: expected one of "
                             + ", ".join(ACL_SOCKET_ACTIONS))
        c_rules = _acl_rules(rules)
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_acl_set(self._ptr(), c_rules, len(rules), ACL_ACTIONS[default],
                                         ACL_SOCKET_ACTIONS[socket_action], err),
                   err, "setting the source ACL")

    def acl_check(self, address: str) -> str:
        """What socket mode does with a query from ``address``: "answer",
        "refuse" (REFUSED) or "drop"."""
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        verdict = _raise_for(lib.xd_engine_acl_check(self._ptr(), family, ip.packed),
                             what=f"checking {ip} against the source ACL")
        return _VERDICTS[verdict]

    @staticmethod
    def refused(query: bytes) -> bytes | None:
        """The REFUSED response to ``query`` (its ID, opcode and question
        echoed; OPT when it had one), what a denied source gets; None when
        nothing must be sent back (the message is itself a response)."""
        return _answer(lambda q, n, r, c, f: lib.xd_answer_refused(q, n, r, c), query, False)

    # ---- DNS cookies (RFC 7873, RFC 9018) --------------------------------------

    def set_cookie_secrets(self, current: bytes | None, previous: bytes | None = None,
                           require: bool = False) -> None:
        """Turns DNS cookies on with ``current`` (16 bytes: every new server
        cookie is made with it) and ``previous`` (16 bytes or None: still
        accepted during a rotation); ``require``: UDP queries with a client
        cookie but no valid server cookie get BADCOOKIE instead of an
        answer.  ``current`` None turns cookies off.  Workers switch at once."""
        for name, secret in (("current", current), ("previous", previous)):
            if secret is not None and len(secret) != lib.XD_COOKIE_SECRET_LEN:
                raise ValueError(f"{name} cookie secret: {len(secret)} bytes, expected "
                                 f"{lib.XD_COOKIE_SECRET_LEN}")
        err = ffi.new("struct xd_error *")
        flags = lib.XD_COOKIE_REQUIRE_UDP if require else 0
        _raise_for(lib.xd_engine_set_cookie_secrets(
            self._ptr(), ffi.NULL if current is None else current,
            ffi.NULL if previous is None else previous, flags, err), err,
            "setting the cookie secrets")

    # ---- response rate limiting ------------------------------------------------

    def set_rrl(self, settings) -> None:
        """Turns rate limiting of UDP responses on with ``settings`` (an
        :class:`xdpdns.hookspecs.RrlSettings`), or off with None.  Workers
        switch at once, each with a new, empty table."""
        err = ffi.new("struct xd_error *")
        if settings is None:
            _raise_for(lib.xd_engine_set_rrl(self._ptr(), ffi.NULL, err), err,
                       "turning rate limiting off")
            return
        cfg, keep = _rrl_config(settings)
        _raise_for(lib.xd_engine_set_rrl(self._ptr(), cfg, err), err,
                   "setting rate limiting")
        del keep

    def rrl_events(self, max_events: int = 256) -> list["RrlEvent"]:
        """The buckets that started to be limited since the last call (at
        most one per bucket per window), oldest first per worker."""
        out = ffi.new("struct xd_rrl_event[]", max_events)
        n = _raise_for(lib.xd_engine_rrl_events(self._ptr(), out, max_events),
                       what="rate limiting events")
        return [_rrl_event(out[i]) for i in range(n)]

    def zone_serial(self, origin: dns.name.Name) -> int | None:
        """The SOA serial of the served zone ``origin`` (None: not served),
        whatever its ACL says."""
        wire = origin.to_wire()
        serial = ffi.new("uint32_t *")
        rc = lib.xd_engine_zone_serial(self._ptr(), wire, len(wire), serial)
        if rc in (-errno.ENOENT, -errno.ENODATA):
            return None
        _raise_for(rc, what="zone serial")
        return serial[0]

    def axfr(self, query: bytes, client: str | None) -> bytes | None:
        """The zone transfer an AXFR or IXFR query asks for, from the image
        published now, as the bytes to write to the TCP connection: its
        messages, each with its 2-byte length prefix (:func:`tcp_messages`
        splits them).  None when there is none to send: the zone's transfer
        ACL does not allow ``client`` (an IP address), the name is not the
        apex of a zone served, or the query is not a transfer (answer it
        with :meth:`answer`, which says REFUSED)."""
        c_client = _client(client)
        size = ffi.new("size_t *")
        cap = AXFR_FIRST_BUFFER
        while True:
            out = ffi.new("uint8_t[]", cap)
            rc = lib.xd_engine_axfr(self._ptr(), c_client, query, len(query), out, cap, size)
            if rc != -errno.ENOSPC:
                break
            cap = size[0]  # a reload meanwhile may change it: ask again
        if rc in (-errno.EPERM, -errno.ENOENT, -errno.EINVAL, -errno.ENODATA):
            return None
        _raise_for(rc, what="zone transfer")
        return ffi.buffer(out, size[0])[:]

    def answer_client(self, query: bytes, client: str | None, tcp: bool = False,
                      now: int | None = None, defer: bool = False) -> "ClientAnswer":
        """Answers one DNS message from ``client`` (an IP address, None:
        unknown) at ``now`` (UNIX time; None: the clock), and tells what its
        COOKIE option showed (:data:`COOKIE_STATES`).  ``defer``: as for
        :meth:`answer` (the wire is then :data:`DEFERRED`)."""
        e = self._ptr()
        c_client = _client(client)
        cookie = ffi.new("int *")
        wire = _answer(lambda q, n, r, c, f: lib.xd_engine_answer_client(
            e, c_client, now or 0, q, n, r, c, f, cookie), query, tcp, defer)
        return ClientAnswer(wire, COOKIE_STATES[cookie[0]])

    # ---- the resolver hook (xdpdns/resolver.py) ------------------------------

    def resolver_start(self, ring_size: int, cache_size: int, hooks: int,
                       timeout: float) -> None:
        """Sets the resolver up before any worker starts: ``ring_size``
        deferred queries per worker, a cache of ``cache_size`` answers (0:
        none), both powers of two, ``hooks`` hook threads (one per plugin
        that answers claimed names), and the ``timeout`` (seconds) after
        which a worker answers a deferred query SERVFAIL.  Once."""
        cfg = ffi.new("struct xd_resolver_config *")
        cfg.ring_size = ring_size
        cfg.cache_size = cache_size
        cfg.hooks = hooks
        cfg.timeout_ms = max(1, round(timeout * 1000))
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_resolver_start(self._ptr(), cfg, err), err,
                   "starting the resolver")

    def dnstap_start(self, socket_path: str, sample: int, queries: bool, responses: bool,
                     identity: str = "", version: str = "") -> None:
        """Starts the dnstap writer (native/io/dnstap.c) before any worker
        starts: one query in ``sample`` per worker is logged, as AUTH_QUERY
        and/or AUTH_RESPONSE, to the Frame Streams collector listening on
        ``socket_path`` (connected, and reconnected, in the background)."""
        keep = [ffi.new("char[]", text.encode()) for text in (socket_path, identity, version)]
        cfg = ffi.new("struct xd_dnstap_config *")
        cfg.socket_path, cfg.identity, cfg.version = keep
        cfg.sample = sample
        cfg.queries = int(queries)
        cfg.responses = int(responses)
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_dnstap_start(self._ptr(), cfg, err), err, "starting dnstap")

    def dnstap_stop(self) -> None:
        """Writes what the rings hold and stops the writer; after the
        workers stopped."""
        lib.xd_engine_dnstap_stop(self._ptr())

    def dnstap_stats(self) -> DnstapStats | None:
        """The writer's counters; None when dnstap is off."""
        out = ffi.new("struct xd_dnstap_stats *")
        if not lib.xd_engine_dnstap_stats(self._ptr(), out):
            return None
        return DnstapStats(out.events, out.written, out.lost_full, out.lost_unconnected,
                           out.connects, bool(out.connected),
                           ffi.string(out.error).decode(errors="replace"))

    def resolver_fd(self, hook: int) -> int:
        """The eventfd of hook ``hook``: readable when queries wait for it
        (after :meth:`resolver_idle` said to sleep)."""
        return _raise_for(lib.xd_engine_resolver_fd(self._ptr(), hook), what="resolver fd")

    def resolver_take(self, hook: int, out: "ResolverBatch") -> int:
        """Moves deferred queries for ``hook`` into ``out`` (as many as it
        holds); returns how many.  One caller per hook at a time."""
        n = _raise_for(lib.xd_engine_resolver_take(self._ptr(), hook, out.array, out.size),
                       what="taking deferred queries")
        out.n = n
        return n

    def resolver_idle(self, hook: int) -> bool:
        """True: nothing waits for ``hook``, and the next deferred query
        writes its eventfd (sleep on it); False: take again."""
        return _raise_for(lib.xd_engine_resolver_idle(self._ptr(), hook),
                          what="resolver idle") == 1

    def resolver_answer(self, query, kind: int, data: bytes = b"", header: int = 0,
                        cache_ttl: int = 0) -> bool:
        """Hands the answer to ``query`` (an entry of a :class:`ResolverBatch`)
        back to the worker that holds it: ``kind`` RESOLVER_RECORDS (``data``
        packed as :attr:`xdpdns.hookspecs.Answer.packed`, ``header`` its AA
        bit and RCODE, cached for ``cache_ttl`` seconds), RESOLVER_WIRE
        (``data`` the whole response) or RESOLVER_SERVFAIL.  Sent once
        :meth:`resolver_flush` wakes the worker.  Returns whether it was
        cached; OSError: EINVAL (malformed), EMSGSIZE (a response longer
        than UDP's), ENOBUFS (the worker's ring is full: SERVFAIL at the
        deadline)."""
        cached = ffi.new("int *") if cache_ttl else ffi.NULL
        rc = lib.xd_engine_resolver_answer(self._ptr(), query, kind, data, len(data), header,
                                           cache_ttl, cached)
        if rc < 0:
            raise OSError(-rc, f"handing back a resolver answer: {os.strerror(-rc)}")
        return bool(cache_ttl and cached[0])

    def resolver_flush(self) -> None:
        """Wakes the workers that were handed answers."""
        lib.xd_engine_resolver_flush(self._ptr())

    def resolver_cache(self, name: dns.name.Name, rdtype: int, rdclass: int,
                       response: bytes, question_end: int, ttl: int) -> None:
        """Caches ``response`` (no OPT record) for (name, type, class) for
        ``ttl`` seconds: later queries get it on the fast path."""
        wire = name.canonicalize().to_wire()
        _raise_for(lib.xd_engine_resolver_cache(self._ptr(), wire, len(wire), rdtype, rdclass,
                                                response, len(response), question_end, ttl),
                   what="caching a resolver answer")

    def resolver_build(self, query: bytes, records: bytes, header: int, cache_ttl: int,
                       tcp: bool = False, client: str | None = None) -> tuple[bytes | None, bool]:
        """The response to ``query`` (None: nothing to send) from a hook's
        answer in its fast form: ``records`` packed as
        xd_engine_resolver_build takes them (:attr:`xdpdns.hookspecs.Answer.packed`),
        ``header`` its AA bit (:data:`RESOLVER_AA`) and RCODE; with
        ``cache_ttl`` also cached.  Returns it and whether it was cached;
        OSError(EINVAL) for malformed records."""
        cached = ffi.new("int *") if cache_ttl else ffi.NULL
        wire = _answer(lambda q, n, r, c, f: lib.xd_engine_resolver_build(
            self._ptr(), _client(client), q, n, records, len(records), header, cache_ttl,
            r, c, f, cached), query, tcp)
        return wire, bool(cache_ttl and cached[0])


def tcp_messages(stream: bytes) -> list[bytes]:
    """The DNS messages of a TCP stream (each after its 2-byte length)."""
    messages, pos = [], 0
    while pos + 2 <= len(stream):
        length = int.from_bytes(stream[pos:pos + 2], "big")
        messages.append(stream[pos + 2:pos + 2 + length])
        pos += 2 + length
    return messages


# Room for a zone transfer on the first try: a small zone fits; a larger
# one says how much it needs.
AXFR_FIRST_BUFFER = 1 << 16

# The AA bit of the header that Engine.resolver_build takes.
RESOLVER_AA = lib.XD_RESOLVER_AA


# What Engine.resolver_answer hands back.
RESOLVER_RECORDS = lib.XD_RESOLVER_RECORDS
RESOLVER_WIRE = lib.XD_RESOLVER_WIRE
RESOLVER_SERVFAIL = lib.XD_RESOLVER_SERVFAIL
# Plugins that may answer claimed names (their hook threads).
RESOLVER_HOOKS_MAX = lib.XD_RESOLVER_HOOKS_MAX


class ResolverBatch:
    """Room for ``size`` deferred queries (struct xd_resolver_query) that
    :meth:`Engine.resolver_take` fills; ``n`` of them are valid, and
    ``self[i]`` is the i-th, for :meth:`Engine.resolver_answer`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.array = ffi.new("struct xd_resolver_query[]", size)
        self.n = 0

    def __getitem__(self, i: int):
        return self.array + i


# Client addresses as text, by their 16 bytes and family: a busy resolver
# sees the same clients again and again, and inet_ntop is a good part of
# what a query costs the drain thread.  Bounded: cleared when full.
_HOSTS: dict[tuple[int, bytes], str] = {}
_HOSTS_MAX = 65536


def resolver_query_fields(q) -> tuple[bytes, tuple[str, int]]:
    """The query's bytes and the client's (address, port) of one entry of a
    :class:`ResolverBatch`."""
    key = (q.family, ffi.buffer(q.ip, 16)[:])
    host = _HOSTS.get(key)
    if host is None:
        if len(_HOSTS) >= _HOSTS_MAX:
            _HOSTS.clear()
        if q.family == socket.AF_INET:
            host = socket.inet_ntop(socket.AF_INET, key[1][:4])
        else:
            host = socket.inet_ntop(socket.AF_INET6, key[1])
        _HOSTS[key] = host
    return ffi.buffer(q.query, q.len)[:], (host, q.port)


# The source ACL's actions (enum xd_acl_action of bpf/xdpdns_maps.h) and
# what socket mode does with a denied source.
ACL_ACTIONS = {"allow": lib.XD_ACL_ALLOW, "deny": lib.XD_ACL_DENY}
# The lists of a zone's ACL (XD_ZONE_ACL_*).
_ZONE_ACL_LISTS = {"query": lib.XD_ZONE_ACL_QUERY, "transfer": lib.XD_ZONE_ACL_TRANSFER}
ACL_SOCKET_ACTIONS = {"refuse": lib.XD_VERDICT_REFUSE, "drop": lib.XD_VERDICT_DROP}
_VERDICTS = {lib.XD_VERDICT_ANSWER: "answer", lib.XD_VERDICT_REFUSE: "refuse",
             lib.XD_VERDICT_DROP: "drop"}


def _set_chars(struct, field: str, text: str, what: str) -> None:
    """Copies text into a fixed char array of struct, NUL included."""
    encoded = text.encode()
    if len(encoded) >= len(getattr(struct, field)):
        raise ValueError(f"{what} too long: {text}")
    setattr(struct, field, encoded)


def _listen_array(listen: Sequence[tuple[str, int]]):
    addrs = ffi.new("struct xd_listen[]", len(listen))
    for slot, (host, port) in zip(addrs, listen):
        encoded = host.encode()
        if len(encoded) >= len(slot.host):
            raise ValueError(f"address too long: {host}")
        slot.host = encoded
        slot.port = port
    return addrs


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _rcode_counts(counts) -> dict[str, int]:
    return {dns.rcode.to_text(rcode): counts[rcode] for rcode in range(16) if counts[rcode]}


def _qtype_bucket_names() -> list[str]:
    """The name of each query type bucket (bpf/xdpdns_maps.h's list, all
    below 512), "other" for bucket 0."""
    names = ["other"] * 16
    for qtype in range(1, 512):
        bucket = lib.xd_qtype_bucket_of(qtype)
        if bucket:
            names[bucket] = dns.rdatatype.to_text(qtype)
    return names


_QTYPE_BUCKETS = _qtype_bucket_names()


def _qtype_counts(counts) -> dict[str, int]:
    return {_QTYPE_BUCKETS[i]: counts[i] for i in range(16) if counts[i]}


def _prog_stats(out) -> ProgStats:
    return ProgStats(out.seen, out.redirected, out.passed, out.dropped, out.malformed,
                     out.denied, out.answered_in_xdp, _rcode_counts(out.answered_in_xdp_rcode),
                     out.rate_limited, out.slipped, _qtype_counts(out.answered_in_xdp_qtype))


def _answers_info(out) -> AnswersInfo:
    return AnswersInfo(
        state=_ANSWERS_STATES.get(out.state, "off"), names=out.names, entries=out.entries,
        do_entries=out.do_entries, skipped=out.skipped, pages=out.pages, bytes=out.bytes,
        compile_seconds=out.compile_us / 1e6, install_seconds=out.install_us / 1e6,
        message=ffi.string(out.message).decode("utf-8", "replace"))


# [xdp] answers, and the answer table's states (native/engine.h).
_ANSWERS = {"all": lib.XD_ANSWERS_ALL, "off": lib.XD_ANSWERS_OFF}
_ANSWERS_STATES = {
    lib.XD_ANSWERS_STATE_OFF: "off",
    lib.XD_ANSWERS_STATE_ON: "on",
    lib.XD_ANSWERS_STATE_PAUSED: "paused",
    lib.XD_ANSWERS_STATE_FAILED: "failed",
}


# ---- DNS cookies ---------------------------------------------------------------

# What a query's COOKIE option showed (XD_COOKIE_* of native/engine.h).
COOKIE_STATES = {
    lib.XD_COOKIE_NONE: "none",  # no COOKIE option, or cookies off
    lib.XD_COOKIE_CLIENT_ONLY: "client-only",
    lib.XD_COOKIE_INVALID: "invalid",  # a server cookie not ours for this client now
    lib.XD_COOKIE_VALID: "valid",
    lib.XD_COOKIE_MALFORMED: "malformed",  # answered FORMERR
}


@dataclass(frozen=True)
class ClientAnswer:
    """A response (None: nothing to send) and what the query's COOKIE option
    showed: one of the values of :data:`COOKIE_STATES`."""

    wire: bytes | None
    cookie: str


def _acl_rules(rules: Sequence[tuple]):
    """A struct xd_acl_rule array of (prefix, "allow" | "deny") pairs."""
    c_rules = ffi.new("struct xd_acl_rule[]", max(1, len(rules)))
    for slot, (prefix, action) in zip(c_rules, rules):
        prefix = ipaddress.ip_network(prefix)
        if action not in ACL_ACTIONS:
            raise ValueError(f"ACL rule {prefix}: action {action!r}: expected one of "
                             + ", ".join(ACL_ACTIONS))
        slot.family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        packed = prefix.network_address.packed
        ffi.memmove(slot.addr, packed, len(packed))
        slot.prefix_len = prefix.prefixlen
        slot.action = ACL_ACTIONS[action]
    return c_rules


def _client(address: str | None):
    """A struct xd_client for an IP address (NULL for None)."""
    if address is None:
        return ffi.NULL
    ip = ipaddress.ip_address(address)
    client = ffi.new("struct xd_client *")
    client.family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    ffi.memmove(client.addr, ip.packed, len(ip.packed))
    return client


@dataclass(frozen=True)
class SigningKeyInfo:
    algorithm: int
    flags: int  # 257: a KSK, 256: a ZSK
    tag: int
    dnskey: bytes  # the DNSKEY RDATA


@dataclass(frozen=True)
class SigningReport:
    """What signing a zone did (ImageBuilder.sign_zone)."""
    made: int  # RRSIGs made
    kept: int  # RRSIGs of the previous image kept
    earliest_expiration: int  # UNIX time: sign again before it


class SigningKey(_CObject):
    """A DNSSEC signing key read from BIND's key files (BASE.key and
    BASE.private, as dnssec-keygen and keymgr write them), algorithms 13
    and 15."""

    _closed = "signing key closed"

    def __init__(self, base: str | os.PathLike) -> None:
        out = ffi.new("struct xd_sign_key **")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_sign_key_load(os.fsencode(base), out, err), err,
                   f"reading the key {base}")
        self._own(out[0], lib.xd_sign_key_free)

    @property
    def info(self) -> SigningKeyInfo:
        out = ffi.new("struct xd_sign_key_info *")
        lib.xd_sign_key_info(self._ptr(), out)
        return SigningKeyInfo(out.algorithm, out.flags, out.tag,
                              bytes(ffi.buffer(out.dnskey, out.dnskey_len)))

    def sign(self, owner: bytes, signer: bytes, rdtype: int, ttl: int,
             rdatas: Sequence[bytes], inception: int, expiration: int) -> bytes:
        """The RRSIG RDATA of the RRset (owner and signer in wire form,
        its records' RDATA as they go on the wire) valid from inception to
        expiration (UNIX times)."""
        keep = [ffi.new("uint8_t[]", r) for r in rdatas]
        s = ffi.new("struct xd_sign_rrset *")
        owner_c, signer_c = ffi.new("uint8_t[]", owner), ffi.new("uint8_t[]", signer)
        ptrs = ffi.new("const uint8_t *[]", keep)
        lens = ffi.new("uint16_t[]", [len(r) for r in rdatas])
        s.owner, s.owner_len, s.signer, s.signer_len = owner_c, len(owner), signer_c, len(signer)
        s.type, s.ttl, s.inception, s.expiration = rdtype, ttl, inception, expiration
        s.rdatas, s.rdlens, s.count = ptrs, lens, len(rdatas)
        out = ffi.new("uint8_t[]", 512)
        err = ffi.new("struct xd_error *")
        n = _raise_for(lib.xd_sign_rrset(self._ptr(), s, out, 512, err), err, "signing")
        return bytes(ffi.buffer(out, n))


def nsec3_label(name: bytes, algorithm: int, salt: bytes, iterations: int) -> str:
    """The NSEC3 hash of a wire-form name (RFC 5155 5) as the engine
    computes it for proofs of non-existence: base32hex, lower case."""
    out = ffi.new("uint8_t[]", lib.XD_NSEC3_LABEL_LEN)
    _raise_for(lib.xd_nsec3_label(name, len(name), algorithm, salt, len(salt), iterations,
                                  out), what="NSEC3 hash")
    return bytes(out)[1:].decode()


def dispatch_remove(interface: str, prog_id: int) -> None:
    """Takes XDP program prog_id out of libxdp's dispatcher on interface
    (nothing when it is not there).  Needs root: the guard of a server in
    dispatcher mode calls it (xdpdns/xdp.py)."""
    err = ffi.new("struct xd_error *")
    _raise_for(lib.xd_dispatch_remove(interface.encode(), prog_id, err), err,
               f"detaching from the XDP dispatcher on {interface}")


def drop_privileges(uid: int, gid: int, keep: int) -> None:
    """Switches the process to uid/gid for good; the calling thread (and
    the threads it starts later) keeps the capabilities of the bit mask
    ``keep``.  Raises OSError naming the step that failed."""
    err = ffi.new("struct xd_error *")
    _raise_for(lib.xd_privileges_drop(uid, gid, keep, err), err, "drop privileges")


# ---- response rate limiting ------------------------------------------------------

# The kinds of response counted apart (XD_RRL_* of native/engine.h).
RRL_KINDS = {
    lib.XD_RRL_ANSWER: "answer",
    lib.XD_RRL_NODATA: "nodata",
    lib.XD_RRL_NXDOMAIN: "nxdomain",
    lib.XD_RRL_REFERRAL: "referral",
    lib.XD_RRL_ERROR: "error",
}


@dataclass(frozen=True)
class RrlEvent:
    """A bucket that started to be limited: the client prefix, the kind of
    response (a value of :data:`RRL_KINDS`) and when (UNIX seconds)."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    kind: str
    time: int


def _rrl_config(settings):
    """A struct xd_rrl_config for settings, and the exempt rules it points
    to (keep them alive while the config is used)."""
    cfg = ffi.new("struct xd_rrl_config *")
    cfg.rate = settings.rate
    cfg.nxdomain_rate = settings.nxdomain_rate
    cfg.errors_rate = settings.errors_rate
    cfg.nodata_rate = settings.nodata_rate
    cfg.referrals_rate = settings.referrals_rate
    cfg.window = settings.window
    cfg.slip = settings.slip
    cfg.ipv4_prefix = settings.ipv4_prefix
    cfg.ipv6_prefix = settings.ipv6_prefix
    cfg.table_size = settings.table_size
    exempt = [ipaddress.ip_network(p) for p in settings.exempt]
    rules = ffi.new("struct xd_acl_rule[]", max(1, len(exempt)))
    for slot, prefix in zip(rules, exempt):
        slot.family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        packed = prefix.network_address.packed
        ffi.memmove(slot.addr, packed, len(packed))
        slot.prefix_len = prefix.prefixlen
    cfg.exempt = rules
    cfg.nexempt = len(exempt)
    return cfg, rules


def _rrl_event(ev) -> RrlEvent:
    size = 4 if ev.family == socket.AF_INET else 16
    address = ipaddress.ip_address(bytes(ffi.buffer(ev.addr, size)))
    return RrlEvent(ipaddress.ip_network(f"{address}/{ev.prefix_len}"),
                    RRL_KINDS.get(ev.kind, str(ev.kind)), ev.time)
