"""The source address ACL: ``[plugins.acl]`` (plugins/acl.py), the
address_rules and address_policy hooks (xdpdns/acl.py), the engine's
rule sets (native/wire/prefixes.c) in socket mode over UDP and TCP, and in XDP mode
the program's LPM tries (bpf/xdpdns.bpf.c, native/io/xdp_loader.c), where a
denied source is dropped before any copy.

Socket-mode tests run on loopback without root: the client binds 127.0.0.2
(all of 127/8 is loopback on Linux) against a server on 127.0.0.1.  XDP
tests run as root in the session's network namespaces (tests/netns.py),
with a second client address added in the client namespace and removed by
name afterwards.
"""

import ipaddress
import socket
import struct
import time
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.rcode
import pytest

from conftest import run_xdpdns_cli
from engine_helpers import acl_check, refused
from xdpdns.acl import AclError, collect_acl
from xdpdns.config import ConfigError, default_zone_path, load_config
from xdpdns.hookspecs import AddressPolicy, AddressRule, hookimpl
from xdpdns.plugins import load_plugins

TIMEOUT = 2.0  # seconds for an answer that must come
SILENCE = 0.5  # seconds of waiting for an answer that must not come
DENIED_V4 = "127.0.0.2"
ALLOWED_V4 = "127.0.0.1"


def net(text):
    return ipaddress.ip_network(text)


def _config(tmp_path, acl_lines, extra=""):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(extra + "[plugins.acl]\n" + acl_lines + "\n")
    return conf


# ---- configuration -------------------------------------------------------------


def test_config_defaults(tmp_path):
    pm = load_plugins()
    acl = load_config(pm, _config(tmp_path, "")).plugins["acl"]
    assert (acl.allow, acl.deny, acl.default, acl.socket_action) == ((), (), "allow", "refuse")


def test_config_values(tmp_path):
    pm = load_plugins()
    conf = _config(
        tmp_path,
        'allow = ["192.0.2.0/24", "2001:db8::1"]\n'
        'deny = ["192.0.0.0/16", "198.51.100.7", "2001:db8::/32"]\n'
        'default = "deny"\nsocket_action = "drop"',
    )
    acl = load_config(pm, conf).plugins["acl"]
    assert acl.allow == (net("192.0.2.0/24"), net("2001:db8::1/128"))
    assert acl.deny == (net("192.0.0.0/16"), net("198.51.100.7/32"), net("2001:db8::/32"))
    assert (acl.default, acl.socket_action) == ("deny", "drop")


@pytest.mark.parametrize(
    "text, words",
    [
        ('allow = "192.0.2.0/24"', "plugins.acl.allow: expected a list of IPv4 or IPv6 prefixes"),
        ('deny = ["192.0.2.0/33"]', "plugins.acl.deny: expected a list of IPv4 or IPv6 prefixes"),
        ('deny = ["example.com"]', "plugins.acl.deny: expected a list of IPv4 or IPv6 prefixes"),
        ("deny = [5]", "plugins.acl.deny: expected a list of IPv4 or IPv6 prefixes"),
        (
            'deny = ["192.0.2.1/24"]',
            r"plugins.acl.deny: expected a prefix without host bits set \(192.0.2.0/24 or "
            r"192.0.2.1 alone\), got '192.0.2.1/24'",
        ),
        (
            'allow = ["10.0.0.0/8"]\ndeny = ["10.0.0.0/8"]',
            "plugins.acl.deny: expected prefixes that are not also in allow, got '10.0.0.0/8'",
        ),
        ('default = "block"', "plugins.acl.default: expected one of 'allow', 'deny', got 'block'"),
        (
            'socket_action = "ignore"',
            "plugins.acl.socket_action: expected one of 'refuse', 'drop', got 'ignore'",
        ),
        ("socket_action = true", "plugins.acl.socket_action: expected one of 'refuse', 'drop'"),
        ('alow = ["10.0.0.0/8"]', "plugins.acl.alow: expected one of the known keys: allow, deny"),
    ],
)
def test_config_errors(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words) as info:
        load_config(load_plugins(), _config(tmp_path, text))
    assert str(info.value).startswith(f"{tmp_path / 'xdpdns.toml'}: ")


