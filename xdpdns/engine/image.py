"""Building a zone image and reading it (engine.h's image, overrides and
zone ACL sections): ImageBuilder compiles zones into an Image."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import dns.name
import dns.rdata
import dns.rdataset
import dns.rdatatype

from xdpdns.engine._c import ffi, lib, _raise_for, _wire, _CObject, _answer, _client
from xdpdns.engine.policy import ACL_ACTIONS, _acl_rules
from xdpdns.engine.xdp import AnswerEntry, AnswersInfo, _answers_info
from xdpdns.engine.dnssec import SigningReport, SigningKey


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


_IDENTITY = {
    "version": lib.XD_IDENTITY_VERSION,
    "hostname": lib.XD_IDENTITY_HOSTNAME,
    "id": lib.XD_IDENTITY_ID,
    "nsid": lib.XD_IDENTITY_NSID,
}


# What a query for a name an override rule holds gets (XD_OVERRIDE_*).
_OVERRIDE_CODES = {
    "nxdomain": lib.XD_OVERRIDE_NXDOMAIN,
    "refused": lib.XD_OVERRIDE_REFUSED,
    "nodata": lib.XD_OVERRIDE_NODATA,
    "answer": lib.XD_OVERRIDE_ANSWER,
    # Names claimed by resolver plugins (xdpdns/resolver.py);
    # not one of hookspecs.OVERRIDE_ACTIONS: no config sets it.
    "resolver": lib.XD_OVERRIDE_RESOLVER,
}


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
        self._tsig_keys: dict[dns.name.Name, int] = {}

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
                b,
                zone,
                owner,
                len(owner),
                rdataset.rdtype,
                rdataset.rdclass,
                rdataset.ttl,
                rd,
                len(rd),
                source,
                line,
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
        _raise_for(
            lib.xd_builder_set_identity(self._ptr(), _IDENTITY[item], value, len(value)),
            what=f"identity {item}",
        )

    def add_override_rule(
        self, action: str, ttl: int = 0, records: Iterable[dns.rdata.Rdata] = ()
    ) -> int:
        """Creates an override rule that names then share (:meth:`add_override`,
        :meth:`load_blocklist`): ``action`` is "nxdomain", "refused", "nodata"
        or "answer", whose ``records`` (class IN, names in them absolute) go
        out owned by the query name with TTL ``ttl``.  Returns the rule's
        index; raises ValueError for records the engine refuses (a CNAME
        beside other data, a meta type)."""
        if action not in _OVERRIDE_CODES:
            raise ValueError(
                f"override action {action!r}: expected one of " + ", ".join(_OVERRIDE_CODES)
            )
        b = self._ptr()
        err = ffi.new("struct xd_error *")
        rule = _raise_for(
            lib.xd_builder_add_override_rule(b, _OVERRIDE_CODES[action], ttl, err),
            err,
            "override rule",
        )
        for rdata in records:
            try:
                wire = rdata.to_wire()
            except dns.name.NeedAbsoluteNameOrOrigin:
                raise ValueError(f"override record {rdata}: names must be absolute") from None
            rc = lib.xd_builder_add_override_record(b, rule, rdata.rdtype, wire, len(wire), err)
            if rc == -errno.EINVAL:
                raise ValueError(
                    f"override record {dns.rdatatype.to_text(rdata.rdtype)} "
                    f"{rdata}: " + ffi.string(err.message).decode("utf-8", "replace")
                )
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
        rc = lib.xd_builder_add_override(
            self._ptr(), wire, len(wire), 1 if subtree else 0, rule, err
        )
        return _raise_for(rc, err, f"override {name}") == 1

    def load_blocklist(self, path: str | os.PathLike, rule: int, subtree: bool = False) -> bool:
        """Applies rule ``rule`` to every name of a blocklist file (one name
        per line, ``*.NAME`` for a subtree, ``#`` comments), read natively.
        Bad lines and an unreadable file become problems with the file and
        line; returns True when the file read without errors."""
        err = ffi.new("struct xd_error *")
        rc = lib.xd_builder_load_blocklist(
            self._ptr(), os.fsencode(path), rule, 1 if subtree else 0, err
        )
        if rc == -errno.ENOMEM:
            raise MemoryError(f"loading {path}")
        if rc == -errno.E2BIG:
            _raise_for(rc, err)
        return rc == 0

    def add_tsig_key(self, name: dns.name.Name, algorithm: str, secret: bytes) -> None:
        """Adds a TSIG key (RFC 8945) that requests may be signed with and
        that transfer lists may name.  ``algorithm`` is hmac-sha1, -sha224,
        -sha256, -sha384 or -sha512.  ValueError for what the engine refuses
        (an unknown algorithm, an empty secret, a name given twice)."""
        wire = _wire(name)
        err = ffi.new("struct xd_error *")
        rc = lib.xd_builder_add_tsig_key(
            self._ptr(), wire, len(wire), algorithm.encode(), secret, len(secret), err
        )
        if rc == -errno.EINVAL:
            raise ValueError(f"TSIG key {name}: " + ffi.string(err.message).decode())
        self._tsig_keys[name] = _raise_for(rc, err, f"TSIG key {name}")

    def set_zone_acl(
        self,
        zone: int,
        kind: str,
        rules: Iterable[tuple],
        default: str,
    ) -> None:
        """Sets who may query (``kind`` "query") or transfer ("transfer")
        zone ``zone``: ``rules`` are (prefix, "allow" | "deny") pairs, or
        for transfers (prefix, action, key name) triples that hold only
        requests signed with that key (added first with
        :meth:`add_tsig_key`).  The longest prefix holding a request
        decides, a keyed rule before an unkeyed one of the same prefix;
        ``default`` is for clients no prefix holds (and clients of unknown
        family).  A prefix given twice keeps its first rule.  A list never
        set lets every client query and none transfer.  ValueError for what
        the engine refuses."""
        if kind not in _ZONE_ACL_LISTS:
            raise ValueError(f"zone ACL {kind!r}: expected one of " + ", ".join(_ZONE_ACL_LISTS))
        if default not in ACL_ACTIONS:
            raise ValueError(
                f"zone ACL default {default!r}: expected one of " + ", ".join(ACL_ACTIONS)
            )
        rules = list(rules)
        c_rules = _acl_rules([rule[:2] for rule in rules])
        for slot, rule in zip(c_rules, rules):
            key = rule[2] if len(rule) > 2 else None
            if key is not None and key not in self._tsig_keys:
                raise ValueError(f"zone ACL {kind}: no TSIG key {key}")
            slot.key = 0 if key is None else self._tsig_keys[key] + 1
        err = ffi.new("struct xd_error *")
        rc = lib.xd_builder_set_zone_acl(
            self._ptr(),
            zone,
            _ZONE_ACL_LISTS[kind],
            c_rules,
            len(rules),
            ACL_ACTIONS[default],
            err,
        )
        if rc in (-errno.EINVAL, -errno.E2BIG):
            raise ValueError(ffi.string(err.message).decode("utf-8", "replace"))
        _raise_for(rc, err, f"zone ACL {kind}")

    def sign_zone(
        self,
        zone: int,
        keys: Sequence["SigningKey"],
        nsec3: bool,
        inception: int,
        expiration: int,
        previous: "Image | None" = None,
        keep_after: int = 0,
        served_serial: int | None = None,
    ) -> "SigningReport":
        """Signs zone ``zone`` with ``keys`` (native/zone/zone_sign.c): DNSKEYs,
        the NSEC or NSEC3 chain, RRSIGs valid from ``inception`` to
        ``expiration`` (UNIX times).  Before :meth:`check`.

        With ``previous`` (the image being served), its RRSIGs over RRsets
        that did not change are kept when they expire after ``keep_after``
        rather than made again; ``previous`` must stay published until
        this returns.  With ``served_serial`` (the serial served now), a
        zone whose own serial is not newer keeps that one when nothing had
        to be signed anew, and takes the next one when anything did."""
        ptrs = ffi.new("struct xd_sign_key *[]", [k._ptr() for k in keys])
        cfg = ffi.new("struct xd_zone_sign_config *")
        cfg.keys, cfg.nkeys, cfg.nsec3 = ptrs, len(keys), int(nsec3)
        cfg.inception, cfg.expiration = inception, expiration
        if previous is not None:
            cfg.previous, cfg.keep_after = previous._ptr(), keep_after
        if served_serial is not None:
            cfg.served_serial, cfg.has_served = served_serial, 1
        report = ffi.new("struct xd_zone_sign_report *")
        err = ffi.new("struct xd_error *")
        _raise_for(
            lib.xd_builder_sign_zone(self._ptr(), zone, cfg, report, err), err, "signing the zone"
        )
        return SigningReport(
            report.made, report.kept, report.earliest_expiration, report.serial, report.zone_serial
        )

    def copy_zone(self, zone: int, image: "Image", deletes: bytes = b"") -> int | None:
        """Adds to zone ``zone`` the records of the zone of the same origin
        in ``image`` (a transfer's worth), less ``deletes``: uncompressed
        RRs one after the other, matched by owner, type and RDATA (names
        without regard to case).  Returns the index in ``deletes`` of the
        first record the zone does not have, or None when all were there.
        KeyError when ``image`` has no such zone; ValueError for malformed
        ``deletes``.  ``image`` must stay valid until this returns (a
        published one: published)."""
        missing = ffi.new("int *")
        rc = lib.xd_builder_copy_zone(
            self._ptr(), zone, image._ptr(), deletes, len(deletes), missing
        )
        if rc == -errno.ENOENT:
            raise KeyError(f"no zone {self._origins.get(zone)} in the image")
        if rc == -errno.EINVAL:
            raise ValueError("malformed records to leave out of the copied zone")
        _raise_for(rc, what="copying a zone")
        return None if missing[0] < 0 else missing[0]

    def set_zone_expired(self, zone: int) -> None:
        """Zone ``zone`` has no data to serve (a secondary zone not yet
        transferred, or past its expire): every query in it gets SERVFAIL."""
        _raise_for(lib.xd_builder_set_zone_expired(self._ptr(), zone), what="expired zone")

    def set_notify_hook(self, hook: int) -> None:
        """NOTIFY messages go to resolver hook ``hook`` (the server's)."""
        _raise_for(lib.xd_builder_set_notify_hook(self._ptr(), hook), what="NOTIFY hook")

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
            result.append(
                Problem(
                    severity,
                    self.source(out.source),
                    out.line,
                    ffi.string(out.message).decode("utf-8", "replace"),
                )
            )
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
    return ImageInfo(
        info.version,
        info.zones,
        info.names,
        info.rrsets,
        info.records,
        info.bytes,
        info.overrides,
        info.zone_acls,
    )


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
        _raise_for(lib.xd_answers_compile(self._ptr(), out, err), err, "compiling the answer table")
        table = ffi.gc(out[0], lib.xd_answers_free)
        try:
            info = ffi.new("struct xd_answers_info *")
            lib.xd_answers_info_get(table, info)
            found: list[AnswerEntry] = []
            entry = ffi.new("struct xd_answers_entry *")
            for i in range(info.entries if entries else 0):
                _raise_for(lib.xd_answers_entry_get(table, i, entry), what="answer table")
                sections = (
                    bytes(ffi.buffer(entry.sections, entry.len))
                    if entry.sections != ffi.NULL
                    else b""
                )
                found.append(
                    AnswerEntry(
                        name=dns.name.from_wire(bytes(entry.name[0 : entry.name_len]), 0)[0],
                        qtype=entry.qtype,
                        qclass=entry.qclass,
                        to_worker=entry.action == lib.XD_ANSWER_TO_WORKER,
                        dnssec=entry.variant == 1,
                        also_do=bool(entry.also_do),
                        flags=entry.flags,
                        counts=(entry.count[0], entry.count[1], entry.count[2]),
                        sections=sections,
                        csum=entry.csum,
                    )
                )
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
        rc = lib.xd_image_zone_allows(
            self._ptr(), wire, len(wire), _ZONE_ACL_LISTS[kind], _client(client)
        )
        if rc == -errno.ENOENT:
            raise KeyError(f"no zone {origin} in the image")
        return _raise_for(rc, what=f"zone ACL of {origin}") == 1

    def zone_serial(self, origin: dns.name.Name) -> int | None:
        """The SOA serial of zone ``origin`` in this image (None: not in it,
        or no data to serve)."""
        wire = origin.to_wire()
        serial = ffi.new("uint32_t *")
        rc = lib.xd_image_zone_serial(self._ptr(), wire, len(wire), serial)
        if rc == -errno.ENOENT:
            return None
        _raise_for(rc, what="zone serial")
        return serial[0]

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


def tcp_messages(stream: bytes) -> list[bytes]:
    """The DNS messages of a TCP stream (each after its 2-byte length)."""
    messages, pos = [], 0
    while pos + 2 <= len(stream):
        length = int.from_bytes(stream[pos : pos + 2], "big")
        messages.append(stream[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return messages


# The lists of a zone's ACL (XD_ZONE_ACL_*).
_ZONE_ACL_LISTS = {"query": lib.XD_ZONE_ACL_QUERY, "transfer": lib.XD_ZONE_ACL_TRANSFER}


@dataclass(frozen=True)
class ClientAnswer:
    """A response (None: nothing to send) and what the query's COOKIE option
    showed: one of the values of :data:`COOKIE_STATES`."""

    wire: bytes | None
    cookie: str
