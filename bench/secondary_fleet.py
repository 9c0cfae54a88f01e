"""A fleet: one primary and N secondaries, xdpdns or (--secondary-kind
knot) Knot, and one more Knot secondary to compare with, each in its own
network namespace on one bridge, the primary's zone changed U times by a
reload with NOTIFY to all.  The primary is Knot (`knotc zone-reload`), or
with --primary xdpdns, xdpdns (SIGHUP), whose journal answers the IXFRs.

For each update: the seconds from the reload until the primary serves the
new serial, and until each secondary does (polled over UDP every few ms
from the bridge's namespace); after a secondary serves it, a changed name
must have its new address there (no old data under the new serial).  At the
end: the bytes of each secondary's last IXFR against the AXFR it started
with.  Root only; namespaces and addresses are this run's own (198.18.0.0/24)
and are deleted by name at the end.

    bench/secondary_fleet.py --secondaries 8 --records 100000 --changes 1000 \\
        --updates 100 [--primary xdpdns] [--secondary-kind knot] --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xdpdns.bench.topology import Netns  # noqa: E402

ORIGIN = "fleet.test."
PRIMARY = "198.18.0.1"
KNOT_SECONDARY = "198.18.0.9"
HUB = "198.18.0.254"
POLL = 0.002  # seconds between two rounds of SOA queries


def run(*argv, check=True):
    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, text=True)


def address(i: int, version: int) -> str:
    return f"198.19.{(i + version * 7) >> 8 & 255}.{(i + version * 7) & 255}"


def zone_text(records: int, changes: int, version: int) -> str:
    """Version v: serial v; the `changes` records of block v % blocks get
    version v's address, the others keep the one of the last version that
    changed their block (version 1's at first)."""
    blocks = records // changes
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 300",
        f"@ SOA ns1 hostmaster {version} 3600 600 86400 300",
        "@ NS ns1",
        f"ns1 A {PRIMARY}",
    ]
    for i in range(records):
        block = i // changes
        # The last version (from 2) that changed this block: version v
        # changes block v % blocks.
        last = version - (version - block) % blocks
        lines.append(f"h{i} A {address(i, last if last >= 2 else 1)}")
    return "\n".join(lines) + "\n"


