"""xdpdns's AF_XDP load generator (native/bench/xdpgen.c, bench.loadgen.LoadGenerator)
against `xdpdns serve --xdp` over the two-queue veth of tests/netns.py.

The generator runs in this process, inside the client namespace: a thread
that has entered a namespace creates its sockets and XDP link there, and
the generator's threads are born in it.  Root only, like the other XDP
tests; the argument checks at the end run anywhere.
"""

import json
import subprocess
import time

import dns.message
import dns.query
import dns.rcode
import pytest

from xdpdns.bench.loadgen import LoadGenerator

pytestmark = [pytest.mark.xdp, pytest.mark.asan]

# In turn: an answer, a referral-free NODATA, an NXDOMAIN (tests/data/diff).
QUERIES = [("www.example.com.", "A"), ("www.example.com.", "MX"), ("nothere.example.com.", "A")]
RATE = 20000  # queries/s over both queues: far below what either side can do
DURATION = 1.0


def _mac(ns, ifname):
    out = ns.run("ip", "-j", "link", "show", "dev", ifname).stdout
    return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))


def _wires(queries=QUERIES):
    return [dns.message.make_query(name, rtype).to_wire() for name, rtype in queries]


def _generate(topo, family=4, **kwargs):
    src, dst = (topo.client_v4, topo.server_v4) if family == 4 else (topo.client_v6, topo.server_v6)
    args = dict(
        interface=topo.client_if,
        queries=_wires(),
        src_mac=_mac(topo.client, topo.client_if),
        dst_mac=_mac(topo.server, topo.server_if),
        src_addr=src,
        dst_addr=dst,
        rate=RATE,
        duration=DURATION,
        drain=0.5,
        frames=4096,
        ring=1024,
    )
    args.update(kwargs)
    with topo.client.entered():
        gen = LoadGenerator(**args)
    with gen:
        gen.wait()
        return gen.queue_stats()


@pytest.fixture(autouse=True)
def _generator_owns_the_client(request):
    """The generator attaches its own program to the client's end: the
    session topology's XDP_PASS program steps aside meanwhile."""
    if "xdp_topology" not in request.fixturenames:
        yield
        return
    import netns

    with netns.without_client_program(request.getfixturevalue("xdp_topology")):
        yield


def _client_xdp(topo):
    out = topo.client.run("ip", "-d", "link", "show", "dev", topo.client_if).stdout
    return "prog/xdp" in out


@pytest.mark.parametrize("family", [4, 6])
def test_generator_loads_both_queues_and_counts_answers(xdp_topology, xdp_serve, family):
    server = xdp_serve()
    stats = _generate(xdp_topology, family)
    assert [s.queue for s in stats] == [0, 1]
    sent = sum(s.sent for s in stats)
    answered = sum(s.answered for s in stats)
    # The rate holds: never above it; below it only by what a busy machine
    # costs the threads' start.
    assert RATE * DURATION * 0.6 <= sent <= RATE * DURATION * 1.05, stats
    for s in stats:
        assert s.sent > 0 and s.answered > 0, f"queue {s.queue} idle: {s}"
        assert s.unexpected == 0 and s.malformed == 0 and s.bad_checksum == 0
        assert sum(s.latency) == s.answered
        # Only NOERROR and NXDOMAIN come back; a third of the queries ask
        # for a name that is not there.
        assert s.rcodes[dns.rcode.NOERROR] + s.rcodes[dns.rcode.NXDOMAIN] == s.answered
    assert answered >= sent * 0.97, stats
    nx = sum(s.rcodes[dns.rcode.NXDOMAIN] for s in stats)
    assert abs(nx - answered / 3) <= answered * 0.02 + 2
    # The server saw the same queries on the same queues, with checksums it
    # accepted: generator queue i is server queue i on a veth.  Its program
    # answered the names its table holds, its workers the NXDOMAINs (and
    # nothing else was answered twice).
    xdp = server.stats()["xdp"]
    for s, q in zip(stats, xdp["queues"]):
        assert q["bad_checksum"] == 0 and q["malformed"] == 0
        assert q["answered"] >= s.rcodes[dns.rcode.NXDOMAIN]
    in_xdp = xdp["program"]["answered_in_xdp"]
    assert in_xdp >= answered - nx
    assert in_xdp + sum(q["answered"] for q in xdp["queues"]) >= answered
    # Closing it detached the generator's program from the client's end.
    assert not _client_xdp(xdp_topology)


