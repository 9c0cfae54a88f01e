"""Response rate limiting: ``[plugins.rrl]`` (plugins/rrl.py), the
rrl_settings hook, the native limiter (native/answer/rrl.c) through a table of its
own with the time passed in, and the workers: socket mode with
`xdpdns serve` on loopback, and XDP mode in the session's network
namespaces.

Socket-mode clients bind 127.0.0.2 and 127.0.0.1 (all of 127/8 is
loopback), which one /24 holds: those servers count per /32.
"""

import select
import socket
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest

from conftest import run_xdpdns_cli
from xdpdns.config import ConfigError, default_zone_path, load_config
from engine_helpers import RrlTable, rrl_classify, rrl_slip
from xdpdns.engine import Engine, ImageBuilder
from xdpdns.hookspecs import RrlSettings
from xdpdns.plugins import load_plugins
from xdpdns.server import RrlLog

NOW = 1_700_000_000
FLOODER = "127.0.0.2"
QUIET = "127.0.0.1"
COLLECT = 0.5  # seconds of collecting the answers to a burst
CLOCK_MONOTONIC_COARSE = 6  # Linux's; Python's time module does not name it

ZONE = """\
$ORIGIN example.com.
$TTL 3600
@       SOA ns1 hostmaster 1 7200 3600 1209600 300
        NS  ns1
ns1     A   198.18.0.2
www     A   198.18.0.10
sub     NS  ns.sub
ns.sub  A   198.18.0.53
"""


# ---- configuration ----------------------------------------------------------------


def _load(tmp_path, lines):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text("[plugins.rrl]\n" + lines + "\n")
    pm = load_plugins()
    return pm, load_config(pm, conf)


def test_config_defaults(tmp_path):
    pm, config = _load(tmp_path, "")
    c = config.plugins["rrl"]
    assert not c.enabled
    assert c.settings == RrlSettings(
        rate=20,
        nxdomain_rate=20,
        errors_rate=20,
        nodata_rate=20,
        referrals_rate=20,
        window=15,
        slip=2,
        ipv4_prefix=24,
        ipv6_prefix=56,
    )
    assert pm.hook.rrl_settings(config=config) is None  # off unless turned on


def test_config_values(tmp_path):
    pm, config = _load(
        tmp_path,
        "enabled = true\nrate = 50\nerrors_rate = 5\nwindow = 5\n"
        "slip = 0\nipv4_prefix = 32\nipv6_prefix = 64\ntable_size = 1024\n"
        'exempt = ["192.0.2.0/24", "2001:db8::1"]',
    )
    s = pm.hook.rrl_settings(config=config)
    # The rates not given are the rate.
    assert (s.rate, s.errors_rate, s.nxdomain_rate) == (50, 5, 50)
    assert (s.nodata_rate, s.referrals_rate) == (50, 50)
    assert (s.window, s.slip, s.ipv4_prefix, s.ipv6_prefix, s.table_size) == (5, 0, 32, 64, 1024)
    assert [str(p) for p in s.exempt] == ["192.0.2.0/24", "2001:db8::1/128"]


def test_config_rates_of_their_own(tmp_path):
    pm, config = _load(
        tmp_path,
        "enabled = true\nrate = 50\nnxdomain_rate = 4\n"
        "nodata_rate = 3\nreferrals_rate = 0\nerrors_rate = 1",
    )
    s = pm.hook.rrl_settings(config=config)
    assert (s.rate, s.nxdomain_rate, s.nodata_rate, s.referrals_rate, s.errors_rate) == (
        50,
        4,
        3,
        0,
        1,
    )


