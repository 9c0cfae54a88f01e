"""The XDP program (bpf/xdpdns.bpf.c) and its loader (native/io/xdp_loader.c):
which packets it steers where, seen through its per-CPU counters and the
kernel sockets that get what it passes.

The engine runs in-process with XDP started in the server namespace of the
session's veth topology (tests/netns.py); hand-made frames are sent from the
client namespace through an AF_PACKET socket, so that malformed headers,
VLAN tags, IPv4 options and fragments and IPv6 extension headers can be
tried.  Root only; every wait is bounded.
"""

import socket
import struct
import time
from contextlib import contextmanager
from pathlib import Path

import dns.name
import pytest

import dnsdiff
from conftest import xdp_unavailable

pytestmark = [
    pytest.mark.xdp,
    pytest.mark.asan,  # also against the AddressSanitizer build (bootstrap)
    pytest.mark.skipif(xdp_unavailable() is not None, reason=str(xdp_unavailable())),
]

DNS_PORT = 53
DROP_PORT = 5300
OTHER_PORT = 5301  # no action: the kernel's
COUNTER_TIMEOUT = 3.0  # seconds for a counter to move
SETTLE = 0.2  # seconds for a counter that must not move
UDP = 17
ZONE = Path(__file__).resolve().parent.parent / "zones" / "example.com.zone"


# ---- hand-made frames -------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _query(flags=0x0100) -> bytes:
    """A DNS message: header (ID 7, the given flags word, QDCOUNT 1) and a
    question; 0x0100 is a query with RD, 0x8180 a response, 0x2000 NOTIFY
    (opcode 4), 0x2800 UPDATE (opcode 5)."""
    return struct.pack("!HHHHHH", 7, flags, 1, 0, 0, 0) + b"\x07example\x00\x00\x01\x00\x01"


class Frames:
    """Ethernet frames from the client's end to the server's."""

    def __init__(self, topo, server_mac: bytes, client_mac: bytes):
        self.topo = topo
        self.dst_mac, self.src_mac = server_mac, client_mac
        self.src4 = socket.inet_aton(topo.client_v4)
        self.dst4 = socket.inet_aton(topo.server_v4)
        self.src6 = socket.inet_pton(socket.AF_INET6, topo.client_v6)
        self.dst6 = socket.inet_pton(socket.AF_INET6, topo.server_v6)

    def udp(self, payload, pseudo_src, pseudo_dst, dport=DNS_PORT, ipv6=False) -> bytes:
        length = 8 + len(payload)
        header = struct.pack("!HHHH", 40053, dport, length, 0)
        pseudo = (
            pseudo_src + pseudo_dst + struct.pack("!IxxxB", length, UDP)
            if ipv6
            else pseudo_src + pseudo_dst + struct.pack("!xBH", UDP, length)
        )
        return header[:6] + struct.pack("!H", _checksum(pseudo + header + payload)) + payload

    def ipv4(self, payload=None, dport=DNS_PORT, options=b"", frag_off=0) -> bytes:
        l4 = self.udp(_query() if payload is None else payload, self.src4, self.dst4, dport)
        ihl = 5 + len(options) // 4
        header = (
            struct.pack(
                "!BBHHHBBH4s4s",
                0x40 | ihl,
                0,
                ihl * 4 + len(l4),
                1,
                frag_off,
                64,
                UDP,
                0,
                self.src4,
                self.dst4,
            )
            + options
        )
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + l4

    def ipv6(self, payload=None, hop_by_hop=False) -> bytes:
        l4 = self.udp(_query() if payload is None else payload, self.src6, self.dst6, ipv6=True)
        ext = bytes([UDP, 0, 1, 4, 0, 0, 0, 0]) if hop_by_hop else b""  # PadN
        next_header = 0 if hop_by_hop else UDP
        return (
            struct.pack(
                "!IHBB16s16s", 0x60000000, len(ext) + len(l4), next_header, 64, self.src6, self.dst6
            )
            + ext
            + l4
        )

    def ether(self, ethertype, payload, vlans=()) -> bytes:
        """vlans: the TPIDs of the tags, outermost first."""
        tags = b""
        types = list(vlans) + [ethertype]
        for i, tpid in enumerate(vlans):
            tags += struct.pack("!HH", 10 + i, types[i + 1])  # TCI (VLAN id), next type
        first = vlans[0] if vlans else ethertype
        frame = self.dst_mac + self.src_mac + struct.pack("!H", first) + tags + payload
        return frame + b"\0" * max(0, 60 - len(frame))  # Ethernet's minimum, padded

    def send(self, frame: bytes) -> None:
        with self.topo.client.entered():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            s.bind((self.topo.client_if, 0))
            s.send(frame)
        finally:
            s.close()


def _mac(ns, ifname) -> bytes:
    text = ns.run("cat", f"/sys/class/net/{ifname}/address").stdout.strip()
    return bytes.fromhex(text.replace(":", ""))