def test_generator_unlimited_rate_stops_on_time(xdp_topology, xdp_serve):
    xdp_serve()
    start = time.monotonic()
    stats = _generate(xdp_topology, rate=0, duration=0.5, drain=0.2)
    assert time.monotonic() - start < 5
    assert sum(s.sent for s in stats) > 0
    assert all(s.answered > 0 for s in stats)


def test_a_flood_loses_no_frame_and_the_queues_recover(xdp_topology, xdp_serve, tmp_path):
    # Rings of 64 overflow within microseconds of a flood at full speed:
    # the kernel drops what finds no room, the workers answer what they
    # can, no frame leaks, and once the flood is over they answer again.
    config = tmp_path / "small-rings.toml"
    config.write_text("[xdp]\nring_size = 64\nframes_per_queue = 128\n")
    server = xdp_serve("--config", config)
    stats = _generate(xdp_topology, rate=0, duration=1.0, drain=0.2)
    assert all(s.answered > 0 for s in stats)
    xdp = server.stats()["xdp"]
    for q in xdp["queues"]:
        assert (
            q["frames_fill"] + q["frames_rx"] + q["frames_tx"] + q["frames_free"]
            == q["frames_total"]
        )
    # The workers answer again (a name not there: theirs, not the answer
    # table's, whose XDP_TX answers this client's end takes only with a
    # program on it, and the generator's was just taken off).
    with xdp_topology.client.entered():
        reply = dns.query.udp(
            dns.message.make_query("nothere.example.com.", "A"), xdp_topology.server_v4, timeout=2.0
        )
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_generator_refuses_an_interface_with_a_program(xdp_topology):
    with xdp_topology.client.entered():
        first = LoadGenerator(
            interface=xdp_topology.client_if,
            queries=_wires(),
            src_mac=b"\x02" * 6,
            dst_mac=b"\x02" * 6,
            src_addr=xdp_topology.client_v4,
            dst_addr=xdp_topology.server_v4,
            rate=100,
            duration=5,
        )
        try:
            with pytest.raises(OSError, match="already attached"):
                LoadGenerator(
                    interface=xdp_topology.client_if,
                    queries=_wires(),
                    src_mac=b"\x02" * 6,
                    dst_mac=b"\x02" * 6,
                    src_addr=xdp_topology.client_v4,
                    dst_addr=xdp_topology.server_v4,
                    rate=100,
                    duration=5,
                )
        finally:
            first.stop()
            first.close()
    assert not _client_xdp(xdp_topology)


# ---- arguments: no root needed -------------------------------------------------

ARGS = dict(
    queries=[dns.message.make_query("example.com.", "A").to_wire()],
    src_mac=b"\x02" * 6,
    dst_mac=b"\x02" * 6,
    src_addr="198.18.0.2",
    dst_addr="198.18.0.1",
)


def test_no_such_interface():
    with pytest.raises(OSError, match="no such interface: xdpgen-none"):
        LoadGenerator(interface="xdpgen-none", **ARGS)


def test_a_query_too_short_is_named():
    args = dict(ARGS, queries=[ARGS["queries"][0], b"\x00\x01"])
    with pytest.raises(OSError, match="query 2: 2 bytes"):
        LoadGenerator(interface="lo", **args)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dst_addr="2001:2::1"), "two families"),
        (dict(src_mac=b"\x02"), "6 bytes"),
        (dict(queries=[]), "no queries"),
    ],
)
def test_bad_arguments(change, message):
    with pytest.raises(ValueError, match=message):
        LoadGenerator(interface="lo", **dict(ARGS, **change))


# ---- where it lives -------------------------------------------------------------


def _symbols(module):
    out = subprocess.run(["nm", module.__file__], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}


def test_the_servers_extension_holds_no_generator_code():
    """The generator is its own extension (xdpdns.bench._loadgen): none of
    its code or API is in the server's."""
    import xdpdns._engine
    import xdpdns.bench._loadgen

    server = _symbols(xdpdns._engine)
    assert not {s for s in server if "xd_gen" in s}
    assert "xd_gen_start" in _symbols(xdpdns.bench._loadgen)
