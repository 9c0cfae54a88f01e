"""The resolver hook (xdpdns/resolver.py): names that plugins claim are
compiled into the image, deferred by the workers and the TCP listener to
the plugin's resolve hook, answered from the cache when they may be, and
answered SERVFAIL when the hook is slow, fails, or cannot keep up, while
the other names are answered on the fast path all along."""

import concurrent.futures
import json
import socket
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from xdpdns.config import ConfigError, load_config
from xdpdns.engine import DEFERRED, RESOLVER_AA, Engine
from xdpdns.hookspecs import Answer, Claim, ResolverQuery, parse_question
from xdpdns.image import compile_sources
from xdpdns.plugins import load_plugins
from xdpdns.resolver import Resolver, collect_claims, numbered_claims

ZONES = Path(__file__).resolve().parent.parent / "zones"
WHOAMI = "whoami.example.com."

# A third-party resolver plugin for the tests: slow.test. sleeps, boom.test.
# raises, cached.test. answers an A record with TTL 60 and counts its calls
# in a file; found through its own entry point (a dist-info beside it).
TEST_PLUGIN = """
import time
from pathlib import Path
import dns.message, dns.name, dns.rrset
from xdpdns.hookspecs import Answer, Claim, ConfigSection, hookimpl
from xdpdns.config import parse_table
from dataclasses import dataclass

@dataclass(frozen=True)
class Conf:
    calls: str = ""
    sleep: float = 3.0

@hookimpl
def config_sections():
    return [ConfigSection("restest", lambda t, w: parse_table(Conf, t, w))]

@hookimpl
def resolver_claims(config):
    return [Claim(dns.name.from_text(n))
            for n in ("slow.test.", "boom.test.", "cached.test.", "fast.test.", "big.test.")]

@hookimpl
def resolve(queries):
    conf = CONF[0]
    with open(conf.calls, "a") as f:
        f.write(" ".join(str(q.message.question[0].name) for q in queries) + "\\n")
    out = []
    for q in queries:
        name = q.message.question[0].name.to_text().lower()
        if name == "boom.test.":
            raise RuntimeError("boom")
        if name == "slow.test.":
            time.sleep(conf.sleep)
        if q.qname == b"\\x04fast\\x04test\\x00":  # the fast form, cached for 60 s
            out.append(Answer(((1, 60, bytes((198, 18, 0, 78))),)))
            continue
        if q.qname == b"\\x03big\\x04test\\x00":  # larger than any UDP response
            out.append(Answer(tuple((16, 60, bytes((250,)) + bytes([97 + i]) * 250)
                                    for i in range(6))))
            continue
        r = dns.message.make_response(q.message)
        r.answer.append(dns.rrset.from_text(q.message.question[0].name, 60, "IN", "A",
                                            "198.18.0.77"))
        out.append(r)
    return out

CONF = []

@hookimpl
def startup(server):
    CONF.append(server.config.plugins["restest"])
"""


@pytest.fixture
def restest_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "restest_plugin.py").write_text(TEST_PLUGIN)
    dist = site / "restest_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: restest-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[xdpdns]\nrestest = restest_plugin\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    return tmp_path / "calls.txt"


def _config(tmp_path, text):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        f'[[zone]]\nfile = "{ZONES / "example.com.zone"}"\n'
        f'[plugins.whoami]\nname = "{WHOAMI}"\n' + text
    )
    return conf


def udp(qname, qtype, host, port, timeout=5):
    return dns.query.udp(dns.message.make_query(qname, qtype), host, port=port, timeout=timeout)


def tcp(qname, qtype, host, port, timeout=5):
    return dns.query.tcp(dns.message.make_query(qname, qtype), host, port=port, timeout=timeout)


def answer_text(response):
    return [
        (r.name.to_text(), dns.rdatatype.to_text(r.rdtype), r.ttl, [d.to_text() for d in r])
        for r in response.answer
    ]


# ---- claims in the image -------------------------------------------------------------


