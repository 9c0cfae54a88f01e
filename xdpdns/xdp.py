"""XDP mode from the server's side: the checks before anything is loaded,
starting the engine's XDP path in an order that never black-holes a query,
and its counters.

Order of start: the XDP program is attached with no port redirected (every
packet still goes to the kernel and so to the socket-mode listeners), then
the destination addresses are added, and only then are the ports switched to
REDIRECT.  Order of stop: the program is detached first, so that from then
on the kernel's stack and the socket-mode listeners get every query while
the rest shuts down.

[xdp] attach = "dispatcher": the program is one of the programs of libxdp's
dispatcher on the interface, run before those loaded with libxdp's default
priority (native/io/xdp_dispatch.h, XD_DISPATCH_RUN_PRIO).  libxdp pins it in
bpffs, so it would outlive the server; and taking it out needs what the
server gives up when it becomes its [server] user: libxdp opens the
dispatcher by program id (CAP_SYS_ADMIN) and rewrites root's 0700 pin
directories (CAP_DAC_OVERRIDE), which together are root.  So rather than
keep them in the thread that serves TCP and the control socket, a guard
process started before the switch (`python -m xdpdns.xdp guard IFACE ID`)
stays root, reads nothing but a pipe from the server, and takes the program
out when that pipe closes: at a clean stop, and when the server is killed
(kill -9 included).  What a server that died together with its guard left
is taken out by the next start (native/io/xdp_dispatch.c,
xd_dispatch_clear_stale: an "xdpdns" program that no live process holds).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from xdpdns.config import XdpConfig
from xdpdns.counts import XDP_PROGRAM_COUNTERS, summed
from xdpdns.engine import (
    PORT_ACTIONS,
    AnswersInfo,
    Engine,
    ProgStats,
    QueueStats,
    XdpInfo,
    dispatch_remove,
)

log = logging.getLogger("xdpdns.xdp")

__all__ = ["XdpMode", "XdpStats", "check_interface", "check_privileges"]

# Capability numbers of linux/capability.h.
CAP_NET_ADMIN = 12  # attach XDP programs
CAP_NET_RAW = 13  # create AF_XDP sockets
CAP_SYS_ADMIN = 21  # load BPF programs on kernels before 5.8
CAP_BPF = 39  # load BPF programs and create maps

ROOT_MESSAGE = "XDP mode needs root (CAP_NET_ADMIN, CAP_BPF)"

# Seconds for the guard to start (a Python interpreter importing the
# engine, on a busy machine) and to take the program out at stop.
GUARD_START_TIMEOUT = 30.0
GUARD_STOP_TIMEOUT = 15.0
GUARD_READY = b"ready\n"

_ACTION_NAMES = {code: name for name, code in PORT_ACTIONS.items()}


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _cpu_list(cpus) -> str:
    return ",".join(map(str, sorted(cpus)))


def check_privileges() -> None:
    """Raises PermissionError unless this process may load and attach XDP
    programs and open AF_XDP sockets."""
    if os.geteuid() == 0:
        return
    caps = _effective_caps()

    def has(cap: int) -> bool:
        return bool(caps & (1 << cap))

    if not (has(CAP_NET_ADMIN) and has(CAP_NET_RAW) and (has(CAP_BPF) or has(CAP_SYS_ADMIN))):
        raise PermissionError(errno.EPERM, ROOT_MESSAGE)


def check_interface(name: str) -> int:
    """The interface's index; raises OSError naming it when there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise OSError(
            errno.ENODEV, f"no such network interface: {name} (see `ip link show`)"
        ) from None


def action_name(code: int) -> str:
    return _ACTION_NAMES.get(code, str(code))