@pytest.mark.parametrize(
    "text, words",
    [
        ("rate = -1", "plugins.rrl.rate: expected an integer from 0 to 1000000"),
        ("nodata_rate = -1", "plugins.rrl.nodata_rate: expected an integer from 0 to 1000000"),
        ("nodata_rate = 1.5", "plugins.rrl.nodata_rate: expected an integer from 0 to 1000000"),
        (
            "referrals_rate = 1000001",
            "plugins.rrl.referrals_rate: expected an integer from 0 to 1000000",
        ),
        ('referrals_rate = "10"', "plugins.rrl.referrals_rate: expected an integer"),
        ("window = 0", "plugins.rrl.window: expected an integer from 1 to 3600"),
        ("slip = 11", "plugins.rrl.slip: expected an integer from 0 to 10"),
        ("ipv4_prefix = 33", "plugins.rrl.ipv4_prefix"),
        ("ipv6_prefix = true", "plugins.rrl.ipv6_prefix"),
        ('enabled = "yes"', "plugins.rrl.enabled: expected true or false"),
        ('exempt = ["192.0.2.1/24"]', "plugins.rrl.exempt: expected prefixes without host bits"),
        ('exempt = "192.0.2.0/24"', "plugins.rrl.exempt: expected a list"),
        ("burst = 3", "plugins.rrl.burst: expected one of the known keys"),
    ],
)
def test_config_errors(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "key, value",
    [
        ("window", 0),
        ("nodata_rate", -1),
        ("referrals_rate", 1000001),
        ("referrals_rate", True),
    ],
)
def test_settings_are_checked(key, value):
    with pytest.raises(ValueError, match=key):
        RrlSettings(**{key: value})


# ---- the native limiter ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    zone = tmp_path_factory.mktemp("rrl") / "example.com.zone"
    zone.write_text(ZONE)
    with Engine() as engine, ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(dns.name.from_text("example.com.")), zone)
        engine.set_image(builder.finish())
        yield engine


def _response(engine, name, rdtype="A"):
    return engine.answer(dns.message.make_query(name, rdtype).to_wire())


@pytest.mark.parametrize(
    "name, rdtype, kind",
    [
        ("www.example.com.", "A", "answer"),
        ("www.example.com.", "MX", "nodata"),
        ("nothing.example.com.", "A", "nxdomain"),
        ("host.sub.example.com.", "A", "referral"),
        ("example.org.", "A", "error"),  # REFUSED
    ],
)
def test_classify(engine, name, rdtype, kind):
    assert rrl_classify(_response(engine, name, rdtype)) == kind


def test_slip_is_the_question_with_tc(engine):
    wire = _response(engine, "www.example.com.")
    slipped = dns.message.from_wire(rrl_slip(wire))
    original = dns.message.from_wire(wire)
    assert slipped.flags & dns.flags.TC and slipped.id == original.id
    assert slipped.question == original.question
    assert not slipped.answer and not slipped.authority and not slipped.additional


def _burst(table, wire, client, now, n):
    return [table.check(wire, client, now) for _ in range(n)]


def test_rate_per_second_and_window(engine):
    """rate responses in a second go; then limited until the bucket's
    average over the window is under the rate again."""
    table = RrlTable(RrlSettings(rate=5, window=3, slip=0))
    wire = _response(engine, "www.example.com.")
    assert _burst(table, wire, "192.0.2.1", NOW, 7) == ["send"] * 5 + ["drop"] * 2
    # A second later: five new credits, two of which pay the debt.
    assert _burst(table, wire, "192.0.2.1", NOW + 1, 5) == ["send"] * 3 + ["drop"] * 2
    # A long flood sinks the balance to -window * rate = -15 ...
    _burst(table, wire, "192.0.2.1", NOW + 2, 100)
    # ... so two quiet seconds (10 credits) are not enough, three are.
    assert table.check(wire, "192.0.2.1", NOW + 4) == "drop"
    assert table.check(wire, "192.0.2.1", NOW + 8) == "send"


@pytest.mark.parametrize(
    "slip, expected",
    [
        (0, ["drop"] * 6),
        (1, ["slip"] * 6),
        (2, ["drop", "slip"] * 3),
        (3, ["drop", "drop", "slip"] * 2),
    ],
)
def test_slip_every_nth(engine, slip, expected):
    table = RrlTable(RrlSettings(rate=2, slip=slip))
    wire = _response(engine, "www.example.com.")
    assert _burst(table, wire, "192.0.2.1", NOW, 8) == ["send"] * 2 + expected


