"""What the benchmarks read from /proc: a process's tree, CPU time and
memory, the CPUs' busy time, thread affinities, UDP drop counters, and the
machine's description.

Pure reading, except :func:`pin_all`, which sets thread affinities.  Never
signals anything.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 on (None when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces.
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot): with the PID, an
    identity that survives PID reuse."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None  # field 22 of proc(5)


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """Every descendant of pid (NSD forks its workers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                parents.setdefault(int(st[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kernel_threads(prefix: str) -> list[int]:
    """PIDs of the kernel threads whose name starts with prefix (children
    of kthreadd, PID 2)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[1] == "2" and (comm(int(entry)) or "").startswith(prefix):
                out.append(int(entry))
    return out


def cpu_user_system(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of the processes (all their threads)."""
    user = system = 0
    for pid in pids:
        st = _stat(pid)
        if st:
            user += int(st[11])
            system += int(st[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of the processes (all their threads)."""
    return sum(cpu_user_system(pids))


def status_kib(pid: int, key: str) -> int | None:
    """A kB value of /proc/PID/status (VmRSS, VmHWM)."""
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


def cpu_shares(
    before: dict[int, list[int]], after: dict[int, list[int]]
) -> dict[int, dict[str, float]]:
    """Per CPU, the share of each CPU_FIELDS column between two cpu_times()."""
    out = {}
    for cpu in after:
        d = [a - b for a, b in zip(after[cpu], before.get(cpu, after[cpu]))]
        total = sum(d) or 1
        out[cpu] = {name: v / total for name, v in zip(CPU_FIELDS, d)}
    return out


def busy_seconds(
    before: dict[int, list[int]], after: dict[int, list[int]], cpus: set[int], wall: float
) -> float:
    """Seconds the CPUs were busy (not idle, not in iowait) in the `wall`
    seconds between two cpu_times(): under strict steering everything the
    server causes (its threads, its veth's NAPI, softirqs) runs on its CPUs.

    Measured as wall time less idle time, not as the sum of the busy
    columns: with NO_HZ the kernel keeps idle time exactly (nohz idle
    accounting) but the busy columns are sampled at the tick, and a CPU that
    runs for microseconds between short sleeps is mostly idle when its tick
    comes.  A thread pinned to a CPU and busy 10 us of every 80 us read 0.24
    busy seconds in 3 s from the columns, 0.97 from wall less idle, 0.94
    from getrusage; a server that sleeps between packets (Knot, xdpdns
    since it spins only under load) looked several times cheaper than it
    is."""
    seconds = 0.0
    for cpu in cpus:
        if cpu in after and cpu in before:
            d = [a - b for a, b in zip(after[cpu], before[cpu])]
            seconds += max(0.0, wall - (d[3] + d[4]) / CLK_TCK)
    return seconds


def wait_idle(cpus: set[int], threshold: float, max_wait: float, window: float = 1.0) -> float:
    """Waits (at most max_wait seconds) until every CPU in cpus was idle for at
    least `threshold` of the last `window` seconds: other work on a shared
    machine skews a run more than anything else.  Returns the least idle
    share seen in the last window."""
    end = time.monotonic() + max_wait
    while True:
        before, start = cpu_times(), time.monotonic()
        time.sleep(window)
        after, wall = cpu_times(), time.monotonic() - start
        # Idle share from wall time: see busy_seconds.
        idle = min(1.0 - busy_seconds(before, after, {c}, wall) / wall for c in cpus if c in after)
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
    lines = [
        ln.split()
        for ln in Path("/proc/net/snmp").read_text().splitlines()
        if ln.startswith("Udp:")
    ]
    return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"])


def threads(pids: list[int]):
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
    for tid in threads(pids):
        try:
            os.sched_setaffinity(tid, cpus)
            n += 1
        except OSError:
            pass  # the thread has exited
    return n


def affinities(pids: list[int]) -> set[frozenset[int]]:
    out = set()
    for tid in threads(pids):
        try:
            out.add(frozenset(os.sched_getaffinity(tid)))
        except OSError:
            pass  # the thread has exited
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def first_line(argv: list[str]) -> str:
    """The first line a program prints (for versions); never raises."""
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def package_version(package: str) -> str | None:
    """The installed Debian package's version, None when it is not."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine() -> dict:
    """What a reader needs to judge the figures: CPU, cores, memory, kernel,
    the Debian release."""
    try:
        release = Path("/etc/debian_version").read_text().strip()
    except OSError:
        release = platform.platform()
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_kib": memory_kib(),
        "kernel": os.uname().release,
        "os": f"Debian {release}" if release[:1].isdigit() else release,
        "python": platform.python_version(),
    }