# ---- the engine with XDP on the server's end ------------------------------------------


@contextmanager
def _xdp_engine(topo, **config):
    from xdpdns.config import XdpConfig
    from xdpdns.engine import Engine, ImageBuilder

    xdp_config = XdpConfig(
        interface=topo.server_if, hugepages="off", frames_per_queue=2048, ring_size=1024, **config
    )
    with Engine() as engine, ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(dns.name.from_text("example.com.")), ZONE)
        engine.set_image(builder.finish())
        with topo.server.entered():
            engine.xdp_start(xdp_config)
        try:
            engine.xdp_set_port(DNS_PORT, "redirect")
            engine.xdp_set_port(DROP_PORT, "drop")
            yield engine
        finally:
            engine.xdp_stop()


@pytest.fixture
def xdp_engine(xdp_topology):
    with _xdp_engine(xdp_topology) as engine:
        yield engine
    assert xdp_topology.xdp_attached() is None


@pytest.fixture
def frames(xdp_topology):
    topo = xdp_topology
    return Frames(topo, _mac(topo.server, topo.server_if), _mac(topo.client, topo.client_if))


@pytest.fixture
def kernel_listener(xdp_topology):
    """UDP sockets on port 53 of the server namespace (IPv4 and IPv6): what
    the program passes for port 53 reaches them."""
    topo = xdp_topology
    socks = []
    with topo.server.entered():
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(s)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, DNS_PORT))
            s.settimeout(COUNTER_TIMEOUT)
    yield socks
    for s in socks:
        s.close()


def _wait_moved(engine, before, counter, timeout=COUNTER_TIMEOUT):
    """The program's summed counters once `counter` has moved past before's."""
    deadline = time.monotonic() + timeout
    while True:
        now = engine.xdp_prog_stats()
        if getattr(now, counter) > getattr(before, counter) or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


def _delta(before, after):
    return {
        name: getattr(after, name) - getattr(before, name)
        for name in ("seen", "redirected", "passed", "dropped", "denied", "malformed")
    }


# ---- one frame, one verdict ----------------------------------------------------------------


def _eth_ipv4(f, **kw):
    return f.ether(0x0800, f.ipv4(**kw))


# (case, frame builder, the counter that must move).  Only frames that are
# redirected move `redirected`, only cut-short headers move `malformed`.
FRAMES = [
    ("ipv4 query", _eth_ipv4, "redirected"),
    ("ipv6 query", lambda f: f.ether(0x86DD, f.ipv6()), "redirected"),
    ("ipv4 with options", lambda f: _eth_ipv4(f, options=b"\x01\x01\x01\x00"), "redirected"),
    ("802.1Q tag", lambda f: f.ether(0x0800, f.ipv4(), vlans=(0x8100,)), "redirected"),
    (
        "802.1ad + 802.1Q tags",
        lambda f: f.ether(0x0800, f.ipv4(), vlans=(0x88A8, 0x8100)),
        "redirected",
    ),
    ("three tags", lambda f: f.ether(0x0800, f.ipv4(), vlans=(0x88A8, 0x8100, 0x8100)), "passed"),
    ("ipv4 fragment, MF", lambda f: _eth_ipv4(f, frag_off=0x2000), "passed"),
    ("ipv4 fragment, offset", lambda f: _eth_ipv4(f, frag_off=0x0010), "passed"),
    ("ipv6 hop-by-hop header", lambda f: f.ether(0x86DD, f.ipv6(hop_by_hop=True)), "passed"),
    ("payload shorter than a DNS header", lambda f: _eth_ipv4(f, payload=b"\1\2\3\4\5"), "passed"),
    ("response", lambda f: _eth_ipv4(f, payload=_query(0x8180)), "passed"),
    ("NOTIFY", lambda f: _eth_ipv4(f, payload=_query(0x2000)), "passed"),
    ("UPDATE", lambda f: _eth_ipv4(f, payload=_query(0x2800)), "passed"),
    ("port without an action", lambda f: _eth_ipv4(f, dport=OTHER_PORT), "passed"),
    ("DROP port", lambda f: _eth_ipv4(f, dport=DROP_PORT), "dropped"),
    (
        "ipv4 header cut short",
        lambda f: f.dst_mac + f.src_mac + b"\x08\x00" + f.ipv4()[:10],
        "malformed",
    ),
    (
        "udp header cut short",
        lambda f: f.dst_mac + f.src_mac + b"\x08\x00" + f.ipv4()[:24],
        "malformed",
    ),
    (
        "dns header cut short",
        lambda f: f.dst_mac + f.src_mac + b"\x08\x00" + f.ipv4()[:34],
        "malformed",
    ),
]


