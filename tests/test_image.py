"""xdpdns/image.py: zone sources compiled into one image.  A zone handed
over as dnspython data must answer exactly like the same zone read from its
file by libzscanner (the slower path is an equal path)."""

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.zone
import pytest

from xdpdns.config import default_zone_path
from xdpdns.engine import Image
from xdpdns.hookspecs import ZoneData, ZoneFile
from xdpdns.image import ZoneLoadError, build_image, compile_sources
from xdpdns.plugins import new_plugin_manager

EXAMPLE = dns.name.from_text("example.com.")

QUERIES = [
    ("example.com.", "SOA"),
    ("example.com.", "NS"),
    ("example.com.", "MX"),
    ("example.com.", "TXT"),
    ("www.example.com.", "A"),
    ("www.example.com.", "AAAA"),
    ("web.example.com.", "A"),
    ("ftp.example.com.", "AAAA"),
    ("_sip._udp.example.com.", "SRV"),
    ("anything.apps.example.com.", "A"),
    ("anything.apps.example.com.", "TXT"),
    ("status.apps.example.com.", "TXT"),
    ("host.sub.example.com.", "A"),
    ("nothere.example.com.", "A"),
    ("www.example.com.", "MX"),
    ("www.example.org.", "A"),
    ("WwW.ExAmPlE.cOm.", "A"),
]


def example_as_dnspython():
    zone = dns.zone.from_file(str(default_zone_path()), origin=EXAMPLE, relativize=False)
    return ZoneData(EXAMPLE, list(zone.iterate_rdatasets()), "dnspython copy")


def answers(image):
    out = []
    for name, rdtype in QUERIES:
        query = dns.message.make_query(name, rdtype, use_edns=0)
        query.id = 4242
        out.append(image.answer(query.to_wire()))
    return out


def test_dnspython_data_answers_like_the_zone_file():
    from_file = compile_sources([ZoneFile(EXAMPLE, default_zone_path())])
    from_data = compile_sources([example_as_dnspython()])
    assert from_file.problems == [] and from_data.problems == []
    assert from_file.image.info.records == from_data.image.info.records
    file_answers, data_answers = answers(from_file.image), answers(from_data.image)
    for (name, rdtype), a, b in zip(QUERIES, file_answers, data_answers):
        assert a is not None, (name, rdtype)
        # Same messages; the order of RRs inside an RRset may differ.
        ma, mb = dns.message.from_wire(a), dns.message.from_wire(b)
        assert ma.rcode() == mb.rcode() and ma.flags == mb.flags, (name, rdtype)
        for section in ("answer", "authority", "additional"):
            assert sorted(map(str, getattr(ma, section))) == sorted(
                map(str, getattr(mb, section))
            ), (name, rdtype, section)


def test_example_zone_answers():
    result = compile_sources([ZoneFile(EXAMPLE, default_zone_path())])
    responses = dict(zip(QUERIES, (dns.message.from_wire(a) for a in answers(result.image))))
    www = responses[("www.example.com.", "A")]
    assert www.flags & dns.flags.AA
    assert sorted(r.to_text() for r in www.answer[0]) == ["198.18.0.10", "198.18.0.11"]
    assert responses[("nothere.example.com.", "A")].rcode() == dns.rcode.NXDOMAIN
    assert responses[("www.example.org.", "A")].rcode() == dns.rcode.REFUSED
    wildcard = responses[("anything.apps.example.com.", "A")]
    assert wildcard.answer[0].name == dns.name.from_text("anything.apps.example.com.")
    referral = responses[("host.sub.example.com.", "A")]
    assert not referral.flags & dns.flags.AA and referral.authority


def test_image_bytes_round_trip():
    result = compile_sources([ZoneFile(EXAMPLE, default_zone_path())])
    data = result.image.to_bytes()
    assert len(data) == result.image.info.bytes
    copy = Image.from_bytes(data)
    assert copy.info == result.image.info
    assert answers(copy) == answers(result.image)
    with pytest.raises(OSError):
        Image.from_bytes(data[: len(data) // 2])


def test_zone_given_twice_is_an_error():
    result = compile_sources([ZoneFile(EXAMPLE, default_zone_path()), example_as_dnspython()])
    assert result.image is None
    assert any(p.is_error and "example.com" in p.message for p in result.problems)


def test_problems_in_dnspython_data_name_the_source():
    zone = dns.zone.from_text(
        "@ 300 SOA ns1 h 1 2 3 4 5\n@ 300 NS ns1\n", origin="example.net.", relativize=False
    )
    result = compile_sources([ZoneData(zone.origin, list(zone.iterate_rdatasets()), "test data")])
    assert result.image is not None
    assert [(p.severity, p.file) for p in result.problems] == [("warning", "test data")]


def test_build_image_raises_with_every_problem(tmp_path):
    bad = tmp_path / "example.net.zone"
    bad.write_text("$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1.example.com.\nx A 1.2\ny A 1.2\n")

    class Zones:
        from xdpdns.hookspecs import hookimpl

        @hookimpl
        def zone_sources(self):
            return [ZoneFile(dns.name.from_text("example.net."), bad)]

    pm = new_plugin_manager()
    pm.register(Zones())
    with pytest.raises(ZoneLoadError) as exc:
        build_image(pm, None)
    lines = str(exc.value).splitlines()
    assert lines[:2] == [
        f"{bad}:4: error: " + exc.value.problems[0].message,
        f"{bad}:5: error: " + exc.value.problems[1].message,
    ]
