"""DNS cookies (RFC 7873) with the interoperable server cookies of RFC 9018
(native/answer/cookie.c, the COOKIE option in native/wire/query.c and answer.c,
plugins/cookies.py): SipHash-2-4 against the paper's vectors, RFC 9018's
Appendix A byte for byte, the engine's verdicts, the plugin's configuration,
a server over UDP and TCP, and the same cookie from the XDP path and the
socket path.  The comparison with Knot, given the same secret, is in
test_diff_knot.py (the cookie rows)."""

import ipaddress
import struct
import time
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dnsdiff
from engine_helpers import siphash24
from netns import SOCKET_PORT, listen_args
from xdpdns.config import ConfigError, Where
from xdpdns.engine import Engine, ImageBuilder
from xdpdns.hookspecs import CookieSecrets, hookimpl
from xdpdns_plugins import cookies as plugin

DIFF_ZONE = Path(__file__).resolve().parent / "data" / "diff" / "example.com.zone"
COOKIE = dns.edns.OptionType.COOKIE
BADCOOKIE = 23  # RFC 7873 8

# RFC 9018 Appendix A: the secrets of its examples.
SECRET_A = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
SECRET_OLD = bytes.fromhex("dd3bdf9344b678b185a6f5cb60fca715")
SECRET_NEW = bytes.fromhex("445536bcd2513298075a5d379663c962")
NOW = 1559731985  # A.1's timestamp, 2019-06-05 10:53:05 UTC
CLIENT = "198.51.100.100"
CC = bytes.fromhex("2464c4abcf10c957")


# ---- SipHash-2-4 ---------------------------------------------------------------

# The reference implementation's vectors (Aumasson and Bernstein, SipHash,
# vectors.h): key 00 01 .. 0f, message 00 01 .. (n-1) for n = 0 .. 63.
SIPHASH_VECTORS = """
310e0edd47db6f72 fd67dc93c539f874 5a4fa9d909806c0d 2d7efbd796666785
b7877127e09427cf 8da699cd64557618 cee3fe586e46c9cb 37d1018bf50002ab
6224939a79f5f593 b0e4a90bdf82009e f3b9dd94c5bb5d7a a7ad6b22462fb3f4
fbe50e86bc8f1e75 903d84c02756ea14 eef27a8e90ca23f7 e545be4961ca29a1
db9bc2577fcc2a3f 9447be2cf5e99a69 9cd38d96f0b3c14b bd6179a71dc96dbb
98eea21af25cd6be c7673b2eb0cbf2d0 883ea3e395675393 c8ce5ccd8c030ca8
94af49f6c650adb8 eab8858ade92e1bc f315bb5bb835d817 adcf6b0763612e2f
a5c91da7acaa4dde 716595876650a2a6 28ef495c53a387ad 42c341d8fa92d832
ce7cf2722f512771 e37859f94623f3a7 381205bb1ab0e012 ae97a10fd434e015
b4a31508beff4d31 81396229f0907902 4d0cf49ee5d4dcca 5c73336a76d8bf9a
d0a704536ba93e0e 925958fcd6420cad a915c29bc8067318 952b79f3bc0aa6d4
f21df2e41d4535f9 87577519048f53a9 10a56cf5dfcd9adb eb75095ccd986cd0
51a9cb9ecba312e6 96afadfc2ce666c7 72fe52975a4364ee 5a1645b276d592a1
b274cb8ebf87870a 6f9bb4203de7b381 eaecb2a30b22a87f 9924a43cc1315724
bd838d3aafbf8db7 0b1a2a3265d51aea 135079a3231ce660 932b2846e4d70666
e1915f5cb1eca46c f325965ca16d629f 575ff28e60381be5 724506eb4c328a95
""".split()


@pytest.mark.parametrize("length", range(64))
def test_siphash_reference_vectors(length):
    assert siphash24(bytes(range(16)), bytes(range(length))).hex() == SIPHASH_VECTORS[length]


