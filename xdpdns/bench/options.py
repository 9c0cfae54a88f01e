"""The options of `xdpdns bench`, and their checks: the command line is
parsed once into a frozen :class:`BenchOptions`; every bad value is an error
that names the option and what was expected, before anything is started.

Light to import: `xdpdns --help` builds this parser.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from xdpdns.bench.topology import STEERING

MODES = ("xdp", "socket", "both")
GENERATORS = ("dnsperf", "kxdpgun", "xdpdns")
PEERS = ("knot", "nsd", "bind")
MAX_DURATION = 24 * 3600.0  # every load is bounded; a day is the most a soak may ask
MAX_REPEAT = 1000
MAX_QUEUES = 256
DEFAULT_DURATION = 10.0
DEFAULT_SOAK_INTERVAL = 5.0

ROOT_MESSAGE = (
    "xdpdns bench builds network namespaces and needs root; without root, "
    "use --target HOST:PORT against a server on loopback"
)


class UsageError(ValueError):
    """A bad option value (exit status 2); the message names the option."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `xdpdns bench` (cli.py adds the subcommand)."""
    what = p.add_argument_group("what is measured")
    what.add_argument(
        "--mode",
        choices=MODES,
        help="xdpdns in XDP mode, socket mode, or both, one after the other (default: both)",
    )
    what.add_argument(
        "--compare",
        metavar="PEERS",
        help="also measure these peers, comma-separated from knot,nsd,bind, "
        "with the same zones and queries in the same topology (Knot in the "
        "chosen modes; NSD and BIND in socket mode)",
    )
    what.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="no namespaces: load a server already running on loopback "
        "(dnsperf only; no root needed)",
    )
    what.add_argument(
        "--zone",
        action="append",
        metavar="[ORIGIN=]FILE",
        help="zone file to serve (repeatable; default: the configuration's "
        "zones, else the example zone)",
    )
    what.add_argument(
        "--config",
        metavar="FILE",
        help="xdpdns configuration file for the xdpdns server (its [[zone]] "
        "entries are served by the peers too)",
    )

    load = p.add_argument_group("the load")
    load.add_argument(
        "--generator",
        choices=GENERATORS,
        help="dnsperf (kernel sockets), kxdpgun (AF_XDP, one queue) or xdpdns "
        "(AF_XDP, every queue; latency percentiles) (default: dnsperf)",
    )
    load.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help=f"seconds of load per run (default: {DEFAULT_DURATION:g})",
    )
    load.add_argument(
        "--rate",
        type=int,
        default=0,
        metavar="QPS",
        help="queries per second offered over all queues (default: 0, as fast "
        "as the generator goes)",
    )
    load.add_argument(
        "--clients",
        type=int,
        default=8,
        metavar="N",
        help="dnsperf's simulated clients, -c (default: 8)",
    )
    load.add_argument(
        "--queries",
        metavar="FILE",
        help="your own query file, NAME TYPE a line (default: generated from the zones)",
    )
    load.add_argument(
        "--mix",
        metavar="KIND=SHARE,...",
        help="kinds of generated queries: hit, nxdomain, nodata, wildcard, "
        "referral (default: hit=60,nxdomain=10,nodata=10,wildcard=10,"
        "referral=10)",
    )
    load.add_argument(
        "--query-count",
        type=int,
        default=10_000,
        metavar="N",
        help="generated queries (default: 10000)",
    )
    load.add_argument(
        "--seed", type=int, default=2024, help="seed of the generated queries (default: 2024)"
    )
    load.add_argument(
        "--dnssec",
        action="store_true",
        help="every query with EDNS and the DO bit: signed zones answer "
        "with RRSIGs and proofs of non-existence",
    )
    load.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds of load before each measured run (default: 1; 0: none)",
    )

    where = p.add_argument_group("topology and CPUs")
    where.add_argument(
        "--queues",
        type=int,
        metavar="N",
        help="queues of the veth pair; the servers get as many workers (default: 1)",
    )
    where.add_argument(
        "--steer",
        choices=STEERING,
        help="default: the veth's NAPI runs where the kernel puts it; "
        "strict: threaded and pinned to its own side's CPUs, so that the "
        "server's CPUs carry all of its work, queue i's NAPI beside queue "
        "i's worker; split: as strict, but the server's NAPI threads on the "
        "server CPUs after the workers' (as NIC interrupts kept off the "
        "workers' cores) (default: default)",
    )
    where.add_argument(
        "--server-cpus",
        metavar="LIST",
        help="CPUs of the server, like 0-3,8 (default: the first half of the usable CPUs)",
    )
    where.add_argument(
        "--client-cpus", metavar="LIST", help="CPUs of the load generator (default: the other half)"
    )

    runs = p.add_argument_group("runs and output")
    runs.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="runs per server and mode, alternating; the table gives medians (default: 3)",
    )
    runs.add_argument(
        "--soak",
        action="store_true",
        help="one long run of xdpdns at a fixed --rate that samples its "
        "memory and answer rate every --sample-interval seconds",
    )
    runs.add_argument(
        "--sample-interval",
        type=float,
        default=DEFAULT_SOAK_INTERVAL,
        metavar="S",
        help=f"seconds between soak samples (default: {DEFAULT_SOAK_INTERVAL:g})",
    )
    runs.add_argument(
        "--json", metavar="FILE", help="write every run and the machine's description as JSON"
    )
    runs.add_argument("--chart", metavar="FILE", help="draw a PNG chart (matplotlib)")
    runs.add_argument(
        "--keep",
        action="store_true",
        help="keep the working directory (configurations, logs, queries)",
    )
    runs.add_argument(
        "--verbose", action="store_true", help="keep the generators' output in the JSON"
    )