def test_bad_config_is_one_message_from_the_command_line(tmp_path, xdpdns_cli):
    result = xdpdns_cli("check", "--config", _config(tmp_path, 'default = "block"'))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "plugins.acl.default: expected one of 'allow', 'deny', got 'block'" in result.stderr


def test_acl_plugin_is_listed(xdpdns_cli):
    result = xdpdns_cli("plugins")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if "(xdpdns_plugins.acl)" in x)
    assert "acl: xdpdns " in line, line


# ---- the hooks: rules and policy from every plugin -----------------------------------


class FirstRules:
    """A third-party policy plugin placed before the built-in acl plugin."""

    @hookimpl(tryfirst=True)
    def address_rules(self, config):
        return [AddressRule(net("192.0.2.0/24"), "allow"), AddressRule(net("10.9.0.0/16"), "deny")]

    @hookimpl(tryfirst=True)
    def address_policy(self, config):
        return AddressPolicy("deny", "drop")


class LastRules:
    @hookimpl(trylast=True)
    def address_rules(self, config):
        return [AddressRule(net("192.0.2.0/24"), "allow")]


def test_hook_rules_of_the_acl_plugin(tmp_path):
    pm = load_plugins()
    config = load_config(
        pm, _config(tmp_path, 'deny = ["192.0.2.0/24"]\nallow = ["::1"]\nsocket_action = "drop"')
    )
    acl = collect_acl(pm, config)
    assert set(acl.rules) == {
        AddressRule(net("192.0.2.0/24"), "deny"),
        AddressRule(net("::1/128"), "allow"),
    }
    assert acl.policy == AddressPolicy("allow", "drop")
    assert acl.denies_anything


def test_same_prefix_first_plugin_wins(tmp_path):
    pm = load_plugins()
    pm.register(FirstRules(), "first-rules")
    pm.register(LastRules(), "last-rules")
    config = load_config(pm, _config(tmp_path, 'deny = ["192.0.2.0/24"]'))
    acl = collect_acl(pm, config)
    by_prefix = {r.prefix: r.action for r in acl.rules}
    # tryfirst: the third party's allow beats the acl plugin's deny; the
    # trylast plugin's rule for the same prefix comes too late to count.
    assert by_prefix == {net("192.0.2.0/24"): "allow", net("10.9.0.0/16"): "deny"}
    assert len(acl.rules) == 2
    # ... and the first policy returned decides.
    assert acl.policy == AddressPolicy("deny", "drop")


def test_no_acl_denies_nothing():
    pm = load_plugins()
    acl = collect_acl(pm, load_config(pm))
    assert acl.rules == () and acl.policy == AddressPolicy()
    assert not acl.denies_anything


def test_a_plugin_returning_no_rule_objects_is_an_error():
    class Broken:
        @hookimpl
        def address_rules(self, config):
            return ["10.0.0.0/8"]

    pm = load_plugins()
    pm.register(Broken(), "broken")
    with pytest.raises(AclError, match="not an xdpdns.hookspecs.AddressRule"):
        collect_acl(pm, load_config(pm))


def test_rule_and_policy_values_are_checked():
    with pytest.raises(ValueError, match="expected 'allow' or 'deny'"):
        AddressRule(net("10.0.0.0/8"), "block")
    with pytest.raises(ValueError, match="IPv4Network"):
        AddressRule("10.0.0.0/8", "deny")
    with pytest.raises(ValueError, match="expected 'refuse' or 'drop'"):
        AddressPolicy("deny", "ignore")


# ---- the engine: decisions and the REFUSED response ---------------------------------


LONGEST_PREFIX_RULES = [
    (net("10.0.0.0/8"), "deny"),
    (net("10.1.0.0/16"), "allow"),
    (net("10.1.2.0/24"), "deny"),
    (net("10.1.2.3/32"), "allow"),
    (net("2001:db8::/32"), "deny"),
    (net("2001:db8:1::/48"), "allow"),
    (net("10.0.0.0/8"), "allow"),  # the same prefix again: the first rule wins
]