def test_siphash_the_papers_example():
    # Appendix A of the paper: 15 bytes, as the 64-bit value it prints.
    out = siphash24(bytes(range(16)), bytes(range(15)))
    assert int.from_bytes(out, "little") == 0xA129CA6149BE45E5


# ---- helpers -------------------------------------------------------------------


def server_cookie(secret, client_cookie, address, timestamp, head=None):
    """RFC 9018 4.2, computed here from its definition: version 1, reserved,
    timestamp, SipHash-2-4(client cookie | those | client IP)."""
    if head is None:
        head = bytes([1, 0, 0, 0]) + struct.pack("!I", timestamp)
    ip = ipaddress.ip_address(address).packed
    return head + siphash24(secret, client_cookie + head + ip)


def query(option=None, name="www.example.com.", rdtype="A", edns=0, payload=1232, options=None):
    """A query with one COOKIE option of data `option` (None: none)."""
    opts = list(options or [])
    if option is not None:
        opts.insert(0, dns.edns.GenericOption(COOKIE, option))
    msg = dns.message.make_query(name, rdtype)
    # use_edns() directly: make_query(use_edns=1) takes the 1 for True, version 0.
    msg.use_edns(-1 if edns is None else edns, payload=payload, options=opts)
    return msg.to_wire()


def cookies_of(response):
    return [o.to_wire() for o in response.options if o.otype == COOKIE]


def cookie_of(response):
    (cookie,) = cookies_of(response)
    return cookie


@pytest.fixture(scope="module")
def image_bytes():
    with ImageBuilder() as b:
        b.load_zonefile(b.add_zone(dns.name.from_text("example.com.")), DIFF_ZONE)
        with b.finish() as img:
            return img.to_bytes()


@pytest.fixture
def engine(image_bytes):
    """An engine serving example.com with cookies under RFC 9018's secret."""
    from xdpdns.engine import Image

    with Engine() as e:
        e.set_image(Image.from_bytes(image_bytes))
        e.set_cookie_secrets(SECRET_A)
        yield e


def ask(engine, wire, client=CLIENT, now=NOW, tcp=False):
    """(parsed response, what the cookie showed)."""
    result = engine.answer_client(wire, client, tcp=tcp, now=now)
    assert result.wire is not None
    return dns.message.from_wire(result.wire), result.cookie


# ---- RFC 9018 Appendix A, byte for byte ---------------------------------------


def test_a1_learning_a_new_server_cookie(engine):
    response, verdict = ask(engine, query(CC))
    assert verdict == "client-only"
    assert cookie_of(response).hex() == "2464c4abcf10c957010000005cf79f111f8130c3eee29480"
    assert response.rcode() == dns.rcode.NOERROR and response.answer


def test_a2_the_same_client_gets_a_renewed_cookie(engine):
    # 40 minutes later: still valid, but older than half an hour.
    sent = bytes.fromhex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")
    response, verdict = ask(engine, query(sent), now=1559734385)
    assert verdict == "valid"
    assert cookie_of(response).hex() == "2464c4abcf10c957010000005cf7a871d4a564a1442aca77"


def test_a3_another_client_with_reserved_bits(engine):
    sent = bytes.fromhex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5")
    # Its cookie is 1 h 52 min old at the example's time: past the hour a
    # cookie lives, so not valid, and answered with a new one.
    response, verdict = ask(engine, query(sent), client="203.0.113.203", now=1559734700)
    assert verdict == "invalid"
    assert cookie_of(response).hex() == "fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e"
    # Within its hour it verifies: the reserved bytes the client sent are
    # hashed as they are.
    _, verdict = ask(engine, query(sent), client="203.0.113.203", now=1559727985 + 60)
    assert verdict == "valid"


