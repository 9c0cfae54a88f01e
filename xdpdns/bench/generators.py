"""The load generators, run in the client namespace (or on the host against
loopback) for a bounded time, and what their output says.

- ``dnsperf``: kernel sockets, the tool users know; one core saturates near
  110-150k queries/s here (DESIGN.md), so it cannot tell fast servers apart.
- ``kxdpgun`` (Knot 3.2): AF_XDP, but it counts only "combined" channels, so
  on veth it sends on one queue, and one thread receives at most about 700k
  answers/s.
- ``xdpdns``: xdpdns's own AF_XDP generator (xdpdns/bench/xdpgen.py over
  xdpdns.bench.loadgen's LoadGenerator): one socket and one pinned thread per client
  queue, answers counted by RCODE and latency in log2 buckets.

Every run is a subprocess with a deadline (its duration plus a margin),
stopped by its PID when the deadline passes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from xdpdns.bench import procfs
from xdpdns.bench.process import child_setup, find_program
from xdpdns.bench.topology import Netns, client_program_off

GENERATORS = ("dnsperf", "kxdpgun", "xdpdns")
TOOLS = {"dnsperf": ("dnsperf", "dnsperf"), "kxdpgun": ("kxdpgun", "knot-dnsutils")}
# kxdpgun has no "unlimited": it needs a rate; this one is beyond what one
# thread sends (DESIGN.md: about 3M/s offered was the most used here).
KXDPGUN_UNLIMITED = 10_000_000
DEADLINE_MARGIN = 30.0  # seconds a generator may take beyond its duration
DRAIN = 0.5  # seconds the xdpdns generator waits for late answers
TICK = 0.5  # seconds between calls of the runner's tick while a load runs


Tick = Callable[[float], None] | None
Started = Callable[[dict], None] | None


class GeneratorError(RuntimeError):
    """A generator is missing, failed or printed what we cannot read."""


def missing_tool(generator: str) -> str | None:
    """Why a generator cannot run here (the apt-get line), None when it can."""
    if generator not in TOOLS:
        return None
    program, package = TOOLS[generator]
    if find_program(program):
        return None
    return f"{program} not found (Debian: apt-get install {package})"


def version(generator: str) -> str:
    """The generator's version, for the report."""
    if generator == "xdpdns":
        from xdpdns import __version__

        return f"xdpdns {__version__}"
    program = find_program(TOOLS[generator][0])
    if program is None:
        return "missing"
    if generator == "dnsperf":  # it has no version option
        return f"dnsperf {procfs.package_version('dnsperf') or '?'} (Debian package)"
    return procfs.first_line([program, "-V"])


@dataclass(frozen=True)
class Load:
    """What to send, where, for how long, from which CPUs."""

    target: str  # server address
    port: int
    query_file: Path
    duration: float
    rate: int = 0  # queries/s over all queues; 0: as fast as it goes
    clients: int = 8  # dnsperf -c
    outstanding: int = 0  # dnsperf -q; 0: 25 per client, at least 100
    threads: int = 0  # dnsperf -T; 0: one per client CPU, at most one per client
    timeout: float = 1.0  # dnsperf -t: seconds before a query counts as lost
    queues: int = 1  # client queues to load (xdpdns generator)
    cpus: tuple[int, ...] = ()
    netns: Netns | None = None  # None: the host (loopback targets)
    interface: str | None = None
    src_address: str | None = None
    src_mac: bytes = b""
    dst_mac: bytes = b""
    dnssec: bool = False  # EDNS with DO on every query
    tcp: bool = False  # dnsperf -m tcp: each client a TCP connection


