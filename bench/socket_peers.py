#!/usr/bin/env python3
"""dnsperf against xdpdns (socket mode), NSD and Knot DNS on one zone and
one query file, on loopback, in one run, over UDP or (--transport tcp) TCP.

Each server in turn is started on 127.0.0.1, pinned to the server CPU (every
thread, re-pinned once it answers: knotd sets its own affinity), warmed up,
and measured with dnsperf pinned to the client CPU for a bounded time; the
servers alternate over the repeats, and the table gives medians.  Besides
queries per second, the server's own CPU time over the run is read from
/proc: when dnsperf on one core is the bottleneck (DESIGN.md: near
110-150k qps here) the server is below 100 % of its CPU, and queries per
server CPU-second is what still tells the servers apart.

The zone (names with A, AAAA, MX, CNAMEs, a wildcard, delegations with glue)
and the query file (hits, CNAMEs, NXDOMAIN, NODATA, wildcard, referrals) are
generated with a fixed seed in a temporary directory, together with each
server's configuration and state; everything is removed at the end unless
--keep.  Nothing is sent anywhere but 127.0.0.1.  Not part of the test run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xdpdns.bench import generators, procfs, servers
from xdpdns.bench.process import Server
from xdpdns.bench.report import median
from xdpdns.bench.zones import ZoneFile

ORIGIN = "bench.test."
SERVERS = ("xdpdns", "nsd", "knot")


def write_zone(path: Path, names: int, seed: int) -> dict:
    """A zone of `names` hosts plus aliases, delegations and a wildcard."""
    rng = random.Random(seed)
    aliases = max(1, names // 20)
    delegations = max(1, names // 100)
    with open(path, "w") as f:
        f.write(
            f"$ORIGIN {ORIGIN}\n$TTL 3600\n"
            "@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n"
            "@ IN NS ns1\n@ IN NS ns2\n"
            "ns1 IN A 198.18.0.1\nns2 IN A 198.18.0.2\n"
            "@ IN MX 10 mail\nmail IN A 198.18.0.3\n"
            '*.wild IN A 198.18.0.4\n*.wild IN TXT "wildcard"\n'
        )
        for i in range(names):
            f.write(f"host{i:07d} IN A 198.18.{(i >> 8) & 255}.{i & 255}\n")
            if i % 2 == 0:
                f.write(f"host{i:07d} IN AAAA 2001:2::{i >> 16:x}:{i & 0xFFFF:x}\n")
            if i % 10 == 0:
                f.write(f"host{i:07d} IN MX 10 host{(i + 1) % names:07d}\n")
        for i in range(aliases):
            f.write(f"alias{i:07d} IN CNAME host{rng.randrange(names):07d}\n")
        for i in range(delegations):
            f.write(
                f"dlg{i:06d} IN NS ns1.dlg{i:06d}\ndlg{i:06d} IN NS ns2.dlg{i:06d}\n"
                f"ns1.dlg{i:06d} IN A 198.19.{(i >> 8) & 255}.{i & 255}\n"
                f"ns2.dlg{i:06d} IN AAAA 2001:2:1::{i:x}\n"
            )
    return {
        "names": names,
        "aliases": aliases,
        "delegations": delegations,
        "bytes": path.stat().st_size,
    }


# Query mix: (share, kind).  Percentages of the query file.
MIX = (
    (40, "hit A"),
    (10, "AAAA (half hit, half NODATA)"),
    (5, "MX hit with additional"),
    (10, "CNAME in zone"),
    (10, "NXDOMAIN"),
    (5, "NODATA (TXT)"),
    (10, "wildcard"),
    (10, "referral"),
)


def write_queries(path: Path, count: int, zone: dict, seed: int) -> None:
    rng = random.Random(seed + 1)
    names, aliases, dlg = zone["names"], zone["aliases"], zone["delegations"]
    kinds = [k for share, k in MIX for _ in range(share)]
    with open(path, "w") as f:
        for _ in range(count):
            kind = rng.choice(kinds)
            if kind == "hit A":
                line = f"host{rng.randrange(names):07d}.{ORIGIN} A"
            elif kind.startswith("AAAA"):
                line = f"host{rng.randrange(names):07d}.{ORIGIN} AAAA"
            elif kind.startswith("MX"):
                line = f"host{rng.randrange(0, names, 10):07d}.{ORIGIN} MX"
            elif kind == "CNAME in zone":
                line = f"alias{rng.randrange(aliases):07d}.{ORIGIN} A"
            elif kind == "NXDOMAIN":
                line = f"nx{rng.randrange(10**7):07d}.{ORIGIN} A"
            elif kind.startswith("NODATA"):
                line = f"host{rng.randrange(names):07d}.{ORIGIN} TXT"
            elif kind == "wildcard":
                line = f"w{rng.randrange(10**6)}.wild.{ORIGIN} A"
            else:
                line = f"www.dlg{rng.randrange(dlg):06d}.{ORIGIN} A"
            f.write(line + "\n")


def summarize(msg) -> tuple:
    """What two servers must agree on: rcode, AA, and the sections as sets of
    RRsets (minimal responses both; the additional section is left out)."""
    if msg is None:
        return ("no answer",)

    def section(rrsets):
        return frozenset(
            (r.name.to_text().lower(), r.rdtype, frozenset(x.to_text() for x in r)) for r in rrsets
        )

    return (
        msg.rcode(),
        bool(msg.flags & 0x0400),
        section(msg.answer),
        frozenset((r.name.to_text().lower(), r.rdtype) for r in msg.authority),
    )


def sample_answers(server: Server, queries: list[tuple[str, str]]) -> list[tuple]:
    return [summarize(server.ask(name, qtype)) for name, qtype in queries]


def xdpdns_tcp_config(workdir: Path, args) -> Path:
    """TCP workers as many as the peers', and connection limits above the
    load (every dnsperf client is one connection from 127.0.0.1)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "xdpdns.toml"
    conf.write_text(
        f"[server]\ntcp_workers = {args.workers}\n"
        f"tcp_max_connections = {max(256, 2 * args.clients)}\n"
        f"tcp_max_client_connections = {max(32, 2 * args.clients)}\n"
    )
    return conf