# (source, verdict with default allow, verdict with default deny)
LONGEST_PREFIX_CASES = [
    ("10.0.0.1", "refuse", "refuse"),
    ("10.1.0.1", "answer", "answer"),  # an allowed /16 inside a denied /8
    ("10.1.2.4", "refuse", "refuse"),  # a denied /24 inside that /16
    ("10.1.2.3", "answer", "answer"),  # an allowed /32 inside that /24
    ("10.255.255.255", "refuse", "refuse"),
    ("11.0.0.1", "answer", "refuse"),  # no prefix: the default
    ("2001:db8::1", "refuse", "refuse"),
    ("2001:db8:1:ffff::1", "answer", "answer"),
    ("2001:db9::1", "answer", "refuse"),
    ("::1", "answer", "refuse"),
]


@pytest.mark.asan
@pytest.mark.parametrize("default", ["allow", "deny"])
def test_engine_longest_prefix_decides(default):
    from xdpdns.engine import Engine

    with Engine() as engine:
        assert acl_check(engine, "10.0.0.1") == "answer"  # no ACL set
        engine.acl_set(LONGEST_PREFIX_RULES, default, "refuse")
        for source, with_allow, with_deny in LONGEST_PREFIX_CASES:
            want = with_allow if default == "allow" else with_deny
            assert acl_check(engine, source) == want, (source, default)
        engine.acl_set(LONGEST_PREFIX_RULES, default, "drop")
        assert acl_check(engine, "10.0.0.1") == "drop"
        engine.acl_set([], "allow")
        assert acl_check(engine, "10.0.0.1") == "answer"


@pytest.mark.asan
def test_engine_explicit_slash_0_beats_the_default():
    from xdpdns.engine import Engine

    with Engine() as engine:
        engine.acl_set([(net("0.0.0.0/0"), "allow"), (net("192.0.2.0/24"), "deny")], "deny")
        assert acl_check(engine, "198.51.100.1") == "answer"
        assert acl_check(engine, "192.0.2.1") == "refuse"
        assert acl_check(engine, "2001:db8::1") == "refuse"  # IPv6 has no /0 rule


@pytest.mark.asan
def test_engine_many_prefixes():
    """Thousands of prefixes of every length: each decides for its own
    addresses, the shorter ones for what the longer ones leave."""
    import random

    from xdpdns.engine import Engine

    rng = random.Random(5)
    rules = {}
    for _ in range(5000):
        length = rng.randint(1, 32)
        prefix = ipaddress.ip_network(
            (rng.getrandbits(32) >> (32 - length) << (32 - length), length)
        )
        rules.setdefault(prefix, rng.choice(["allow", "deny"]))
    with Engine() as engine:
        engine.acl_set(list(rules.items()), "allow", "drop")
        for _ in range(2000):
            addr = ipaddress.ip_address(rng.getrandbits(32))
            best = max((p for p in rules if addr in p), key=lambda p: p.prefixlen, default=None)
            want = "drop" if best is not None and rules[best] == "deny" else "answer"
            assert acl_check(engine, str(addr)) == want, addr


def test_engine_rejects_bad_values():
    from xdpdns.engine import Engine

    with Engine() as engine:
        with pytest.raises(ValueError, match="action 'block'"):
            engine.acl_set([(net("10.0.0.0/8"), "block")])
        with pytest.raises(ValueError, match="default"):
            engine.acl_set([], "block")
        with pytest.raises(ValueError, match="socket action"):
            engine.acl_set([], "deny", "ignore")
        with pytest.raises(ValueError):
            engine.acl_set([("10.0.0.1/8", "deny")])  # host bits set
        with pytest.raises(OSError, match="at most 65536"):
            engine.acl_set([(ipaddress.ip_network((i << 8, 24)), "deny") for i in range(65537)])
        assert acl_check(engine, "0.0.1.1") == "answer", "a failed set changed the ACL"


@pytest.mark.asan
@pytest.mark.parametrize("edns, dnssec", [(None, False), (0, False), (0, True)])
def test_refused_response(edns, dnssec):
    query = dns.message.make_query("WwW.Example.COM.", "AAAA", use_edns=edns, want_dnssec=dnssec)
    query.flags |= dns.flags.CD
    response = dns.message.from_wire(refused(query.to_wire()))
    assert response.id == query.id
    assert response.rcode() == dns.rcode.REFUSED
    assert response.flags & dns.flags.QR and response.flags & dns.flags.RD
    assert response.flags & dns.flags.CD and not response.flags & dns.flags.AA
    assert response.question == query.question
    assert response.question[0].name.to_text() == "WwW.Example.COM."  # case echoed
    assert not (response.answer or response.authority or response.additional)
    assert response.edns == (-1 if edns is None else 0)
    assert bool(response.ednsflags & dns.flags.DO) == dnssec


