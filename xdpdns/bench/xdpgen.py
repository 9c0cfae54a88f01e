"""xdpdns's own AF_XDP load generator, as a process of its own:

    ip netns exec CLIENT_NS python -m xdpdns.bench.xdpgen --interface IF \\
        --queries FILE --src-mac MAC --dst-mac MAC --src ADDR --dst ADDR [...]

It sends the queries of FILE (dnsperf's format) through the engine's
LoadGenerator (xdpdns.bench.loadgen), one AF_XDP socket and one pinned thread per queue, for
--duration seconds at --rate queries/s over all queues (0: as fast as it
goes), waits --drain seconds for late answers, and prints one JSON object on
stdout: totals, answers by RCODE, latency percentiles, and per-queue counts.
On failure it prints ``{"error": "..."}`` and exits 1.  SIGTERM or SIGINT end
the sending early; the drain and the report still happen.

A process of its own because it must run inside the client namespace (the
benchmark's own process stays in the host's) and because its threads spin on
the client's CPUs.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import dns.rcode

LATENCY_BUCKETS = 24  # bucket i: [2^i, 2^(i+1)) microseconds; bucket 0 also < 1
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999}


def _mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a MAC like 02:00:00:00:00:01")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a MAC like 02:00:00:00:00:01"
        ) from None


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not an IP address") from None


def _cpus(text: str) -> list[int]:
    try:
        cpus = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CPU numbers like 2,3") from None
    if not cpus or min(cpus) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CPU numbers like 2,3")
    return cpus


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m xdpdns.bench.xdpgen", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--interface", required=True)
    p.add_argument("--queries", required=True, type=Path, help="NAME TYPE a line")
    p.add_argument("--src-mac", required=True, type=_mac)
    p.add_argument("--dst-mac", required=True, type=_mac)
    p.add_argument("--src", required=True, type=_address)
    p.add_argument("--dst", required=True, type=_address)
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--rate", type=int, default=0, help="queries/s over all queues; 0: unlimited")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--drain", type=float, default=0.5)
    p.add_argument("--queues", type=int, default=0, help="0: every queue")
    p.add_argument("--first-queue", type=int, default=0)
    p.add_argument(
        "--cpus",
        type=_cpus,
        help="queue i's thread on CPU i modulo the list "
        "(default: the CPUs this process may run on)",
    )
    p.add_argument("--frames", type=int, default=8192)
    p.add_argument("--ring", type=int, default=2048)
    p.add_argument("--no-busy-poll", action="store_true")
    p.add_argument("--dnssec", action="store_true", help="EDNS with the DO bit on every query")
    p.add_argument("--bpf-object", type=Path, help="default: the packaged xdpgen.bpf.o")
    return p


def percentile(buckets: Sequence[int], fraction: float) -> float | None:
    """The latency (µs) below which `fraction` of the answers fall,
    interpolated linearly inside the log2 bucket where it lies; None
    without answers.  Resolution: the bucket, a factor of two."""
    total = sum(buckets)
    if total == 0:
        return None
    want = fraction * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= want:
            low = 0.0 if i == 0 else float(2**i)
            high = float(2 ** (i + 1))
            return low + (high - low) * (want - seen) / count
        seen += count
    return float(2 ** len(buckets))


def summarize(stats: Sequence, duration: float, rate: int) -> dict:
    """The report from the per-queue GeneratorQueueStats."""

    def total(name: str) -> int:
        return sum(getattr(q, name) for q in stats)

    sent, answered = total("sent"), total("answered")
    buckets = [sum(q.latency[i] for q in stats) for i in range(LATENCY_BUCKETS)]
    rcodes: dict[str, int] = {}
    for code in range(16):
        count = sum(q.rcodes[code] for q in stats)
        if count:
            rcodes[dns.rcode.to_text(code)] = count
    latency: dict[str, float] = {}
    if answered:
        latency["avg"] = total("latency_sum_ns") / answered / 1e6
        for key, fraction in PERCENTILES.items():
            latency[key] = percentile(buckets, fraction) / 1e3
    queues = [
        {
            "queue": i,
            "cpu": q.cpu,
            "sent": q.sent,
            "answered": q.answered,
            "lost": max(0, q.sent - q.answered),
            "tx_full": q.tx_full,
            "kernel_rx_dropped": q.kernel_rx_dropped,
            "kernel_rx_ring_full": q.kernel_rx_ring_full,
        }
        for i, q in enumerate(stats)
    ]
    counters = {
        name: total(name)
        for name in (
            "truncated",
            "unexpected",
            "malformed",
            "bad_checksum",
            "tx_full",
            "kernel_rx_dropped",
            "kernel_rx_ring_full",
        )
    }
    return {
        "generator": "xdpdns",
        "sent": sent,
        "answered": answered,
        "lost": max(0, sent - answered),
        "duration": duration,
        "qps": answered / duration if duration > 0 else 0.0,
        "rate": rate,
        "rcodes": rcodes,
        "latency_ms": latency,
        "latency_buckets_us": buckets,
        "queues": queues,
        "counters": counters,
    }


def _load_generator_class():
    try:
        from xdpdns.bench.loadgen import LoadGenerator
    except ImportError as exc:
        raise RuntimeError(
            f"this xdpdns has no load generator ({exc}); rebuild it (pip install -e .)"
        ) from None
    return LoadGenerator


def generate(args: argparse.Namespace, factory: Callable | None = None) -> dict:
    """Runs the load and returns the report; raises OSError or ValueError
    with the engine's message when the generator cannot start."""
    from xdpdns.bench import queries as query_files

    wire = query_files.to_wire(query_files.read(args.queries), dnssec=args.dnssec)
    factory = factory or _load_generator_class()
    cpus = args.cpus or sorted(os.sched_getaffinity(0))
    options = {}
    if args.bpf_object is not None:
        options["bpf_object"] = str(args.bpf_object)
    started = time.monotonic()
    stopped_at: list[float] = []
    with factory(
        interface=args.interface,
        queries=wire,
        src_mac=args.src_mac,
        dst_mac=args.dst_mac,
        src_addr=args.src,
        dst_addr=args.dst,
        port=args.port,
        rate=args.rate,
        duration=args.duration,
        drain=args.drain,
        queues=args.queues,
        first_queue=args.first_queue,
        cpus=cpus,
        frames=args.frames,
        ring=args.ring,
        busy_poll=not args.no_busy_poll,
        **options,
    ) as gen:
        _wait(gen, stopped_at)
        stats = gen.queue_stats()
    # Answers per second of sending: the full duration, or up to the
    # signal that ended it early.
    sending = args.duration
    if stopped_at:
        sending = min(sending, stopped_at[0] - started)
    return summarize(stats, sending, args.rate)


def _wait(gen, stopped_at: list[float]) -> None:
    """gen.wait() blocks in C, where Python cannot run a signal handler: it
    runs in a thread while this one waits, and a signal ends the sending."""
    done = threading.Event()
    failure: list[BaseException] = []

    def waiter() -> None:
        try:
            gen.wait()
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)
        finally:
            done.set()

    def on_signal(signum, frame) -> None:
        if not stopped_at:
            stopped_at.append(time.monotonic())
            gen.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        threading.Thread(target=waiter, name="xdpgen-wait", daemon=True).start()
        while not done.wait(0.2):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]


def main(argv: Sequence[str] | None = None, factory: Callable | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        report = generate(args, factory)
    except (OSError, ValueError, RuntimeError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(json.dumps({"error": message}))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