def test_claims_are_compiled_into_the_image(tmp_path):
    conf = _config(tmp_path, "")
    pm = load_plugins()
    config = load_config(pm, conf)
    claims = collect_claims(pm, config)
    assert claims == [("whoami", Claim(dns.name.from_text(WHOAMI)))]
    result = compile_sources([], None, (), numbered_claims(claims))
    assert result.image.info.overrides == 1
    query = dns.message.make_query(WHOAMI, "A").to_wire()
    # Without a resolver to defer to: SERVFAIL, never a wrong answer.
    assert dns.message.from_wire(result.image.answer(query)).rcode() == dns.rcode.SERVFAIL
    with Engine() as engine:
        engine.set_image(result.image)
        assert engine.answer(query, defer=True) is DEFERRED
        assert dns.message.from_wire(engine.answer(query)).rcode() == dns.rcode.SERVFAIL
        # Other names are not deferred.
        other = dns.message.make_query("other.example.com.", "A").to_wire()
        assert engine.answer(other, defer=True) is not DEFERRED


def test_whoami_without_a_name_claims_nothing(tmp_path):
    pm = load_plugins()
    config = load_config(pm)
    assert collect_claims(pm, config) == []


def test_resolver_config_errors(tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text("[resolver]\nring_size = 1000\n")
    with pytest.raises(ConfigError, match="ring_size"):
        load_config(load_plugins(), conf)


def test_cache_answers_on_the_fast_path(tmp_path):
    name = dns.name.from_text("cached.test.")
    result = compile_sources([], None, (), [(0, Claim(name))])
    query = dns.message.make_query("CaChEd.test.", "A", use_edns=0)
    with Engine() as engine:
        engine.set_image(result.image)
        engine.resolver_start(4, 16, 1, 1.0)
        response = dns.message.make_response(dns.message.make_query("cached.test.", "A"))
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "198.18.0.77"))
        wire = response.to_wire()
        engine.resolver_cache(name, 1, 1, wire, 12 + len(name.to_wire()) + 4, 60)
        got = dns.message.from_wire(engine.answer(query.to_wire(), defer=True))
    assert got.id == query.id
    assert got.question[0].name.to_text() == "CaChEd.test."  # the client's case
    assert answer_text(got) == [("CaChEd.test.", "A", 60, ["198.18.0.77"])]
    assert got.edns == 0  # the core's own OPT
    # Counted down, as a cache does: 25 s later the record has 35 s left.
    with Engine() as engine:
        engine.set_image(compile_sources([], None, (), [(0, Claim(name))]).image)
        engine.resolver_start(4, 16, 1, 1.0)
        now = int(time.time())
        engine.resolver_cache(name, 1, 1, wire, 12 + len(name.to_wire()) + 4, 60)
        later = dns.message.from_wire(engine.answer(query.to_wire(), defer=True, now=now + 25))
        assert answer_text(later) == [("CaChEd.test.", "A", 35, ["198.18.0.77"])]
        assert engine.answer(query.to_wire(), defer=True, now=now + 61) is DEFERRED


# ---- a server --------------------------------------------------------------------------


def test_whoami_over_udp_and_tcp(xdpdns_serve, tmp_path):
    server = xdpdns_serve(
        "--config", _config(tmp_path, ""), "--listen", "127.0.0.1:0", "--listen", "[::1]:0"
    )
    (h4, p4), (h6, p6) = server.addresses
    assert answer_text(udp(WHOAMI, "A", h4, p4)) == [(WHOAMI, "A", 0, ["127.0.0.1"])]
    assert answer_text(udp(WHOAMI, "AAAA", h6, p6)) == [(WHOAMI, "AAAA", 0, ["::1"])]
    (txt,) = udp(WHOAMI, "TXT", h4, p4).answer
    address, port = txt[0].strings[0].decode().split()
    assert address == "127.0.0.1" and 0 < int(port) < 65536
    assert answer_text(tcp(WHOAMI, "A", h4, p4)) == [(WHOAMI, "A", 0, ["127.0.0.1"])]
    assert answer_text(tcp(WHOAMI, "AAAA", h6, p6)) == [(WHOAMI, "AAAA", 0, ["::1"])]
    # Not cached (TTL 0): every query reaches the hook.
    for _ in range(3):
        assert answer_text(udp(WHOAMI, "A", h4, p4)) == [(WHOAMI, "A", 0, ["127.0.0.1"])]
    assert udp("www.example.com.", "A", h4, p4).answer