def test_a4_ipv6_client_after_a_secret_rollover(engine):
    engine.set_cookie_secrets(SECRET_NEW, previous=SECRET_OLD)
    sent = bytes.fromhex("22681ab97d52c298010000005cf7c57926556bd0934c72f8")
    client = "2001:db8:220:1:59de:d0f4:8769:82b8"
    response, verdict = ask(engine, query(sent), client=client, now=1559741961)
    assert verdict == "valid"
    assert cookie_of(response).hex() == "22681ab97d52c298010000005cf7c609a6bb79d16625507a"


# ---- the engine's verdicts -------------------------------------------------------


def test_client_cookie_only_gets_a_16_byte_server_cookie(engine):
    response, verdict = ask(engine, query(CC))
    cookie = cookie_of(response)
    assert verdict == "client-only" and len(cookie) == 24 and cookie[:8] == CC
    assert cookie[8:] == server_cookie(SECRET_A, CC, CLIENT, NOW)
    assert [a.to_text() for a in response.answer] == [
        a.to_text() for a in dns.message.from_wire(engine.answer(query())).answer
    ]


@pytest.mark.parametrize(
    "age, verdict, echoed",
    [
        (0, "valid", True),
        (1800, "valid", True),  # half an hour: still sent back as it is
        (1801, "valid", False),  # older: a fresh one (RFC 9018 4.3)
        (3600, "valid", False),  # the last second of its hour
        (3601, "invalid", False),
        (-300, "valid", True),  # five minutes ahead: another server's clock
        (-301, "invalid", False),
    ],
)
def test_server_cookie_lifetime(engine, age, verdict, echoed):
    sent = CC + server_cookie(SECRET_A, CC, CLIENT, NOW - age)
    response, got = ask(engine, query(sent))
    assert got == verdict
    expected = sent if echoed else CC + server_cookie(SECRET_A, CC, CLIENT, NOW)
    assert cookie_of(response) == expected
    assert response.rcode() == dns.rcode.NOERROR and response.answer


def test_the_timestamp_wraps_in_serial_arithmetic(engine):
    # RFC 9018 4.3 / RFC 1982: ten minutes before the 2^32 wrap, seen five
    # minutes after it, is a cookie fifteen minutes old.
    made = 2**32 - 600
    sent = CC + server_cookie(SECRET_A, CC, CLIENT, made)
    _, verdict = ask(engine, query(sent), now=300)
    assert verdict == "valid"


@pytest.mark.parametrize(
    "case",
    [
        "wrong-secret",
        "wrong-client",
        "wrong-client-cookie",
        "version-2",
        "hash-flipped",
        "8-byte",
        "32-byte",
    ],
)
def test_a_server_cookie_that_is_not_ours_is_answered_anyway(engine, case):
    good = server_cookie(SECRET_A, CC, CLIENT, NOW - 10)
    sent = {
        "wrong-secret": CC + server_cookie(SECRET_OLD, CC, CLIENT, NOW - 10),
        "wrong-client": CC + server_cookie(SECRET_A, CC, "198.51.100.101", NOW - 10),
        "wrong-client-cookie": bytes(8) + good,
        "version-2": CC + bytes([2]) + good[1:],
        "hash-flipped": CC + good[:-1] + bytes([good[-1] ^ 1]),
        "8-byte": CC + good[:8],
        "32-byte": CC + good + bytes(16),
    }[case]
    response, verdict = ask(engine, query(sent))
    assert verdict == "invalid"
    # RFC 7873 5.2.4: a normal answer (require is off) and a fresh cookie.
    assert response.rcode() == dns.rcode.NOERROR and response.answer
    assert cookie_of(response) == sent[:8] + server_cookie(SECRET_A, sent[:8], CLIENT, NOW)


def test_rotation_accepts_the_previous_secret_and_answers_with_the_current(engine):
    old = CC + server_cookie(SECRET_A, CC, CLIENT, NOW - 10)
    engine.set_cookie_secrets(SECRET_NEW, previous=SECRET_A)
    response, verdict = ask(engine, query(old))
    assert verdict == "valid"
    assert cookie_of(response) == CC + server_cookie(SECRET_NEW, CC, CLIENT, NOW)
    # Once the previous secret is dropped, old cookies are not ours.
    engine.set_cookie_secrets(SECRET_NEW)
    assert ask(engine, query(old))[1] == "invalid"