@dataclass
class LoadResult:
    generator: str
    sent: int
    answered: int
    duration: float  # seconds of sending
    rcodes: dict[str, int] = field(default_factory=dict)
    # What the generator measures, in ms: avg, min, max, stddev (dnsperf);
    # avg, p50, p90, p99, p999 from log2 buckets (xdpdns); nothing (kxdpgun).
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_buckets_us: list[int] = field(default_factory=list)  # log2 buckets (xdpdns)
    queues: list[dict] = field(default_factory=list)  # per queue (xdpdns), thread (kxdpgun)
    counters: dict[str, int] = field(default_factory=dict)  # generator-specific
    offered_rate: int = 0
    notes: list[str] = field(default_factory=list)
    process: dict = field(default_factory=dict)  # pid and start time, for the record
    output: str = ""

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.answered)

    @property
    def qps(self) -> float:
        """Answers per second of sending."""
        return self.answered / self.duration if self.duration > 0 else 0.0

    def as_dict(self, keep_output: bool = False) -> dict:
        d = asdict(self)
        d.update(lost=self.lost, qps=self.qps)
        if not keep_output:
            d.pop("output")
        return d


# ---- dnsperf ------------------------------------------------------------------


def dnsperf_argv(load: Load) -> list[str]:
    threads = load.threads or max(1, min(len(load.cpus) or 1, load.clients))
    outstanding = load.outstanding or max(100, 25 * load.clients)
    argv = [
        find_program("dnsperf") or "dnsperf",
        "-s",
        load.target,
        "-p",
        str(load.port),
        "-d",
        str(load.query_file),
        "-l",
        f"{load.duration:g}",
        "-c",
        str(load.clients),
        "-T",
        str(threads),
        "-q",
        str(outstanding),
        "-t",
        f"{load.timeout:g}",
    ]
    if load.rate:
        argv += ["-Q", str(load.rate)]
    if load.dnssec:
        argv.append("-D")
    if load.tcp:
        argv += ["-m", "tcp"]
    return argv


