"""Network namespaces for the XDP tests: a server namespace and a client
namespace joined by a two-queue veth pair, addressed from the benchmark
ranges 198.18.0.0/15 and 2001:2::/48 (RFC 2544, RFC 5180).

Everything is created under names that carry a per-session suffix (so that
parallel runs never collide) and deleted by those names.  Nothing here
touches an interface of the host's own namespace: the veth pair is created
inside the server namespace with its peer moved straight into the client's.

Root only (``ip netns``, setns(2)).
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass

from xdpdns.bench.topology import Netns as BenchNetns
from xdpdns.bench.topology import attach_pass_program

COMMAND_TIMEOUT = 30  # seconds for one ip/ethtool command

SERVER_V4 = "198.18.0.1"
CLIENT_V4 = "198.18.0.2"
SERVER_V6 = "2001:2::1"
CLIENT_V6 = "2001:2::2"
QUEUES = 2
# A port not in [xdp] ports: the XDP program passes it to the kernel, and
# the socket-mode workers answer it (what XDP mode's answers are checked
# against).
SOCKET_PORT = 5353


def run(*argv, check=True, timeout=COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs a command to completion (text output); raises with its stderr."""
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result


@dataclass(frozen=True)
class Netns(BenchNetns):
    """One named network namespace (/run/netns/NAME): `xdpdns bench`'s, which
    the tests delete by name themselves."""

    def delete(self) -> None:
        if self.exists():
            run("ip", "netns", "delete", self.name, check=False)


@dataclass(frozen=True)
class VethTopology:
    """xdpns-s-SUFFIX (server) <- veth, 2 queues -> xdpns-c-SUFFIX (client)."""

    server: Netns
    client: Netns
    server_if: str
    client_if: str
    server_v4: str = SERVER_V4
    client_v4: str = CLIENT_V4
    server_v6: str = SERVER_V6
    client_v6: str = CLIENT_V6
    queues: int = QUEUES

    def delete(self) -> None:
        # Deleting a namespace destroys the veth end in it, and with it the
        # peer.
        self.server.delete()
        self.client.delete()

    def xdp_attached(self) -> str | None:
        """The `prog/xdp...` part of `ip -d link show` of the server end,
        None when no XDP program is attached."""
        out = self.server.run("ip", "-d", "link", "show", "dev", self.server_if).stdout
        for word in out.split():
            if word.startswith("prog/xdp") or word in (
                "xdp",
                "xdpgeneric",
                "xdpdrv",
                "xdpoffload",
                "xdpmulti",
            ):
                return out
        return None


def without_client_program(topo: VethTopology):
    """Context manager: the client's end without its XDP_PASS program, for a
    test that attaches its own (a load generator); put back afterwards."""
    import contextlib

    @contextlib.contextmanager
    def manager():
        topo.client.run("ip", "link", "set", "dev", topo.client_if, "xdp", "off")
        try:
            yield topo
        finally:
            topo.client.run("ip", "link", "set", "dev", topo.client_if, "xdp", "off", check=False)
            attach_pass_program(topo.client, topo.client_if)

    return manager()


def session_suffix() -> str:
    """A short random suffix for this test session's names (an interface
    name has at most 15 characters: xdps- + 6 = 11)."""
    return secrets.token_hex(3)


def create_topology(suffix: str) -> VethTopology:
    """Creates both namespaces, the veth pair and the addresses; on any
    failure deletes what it made and raises."""
    topo = VethTopology(
        Netns(f"xdpns-s-{suffix}"), Netns(f"xdpns-c-{suffix}"), f"xdps-{suffix}", f"xdpc-{suffix}"
    )
    s, c = topo.server, topo.client
    try:
        run("ip", "netns", "add", s.name)
        run("ip", "netns", "add", c.name)
        run(
            "ip",
            "-n",
            s.name,
            "link",
            "add",
            topo.server_if,
            "numtxqueues",
            QUEUES,
            "numrxqueues",
            QUEUES,
            "type",
            "veth",
            "peer",
            "name",
            topo.client_if,
            "netns",
            c.name,
            "numtxqueues",
            QUEUES,
            "numrxqueues",
            QUEUES,
        )
        for ns, ifname, v4, v6 in (
            (s, topo.server_if, SERVER_V4, SERVER_V6),
            (c, topo.client_if, CLIENT_V4, CLIENT_V6),
        ):
            # veth starts with one active rx and tx channel whatever
            # numrxqueues says; XDP mode serves the active ones.
            got = ns.run("ethtool", "-l", ifname, check=False).stdout
            if f"RX:\t\t{QUEUES}" not in got.split("Current hardware settings:")[-1]:
                ns.run("ethtool", "-L", ifname, "rx", QUEUES, "tx", QUEUES)
            ns.run("ip", "addr", "add", f"{v4}/24", "dev", ifname)
            # nodad: the address is usable at once instead of after DAD's
            # second or so.
            ns.run("ip", "-6", "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            ns.run("ip", "link", "set", "lo", "up")
            ns.run("ip", "link", "set", ifname, "up")
        # Why TX checksum offload goes off on the client side: veth
        # advertises checksum offload, so the client's kernel stack leaves the
        # UDP checksum of what it sends incomplete (CHECKSUM_PARTIAL: only the
        # pseudo-header sum is in the packet, the rest is meant for the
        # "hardware").  A veth peer's kernel stack trusts such an skb without
        # looking, but the XDP program and the AF_XDP worker see the raw
        # bytes, in which the checksum is wrong, and the engine (with
        # verify_checksums on, as on a real NIC, where checksums arrive
        # complete) drops them as bad_checksum.  With tx offload off the
        # client's stack computes the checksum in software, as a packet from
        # a real wire carries it.
        c.run("ethtool", "-K", topo.client_if, "tx", "off")
        # The server's XDP program answers with XDP_TX, which a veth peer
        # receives only while it runs NAPI: the client's kernel sockets need
        # a program there (tests that attach a generator take it off).
        attach_pass_program(c, topo.client_if)
    except BaseException:
        topo.delete()
        raise
    return topo


def listen_args(topo: VethTopology) -> list[str]:
    """`xdpdns serve` options: port 53 (XDP mode's) and SOCKET_PORT, on the
    server's IPv4 and IPv6 addresses (the first four: port 53 alone)."""
    return [
        "--listen",
        f"{topo.server_v4}:53",
        "--listen",
        f"[{topo.server_v6}]:53",
        "--listen",
        f"{topo.server_v4}:{SOCKET_PORT}",
        "--listen",
        f"[{topo.server_v6}]:{SOCKET_PORT}",
    ]
