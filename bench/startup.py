#!/usr/bin/env python3
"""Start-up time and resident memory with a zone of a million records:
xdpdns against NSD and Knot DNS, in one run, on loopback.

Start-up is what an operator sees: the time from starting the server process
to its first authoritative answer (AA, NOERROR, with data) for the zone's
last name, polled with a small UDP query every few milliseconds.  NSD
compiles the zone when it starts (no nsd.db); Knot loads it in a background
worker; xdpdns parses it with libzscanner and builds its image.

Memory is read from /proc one second after the first answer: VmRSS of each
process, its peak VmHWM, and the sum of the proportional set size (Pss) over
the server and its children, which counts each shared page once (NSD forks
its workers after loading the zone, so its processes share it).  The zone
file's size is printed beside it: the target for xdpdns is memory at most
twice the file's size (Knot documents about three times).

The zone is generated in a temporary directory in the usual master-file
shape (relative owners, explicit TTL and class: `host0000001 3600 IN A
198.18.0.1`), with AAAA, MX, TXT and CNAME records among the A records.
Servers start one after the other, alternating over the repeats; the table
gives medians.  Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from xdpdns.bench import procfs, servers
from xdpdns.bench.process import Server
from xdpdns.bench.report import median
from xdpdns.bench.zones import ZoneFile

ORIGIN = "big.test."
SERVERS = ("xdpdns", "nsd", "knot")


def sign(zonefile: Path, tmp: Path) -> Path:
    """The zone signed by dnssec-signzone (NSEC3, RFC 9276 parameters);
    prints how long that took."""
    import subprocess

    keys = tmp / "keys"
    keys.mkdir()
    origin = ORIGIN.rstrip(".")
    for flags in (["-f", "KSK"], []):
        subprocess.run(
            ["dnssec-keygen", "-q", "-K", str(keys), "-a", "ECDSAP256SHA256", *flags, origin],
            check=True,
            capture_output=True,
        )
    signed = tmp / "big.test.zone.signed"
    started = time.monotonic()
    subprocess.run(
        [
            "dnssec-signzone",
            "-q",
            "-P",
            "-S",
            "-K",
            str(keys),
            "-o",
            origin,
            "-N",
            "keep",
            "-3",
            "-",
            "-H",
            "0",
            "-f",
            str(signed),
            str(zonefile),
        ],
        check=True,
        capture_output=True,
    )
    print(f"dnssec-signzone -P: {time.monotonic() - started:.1f} s", flush=True)
    return signed


def write_zone(path: Path, records: int) -> dict:
    """At least `records` records; returns counts, the size and the last name."""
    n = 4
    counts = {"A": 0, "AAAA": 0, "MX": 0, "TXT": 0, "CNAME": 0}
    with open(path, "w") as f:
        f.write(
            f"$ORIGIN {ORIGIN}\n"
            "@ 3600 IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n"
            "@ 3600 IN NS ns1\n@ 3600 IN NS ns2\n"
            "ns1 3600 IN A 198.18.0.1\n"
        )
        i = 0
        last = ""
        while n < records:
            owner = f"host{i:07d}"
            f.write(f"{owner} 3600 IN A 198.18.{(i >> 8) & 255}.{i & 255}\n")
            counts["A"] += 1
            n += 1
            last = owner
            if i % 5 == 0:
                f.write(f"{owner} 3600 IN AAAA 2001:2::{i >> 16:x}:{i & 0xFFFF:x}\n")
                counts["AAAA"] += 1
                n += 1
            if i % 20 == 0:
                f.write(f"{owner} 3600 IN MX 10 host{i + 1:07d}\n")
                counts["MX"] += 1
                n += 1
            if i % 25 == 0:
                f.write(f'{owner} 3600 IN TXT "v=spf1 ip4:198.18.0.0/15 -all"\n')
                counts["TXT"] += 1
                n += 1
            if i % 50 == 0:
                f.write(f"www{i:07d} 3600 IN CNAME {owner}\n")
                counts["CNAME"] += 1
                n += 1
            i += 1
    return {
        "records": n,
        "by_type": counts,
        "bytes": path.stat().st_size,
        "last_name": f"{last}.{ORIGIN}",
    }


def make_server(name: str, args, workdir: Path, zonefile: Path) -> Server:
    """The server on a free loopback port, each with its own defaults unless
    --workers (Knot: no worker settings at all), pinned when --cpu."""
    where = servers.Placement(
        listen=(servers.LOOPBACK,),
        port=servers.free_port(),
        cpus=(args.cpu,) if args.cpu is not None else (),
        workers=args.workers,
    )
    return servers.make_server(
        name,
        "socket",
        workdir,
        [ZoneFile(ORIGIN, zonefile)],
        where,
        command=shlex.split(args.xdpdns),
        log_level="warning",
    )


def measure(server, args, last_name: str) -> dict:
    try:
        server.start()
        seconds = server.wait_answer(last_name, "A", timeout=args.timeout, interval=args.interval)
        time.sleep(args.settle)
        pids = server.pids()
        procs = []
        for pid in pids:
            procs.append(
                {
                    "pid": pid,
                    "comm": Path(f"/proc/{pid}/comm").read_text().strip(),
                    "rss_kib": procfs.status_kib(pid, "VmRSS"),
                    "hwm_kib": procfs.status_kib(pid, "VmHWM"),
                    "pss_kib": procfs.pss_kib(pid),
                }
            )
        cpu = procfs.cpu_seconds(pids)
    finally:
        server.stop()
    return {
        "server": server.name,
        "first_answer_s": seconds,
        "cpu_s": cpu,
        "processes": procs,
        "pss_total_kib": sum(p["pss_kib"] or 0 for p in procs),
        "rss_max_kib": max((p["rss_kib"] or 0) for p in procs),
        "hwm_max_kib": max((p["hwm_kib"] or 0) for p in procs),
        "argv": server.argv,
    }


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
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="UDP workers of each server (default: each server's own default)",
    )
    ap.add_argument(
        "--cpu", type=int, default=None, help="pin every server to this CPU (default: not pinned)"
    )
    ap.add_argument("--interval", type=float, default=0.005, help="poll interval, seconds")
    ap.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds after the first answer before memory is read",
    )
    ap.add_argument(
        "--timeout", type=float, default=300, help="give up on a server after this many seconds"
    )
    ap.add_argument(
        "--xdpdns", default=shlex.join(servers.xdpdns_command()), help="the xdpdns command"
    )
    ap.add_argument(
        "--signed",
        action="store_true",
        help="serve the zone signed (dnssec-signzone: a KSK and a ZSK, ECDSA "
        "P-256, NSEC3 without salt or extra iterations), as NSD serves signed "
        "zones; the memory ratios are then to the signed file",
    )
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    names = [s for s in args.servers.split(",") if s]
    for s in names:
        if s not in SERVERS:
            ap.error(f"--servers: unknown server {s!r}, expected some of {','.join(SERVERS)}")

    tmp = Path(tempfile.mkdtemp(prefix="xdpdns-startup-"))
    try:
        zonefile = tmp / "big.test.zone"
        zone = write_zone(zonefile, args.records)
        if args.signed:
            zonefile = sign(zonefile, tmp)
            zone["bytes"] = zonefile.stat().st_size
        mib = zone["bytes"] / 2**20
        print(
            f"zone {ORIGIN}: {zone['records']:,} records {zone['by_type']}, "
            f"file {zone['bytes']:,} bytes ({mib:.1f} MiB); in {tmp}",
            flush=True,
        )
        rows = []
        for rep in range(args.repeats):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                row = measure(
                    make_server(name, args, tmp / f"run{rep}-{name}", zonefile),
                    args,
                    zone["last_name"],
                )
                row["repeat"] = rep
                row["loadavg"] = procfs.loadavg()
                rows.append(row)
                print(
                    f"run {rep} {name:7} first answer {row['first_answer_s']:.3f} s  "
                    f"cpu {row['cpu_s']:.2f} s  Pss {row['pss_total_kib'] / 1024:.1f} MiB  "
                    f"max VmRSS {row['rss_max_kib'] / 1024:.1f} MiB  "
                    f"max VmHWM {row['hwm_max_kib'] / 1024:.1f} MiB  "
                    f"load {row['loadavg']:.2f}",
                    flush=True,
                )
        summary = {}
        for name in names:
            mine = [r for r in rows if r["server"] == name]
            m = median
            summary[name] = {
                "first_answer_s_median": m([r["first_answer_s"] for r in mine]),
                "first_answer_s_runs": [round(r["first_answer_s"], 3) for r in mine],
                "pss_total_mib_median": m([r["pss_total_kib"] for r in mine]) / 1024,
                "rss_max_mib_median": m([r["rss_max_kib"] for r in mine]) / 1024,
                "hwm_max_mib_median": m([r["hwm_max_kib"] for r in mine]) / 1024,
                "processes": len(mine[0]["processes"]),
            }
            for key in ("pss_total_mib_median", "rss_max_mib_median", "hwm_max_mib_median"):
                summary[name][key.replace("_mib_median", "_over_zone_file")] = (
                    summary[name][key] / mib
                )
        head = (
            f"{'server':8} {'first answer s':>14} {'runs':>22} {'Pss MiB':>8} "
            f"{'RSS MiB':>8} {'HWM MiB':>8} {'Pss/file':>8} {'HWM/file':>8}"
        )
        print()
        print(f"zone file: {zone['bytes']:,} bytes = {mib:.1f} MiB, {zone['records']:,} records")
        print(head)
        print("-" * len(head))
        for name, s in summary.items():
            print(
                f"{name:8} {s['first_answer_s_median']:>14.3f} "
                f"{','.join(str(x) for x in s['first_answer_s_runs']):>22} "
                f"{s['pss_total_mib_median']:>8.1f} {s['rss_max_mib_median']:>8.1f} "
                f"{s['hwm_max_mib_median']:>8.1f} {s['pss_total_over_zone_file']:>8.2f} "
                f"{s['hwm_max_over_zone_file']:>8.2f}"
            )
        ratios = {}
        if "xdpdns" in summary:
            for peer in summary:
                if peer != "xdpdns":
                    ratios[f"xdpdns_over_{peer}_first_answer"] = (
                        summary["xdpdns"]["first_answer_s_median"]
                        / summary[peer]["first_answer_s_median"]
                    )
                    ratios[f"xdpdns_over_{peer}_pss"] = (
                        summary["xdpdns"]["pss_total_mib_median"]
                        / summary[peer]["pss_total_mib_median"]
                    )
            print()
            for k, v in ratios.items():
                print(f"{k}: {v:.2f}")
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "machine": {**procfs.machine(), **{name: servers.version(name) for name in names}},
            "settings": vars(args),
            "zone": zone,
            "summary": summary,
            "ratios": ratios,
            "runs": rows,
        }
        print()
        print(json.dumps({"summary": summary, "ratios": ratios}, indent=2))
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
