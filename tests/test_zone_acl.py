"""Per-zone ACLs: the ``allow_query``, ``deny_query``, ``allow_transfer``
and ``deny_transfer`` keys of a ``[[zone]]`` table (xdpdns/config.py),
compiled into the image (native/zone/build.c, native/zone/layout.c, checked at load by
native/image/image.c) and enforced by the answering core (native/answer/answer.c): a
denied client gets REFUSED for that zone, over UDP, TCP and AF_XDP alike.

Transfers are not served yet: AXFR and IXFR get REFUSED from everyone, with
EDE 18 (Prohibited) where the zone's transfer list denies the client; the
lookup a transfer will ask is Image.zone_allows.
"""

import ipaddress
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from conftest import diff_zones
from test_acl import ALLOWED_V4, DENIED_V4, TIMEOUT, _client_query, _tcp_exchange, _udp_query
from test_overrides import _header, _offset
from xdpdns.config import ConfigError, load_config
from xdpdns.engine import Engine, Image, ImageBuilder
from xdpdns.hookspecs import ZoneAcl
from xdpdns.plugins import load_plugins
from zoneimage import IMAGE_VERSION, SOA, seal

ZONE_TEXT = SOA + "www 3600 IN A 198.18.0.3\n"
EX = dns.name.from_text("example.com.")
NET = dns.name.from_text("example.net.")
PROHIBITED = [(dns.edns.OptionType.EDE, 18)]


def net(text):
    return ipaddress.ip_network(text)


def _zone_config(tmp_path, acl_lines, origin="example.com."):
    (tmp_path / "z.zone").write_text(ZONE_TEXT)
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(f'[[zone]]\nfile = "z.zone"\norigin = "{origin}"\n{acl_lines}\n')
    return conf


# ---- configuration -------------------------------------------------------------


def test_config_values(tmp_path):
    conf = _zone_config(
        tmp_path,
        'allow_query = ["192.0.2.0/24", "2001:db8::1"]\n'
        'deny_query = ["192.0.2.128/25"]\n'
        'allow_transfer = ["198.51.100.2"]\n'
        "deny_transfer = []",
    )
    (zone,) = load_config(load_plugins(), conf).zones
    assert zone.acl == ZoneAcl(
        allow_query=(net("192.0.2.0/24"), net("2001:db8::1/128")),
        deny_query=(net("192.0.2.128/25"),),
        allow_transfer=(net("198.51.100.2/32"),),
    )
    assert zone.acl.configured
    assert (zone.acl.default("query"), zone.acl.default("transfer")) == ("deny", "deny")


def test_config_without_acl_keys(tmp_path):
    (zone,) = load_config(load_plugins(), _zone_config(tmp_path, "")).zones
    assert zone.acl == ZoneAcl() and not zone.acl.configured
    assert ZoneAcl(deny_query=(net("192.0.2.0/24"),)).default("query") == "allow"


@pytest.mark.parametrize(
    "text, words",
    [
        (
            'allow_query = "192.0.2.0/24"',
            r"zone\[1\]\.allow_query: expected a list of IPv4 or IPv6 prefixes",
        ),
        (
            'deny_query = ["192.0.2.0/33"]',
            r"zone\[1\]\.deny_query: expected a list of IPv4 or IPv6 prefixes",
        ),
        ("allow_transfer = [53]", r"zone\[1\]\.allow_transfer: expected a list of IPv4 or IPv6"),
        (
            'deny_transfer = ["ns1.example.com"]',
            r"zone\[1\]\.deny_transfer: expected a list of IPv4 or IPv6",
        ),
        (
            'allow_query = ["192.0.2.1/24"]',
            r"zone\[1\]\.allow_query: expected a prefix without host bits set \(192.0.2.0/24 or "
            r"192.0.2.1 alone\), got '192.0.2.1/24'",
        ),
        (
            'allow_transfer = ["2001:db8::/32"]\ndeny_transfer = ["2001:db8::/32"]',
            r"zone\[1\]\.deny_transfer: expected entries that are not also in allow_transfer, "
            r"got '2001:db8::/32'",
        ),
        (
            "allow_qeury = []",
            r"zone\[1\]\.allow_qeury: expected one of the known keys: file, "
            r"origin, notify, primaries, allow_notify, dnssec, allow_query, deny_query, allow_transfer, deny_transfer",
        ),
        (
            "deny_query = ["
            + ", ".join(f'"10.{i >> 8}.{i & 255}.0/24"' for i in range(1025))
            + "]",
            r"zone\[1\]\.allow_query: expected at most 1024 IPv4 prefixes in allow_query and "
            r"deny_query together",
        ),
    ],
)
def test_config_errors_name_the_zone_and_key(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words) as info:
        load_config(load_plugins(), _zone_config(tmp_path, text))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'xdpdns.toml'}: ")
    if "known keys" not in words:  # an unknown key is found before the origin is known
        assert message.endswith("(zone example.com.)")


