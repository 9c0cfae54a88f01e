"""What the server says about itself (plugins/identity.py, answer.c's
CHAOS answers, the NSID option): configuration, the engine, and a server in
socket and XDP mode.  The byte-for-byte comparison with Knot is in
test_diff_knot.py (the chaos-* and edns-nsid rows)."""

import socket
from pathlib import Path

import dns.edns
import dns.message
import dns.name
import dns.query
import dns.rcode
import pytest

from xdpdns import __version__
from xdpdns.config import ConfigError, Where
from xdpdns.engine import ImageBuilder
from xdpdns.hookspecs import Identity, hookimpl
from xdpdns.image import build_image
from xdpdns.plugins import load_plugins
from xdpdns_plugins import identity as plugin

ZONE = str(Path(__file__).resolve().parent.parent / "zones" / "example.com.zone")


def _parse(table):
    return plugin.parse_config(table, Where("test.toml", "plugins.identity"))


# ---- configuration -------------------------------------------------------------


def test_defaults_show_the_version_and_hide_the_rest():
    c = _parse({})
    assert c.version == f"xdpdns {__version__}".encode()
    assert c.hostname is None and c.id is None and c.nsid is None


def test_true_means_the_host_name_and_strings_are_kept():
    host = socket.gethostname().encode()
    c = _parse({"version": False, "hostname": True, "id": "ns1.example", "nsid": True})
    assert c.version is None
    assert c.hostname == host and c.id == b"ns1.example" and c.nsid == host
    assert _parse({"nsid_hex": "00:ff 10"}).nsid == b"\x00\xff\x10"


@pytest.mark.parametrize(
    "table, message",
    [
        ({"version": 3}, "plugins.identity.version: expected true, false or a string"),
        ({"hostname": "x" * 256}, "plugins.identity.hostname: expected at most 255 bytes"),
        ({"nsid": "a", "nsid_hex": "00"}, "either nsid or nsid_hex"),
        ({"nsid_hex": "abc"}, "hex digits"),
        ({"nsid_hex": ""}, "1 to 255 bytes of hex"),
        ({"serial": 1}, "plugins.identity.serial: expected one of version"),
    ],
)
def test_bad_values_are_named(table, message):
    with pytest.raises(ConfigError, match=message):
        _parse(table)


# ---- the engine ----------------------------------------------------------------


def _image(**identity):
    with ImageBuilder() as b:
        b.load_zonefile(b.add_zone(dns.name.from_text("example.com.")), ZONE)
        for item, value in identity.items():
            b.set_identity(item, value)
        return b.finish()


def _ask(img, qname, qtype="TXT", rdclass="CH", **kw):
    query = dns.message.make_query(qname, qtype, rdclass=rdclass, **kw)
    return dns.message.from_wire(img.answer(query.to_wire()))


def _txt(response):
    assert response.rcode() == dns.rcode.NOERROR, response
    (rrset,) = response.answer
    assert rrset.rdclass == dns.rdataclass.CH and rrset.ttl == 0
    return b"".join(rrset[0].strings)


@pytest.mark.parametrize(
    "qname, item",
    [
        ("version.bind.", "version"),
        ("Version.Server.", "version"),
        ("hostname.bind.", "hostname"),
        ("ID.server.", "id"),
    ],
)
def test_chaos_names_answer_their_item(qname, item):
    img = _image(version=b"v 1.2", hostname=b"host-a", id=b"id-b")
    expected = {"version": b"v 1.2", "hostname": b"host-a", "id": b"id-b"}[item]
    response = _ask(img, qname)
    assert _txt(response) == expected
    assert not response.flags & dns.flags.AA
    assert str(response.answer[0].name).lower() == qname.lower()


@pytest.mark.parametrize(
    "qname, qtype",
    [
        ("hostname.bind.", "TXT"),  # hidden
        ("version.bind.", "A"),
        ("version.bind.", "ANY"),  # only TXT is answered
        ("foo.bind.", "TXT"),
        ("www.example.com.", "A"),  # not an identity name
    ],
)
def test_everything_else_in_chaos_is_refused(qname, qtype):
    assert _ask(_image(version=b"v"), qname, qtype).rcode() == dns.rcode.REFUSED


def test_a_255_byte_version_fits():
    assert _txt(_ask(_image(version=b"v" * 255), "version.bind.")) == b"v" * 255


def _nsid(response):
    return [o.data for o in response.options if o.otype == dns.edns.NSID]


def test_nsid_only_when_asked_and_configured():
    img = _image(nsid=b"\x00node-1")
    ask = [dns.edns.GenericOption(dns.edns.NSID, b"")]
    assert _nsid(_ask(img, "www.example.com.", "A", "IN", use_edns=0, options=ask)) == [
        b"\x00node-1"
    ]
    assert _nsid(_ask(img, "www.example.com.", "A", "IN", use_edns=0)) == []
    # Also on errors: the option describes the server, not the answer.
    assert _nsid(_ask(img, "nowhere.test.", "A", "IN", use_edns=0, options=ask)) == [b"\x00node-1"]
    assert _nsid(_ask(_image(), "www.example.com.", "A", "IN", use_edns=0, options=ask)) == []


