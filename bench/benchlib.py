"""Shared pieces of the benchmarks in bench/: start and stop xdpdns, NSD and
Knot DNS on loopback, wait for their first answer, pin them to CPUs, read
their CPU time and memory, and run dnsperf.

Never part of the test run.  Every process started here is stopped by its own
PID (and its children by theirs); nothing is sent anywhere but 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def default_xdpdns() -> str:
    venv = ROOT / ".venv" / "bin" / "xdpdns"
    return str(venv) if venv.exists() else (shutil.which("xdpdns") or "xdpdns")


def find_program(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (the servers bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((LOOPBACK, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port")


# ---- /proc --------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces.
    return text[text.rindex(")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields_ = _proc_stat(pid)
    return int(fields_[19]) if fields_ else None  # field 22 of stat(5)


def children(pid: int) -> list[int]:
    """Every descendant of pid, from /proc (children first found first)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                parents.setdefault(int(st[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_user_system(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes (all their threads)."""
    user = system = 0
    for pid in pids:
        st = _proc_stat(pid)
        if st:
            user += int(st[11])
            system += int(st[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of the processes (all their threads)."""
    return sum(cpu_user_system(pids))


def status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kib(pid: int) -> int | None:
    """Proportional set size: shared pages split between the sharers, so the
    sum over a forking server's processes counts each page once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times() -> dict[int, list[int]]:
    """Per CPU: the jiffies of /proc/stat, in CPU_FIELDS order."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        m = re.match(r"cpu(\d+) (.*)", line)
        if m:
            out[int(m.group(1))] = [int(x) for x in m.group(2).split()[:8]]
    return out


def cpu_shares(before: dict[int, list[int]], after: dict[int, list[int]]) -> dict[int, dict[str, float]]:
    """Per CPU, the share of each CPU_FIELDS column between two cpu_times()."""
    out = {}
    for cpu in after:
        d = [a - b for a, b in zip(after[cpu], before.get(cpu, after[cpu]))]
        total = sum(d) or 1
        out[cpu] = {name: v / total for name, v in zip(CPU_FIELDS, d)}
    return out


def wait_idle(cpus: set[int], threshold: float, max_wait: float, window: float = 1.0) -> float:
    """Waits (at most max_wait seconds) until every CPU in cpus was idle for at
    least `threshold` of the last `window` seconds: other work on a shared
    machine skews a run more than anything else.  Returns the least idle
    share seen in the last window."""
    end = time.monotonic() + max_wait
    while True:
        before = cpu_times()
        time.sleep(window)
        shares = cpu_shares(before, cpu_times())
        idle = min(shares[c]["idle"] + shares[c]["iowait"] for c in cpus if c in shares)
        if idle >= threshold or time.monotonic() >= end:
            return idle


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def udp_drops(port: int) -> int:
    """Datagrams dropped so far by the UDP sockets bound to local port `port`
    (the last column of /proc/net/udp: a full receive buffer)."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) >= 13 and int(f[1].split(":")[1], 16) == port:
            total += int(f[-1])
    return total


def udp_rcvbuf_errors() -> int:
    """All UDP datagrams dropped on this host for a full receive buffer."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
             if ln.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"])


def _threads(pids: list[int]):
    """The thread IDs of processes (those that still exist)."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # the process has exited
        yield from map(int, tids)


def pin_all(pids: list[int], cpus: set[int]) -> int:
    """Pins every thread of every process to cpus (what `taskset -a -p` does);
    returns how many threads were pinned.  knotd sets its own threads'
    affinity, so pinning at start is not enough (DESIGN.md)."""
    n = 0
    for tid in _threads(pids):
        try:
            os.sched_setaffinity(tid, cpus)
            n += 1
        except OSError:
            pass  # the thread has exited
    return n


def affinities(pids: list[int]) -> set[frozenset[int]]:
    out = set()
    for tid in _threads(pids):
        try:
            out.add(frozenset(os.sched_getaffinity(tid)))
        except OSError:
            pass  # the thread has exited
    return out


# ---- DNS on loopback ---------------------------------------------------------


def ask(port: int, qname: str, qtype: str = "A", timeout: float = 1.0,
        edns: bool = True) -> dns.message.Message | None:
    """One UDP query to 127.0.0.1:port; None when no answer came in time."""
    q = dns.message.make_query(qname, qtype, use_edns=0 if edns else None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q.to_wire(), (LOOPBACK, port))
        try:
            wire, _ = s.recvfrom(65535)
        except OSError:
            return None
    try:
        return dns.message.from_wire(wire)
    except Exception:
        return None


def poll_first_answer(port: int, qname: str, qtype: str, deadline: float,
                      interval: float, alive) -> float | None:
    """Sends a small query every `interval` seconds until an authoritative
    NOERROR answer with data comes back; returns the monotonic time of its
    arrival, None at the deadline or when alive() turns false."""
    wire = dns.message.make_query(qname, qtype).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        while time.monotonic() < deadline:
            try:
                s.sendto(wire, (LOOPBACK, port))
            except OSError:
                pass
            end = time.monotonic() + interval
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    data = s.recv(65535)
                except (socket.timeout, BlockingIOError):
                    break
                except OSError:  # ECONNREFUSED: nothing bound yet
                    time.sleep(max(0.0, end - time.monotonic()))
                    break
                arrived = time.monotonic()
                try:
                    r = dns.message.from_wire(data)
                except Exception:
                    continue
                if (r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
                        and r.answer):
                    return arrived
            if not alive():
                return None
    return None


# ---- servers -----------------------------------------------------------------


@dataclass
class Server:
    """One server process on 127.0.0.1:port, with its config in workdir."""

    name: str
    argv: list[str]
    workdir: Path
    port: int
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    known: dict[int, int | None] = field(default_factory=dict)  # pid -> start time

    def start(self, cpus: set[int] | None = None) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, preexec_fn=preexec,
                                         start_new_session=True)
        finally:
            log.close()
        self.known[self.proc.pid] = start_time(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The server process and its descendants (NSD forks its workers)."""
        if not self.alive():
            return []
        pids = [self.proc.pid] + children(self.proc.pid)
        for pid in pids:
            self.known.setdefault(pid, start_time(pid))
        return pids

    def wait_answer(self, qname: str, qtype: str = "A", timeout: float = 120.0,
                    interval: float = 0.005) -> float:
        """Seconds from start() to the first authoritative answer."""
        t = poll_first_answer(self.port, qname, qtype, time.monotonic() + timeout,
                              interval, self.alive)
        if t is None:
            raise RuntimeError(f"{self.name} gave no answer for {qname} {qtype} "
                               f"within {timeout} s; see {self.log_tail()}")
        self.pids()  # remember the children for stop()
        return t - self.started_at

    def log_tail(self, lines: int = 15) -> str:
        path = self.workdir / f"{self.name}.log"
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return str(path)
        return f"{path}:\n" + "\n".join(text)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the server, SIGKILL after timeout; then the same to any
        child it left behind, each by its own PID (checked against the start
        time it had, so that a reused PID is never hit)."""
        if self.proc is None:
            return
        self.pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for pid, started in self.known.items():
            if pid == self.proc.pid:
                continue
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if started is None or start_time(pid) != started:
                    break
                os.kill(pid, sig)
                end = time.monotonic() + timeout / 2
                while time.monotonic() < end and start_time(pid) == started:
                    time.sleep(0.01)
        self.proc = None


def xdpdns_server(workdir: Path, origin: str, zonefile: Path, port: int,
                  xdpdns: str, udp_workers: int | None = 1) -> Server:
    argv = [xdpdns, "serve", "--listen", f"{LOOPBACK}:{port}",
            "--zone", f"{origin}={zonefile}", "--log-level", "warning"]
    if udp_workers:
        argv += ["--udp-workers", str(udp_workers)]
    return Server("xdpdns", argv, workdir, port)


def nsd_server(workdir: Path, origin: str, zonefile: Path, port: int,
               server_count: int = 1) -> Server:
    nsd = find_program("nsd")
    if not nsd:
        raise RuntimeError("nsd not installed (Debian: apt-get install nsd)")
    # Debian's NSD limits responses to 200/s per client by default (RRL) and
    # adds NS and glue to every answer unless minimal-responses: both off
    # here, as an operator benchmarking it would.  database "": no nsd.db,
    # the zone file is read at start, as NSD 4.x does by default.
    conf = workdir / "nsd.conf"
    conf.write_text(
        "server:\n"
        f"    ip-address: {LOOPBACK}@{port}\n"
        "    do-ip6: no\n"
        f"    server-count: {server_count}\n"
        '    username: ""\n'  # stay the invoking user: no chown of the workdir
        '    chroot: ""\n'
        f'    zonesdir: "{workdir}"\n'
        '    database: ""\n'
        f'    zonelistfile: "{workdir}/zone.list"\n'
        f'    xfrdfile: "{workdir}/xfrd.state"\n'
        f'    xfrdir: "{workdir}"\n'
        f'    pidfile: "{workdir}/nsd.pid"\n'
        f'    logfile: "{workdir}/nsd-internal.log"\n'
        "    verbosity: 1\n"
        "    hide-version: yes\n"
        "    minimal-responses: yes\n"
        "    rrl-ratelimit: 0\n"
        "    rrl-whitelist-ratelimit: 0\n"
        "    zonefiles-write: 0\n"
        "remote-control:\n"
        "    control-enable: no\n"
        "zone:\n"
        f'    name: "{origin}"\n'
        f'    zonefile: "{zonefile}"\n'
    )
    return Server("nsd", [nsd, "-d", "-c", str(conf)], workdir, port)


def knot_server(workdir: Path, origin: str, zonefile: Path, port: int,
                udp_workers: int | None = 1, background_workers: int | None = 1) -> Server:
    knotd = find_program("knotd")
    if not knotd:
        raise RuntimeError("knotd not installed (Debian: apt-get install knot)")
    user = "    user: root:root\n" if os.geteuid() == 0 else ""
    workers = ""
    if udp_workers:
        workers += f"    udp-workers: {udp_workers}\n    tcp-workers: 1\n"
    if background_workers:
        workers += f"    background-workers: {background_workers}\n"
    # zonefile-sync -1, journal-content none: Knot never writes the zone
    # back; semantic-checks off: only Knot's mandatory checks, like NSD's.
    conf = workdir / "knot.conf"
    conf.write_text(
        "server:\n"
        f'    rundir: "{workdir}"\n'
        f"{user}"
        f"    listen: {LOOPBACK}@{port}\n"
        f"{workers}"
        '    identity: ""\n'
        '    version: ""\n'
        '    nsid: ""\n'
        "log:\n"
        "  - target: stderr\n"
        "    any: notice\n"
        "database:\n"
        f'    storage: "{workdir}/db"\n'
        "template:\n"
        "  - id: default\n"
        f'    storage: "{workdir}"\n'
        "    zonefile-sync: -1\n"
        "    zonefile-load: whole\n"
        "    journal-content: none\n"
        "    semantic-checks: off\n"
        "zone:\n"
        f'  - domain: "{origin}"\n'
        f'    file: "{zonefile}"\n'
    )
    return Server("knot", [knotd, "-c", str(conf)], workdir, port)


def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unavailable ({e})"
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"

    dnsperf = "?"
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dnsperf"],
                             capture_output=True, text=True, timeout=10)
        dnsperf = out.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "knotd": first_line([find_program("knotd") or "knotd", "-V"]),
        "nsd": first_line([find_program("nsd") or "nsd", "-v"]),
        "dnsperf": f"dnsperf {dnsperf} (Debian package)",
        "kernel": os.uname().release,
        "cpu": cpu_model(),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPUs)"
    return "?"


# ---- dnsperf -----------------------------------------------------------------


@dataclass
class DnsperfResult:
    sent: int
    completed: int
    lost: int
    qps: float
    avg_latency_ms: float
    rcodes: dict[str, int]
    response_bytes: float
    run_time: float


def parse_dnsperf(text: str) -> DnsperfResult:
    def num(pattern: str, cast=float):
        m = re.search(pattern, text)
        if not m:
            raise ValueError(f"dnsperf output lacks {pattern!r}:\n{text}")
        return cast(m.group(1))

    rcodes = {k: int(v) for k, v in
              re.findall(r"([A-Z]+) (\d+) \(", text.split("Response codes:", 1)[-1]
                         .split("\n", 1)[0])}
    m = re.search(r"Average packet size:\s+request (\d+), response (\d+)", text)
    return DnsperfResult(
        sent=num(r"Queries sent:\s+(\d+)", int),
        completed=num(r"Queries completed:\s+(\d+)", int),
        lost=num(r"Queries lost:\s+(\d+)", int),
        qps=num(r"Queries per second:\s+([\d.]+)"),
        avg_latency_ms=num(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        rcodes=rcodes,
        response_bytes=float(m.group(2)) if m else 0.0,
        run_time=num(r"Run time \(s\):\s+([\d.]+)"),
    )


def dnsperf_argv(port: int, queryfile: Path, seconds: float, clients: int,
                 outstanding: int, threads: int, timeout: float) -> list[str]:
    dnsperf = find_program("dnsperf") or "dnsperf"
    return [dnsperf, "-s", LOOPBACK, "-p", str(port), "-d", str(queryfile),
            "-l", str(seconds), "-c", str(clients), "-q", str(outstanding),
            "-T", str(threads), "-t", str(timeout)]


def run_dnsperf(argv: list[str], cpus: set[int] | None, seconds: float) -> tuple[DnsperfResult, str]:
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=preexec, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf exited {proc.returncode}:\n{out}")
    return parse_dnsperf(out), out


def median(values: list[float]) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2