def test_bad_zone_acl_is_one_message_from_the_command_line(tmp_path, xdpdns_cli):
    conf = _zone_config(tmp_path, 'deny_query = ["192.0.2.1/24"]')
    result = xdpdns_cli("check", "--config", conf)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "zone[1].deny_query: expected a prefix without host bits" in result.stderr


# ---- the image: compiled, looked up, validated ---------------------------------


def _image(tmp_path, acls):
    """example.com. and example.net. (the same records); acls: {origin:
    {kind: (rules, default)}}."""
    path = tmp_path / "z.zone"
    path.write_text(ZONE_TEXT)
    with ImageBuilder() as builder:
        for origin in (EX, NET):
            zone = builder.add_zone(origin)
            builder.load_zonefile(zone, path)
            for kind, (rules, default) in acls.get(origin, {}).items():
                builder.set_zone_acl(zone, kind, rules, default)
        return builder.finish()


QUERY_ACL = {
    EX: {
        "query": (
            [
                (net("192.0.2.0/24"), "allow"),
                (net("192.0.2.128/25"), "deny"),
                (net("192.0.2.200/32"), "allow"),
                (net("2001:db8::/32"), "allow"),
                (net("2001:db8:bad::/48"), "deny"),
            ],
            "deny",
        ),
        "transfer": (
            [(net("198.51.100.0/24"), "allow"), (net("198.51.100.66/32"), "deny")],
            "deny",
        ),
    }
}


@pytest.mark.asan
@pytest.mark.parametrize(
    "client, query, transfer",
    [
        ("192.0.2.1", True, False),
        ("192.0.2.129", False, False),  # the /25 inside the allowed /24
        ("192.0.2.200", True, False),  # the /32 inside the denied /25
        ("10.0.0.1", False, False),  # no prefix: the default
        ("::ffff:192.0.2.1", True, False),  # IPv4-mapped: judged as IPv4
        ("2001:db8::1", True, False),
        ("2001:db8:bad::1", False, False),
        ("2001:db9::1", False, False),
        ("198.51.100.2", False, True),
        ("198.51.100.66", False, False),
        (None, False, False),  # unknown: held by no prefix, the defaults
    ],
)
def test_longest_prefix_decides(tmp_path, client, query, transfer):
    img = Image.from_bytes(_image(tmp_path, QUERY_ACL).to_bytes())
    assert img.info.zone_acls == 1 and img.info.version == IMAGE_VERSION
    assert img.zone_allows(dns.name.from_text("Example.COM."), "query", client) is query
    assert img.zone_allows(EX, "transfer", client) is transfer


@pytest.mark.asan
def test_zone_without_acl_queries_for_all_transfers_for_none(tmp_path):
    img = _image(tmp_path, QUERY_ACL)
    for client in ("192.0.2.129", "2001:db9::1", None):
        assert img.zone_allows(NET, "query", client)
        assert not img.zone_allows(NET, "transfer", client)
    with pytest.raises(KeyError):
        img.zone_allows(dns.name.from_text("example.org."), "query", "192.0.2.1")
    with pytest.raises(ValueError):
        img.zone_allows(EX, "notify", "192.0.2.1")


def test_no_acl_no_block(tmp_path):
    img = _image(tmp_path, {})
    assert img.info.zone_acls == 0
    h = _header(img.to_bytes())
    assert h["size"] == len(img.to_bytes())
    assert _zone_acl_fields(img.to_bytes()) == (0, 0, 0, 0)