def test_identity_survives_the_image_round_trip():
    img = _image(version=b"kept", nsid=b"n")
    again = type(img).from_bytes(img.to_bytes())
    assert _txt(_ask(again, "version.bind.")) == b"kept"


def test_too_long_an_item_is_refused_by_the_builder():
    with ImageBuilder() as b, pytest.raises(ValueError, match="at most 255"):
        b.set_identity("version", b"v" * 256)


# ---- plugins: order decides ----------------------------------------------------


class _FirstSays:
    @hookimpl(tryfirst=True)
    def identity(self, config):
        return Identity(version=b"from a plugin placed first")


def test_a_plugin_placed_first_overrides_the_builtin(tmp_path):
    from xdpdns.config import load_config

    pm = load_plugins()
    pm.register(_FirstSays(), name="first-says")
    conf = tmp_path / "c.toml"
    conf.write_text(
        f'[[zone]]\nfile = "{ZONE}"\norigin = "example.com"\n'
        '[plugins.identity]\nversion = "from the config"\n'
    )
    config = load_config(pm, conf)
    img = build_image(pm, config).image
    assert _txt(_ask(img, "version.bind.")) == b"from a plugin placed first"
    pm.unregister(name="first-says")
    assert _txt(_ask(build_image(pm, config).image, "version.bind.")) == b"from the config"


# ---- a server --------------------------------------------------------------------


def test_served_over_udp_and_tcp(xdpdns_serve, tmp_path):
    conf = tmp_path / "identity.toml"
    conf.write_text(
        '[plugins.identity]\nversion = "v-test"\nhostname = "ns-test"\nnsid = "nsid-test"\n'
    )
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0", "--zone", ZONE)
    host, port = server.addresses[0]
    for send in (dns.query.udp, dns.query.tcp):
        q = dns.message.make_query(
            "hostname.bind.",
            "TXT",
            rdclass="CH",
            use_edns=0,
            options=[dns.edns.GenericOption(dns.edns.NSID, b"")],
        )
        response = send(q, host, port=port, timeout=5)
        assert _txt(response) == b"ns-test" and _nsid(response) == [b"nsid-test"]
        q = dns.message.make_query("id.server.", "TXT", rdclass="CH")
        assert send(q, host, port=port, timeout=5).rcode() == dns.rcode.REFUSED


@pytest.mark.xdp
@pytest.mark.asan
def test_same_answers_in_xdp_mode(xdp_topology, xdp_serve, tmp_path):
    conf = tmp_path / "identity.toml"
    conf.write_text('[plugins.identity]\nversion = "v-xdp"\nnsid = "nsid-xdp"\n')
    server = xdp_serve("--config", conf)
    q = dns.message.make_query(
        "version.bind.",
        "TXT",
        rdclass="CH",
        use_edns=0,
        options=[dns.edns.GenericOption(dns.edns.NSID, b"")],
    )
    with xdp_topology.client.entered():
        response = dns.query.udp(q, xdp_topology.server_v4, timeout=2)
    assert _txt(response) == b"v-xdp" and _nsid(response) == [b"nsid-xdp"]
    # It came through AF_XDP, not the kernel's socket.
    assert sum(q["answered"] for q in server.stats()["xdp"]["queues"]) >= 1


def test_long_identity_items_never_outgrow_the_limit():
    # 255-byte version and NSID: with a 512-byte limit the TXT answer does
    # not fit beside the NSID (TC); with 1232 both do.
    img = _image(version=b"v" * 255, nsid=b"n" * 255)
    ask = [dns.edns.GenericOption(dns.edns.NSID, b"")]
    small = dns.message.make_query(
        "version.bind.", "TXT", rdclass="CH", use_edns=0, payload=512, options=ask
    )
    wire = img.answer(small.to_wire())
    assert len(wire) <= 512
    assert dns.message.from_wire(wire).flags & dns.flags.TC
    big = dns.message.make_query(
        "version.bind.", "TXT", rdclass="CH", use_edns=0, payload=1232, options=ask
    )
    response = dns.message.from_wire(img.answer(big.to_wire()))
    assert _txt(response) == b"v" * 255 and _nsid(response) == [b"n" * 255]
    # A 250-byte name beside a 255-byte NSID: the NSID is left out rather
    # than the limit broken.
    name = ".".join(["a" * 61] * 4) + "."
    long_q = dns.message.make_query(name, "A", use_edns=0, payload=512, options=ask)
    wire = img.answer(long_q.to_wire())
    assert len(wire) <= 512
    response = dns.message.from_wire(wire)
    assert response.rcode() == dns.rcode.REFUSED and _nsid(response) == []
