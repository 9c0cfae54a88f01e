"""What a zone transfer's records say (RFC 5936 AXFR, RFC 1995 IXFR), read
one RR at a time as the messages come: the whole zone, the differences
from the version we have, or that we are up to date.

Checked on the way, each failure an XfrError naming what was wrong: the
first record must be the zone's SOA; an AXFR (and an IXFR answered in
AXFR's form) ends with the same SOA; an IXFR's steps follow each other,
the first from our serial, each deleting only what the zone has by then
(what it had before the transfer is checked when the differences are
applied: native/zone/copy.c) and the last ending at the serial the
transfer began with.  A stream that stops before its closing SOA is
truncated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class XfrError(Exception):
    """A transfer that cannot be used; the message says why."""


@dataclass(frozen=True)
class Record:
    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata

    def to_text(self) -> str:
        return f"{self.name} {self.ttl} {dns.rdatatype.to_text(self.rdata.rdtype)} {self.rdata}"

    def wire(self) -> bytes:
        """Uncompressed: owner, type, class, TTL, RDLENGTH, RDATA."""
        rdata = self.rdata.to_wire()
        return (
            self.name.to_wire()
            + self.rdata.rdtype.to_bytes(2, "big")
            + b"\x00\x01"
            + self.ttl.to_bytes(4, "big")
            + len(rdata).to_bytes(2, "big")
            + rdata
        )

    def key(self, origin: dns.name.Name) -> tuple:
        """Equal for the same record: owner and names in RDATA without
        regard to case (RFC 4034 6.2), TTL aside."""
        return (
            self.name.canonicalize(),
            self.rdata.rdtype,
            self.rdata.to_digestable(origin),
        )


@dataclass
class Full:
    """The whole zone (AXFR, or an IXFR answered with the whole zone)."""

    serial: int
    records: list[Record]


@dataclass
class Incremental:
    """The differences from our version to `serial`, net: what to delete
    from the zone as it is, then what to add."""

    serial: int
    deletes: list[Record]
    adds: list[Record]
    steps: int


@dataclass
class UpToDate:
    """The primary's SOA alone: its serial is not newer than ours."""

    serial: int


@dataclass
class NeedsFull:
    """The primary's SOA alone, newer than ours: it has no differences to
    send (RFC 1995 4); ask for the whole zone."""

    serial: int


def serial_newer(a: int, b: int) -> bool:
    """a is newer than b in serial number arithmetic (RFC 1982)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


def _soa_serial(record: Record) -> int:
    return record.rdata.serial


@dataclass
class _Step:
    old: int
    new: int | None = None


@dataclass
class XfrReader:
    """Takes a transfer's answer RRs in order (:meth:`feed`) and says when
    it is complete; :meth:`result` then says what it was.

    ``ours``: the serial of our version when we asked for IXFR, None for
    AXFR.
    """

    origin: dns.name.Name
    ours: int | None = None
    records: int = 0
    _state: str = "start"
    _serial: int = 0
    _first_soa: Record | None = None
    _full: list[Record] = field(default_factory=list)
    _net: dict[tuple, tuple[Record | None, Record | None]] = field(default_factory=dict)
    _step: _Step | None = None
    _steps: int = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, rrset: dns.rrset.RRset) -> None:
        """One RRset of an answer section (one RR each, as messages are
        read for transfers)."""
        if rrset.rdclass != dns.rdataclass.IN:
            raise XfrError(f"record of class {dns.rdataclass.to_text(rrset.rdclass)}: {rrset}")
        for rdata in rrset:
            self._one(Record(rrset.name, rrset.ttl, rdata))

    def message_end(self) -> None:
        """A message ended: an IXFR answered with the SOA alone ends here."""
        if self._state == "first" and self.ours is not None:
            self._state = "done"

    def result(self) -> Full | Incremental | UpToDate | NeedsFull:
        if self._state != "done":
            raise XfrError(
                f"the transfer ended before its closing SOA (truncated after "
                f"{self.records} records)"
            )
        if self._full:
            return Full(self._serial, self._full)
        if self._steps:
            deletes = [old for old, _ in self._net.values() if old is not None]
            adds = [new for _, new in self._net.values() if new is not None]
            return Incremental(self._serial, deletes, adds, self._steps)
        if self.ours is not None and not serial_newer(self._serial, self.ours):
            return UpToDate(self._serial)
        return NeedsFull(self._serial)

    # ---- the states ------------------------------------------------------------

    def _one(self, record: Record) -> None:
        if self._state == "done":
            raise XfrError(f"a record after the closing SOA: {record.to_text()}")
        self.records += 1
        is_soa = record.rdata.rdtype == dns.rdatatype.SOA
        if is_soa and record.name != self.origin:
            raise XfrError(f"an SOA record that is not the zone's: {record.to_text()}")
        getattr(self, f"_{self._state}")(record, is_soa)

    def _start(self, record: Record, is_soa: bool) -> None:
        if not is_soa:
            raise XfrError(f"the transfer does not begin with the zone's SOA: {record.to_text()}")
        self._serial = _soa_serial(record)
        self._first_soa = record
        self._state = "first"

    def _first(self, record: Record, is_soa: bool) -> None:
        if is_soa and self.ours is not None:
            # An IXFR's first step begins: the SOA of the version we have.
            if _soa_serial(record) != self.ours:
                raise XfrError(
                    f"the differences begin at serial {_soa_serial(record)}, "
                    f"not at ours ({self.ours})"
                )
            self._begin_step(record)
            return
        # AXFR, or an IXFR answered with the whole zone.
        self._full.append(self._first_soa)
        self._state = "whole"
        self._whole(record, is_soa)

    def _whole(self, record: Record, is_soa: bool) -> None:
        if is_soa:
            if _soa_serial(record) != self._serial:
                raise XfrError(
                    f"the transfer's SOA serials disagree: it began with "
                    f"{self._serial} and ends with {_soa_serial(record)}"
                )
            self._state = "done"
            return
        self._full.append(record)

    def _begin_step(self, soa: Record) -> None:
        self._step = _Step(_soa_serial(soa))
        self._steps += 1
        self._delete(soa)
        self._state = "deleting"

    def _deleting(self, record: Record, is_soa: bool) -> None:
        if is_soa:
            self._step.new = _soa_serial(record)
            self._add(record)
            self._state = "adding"
            return
        self._delete(record)

    def _adding(self, record: Record, is_soa: bool) -> None:
        if not is_soa:
            self._add(record)
            return
        serial = _soa_serial(record)
        if serial != self._step.new:
            raise XfrError(
                f"a step of the differences begins at serial {serial}, but the one "
                f"before ended at {self._step.new}"
            )
        if serial == self._serial:
            self._state = "done"  # the closing SOA
            return
        self._begin_step(record)

    # ---- the net differences ---------------------------------------------------

    def _delete(self, record: Record) -> None:
        key = record.key(self.origin)
        old, new = self._net.get(key, (None, None))
        if new is not None:
            # Added earlier in this transfer: it goes again.
            if old is None:
                del self._net[key]
            else:
                self._net[key] = (old, None)
            return
        if old is not None:
            raise XfrError(f"the differences delete a record twice: {record.to_text()}")
        self._net[key] = (record, None)

    def _add(self, record: Record) -> None:
        key = record.key(self.origin)
        old, _ = self._net.get(key, (None, None))
        self._net[key] = (old, record)