def test_errors_and_nxdomain_are_counted_apart(engine):
    table = RrlTable(RrlSettings(rate=3, nxdomain_rate=1, errors_rate=2, slip=0))
    answer = _response(engine, "www.example.com.")
    nxdomain = _response(engine, "nothing.example.com.")
    other_nxdomain = _response(engine, "other.example.com.")
    refused = _response(engine, "example.org.")
    client = "192.0.2.1"
    assert _burst(table, answer, client, NOW, 4) == ["send"] * 3 + ["drop"]
    # NXDOMAIN is counted per zone: two names share one bucket of rate 1.
    assert table.check(nxdomain, client, NOW) == "send"
    assert table.check(other_nxdomain, client, NOW) == "drop"
    assert _burst(table, refused, client, NOW, 3) == ["send", "send", "drop"]
    # Another name's answers have a bucket of their own.
    assert table.check(_response(engine, "ns1.example.com."), client, NOW) == "send"
    kinds = sorted(e.kind for e in table.events())
    assert kinds == ["answer", "error", "nxdomain"]


def test_each_kind_is_limited_at_its_own_rate(engine):
    """BIND's responses-, nodata-, referrals-, nxdomains- and
    errors-per-second: five kinds, five rates, each kind's bucket earning its
    own rate every second."""
    table = RrlTable(
        RrlSettings(
            rate=5,
            nodata_rate=1,
            referrals_rate=2,
            nxdomain_rate=3,
            errors_rate=4,
            window=1,
            slip=0,
        )
    )
    responses = {
        "answer": (_response(engine, "www.example.com."), 5),
        "nodata": (_response(engine, "www.example.com.", "MX"), 1),
        "referral": (_response(engine, "host.sub.example.com."), 2),
        "nxdomain": (_response(engine, "nothing.example.com."), 3),
        "error": (_response(engine, "example.org."), 4),
    }
    client = "192.0.2.1"
    # Two seconds later every bucket is full again: its debt is at most one
    # window (a second) of its rate.
    for now in (NOW, NOW + 2):
        for kind, (wire, rate) in responses.items():
            assert rrl_classify(wire) == kind
            assert _burst(table, wire, client, now, rate + 2) == ["send"] * rate + ["drop"] * 2, (
                kind,
                now,
            )
    # One event per bucket per window: each kind's, in both seconds.
    assert sorted(e.kind for e in table.events()) == sorted(list(responses) * 2)


def test_nodata_and_referrals_default_to_the_rate(engine, tmp_path):
    pm, config = _load(tmp_path, "enabled = true\nrate = 2\nslip = 0")
    table = RrlTable(pm.hook.rrl_settings(config=config))
    for wire in (
        _response(engine, "www.example.com.", "MX"),
        _response(engine, "host.sub.example.com."),
    ):
        assert _burst(table, wire, "192.0.2.1", NOW, 3) == ["send", "send", "drop"]


@pytest.mark.parametrize(
    "settings, unlimited, limited",
    [
        (
            RrlSettings(rate=1, nodata_rate=0, referrals_rate=1, slip=0),
            ("www.example.com.", "MX"),
            ("host.sub.example.com.", "A"),
        ),
        (
            RrlSettings(rate=1, nodata_rate=1, referrals_rate=0, slip=0),
            ("host.sub.example.com.", "A"),
            ("www.example.com.", "MX"),
        ),
    ],
)
def test_a_rate_of_zero_is_no_limit_on_that_kind(engine, settings, unlimited, limited):
    table = RrlTable(settings)
    assert _burst(table, _response(engine, *unlimited), "192.0.2.1", NOW, 50) == ["send"] * 50
    assert _burst(table, _response(engine, *limited), "192.0.2.1", NOW, 2) == ["send", "drop"]


