#!/usr/bin/env python3
"""Queries/s while a large zone goes out to a slow secondary: xdpdns serves
a zone of --records records (bench/startup.py's) on loopback with one TCP
and one UDP worker pinned to the server CPU; dnsperf (pinned to the client
CPU) measures queries/s for --seconds, alternately alone and while a slow
reader (another process) transfers the zone at --read-rate bytes/s through
a small receive window.  The table gives the medians of each, and how far
each transfer got.  Root not needed; nothing leaves loopback.

    bench/axfr_under_load.py --records 1000000 --transport tcp --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import axfr_time  # noqa: E402
from axfr_time import ORIGIN, free_port, stop, wait_serving  # noqa: E402

from xdpdns.bench import generators, procfs  # noqa: E402


def _startup_module():
    spec = importlib.util.spec_from_file_location("startup", BENCH / "startup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The slow secondary: run as `python3 -c READER port rate out`; it reads the
# transfer rate bytes a second in 4 KiB reads and writes how many bytes it
# got when it is told to stop (SIGTERM) or the transfer ends.
READER = r"""
import signal, socket, struct, sys, time
port, rate, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
got = 0
def done(*_):
    open(out, "w").write(str(got)); sys.exit(0)
signal.signal(signal.SIGTERM, done)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
s.connect(("127.0.0.1", port))
labels = sys.argv[4].rstrip(".").split(".")
q = bytes.fromhex("abcd00000001000000000000") + b"".join(
    bytes([len(p)]) + p.encode() for p in labels) + b"\0\x00\xfc\x00\x01"
s.sendall(struct.pack("!H", len(q)) + q)
start = time.monotonic()
while True:
    chunk = s.recv(4096)
    if not chunk:
        done()
    got += len(chunk)
    ahead = got / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""


def start_xdpdns(workdir: Path, zonefile: Path, port: int, xdpdns: str) -> subprocess.Popen:
    """One UDP and one TCP worker, and TCP limits that the slow secondary
    and dnsperf's connections stay under."""
    return axfr_time.start_xdpdns(
        workdir,
        zonefile,
        port,
        xdpdns,
        "udp_workers = 1\ntcp_workers = 1\ntcp_io_timeout = 30\n"
        "tcp_max_connections = 1024\ntcp_max_client_connections = 1024\n",
    )


def write_queries(path: Path, hosts: int, count: int) -> None:
    """A queries for random hosts of startup.py's zone."""
    rng = random.Random(2024)
    with open(path, "w") as f:
        for _ in range(count):
            f.write(f"host{rng.randrange(hosts):07d}.{ORIGIN} A\n")


def measure(args, port: int, queryfile: Path, with_transfer: bool, tmp: Path) -> dict:
    reader = None
    out = tmp / "reader.out"
    if with_transfer:
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(port), str(args.read_rate), str(out), ORIGIN]
        )
        procfs.pin_all([reader.pid], {args.client_cpu})
        time.sleep(1)  # the transfer is under way, its window full
    load = generators.Load(
        target="127.0.0.1",
        port=port,
        query_file=queryfile,
        duration=args.seconds,
        clients=args.clients,
        timeout=2,
        cpus=(args.client_cpu,),
        tcp=args.transport == "tcp",
    )
    result = generators.run("dnsperf", load)
    got = None
    if reader is not None:
        alive = reader.poll() is None
        reader.terminate()
        reader.wait(10)
        got = int(out.read_text()) if out.exists() else 0
        if not alive:
            raise RuntimeError(
                "the slow transfer ended before the measurement did: lower --read-rate or --seconds"
            )
    return {
        "with_transfer": with_transfer,
        "qps": result.qps,
        "lost": result.lost,
        "transfer_bytes_read": got,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--transport", choices=("udp", "tcp"), default="tcp")
    ap.add_argument("--clients", type=int, default=20, help="dnsperf -c")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument(
        "--read-rate", type=float, default=1_000_000, help="bytes/s the slow secondary reads"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--xdpdns", default=str(REPO / ".venv" / "bin" / "xdpdns"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xdpdns-axfr-load-") as name:
        tmp = Path(name)
        zonefile, queryfile = tmp / "big.test.zone", tmp / "queries.txt"
        zone = _startup_module().write_zone(zonefile, args.records)
        write_queries(queryfile, zone["by_type"]["A"], 100_000)
        port = free_port()
        server = start_xdpdns(tmp, zonefile, port, args.xdpdns)
        rows = []
        try:
            wait_serving(port, server, "xdpdns")
            procfs.pin_all([server.pid], {args.server_cpu})
            for rep in range(args.repeats):
                for with_transfer in (False, True) if rep % 2 == 0 else (True, False):
                    row = measure(args, port, queryfile, with_transfer, tmp)
                    row["repeat"] = rep
                    rows.append(row)
                    print(
                        f"run {rep} {'with' if with_transfer else 'without':7} transfer: "
                        f"{row['qps']:>9,.0f} q/s, lost {row['lost']}"
                        + (
                            f", slow reader got {row['transfer_bytes_read']:,} bytes"
                            if with_transfer
                            else ""
                        ),
                        flush=True,
                    )
        finally:
            stop(server)
    alone = statistics.median(r["qps"] for r in rows if not r["with_transfer"])
    during = statistics.median(r["qps"] for r in rows if r["with_transfer"])
    print(
        f"\n{args.transport} queries/s, median of {args.repeats}: alone {alone:,.0f}, "
        f"during the transfer {during:,.0f} ({during / alone:.2f})"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rows": rows,
                    "alone": alone,
                    "during": during,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