def test_a_deny_only_list_allows_the_rest(tmp_path):
    img = _image(tmp_path, {EX: {"query": ([(net("192.0.2.0/24"), "deny")], "allow")}})
    assert not img.zone_allows(EX, "query", "192.0.2.9")
    assert img.zone_allows(EX, "query", "192.0.3.9")
    assert img.zone_allows(EX, "query", None)
    assert not img.zone_allows(EX, "transfer", "192.0.3.9")  # never set: no one


def test_builder_rejects_bad_values(tmp_path):
    path = tmp_path / "z.zone"
    path.write_text(ZONE_TEXT)
    with ImageBuilder() as builder:
        zone = builder.add_zone(EX)
        builder.load_zonefile(zone, path)
        with pytest.raises(ValueError, match="no zone 7"):
            builder.set_zone_acl(7, "query", [], "allow")
        with pytest.raises(ValueError, match="zone ACL 'notify'"):
            builder.set_zone_acl(zone, "notify", [], "allow")
        with pytest.raises(ValueError, match="zone ACL default 'maybe'"):
            builder.set_zone_acl(zone, "query", [], "maybe")
        many = [(net(f"10.{i >> 8}.{i & 255}.0/24"), "deny") for i in range(1025)]
        with pytest.raises(ValueError, match="1025 IPv4 and 0 IPv6 prefixes: at most 1024"):
            builder.set_zone_acl(zone, "query", many, "allow")
        # 1024 of each family fit.
        builder.set_zone_acl(
            zone,
            "query",
            many[:1024] + [(net(f"2001:db8:{i:x}::/48"), "deny") for i in range(1024)],
            "allow",
        )
        img = builder.finish()
    assert not img.zone_allows(EX, "query", "10.3.255.1")
    assert not img.zone_allows(EX, "query", "2001:db8:3ff::1")
    assert img.zone_allows(EX, "query", "10.4.0.1")


# The zone ACL fields follow the override fields in the header (image.h).
ZONE_ACL_FIELDS = struct.Struct("=IIII")
ZONE_ACL_AT = _offset("zone_acl_count")


def _zone_acl_fields(data):
    return ZONE_ACL_FIELDS.unpack_from(data, ZONE_ACL_AT)


def _damaged(img, damage):
    data = bytearray(img.to_bytes())
    count, start, end, _ = _zone_acl_fields(data)
    damage(data, count, start, end)
    return seal(data)


def _zone_entry_acl(data, zone):
    """Offset of zone `zone`'s acl field in the zone table (20-byte entries)."""
    return _header(data)["zone_table"] + 20 * zone + 16


@pytest.mark.asan
@pytest.mark.parametrize(
    "damage, words",
    [
        # header fields
        (
            lambda d, c, s, e: struct.pack_into("=I", d, ZONE_ACL_AT, 2),
            "zone ACL count does not match the zones",
        ),
        (
            lambda d, c, s, e: struct.pack_into("=I", d, ZONE_ACL_AT + 8, len(d) + 1),
            "zone ACL block outside the image",
        ),
        (
            lambda d, c, s, e: struct.pack_into("=I", d, ZONE_ACL_AT + 4, 64),
            "zone ACL block outside the image",
        ),
        (
            lambda d, c, s, e: struct.pack_into("=I", d, ZONE_ACL_AT + 12, 33),
            "bad NOTIFY hook",
        ),
        # the zone's pointer
        (
            lambda d, c, s, e: struct.pack_into("=I", d, _zone_entry_acl(d, 0), e),
            "zone ACL outside its block",
        ),
        (
            lambda d, c, s, e: struct.pack_into("=I", d, _zone_entry_acl(d, 0), 0),
            "zone ACL count does not match the zones",
        ),
        # the lists
        (lambda d, c, s, e: struct.pack_into("=H", d, s, 1025), "zone ACL outside its block"),
        (lambda d, c, s, e: struct.pack_into("=H", d, s + 2, 200), "zone ACL outside its block"),
        (lambda d, c, s, e: struct.pack_into("=B", d, s + 4, 7), "bad zone ACL default"),
        (lambda d, c, s, e: struct.pack_into("=B", d, s + 5, 1), "bad zone ACL default"),
        # the first prefix (192.0.2.200/32 once sorted) and the next ones
        (lambda d, c, s, e: struct.pack_into("=B", d, s + 6, 33), "bad zone ACL prefix"),
        (lambda d, c, s, e: struct.pack_into("=B", d, s + 7, 9), "bad zone ACL prefix"),
        (
            lambda d, c, s, e: struct.pack_into("=B", d, s + 6 + 20 + 2 + 3, 1),
            "bad zone ACL prefix",
        ),  # a host bit of the /25
        (
            lambda d, c, s, e: struct.pack_into("=B", d, s + 6 + 2 + 4, 1),
            "bad zone ACL prefix",
        ),  # IPv4 bytes past the fourth
        (
            lambda d, c, s, e: struct.pack_into("=H", d, s + 6 + 18, 1),
            "bad zone ACL prefix",
        ),  # a TSIG key the image does not have
        (
            lambda d, c, s, e: struct.pack_into("=B", d, s + 6 + 40, 32),
            "zone ACL prefixes not longest first",
        ),  # the /24 claims /32 after the /25
    ],
)
def test_loader_rejects_a_malformed_zone_acl(tmp_path, damage, words):
    img = _image(tmp_path, QUERY_ACL)
    Image.from_bytes(img.to_bytes())  # the undamaged one loads
    with pytest.raises(OSError, match=words):
        Image.from_bytes(_damaged(img, damage))