def test_slow_hook_gets_servfail_and_the_rest_goes_on(xdpdns_serve, tmp_path, restest_plugin):
    conf = _config(
        tmp_path, f'[resolver]\ntimeout = 0.5\n[plugins.restest]\ncalls = "{restest_plugin}"\n'
    )
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        slow = pool.submit(udp, "slow.test.", "A", host, port)
        time.sleep(0.1)
        # Meanwhile: the fast path, and another plugin's name.
        for _ in range(20):
            t = time.monotonic()
            assert udp("www.example.com.", "A", host, port).answer
            assert time.monotonic() - t < 0.2
        assert answer_text(udp(WHOAMI, "A", host, port)) == [(WHOAMI, "A", 0, ["127.0.0.1"])]
        assert slow.result().rcode() == dns.rcode.SERVFAIL
        assert 0.4 < time.monotonic() - start < 2.5
    assert tcp("slow.test.", "A", host, port).rcode() == dns.rcode.SERVFAIL
    # Logged when the hook returns at last, after its queries expired.
    deadline = time.monotonic() + 5
    while "no answer within 0.5s" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "no answer within 0.5s" in server.output()


def test_raising_hook_gets_servfail(xdpdns_serve, tmp_path, restest_plugin):
    conf = _config(tmp_path, f'[plugins.restest]\ncalls = "{restest_plugin}"\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    t = time.monotonic()
    assert udp("boom.test.", "A", host, port).rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - t < 0.5  # at once, not after the timeout
    assert tcp("boom.test.", "A", host, port).rcode() == dns.rcode.SERVFAIL
    assert "RuntimeError: boom" in server.output()


def test_cache_answers_without_calling_the_hook(xdpdns_serve, tmp_path, restest_plugin):
    conf = _config(tmp_path, f'[plugins.restest]\ncalls = "{restest_plugin}"\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    first = udp("cached.test.", "A", host, port)
    assert answer_text(first) == [("cached.test.", "A", 60, ["198.18.0.77"])]
    query = dns.message.make_query("CACHED.test.", "A")
    for via in (dns.query.udp, dns.query.tcp):
        again = via(query, host, port=port, timeout=5)
        assert again.id == query.id
        assert answer_text(again) == [("CACHED.test.", "A", 60, ["198.18.0.77"])]
    assert restest_plugin.read_text().splitlines() == ["cached.test."]


def test_full_ring_gets_servfail_at_once(xdpdns_serve, xdpdns_cli, tmp_path, restest_plugin):
    conf = _config(
        tmp_path,
        f"[resolver]\ntimeout = 2\nring_size = 1\n"
        f'[plugins.restest]\ncalls = "{restest_plugin}"\nsleep = 1.5\n',
    )
    server = xdpdns_serve(
        "--config",
        conf,
        "--listen",
        "127.0.0.1:0",
        "--udp-workers",
        "1",
        "--control-socket",
        tmp_path / "c.sock",
    )
    host, port = server.addresses[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    queries = [dns.message.make_query("slow.test.", "A") for _ in range(10)]
    start = time.monotonic()
    for q in queries:
        sock.sendto(q.to_wire(), (host, port))
    fast = []
    for _ in range(len(queries)):
        response = dns.message.from_wire(sock.recv(4096))
        fast.append((time.monotonic() - start, response.rcode()))
    sock.close()
    # One in the hook, one on the ring; the rest SERVFAIL without waiting.
    quick = [rc for t, rc in fast if t < 1.0]
    assert len(quick) >= 7 and set(quick) == {dns.rcode.SERVFAIL}
    result = xdpdns_cli("stats", "--control-socket", tmp_path / "c.sock", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["udp"]["resolver_full"] >= 7


def test_queries_a_hung_hook_never_took_fill_its_ring(
    xdpdns_serve, xdpdns_cli, tmp_path, restest_plugin
):
    """A hook that hangs leaves its queries' handles on its ring after the
    worker answered them SERVFAIL at their deadline; once the ring holds
    ring_size of them, new queries for that hook get SERVFAIL at once
    instead of waiting for a deadline, and the stats table says so."""
    conf = _config(
        tmp_path,
        f"[resolver]\ntimeout = 0.2\nring_size = 2\n"
        f'[plugins.restest]\ncalls = "{restest_plugin}"\nsleep = 2.0\n',
    )
    control = tmp_path / "c.sock"
    server = xdpdns_serve(
        "--config",
        conf,
        "--listen",
        "127.0.0.1:0",
        "--udp-workers",
        "1",
        "--control-socket",
        control,
    )
    host, port = server.addresses[0]

    def timed(qname):
        start = time.monotonic()
        response = udp(qname, "A", host, port)
        return response.rcode(), time.monotonic() - start

    start = time.monotonic()
    first = timed("slow.test.")  # taken by the hook, which now sleeps 2 s
    assert first[0] == dns.rcode.SERVFAIL and 0.15 < first[1] < 1.0
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        waiting = list(pool.map(timed, ["slow.test.", "slow.test."]))
    # Deferred, never taken, SERVFAIL at the deadline: their handles stay.
    assert all(rc == dns.rcode.SERVFAIL and 0.15 < t < 1.0 for rc, t in waiting), waiting
    rc, took = timed("slow.test.")
    assert rc == dns.rcode.SERVFAIL and took < 0.15, (rc, took)
    # The fast path and the static zone never waited.
    assert udp("www.example.com.", "A", host, port).answer
    stats = json.loads(xdpdns_cli("stats", "--control-socket", control, "--json").stdout)
    assert stats["udp"]["resolver_expired"] == 3
    assert stats["udp"]["resolver_full"] == 1
    table = xdpdns_cli("stats", "--control-socket", control).stdout
    assert "resolver hook: deferred queries" in table
    assert "resolver hook: the plugins' threads" in table
    # Back from its sleep, the hook is not handed the queries that expired
    # while it slept: nobody waits for their answers.
    time.sleep(max(0.0, start + 2.3 - time.monotonic()))
    assert answer_text(udp("fast.test.", "A", host, port)) == [
        ("fast.test.", "A", 60, ["198.18.0.78"])
    ]
    assert restest_plugin.read_text().splitlines() == ["slow.test.", "fast.test."]


def test_answer_too_large_for_udp_is_truncated_never_cached_empty(
    xdpdns_serve, tmp_path, restest_plugin
):
    """Six 251-byte TXT records: TC over UDP, every time (never a cached
    answer without its records), the whole answer over TCP."""
    conf = _config(tmp_path, f'[plugins.restest]\ncalls = "{restest_plugin}"\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    for _ in range(2):
        got = udp("big.test.", "TXT", host, port)
        assert got.flags & dns.flags.TC and not got.answer
    full = tcp("big.test.", "TXT", host, port)
    assert len(full.answer) == 1 and len(full.answer[0]) == 6


def test_a_tcp_timeout_does_not_end_the_hook_thread(xdpdns_serve, tmp_path, restest_plugin):
    """The listener stops waiting at the timeout; the hook's late answer
    finds nobody waiting, and its thread goes on answering."""
    conf = _config(
        tmp_path,
        f'[resolver]\ntimeout = 0.3\n[plugins.restest]\ncalls = "{restest_plugin}"\nsleep = 0.8\n',
    )
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    start = time.monotonic()
    assert tcp("slow.test.", "A", host, port).rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - start < 0.7
    time.sleep(max(0.0, start + 1.0 - time.monotonic()))
    for via in (udp, tcp):
        assert answer_text(via("fast.test.", "A", host, port)) == [
            ("fast.test.", "A", 60, ["198.18.0.78"])
        ]
    assert "Traceback" not in server.output()


def test_fast_answer_is_cached_and_answered_on_the_fast_path(
    xdpdns_serve, tmp_path, restest_plugin
):
    conf = _config(tmp_path, f'[plugins.restest]\ncalls = "{restest_plugin}"\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    assert answer_text(udp("fast.test.", "A", host, port)) == [
        ("fast.test.", "A", 60, ["198.18.0.78"])
    ]
    for via in (dns.query.udp, dns.query.tcp):
        query = dns.message.make_query("FAST.test.", "A")
        again = via(query, host, port=port, timeout=5)
        assert again.id == query.id
        assert answer_text(again) == [("FAST.test.", "A", 60, ["198.18.0.78"])]
    assert answer_text(tcp("fast.test.", "TXT", host, port)) == [
        ("fast.test.", "A", 60, ["198.18.0.78"])
    ]  # what the plugin says, over TCP too
    assert restest_plugin.read_text().splitlines() == ["fast.test.", "fast.test."]


# ---- the fast form: Answer, made into a response by the engine ---------------------------

FAST = dns.name.from_text("fast.test.")


@pytest.fixture
def engine():
    result = compile_sources([], None, (), [(0, Claim(FAST))])
    with Engine() as engine:
        engine.set_image(result.image)
        engine.resolver_start(4, 16, 1, 1.0)
        yield engine


def build(engine, query, answer, cache_ttl=0, tcp=False):
    """The response (parsed) to query for answer, and whether it was cached."""
    header = (RESOLVER_AA if answer.aa else 0) | answer.rcode
    wire, cached = engine.resolver_build(
        query.to_wire(), answer.packed, header, cache_ttl, tcp=tcp, client="192.0.2.1"
    )
    return dns.message.from_wire(wire), cached


def A(address, ttl=300):
    return (1, ttl, socket.inet_pton(socket.AF_INET, address))


def test_answer_a_echoes_id_rd_and_the_question_as_asked(engine):
    query = dns.message.make_query("FaSt.TEST.", "A")
    query.flags &= ~dns.flags.RD
    got, cached = build(engine, query, Answer([A("192.0.2.7")]))
    assert got.id == query.id and not cached
    assert got.flags & dns.flags.QR and got.flags & dns.flags.AA
    assert not got.flags & (dns.flags.RD | dns.flags.TC)
    assert got.rcode() == dns.rcode.NOERROR
    assert got.question[0].name.to_text() == "FaSt.TEST."  # the client's case
    assert answer_text(got) == [("FaSt.TEST.", "A", 300, ["192.0.2.7"])]
    assert got.edns == -1  # no OPT to a query without one
    query.flags |= dns.flags.RD
    got, _ = build(engine, query, Answer([A("192.0.2.7")], aa=False))
    assert got.flags & dns.flags.RD and not got.flags & dns.flags.AA


def test_answer_aaaa_txt_and_several_records(engine):
    query = dns.message.make_query("fast.test.", "AAAA")
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    got, _ = build(engine, query, Answer([(28, 30, six)]))
    assert answer_text(got) == [("fast.test.", "AAAA", 30, ["2001:db8::7"])]
    txt = b"\x05hello\x05world"
    got, _ = build(engine, dns.message.make_query("fast.test.", "TXT"), Answer([(16, 10, txt)]))
    assert answer_text(got) == [("fast.test.", "TXT", 10, ['"hello" "world"'])]
    got, _ = build(
        engine,
        dns.message.make_query("fast.test.", "ANY"),
        Answer([A("192.0.2.1"), A("192.0.2.2"), (16, 300, b"\x02hi"), (28, 300, six)]),
    )
    assert sorted(answer_text(got)) == [
        ("fast.test.", "A", 300, ["192.0.2.1", "192.0.2.2"]),
        ("fast.test.", "AAAA", 300, ["2001:db8::7"]),
        ("fast.test.", "TXT", 300, ['"hi"']),
    ]


def test_answer_rcode_without_records(engine):
    got, cached = build(
        engine,
        dns.message.make_query("fast.test.", "A"),
        Answer(rcode=dns.rcode.NXDOMAIN),
        cache_ttl=60,
    )
    assert got.rcode() == dns.rcode.NXDOMAIN and got.flags & dns.flags.AA
    assert not got.answer and not cached  # nothing to cache: no records, no SOA


def test_answer_truncated_when_it_does_not_fit(engine):
    records = [A(f"192.0.2.{i}") for i in range(40)]  # 40 * 16 bytes: over 512
    query = dns.message.make_query("fast.test.", "A")
    got, cached = build(engine, query, Answer(records), cache_ttl=60)
    assert got.flags & dns.flags.TC and not got.answer
    assert got.question[0].name == FAST and got.id == query.id
    assert cached  # it fits a cache entry: a query with EDNS gets it
    # With EDNS and room for 1232 bytes, it fits; over TCP anything fits.
    got, _ = build(
        engine, dns.message.make_query("fast.test.", "A", use_edns=0, payload=1232), Answer(records)
    )
    assert not got.flags & dns.flags.TC and len(got.answer[0]) == 40
    big = [A(f"192.0.{i // 256}.{i % 256}") for i in range(300)]
    got, _ = build(engine, dns.message.make_query("fast.test.", "A", use_edns=0), Answer(big))
    assert got.flags & dns.flags.TC and not got.answer and got.edns == 0
    got, cached = build(engine, query, Answer(big), cache_ttl=60, tcp=True)
    assert not got.flags & dns.flags.TC and len(got.answer[0]) == 300
    assert not cached  # larger than a cache entry


def test_answer_echoes_edns(engine):
    query = dns.message.make_query("fast.test.", "A", use_edns=0, payload=4096, want_dnssec=True)
    got, _ = build(engine, query, Answer([A("192.0.2.7")]))
    assert got.edns == 0 and got.ednsflags & dns.flags.DO
    assert got.payload == 1232  # what we advertise (native/answer/answer.c)
    assert answer_text(got) == [("fast.test.", "A", 300, ["192.0.2.7"])]


def test_answer_feeds_the_cache(engine):
    query = dns.message.make_query("fast.test.", "A")
    got, cached = build(
        engine, query, Answer([A("192.0.2.7", 600), A("192.0.2.8", 45)]), cache_ttl=45
    )
    assert cached
    # Another ID, another case: answered on the fast path, not deferred.
    again = dns.message.make_query("FAST.TEST.", "A", use_edns=0)
    wire = engine.answer(again.to_wire(), defer=True)
    assert wire is not DEFERRED
    hit = dns.message.from_wire(wire)
    assert hit.id == again.id and hit.flags & dns.flags.AA and hit.edns == 0
    assert answer_text(hit) == [("FAST.TEST.", "A", 45, ["192.0.2.7", "192.0.2.8"])]
    # Another type is another entry.
    other = dns.message.make_query("fast.test.", "AAAA").to_wire()
    assert engine.answer(other, defer=True) is DEFERRED


def test_answer_checks_its_records():
    for bad in (
        [(41, 0, b"")],
        [(255, 0, b"")],
        [(0, 0, b"")],
        [(1, -1, b"1234")],
        [(1, 2**31, b"1234")],
        [(1, 0, "text")],
        [(1, 0)],
        [(1, 0, b"x" * 65536)],
    ):
        with pytest.raises(ValueError):
            Answer(bad)
    with pytest.raises(ValueError, match="rcode"):
        Answer(rcode=16)
    answer = Answer([A("192.0.2.1", 9), (16, 4, b"\x01x")])
    assert answer.ttl == 4 and Answer().ttl is None
    assert answer.packed == (
        b"\x00\x01\x00\x00\x00\x09\x00\x04\xc0\x00\x02\x01\x00\x10\x00\x00\x00\x04\x00\x02\x01x"
    )


def test_engine_rejects_malformed_packed_records(engine):
    query = dns.message.make_query("fast.test.", "A").to_wire()
    for records, header in (
        (b"\x00\x01\x00\x00\x00\x00\x00\x05abc", 0),  # RDATA cut short
        (b"\x00\x29\x00\x00\x00\x00\x00\x00", 0),  # OPT
        (b"\x00\x01\x00", 0),  # a record's head cut short
        (b"", 0x10),
    ):  # an extended RCODE
        with pytest.raises(OSError):
            engine.resolver_build(query, records, header, 0)


# ---- ResolverQuery: cheap fields, lazy message ---------------------------------------------


def test_resolver_query_cheap_fields_and_lazy_message():
    query = dns.message.make_query("WhoAmI.Example.COM.", "TXT", rdclass="CH")
    rq = ResolverQuery(wire=query.to_wire(), client_address=("192.0.2.1", 53000))
    assert rq.qname == b"\x06whoami\x07example\x03com\x00"  # lower case, wire form
    assert (rq.qtype, rq.qclass, rq.id) == (16, 3, query.id)
    assert rq.transport == "udp" and rq.client_address == ("192.0.2.1", 53000)
    assert rq.wire == query.to_wire()
    assert rq._message is not None and not isinstance(rq._message, dns.message.Message)
    message = rq.message  # parsed now, and kept
    assert message.question[0].name.to_text() == "WhoAmI.Example.COM."
    assert rq.message is message
    # Made from a message, as before.
    rq = ResolverQuery(query, ("::1", 5), "tcp")
    assert rq.message is query and rq.qname == rq.qname.lower() and rq.qtype == 16
    with pytest.raises(ValueError):
        parse_question(b"\x00" * 12)  # no question
    with pytest.raises(ValueError):
        parse_question(query.to_wire()[:20])  # cut short


def test_a_query_dnspython_cannot_parse_gets_servfail_alone():
    good = ResolverQuery(wire=dns.message.make_query("a.test.", "A").to_wire())
    # The question parses; an additional record cut short does not.
    bad_wire = bytearray(dns.message.make_query("b.test.", "A").to_wire())
    bad_wire[11] = 1  # ARCOUNT 1, and no record
    bad = ResolverQuery(wire=bytes(bad_wire))
    calls = []

    def hook(queries):
        calls.append(len(queries))
        return [dns.message.make_response(q.message) for q in queries]

    results = Resolver._results(hook, [good, bad, good])
    assert calls == [3, 2]
    assert results[1] is None and all(r is not None for r in (results[0], results[2]))
    with pytest.raises(dns.exception.DNSException):
        bad.message


# ---- XDP mode: deferred from an AF_XDP queue, answered through its TX ring -------------


@pytest.mark.xdp
@pytest.mark.asan
def test_xdp_whoami_and_a_slow_hook(xdp_topology, xdp_serve, tmp_path, restest_plugin):
    """A query for a claimed name that arrives on an AF_XDP queue goes to the
    hook and its answer leaves through the queue's TX ring, over IPv4 and
    IPv6; a hook slower than the timeout gets SERVFAIL from the queue's
    worker, while the fast path answers all along."""
    topo = xdp_topology
    conf = tmp_path / "xdp.toml"
    conf.write_text(
        f'[plugins.whoami]\nname = "{WHOAMI}"\n[resolver]\ntimeout = 0.5\n'
        f'[plugins.restest]\ncalls = "{restest_plugin}"\nsleep = 1.5\n'
    )
    server = xdp_serve("--config", conf)
    with topo.client.entered():
        for _ in range(5):
            got = udp(WHOAMI, "A", topo.server_v4, 53)
            assert answer_text(got) == [(WHOAMI, "A", 0, [topo.client_v4])]
            got = udp(WHOAMI, "AAAA", topo.server_v6, 53)
            assert answer_text(got) == [(WHOAMI, "AAAA", 0, [topo.client_v6])]
        (txt,) = udp(WHOAMI, "TXT", topo.server_v4, 53).answer
        assert txt[0].strings[0].decode().split()[0] == topo.client_v4
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            start = time.monotonic()
            slow = pool.submit(udp, "slow.test.", "A", topo.server_v4, 53)
            time.sleep(0.1)
            for _ in range(10):
                assert udp("www.example.com.", "A", topo.server_v4, 53).rcode() in (
                    dns.rcode.NOERROR,
                    dns.rcode.REFUSED,
                )
            assert slow.result().rcode() == dns.rcode.SERVFAIL
            assert 0.4 < time.monotonic() - start < 1.4
        # The answer the hook gives after its deadline is dropped; the fast
        # form is cached and then answered by the queue without the hook.
        time.sleep(max(0.0, start + 1.7 - time.monotonic()))  # the hook is back
        assert answer_text(udp("fast.test.", "A", topo.server_v4, 53)) == [
            ("fast.test.", "A", 60, ["198.18.0.78"])
        ]
        assert answer_text(udp("fast.test.", "A", topo.server_v6, 53)) == [
            ("fast.test.", "A", 60, ["198.18.0.78"])
        ]
    queues = server.stats()["xdp"]["queues"]
    assert sum(q["deferred"] for q in queues) >= 12
    assert sum(q["resolver_expired"] for q in queues) == 1
    assert sum(q["frames_accounted"] == q["frames_total"] for q in queues) == len(queues)
    assert restest_plugin.read_text().splitlines().count("fast.test.") == 1