@pytest.mark.parametrize("length", [0, 1, 7, 9, 12, 15, 41, 64])
def test_malformed_lengths_are_formerr(engine, length):
    response, verdict = ask(engine, query(bytes(range(length))))
    # RFC 7873 5.2.2.  The OPT is kept (it parsed), without a COOKIE, as Knot.
    assert verdict == "malformed"
    assert response.rcode() == dns.rcode.FORMERR
    assert response.edns == 0 and cookies_of(response) == [] and not response.answer


@pytest.mark.parametrize("length", [8, 16, 24, 40])
def test_well_formed_lengths_are_answered(engine, length):
    response, verdict = ask(engine, query(CC + bytes(length - 8)))
    assert response.rcode() == dns.rcode.NOERROR
    assert verdict == ("client-only" if length == 8 else "invalid")


def test_only_the_first_cookie_option_counts(engine):
    # RFC 7873 5.2: later COOKIE options are ignored, malformed or not.
    later = [dns.edns.GenericOption(COOKIE, b"abc")]
    response, verdict = ask(engine, query(CC, options=later))
    assert verdict == "client-only" and response.rcode() == dns.rcode.NOERROR
    assert cookies_of(response) == [CC + server_cookie(SECRET_A, CC, CLIENT, NOW)]
    later = [dns.edns.GenericOption(COOKIE, CC)]
    response, verdict = ask(engine, query(b"abc", options=later))
    assert verdict == "malformed" and response.rcode() == dns.rcode.FORMERR


def test_errors_carry_the_cookie_too(engine):
    # The cookie is about the client, not the answer: REFUSED outside our
    # zones (with its EDE) and NXDOMAIN carry it.
    expected = CC + server_cookie(SECRET_A, CC, CLIENT, NOW)
    for wire, rcode in [
        (query(CC, name="www.unserved.test."), dns.rcode.REFUSED),
        (query(CC, name="nothere.example.com."), dns.rcode.NXDOMAIN),
    ]:
        response, verdict = ask(engine, wire)
        assert response.rcode() == rcode and verdict == "client-only"
        assert cookie_of(response) == expected


def test_badvers_ignores_the_options_of_an_unknown_version(engine):
    # RFC 6891 6.1.3: an option of EDNS version 1 means nothing to a
    # version 0 server, a malformed one neither (as Knot).
    for option in (CC, b"abc"):
        response, verdict = ask(engine, query(option, edns=1))
        assert response.rcode() == dns.rcode.BADVERS and verdict == "none"
        assert cookies_of(response) == []


def test_truncated_answers_keep_the_cookie(engine):
    response, _ = ask(engine, query(CC, name="big.example.com.", rdtype="TXT", payload=512))
    assert response.flags & dns.flags.TC
    assert cookie_of(response) == CC + server_cookie(SECRET_A, CC, CLIENT, NOW)
    result = engine.answer_client(
        query(CC, name="big.example.com.", rdtype="TXT", payload=512), CLIENT, now=NOW
    )
    assert len(result.wire) <= 512


def test_an_ipv4_mapped_client_is_the_ipv4_client(engine):
    mapped, _ = ask(engine, query(CC), client="::ffff:" + CLIENT)
    plain, _ = ask(engine, query(CC))
    assert cookie_of(mapped) == cookie_of(plain)


def test_ipv6_clients_hash_all_16_bytes(engine):
    client = "2001:2::2"
    response, _ = ask(engine, query(CC), client=client)
    assert cookie_of(response) == CC + server_cookie(SECRET_A, CC, client, NOW)