def test_loader_rejects_unsorted_prefixes(tmp_path):
    img = _image(tmp_path, QUERY_ACL)

    def swap(d, c, s, e):
        first, second = s + 6, s + 6 + 20  # the /32, then the /25
        a, b = bytes(d[first : first + 20]), bytes(d[second : second + 20])
        d[first : first + 20], d[second : second + 20] = b, a

    with pytest.raises(OSError, match="zone ACL prefixes not longest first"):
        Image.from_bytes(_damaged(img, swap))


# ---- the answering core ------------------------------------------------------------


@pytest.fixture
def engine(tmp_path):
    with Engine() as e:
        e.set_image(_image(tmp_path, QUERY_ACL))
        yield e


def _ask(engine, qname, client, qtype="A", edns=0, tcp=False):
    query = dns.message.make_query(qname, qtype, use_edns=edns)
    wire = engine.answer(query.to_wire(), client=client, tcp=tcp)
    response = dns.message.from_wire(wire)
    assert response.id == query.id and response.question == query.question
    return response


def _options(response):
    return [(o.otype, o.code) for o in response.options]


@pytest.mark.asan
@pytest.mark.parametrize(
    "client, allowed",
    [
        ("192.0.2.1", True),
        ("192.0.2.129", False),
        ("192.0.2.200", True),
        ("10.0.0.1", False),
        ("2001:db8::1", True),
        ("2001:db8:bad::1", False),
        ("::1", False),
    ],
)
@pytest.mark.parametrize("tcp", [False, True])
def test_denied_client_refused_for_that_zone_only(engine, client, allowed, tcp):
    r = _ask(engine, "www.example.com.", client, tcp=tcp)
    if allowed:
        assert r.rcode() == dns.rcode.NOERROR and r.answer and r.flags & dns.flags.AA
        assert _options(r) == []
    else:
        # What BIND's allow-query answers: REFUSED, AA clear, nothing else;
        # the reason in an EDE (RFC 8914 4.19).
        assert r.rcode() == dns.rcode.REFUSED
        assert not r.flags & dns.flags.AA
        assert not (r.answer or r.authority or r.additional)
        assert _options(r) == PROHIBITED
    # The zone without an ACL answers everyone.
    other = _ask(engine, "www.example.net.", client, tcp=tcp)
    assert other.rcode() == dns.rcode.NOERROR and other.answer