class Fleet:
    def __init__(self, args, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        sfx = f"{os.getpid() % 100000}"
        self.hub = Netns(f"xdfl-hub-{sfx}")
        self.primary_ns = Netns(f"xdfl-p-{sfx}")
        self.knot_ns = Netns(f"xdfl-k-{sfx}")
        self.xdp_ns = [Netns(f"xdfl-s{i}-{sfx}") for i in range(args.secondaries)]
        self.secondaries = [f"198.18.0.{10 + i}" for i in range(args.secondaries)]
        self.procs: list[subprocess.Popen] = []
        self.first_transfer: list[int] = []  # xdpdns secondaries' first transfer, bytes
        self.knotd = shutil.which("knotd", path="/usr/sbin:/usr/bin")
        self.knotc = shutil.which("knotc", path="/usr/sbin:/usr/bin")

    # ---- topology ----------------------------------------------------------------

    def build(self) -> None:
        run("ip", "netns", "add", self.hub.name)
        self.hub.run("ip", "link", "add", "br0", "type", "bridge")
        self.hub.run("ip", "addr", "add", f"{HUB}/24", "dev", "br0")
        self.hub.run("ip", "link", "set", "br0", "up")
        nodes = [(self.primary_ns, PRIMARY), (self.knot_ns, KNOT_SECONDARY)]
        nodes += list(zip(self.xdp_ns, self.secondaries))
        for i, (ns, addr) in enumerate(nodes):
            run("ip", "netns", "add", ns.name)
            self.hub.run(
                "ip", "link", "add", f"vh{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns.name,
            )  # fmt: skip
            self.hub.run("ip", "link", "set", f"vh{i}", "master", "br0", "up")
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            ns.run("ip", "link", "set", "eth0", "up")
            ns.run("ip", "link", "set", "lo", "up")

    def destroy(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in [self.hub, self.primary_ns, self.knot_ns] + self.xdp_ns:
            if ns.exists():
                run("ip", "netns", "del", ns.name, check=False)

    # ---- servers -----------------------------------------------------------------

    def _start(self, ns: Netns, argv, log: str) -> None:
        with open(self.workdir / log, "wb") as out:
            self.procs.append(
                subprocess.Popen(
                    ns.exec_argv(argv), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )  # fmt: skip

    def start_primary(self) -> None:
        if self.args.primary == "xdpdns":
            self.start_xdpdns_primary()
        else:
            self.start_knot_primary()

    def reload_primary(self) -> None:
        if self.args.primary == "xdpdns":
            self.primary_proc.send_signal(signal.SIGHUP)
        else:
            run(self.knotc, "-c", self.primary_conf, "zone-reload", ORIGIN)

    def start_xdpdns_primary(self) -> None:
        d = self.workdir / "primary"
        d.mkdir(parents=True)
        self.zone_file = d / "fleet.zone"
        self.zone_file.write_text(zone_text(self.args.records, self.args.changes, 1))
        notify = ", ".join(f'"{a}"' for a in self.secondaries + [KNOT_SECONDARY])
        conf = d / "xdpdns.toml"
        conf.write_text(
            f'[server]\nlisten = ["{PRIMARY}:53"]\nudp_workers = 1\n'
            f'control_socket = "{d}/control.sock"\nstats_interval = 0\n'
            f'[[zone]]\norigin = "{ORIGIN}"\nfile = "{self.zone_file}"\n'
            f'allow_transfer = ["198.18.0.0/24"]\nnotify = [{notify}]\n'
        )
        self._start(
            self.primary_ns, [sys.executable, "-m", "xdpdns", "serve", "--config", conf],
            "primary.log",
        )  # fmt: skip
        self.primary_proc = self.procs[-1]

    def start_knot_primary(self) -> None:
        d = self.workdir / "primary"
        (d / "db").mkdir(parents=True)
        self.zone_file = d / "fleet.zone"
        self.zone_file.write_text(zone_text(self.args.records, self.args.changes, 1))
        remotes = "".join(
            f"  - id: s{i}\n    address: {a}@53\n"
            for i, a in enumerate(self.secondaries + [KNOT_SECONDARY])
        )
        ids = ", ".join(f"s{i}" for i in range(len(self.secondaries) + 1))
        self.primary_conf = d / "knot.conf"
        self.primary_conf.write_text(
            f'server:\n    rundir: "{d}"\n    user: root:root\n    listen: {PRIMARY}@53\n'
            "log:\n  - target: stderr\n    any: info\n"
            f'database:\n    storage: "{d}/db"\n'
            f'control:\n    listen: "{d}/knot.sock"\n'
            "acl:\n  - id: xfr\n    address: 198.18.0.0/24\n    action: transfer\n"
            f"remote:\n{remotes}"
            f'template:\n  - id: default\n    storage: "{d}"\n    zonefile-sync: -1\n'
            "    zonefile-load: difference\n    journal-content: changes\n"
            "    semantic-checks: off\n"
            f'zone:\n  - domain: "{ORIGIN}"\n    file: "{self.zone_file}"\n    acl: xfr\n'
            f"    notify: [{ids}]\n"
        )
        self._start(self.primary_ns, [self.knotd, "-c", self.primary_conf], "primary.log")

    def start_secondaries(self) -> None:
        for i, (ns, addr) in enumerate(zip(self.xdp_ns, self.secondaries)):
            d = self.workdir / f"s{i}"
            d.mkdir()
            if self.args.secondary_kind == "knot":
                conf = self._knot_secondary_conf(d, addr)
                self._start(ns, [self.knotd, "-c", conf], f"s{i}.log")
                continue
            conf = d / "xdpdns.toml"
            conf.write_text(
                f'[server]\nlisten = ["{addr}:53"]\nudp_workers = 1\n'
                f'storage = "{d}/storage"\ncontrol_socket = "{d}/control.sock"\n'
                f'stats_interval = 0\n[[zone]]\norigin = "{ORIGIN}"\n'
                f'primaries = ["{PRIMARY}"]\n'
            )
            self._start(
                ns, [sys.executable, "-m", "xdpdns", "serve", "--config", conf], f"s{i}.log"
            )
        d = self.workdir / "knot-secondary"
        d.mkdir()
        conf = self._knot_secondary_conf(d, KNOT_SECONDARY)
        self._start(self.knot_ns, [self.knotd, "-c", conf], "knot-secondary.log")

    def _knot_secondary_conf(self, d: Path, addr: str) -> Path:
        (d / "db").mkdir(parents=True)
        conf = d / "knot.conf"
        conf.write_text(
            f'server:\n    rundir: "{d}"\n    user: root:root\n    listen: {addr}@53\n'
            "log:\n  - target: stderr\n    any: info\n"
            f'database:\n    storage: "{d}/db"\n'
            f"remote:\n  - id: primary\n    address: {PRIMARY}@53\n"
            f"acl:\n  - id: notify\n    address: {PRIMARY}\n    action: notify\n"
            f'template:\n  - id: default\n    storage: "{d}"\n    zonefile-sync: -1\n'
            "    journal-content: changes\n    semantic-checks: off\n"
            f'zone:\n  - domain: "{ORIGIN}"\n    master: primary\n    acl: notify\n'
        )
        return conf

    def transfer_bytes(self, i: int) -> tuple[int | None, int | None]:
        """Secondary i's first transfer (the whole zone) and its last, in bytes."""
        if self.args.secondary_kind == "xdpdns":
            return (
                self.first_transfer[i],
                self.control_stats(i)["last_transfer"]["bytes"],
            )
        log = (self.workdir / f"s{i}.log").read_text(errors="replace")
        sizes = re.findall(r"XFR, incoming, .*finished, .* (\d+) bytes", log)
        return (int(sizes[0]), int(sizes[-1])) if sizes else (None, None)

    # ---- measuring -----------------------------------------------------------------

    def sockets(self) -> dict[str, socket.socket]:
        out = {}
        for addr in [PRIMARY, KNOT_SECONDARY] + self.secondaries:
            s = self.hub.socket()
            s.connect((addr, 53))
            s.setblocking(False)
            out[addr] = s
        return out

    @staticmethod
    def ask(sock: socket.socket, name: str, rdtype, timeout: float):
        """The first answer RR of the response to (name, rdtype), None when
        there is none or no response within timeout."""
        q = dns.message.make_query(name, rdtype)
        try:
            sock.send(q.to_wire())
        except OSError:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = dns.message.from_wire(sock.recv(4096))
            except BlockingIOError:
                time.sleep(0.0005)
                continue
            except Exception:
                return None
            if r.id == q.id:
                return r.answer[0][0] if r.answer else None
        return None

    def serial(self, sock: socket.socket) -> int | None:
        soa = self.ask(sock, ORIGIN, dns.rdatatype.SOA, 0.05)
        return None if soa is None else soa.serial

    def address_of(self, sock: socket.socket, name: str) -> str | None:
        a = self.ask(sock, name, dns.rdatatype.A, 0.5)
        return None if a is None else a.address

    def wait_all(self, socks, version: int, start: float, timeout: float) -> dict[str, float]:
        seen: dict[str, float] = {}
        while len(seen) < len(socks) and time.monotonic() - start < timeout:
            for addr, s in socks.items():
                if addr not in seen and self.serial(s) == version:
                    seen[addr] = time.monotonic() - start
            time.sleep(POLL)
        return seen

    def control_stats(self, i: int) -> dict:
        out = run(
            sys.executable, "-m", "xdpdns", "stats", "--json",
            "--control-socket", self.workdir / f"s{i}" / "control.sock",
        )  # fmt: skip
        return json.loads(out.stdout)["secondary"][0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--secondaries", type=int, default=8)
    p.add_argument("--records", type=int, default=100000)
    p.add_argument("--changes", type=int, default=1000)
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--primary", choices=("knot", "xdpdns"), default="knot")
    p.add_argument(
        "--secondary-kind",
        choices=("xdpdns", "knot"),
        default="xdpdns",
        help="what the N secondaries are (like for like: knot)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per update at most")
    p.add_argument("--json")
    p.add_argument("--keep", action="store_true", help="keep the servers' logs and files")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("root only (network namespaces)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="xdpdns-fleet-"))
    fleet = Fleet(args, workdir)
    results = {"command": sys.argv, "settings": vars(args), "updates": []}
    try:
        fleet.build()
        fleet.start_primary()
        fleet.start_secondaries()
        socks = fleet.sockets()
        start = time.monotonic()
        first = fleet.wait_all(socks, 1, start, 120)
        if len(first) < len(socks):
            raise RuntimeError(f"not every server serves serial 1: {sorted(first)}")
        results["initial_seconds"] = first
        if args.secondary_kind == "xdpdns":
            fleet.first_transfer = [
                fleet.control_stats(i)["last_transfer"]["bytes"] for i in range(args.secondaries)
            ]
        blocks = args.records // args.changes
        for version in range(2, args.updates + 2):
            fleet.zone_file.write_text(zone_text(args.records, args.changes, version))
            start = time.monotonic()
            fleet.reload_primary()
            seen = fleet.wait_all(socks, version, start, args.timeout)
            changed = ((version % blocks) * args.changes) + 1
            wrong = [
                addr
                for addr, s in socks.items()
                if addr in seen
                and fleet.address_of(s, f"h{changed}.{ORIGIN}") != address(changed, version)
            ]
            primary = seen.get(PRIMARY)
            lags = [seen[a] for a in fleet.secondaries if a in seen]
            row = {
                "version": version,
                "primary_s": primary,
                "secondaries_s": lags,
                "knot_s": seen.get(KNOT_SECONDARY),
                "missing": [a for a in socks if a not in seen],
                "wrong": wrong,
            }
            results["updates"].append(row)
            print(
                f"v{version}: primary {primary if primary is None else round(primary, 3)}s, "
                f"{args.secondary_kind} worst {max(lags) if lags else None:.3f}s, knot "
                f"{row['knot_s'] if row['knot_s'] is None else round(row['knot_s'], 3)}s"
                + (f" MISSING {row['missing']}" if row["missing"] else "")
                + (f" WRONG {wrong}" if wrong else ""),
                flush=True,
            )
        sizes = [fleet.transfer_bytes(i) for i in range(args.secondaries)]
        results["axfr_bytes"] = [first for first, _ in sizes]
        results["last_ixfr_bytes"] = [last for _, last in sizes]
    finally:
        fleet.destroy()
    ups = results["updates"]
    worst = [max(u["secondaries_s"]) for u in ups if u["secondaries_s"] and not u["missing"]]
    after_primary = [
        max(u["secondaries_s"]) - u["primary_s"]
        for u in ups
        if u["secondaries_s"] and u["primary_s"]
    ]
    knot = [u["knot_s"] for u in ups if u["knot_s"] is not None]
    summary = {
        "updates": len(ups),
        "complete": len(worst),
        "wrong_answers": sum(len(u["wrong"]) for u in ups),
        "all_current_median_s": statistics.median(worst) if worst else None,
        "all_current_worst_s": max(worst) if worst else None,
        "last_after_primary_median_s": statistics.median(after_primary) if after_primary else None,
        "knot_secondary_median_s": statistics.median(knot) if knot else None,
        "knot_secondary_worst_s": max(knot) if knot else None,
        "primary_median_s": statistics.median([u["primary_s"] for u in ups if u["primary_s"]]),
        "axfr_bytes": results.get("axfr_bytes", [None])[0],
        "ixfr_bytes": results.get("last_ixfr_bytes", [None])[0],
    }
    results["summary"] = summary
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.keep:
        print(f"logs and files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if summary["complete"] == len(ups) and not summary["wrong_answers"] else 1


if __name__ == "__main__":
    sys.exit(main())