@pytest.mark.parametrize(
    "first, same, other, settings",
    [
        ("192.0.2.1", "192.0.2.200", "192.0.3.1", RrlSettings(rate=2, slip=0)),
        (
            "2001:db8:0:ff::1",
            "2001:db8:0:aa::9",
            "2001:db8:0:100::1",
            RrlSettings(rate=2, slip=0),
        ),  # /56
        ("192.0.2.1", "192.0.2.1", "192.0.2.2", RrlSettings(rate=2, slip=0, ipv4_prefix=32)),
    ],
)
def test_prefix_aggregation(engine, first, same, other, settings):
    table = RrlTable(settings)
    wire = _response(engine, "www.example.com.")
    assert _burst(table, wire, first, NOW, 2) == ["send"] * 2
    assert table.check(wire, same, NOW) == "drop"
    assert table.check(wire, other, NOW) == "send"
    (event,) = table.events()
    assert event.prefix.supernet_of(__import__("ipaddress").ip_network(first))
    assert event.time == NOW


def test_valid_cookie_and_exempt_prefixes_are_never_limited(engine):
    table = RrlTable(RrlSettings(rate=1, slip=0, exempt=["198.51.100.0/24"]))
    wire = _response(engine, "www.example.com.")
    assert _burst(table, wire, "192.0.2.1", NOW, 2) == ["send", "drop"]
    assert table.check(wire, "192.0.2.1", NOW, cookie="valid") == "send"
    assert table.check(wire, "192.0.2.1", NOW, cookie="invalid") == "drop"
    assert _burst(table, wire, "198.51.100.7", NOW, 5) == ["send"] * 5


def test_events_at_most_once_per_window(engine):
    table = RrlTable(RrlSettings(rate=1, window=5, slip=0))
    wire = _response(engine, "www.example.com.")
    for now in range(NOW, NOW + 12):
        _burst(table, wire, "192.0.2.1", now, 3)
    assert [e.time for e in table.events()] == [NOW, NOW + 5, NOW + 10]


def test_table_full_reuses_the_oldest_bucket(engine):
    """A table of four buckets (one set): a flood of new prefixes takes the
    oldest bucket over; the memory never grows, and the evicted prefix
    starts again with full credit."""
    table = RrlTable(RrlSettings(rate=1, slip=0, ipv4_prefix=32, table_size=4))
    wire = _response(engine, "www.example.com.")
    assert _burst(table, wire, "192.0.2.1", NOW, 2) == ["send", "drop"]
    for i in range(2, 1000):
        table.check(wire, f"10.{i >> 8}.{i & 255}.1", NOW + i)
    # The most recent bucket is kept: the last prefix has spent its credit.
    assert table.check(wire, "10.3.231.1", NOW + 999) == "drop"
    assert table.check(wire, "192.0.2.1", NOW + 999) == "send"


# ---- the workers' path: the kind the answering core notes -----------------------------

# Every outcome of the answering core, for the kind and name it notes for
# the limiter.
_KINDS_RECORDS = """\
mail    MX  10 www
alias   CNAME www
dangling CNAME nothing
d       DNAME sub
*.wild  TXT "wildcard"
big     TXT "{0}" "{0}" "{0}"
"""
KINDS_ZONE = ZONE + _KINDS_RECORDS.format("x" * 200)

KINDS_QUERIES = [
    ("www.example.com.", "A", {}),
    ("www.example.com.", "MX", {}),  # NODATA: the zone's bucket ...
    ("ns1.example.com.", "TXT", {}),  # ... shared with another name's
    ("nothing.example.com.", "A", {}),  # NXDOMAIN: the zone's too
    ("NoThInG.Example.COM.", "A", {}),
    ("host.sub.example.com.", "A", {}),  # referrals: the delegation's
    ("other.sub.example.com.", "AAAA", {}),
    ("sub.example.com.", "DS", {}),  # the parent's NODATA
    ("mail.example.com.", "MX", {}),  # with additional data
    ("alias.example.com.", "A", {}),  # CNAME
    ("dangling.example.com.", "A", {}),  # CNAME to NXDOMAIN
    ("x.d.example.com.", "A", {}),  # DNAME
    ("a.wild.example.com.", "TXT", {}),
    ("big.example.com.", "TXT", {}),  # truncated: over 512 bytes
    ("www.example.com.", "ANY", {}),
    ("example.org.", "A", {}),  # REFUSED
    ("version.bind.", "TXT", {"rdclass": "CH"}),  # REFUSED: hidden
    ("www.example.com.", "A", {"use_edns": 1}),  # BADVERS
    ("www.example.com.", "A", {"use_edns": 0}),
]