def parse_dnsperf(text: str) -> LoadResult:
    """dnsperf 2.x's statistics block."""

    def num(pattern: str, cast=float, default=None):
        m = re.search(pattern, text)
        if not m:
            if default is not None:
                return default
            raise GeneratorError(f"dnsperf printed no {pattern!r}:\n{text[-2000:]}")
        return cast(m.group(1))

    codes_line = (
        text.split("Response codes:", 1)[-1].split("\n", 1)[0] if "Response codes:" in text else ""
    )
    rcodes = {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+) \(", codes_line)}
    latency = {}
    m = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", text)
    if m:
        latency = {
            "avg": float(m.group(1)) * 1e3,
            "min": float(m.group(2)) * 1e3,
            "max": float(m.group(3)) * 1e3,
        }
    m = re.search(r"Latency StdDev \(s\):\s+([\d.]+)", text)
    if m:
        latency["stddev"] = float(m.group(1)) * 1e3
    sent = num(r"Queries sent:\s+(\d+)", int)
    completed = num(r"Queries completed:\s+(\d+)", int)
    m = re.search(r"Average packet size:\s+request (\d+), response (\d+)", text)
    counters = {"lost": num(r"Queries lost:\s+(\d+)", int, 0)}
    if m:
        counters.update(request_bytes=int(m.group(1)), response_bytes=int(m.group(2)))
    return LoadResult(
        "dnsperf",
        sent,
        completed,
        num(r"Run time \(s\):\s+([\d.]+)"),
        rcodes=rcodes,
        latency_ms=latency,
        counters=counters,
    )


def run_dnsperf(load: Load, tick: Tick = None, started: Started = None) -> LoadResult:
    out, process = _run("dnsperf", dnsperf_argv(load), load, tick, started)
    parsed = parse_dnsperf(out)
    parsed.offered_rate = load.rate
    parsed.process = process
    parsed.output = out
    return parsed


# ---- kxdpgun ------------------------------------------------------------------


def kxdpgun_query_file(load: Load) -> Path:
    """The query file kxdpgun reads: with --dnssec, each line flagged D
    (EDNS and DO, kxdpgun(8)), written beside the plain one."""
    if not load.dnssec:
        return load.query_file
    flagged = load.query_file.with_name(load.query_file.name + ".dnssec")
    lines = load.query_file.read_text().splitlines()
    flagged.write_text("".join(f"{line} D\n" for line in lines if line.strip()))
    return flagged


def kxdpgun_argv(load: Load, query_file: Path | None = None) -> list[str]:
    rate = load.rate or KXDPGUN_UNLIMITED
    argv = [
        find_program("kxdpgun") or "kxdpgun",
        "-t",
        f"{load.duration:g}",
        "-Q",
        str(rate),
        "-i",
        str(query_file or load.query_file),
        "-p",
        str(load.port),
    ]
    if load.interface:
        argv += ["-I", load.interface]
    if load.cpus:
        # -F takes a first CPU and a step: a progression, else the first.
        cpus = sorted(load.cpus)
        steps = {b - a for a, b in zip(cpus, cpus[1:])}
        step = steps.pop() if len(steps) == 1 else 1
        argv += ["-F", f"{cpus[0]}s{step}"]
    return argv + [load.target]


def parse_kxdpgun(text: str, duration: float) -> LoadResult:
    """kxdpgun 3.2's summary: total queries and replies, answers by RCODE."""
    m = re.search(r"total queries:\s+(\d+)", text)
    r = re.search(r"total replies:\s+(\d+)", text)
    if not m or not r:
        raise GeneratorError(f"kxdpgun printed no totals:\n{text[-2000:]}")
    rcodes = {k: int(v) for k, v in re.findall(r"responded ([A-Z]+):\s+(\d+)", text)}
    threads = re.findall(r"thread#(\d+): sent (\d+), received (\d+)", text)
    queues = [{"queue": int(t), "sent": int(s), "answered": int(a)} for t, s, a in threads]
    counters = {}
    size = re.search(r"average DNS reply size:\s+(\d+)", text)
    if size:
        counters["response_bytes"] = int(size.group(1))
    # Its own "duration:" line is rounded to whole seconds: the asked one
    # is the sending time (-t).
    return LoadResult(
        "kxdpgun",
        int(m.group(1)),
        int(r.group(1)),
        duration,
        rcodes=rcodes,
        queues=queues,
        counters=counters,
    )


def run_kxdpgun(load: Load, tick: Tick = None, started: Started = None) -> LoadResult:
    if load.netns is None or not load.interface:
        raise GeneratorError(
            "kxdpgun sends through AF_XDP: it needs the benchmark's namespaces (not --target)"
        )
    out, process = _run(
        "kxdpgun", kxdpgun_argv(load, kxdpgun_query_file(load)), load, tick, started
    )
    parsed = parse_kxdpgun(out, load.duration)
    parsed.process = process
    parsed.offered_rate = load.rate or KXDPGUN_UNLIMITED
    if not load.rate:
        parsed.notes.append(f"kxdpgun needs a rate: offered {KXDPGUN_UNLIMITED:,}/s")
    if load.queues > 1 and len(parsed.queues) < load.queues:
        parsed.notes.append(
            f"kxdpgun sent on {len(parsed.queues) or 1} of {load.queues} "
            "queues (it counts only combined channels)"
        )
    parsed.output = out
    return parsed


# ---- xdpdns's generator --------------------------------------------------------


def xdpgen_argv(load: Load) -> list[str]:
    if not (load.interface and load.src_address and load.src_mac and load.dst_mac):
        raise GeneratorError(
            "the xdpdns generator needs the client interface, addresses "
            "and MACs of the benchmark's namespaces (not --target)"
        )
    argv = [
        sys.executable,
        "-m",
        "xdpdns.bench.xdpgen",
        "--interface",
        load.interface,
        "--queries",
        str(load.query_file),
        "--src-mac",
        load.src_mac.hex(":"),
        "--dst-mac",
        load.dst_mac.hex(":"),
        "--src",
        load.src_address,
        "--dst",
        load.target,
        "--port",
        str(load.port),
        "--rate",
        str(load.rate),
        "--duration",
        f"{load.duration:g}",
        "--drain",
        f"{DRAIN:g}",
        "--queues",
        str(load.queues),
    ]
    if load.dnssec:
        argv.append("--dnssec")
    if load.cpus:
        # Ascending, as the client's NAPI threads are pinned (topology.py).
        argv += ["--cpus", ",".join(map(str, sorted(load.cpus)))]
    return argv


def run_xdpgen(load: Load, tick: Tick = None, started: Started = None) -> LoadResult:
    # It reports its own failures as {"error": ...}: parsed, not checked.
    out, process = _run(
        "xdpdns generator", xdpgen_argv(load), load, tick, started, margin=DRAIN, check=False
    )
    parsed = parse_xdpgen(out)
    parsed.process = process
    return parsed


def parse_xdpgen(text: str) -> LoadResult:
    """The one JSON object xdpgen.py prints."""
    # Its stderr (warnings) shares the file: the result is the last line
    # that is a JSON object.
    data = None
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
                break
            except ValueError:
                continue
    if not isinstance(data, dict):
        raise GeneratorError(f"the xdpdns generator printed no result:\n{text[-2000:]}")
    if "error" in data:
        raise GeneratorError(f"the xdpdns generator: {data['error']}")
    return LoadResult(
        "xdpdns",
        data["sent"],
        data["answered"],
        data["duration"],
        rcodes=data["rcodes"],
        latency_ms=data["latency_ms"],
        latency_buckets_us=data.get("latency_buckets_us", []),
        queues=data["queues"],
        counters=data["counters"],
        offered_rate=data["rate"],
        output=text,
    )


RUNNERS = {"dnsperf": run_dnsperf, "kxdpgun": run_kxdpgun, "xdpdns": run_xdpgen}
# Generators that attach an XDP program of their own to the client's end.
AF_XDP_GENERATORS = ("kxdpgun", "xdpdns")


def run(generator: str, load: Load, tick: Tick = None, started: Started = None) -> LoadResult:
    """Runs one load; started(process) is called once the process exists
    (its PID and start time, for the record), and tick(elapsed) every TICK
    seconds while it runs (progress, steering, soak samples)."""
    reason = missing_tool(generator)
    if reason:
        raise GeneratorError(reason)
    if generator in AF_XDP_GENERATORS and load.netns is not None and load.interface:
        with client_program_off(load.netns, load.interface):
            return RUNNERS[generator](load, tick, started)
    return RUNNERS[generator](load, tick, started)


# ---- one bounded subprocess ----------------------------------------------------


def _run(
    what: str,
    argv: Sequence[str],
    load: Load,
    tick: Tick,
    started: Started,
    margin: float = 0.0,
    check: bool = True,
):
    """Runs argv (in load.netns, pinned to load.cpus) until it exits or its
    deadline passes (then SIGTERM, SIGKILL, by its PID); returns its
    output and its PID and start time.  Output goes to a file, not a pipe,
    so that a chatty tool never blocks while we are busy ticking."""
    full = load.netns.exec_argv(argv) if load.netns else list(argv)
    deadline = load.duration + margin + DEADLINE_MARGIN
    with tempfile.TemporaryFile("w+") as out:
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=child_setup(load.cpus),
                start_new_session=True,
            )
        except FileNotFoundError:
            raise GeneratorError(f"{what}: cannot run {full[0]}") from None
        t0 = time.monotonic()
        process = {"pid": proc.pid, "start_time": procfs.start_time(proc.pid)}
        try:
            if started is not None:
                started(process)
            while True:
                try:
                    proc.wait(TICK)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - t0
                    if elapsed > deadline:
                        raise GeneratorError(
                            f"{what} still ran {elapsed:.0f} s after it "
                            f"started (duration {load.duration:g} s); "
                            "stopped it"
                        ) from None
                    if tick is not None:
                        tick(elapsed)
        finally:
            _stop(proc)
        out.seek(0)
        text = out.read()
    if check and proc.returncode != 0:
        raise GeneratorError(f"{what} exited with {proc.returncode}:\n{text[-2000:]}")
    return text, process


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL.  Until it is waited for, the PID cannot be
    reused, so signalling it by PID is safe."""
    for stop in (proc.terminate, proc.kill):
        if proc.poll() is not None:
            return
        stop()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            continue