@dataclass(frozen=True)
class BenchOptions:
    modes: tuple[str, ...]
    generator: str
    steering: str
    duration: float
    queues: int
    repeat: int
    compare: tuple[str, ...]
    rate: int
    clients: int
    server_cpus: tuple[int, ...]
    client_cpus: tuple[int, ...]
    zone_args: tuple[str, ...]
    config: str | None
    queries: Path | None
    mix: str | None
    query_count: int
    seed: int
    warmup: float
    target: tuple[str, int] | None
    soak: bool
    sample_interval: float
    json: Path | None
    chart: Path | None
    keep: bool
    verbose: bool
    dnssec: bool = False  # EDNS and DO on every query

    def plan(self) -> list[tuple[str, str]]:
        """(server, mode) of one repetition: xdpdns in each mode, then each
        peer in the modes it has (socket mode when it has none of them)."""
        from xdpdns.bench.servers import SERVER_MODES

        if self.target:
            return [("target", f"{self.target[0]}:{self.target[1]}")]
        out = [("xdpdns", m) for m in self.modes]
        for peer in self.compare:
            modes = [m for m in self.modes if m in SERVER_MODES[peer]] or ["socket"]
            out += [(peer, m) for m in modes]
        return out

    def settings(self) -> dict:
        """For the JSON: every option as given or defaulted."""
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items()}
        d["target"] = f"{self.target[0]}:{self.target[1]}" if self.target else None
        return d


def parse_cpus(text: str, option: str) -> tuple[int, ...]:
    """``0-3,8`` -> (0, 1, 2, 3, 8); only CPUs this process may use."""
    cpus: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, sep, high = part.partition("-")
            first, last = int(low), int(high) if sep else int(low)
            if first < 0 or last < first:
                raise ValueError
            cpus.extend(range(first, last + 1))
    except ValueError:
        raise UsageError(f"{option}: {text!r}: expected CPUs like 0-3,8") from None
    if not cpus:
        raise UsageError(f"{option}: {text!r}: expected CPUs like 0-3,8")
    usable = os.sched_getaffinity(0)
    outside = sorted(set(cpus) - usable)
    if outside:
        raise UsageError(
            f"{option}: CPU {','.join(map(str, outside))} is not usable here "
            f"(usable: {_cpu_text(sorted(usable))})"
        )
    return tuple(dict.fromkeys(cpus))


def _cpu_text(cpus) -> str:
    return ",".join(map(str, cpus))


def default_cpus() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The first half of the usable CPUs for the server, the rest for the
    client (both share the only one on a one-CPU machine)."""
    usable = sorted(os.sched_getaffinity(0))
    half = max(1, len(usable) // 2)
    return tuple(usable[:half]), tuple(usable[half:] or usable)


def parse_target(text: str) -> tuple[str, int]:
    """HOST:PORT or [HOST6]:PORT, on loopback only: the benchmark sends to
    nothing it did not create but loopback."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"--target: {text!r}: expected HOST:PORT, like 127.0.0.1:5353")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise UsageError(
            f"--target: {text!r}: expected HOST:PORT with a numeric address, like 127.0.0.1:5353"
        ) from None
    if not address.is_loopback:
        raise UsageError(
            f"--target: {host} is not a loopback address; the benchmark sends "
            "only to loopback or to namespaces it creates"
        )
    if not 1 <= number <= 65535:
        raise UsageError(f"--target: port {port}: expected 1 to 65535")
    return str(address), number