@pytest.mark.parametrize("case, build, counter", FRAMES, ids=[c[0] for c in FRAMES])
def test_frame_verdict(xdp_engine, frames, case, build, counter):
    before = xdp_engine.xdp_prog_stats()
    frames.send(build(frames))
    after = _wait_moved(xdp_engine, before, counter)
    time.sleep(SETTLE)
    delta = _delta(before, xdp_engine.xdp_prog_stats())
    # Other traffic (neighbour discovery) may be passed meanwhile, but
    # nothing else is redirected, dropped or malformed.
    if counter == "passed":
        assert after.passed > before.passed, (case, delta)
    else:
        assert getattr(after, counter) == getattr(before, counter) + 1, (case, delta)
    for other in ("redirected", "dropped", "denied", "malformed"):
        if other != counter:
            assert delta[other] == 0, (case, delta)
    if counter == "malformed":
        assert delta["passed"] >= 1, (case, delta)  # malformed frames are passed


@pytest.mark.parametrize(
    "flags, what", [(0x8180, "response"), (0x2000, "NOTIFY"), (0x2800, "UPDATE")]
)
def test_non_queries_reach_the_kernel(xdp_engine, xdp_topology, kernel_listener, flags, what):
    """What the engine does not answer on the fast path reaches the socket
    listener unchanged (no operation is lost because it came over XDP)."""
    topo = xdp_topology
    message = _query(flags)
    with topo.client.entered():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.sendto(message, (topo.server_v4, DNS_PORT))
    data, _ = kernel_listener[0].recvfrom(4096)
    assert data == message, what


def test_queue_without_socket_falls_back_to_the_kernel(xdp_topology, kernel_listener):
    """With a worker on queue 0 only, queries arriving on queue 1 go to the
    kernel's socket instead of vanishing: redirect falls back to XDP_PASS.
    (A name that does not exist: the answer table never holds NXDOMAIN.)"""
    topo = xdp_topology
    wire = dnsdiff.make_query("nothere.example.com.", "A", qid=1).to_wire()
    with _xdp_engine(topo, queues=1) as engine:
        before = engine.xdp_prog_stats()
        with topo.client.entered():
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
        try:
            for s in socks:  # distinct source ports: flows on both queues
                s.sendto(wire, (topo.server_v4, DNS_PORT))
            kernel_got = 0
            kernel_listener[0].settimeout(1.0)
            try:
                while True:
                    kernel_listener[0].recvfrom(4096)
                    kernel_got += 1
            except TimeoutError:
                pass
        finally:
            for s in socks:
                s.close()
        delta = _delta(before, engine.xdp_prog_stats())
    assert kernel_got > 0, delta
    assert delta["redirected"] > 0, delta
    assert delta["redirected"] + kernel_got == len(socks), (kernel_got, delta)


def test_destination_addresses(xdp_engine, frames, xdp_topology):
    """With addresses added, only queries to them are redirected."""
    topo = xdp_topology
    xdp_engine.xdp_add_address(topo.server_v4)
    other = Frames(topo, frames.dst_mac, frames.src_mac)
    other.dst4 = socket.inet_aton("198.18.0.9")  # not ours
    cases = [
        (frames.ether(0x0800, frames.ipv4()), "redirected"),
        (other.ether(0x0800, other.ipv4()), "passed"),
        (frames.ether(0x86DD, frames.ipv6()), "passed"),
    ]
    for frame, counter in cases:
        before = xdp_engine.xdp_prog_stats()
        frames.send(frame)
        _wait_moved(xdp_engine, before, counter)
        time.sleep(SETTLE)
        delta = _delta(before, xdp_engine.xdp_prog_stats())
        assert delta["redirected"] == (counter == "redirected"), (counter, delta)
    xdp_engine.xdp_add_address(topo.server_v6)
    before = xdp_engine.xdp_prog_stats()
    frames.send(frames.ether(0x86DD, frames.ipv6()))
    assert _wait_moved(xdp_engine, before, "redirected").redirected == before.redirected + 1


def test_counters_per_cpu_add_up(xdp_engine, frames):
    """On every CPU each packet seen is counted once as redirected, passed,
    dropped or denied (malformed ones among the passed)."""
    for build in (_eth_ipv4, lambda f: _eth_ipv4(f, dport=DROP_PORT)):
        frames.send(build(frames))
    time.sleep(SETTLE)
    per_cpu = xdp_engine.xdp_prog_stats_per_cpu()
    for c in per_cpu:
        assert c.seen == c.redirected + c.passed + c.dropped + c.denied, c
        assert c.malformed <= c.passed, c
    assert sum(c.redirected for c in per_cpu) >= 1
    assert sum(c.dropped for c in per_cpu) >= 1


def test_second_loader_is_refused(xdp_engine, xdp_topology):
    """An interface that already has an XDP program (here: ours) is left
    alone, with the program's id in the message."""
    from xdpdns.config import XdpConfig
    from xdpdns.engine import Engine

    topo = xdp_topology
    with Engine() as second:
        with topo.server.entered(), pytest.raises(OSError) as info:
            second.xdp_start(XdpConfig(interface=topo.server_if, hugepages="off"))
    assert "already attached" in str(info.value) and "id " in str(info.value), info.value
