"""One server process: started in a network namespace (or on the host),
pinned to its CPUs, waited for until it answers, asked for its counters
(xdpdns), and stopped by its own PID.

Every process is stopped by its PID (SIGTERM, then SIGKILL), and any child
it left by its own PID checked against its start time, so that a reused PID
is never signalled.  Each process the benchmark starts (servers and
generators) also gets PR_SET_PDEATHSIG: if the benchmark dies without
cleaning up, they die with it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import dns.flags
import dns.message
import dns.rcode

from xdpdns.bench import procfs
from xdpdns.bench.topology import Netns
from xdpdns.bench.zones import ZoneFile

START_TIMEOUT = 60.0  # seconds for a server to answer after it starts
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class ServerError(RuntimeError):
    """A server could not be started or did not answer; the message holds
    the end of its log."""


def find_program(name: str) -> str | None:
    """A program on PATH or in the sbin directories (knotd, nsd, named,
    kxdpgun live there and a user's PATH may lack them)."""
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def child_setup(cpus: Sequence[int] | None) -> Callable[[], None]:
    """What every process we start does before exec: pin to cpus, and die
    with SIGTERM when the benchmark dies (PR_SET_PDEATHSIG survives the exec
    of `ip netns exec` and of the server, none of them set-user-ID)."""
    cpu_set = set(cpus) if cpus else None

    def setup() -> None:
        if cpu_set:
            os.sched_setaffinity(0, cpu_set)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return setup


@dataclass
class Server:
    """One server process answering on address:port (inside netns, or on
    the host when netns is None), with its files in workdir."""

    name: str
    mode: str
    argv: list[str]
    workdir: Path
    address: str
    port: int
    netns: Netns | None = None
    client_netns: Netns | None = None  # whence the readiness queries come
    cpus: tuple[int, ...] = ()
    control_socket: Path | None = None  # xdpdns: where `xdpdns stats` asks
    after_stop: Callable[[], None] | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    known: dict[int, int | None] = field(default_factory=dict)  # pid -> start time

    @property
    def label(self) -> str:
        return f"{self.name} {self.mode}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        argv = self.netns.exec_argv(self.argv) if self.netns else list(self.argv)
        log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=child_setup(self.cpus),
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ServerError(f"{self.name}: cannot run {argv[0]}") from None
        finally:
            log.close()
        self.known[self.proc.pid] = procfs.start_time(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The server process and its descendants (NSD forks its workers)."""
        if not self.alive():
            return []
        pids = [self.proc.pid] + procfs.children(self.proc.pid)
        for pid in pids:
            self.known.setdefault(pid, procfs.start_time(pid))
        return pids

    def processes(self) -> list[dict]:
        """Every process this server had, for the record (and the tests)."""
        return [{"pid": pid, "start_time": st} for pid, st in self.known.items()]

    def pin(self) -> int:
        """Pins every thread to the server's CPUs again: knotd sets its own
        threads' affinity (DESIGN.md).  Returns the threads pinned."""
        return procfs.pin_all(self.pids(), set(self.cpus)) if self.cpus else 0

    def _socket(self, family: int) -> socket.socket:
        if self.client_netns is not None:
            return self.client_netns.socket(family, socket.SOCK_DGRAM)
        return socket.socket(family, socket.SOCK_DGRAM)

    def wait_answer(
        self, qname: str, qtype: str = "SOA", timeout: float = START_TIMEOUT, interval: float = 0.05
    ) -> float:
        """Polls with a UDP query until an authoritative NOERROR answer with
        data comes; returns the seconds since start().  Raises ServerError with
        the log's end when the server exits or the timeout passes."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        wire = dns.message.make_query(qname, qtype).to_wire()
        deadline = time.monotonic() + timeout
        with self._socket(family) as s:
            while True:
                if not self.alive():
                    code = self.proc.returncode if self.proc else None
                    raise ServerError(
                        f"{self.label} exited with {code} before answering; {self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"{self.label} gave no answer for {qname} {qtype} "
                        f"within {timeout:g} s; {self.log_tail()}"
                    )
                arrived = _exchange(s, wire, (self.address, self.port), interval)
                if arrived is not None:
                    return arrived - self.started_at

    def ask(self, qname: str, qtype: str = "A", timeout: float = 1.0) -> dns.message.Message | None:
        """One UDP query (with EDNS) from the client side; the answer, None
        when none came in time or it did not parse."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        wire = dns.message.make_query(qname, qtype, use_edns=0).to_wire()
        with self._socket(family) as s:
            s.settimeout(timeout)
            try:
                s.sendto(wire, (self.address, self.port))
                data = s.recv(65535)
            except OSError:
                return None
        try:
            return dns.message.from_wire(data)
        except Exception:
            return None

    def wait_answering(self, zones: Sequence[ZoneFile], timeout: float = START_TIMEOUT) -> float:
        """Waits until every zone's SOA is answered (Knot and BIND load zones
        after they listen); returns the seconds since start()."""
        deadline = time.monotonic() + timeout
        took = 0.0
        for zone in zones:
            took = self.wait_answer(zone.origin, "SOA", max(0.1, deadline - time.monotonic()))
        self._wait_control(deadline)
        self.pids()  # remember the children for stop()
        return took

    def _wait_control(self, deadline: float) -> None:
        """Until xdpdns's control socket answers: xdpdns answers its zones
        (socket mode, and XDP mode through the kernel) before XDP mode has
        finished starting (its answer table compiled), and the counters of
        a run are read there."""
        if self.control_socket is None:
            return
        from xdpdns.control import ControlError, request

        while True:
            try:
                request(self.control_socket)
                return
            except ControlError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise ServerError(
                        f"{self.label}: its control socket did not answer; {self.log_tail()}"
                    ) from None
                time.sleep(0.02)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"see {self.log_path}"
        return f"the end of {self.log_path}:\n" + "\n".join(text)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM to the server, SIGKILL after timeout; then the same to any
        child it left behind, each by its own PID (checked against its start
        time).  Returns the server's exit status; idempotent."""
        if self.proc is None:
            return None
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
                if started is None or procfs.start_time(pid) != started:
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break  # it exited between the look and the signal
                end = time.monotonic() + timeout / 2
                while time.monotonic() < end and procfs.start_time(pid) == started:
                    time.sleep(0.01)
        status = self.proc.returncode
        self.proc = None
        if self.after_stop is not None:
            self.after_stop()
        return status

    # ---- what the server says about itself (xdpdns only) -------------------

    def stats(self) -> dict | None:
        """The JSON of `xdpdns stats --json` (the control socket), None for
        peers."""
        if self.control_socket is None:
            return None
        from xdpdns.control import request

        return request(self.control_socket)

    def rss_kib(self) -> int:
        return sum(procfs.status_kib(pid, "VmRSS") or 0 for pid in self.pids())


def answered_total(stats: dict) -> int:
    """Every answer an xdpdns server sent: socket-mode UDP, TCP, AF_XDP,
    and its XDP program's own (the answer table)."""
    total = stats.get("udp", {}).get("answered", 0) + stats.get("tcp", {}).get("answered", 0)
    xdp = stats.get("xdp") or {}
    return total + sum(q.get("answered", 0) for q in xdp.get("queues", [])) + answered_in_xdp(stats)


def answered_in_xdp(stats: dict) -> int:
    """The answers an xdpdns server's XDP program sent itself (XDP_TX)."""
    return ((stats.get("xdp") or {}).get("program") or {}).get("answered_in_xdp", 0)


def _exchange(
    s: socket.socket, wire: bytes, target: tuple[str, int], interval: float
) -> float | None:
    """Sends one query; the monotonic arrival time of an authoritative
    NOERROR answer with data within interval seconds, else None (after
    sleeping out the interval)."""
    end = time.monotonic() + interval
    try:
        s.sendto(wire, target)
    except OSError:
        time.sleep(interval)
        return None
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data = s.recv(65535)
        except socket.timeout:
            return None
        except OSError:  # ECONNREFUSED: nothing listens yet
            time.sleep(max(0.0, end - time.monotonic()))
            return None
        arrived = time.monotonic()
        try:
            msg = dns.message.from_wire(data)
        except Exception:
            continue  # not an answer to us; keep listening
        if msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA and msg.answer:
            return arrived
    return None