@pytest.fixture(scope="module")
def kinds_image(tmp_path_factory):
    zone = tmp_path_factory.mktemp("rrl-kinds") / "example.com.zone"
    zone.write_text(KINDS_ZONE)
    with ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(dns.name.from_text("example.com.")), zone)
        return builder.finish()


def _kinds_query(name, rdtype, options):
    return dns.message.make_query(name, rdtype, **options).to_wire()


def test_workers_key_buckets_as_reading_the_response_does(kinds_image):
    """What the workers send (the kind and name the answering core noted)
    is what reading each response back would send: the same responses
    dropped and slipped, bucket for bucket, with a rate of its own for each
    kind so that a kind told wrong shows."""
    settings = RrlSettings(
        rate=3, nodata_rate=2, referrals_rate=1, nxdomain_rate=2, errors_rate=2, window=2, slip=2
    )
    noted, read_back = RrlTable(settings), RrlTable(settings)
    kinds = set()
    for now in (NOW, NOW + 1, NOW + 5):
        for _ in range(4):
            for client in ("192.0.2.1", "2001:db8::1"):
                for name, rdtype, options in KINDS_QUERIES:
                    wire = _kinds_query(name, rdtype, options)
                    response = kinds_image.answer(wire)
                    kinds.add(rrl_classify(response))
                    verdict = read_back.check(response, client, now)
                    expected = {"send": response, "drop": None, "slip": rrl_slip(response)}[verdict]
                    assert noted.answer(kinds_image, wire, client, now) == expected, (
                        name,
                        rdtype,
                        options,
                        client,
                        now,
                        verdict,
                    )
    assert kinds == {"answer", "nodata", "nxdomain", "referral", "error"}
    assert noted.events() == read_back.events()


def test_rrl_log_once_per_prefix_per_window():
    from xdpdns.engine import RrlEvent
    import ipaddress

    log = RrlLog(window=10)
    ev = RrlEvent(ipaddress.ip_network("192.0.2.0/24"), "answer", NOW)
    other = RrlEvent(ipaddress.ip_network("192.0.2.0/24"), "nxdomain", NOW)
    assert log.lines([ev, other], now=100.0) == ["rrl limiting prefix=192.0.2.0/24 kind=answer"]
    assert log.lines([ev], now=105.0) == []
    assert len(log.lines([ev], now=111.0)) == 1


def test_engine_turns_it_on_and_off(engine):
    engine.set_rrl(RrlSettings(rate=1))
    engine.set_rrl(None)
    with pytest.raises(ValueError):
        RrlSettings(slip=-1)
    assert engine.rrl_events() == []


# ---- socket mode: `xdpdns serve` on loopback -------------------------------------------------