def resolve(args: argparse.Namespace) -> BenchOptions:
    """Checks the parsed arguments; raises UsageError naming the option."""
    target = parse_target(args.target) if args.target else None
    given = {
        name
        for name in ("mode", "compare", "queues", "steer", "server_cpus")
        if getattr(args, name) is not None
    }
    if target and given:
        names = ", ".join("--" + n.replace("_", "-") for n in sorted(given))
        raise UsageError(f"--target loads a server already running: {names} do not apply")
    generator = args.generator or "dnsperf"
    if target and generator != "dnsperf":
        raise UsageError(
            f"--target: the {generator} generator sends through AF_XDP on the "
            "benchmark's veth; against loopback only dnsperf works"
        )
    mode = args.mode or "both"
    modes = ("xdp", "socket") if mode == "both" else (mode,)
    compare = tuple(dict.fromkeys(p.strip() for p in (args.compare or "").split(",") if p.strip()))
    for peer in compare:
        if peer not in PEERS:
            raise UsageError(
                f"--compare: unknown server {peer!r}; expected some of {','.join(PEERS)}"
            )
    duration = DEFAULT_DURATION if args.duration is None else args.duration
    if not 0 < duration <= MAX_DURATION:
        raise UsageError(
            f"--duration: expected more than 0 and at most {MAX_DURATION:g} "
            f"seconds, got {duration:g}"
        )
    queues = 1 if args.queues is None else args.queues
    if not 1 <= queues <= MAX_QUEUES:
        raise UsageError(f"--queues: expected 1 to {MAX_QUEUES}, got {queues}")
    repeat = 3 if args.repeat is None else args.repeat
    if not 1 <= repeat <= MAX_REPEAT:
        raise UsageError(f"--repeat: expected 1 to {MAX_REPEAT}, got {repeat}")
    if args.rate < 0:
        raise UsageError(f"--rate: expected 0 (unlimited) or more, got {args.rate}")
    if args.clients < 1:
        raise UsageError(f"--clients: expected 1 or more, got {args.clients}")
    if not 0 <= args.warmup <= 60:
        raise UsageError(f"--warmup: expected 0 to 60 seconds, got {args.warmup:g}")
    if args.sample_interval <= 0:
        raise UsageError(f"--sample-interval: expected more than 0, got {args.sample_interval:g}")
    if args.soak:
        if target:
            raise UsageError("--soak samples a server it starts itself: not with --target")
        if args.mode in (None, "both"):
            raise UsageError("--soak measures one server: give --mode xdp or --mode socket")
        if compare:
            raise UsageError("--soak measures xdpdns alone: not with --compare")
        if args.repeat not in (None, 1):
            raise UsageError("--soak is one long run: not with --repeat")
        if args.rate <= 0:
            raise UsageError("--soak runs at a fixed rate: give --rate QPS")
        repeat = 1
    server_def, client_def = default_cpus()
    server_cpus = parse_cpus(args.server_cpus, "--server-cpus") if args.server_cpus else server_def
    client_cpus = parse_cpus(args.client_cpus, "--client-cpus") if args.client_cpus else client_def
    queries = Path(args.queries) if args.queries else None
    if queries is not None and not queries.is_file():
        raise UsageError(f"--queries: {queries}: no such file")
    if args.query_count < 1:
        raise UsageError(f"--query-count: expected 1 or more, got {args.query_count}")
    return BenchOptions(
        modes=modes,
        generator=generator,
        steering=args.steer or "default",
        duration=duration,
        queues=queues,
        repeat=repeat,
        compare=compare,
        rate=args.rate,
        clients=args.clients,
        server_cpus=server_cpus,
        client_cpus=client_cpus,
        zone_args=tuple(args.zone or ()),
        config=args.config,
        queries=queries,
        mix=args.mix,
        query_count=args.query_count,
        seed=args.seed,
        warmup=args.warmup,
        dnssec=args.dnssec,
        target=target,
        soak=args.soak,
        sample_interval=args.sample_interval,
        json=Path(args.json) if args.json else None,
        chart=Path(args.chart) if args.chart else None,
        keep=args.keep,
        verbose=args.verbose,
    )