@pytest.mark.asan
def test_denied_client_refused_for_every_name_and_type(engine):
    for qname, qtype in (
        ("example.com.", "SOA"),
        ("nothere.example.com.", "A"),
        ("example.com.", "ANY"),
        ("www.example.com.", "TXT"),
    ):
        r = _ask(engine, qname, "192.0.2.129", qtype)
        assert r.rcode() == dns.rcode.REFUSED and _options(r) == PROHIBITED, (qname, qtype)
    r = _ask(engine, "www.example.com.", "192.0.2.129", edns=None)
    assert r.rcode() == dns.rcode.REFUSED and r.edns < 0  # no OPT without one asked


@pytest.mark.asan
def test_unknown_client_gets_the_default(engine, tmp_path):
    """No client (only callers inside the process): held by no prefix, so
    the zone's allow list refuses it."""
    r = _ask(engine, "www.example.com.", None)
    assert r.rcode() == dns.rcode.REFUSED and _options(r) == PROHIBITED
    with Engine() as e:
        e.set_image(_image(tmp_path, {EX: {"query": ([(net("192.0.2.0/24"), "deny")], "allow")}}))
        assert _ask(e, "www.example.com.", None).rcode() == dns.rcode.NOERROR


@pytest.mark.asan
@pytest.mark.parametrize("qtype", ["AXFR", "IXFR"])
def test_transfers_refused_and_denied_ones_say_why(engine, qtype):
    """No transfers are served yet: REFUSED for everyone, as before; the
    zone's transfer list adds EDE Prohibited for a client it denies."""
    allowed = _ask(engine, "example.com.", "198.51.100.2", qtype, tcp=True)
    assert allowed.rcode() == dns.rcode.REFUSED and _options(allowed) == []
    for client in ("198.51.100.66", "192.0.2.1", None):
        denied = _ask(engine, "example.com.", client, qtype, tcp=True)
        assert denied.rcode() == dns.rcode.REFUSED and _options(denied) == PROHIBITED
    # A zone without an ACL: what every transfer got before.
    plain = _ask(engine, "example.net.", "198.51.100.2", qtype, tcp=True)
    assert plain.rcode() == dns.rcode.REFUSED and _options(plain) == []


@pytest.mark.asan
def test_image_without_acls_answers_as_before(tmp_path):
    """The same queries against an image with no ACL: every answer and
    every transfer refusal byte for byte what an engine without a client gets."""
    with Engine() as e:
        img = _image(tmp_path, {})
        e.set_image(Image.from_bytes(img.to_bytes()))
        for qname, qtype in (
            ("www.example.com.", "A"),
            ("example.com.", "AXFR"),
            ("nothere.example.net.", "A"),
        ):
            wire = dns.message.make_query(qname, qtype, use_edns=0).to_wire()
            assert e.answer(wire, client="192.0.2.129") == img.answer(wire)


@pytest.mark.asan
def test_override_in_a_zone_follows_its_acl(tmp_path):
    """Overrides are looked up before zones: a client the zone denies gets
    REFUSED for the override's names too; names outside every zone are not
    the zone ACLs' business."""
    path = tmp_path / "z.zone"
    path.write_text(ZONE_TEXT)
    with ImageBuilder() as builder:
        zone = builder.add_zone(EX)
        builder.load_zonefile(zone, path)
        builder.set_zone_acl(zone, "query", [(net("192.0.2.0/24"), "deny")], "allow")
        rule = builder.add_override_rule("nxdomain")
        builder.add_override(dns.name.from_text("blocked.example.com."), rule)
        builder.add_override(dns.name.from_text("blocked.example.org."), rule)
        img = builder.finish()
    with Engine() as e:
        e.set_image(img)
        r = _ask(e, "blocked.example.com.", "192.0.2.1")
        assert r.rcode() == dns.rcode.REFUSED and _options(r) == PROHIBITED
        assert _ask(e, "blocked.example.com.", "192.0.3.1").rcode() == dns.rcode.NXDOMAIN
        assert _ask(e, "blocked.example.org.", "192.0.2.1").rcode() == dns.rcode.NXDOMAIN


# ---- socket mode: xdpdns serve over UDP and TCP -----------------------------------


def _serve_config(tmp_path, acl_lines, listen='"127.0.0.1:0", "[::1]:0"'):
    (tmp_path / "z.zone").write_text(ZONE_TEXT)
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        f"[server]\nlisten = [{listen}]\nudp_workers = 1\n"
        f'[[zone]]\nfile = "z.zone"\norigin = "example.com."\n{acl_lines}\n'
        f'[[zone]]\nfile = "z.zone"\norigin = "example.net."\n'
    )
    return conf