def test_no_refused_response_to_a_response_or_runt():
    answer = dns.message.make_response(dns.message.make_query("example.com.", "A"))
    assert refused(answer.to_wire()) is None
    assert refused(b"\x00\x01\x00") is None


# ---- socket mode in-process: the UDP workers ----------------------------------------


def _udp_query(source, address, wire, timeout=TIMEOUT):
    """Sends wire from source (a host to bind) to address; the answer, or
    None when nothing came within timeout."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(wire, address)
        try:
            data, _ = s.recvfrom(65535)
        except TimeoutError:
            return None
    return data


@pytest.fixture
def udp_engine():
    """An in-process engine serving the example zone on 127.0.0.1 (two UDP
    workers); yields (engine, (host, port))."""
    import dns.name

    from xdpdns.engine import Engine, ImageBuilder

    with Engine() as engine, ImageBuilder() as builder:
        builder.load_zonefile(
            builder.add_zone(dns.name.from_text("example.com.")), default_zone_path()
        )
        engine.set_image(builder.finish())
        (port,) = engine.udp_start([(ALLOWED_V4, 0)], 2)
        try:
            yield engine, (ALLOWED_V4, port)
        finally:
            engine.udp_stop()


def _settled(engine, received, timeout=TIMEOUT):
    """The workers' summed counters once all `received` queries are counted
    as answered or dropped (a worker counts after sendmmsg returns, which
    may be after the client has its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = engine.worker_stats()
        total = {
            k: sum(getattr(w, k) for w in stats)
            for k in ("received", "answered", "dropped", "denied")
        }
        done = total["received"] == received and total["answered"] + total["dropped"] == received
        if done or time.monotonic() > deadline:
            return total
        time.sleep(0.01)


@pytest.mark.asan
def test_udp_workers_refuse_then_drop(udp_engine):
    engine, address = udp_engine
    query = dns.message.make_query("www.example.com.", "A")
    wire = query.to_wire()
    engine.acl_set([(net(f"{DENIED_V4}/32"), "deny")], "allow", "refuse")

    answer = dns.message.from_wire(_udp_query(ALLOWED_V4, address, wire))
    assert answer.rcode() == dns.rcode.NOERROR and answer.answer
    refused = dns.message.from_wire(_udp_query(DENIED_V4, address, wire))
    assert refused.id == query.id and refused.rcode() == dns.rcode.REFUSED
    assert refused.question == query.question and not refused.answer
    assert _settled(engine, 2)["denied"] == 1

    # Changed while the workers run: from now on nothing goes back.
    engine.acl_set([(net(f"{DENIED_V4}/32"), "deny")], "allow", "drop")
    assert _udp_query(DENIED_V4, address, wire, timeout=SILENCE) is None
    assert _udp_query(ALLOWED_V4, address, wire) is not None
    assert _settled(engine, 4) == {"received": 4, "answered": 3, "dropped": 1, "denied": 2}

    engine.acl_set([], "allow")
    assert dns.message.from_wire(_udp_query(DENIED_V4, address, wire)).answer


@pytest.mark.asan
def test_udp_acl_swapped_under_load(udp_engine):
    """The rules change many times while queries flow: every query gets
    either the answer or REFUSED, never anything else, and the engine
    frees every old rule set (AddressSanitizer would see a use after free)."""
    import threading

    engine, address = udp_engine
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    stop = threading.Event()

    def swap():
        deny = [(net(f"{DENIED_V4}/32"), "deny")]
        while not stop.is_set():
            engine.acl_set(deny, "allow", "refuse")
            engine.acl_set([], "allow")

    swapper = threading.Thread(target=swap)
    swapper.start()
    rcodes = set()
    try:
        for _ in range(300):
            data = _udp_query(DENIED_V4, address, wire)
            assert data is not None
            rcodes.add(dns.message.from_wire(data).rcode())
    finally:
        stop.set()
        swapper.join(10)
    assert rcodes <= {dns.rcode.NOERROR, dns.rcode.REFUSED}, rcodes


# ---- socket mode end to end: `xdpdns serve` with [plugins.acl] -----------------------


def _framed(wire):
    return struct.pack("!H", len(wire)) + wire


def _tcp_exchange(source, address, wire):
    """One query over TCP from source; the response, or None when the
    server closed the connection without one."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.bind((source, 0))
        s.connect(address)
        try:
            s.sendall(_framed(wire))
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    return None
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            return None
    return data[2:]


def _serve_with_acl(xdpdns_serve, tmp_path, acl_lines, listen='"127.0.0.1:0"'):
    conf = _config(tmp_path, acl_lines, f"[server]\nlisten = [{listen}]\nudp_workers = 1\n")
    control = tmp_path / "ctl.sock"
    server = xdpdns_serve(
        "--config", conf, "--zone", default_zone_path(), "--control-socket", control
    )
    return server, control


def test_serve_refuses_denied_sources(xdpdns_serve, xdpdns_cli, tmp_path):
    server, control = _serve_with_acl(xdpdns_serve, tmp_path, f'deny = ["{DENIED_V4}"]')
    assert "acl allow=0 deny=1 default=allow socket_action=refuse" in server.output()
    address = server.addresses[0]
    query = dns.message.make_query("www.example.com.", "A")
    for exchange in (_udp_query, _tcp_exchange):
        refused = dns.message.from_wire(exchange(DENIED_V4, address, query.to_wire()))
        assert refused.rcode() == dns.rcode.REFUSED, exchange.__name__
        assert refused.id == query.id and refused.question == query.question
        answer = dns.message.from_wire(exchange(ALLOWED_V4, address, query.to_wire()))
        assert answer.rcode() == dns.rcode.NOERROR and answer.answer, exchange.__name__

    stats = xdpdns_cli("stats", "--control-socket", control, "--json")
    assert stats.returncode == 0, stats.stderr
    import json

    counters = json.loads(stats.stdout)
    assert counters["udp"]["denied"] == 1 and counters["tcp"]["denied"] == 1
    table = xdpdns_cli("stats", "--control-socket", control).stdout
    assert "denied" in table.splitlines()[1], table


def test_serve_drops_denied_sources(xdpdns_serve, tmp_path):
    server, _ = _serve_with_acl(
        xdpdns_serve, tmp_path, f'deny = ["{DENIED_V4}/32"]\nsocket_action = "drop"'
    )
    address = server.addresses[0]
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    assert _udp_query(DENIED_V4, address, wire, timeout=SILENCE) is None
    assert _tcp_exchange(DENIED_V4, address, wire) is None  # closed at once
    assert _udp_query(ALLOWED_V4, address, wire) is not None
    assert _tcp_exchange(ALLOWED_V4, address, wire) is not None


def test_serve_default_deny_allows_the_listed_ones(xdpdns_serve, tmp_path):
    """default = "deny" with an allowed /32 inside 127/8; IPv6 loopback is
    denied by the default."""
    server, _ = _serve_with_acl(
        xdpdns_serve,
        tmp_path,
        f'allow = ["{ALLOWED_V4}"]\ndefault = "deny"',
        listen='"127.0.0.1:0", "[::1]:0"',
    )
    (v4, v6) = server.addresses
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    assert dns.message.from_wire(_udp_query(ALLOWED_V4, v4, wire)).answer
    assert dns.message.from_wire(_udp_query(DENIED_V4, v4, wire)).rcode() == dns.rcode.REFUSED
    assert dns.message.from_wire(_udp_query("::1", v6, wire)).rcode() == dns.rcode.REFUSED
    assert dns.message.from_wire(_tcp_exchange("::1", v6, wire)).rcode() == dns.rcode.REFUSED


# ---- XDP mode: denied sources dropped in the XDP program -----------------------------


XDP_SOCKET_PORT = 5353  # not an [xdp] port: passed to the kernel, socket mode answers
SECOND_V4 = "198.18.0.3"
SECOND_V6 = "2001:2::3"


@pytest.fixture
def second_client_address(xdp_topology):
    """198.18.0.3 and 2001:2::3 on the client's interface as well, removed
    by name at the end."""
    topo = xdp_topology
    added = []
    try:
        for prefix, extra in ((f"{SECOND_V4}/24", ()), (f"{SECOND_V6}/64", ("nodad",))):
            topo.client.run("ip", "addr", "add", prefix, "dev", topo.client_if, *extra)
            added.append(prefix)
        yield SECOND_V4, SECOND_V6
    finally:
        for prefix in added:
            topo.client.run("ip", "addr", "del", prefix, "dev", topo.client_if, check=False)


def _client_query(topo, source, host, port, wire, timeout=TIMEOUT, tcp=False):
    with topo.client.entered():
        if tcp:
            return _tcp_exchange(source, (host, port), wire)
        return _udp_query(source, (host, port), wire, timeout)


def _xdp_acl_server(topo, xdp_serve, acl_lines):
    path = _xdp_config_path()
    path.write_text("[plugins.acl]\n" + acl_lines + "\n")
    listen = []
    for port in (53, XDP_SOCKET_PORT):
        listen += ["--listen", f"{topo.server_v4}:{port}", "--listen", f"[{topo.server_v6}]:{port}"]
    try:
        return xdp_serve("--config", path, *listen)
    finally:
        path.unlink()


def _xdp_config_path():
    import os
    import random
    from pathlib import Path

    return Path(f"/tmp/xdpdns-test-acl-{os.getpid()}-{random.randrange(1 << 30)}.toml")


def _program(server):
    return server.stats()["xdp"]["program"]


def _queue_sum(server, key, at_least=None, timeout=TIMEOUT):
    """The sum of a counter over the AF_XDP queues; with at_least, once it
    has got there (a worker counts after it kicked TX, which may be after
    the client has its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        total = sum(q[key] for q in server.stats()["xdp"]["queues"])
        if at_least is None or total >= at_least or time.monotonic() > deadline:
            return total
        time.sleep(0.05)


@pytest.mark.xdp
@pytest.mark.asan
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_xdp_denied_source_dropped_in_the_program(
    xdp_topology, xdp_serve, second_client_address, family
):
    """Deny the client's /24 (/64) but allow its second address: the first
    address's queries are dropped by the XDP program (`denied` moves, no
    answer, no worker sees them); the second is answered through AF_XDP;
    the longest prefix decides.  Port 5353, passed to the kernel, gets the
    socket-mode answer to a denied source: REFUSED; and so does TCP/53."""
    topo = xdp_topology
    server = _xdp_acl_server(
        topo,
        xdp_serve,
        f'deny = ["198.18.0.0/24", "2001:2::/64"]\nallow = ["{SECOND_V4}", "{SECOND_V6}"]',
    )
    v6 = family == "ipv6"
    host = topo.server_v6 if v6 else topo.server_v4
    denied_source = topo.client_v6 if v6 else topo.client_v4
    allowed_source = SECOND_V6 if v6 else SECOND_V4
    query = dns.message.make_query("www.example.com.", "A")
    wire = query.to_wire()

    before_prog, before_received = _program(server), _queue_sum(server, "received")
    for _ in range(3):
        assert _client_query(topo, denied_source, host, 53, wire, timeout=SILENCE) is None
    after_prog = _program(server)
    assert after_prog["denied"] - before_prog["denied"] == 3, (before_prog, after_prog)
    assert after_prog["redirected"] == before_prog["redirected"]
    assert after_prog["dropped"] == before_prog["dropped"]  # DROP ports only
    assert _queue_sum(server, "received") == before_received, "a denied query reached a worker"

    answered = _queue_sum(server, "answered") + _program(server)["answered_in_xdp"]
    answer = _client_query(topo, allowed_source, host, 53, wire)
    assert answer is not None and dns.message.from_wire(answer).answer
    # Through XDP: the program's answer table (or an AF_XDP worker).
    deadline = time.monotonic() + TIMEOUT
    while (
        _queue_sum(server, "answered") + _program(server)["answered_in_xdp"] == answered
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert _queue_sum(server, "answered") + _program(server)["answered_in_xdp"] == answered + 1
    assert _program(server)["denied"] == after_prog["denied"]

    refused = _client_query(topo, denied_source, host, XDP_SOCKET_PORT, wire)
    assert refused is not None and dns.message.from_wire(refused).rcode() == dns.rcode.REFUSED
    refused = _client_query(topo, denied_source, host, 53, wire, tcp=True)
    assert refused is not None and dns.message.from_wire(refused).rcode() == dns.rcode.REFUSED
    stats = server.stats()
    assert stats["udp"]["denied"] == 1 and stats["tcp"]["denied"] == 1

    table = run_xdpdns_cli("stats", "--control-socket", server.control_socket).stdout
    assert "denied" in table[table.index("XDP program") :], table


@contextmanager
def _xdp_engine(topo, acl=None):
    """An in-process engine in XDP mode on the server's end of the veth,
    port 53 redirected; ``acl`` (rules) is set before XDP mode starts."""
    import dns.name

    from xdpdns.config import XdpConfig
    from xdpdns.engine import Engine, ImageBuilder

    config = XdpConfig(
        interface=topo.server_if, hugepages="off", frames_per_queue=2048, ring_size=1024
    )
    with Engine() as engine, ImageBuilder() as builder:
        builder.load_zonefile(
            builder.add_zone(dns.name.from_text("example.com.")), default_zone_path()
        )
        engine.set_image(builder.finish())
        if acl is not None:
            engine.acl_set(acl)
        with topo.server.entered():
            engine.xdp_start(config)
        try:
            engine.xdp_set_port(53, "redirect")
            yield engine
        finally:
            engine.xdp_stop()
    assert topo.xdp_attached() is None


def _answered_from(topo, source, wire, timeout=TIMEOUT):
    return _client_query(topo, source, topo.server_v4, 53, wire, timeout=timeout) is not None


@pytest.mark.xdp
@pytest.mark.asan
def test_xdp_acl_changes_while_running(xdp_topology, second_client_address):
    """Engine.acl_set while XDP mode runs switches the program's rules at
    once, both ways, the default included."""
    topo = xdp_topology
    first, second = topo.client_v4, SECOND_V4
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    with _xdp_engine(topo) as engine:
        before = engine.xdp_prog_stats()
        assert _answered_from(topo, first, wire)
        engine.acl_set([(net(f"{first}/32"), "deny")])
        assert not _answered_from(topo, first, wire, SILENCE)
        assert _answered_from(topo, second, wire)
        engine.acl_set([(net(f"{second}/32"), "allow")], "deny")
        assert not _answered_from(topo, first, wire, SILENCE)
        assert _answered_from(topo, second, wire)
        engine.acl_set([(net(f"{first}/32"), "allow")], "deny")
        assert _answered_from(topo, first, wire)
        assert not _answered_from(topo, second, wire, SILENCE)
        engine.acl_set([])
        assert _answered_from(topo, first, wire) and _answered_from(topo, second, wire)
        after = engine.xdp_prog_stats()
        assert after.denied == before.denied + 3, (before, after)
        # Six answered: by the program's answer table or an AF_XDP worker.
        assert (
            after.redirected + after.answered_in_xdp - before.redirected - before.answered_in_xdp
        ) == 6, (before, after)


@pytest.mark.xdp
@pytest.mark.asan
def test_xdp_start_installs_the_acl_set_before(xdp_topology):
    topo = xdp_topology
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    with _xdp_engine(topo, [(net("198.18.0.0/24"), "deny")]) as engine:
        assert not _answered_from(topo, topo.client_v4, wire, SILENCE)
        assert engine.xdp_prog_stats().denied == 1


@pytest.mark.xdp
def test_xdp_old_rule_sets_are_deleted(xdp_topology):
    """Each change writes the new set beside the old one, then deletes the
    old: sets of 50,000 prefixes, five times over, fit into tries that hold
    about 131,000 entries only because every old set is gone."""
    topo = xdp_topology
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    # 10.0.0.0/24, 10.0.1.0/24, ...: none holds the client.
    big = [(ipaddress.ip_network(((10 << 24) + (i << 8), 24)), "deny") for i in range(50_000)]
    with _xdp_engine(topo) as engine:
        for round_ in range(5):
            action = "deny" if round_ % 2 else "allow"
            engine.acl_set(big + [(net(f"{topo.client_v4}/32"), action)])
            assert _answered_from(topo, topo.client_v4, wire, SILENCE) == (action == "allow")