def make_server(
    name: str, args, workdir: Path, zonefile: Path, port: int, cpus: set[int] | None = None
) -> Server:
    """The server on 127.0.0.1:port, pinned to cpus from its start."""
    where = servers.Placement(
        listen=(servers.LOOPBACK,), port=port, cpus=tuple(cpus or ()), workers=args.workers
    )
    options = {}
    if name == "xdpdns" and args.transport == "tcp":
        options["config"] = xdpdns_tcp_config(workdir, args)
    return servers.make_server(
        name,
        "socket",
        workdir,
        [ZoneFile(ORIGIN, zonefile)],
        where,
        command=shlex.split(args.xdpdns),
        log_level="warning",
        **options,
    )


def measure(server, args, queryfile: Path) -> dict:
    """Starts server, pins it, warms it up, runs dnsperf once, stops it."""
    server_cpus, client_cpus = {args.server_cpu}, {args.client_cpu}
    perf = None
    try:
        server.start()
        startup = server.wait_answer(f"host0000000.{ORIGIN}", "A", timeout=args.start_timeout)
        pids = server.pids()
        threads = procfs.pin_all(pids, server_cpus)
        load = generators.Load(
            target=servers.LOOPBACK,
            port=server.port,
            query_file=queryfile,
            duration=args.seconds,
            clients=args.clients,
            outstanding=args.outstanding,
            threads=args.threads,
            timeout=args.timeout,
            cpus=tuple(client_cpus),
            tcp=args.transport == "tcp",
        )
        argv = generators.dnsperf_argv(load)
        if args.warmup:
            generators.run("dnsperf", dataclasses.replace(load, duration=args.warmup, timeout=1))
        # Re-pin after the warm-up as well: threads started lazily count too.
        pids = server.pids()
        threads = procfs.pin_all(pids, server_cpus)
        affinity = sorted(sorted(a) for a in procfs.affinities(pids))
        idle_before = (
            procfs.wait_idle(server_cpus | client_cpus, args.idle, args.wait_idle)
            if args.wait_idle
            else None
        )
        loadavg = procfs.loadavg()
        user0, sys0 = procfs.cpu_user_system(pids)
        drops0, rcvbuf0 = procfs.udp_drops(server.port), procfs.udp_rcvbuf_errors()
        times0 = procfs.cpu_times()
        if args.perf_dir:
            data = Path(args.perf_dir) / f"{server.name}.perf.data"
            perf = subprocess.Popen(
                [
                    "perf",
                    "record",
                    "-q",
                    "-F",
                    "1999",
                    "-g",
                    "-o",
                    str(data),
                    "-p",
                    ",".join(map(str, pids)),
                    "--",
                    "sleep",
                    str(args.seconds),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        t0 = time.monotonic()
        result = generators.run("dnsperf", load)
        wall = time.monotonic() - t0
        user1, sys1 = procfs.cpu_user_system(server.pids())
        drops1, rcvbuf1 = procfs.udp_drops(server.port), procfs.udp_rcvbuf_errors()
        shares = procfs.cpu_shares(times0, procfs.cpu_times())
        if perf is not None:
            perf.wait(args.seconds + 60)
            perf = None
    finally:
        if perf is not None and perf.poll() is None:
            perf.terminate()
            perf.wait(30)
        server.stop()
    server_cpu = (user1 - user0 + sys1 - sys0) / wall
    answered = result.answered or 1
    busy = {cpu: 1 - sh["idle"] - sh["iowait"] for cpu, sh in shares.items()}
    # What else ran on the server's CPU: its user and system time beyond the
    # server's own (softirq time is accounted apart from any process here).
    sh = shares[args.server_cpu]
    foreign = max(0.0, sh["user"] + sh["nice"] + sh["system"] - server_cpu)
    return {
        "server": server.name,
        "qps": result.qps,
        "avg_latency_ms": result.latency_ms.get("avg"),
        "sent": result.sent,
        "completed": result.answered,
        "lost": result.counters.get("lost", result.lost),
        # Where queries were lost: the server's sockets, or anywhere (dnsperf).
        "server_socket_drops": drops1 - drops0,
        "host_udp_rcvbuf_errors": rcvbuf1 - rcvbuf0,
        "rcodes": result.rcodes,
        "avg_response_bytes": result.counters.get("response_bytes", 0),
        "server_cpu_fraction": server_cpu,
        "qps_per_server_cpu_second": result.qps / server_cpu if server_cpu > 0 else None,
        # The server's own code against the kernel's work for it, per query.
        "server_user_us_per_query": (user1 - user0) / answered * 1e6,
        "server_system_us_per_query": (sys1 - sys0) / answered * 1e6,
        "cpu_busy": {str(k): round(v, 3) for k, v in busy.items()},
        "cpu_shares": {str(k): {n: round(x, 3) for n, x in v.items()} for k, v in shares.items()},
        "foreign_on_server_cpu": foreign,
        "idle_before": idle_before,
        "loadavg_before": loadavg,
        "startup_s": startup,
        "pinned_threads": threads,
        "affinities": affinity,
        "dnsperf_argv": argv,
        "dnsperf_output": result.output if args.verbose else None,
    }


def check_agreement(args, tmp: Path, zonefile: Path, queryfile: Path) -> dict:
    """Asks every server the first queries of the query file, one by one, and
    counts where each disagrees with xdpdns (a server that answers fast but
    wrong must not win the table)."""
    lines = queryfile.read_text().splitlines()[: args.check]
    queries = [tuple(line.split()) for line in lines]
    answers, report = {}, {}
    for name in args.servers:
        server = make_server(name, args, tmp / f"check-{name}", zonefile, servers.free_port())
        try:
            server.start()
            server.wait_answer(f"host0000000.{ORIGIN}", "A", timeout=args.start_timeout)
            answers[name] = sample_answers(server, queries)
        finally:
            server.stop()
    base = args.servers[0]
    for name in args.servers[1:]:
        diffs = [
            (" ".join(q), str(a)[:300], str(b)[:300])
            for q, a, b in zip(queries, answers[base], answers[name])
            if a != b
        ]
        report[f"{base} vs {name}"] = {
            "queries": len(queries),
            "differ": len(diffs),
            "examples": diffs[:3],
        }
    return report


def table(rows: list[dict], servers: list[str]) -> tuple[str, dict]:
    summary = {}
    for name in servers:
        mine = [r for r in rows if r["server"] == name]
        if not mine:
            continue
        summary[name] = {
            "runs": len(mine),
            "qps_median": median([r["qps"] for r in mine]),
            "qps_runs": [round(r["qps"]) for r in mine],
            "avg_latency_ms_median": median([r["avg_latency_ms"] for r in mine]),
            "lost_median": median([r["lost"] for r in mine]),
            "server_cpu_median": median([r["server_cpu_fraction"] for r in mine]),
            "qps_per_cpu_second_median": median(
                [r["qps_per_server_cpu_second"] or 0 for r in mine]
            ),
            "avg_response_bytes": mine[0]["avg_response_bytes"],
            "user_us_per_query_median": median([r["server_user_us_per_query"] for r in mine]),
            "system_us_per_query_median": median([r["server_system_us_per_query"] for r in mine]),
            "foreign_on_server_cpu_median": median([r["foreign_on_server_cpu"] for r in mine]),
        }
    peers = [s for s in summary if s != "xdpdns"]
    ratios = {}
    if "xdpdns" in summary and peers:
        fastest = max(peers, key=lambda s: summary[s]["qps_median"])
        leanest = max(peers, key=lambda s: summary[s]["qps_per_cpu_second_median"])
        ratios = {
            "faster_peer": fastest,
            "xdpdns_qps_over_faster_peer": summary["xdpdns"]["qps_median"]
            / summary[fastest]["qps_median"],
            "leaner_peer": leanest,
            "xdpdns_qps_per_cpu_over_leaner_peer": summary["xdpdns"]["qps_per_cpu_second_median"]
            / summary[leanest]["qps_per_cpu_second_median"],
        }
        for s in peers:
            ratios[f"xdpdns_over_{s}"] = summary["xdpdns"]["qps_median"] / summary[s]["qps_median"]
    head = (
        f"{'server':8} {'runs':>4} {'qps (median)':>13} {'qps runs':>28} "
        f"{'lat ms':>7} {'lost':>6} {'srv CPU':>7} {'qps/CPU-s':>10} {'usr us/q':>8} "
        f"{'sys us/q':>8} {'resp B':>6} {'other':>6}"
    )
    out = [head, "-" * len(head)]
    for name, s in summary.items():
        out.append(
            f"{name:8} {s['runs']:>4} {s['qps_median']:>13,.0f} "
            f"{','.join(str(q) for q in s['qps_runs']):>28} "
            f"{s['avg_latency_ms_median']:>7.3f} {s['lost_median']:>6.0f} "
            f"{s['server_cpu_median']:>7.0%} {s['qps_per_cpu_second_median']:>10,.0f} "
            f"{s['user_us_per_query_median']:>8.2f} {s['system_us_per_query_median']:>8.2f} "
            f"{s['avg_response_bytes']:>6.0f} "
            f"{s['foreign_on_server_cpu_median']:>6.0%}"
        )
    if ratios:
        out.append("")
        out.append(
            f"xdpdns / {ratios['faster_peer']} (faster peer), qps: "
            f"{ratios['xdpdns_qps_over_faster_peer']:.3f}"
        )
        out.append(
            f"xdpdns / {ratios['leaner_peer']} (peer with most qps per CPU-second): "
            f"{ratios['xdpdns_qps_per_cpu_over_leaner_peer']:.3f}"
        )
    return "\n".join(out), {"servers": summary, "ratios": ratios}


def perf_reports(perf_dir: Path, servers: list[str]) -> dict:
    out = {}
    for name in servers:
        data = perf_dir / f"{name}.perf.data"
        if not data.exists():
            continue
        rep = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(data),
                "--stdio",
                "--no-children",
                "--sort",
                "dso,symbol",
                "--percent-limit",
                "0.7",
                "-g",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        by_dso = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                str(data),
                "--stdio",
                "--no-children",
                "--sort",
                "dso",
                "-g",
                "none",
                "--percent-limit",
                "0.5",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

        def rows(text: str, fields: int) -> list[str]:
            return [
                " ".join(ln.split()[:fields])
                for ln in text.splitlines()
                if ln.strip() and not ln.startswith("#")
            ]

        (perf_dir / f"{name}.perf.txt").write_text(by_dso.stdout + rep.stdout)
        out[name] = {"by_dso": rows(by_dso.stdout, 2)[:6], "symbols": rows(rep.stdout, 4)[:25]}
    return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated, from xdpdns,nsd,knot (default: all)",
    )
    ap.add_argument("--names", type=int, default=100_000, help="hosts in the zone")
    ap.add_argument("--queries", type=int, default=200_000, help="lines in the query file")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--seconds", type=float, default=10, help="dnsperf -l per run")
    ap.add_argument("--warmup", type=float, default=1, help="dnsperf warm-up seconds (0: none)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per server, alternating")
    ap.add_argument(
        "--transport",
        choices=("udp", "tcp"),
        default="udp",
        help="dnsperf -m: over TCP every client is a connection",
    )
    ap.add_argument("--clients", type=int, default=8, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    ap.add_argument("--threads", type=int, default=1, help="dnsperf -T")
    ap.add_argument("--timeout", type=float, default=2, help="dnsperf -t")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server UDP workers (xdpdns --udp-workers, NSD server-count, Knot udp-workers)",
    )
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=60,
        help="before each run, wait up to this many seconds for both CPUs "
        "to be idle (0: do not wait); the machine may be shared",
    )
    ap.add_argument(
        "--idle", type=float, default=0.9, help="the idle share that counts as idle for --wait-idle"
    )
    ap.add_argument(
        "--check",
        type=int,
        default=500,
        help="queries asked one by one to compare the servers' answers (0: skip)",
    )
    ap.add_argument("--start-timeout", type=float, default=120)
    ap.add_argument(
        "--xdpdns", default=shlex.join(servers.xdpdns_command()), help="the xdpdns command"
    )
    ap.add_argument(
        "--perf-dir",
        help="also record `perf record -g` of each server "
        "during its last run into this directory and print the top symbols",
    )
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--verbose", action="store_true", help="keep dnsperf's output in the JSON")
    args = ap.parse_args()
    args.servers = [s for s in args.servers.split(",") if s]
    for s in args.servers:
        if s not in SERVERS:
            ap.error(f"--servers: unknown server {s!r}, expected some of {','.join(SERVERS)}")
    if args.perf_dir:
        Path(args.perf_dir).mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="xdpdns-bench-"))
    try:
        zonefile = tmp / "bench.test.zone"
        queryfile = tmp / "queries.txt"
        zone = write_zone(zonefile, args.names, args.seed)
        write_queries(queryfile, args.queries, zone, args.seed)
        print(
            f"zone {ORIGIN}: {zone['names']} hosts, {zone['aliases']} CNAMEs, "
            f"{zone['delegations']} delegations, {zone['bytes']:,} bytes; "
            f"{args.queries} queries; in {tmp}",
            flush=True,
        )
        agreement = check_agreement(args, tmp, zonefile, queryfile) if args.check else {}
        for pair, rep in agreement.items():
            print(f"answers {pair}: {rep['differ']} of {rep['queries']} differ", flush=True)
            for ex in rep["examples"]:
                print(f"  {ex[0]}:\n    {ex[1]}\n    {ex[2]}")
        rows = []
        for rep in range(args.repeats):
            # Rotate the order so that no server always runs first or last.
            order = (
                args.servers[rep % len(args.servers) :] + args.servers[: rep % len(args.servers)]
            )
            for name in order:
                keep_perf = args.perf_dir if rep == args.repeats - 1 else None
                server = make_server(
                    name,
                    argparse.Namespace(**vars(args)),
                    tmp / f"run{rep}-{name}",
                    zonefile,
                    servers.free_port(),
                    cpus={args.server_cpu},
                )
                run_args = argparse.Namespace(**{**vars(args), "perf_dir": keep_perf})
                row = measure(server, run_args, queryfile)
                row["repeat"] = rep
                rows.append(row)
                print(
                    f"run {rep} {name:7} qps {row['qps']:>10,.0f}  lat "
                    f"{row['avg_latency_ms']:.3f} ms  lost {row['lost']} (server socket drops "
                    f"{row['server_socket_drops']}, host {row['host_udp_rcvbuf_errors']})  "
                    f"server CPU {row['server_cpu_fraction']:.0%}  "
                    f"other work on its CPU {row['foreign_on_server_cpu']:.0%}  "
                    f"CPU busy {row['cpu_busy']}  load {row['loadavg_before']:.2f}",
                    flush=True,
                )
        text, summary = table(rows, args.servers)
        print()
        print(text)
        perf = perf_reports(Path(args.perf_dir), args.servers) if args.perf_dir else {}
        for name, rep in perf.items():
            print(f"\nperf, {name}: self time by object: " + "; ".join(rep["by_dso"]))
            print("\n".join("  " + ln for ln in rep["symbols"]))
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "machine": {
                **procfs.machine(),
                **{name: servers.version(name) for name in args.servers},
                "dnsperf": generators.version("dnsperf"),
            },
            "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
            "zone": zone,
            "query_mix_percent": {k: v for v, k in MIX},
            "agreement": agreement,
            "summary": summary,
            "runs": rows,
            "perf_top": perf,
        }
        print()
        print(json.dumps({"summary": summary, "machine": result["machine"]}, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
        return 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