def test_serve_refuses_denied_clients_over_udp_and_tcp(xdpdns_serve, tmp_path):
    server = xdpdns_serve(
        "--config",
        _serve_config(
            tmp_path,
            f'allow_query = ["127.0.0.0/8"]\ndeny_query = ["{DENIED_V4}"]\n'
            f'allow_transfer = ["{ALLOWED_V4}"]',
        ),
    )
    assert "zone ACLs zones=1" in server.output()
    v4, v6 = server.addresses
    for exchange in (_udp_query, _tcp_exchange):
        for source, address, allowed in (
            (ALLOWED_V4, v4, True),
            (DENIED_V4, v4, False),
            ("::1", v6, False),
        ):
            for origin in ("example.com.", "example.net."):
                query = dns.message.make_query("www." + origin, "A", use_edns=0)
                r = dns.message.from_wire(exchange(source, address, query.to_wire()))
                what = (exchange.__name__, source, origin)
                if allowed or origin == "example.net.":
                    assert r.rcode() == dns.rcode.NOERROR and r.answer, what
                else:
                    assert r.rcode() == dns.rcode.REFUSED, what
                    assert _options(r) == PROHIBITED, what
    axfr = dns.message.make_query("example.com.", "AXFR", use_edns=0).to_wire()
    # The allowed client gets the transfer (tests/test_axfr.py has the rest).
    allowed = dns.message.from_wire(_tcp_exchange(ALLOWED_V4, v4, axfr))
    assert allowed.rcode() == dns.rcode.NOERROR
    assert allowed.answer[0].rdtype == dns.rdatatype.SOA
    denied = dns.message.from_wire(_tcp_exchange(DENIED_V4, v4, axfr))
    assert denied.rcode() == dns.rcode.REFUSED and _options(denied) == PROHIBITED


# ---- XDP mode: the AF_XDP workers run the same core ----------------------------------


@pytest.mark.xdp
@pytest.mark.asan
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_xdp_denied_client_refused_for_that_zone(xdp_topology, xdp_serve, tmp_path, family):
    """The client's address is denied example.com. but not parent.test.:
    REFUSED for one, answers for the other, through XDP and over TCP/53.
    A zone with an ACL is the AF_XDP workers' to answer (the workers'
    `answered` moves); the other may be the program's answer table's."""
    topo = xdp_topology
    zones = dict(diff_zones())
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        f'[[zone]]\nfile = "{zones["example.com."]}"\n'
        f'deny_query = ["{topo.client_v4}", "{topo.client_v6}"]\n'
        f'[[zone]]\nfile = "{zones["parent.test."]}"\n'
    )
    server = xdp_serve("--config", conf, diff_zones=False)
    v6 = family == "ipv6"
    host = topo.server_v6 if v6 else topo.server_v4
    source = topo.client_v6 if v6 else topo.client_v4

    def answered():
        return sum(q["answered"] for q in server.stats()["xdp"]["queues"])

    def in_xdp():
        return server.stats()["xdp"]["program"]["answered_in_xdp"]

    before, before_in_xdp = answered(), in_xdp()
    for qname, rcode in (
        ("www.example.com.", dns.rcode.REFUSED),
        ("www.parent.test.", dns.rcode.NOERROR),
    ):
        query = dns.message.make_query(qname, "A", use_edns=0)
        for tcp in (False, True):
            wire = _client_query(topo, source, host, 53, query.to_wire(), tcp=tcp)
            assert wire is not None, (qname, tcp)
            r = dns.message.from_wire(wire)
            assert r.rcode() == rcode, (qname, tcp)
            if rcode == dns.rcode.REFUSED:
                assert _options(r) == PROHIBITED and not r.answer
            else:
                assert r.answer
    # The two UDP queries went through XDP, the refused one through a worker.
    import time

    deadline = time.monotonic() + TIMEOUT
    while answered() + in_xdp() < before + before_in_xdp + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answered() + in_xdp() >= before + before_in_xdp + 2
    assert answered() >= before + 1