def test_without_a_client_or_with_cookies_off_the_option_is_ignored(engine):
    # No address to hash: as a server without cookies (RFC 7873 5.2 ...).
    result = engine.answer_client(query(CC), None, now=NOW)
    response = dns.message.from_wire(result.wire)
    assert result.cookie == "none" and cookies_of(response) == []
    engine.set_cookie_secrets(None)
    for option in (CC, b"abc"):
        response, verdict = ask(engine, query(option))
        assert verdict == "none" and cookies_of(response) == []
        assert response.rcode() == dns.rcode.NOERROR  # even a malformed one


def test_no_cookie_no_verdict(engine):
    response, verdict = ask(engine, query())
    assert verdict == "none" and cookies_of(response) == []
    response, verdict = ask(engine, query(edns=None))
    assert verdict == "none" and response.edns < 0


def test_require_sends_badcookie_over_udp_only(engine):
    engine.set_cookie_secrets(SECRET_A, require=True)
    fresh = CC + server_cookie(SECRET_A, CC, CLIENT, NOW)
    response, verdict = ask(engine, query(CC))
    # RFC 7873 5.2.3: BADCOOKIE, the question, no records, a fresh cookie.
    assert verdict == "client-only" and response.rcode() == BADCOOKIE
    assert not response.answer and not response.authority
    assert not response.flags & dns.flags.AA
    assert str(response.question[0].name) == "www.example.com."
    assert cookie_of(response) == fresh
    # Coming back with it, the client gets its answer.
    response, verdict = ask(engine, query(fresh))
    assert verdict == "valid" and response.rcode() == dns.rcode.NOERROR and response.answer
    # An invalid server cookie is refused as well; TCP and no cookie never are.
    assert ask(engine, query(CC + bytes(16)))[0].rcode() == BADCOOKIE
    assert ask(engine, query(CC), tcp=True)[0].rcode() == dns.rcode.NOERROR
    assert ask(engine, query())[0].rcode() == dns.rcode.NOERROR


@pytest.fixture(scope="module")
def fuzz_engine(image_bytes):
    from xdpdns.engine import Image

    with Engine() as e:
        e.set_image(Image.from_bytes(image_bytes))
        e.set_cookie_secrets(SECRET_A, previous=SECRET_OLD, require=True)
        yield e


@pytest.mark.asan
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=48),
        st.binary(min_size=24, max_size=24).map(lambda b: CC + bytes([1]) + b[9:]),
    ),
    tcp=st.booleans(),
    now=st.integers(0, 2**32 - 1),
    client=st.sampled_from([CLIENT, "2001:2::2", "::ffff:198.51.100.1", None]),
    more=st.lists(st.binary(max_size=12), max_size=2),
)
def test_any_cookie_option_gets_a_well_formed_answer(fuzz_engine, data, tcp, now, client, more):
    """Under AddressSanitizer (bootstrap) a stray read in the COOKIE path
    aborts; here every option gets a response that parses, and FORMERR
    exactly when its length is wrong."""
    options = [dns.edns.GenericOption(COOKIE, m) for m in more]
    result = fuzz_engine.answer_client(query(data, options=options), client, tcp=tcp, now=now or 1)
    response = dnsdiff.parse(result.wire)
    malformed = not (len(data) == 8 or 16 <= len(data) <= 40)
    if client is None:
        assert result.cookie == "none" and cookies_of(response) == []
        return
    assert (result.cookie == "malformed") == malformed
    assert (response.rcode() == dns.rcode.FORMERR) == malformed
    if not malformed:
        assert cookie_of(response)[:8] == data[:8] and len(cookie_of(response)) == 24


def test_secrets_are_checked(engine):
    with pytest.raises(ValueError, match="16"):
        engine.set_cookie_secrets(b"short")
    with pytest.raises(OSError, match="need a current secret"):
        engine.set_cookie_secrets(None, previous=SECRET_A)


# ---- the plugin -------------------------------------------------------------------


def _parse(table):
    return plugin.parse_config(table, Where("test.toml", "plugins.cookies"))