@dataclass(frozen=True)
class XdpStats:
    """The counters of XDP mode: per queue, per CPU, and the port actions
    as every possible CPU sees them."""

    info: XdpInfo
    queues: tuple[QueueStats, ...]
    cpus: tuple[ProgStats, ...]  # index: the CPU
    ports: dict[int, tuple[str, ...]]  # port -> the action on every possible CPU
    answers: AnswersInfo | None = None  # the program's answer table

    def total(self, name: str) -> int:
        return sum(getattr(q, name) for q in self.queues)

    def as_dict(self) -> dict:
        program = {k: sum(getattr(c, k) for c in self.cpus) for k in XDP_PROGRAM_COUNTERS}
        program["answered_in_xdp_rcodes"] = summed(c.answered_in_xdp_rcodes for c in self.cpus)
        program["answered_in_xdp_qtypes"] = summed(c.answered_in_xdp_qtypes for c in self.cpus)
        return {
            "interface": self.info.interface,
            "mode": self.info.mode,
            "attach": self.info.attach,
            "prog_id": self.info.prog_id,
            "zerocopy": self.info.zerocopy,
            "busy_poll": self.info.busy_poll,
            "hugepages": self.info.hugepages,
            "numa_node": self.info.numa_node,
            "umem_bytes": self.info.umem_bytes,
            "first_queue": self.info.first_queue,
            "warnings": list(self.info.warnings),
            "queues": [dict(asdict(q), frames_accounted=q.frames_accounted) for q in self.queues],
            "cpus": [dict(asdict(c), cpu=i) for i, c in enumerate(self.cpus)],
            "program": program,
            "ports": {str(p): list(a) for p, a in self.ports.items()},
            "answers": asdict(self.answers) if self.answers else None,
        }


class XdpMode:
    """The XDP path of one server: start, counters, stop."""

    def __init__(self, config: XdpConfig) -> None:
        self.config = config
        self.info: XdpInfo | None = None
        self._engine: Engine | None = None
        self._final: XdpStats | None = None
        self._guard: DispatchGuard | None = None

    def check(self) -> None:
        """What can be known before loading anything: privileges, interface."""
        check_privileges()
        check_interface(self.config.interface)

    def start(self, engine: Engine) -> XdpInfo:
        """Attaches the program, starts the queue workers, fills the maps.

        Raises OSError with one clear message (the engine's); nothing stays
        attached then.
        """
        cfg = self.config
        info = engine.xdp_start(cfg, cfg.program)
        self._engine = engine
        self.info = info
        try:
            if cfg.attach == "dispatcher":
                self._guard = DispatchGuard.start(cfg.interface, info.prog_id)
            for address in cfg.addresses:
                engine.xdp_add_address(address)
            for port in cfg.ports:
                engine.xdp_set_port(port, "redirect")
        except BaseException:
            self.stop()
            raise
        log.info(
            "xdp interface=%s attach=%s prog_id=%d mode=%s zerocopy=%s busy_poll=%s "
            "hugepages=%s queues=%d "
            "first_queue=%d numa_node=%d umem_bytes=%d ports=%s addresses=%s",
            cfg.interface,
            cfg.attach,
            info.prog_id,
            info.mode,
            _yes(info.zerocopy),
            _yes(info.busy_poll),
            _yes(info.hugepages),
            info.queues,
            info.first_queue,
            info.numa_node,
            info.umem_bytes,
            ",".join(map(str, cfg.ports)),
            ",".join(cfg.addresses) or "any",
        )
        for warning in info.warnings:
            log.warning("xdp: %s", warning)
        self.log_answers(engine)
        self._keep_python_off_workers(engine)
        return info

    def log_answers(self, engine: Engine | None = None) -> None:
        """Says where the program's answer table stands: at start and after
        every new image (reload)."""
        engine = engine or self._engine
        if engine is None:
            return
        table = engine.xdp_answers_info()
        if table.state == "on":
            log.info(
                "xdp answers=on names=%d entries=%d do_entries=%d skipped=%d pages=%d "
                "bytes=%d compile=%.3fs install=%.3fs",
                table.names,
                table.entries,
                table.do_entries,
                table.skipped,
                table.pages,
                table.bytes,
                table.compile_seconds,
                table.install_seconds,
            )
        elif table.state == "failed":
            log.warning("xdp answers=failed (every query goes to the workers): %s", table.message)
        else:
            log.info("xdp answers=%s: %s", table.state, table.message)

    @staticmethod
    def _keep_python_off_workers(engine: Engine) -> None:
        """Moves the calling thread (the server's main thread, whose later
        threads inherit it: the resolver's hook threads, the event loop's
        helpers) off the CPUs that queue workers are pinned to, when others
        are allowed: a busy-polling worker gives its CPU up only to the
        scheduler's time slices, and a hook thread waiting for one adds
        milliseconds to every deferred query."""
        workers = {q.cpu for q in engine.xdp_queue_stats()}
        allowed = os.sched_getaffinity(0)
        rest = allowed - workers
        if rest and rest != allowed:
            os.sched_setaffinity(0, rest)
            log.info(
                "python threads on CPUs %s (queue workers on %s)",
                _cpu_list(rest),
                _cpu_list(workers),
            )

    def stats(self) -> XdpStats | None:
        """The counters now (the last ones once stopped; None before start)."""
        engine = self._engine
        if engine is None or self.info is None:
            return self._final
        ports = {
            p: tuple(action_name(a) for a in engine.xdp_port_actions(p)) for p in self.config.ports
        }
        return XdpStats(
            self.info,
            tuple(engine.xdp_queue_stats()),
            tuple(engine.xdp_prog_stats_per_cpu()),
            ports,
            engine.xdp_answers_info(),
        )

    def stop(self) -> None:
        """Detaches the program and stops the workers (idempotent); keeps the
        last counters for the final report."""
        engine = self._engine
        if engine is None:
            return
        try:
            self._final = self.stats()
        except OSError as exc:
            log.warning("xdp: final counters unavailable: %s", exc.strerror or exc)
        self._engine = None
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.stop()  # first: out of the dispatcher, as a link closes first
        engine.xdp_stop()
        log.info("xdp detached from %s", self.config.interface)


