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

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from xdpdns.config import ConfigError, load_config
from xdpdns.engine import DEFERRED, Engine
from xdpdns.hookspecs import Claim
from xdpdns.image import compile_sources
from xdpdns.plugins import load_plugins
from xdpdns.resolver import collect_claims

ZONES = Path(__file__).resolve().parent.parent / "zones"
WHOAMI = "whoami.example.com."

# A third-party resolver plugin for the tests: slow.test. sleeps, boom.test.
# raises, cached.test. answers an A record with TTL 60 and counts its calls
# in a file; found through its own entry point (a dist-info beside it).
TEST_PLUGIN = '''
import time
from pathlib import Path
import dns.message, dns.name, dns.rrset
from xdpdns.hookspecs import Claim, ConfigSection, hookimpl
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
    return [Claim(dns.name.from_text(n)) for n in ("slow.test.", "boom.test.", "cached.test.")]

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
        r = dns.message.make_response(q.message)
        r.answer.append(dns.rrset.from_text(q.message.question[0].name, 60, "IN", "A",
                                            "198.18.0.77"))
        out.append(r)
    return out

CONF = []

@hookimpl
def startup(server):
    CONF.append(server.config.plugins["restest"])
'''


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
    conf.write_text(f'[[zone]]\nfile = "{ZONES / "example.com.zone"}"\n'
                    f'[plugins.whoami]\nname = "{WHOAMI}"\n' + text)
    return conf


def udp(qname, qtype, host, port, timeout=5):
    return dns.query.udp(dns.message.make_query(qname, qtype), host, port=port, timeout=timeout)


def tcp(qname, qtype, host, port, timeout=5):
    return dns.query.tcp(dns.message.make_query(qname, qtype), host, port=port, timeout=timeout)


def answer_text(response):
    return [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), r.ttl, [d.to_text() for d in r])
            for r in response.answer]


# ---- claims in the image -------------------------------------------------------------

def test_claims_are_compiled_into_the_image(tmp_path):
    conf = _config(tmp_path, "")
    pm = load_plugins()
    config = load_config(pm, conf)
    claims = collect_claims(pm, config)
    assert claims == [("whoami", Claim(dns.name.from_text(WHOAMI)))]
    result = compile_sources([], None, (), [c for _, c in claims])
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
    result = compile_sources([], None, (), [Claim(name)])
    query = dns.message.make_query("CaChEd.test.", "A", use_edns=0)
    with Engine() as engine:
        engine.set_image(result.image)
        engine.resolver_start(4, 16)
        response = dns.message.make_response(dns.message.make_query("cached.test.", "A"))
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "198.18.0.77"))
        wire = response.to_wire()
        engine.resolver_cache(name, 1, 1, wire, 12 + len(name.to_wire()) + 4, 60)
        got = dns.message.from_wire(engine.answer(query.to_wire(), defer=True))
    assert got.id == query.id
    assert got.question[0].name.to_text() == "CaChEd.test."  # the client's case
    assert answer_text(got) == [("CaChEd.test.", "A", 60, ["198.18.0.77"])]
    assert got.edns == 0  # the core's own OPT


# ---- a server --------------------------------------------------------------------------

def test_whoami_over_udp_and_tcp(xdpdns_serve, tmp_path):
    server = xdpdns_serve("--config", _config(tmp_path, ""), "--listen", "127.0.0.1:0",
                          "--listen", "[::1]:0")
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
    conf = _config(tmp_path, f'[resolver]\ntimeout = 0.5\n'
                             f'[plugins.restest]\ncalls = "{restest_plugin}"\n')
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
    conf = _config(tmp_path, f'[resolver]\ntimeout = 2\nring_size = 1\n'
                             f'[plugins.restest]\ncalls = "{restest_plugin}"\nsleep = 1.5\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0", "--udp-workers", "1",
                          "--control-socket", tmp_path / "c.sock")
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