class _Config:
    def __init__(self, section):
        self.plugins = {"cookies": section}


def test_defaults_are_on_with_a_random_secret():
    c = _parse({})
    assert c.enabled and c.secret is None and c.previous_secret is None and not c.require
    first = plugin.cookie_secrets(_Config(c))
    second = plugin.cookie_secrets(_Config(c))
    # Random, made once per process: a reload asks again and must not
    # rotate it (every client's server cookie would go stale).
    assert len(first.current) == 16 and first.current != bytes(16)
    assert second.current == first.current
    assert first.previous is None and not first.require


def test_configured_secrets_and_require():
    c = _parse(
        {"secret": SECRET_A.hex().upper(), "previous_secret": SECRET_OLD.hex(), "require": True}
    )
    assert plugin.cookie_secrets(_Config(c)) == CookieSecrets(SECRET_A, SECRET_OLD, True)
    assert plugin.cookie_secrets(_Config(_parse({"enabled": False}))) == CookieSecrets(None)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"secret": "abcd"}, "plugins.cookies.secret: expected 32 hex digits"),
        ({"secret": "zz" * 16}, "plugins.cookies.secret: expected 32 hex digits"),
        ({"secret": 5}, "plugins.cookies.secret: expected 32 hex digits"),
        (
            {"secret": SECRET_A.hex(), "previous_secret": "ab" * 17},
            "plugins.cookies.previous_secret: expected 32 hex digits",
        ),
        ({"previous_secret": SECRET_A.hex()}, "plugins.cookies.previous_secret: expected a secret"),
        ({"enabled": "yes"}, "plugins.cookies.enabled: expected true or false"),
        ({"require": 1}, "plugins.cookies.require: expected true or false"),
        ({"secrets": "x"}, "plugins.cookies.secrets: expected one of enabled"),
    ],
)
def test_bad_values_are_named(table, message):
    with pytest.raises(ConfigError, match=message):
        _parse(table)


def test_cookie_secrets_check_their_lengths():
    with pytest.raises(ValueError, match="16 bytes"):
        CookieSecrets(b"x" * 15)
    with pytest.raises(ValueError, match="without current"):
        CookieSecrets(None, require=True)


class _FleetSecret:
    @hookimpl(tryfirst=True)
    def cookie_secrets(self, config):
        return CookieSecrets(SECRET_NEW)


def test_a_plugin_placed_first_decides():
    from xdpdns.plugins import load_plugins
    from xdpdns.publication import cookie_secrets as _cookie_secrets

    pm = load_plugins()
    config = _Config(_parse({"secret": SECRET_A.hex()}))
    assert _cookie_secrets(pm, config).current == SECRET_A
    pm.register(_FleetSecret(), name="fleet-secret")
    assert _cookie_secrets(pm, config).current == SECRET_NEW


# ---- a server, over UDP and TCP ---------------------------------------------------


def _config(tmp_path, body):
    conf = tmp_path / "cookies.toml"
    conf.write_text("[plugins.cookies]\n" + body)
    return conf


def _same_second(ask_both, tries=5):
    """ask_both() -> (cookie, cookie); retried while they straddle a second
    (the timestamp's unit), so that equal inputs must give equal bytes."""
    for _ in range(tries):
        a, b = ask_both()
        if a[12:16] == b[12:16]:
            return a, b
    pytest.fail("no two answers in the same second")


def _check_ours(cookie, client, secret, client_cookie=CC):
    """The cookie is client_cookie + a server cookie of `secret` for
    `client` made in the last few seconds."""
    assert cookie[:8] == client_cookie and len(cookie) == 24
    (stamp,) = struct.unpack("!I", cookie[12:16])
    assert abs(stamp - time.time()) < 30
    assert cookie[8:] == server_cookie(secret, client_cookie, client, stamp)


