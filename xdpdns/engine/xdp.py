"""XDP mode's settings and counters (engine.h's XDP section): port actions,
what the start reports, queue and program counters, the answer table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import dns.name

from xdpdns.engine._c import ffi, lib, _raise_for, _rcode_counts, _qtype_counts


# What the XDP program does with UDP to a port; the codes come from
# bpf/xdpdns_maps.h through the cffi build.
PORT_ACTIONS = {
    "pass": lib.XD_ACTION_PASS,
    "redirect": lib.XD_ACTION_REDIRECT,
    "drop": lib.XD_ACTION_DROP,
}


_HUGEPAGES = {
    "off": lib.XD_HUGEPAGES_OFF,
    "auto": lib.XD_HUGEPAGES_AUTO,
    "required": lib.XD_HUGEPAGES_REQUIRED,
}


_ZEROCOPY = {
    "auto": lib.XD_ZEROCOPY_AUTO,
    "off": lib.XD_ZEROCOPY_OFF,
    "on": lib.XD_ZEROCOPY_REQUIRED,
}


_ATTACH = {"link": lib.XD_ATTACH_LINK, "dispatcher": lib.XD_ATTACH_DISPATCHER}


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


def _prog_stats(out) -> ProgStats:
    return ProgStats(
        out.seen,
        out.redirected,
        out.passed,
        out.dropped,
        out.malformed,
        out.denied,
        out.answered_in_xdp,
        _rcode_counts(out.answered_in_xdp_rcode),
        out.rate_limited,
        out.slipped,
        _qtype_counts(out.answered_in_xdp_qtype),
    )


def _answers_info(out) -> AnswersInfo:
    return AnswersInfo(
        state=_ANSWERS_STATES.get(out.state, "off"),
        names=out.names,
        entries=out.entries,
        do_entries=out.do_entries,
        skipped=out.skipped,
        pages=out.pages,
        bytes=out.bytes,
        compile_seconds=out.compile_us / 1e6,
        install_seconds=out.install_us / 1e6,
        message=ffi.string(out.message).decode("utf-8", "replace"),
    )


# [xdp] answers, and the answer table's states (native/engine.h).
_ANSWERS = {"all": lib.XD_ANSWERS_ALL, "off": lib.XD_ANSWERS_OFF}


_ANSWERS_STATES = {
    lib.XD_ANSWERS_STATE_OFF: "off",
    lib.XD_ANSWERS_STATE_ON: "on",
    lib.XD_ANSWERS_STATE_PAUSED: "paused",
    lib.XD_ANSWERS_STATE_FAILED: "failed",
}


def dispatch_remove(interface: str, prog_id: int) -> None:
    """Takes XDP program prog_id out of libxdp's dispatcher on interface
    (nothing when it is not there).  Needs root: the guard of a server in
    dispatcher mode calls it (xdpdns/xdp.py)."""
    err = ffi.new("struct xd_error *")
    _raise_for(
        lib.xd_dispatch_remove(interface.encode(), prog_id, err),
        err,
        f"detaching from the XDP dispatcher on {interface}",
    )
