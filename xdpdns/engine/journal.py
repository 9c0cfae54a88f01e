"""The journal of changes an image carries for IXFR out (engine.h's
journal section): what each publication changed in the zones served."""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from xdpdns.engine._c import ffi, lib, _raise_for

# What a zone's journal did at a publication (enum xd_journal_kind).
JOURNAL_KINDS = {
    lib.XD_JOURNAL_RECORDED: "recorded",
    lib.XD_JOURNAL_SAME_SERIAL: "same-serial",
    lib.XD_JOURNAL_OLDER_SERIAL: "older-serial",
    lib.XD_JOURNAL_TOO_LARGE: "too-large",
}


@dataclass(frozen=True)
class JournalLimits:
    """How much of each zone's history is kept: ``depth`` changesets (0: no
    journal, IXFR gets the whole zone) of ``bytes`` at most together."""

    depth: int = 20
    bytes: int = 64 << 20


@dataclass(frozen=True)
class JournalEvent:
    """What happened to one zone's journal when an image was published.

    ``kind``: "recorded" (a change from serial_from to serial_to), or one
    that emptied the journal: "same-serial" (the data changed, the serial
    did not), "older-serial" (the serial is not newer, RFC 1982),
    "too-large" (the change alone is over the bytes limit).
    """

    zone: dns.name.Name
    kind: str
    serial_from: int
    serial_to: int
    removed: int  # records, the SOA not counted
    added: int
    depth: int  # changesets the journal holds now
    bytes: int  # and their bytes


@dataclass(frozen=True)
class JournalInfo:
    """What a served zone's journal holds: ``depth`` changes of ``bytes``;
    an IXFR from ``oldest_serial`` (when depth > 0) or later gets changes."""

    depth: int
    bytes: int
    oldest_serial: int | None


def derive_journal(image_ptr, previous_ptr, limits: JournalLimits) -> list[JournalEvent]:
    """Gives the unpublished image at image_ptr its journal against the
    published one at previous_ptr (NULL: none); for Engine.keep_journal."""
    c_limits = ffi.new("struct xd_journal_limits *", {"depth": limits.depth, "bytes": limits.bytes})
    info = ffi.new("struct xd_image_info *")
    lib.xd_image_info(image_ptr, info)
    zones = info.zones
    events = ffi.new("struct xd_journal_event[]", max(zones, 1))
    count = ffi.new("size_t *")
    rc = lib.xd_image_journal_derive(image_ptr, previous_ptr, c_limits, events, zones, count)
    _raise_for(rc, what="keeping the IXFR journal")
    return [_event(events[i]) for i in range(count[0])]


def _event(e) -> JournalEvent:
    return JournalEvent(
        zone=dns.name.from_wire(bytes(e.origin[0 : e.origin_len]), 0)[0],
        kind=JOURNAL_KINDS[e.kind],
        serial_from=e.serial_from,
        serial_to=e.serial_to,
        removed=e.removed,
        added=e.added,
        depth=e.depth,
        bytes=e.bytes,
    )


def journal_info(info) -> JournalInfo:
    return JournalInfo(info.depth, info.bytes, info.oldest_serial if info.depth else None)
