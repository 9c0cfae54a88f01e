#!/usr/bin/env python3
"""How long an outgoing zone transfer of a large zone takes: xdpdns and
Knot DNS serve the same zone (bench/startup.py's, a million records by
default) on loopback, and kdig transfers it from each, --repeats times,
alternating; the medians of the wall time, with kdig's own count of
messages, records and bytes.  Root not needed; nothing leaves loopback.

    bench/axfr_time.py --records 1000000 --repeats 3 --json axfr.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ORIGIN = "big.test."
READY_TIMEOUT = 300.0  # a million records load in seconds; Knot takes longer


def _startup_module():
    spec = importlib.util.spec_from_file_location("startup", BENCH / "startup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kdig(port: int, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["kdig", "@127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_serving(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        out = kdig(port, "+short", "+time=1", "+retry=0", ORIGIN, "SOA", timeout=5)
        if out.stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within {READY_TIMEOUT:g} s")


def start_xdpdns(
    workdir: Path, zonefile: Path, port: int, xdpdns: str, server: str = ""
) -> subprocess.Popen:
    """xdpdns serving zonefile on 127.0.0.1:port; ``server``: more lines
    for its [server] table."""
    conf = workdir / "xdpdns.toml"
    conf.write_text(
        f'[[zone]]\nfile = "{zonefile}"\norigin = "{ORIGIN}"\n'
        f'allow_transfer = ["127.0.0.1"]\n[server]\nlog_level = "warning"\n'
        f'{server}control_socket = "{workdir}/xdpdns.sock"\n'
    )
    return subprocess.Popen(
        [xdpdns, "serve", "--config", str(conf), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "xdpdns.log", "w"),
    )


def start_knot(workdir: Path, zonefile: Path, port: int) -> subprocess.Popen:
    user = "    user: root:root\n" if os.geteuid() == 0 else ""
    conf = workdir / "knot.conf"
    conf.write_text(
        "server:\n"
        f'    rundir: "{workdir}"\n{user}'
        f"    listen: 127.0.0.1@{port}\n"
        "log:\n  - target: stderr\n    any: warning\n"
        f'database:\n    storage: "{workdir}/db"\n'
        "acl:\n  - id: local\n    address: 127.0.0.1\n    action: transfer\n"
        "template:\n  - id: default\n"
        f'    storage: "{workdir}"\n'
        "    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n"
        "    semantic-checks: off\n"
        f'zone:\n  - domain: "{ORIGIN}"\n    file: "{zonefile}"\n    acl: local\n'
    )
    return subprocess.Popen(
        ["knotd", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "knot.log", "w"),
    )


def transfer(port: int) -> dict:
    start = time.monotonic()
    out = kdig(port, "+noall", "+stats", "AXFR", ORIGIN)
    seconds = time.monotonic() - start
    if out.returncode != 0:
        raise RuntimeError(f"kdig AXFR failed: {out.stderr.strip() or out.stdout.strip()}")
    # ";; Received 37455011 B (2397 messages, 1000004 records)"
    m = re.search(r"Received (\d+) B \((\d+) messages?, (\d+) records?\)", out.stdout)
    if not m:
        raise RuntimeError(f"kdig said no transfer size: {out.stdout[-300:]}")
    return {"seconds": seconds, "bytes": int(m[1]), "messages": int(m[2]), "records": int(m[3])}


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xdpdns", default=str(REPO / ".venv" / "bin" / "xdpdns"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for tool in ("kdig", "knotd"):
        if shutil.which(tool) is None:
            print(f"axfr_time: {tool} is missing (Debian: knot, knot-dnsutils)", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="xdpdns-axfr-") as tmp:
        workdir = Path(tmp)
        zonefile = workdir / "big.test.zone"
        zone = _startup_module().write_zone(zonefile, args.records)
        ports = {"xdpdns": free_port(), "knot": free_port()}
        procs = {}
        try:
            procs["xdpdns"] = start_xdpdns(workdir, zonefile, ports["xdpdns"], args.xdpdns)
            procs["knot"] = start_knot(workdir, zonefile, ports["knot"])
            for name, proc in procs.items():
                wait_serving(ports[name], proc, name)
            runs = {name: [] for name in procs}
            for _ in range(args.repeats):
                for name in procs:
                    runs[name].append(transfer(ports[name]))
        finally:
            for proc in procs.values():
                stop(proc)
    result = {
        "zone": zone,
        "runs": runs,
        "median_seconds": {
            n: statistics.median(r["seconds"] for r in rs) for n, rs in runs.items()
        },
    }
    for name, rs in runs.items():
        last = rs[-1]
        each = ", ".join(f"{r['seconds']:.3f}" for r in rs)
        print(
            f"{name:7} median {result['median_seconds'][name]:.3f} s  ({each})  "
            f"{last['records']} records, {last['messages']} messages, "
            f"{last['bytes']} bytes"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