def test_served_over_udp_and_tcp(xdpdns_serve, tmp_path):
    from xdpdns.config import default_zone_path

    conf = _config(tmp_path, f'secret = "{SECRET_A.hex()}"\n')
    server = xdpdns_serve(
        "--config", conf, "--listen", "127.0.0.1:0", "--zone", default_zone_path()
    )
    host, port = server.addresses[0]
    q = dns.message.make_query(
        "www.example.com.", "A", use_edns=0, options=[dns.edns.GenericOption(COOKIE, CC)]
    )

    def both():
        return (
            cookie_of(dns.query.udp(q, host, port=port, timeout=5)),
            cookie_of(dns.query.tcp(q, host, port=port, timeout=5)),
        )

    udp, tcp = _same_second(both)
    assert udp == tcp
    _check_ours(udp, host, SECRET_A)
    # The cookie comes back valid and is echoed, on both transports.
    again = dns.message.make_query(
        "www.example.com.", "A", use_edns=0, options=[dns.edns.GenericOption(COOKIE, udp)]
    )
    for send in (dns.query.udp, dns.query.tcp):
        response = send(again, host, port=port, timeout=5)
        assert cookie_of(response) == udp and response.answer
    assert SECRET_A.hex() not in server.output().lower()


def test_served_with_require_and_disabled(xdpdns_serve, tmp_path):
    from xdpdns.config import default_zone_path

    conf = _config(tmp_path, f'secret = "{SECRET_A.hex()}"\nrequire = true\n')
    server = xdpdns_serve(
        "--config", conf, "--listen", "127.0.0.1:0", "--zone", default_zone_path()
    )
    host, port = server.addresses[0]
    q = dns.message.make_query(
        "www.example.com.", "A", use_edns=0, options=[dns.edns.GenericOption(COOKIE, CC)]
    )
    assert "cookies on previous_secret=no require=yes" in server.output()
    first = dns.query.udp(q, host, port=port, timeout=5)
    assert first.rcode() == BADCOOKIE and not first.answer
    # What dig does next: the same query with the cookie it was given.
    retry = dns.message.make_query(
        "www.example.com.",
        "A",
        use_edns=0,
        options=[dns.edns.GenericOption(COOKIE, cookie_of(first))],
    )
    assert dns.query.udp(retry, host, port=port, timeout=5).answer
    assert dns.query.tcp(q, host, port=port, timeout=5).answer

    conf = _config(tmp_path, "enabled = false\n")
    server = xdpdns_serve(
        "--config", conf, "--listen", "127.0.0.1:0", "--zone", default_zone_path()
    )
    host, port = server.addresses[0]
    assert cookies_of(dns.query.udp(q, host, port=port, timeout=5)) == []
    assert "cookies off" in server.output()


# ---- XDP mode: the same cookie from AF_XDP and from the socket -------------------


@pytest.mark.xdp
@pytest.mark.asan
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_xdp_and_socket_mode_make_the_same_cookie(xdp_topology, xdp_serve, tmp_path, family):
    topo = xdp_topology
    conf = _config(tmp_path, f'secret = "{SECRET_A.hex()}"\n')
    server = xdp_serve("--config", conf, *listen_args(topo))
    host, client = (
        (topo.server_v4, topo.client_v4) if family == "ipv4" else (topo.server_v6, topo.client_v6)
    )
    before = sum(q["answered"] for q in server.stats()["xdp"]["queues"])

    def ask_port(port, option=CC):
        with topo.client.entered():
            wire = dnsdiff.exchange((host, port), query(option), timeout=2)
        assert wire is not None, f"no answer on port {port}"
        return cookie_of(dns.message.from_wire(wire))

    xdp, sock = _same_second(lambda: (ask_port(53), ask_port(SOCKET_PORT)))
    assert xdp == sock
    _check_ours(xdp, client, SECRET_A)
    # A cookie either path made is valid on the other: echoed as it is.
    assert ask_port(53, sock) == sock and ask_port(SOCKET_PORT, xdp) == xdp
    assert sum(q["answered"] for q in server.stats()["xdp"]["queues"]) - before >= 2
