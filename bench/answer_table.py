#!/usr/bin/env python3
"""The XDP program's answer table with a zone of a million records: how long
compiling and filling it take, how much kernel memory its maps hold, and how
long after the server starts (and after a reload) the program answers from
it.

`xdpdns serve --xdp` runs in the benchmark's server namespace (one veth
queue, xdpdns.bench.topology); the zone is bench/startup.py's.  Measured:

- the engine's own figures, from `xdpdns stats`: names, entries, pages,
  compile and install seconds, the maps' size as the kernel sizes them;
- the kernel's word for it: the ``memlock`` of every BPF map the server
  process holds (/proc/PID/fdinfo), the program's own maps included;
- time to first answer: from the process's start to the first answer for
  the zone's last name (from a worker or the table), and to the first one
  the program answered itself (its ``answered_in_xdp`` counter moves);
- reload: `xdpdns reload` with the next serial, its wall time, and the time
  until the program answers the new serial.

Root only; the namespaces are deleted by name at the end.  Not part of the
test run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query

sys.path.insert(0, str(Path(__file__).resolve().parent))
import startup  # noqa: E402  (bench/startup.py: the zone)

from xdpdns.bench import servers  # noqa: E402
from xdpdns.bench.topology import Topology  # noqa: E402
from xdpdns.bench.zones import ZoneFile  # noqa: E402
from xdpdns.control import ControlError, request  # noqa: E402

ORIGIN = startup.ORIGIN
POLL = 0.005  # seconds between probes


def map_memlock(pids) -> dict:
    """memlock of every BPF map the processes hold, by map type."""
    out: dict = {}
    seen = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fdinfo")
        for fdinfo in fd_dir.iterdir():
            try:
                text = fdinfo.read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
            if "map_type" not in fields or fields.get("map_id") in seen:
                continue
            seen.add(fields.get("map_id"))
            kind = fields["map_type"].strip()
            out[kind] = out.get(kind, 0) + int(fields.get("memlock", "0"))
    return out


def answered_in_xdp(control) -> int:
    """The program's own answers so far; 0 before the control socket is up."""
    try:
        stats = request(control)
    except ControlError:
        return 0
    return (stats.get("xdp") or {}).get("program", {}).get("answered_in_xdp", 0)


def probe(topo, qname, qtype="A"):
    """One UDP query from the client namespace; the response or None."""
    query = dns.message.make_query(qname, qtype)
    with topo.client.netns.entered():
        try:
            return dns.query.udp(query, topo.server.v4, port=53, timeout=0.2)
        except Exception:
            return None


def wait(predicate, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = predicate()
        if value:
            return time.monotonic() - start
        time.sleep(POLL)
    raise TimeoutError(f"nothing after {timeout} s")


def serial_of(response) -> int | None:
    return response.answer[0][0].serial if response and response.answer else None


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="xdpdns-table-"))
    zone = work / f"{ORIGIN}zone"
    info = startup.write_zone(zone, args.records)
    result = {"zone": info}
    with Topology(1, (args.server_cpu,), (args.client_cpu,)) as topo:
        where = servers.Placement(
            listen=(topo.server.v4,),
            port=53,
            cpus=(args.server_cpu,),
            workers=1,
            netns=topo.server.netns,
            interface=topo.server.ifname,
            client_netns=topo.client.netns,
        )
        server = servers.make_server("xdpdns", "xdp", work, [ZoneFile(ORIGIN, zone)], where)
        start = time.monotonic()
        server.start()
        try:
            last = info["last_name"]
            wait(lambda: probe(topo, last), args.timeout)
            result["first_answer_s"] = time.monotonic() - start  # from the process's start
            wait(
                lambda: (probe(topo, last), answered_in_xdp(server.control_socket))[1] > 0,
                args.timeout,
            )
            result["first_xdp_answer_s"] = time.monotonic() - start
            stats = request(server.control_socket)
            result["table"] = stats["xdp"]["answers"]
            result["map_memlock"] = map_memlock(server.pids())
            result["rss_kib"] = [
                int(Path(f"/proc/{p}/status").read_text().split("VmRSS:")[1].split()[0])
                for p in server.pids()
            ]
            text = zone.read_text().replace(" 2024010101 ", " 2024010102 ", 1)
            zone.write_text(text)
            start = time.monotonic()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "xdpdns",
                    "reload",
                    "--control-socket",
                    str(server.control_socket),
                ],
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
            result["reload_s"] = time.monotonic() - start
            result["reload_output"] = (done.stdout + done.stderr).strip()
            before = answered_in_xdp(server.control_socket)
            wait(lambda: serial_of(probe(topo, ORIGIN, "SOA")) == 2024010102, args.timeout)
            result["new_serial_after_reload_s"] = time.monotonic() - start
            result["reload_table"] = request(server.control_socket)["xdp"]["answers"]
            result["answered_in_xdp_moved"] = answered_in_xdp(server.control_socket) > before
        finally:
            server.stop()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("answer_table.py: needs root (namespaces, XDP)")
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
