"""xdpdns's AF_XDP load generator (native/bench/xdpgen.c), wrapped: the one
module that imports its extension, xdpdns.bench._loadgen, which is built
apart from the server's engine (native/build_loadgen.py).  C objects are
owned and errors raised as the engine's are (xdpdns.engine._c)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Sequence

from xdpdns.bench._loadgen import ffi, lib
from xdpdns.engine._c import _CObject, _raise_for, _set_chars

_ZEROCOPY = {
    "auto": lib.XD_ZEROCOPY_AUTO,
    "off": lib.XD_ZEROCOPY_OFF,
    "on": lib.XD_ZEROCOPY_REQUIRED,
}


@dataclass(frozen=True)
class GeneratorQueueStats:
    """Counters of one load generator queue (struct xd_gen_stats)."""

    queue: int
    sent: int
    answered: int
    rcodes: tuple[int, ...]  # answers by RCODE, 16 entries
    truncated: int
    unexpected: int  # answers to no query in flight
    malformed: int
    tx_full: int  # sends put off for want of a frame or TX room
    latency: tuple[int, ...]  # bucket i: answers in [2^i, 2^(i+1)) us
    latency_sum_ns: int
    kernel_rx_dropped: int
    kernel_rx_ring_full: int
    cpu: int
    bad_checksum: int = 0  # answers whose IPv4 or UDP checksum was wrong (not answered)


class LoadGenerator(_CObject):
    """xdpdns's AF_XDP load generator (native/bench/xdpgen.c): one socket and one
    pinned thread per queue of ``interface``, sending ``queries`` (DNS
    messages, used in turn) from ``src_addr`` to ``dst_addr`` at ``rate``
    queries a second over all queues (0: as fast as it can) for
    ``duration`` seconds, then waiting ``drain`` seconds for late answers.

    It starts sending at once; :meth:`wait` returns when the run is over.
    Needs root, and an interface with no XDP program on it: the generator
    attaches its own (``xdpgen.bpf.o``) to receive the answers.
    """

    _closed = "load generator closed"

    def __init__(
        self,
        *,
        interface: str,
        queries: Sequence[bytes],
        src_mac: bytes,
        dst_mac: bytes,
        src_addr: str,
        dst_addr: str,
        port: int = 53,
        rate: int = 0,
        duration: float = 5.0,
        drain: float = 0.5,
        queues: int = 0,
        first_queue: int = 0,
        cpus: Sequence[int] = (),
        bpf_object: str | os.PathLike | None = None,
        frames: int = 8192,
        ring: int = 2048,
        zerocopy: str = "auto",
        generic: bool = False,
        busy_poll: bool = True,
    ) -> None:
        if bpf_object is None:
            from xdpdns.bpfobj import GENERATOR_OBJECT_NAME, bpf_object_path

            bpf_object = bpf_object_path(GENERATOR_OBJECT_NAME)
        src = ipaddress.ip_address(src_addr)
        dst = ipaddress.ip_address(dst_addr)
        if src.version != dst.version:
            raise ValueError(f"addresses of two families: {src} and {dst}")
        if len(src_mac) != 6 or len(dst_mac) != 6:
            raise ValueError("a MAC address is 6 bytes")
        if not queries:
            raise ValueError("no queries to send")
        cfg = ffi.new("struct xd_gen_config *")
        _set_chars(cfg, "ifname", interface, "interface name")
        _set_chars(cfg, "bpf_object", os.fsdecode(bpf_object), "BPF object path")
        cfg.queues = queues
        cfg.first_queue = first_queue
        if len(cpus) > len(cfg.cpus):
            raise ValueError(f"at most {len(cfg.cpus)} CPUs")
        for i, cpu in enumerate(cpus):
            cfg.cpus[i] = cpu
        cfg.ncpus = len(cpus)
        cfg.frames_per_queue = frames
        cfg.frame_size = 2048
        cfg.ring_size = ring
        cfg.zerocopy = _ZEROCOPY[zerocopy]
        cfg.generic = 1 if generic else 0
        cfg.busy_poll = 1 if busy_poll else 0
        cfg.src_mac = src_mac
        cfg.dst_mac = dst_mac
        cfg.family = socket.AF_INET if src.version == 4 else socket.AF_INET6
        ffi.memmove(cfg.src_addr, src.packed, len(src.packed))
        ffi.memmove(cfg.dst_addr, dst.packed, len(dst.packed))
        cfg.dst_port = port
        cfg.rate = rate
        cfg.duration_ms = max(1, round(duration * 1000))
        cfg.drain_ms = round(drain * 1000)
        blob = b"".join(queries)
        lens = ffi.new("uint32_t[]", [len(q) for q in queries])
        out = ffi.new("struct xd_gen **")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_gen_start(cfg, blob, lens, len(queries), out, err), err)
        self._own(out[0], lib.xd_gen_free)

    def wait(self) -> None:
        """Returns when every queue has sent for its duration and drained."""
        _raise_for(lib.xd_gen_wait(self._ptr()))

    def stop(self) -> None:
        """Ends the sending now; the drain still runs."""
        lib.xd_gen_stop(self._ptr())

    def queue_stats(self) -> list[GeneratorQueueStats]:
        g = self._ptr()
        out = ffi.new("struct xd_gen_stats *")
        result = []
        for i in range(lib.xd_gen_queue_count(g)):
            _raise_for(lib.xd_gen_queue_stats(g, i, out))
            result.append(
                GeneratorQueueStats(
                    i,
                    out.sent,
                    out.answered,
                    tuple(out.rcodes),
                    out.truncated,
                    out.unexpected,
                    out.malformed,
                    out.tx_full,
                    tuple(out.latency),
                    out.latency_sum_ns,
                    out.kernel_rx_dropped,
                    out.kernel_rx_ring_full,
                    out.cpu,
                    out.bad_checksum,
                )
            )
        return result