def _burst_udp(source, address, wire, n):
    """Sends n copies of wire from source at once; the parsed responses that
    came back within COLLECT seconds."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    responses = []
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for _ in range(n):
            s.sendto(wire, address)
        s.settimeout(COLLECT)
        try:
            while len(responses) < n:
                responses.append(dns.message.from_wire(s.recvfrom(65535)[0]))
        except TimeoutError:
            pass
    return responses


def _tcp_query(source, address, wire):
    with socket.create_connection(address, timeout=2, source_address=(source, 0)) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
            chunk = s.recv(65535)
            if not chunk:
                break
            data += chunk
    return dns.message.from_wire(data[2:])


def _with_cookie(name, option_data):
    q = dns.message.make_query(
        name, "A", use_edns=0, options=[dns.edns.GenericOption(dns.edns.COOKIE, option_data)]
    )
    return q


@pytest.fixture(scope="module")
def rrl_server(tmp_path_factory):
    from conftest import XdpdnsServe, stop_process, wait_ready, xdpdns_command
    import subprocess

    tmp = tmp_path_factory.mktemp("rrl-serve")
    conf = tmp / "xdpdns.toml"
    conf.write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\nudp_workers = 1\n'
        "[plugins.rrl]\nenabled = true\nrate = 5\nnodata_rate = 2\nslip = 2\n"
        "window = 1\nipv4_prefix = 32\n"
    )
    control = tmp / "ctl.sock"
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            xdpdns_command()
            + [
                "serve",
                "--config",
                str(conf),
                "--zone",
                str(default_zone_path()),
                "--control-socket",
                str(control),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = XdpdnsServe(proc, "", log)
    try:
        wait_ready(server, "xdpdns serve", 30.0)
        yield server, control
    finally:
        stop_process(proc)


def test_serve_limits_a_flood_and_answers_the_other_client(rrl_server, xdpdns_cli):
    server, control = rrl_server
    address = server.addresses[0]
    assert "rrl on rate=5" in server.output()
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    time.sleep(1.0)  # a fresh second
    flood = _burst_udp(FLOODER, address, wire, 40)
    full = [r for r in flood if not r.flags & dns.flags.TC]
    truncated = [r for r in flood if r.flags & dns.flags.TC]
    # Five answers a second (a second boundary may add five more); of the
    # rest, every second one goes out truncated, with the question only.
    assert 5 <= len(full) <= 10, len(full)
    assert all(r.answer for r in full)
    assert 13 <= len(truncated) <= 18, len(truncated)
    assert all(not r.answer and r.question for r in truncated)
    quiet = _burst_udp(QUIET, address, wire, 5)
    assert len(quiet) == 5 and all(r.answer and not r.flags & dns.flags.TC for r in quiet)
    # TCP is never limited.
    for _ in range(10):
        assert _tcp_query(FLOODER, address, wire).answer

    import json

    stats = json.loads(xdpdns_cli("stats", "--control-socket", control, "--json").stdout)
    udp = stats["udp"]
    assert udp["limited"] >= 30 and udp["slipped"] == len(truncated), udp
    table = xdpdns_cli("stats", "--control-socket", control).stdout
    assert "limited" in table and "slipped" in table
    deadline = time.monotonic() + 3
    while "rrl limiting prefix=127.0.0.2/32 kind=answer" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    assert server.output().count("rrl limiting prefix=127.0.0.2/32") == 1


def test_serve_limits_nodata_at_its_own_rate(rrl_server):
    server, _ = rrl_server
    assert "nodata_rate=2 referrals_rate=5" in server.output()  # referrals: the rate
    wire = dns.message.make_query("www.example.com.", "MX").to_wire()
    time.sleep(1.0)  # a fresh second
    flood = _burst_udp("127.0.0.4", server.addresses[0], wire, 20)
    full = [r for r in flood if not r.flags & dns.flags.TC]
    # Two NODATA a second (a second boundary may add two more), not five.
    assert 2 <= len(full) <= 4, len(full)
    assert all(not r.answer and r.authority for r in full)


def test_serve_exempts_a_valid_server_cookie(rrl_server):
    server, _ = rrl_server
    address = server.addresses[0]
    source = "127.0.0.3"
    client_cookie = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    first = _tcp_query(source, address, _with_cookie("www.example.com.", client_cookie).to_wire())
    (option,) = [o for o in first.options if o.otype == dns.edns.COOKIE]
    cookie = option.to_wire() if hasattr(option, "to_wire") else option.data
    assert len(cookie) == 24
    time.sleep(1.0)
    flood = _burst_udp(source, address, _with_cookie("www.example.com.", cookie).to_wire(), 30)
    assert len(flood) == 30 and all(r.answer and not r.flags & dns.flags.TC for r in flood)
    # Without the cookie the same address is limited.
    plain = _burst_udp(
        source, address, dns.message.make_query("www.example.com.", "A").to_wire(), 30
    )
    assert sum(1 for r in plain if r.answer) <= 10


# ---- XDP mode: network namespaces ---------------------------------------------------------

SECOND_V4 = "198.18.0.3"


@pytest.fixture
def second_client_v4(xdp_topology):
    topo = xdp_topology
    prefix = f"{SECOND_V4}/24"
    topo.client.run("ip", "addr", "add", prefix, "dev", topo.client_if)
    try:
        yield SECOND_V4
    finally:
        topo.client.run("ip", "addr", "del", prefix, "dev", topo.client_if, check=False)


def _fresh_rrl_second():
    """Sleeps into the first tenth of a second of the buckets' clock
    (CLOCK_MONOTONIC_COARSE, the XDP program's bpf_ktime_get_coarse_ns), so
    that a burst's credit is exactly one second's."""
    now = time.clock_gettime(CLOCK_MONOTONIC_COARSE)
    time.sleep(1.02 - (now % 1.0))


def _xdp_rrl_conf(tmp_path, answers, extra=""):
    path = tmp_path / "rrl.toml"
    path.write_text(
        "[plugins.rrl]\nenabled = true\nrate = 5\nslip = 2\nwindow = 1\n"
        f'ipv4_prefix = 32\n{extra}\n[xdp]\nanswers = "{answers}"\n'
    )
    return path


@pytest.mark.xdp
@pytest.mark.asan
@pytest.mark.parametrize("answers", ["all", "off"])
def test_xdp_limits_a_flood_and_answers_the_other_prefix(
    xdp_topology, xdp_serve, second_client_v4, tmp_path, answers
):
    """In XDP mode, from the program's answer table or (table off) through
    AF_XDP: the client's address floods and is limited (every second
    limited response truncated to the question), while the second address,
    another /32 bucket, is answered in full; the counters and the log say
    so, once, wherever it was limited."""
    topo = xdp_topology
    server = xdp_serve("--config", _xdp_rrl_conf(tmp_path, answers))
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    with topo.client.entered():
        _fresh_rrl_second()
        flood = _burst_udp(topo.client_v4, (topo.server_v4, 53), wire, 40)
        quiet = _burst_udp(second_client_v4, (topo.server_v4, 53), wire, 5)
    full = [r for r in flood if not r.flags & dns.flags.TC]
    truncated = [r for r in flood if r.flags & dns.flags.TC]
    assert len(full) == 5 and all(r.answer for r in full), len(full)
    assert len(truncated) == 17, len(truncated)
    assert all(not r.answer and not r.additional and r.question and r.edns < 0 for r in truncated)
    assert len(quiet) == 5 and all(r.answer and not r.flags & dns.flags.TC for r in quiet)
    stats = server.stats()["xdp"]
    queues, program = stats["queues"], stats["program"]
    in_xdp = answers == "all"
    assert stats["answers"]["state"] == ("on" if in_xdp else "off"), stats["answers"]
    limited = program["rate_limited"] if in_xdp else sum(q["limited"] for q in queues)
    slipped = program["slipped"] if in_xdp else sum(q["slipped"] for q in queues)
    assert (limited, slipped) == (35, 17)
    assert program["answered_in_xdp"] == (10 if in_xdp else 0)
    table = run_xdpdns_cli("stats", "--control-socket", server.control_socket).stdout
    assert "slipped" in table[table.index("AF_XDP queues") :]
    assert "rate_limited" in table
    deadline = time.monotonic() + 3
    line = f"rrl limiting prefix={topo.client_v4}/32 kind=answer"
    while line not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    assert server.output().count(line) == 1


@pytest.mark.xdp
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_xdp_program_and_workers_count_in_one_bucket(xdp_topology, xdp_serve, tmp_path, family):
    """Plain queries (the program answers them from its table) and the same
    question with an EDNS option (the worker answers it) spend one bucket:
    one second's five answers between them, not five on each path; over
    IPv4 and IPv6."""
    topo = xdp_topology
    v6 = family == socket.AF_INET6
    client = topo.client_v6 if v6 else topo.client_v4
    server_address = (topo.server_v6 if v6 else topo.server_v4, 53)
    server = xdp_serve("--config", _xdp_rrl_conf(tmp_path, "all"))
    plain = dns.message.make_query("www.example.com.", "A").to_wire()
    with_option = dns.message.make_query(
        "www.example.com.", "A", use_edns=0, options=[dns.edns.GenericOption(65001, b"x")]
    ).to_wire()
    responses = []
    with topo.client.entered():
        _fresh_rrl_second()
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((client, 0))
            for _ in range(20):
                s.sendto(plain, server_address)
                s.sendto(with_option, server_address)
            s.settimeout(COLLECT)
            try:
                while True:
                    responses.append(dns.message.from_wire(s.recvfrom(65535)[0]))
            except TimeoutError:
                pass
    full = [r for r in responses if not r.flags & dns.flags.TC]
    assert len(full) == 5, [(r.edns, r.flags) for r in responses]
    assert all(r.answer for r in full)
    stats = server.stats()["xdp"]
    program, queues = stats["program"], stats["queues"]
    # Each path saw its twenty and limited what the other left no credit for.
    assert program["answered_in_xdp"] + program["slipped"] + program["rate_limited"] >= 20
    assert sum(q["received"] for q in queues) >= 20
    assert program["rate_limited"] + sum(q["limited"] for q in queues) == 35


@pytest.mark.xdp
def test_xdp_exempt_prefix_is_answered_from_the_table(xdp_topology, xdp_serve, tmp_path):
    """An exempt prefix is never limited by the program either: a flood
    from it is answered in full, all of it from the table."""
    topo = xdp_topology
    conf = _xdp_rrl_conf(tmp_path, "all", 'exempt = ["198.18.0.0/24"]')
    server = xdp_serve("--config", conf)
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    with topo.client.entered():
        _fresh_rrl_second()
        flood = _burst_udp(topo.client_v4, (topo.server_v4, 53), wire, 30)
    assert len(flood) == 30 and all(r.answer and not r.flags & dns.flags.TC for r in flood)
    program = server.stats()["xdp"]["program"]
    assert program["answered_in_xdp"] == 30 and program["rate_limited"] == 0


def test_one_view_of_a_client_across_udp_workers(xdpdns_serve, tmp_path):
    """Regression: each UDP worker kept its own buckets, so a client whose
    queries the kernel spread over N workers (SO_REUSEPORT hashes the source
    port) got N times the rate.  The workers now count in one table: forty
    queries from forty source ports, rate 5, get five answers."""
    conf = tmp_path / "rrl.toml"
    conf.write_text(
        "[server]\nudp_workers = 4\n"
        "[plugins.rrl]\nenabled = true\nrate = 5\nslip = 0\nwindow = 1\n"
        "ipv4_prefix = 32\n"
    )
    server = xdpdns_serve(
        "--config", conf, "--listen", "127.0.0.1:0", "--zone", default_zone_path()
    )
    address = server.addresses[0]
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    socks = []
    try:
        for _ in range(40):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((FLOODER, 0))
            s.settimeout(COLLECT)
            socks.append(s)
        _fresh_rrl_second()
        for s in socks:
            s.sendto(wire, address)
        answered = 0
        waiting, deadline = list(socks), time.monotonic() + COLLECT
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select(waiting, [], [], deadline - time.monotonic())
            for s in ready:
                s.recvfrom(65535)
                answered += 1
                waiting.remove(s)
    finally:
        for s in socks:
            s.close()
    stats = server.stats()["udp"] if hasattr(server, "stats") else None
    assert answered == 5, (answered, stats)
