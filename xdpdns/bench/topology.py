"""The benchmark's network: a server namespace and a client namespace joined
by a veth pair with N queues, addressed from the benchmark ranges
198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180).

Nothing is created in the host's namespace: the veth pair is made inside
the server namespace with its peer moved straight into the client's, and
deleting the two namespaces (by their names, which carry this process's PID)
deletes the pair and detaches whatever XDP program was on it.  The
:class:`Topology` is a context manager whose exit always deletes; the caller
turns SIGTERM into an exception (see runner.py) so that exit runs then too.

Steering (``default`` or ``strict``): on veth, the XDP program and the copy
into an AF_XDP socket's memory run in the receiving veth's NAPI, which by
default runs wherever the sender's softirq ran, on the client's CPUs.
Strict makes each veth's NAPI a kernel thread (``/sys/class/net/IF/threaded``)
pinned to its own side's CPUs, so that all the work a server causes is
charged to the server's CPUs: queue i's NAPI on the side's i-th CPU, beside
queue i's worker.  Split does the same but puts the server's NAPI threads on
the server CPUs after the workers' (queue i's on CPU queues + i), as an
operator keeps a NIC's interrupts off the cores of the queue workers: under
overload the NAPI thread then no longer takes turns with the worker on one
CPU.  A veth has NAPI only with XDP attached or GRO on: strict and split
turn GRO on so that socket-mode servers and dnsperf clients get the same
treatment.

Root only.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field

from xdpdns.bench import procfs

COMMAND_TIMEOUT = 30  # seconds for one ip/ethtool command
STEERING = ("default", "strict", "split")

SERVER_V4 = "198.18.0.1"
CLIENT_V4 = "198.18.0.2"
SERVER_V6 = "2001:2::1"
CLIENT_V6 = "2001:2::2"
PREFIX_V4 = 24
PREFIX_V6 = 64
MAX_QUEUES = 256  # what `xd_gen_config.cpus` and veth allow

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

_made = 0  # topologies made by this process: part of their names


class TopologyError(RuntimeError):
    """A command that builds or steers the topology failed; the message
    names the command and what it printed."""


def run(argv, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs a command to completion (text output); raises TopologyError with
    its stderr when it fails and check is set."""
    argv = [str(a) for a in argv]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise TopologyError(
            f"{argv[0]} not found (Debian: apt-get install iproute2 ethtool)"
        ) from None
    if check and result.returncode != 0:
        raise TopologyError(
            f"{' '.join(argv)} failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def _base36(n: int, width: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out.rjust(width, "0")[-width:]


def unique_suffix() -> str:
    """Six characters, unique among live processes and among this process's
    topologies (the last 36 of them): the PID (at most 2^22, five base-36
    digits) and a counter.  Fixed width, so that the interface names
    (xdbs/xdbc + 6 = 10 characters) also fit a kernel thread's name of 15
    (``napi/`` + name) on kernels that cut those short."""
    global _made
    _made += 1
    return _base36(os.getpid(), 5) + _base36(_made % 36, 1)


@dataclass(frozen=True)
class Netns:
    """One named network namespace (/run/netns/NAME)."""

    name: str

    def exec_argv(self, argv) -> list[str]:
        """argv run inside the namespace.  `ip netns exec` execs the command
        in place, so the process it starts has the command's PID."""
        return ["ip", "netns", "exec", self.name] + [str(a) for a in argv]

    def run(self, *argv, check: bool = True, timeout: float = COMMAND_TIMEOUT):
        return run(self.exec_argv(argv), check=check, timeout=timeout)

    def exists(self) -> bool:
        return os.path.exists(f"/run/netns/{self.name}")

    @contextmanager
    def entered(self):
        """Moves the calling thread (only it) into the namespace; sockets
        made inside stay in it after the block."""
        with (
            open("/proc/thread-self/ns/net", "rb") as home,
            open(f"/run/netns/{self.name}", "rb") as target,
        ):
            _setns(target.fileno())
            try:
                yield self
            finally:
                _setns(home.fileno())

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket that lives in this namespace."""
        with self.entered():
            return socket.socket(family, kind)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


# A program that passes every frame: r0 = XDP_PASS (2); exit.  Built from
# its two instructions (struct bpf_insn) so that no object file is needed.
_XDP_PASS_INSNS = bytes.fromhex("b7000000020000009500000000000000")
_BPF_PROG_TYPE_XDP = 6
_XDP_FLAGS_DRV_MODE = 1 << 2


def attach_pass_program(netns: Netns, ifname: str) -> None:
    """Attaches an XDP program that passes everything to ``ifname`` in
    ``netns``: the client's end of a veth needs one to receive what the
    server sends with XDP_TX, which reaches a veth peer only while the peer
    runs NAPI (DESIGN.md, "Measuring"), as a kernel-socket client's does not.
    The attachment is by netlink: it lasts until the interface goes."""
    libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
    libbpf.bpf_prog_load.restype = ctypes.c_int
    libbpf.bpf_prog_load.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
    ]
    libbpf.bpf_xdp_attach.restype = ctypes.c_int
    libbpf.bpf_xdp_attach.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p]
    fd = libbpf.bpf_prog_load(
        _BPF_PROG_TYPE_XDP, b"xdp_pass", b"GPL", _XDP_PASS_INSNS, len(_XDP_PASS_INSNS) // 8, None
    )
    if fd < 0:
        raise TopologyError(f"loading an XDP_PASS program: {os.strerror(-fd)}")
    try:
        with netns.entered():
            ifindex = socket.if_nametoindex(ifname)
            rc = libbpf.bpf_xdp_attach(ifindex, fd, _XDP_FLAGS_DRV_MODE, None)
        if rc < 0:
            raise TopologyError(
                f"attaching an XDP_PASS program to {ifname} in {netns.name}: {os.strerror(-rc)}"
            )
    finally:
        os.close(fd)


@contextmanager
def client_program_off(netns: Netns, ifname: str):
    """The client's XDP_PASS program taken off for the block (an AF_XDP
    generator attaches its own), and put back after it."""
    netns.run("ip", "link", "set", "dev", ifname, "xdp", "off")
    try:
        yield
    finally:
        netns.run("ip", "link", "set", "dev", ifname, "xdp", "off", check=False)
        attach_pass_program(netns, ifname)


@dataclass
class Side:
    """One end: its namespace, interface, addresses, MAC and CPUs."""

    netns: Netns
    ifname: str
    v4: str
    v6: str
    cpus: tuple[int, ...]
    mac: bytes = b""
    napi_threads: list[int] = field(default_factory=list)  # pinned NAPI kthreads

    @property
    def mac_text(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac)

    def link(self) -> dict:
        """`ip -d -j link show` of the interface."""
        out = self.netns.run("ip", "-d", "-j", "link", "show", "dev", self.ifname).stdout
        return json.loads(out)[0]

    def xdp_tx_errors(self) -> int:
        """Frames this end's XDP program sent back with XDP_TX that the veth
        could not hand to its peer (`ethtool -S`: the peer's ring of 256
        frames was full; XDP_TX has no back-pressure, so they are lost)."""
        out = self.netns.run("ethtool", "-S", self.ifname, check=False).stdout
        total = 0
        for line in out.splitlines():
            name, _, value = line.strip().partition(":")
            if name.endswith("_xdp_tx_errors") and value.strip().isdigit():
                total += int(value)
        return total

    def xdp_prog_id(self) -> int | None:
        """The ID of the XDP program attached to the interface, None if none."""
        xdp = self.link().get("xdp")
        if not xdp:
            return None
        prog = xdp.get("prog") or (xdp.get("attached") or [{}])[0].get("prog") or {}
        return prog.get("id")

    def steer(self, offset: int = 0) -> int:
        """Makes this side's veth NAPI threaded and pins queue i's thread to
        this side's CPU offset + i (modulo their number): with offset 0
        beside queue i's worker; returns how many threads are pinned.
        Called again after an XDP program is attached or detached, which
        may recreate NAPI."""
        self.netns.run("sh", "-c", f"echo 1 > /sys/class/net/{self.ifname}/threaded", check=False)
        full, cut = f"napi/{self.ifname}-", f"napi/{self.ifname}"[:15]
        found = []
        for tid in procfs.kernel_threads("napi/"):
            name = procfs.comm(tid) or ""
            if name.startswith(full):
                # napi/IF-ID: IDs are handed out in queue order.
                suffix = name[len(full) :]
                found.append((int(suffix) if suffix.isdigit() else tid, tid))
            elif name == cut:  # a kernel that cuts thread names: PID order
                found.append((tid, tid))
        # In ascending order, as the engine hands its CPUs to the queues.
        cpus = sorted(self.cpus)
        pinned = []
        for i, (_, tid) in enumerate(sorted(found)):
            try:
                os.sched_setaffinity(tid, {cpus[(offset + i) % len(cpus)]})
                pinned.append(tid)
            except OSError:
                pass  # the thread went away with its NAPI
        self.napi_threads = pinned
        return len(pinned)


class Topology:
    """xdb-s-SUFFIX (server) <- veth, N queues -> xdb-c-SUFFIX (client).

    ``with Topology(queues, server_cpus, client_cpus, steering) as topo:``
    creates it, and deletes it on the way out whatever happened.
    """

    def __init__(
        self,
        queues: int,
        server_cpus,
        client_cpus,
        steering: str = "default",
        suffix: str | None = None,
    ) -> None:
        if not 1 <= queues <= MAX_QUEUES:
            raise ValueError(f"queues: expected 1 to {MAX_QUEUES}, got {queues}")
        if steering not in STEERING:
            raise ValueError(f"steering: expected one of {', '.join(STEERING)}, got {steering!r}")
        suffix = suffix or unique_suffix()
        self.queues = queues
        self.steering = steering
        self.server = Side(
            Netns(f"xdb-s-{suffix}"), f"xdbs{suffix}", SERVER_V4, SERVER_V6, tuple(server_cpus)
        )
        self.client = Side(
            Netns(f"xdb-c-{suffix}"), f"xdbc{suffix}", CLIENT_V4, CLIENT_V6, tuple(client_cpus)
        )
        self._created: list[Netns] = []  # delete() deletes only what create() made

    def __enter__(self) -> "Topology":
        try:
            self.create()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.delete()

    def create(self) -> None:
        s, c, n = self.server, self.client, self.queues
        for side in (s, c):
            if side.netns.exists():
                raise TopologyError(f"network namespace {side.netns.name} exists already")
        for side in (s, c):
            run(["ip", "netns", "add", side.netns.name])
            self._created.append(side.netns)
        run(
            [
                "ip",
                "-n",
                s.netns.name,
                "link",
                "add",
                s.ifname,
                "numrxqueues",
                n,
                "numtxqueues",
                n,
                "type",
                "veth",
                "peer",
                "name",
                c.ifname,
                "netns",
                c.netns.name,
                "numrxqueues",
                n,
                "numtxqueues",
                n,
            ]
        )
        for side in (s, c):
            ns = side.netns
            # veth may start with one active channel whatever numrxqueues
            # says; XDP mode and the generator use the active ones.
            current = ns.run("ethtool", "-l", side.ifname, check=False).stdout
            if f"RX:\t\t{n}" not in current.split("Current hardware settings:")[-1]:
                ns.run("ethtool", "-L", side.ifname, "rx", n, "tx", n)
            ns.run("ip", "addr", "add", f"{side.v4}/{PREFIX_V4}", "dev", side.ifname)
            # nodad: usable at once instead of after duplicate detection.
            ns.run("ip", "-6", "addr", "add", f"{side.v6}/{PREFIX_V6}", "dev", side.ifname, "nodad")
            if self.steering != "default":
                ns.run("ethtool", "-K", side.ifname, "gro", "on")
            ns.run("ip", "link", "set", "lo", "up")
            ns.run("ip", "link", "set", side.ifname, "up")
            side.mac = bytes.fromhex(side.link()["address"].replace(":", ""))
        # veth advertises checksum offload, so the client's stack would send
        # UDP checksums that only hold the pseudo-header sum; the server's
        # XDP path reads raw frames and (with verify_checksums, as on a real
        # wire) drops those.  The client computes them in software instead.
        c.netns.run("ethtool", "-K", c.ifname, "tx", "off")
        # XDP_TX answers (the server's answer table) reach the client only
        # while its veth end runs NAPI: a kernel-socket client (dnsperf, the
        # start-up probe) needs a program there; AF_XDP generators replace
        # it with their own (client_program_off).
        attach_pass_program(c.netns, c.ifname)
        # Static neighbours: no ARP or ND exchange during a run, and AF_XDP
        # senders need the MACs anyway.
        s.netns.run("ip", "neigh", "replace", c.v4, "lladdr", c.mac_text, "dev", s.ifname)
        c.netns.run("ip", "neigh", "replace", s.v4, "lladdr", s.mac_text, "dev", c.ifname)
        s.netns.run("ip", "-6", "neigh", "replace", c.v6, "lladdr", c.mac_text, "dev", s.ifname)
        c.netns.run("ip", "-6", "neigh", "replace", s.v6, "lladdr", s.mac_text, "dev", c.ifname)

    def steer(self) -> dict:
        """Applies strict or split steering to both sides (nothing under
        default); returns the NAPI threads pinned per side."""
        if self.steering == "default":
            return {"server": 0, "client": 0}
        offset = self.queues if self.steering == "split" else 0
        return {"server": self.server.steer(offset), "client": self.client.steer()}

    def delete(self) -> None:
        """Deletes the namespaces this topology created, by name (and with
        them the veth pair and any XDP program on it).  Never raises: it
        runs on the way out of failures."""
        while self._created:
            netns = self._created[-1]
            if netns.exists():
                try:
                    run(["ip", "netns", "delete", netns.name], check=False)
                except (TopologyError, subprocess.TimeoutExpired, OSError):
                    pass  # nothing better to do on the way out; exists() tells
            self._created.pop()

    def exists(self) -> bool:
        return self.server.netns.exists() or self.client.netns.exists()

    def describe(self) -> dict:
        return {
            "server_netns": self.server.netns.name,
            "client_netns": self.client.netns.name,
            "server_interface": self.server.ifname,
            "client_interface": self.client.ifname,
            "server_address": self.server.v4,
            "client_address": self.client.v4,
            "queues": self.queues,
            "steering": self.steering,
            "server_cpus": list(self.server.cpus),
            "client_cpus": list(self.client.cpus),
        }