class DispatchGuard:
    """The root process that takes the server's program out of libxdp's
    dispatcher when the server ends, however it ends (the module's
    docstring says why it is a process of its own)."""

    def __init__(self, proc: subprocess.Popen, interface: str, prog_id: int) -> None:
        self._proc = proc
        self.interface = interface
        self.prog_id = prog_id

    @classmethod
    def start(cls, interface: str, prog_id: int) -> "DispatchGuard":
        """Starts the guard and waits until it listens; raises OSError
        (and leaves no process) when it does not come up."""
        # Its own session: a terminal's Ctrl-C goes to the server alone,
        # which then closes the pipe.
        proc = subprocess.Popen(
            [sys.executable, "-m", "xdpdns.xdp", "guard", interface, str(prog_id)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        guard = cls(proc, interface, prog_id)
        if guard._wait_ready():
            return guard
        guard._kill()
        raise OSError(
            errno.EIO,
            f'[xdp] attach = "dispatcher" on {interface}: the guard '
            "process that takes the program out of the dispatcher at stop did not "
            f"start (exit status {proc.returncode})",
        )

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + GUARD_START_TIMEOUT
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select(
                [self._proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                break
            byte = os.read(self._proc.stdout.fileno(), 1)
            if not byte:
                break
            line += byte
        return line == GUARD_READY

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def stop(self) -> None:
        """Closes the pipe and waits for the guard to take the program out."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            status = self._proc.wait(timeout=GUARD_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning(
                "xdp: the dispatcher guard did not finish in %gs: program id %d "
                "may still be in the dispatcher on %s (xdp-loader status %s)",
                GUARD_STOP_TIMEOUT,
                self.prog_id,
                self.interface,
                self.interface,
            )
            self._kill()
            return
        self._close_pipes()
        if status != 0:
            log.warning(
                "xdp: the dispatcher guard failed (exit status %d): program id %d "
                "may still be in the dispatcher on %s",
                status,
                self.prog_id,
                self.interface,
            )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _guard_main(argv: list[str]) -> int:
    """`python -m xdpdns.xdp guard IFACE PROG_ID`: waits for the end of its
    standard input (the server's pipe), then takes PROG_ID out of IFACE's
    dispatcher."""
    if len(argv) != 3 or argv[0] != "guard" or not argv[2].isdigit():
        print("usage: python -m xdpdns.xdp guard IFACE PROG_ID", file=sys.stderr)
        return 2
    interface, prog_id = argv[1], int(argv[2])
    # The server's stop signal reaches its whole service (systemd signals
    # the unit's every process): the guard ends when the server has.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.write(sys.stdout.fileno(), GUARD_READY)
    while os.read(sys.stdin.fileno(), 4096):
        pass
    try:
        dispatch_remove(interface, prog_id)
    except OSError as exc:
        print(f"xdpdns: xdp guard: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_guard_main(sys.argv[1:]))
