"""Overrides (plugins/overrides.py, native/zone/override.c, the override block of
the image, answer.c's answer_override): per-name rules that win over zone
data.  The answers of every action, which rule applies (exact over subtree,
longer subtree over shorter), the image round trip and its validation,
blocklist files, configuration, plugin order, and a server."""

import struct
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdpdns.config import ConfigError, Where, load_config
from xdpdns.engine import Image, ImageBuilder
from xdpdns.hookspecs import Blocklist, Identity, Override, ZoneFile, hookimpl
from xdpdns.image import ZoneLoadError, build_image, compile_sources
from xdpdns.plugins import load_plugins, new_plugin_manager, plugin_order
from xdpdns_plugins import overrides as plugin
from zoneimage import IMAGE_VERSION, SOA, ask, rrsets, seal

ZONE = (
    SOA
    + """\
www 3600 IN A 198.18.0.3
mail 3600 IN A 198.18.0.4
ads 3600 IN A 198.18.0.5
x.ads 3600 IN A 198.18.0.6
*.wild 3600 IN A 198.18.0.9
sub 3600 IN NS ns.sub
ns.sub 3600 IN A 198.18.0.12
"""
)
NEGATIVE_SOA = (
    "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300"
)
SINKHOLE = ("A 198.18.0.53", "AAAA 2001:2::53")


def _name(text):
    return dns.name.from_text(text)


def _records(*texts):
    out = []
    for text in texts:
        rdtype, rdata = text.split(None, 1)
        out.append(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), rdata))
    return tuple(out)


def rule(name, action, subtree=False, records=(), ttl=300):
    return Override(_name(name), action, subtree, _records(*records), ttl)


def build(tmp_path, *overrides, zone=ZONE):
    path = tmp_path / "example.com.zone"
    path.write_text(zone)
    result = compile_sources([ZoneFile(_name("example.com."), path)], overrides=overrides)
    assert result.image is not None, "\n".join(map(str, result.problems))
    return result.image


def negative(response, rcode, soa=True):
    assert response.rcode() == rcode, response
    assert response.flags & dns.flags.AA
    assert response.answer == []
    # Names compress against the query name, so they come in its case.
    assert {r.lower() for r in rrsets(response.authority)} == (
        {NEGATIVE_SOA.lower()} if soa else set()
    )


# ---- the answers of every action ----------------------------------------------


def test_nxdomain_inside_a_zone_carries_its_soa(tmp_path):
    img = build(tmp_path, rule("www.example.com.", "nxdomain"))
    negative(ask(img, "www.example.com."), dns.rcode.NXDOMAIN)
    assert rrsets(ask(img, "mail.example.com.").answer) == {
        "mail.example.com. 3600 IN A 198.18.0.4"
    }


def test_nodata_inside_a_zone_carries_its_soa(tmp_path):
    img = build(tmp_path, rule("mail.example.com.", "nodata"))
    for qtype in ("A", "AAAA", "ANY"):
        negative(ask(img, "mail.example.com.", qtype), dns.rcode.NOERROR)


def test_refused_has_no_aa(tmp_path):
    img = build(tmp_path, rule("www.example.com.", "refused"), rule("other.test.", "refused"))
    for qname in ("www.example.com.", "other.test."):
        response = ask(img, qname)
        assert response.rcode() == dns.rcode.REFUSED
        assert not response.flags & dns.flags.AA and not response.answer and not response.authority


def test_names_outside_any_zone_get_no_soa(tmp_path):
    img = build(
        tmp_path, rule("ads.test.", "nxdomain", subtree=True), rule("empty.test.", "nodata")
    )
    negative(ask(img, "ads.test."), dns.rcode.NXDOMAIN, soa=False)
    negative(ask(img, "a.b.ads.test.", "AAAA"), dns.rcode.NXDOMAIN, soa=False)
    negative(ask(img, "empty.test."), dns.rcode.NOERROR, soa=False)
    # Beside them, the rest outside our zones is still refused.
    assert ask(img, "nothing.test.").rcode() == dns.rcode.REFUSED
    assert ask(img, "test.").rcode() == dns.rcode.REFUSED


def test_fixed_answer_records_and_ttl(tmp_path):
    img = build(tmp_path, rule("sink.test.", "answer", True, SINKHOLE + ('TXT "blocked"',), ttl=42))
    for qtype, rdata in (("A", "198.18.0.53"), ("AAAA", "2001:2::53"), ("TXT", '"blocked"')):
        response = ask(img, "Host.Sink.test.", qtype)
        assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
        # Owned by the query name, as the client spelt it, with the rule's TTL.
        assert rrsets(response.answer) == {f"Host.Sink.test. 42 IN {qtype} {rdata}"}
        assert response.authority == [] and response.additional == []
    # A type the rule does not hold: NODATA; ANY: one RRset (RFC 8482).
    negative(ask(img, "sink.test.", "MX"), dns.rcode.NOERROR, soa=False)
    (any_rrset,) = ask(img, "sink.test.", "ANY").answer
    assert len(any_rrset) == 1


def test_fixed_cname_answers_every_type(tmp_path):
    img = build(
        tmp_path,
        rule("www.example.com.", "answer", records=("CNAME sinkhole.example.net.",), ttl=60),
    )
    for qtype in ("A", "AAAA", "CNAME", "MX"):
        response = ask(img, "www.example.com.", qtype)
        # The client follows the CNAME: nothing is chased here.
        assert rrsets(response.answer) == {"www.example.com. 60 IN CNAME sinkhole.example.net."}


def test_fixed_answer_inside_a_zone_has_no_additional_or_authority(tmp_path):
    img = build(tmp_path, rule("mail.example.com.", "answer", records=("MX 10 www.example.com.",)))
    response = ask(img, "mail.example.com.", "MX")
    assert rrsets(response.answer) == {"mail.example.com. 300 IN MX 10 www.example.com."}
    assert response.additional == [] and response.authority == []
    negative(ask(img, "mail.example.com.", "A"), dns.rcode.NOERROR)


def test_a_fixed_answer_too_big_for_udp_is_truncated(tmp_path):
    big = tuple(f'TXT "{i:03d}{"x" * 200}"' for i in range(10))
    img = build(tmp_path, rule("big.test.", "answer", records=big))
    response = ask(img, "big.test.", "TXT")
    assert response.flags & dns.flags.TC and not response.answer
    assert len(ask(img, "big.test.", "TXT", tcp=True).answer[0]) == 10


# ---- which rule applies ------------------------------------------------------------


def test_exact_rule_beats_subtree_rule_of_the_same_name(tmp_path):
    img = build(
        tmp_path,
        rule("ads.example.com.", "nxdomain", subtree=True),
        rule("ads.example.com.", "answer", records=("A 198.18.0.99",)),
    )
    assert rrsets(ask(img, "ads.example.com.").answer) == {"ads.example.com. 300 IN A 198.18.0.99"}
    negative(ask(img, "x.ads.example.com."), dns.rcode.NXDOMAIN)
    negative(ask(img, "deeper.x.ads.example.com."), dns.rcode.NXDOMAIN)


def test_exact_rule_applies_to_the_name_alone(tmp_path):
    img = build(tmp_path, rule("ads.example.com.", "nxdomain"))
    negative(ask(img, "ads.example.com."), dns.rcode.NXDOMAIN)
    # x.ads is zone data again.
    assert rrsets(ask(img, "x.ads.example.com.").answer) == {
        "x.ads.example.com. 3600 IN A 198.18.0.6"
    }


def test_longer_subtree_beats_shorter(tmp_path):
    img = build(
        tmp_path,
        rule("example.com.", "refused", subtree=True),
        rule("ads.example.com.", "nxdomain", subtree=True),
        rule("ok.ads.example.com.", "answer", subtree=True, records=("A 198.18.0.7",)),
    )
    assert ask(img, "www.example.com.").rcode() == dns.rcode.REFUSED
    assert ask(img, "example.com.", "SOA").rcode() == dns.rcode.REFUSED
    negative(ask(img, "x.ads.example.com."), dns.rcode.NXDOMAIN)
    assert rrsets(ask(img, "a.ok.ads.example.com.").answer) == {
        "a.ok.ads.example.com. 300 IN A 198.18.0.7"
    }


def test_exact_rule_of_an_ancestor_does_not_apply_below_it(tmp_path):
    img = build(
        tmp_path, rule("example.com.", "refused"), rule("ads.example.com.", "nodata", subtree=True)
    )
    assert ask(img, "example.com.", "NS").rcode() == dns.rcode.REFUSED
    assert rrsets(ask(img, "www.example.com.").answer) == {"www.example.com. 3600 IN A 198.18.0.3"}
    negative(ask(img, "x.ads.example.com."), dns.rcode.NOERROR)


def test_overrides_beat_wildcards_delegations_and_the_apex(tmp_path):
    img = build(
        tmp_path,
        rule("a.wild.example.com.", "nxdomain"),
        rule("host.sub.example.com.", "nxdomain"),
        rule("example.com.", "answer", records=("A 198.18.0.1",)),
    )
    negative(ask(img, "a.wild.example.com."), dns.rcode.NXDOMAIN)
    assert rrsets(ask(img, "b.wild.example.com.").answer) == {
        "b.wild.example.com. 3600 IN A 198.18.0.9"
    }
    # Below a zone cut the rule still answers, with the SOA of the zone we serve.
    negative(ask(img, "host.sub.example.com."), dns.rcode.NXDOMAIN)
    assert not ask(img, "other.sub.example.com.").flags & dns.flags.AA  # the referral
    assert rrsets(ask(img, "example.com.").answer) == {"example.com. 300 IN A 198.18.0.1"}
    negative(ask(img, "example.com.", "SOA"), dns.rcode.NOERROR)


def test_rules_are_case_insensitive(tmp_path):
    img = build(
        tmp_path, rule("ADS.Example.COM.", "nxdomain", subtree=True), rule("Mixed.Test.", "refused")
    )
    for qname in ("ads.example.com.", "AdS.eXaMpLe.CoM.", "X.ADS.EXAMPLE.COM."):
        negative(ask(img, qname), dns.rcode.NXDOMAIN)
    assert ask(img, "mIxEd.tEsT.").rcode() == dns.rcode.REFUSED


def test_the_first_rule_for_a_name_wins(tmp_path):
    img = build(
        tmp_path,
        rule("www.example.com.", "refused"),
        rule("www.example.com.", "nxdomain"),
        rule("www.example.com.", "nodata", subtree=True),
    )
    assert ask(img, "www.example.com.").rcode() == dns.rcode.REFUSED
    negative(ask(img, "a.www.example.com."), dns.rcode.NOERROR)
    with ImageBuilder() as b:
        nx = b.add_override_rule("nxdomain")
        assert b.add_override(_name("a.test."), nx) is True
        assert b.add_override(_name("A.TEST."), nx) is False
        assert b.add_override(_name("a.test."), nx, subtree=True) is True


def test_overrides_leave_chaos_alone(tmp_path):
    path = tmp_path / "example.com.zone"
    path.write_text(ZONE)
    img = compile_sources(
        [ZoneFile(_name("example.com."), path)],
        Identity(version=b"v1"),
        [rule(".", "refused", subtree=True)],
    ).image
    assert ask(img, "www.example.com.").rcode() == dns.rcode.REFUSED
    assert ask(img, "version.bind.").rcode() == dns.rcode.REFUSED  # class IN: the rule
    chaos = ask(img, "version.bind.", "TXT", rdclass="CH")
    assert chaos.rcode() == dns.rcode.NOERROR and chaos.answer[0][0].strings == (b"v1",)


def test_identical_rules_share_one_block(tmp_path):
    many = [rule(f"n{i}.test.", "nxdomain") for i in range(200)]
    many += [rule(f"s{i}.test.", "answer", records=SINKHOLE) for i in range(100)]
    many += [rule("t.test.", "answer", records=SINKHOLE, ttl=5)]
    h = _header(build(tmp_path, *many).to_bytes())
    assert h["override_count"] == 301 and h["override_rule_count"] == 3


# ---- the image ---------------------------------------------------------------------

OVERRIDES = (
    rule("www.example.com.", "nxdomain"),
    rule("ads.test.", "refused", subtree=True),
    rule("sink.test.", "answer", True, SINKHOLE, ttl=30),
    rule("sink.test.", "nodata"),
)
QUERIES = [
    (q, t)
    for q in (
        "www.example.com.",
        "mail.example.com.",
        "x.ads.test.",
        "sink.test.",
        "a.sink.test.",
        "nothing.test.",
    )
    for t in ("A", "AAAA", "TXT")
]


def _answers(img):
    out = []
    for qname, qtype in QUERIES:
        query = dns.message.make_query(qname, qtype, use_edns=0)
        query.id = 4242
        out.append(img.answer(query.to_wire()))
    return out


def test_image_round_trip_keeps_the_overrides(tmp_path):
    img = build(tmp_path, *OVERRIDES)
    again = Image.from_bytes(img.to_bytes())
    assert again.info == img.info and again.info.overrides == 3
    assert again.info.version == IMAGE_VERSION
    assert _answers(again) == _answers(img)


def test_an_image_without_overrides_round_trips(tmp_path):
    img = build(tmp_path)
    assert img.info.overrides == 0
    assert Image.from_bytes(img.to_bytes()).info == img.info


# The header (image.h) as the loader reads it, little- or big-endian as built.
HEADER = struct.Struct("=8sIIQQ IIIIII QQQ QQ I IIIIIII QQQQ IIII".replace(" ", ""))
FIELDS = (
    "magic version byte_order size checksum zone_count zone_table zone_hash "
    "zone_hash_size name_hash name_hash_size names rrsets records origin_lo origin_hi "
    "identity override_count override_hash override_hash_size override_rules "
    "override_rule_count override_entries override_filter exact_lo exact_hi subtree_lo "
    "subtree_hi zone_acl_count zone_acls zone_acls_end reserved"
).split()


def _header(data):
    return dict(zip(FIELDS, HEADER.unpack_from(data)))


def _set(data, field, value):
    code = "=" + _codes()[FIELDS.index(field)]
    offset = _offset(field)
    data[offset : offset + struct.calcsize(code)] = struct.pack(code, value)


def _codes():
    return ["8s"] + list(HEADER.format[3:].replace(" ", ""))


def _offset(field):
    return struct.calcsize("=" + "".join(_codes()[: FIELDS.index(field)]))


def _u32(data, off):
    return struct.unpack_from("=I", data, off)[0]


def _first_entry(data, h):
    """Offset of the slot and of the entry of the first used hash slot."""
    for i in range(h["override_hash_size"]):
        slot = h["override_hash"] + 8 * i
        if _u32(data, slot + 4):
            return slot, _u32(data, slot + 4)
    raise AssertionError("no override entry")


def _damage(data, h, what):
    rule0 = _u32(data, h["override_rules"])
    slot, entry = _first_entry(data, h)
    if what == "count":
        _set(data, "override_count", h["override_count"] + 1)
    elif what == "fields without overrides":
        _set(data, "override_count", 0)
    elif what == "hash size":
        _set(data, "override_hash_size", 3)
    elif what == "hash outside":
        _set(data, "override_hash", h["size"] - 8)
    elif what == "rule outside":
        data[h["override_rules"] : h["override_rules"] + 4] = struct.pack("=I", h["size"] - 2)
    elif what == "rule action":
        data[rule0] = 9
    elif what == "entry rule":
        data[entry + 2 : entry + 6] = struct.pack("=I", 99)
    elif what == "entry without rules":
        data[entry + 2 : entry + 10] = bytes(8)
    elif what == "entry outside":
        data[slot + 4 : slot + 8] = struct.pack("=I", h["override_hash"] + 8)
    elif what == "name case":
        data[entry + 11] = ord(chr(data[entry + 11]).upper())
    elif what == "name length":
        data[entry] = 0xFF
    elif what == "tag":
        data[slot] ^= 1
    elif what == "bitmap":
        _set(data, "subtree_lo", h["subtree_lo"] | 1 << 9)
    elif what == "filter misaligned":
        _set(data, "override_filter", h["override_filter"] + 1)
    elif what == "filter outside":
        _set(data, "override_filter", (h["size"] + 63) // 64 * 64)
    elif what == "filter bits":
        start, size = h["override_filter"], max(64, h["override_hash_size"])
        data[start : start + size] = bytes(size)
    return seal(data)


@pytest.mark.parametrize(
    "what, message",
    [
        ("count", "override count does not match the hash"),
        ("fields without overrides", "override fields set without overrides"),
        ("hash size", "override tables outside the image"),
        ("hash outside", "override tables outside the image"),
        ("rule outside", "override rule outside its block"),
        ("rule action", "bad override rule"),
        ("entry rule", "override entry without a valid rule"),
        ("entry without rules", "override entry without a valid rule"),
        ("entry outside", "override entry outside its block"),
        ("name case", "bad override name"),
        ("name length", "override entry outside its block"),
        ("tag", "override hash does not find its entry"),
        ("bitmap", "override label bitmaps do not match the entries"),
        ("filter misaligned", "override tables outside the image"),
        ("filter outside", "override tables outside the image"),
        ("filter bits", "override filter misses an entry"),
    ],
)
def test_damaged_override_blocks_are_refused(tmp_path, what, message):
    data = bytearray(build(tmp_path, *OVERRIDES).to_bytes())
    h = _header(data)
    assert h["version"] == IMAGE_VERSION and h["override_count"] == 3
    Image.from_bytes(seal(bytearray(data)))  # re-sealing alone keeps it valid
    with pytest.raises(OSError, match="invalid zone image: " + message):
        Image.from_bytes(_damage(data, h, what))


def test_damaged_override_rrsets_are_refused(tmp_path):
    img = build(tmp_path, rule("sink.test.", "answer", records=SINKHOLE))
    data = bytearray(img.to_bytes())
    h = _header(data)
    rule0 = _u32(data, h["override_rules"])
    rrset = rule0 + 4
    bad = bytearray(data)
    bad[rrset + 2 : rrset + 4] = struct.pack("=H", 2)  # RR count
    with pytest.raises(OSError, match="RR lengths do not add up"):
        Image.from_bytes(seal(bad))
    bad = bytearray(data)
    bad[rrset + 6] = 1  # a relocation: nothing in an override is relative to a zone
    with pytest.raises(OSError, match="bad override RRset"):
        Image.from_bytes(seal(bad))
    bad = bytearray(data)
    bad[rrset + 4 : rrset + 6] = struct.pack("=H", 60000)  # wire length past the block
    with pytest.raises(OSError, match="override RRset outside its block"):
        Image.from_bytes(seal(bad))


@pytest.fixture(scope="module")
def override_image(tmp_path_factory):
    return bytearray(build(tmp_path_factory.mktemp("ovfuzz"), *OVERRIDES).to_bytes())


@pytest.mark.asan
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=4)
)
def test_resealed_damage_in_the_override_block_never_crashes(override_image, flips):
    data = bytearray(override_image)
    h = _header(data)
    start = h["override_rules"]
    for where, xor in flips:
        data[start + where % (len(data) - start)] ^= xor
    try:
        img = Image.from_bytes(seal(data))
    except OSError as exc:
        assert "zone image" in str(exc)
        return
    for answer in _answers(img):  # accepted: then it must answer sanely
        _check_structure(answer)


def _skip_name(wire, pos):
    while True:
        length = wire[pos]
        if length & 0xC0 == 0xC0:
            assert wire[pos + 1] + (length & 0x3F) * 256 < pos, "forward pointer"
            return pos + 2
        pos += 1 + length
        if length == 0:
            return pos


def _check_structure(wire):
    """The message holds what its header counts, to the byte (the RDATA of a
    damaged type may mean nothing: its lengths must still add up)."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    pos = 12
    for _ in range(qd):
        pos = _skip_name(wire, pos) + 4
    for _ in range(an + ns + ar):
        pos = _skip_name(wire, pos)
        pos += 10 + struct.unpack_from("!H", wire, pos + 8)[0]
    assert pos == len(wire)


# ---- the builder API ---------------------------------------------------------------


def test_builder_refuses_bad_rules_and_records():
    with ImageBuilder() as b:
        with pytest.raises(ValueError, match="expected one of"):
            b.add_override_rule("drop")
        with pytest.raises(ValueError, match="a CNAME stands alone"):
            b.add_override_rule("answer", 60, _records("A 192.0.2.1", "CNAME x.test."))
        with pytest.raises(ValueError, match="names must be absolute"):
            b.add_override_rule(
                "answer",
                60,
                [dns.rdata.from_text("IN", "CNAME", "x", relativize_to=None, origin=None)],
            )
        nx = b.add_override_rule("nxdomain")
        with pytest.raises(ValueError, match="not absolute"):
            b.add_override(dns.name.from_text("x", origin=None), nx)
        with pytest.raises(OSError, match="unknown override rule"):
            b.add_override(_name("x.test."), 99)


def test_an_answer_rule_without_records_is_a_problem():
    with ImageBuilder() as b:
        b.add_override_rule("answer", 60)
        assert b.check() == 1
        assert "an answer without records" in b.problems()[0].message


def test_override_dataclasses_check_their_fields():
    with pytest.raises(ValueError, match="records are needed with action 'answer'"):
        Override(_name("a.test."), "answer")
    with pytest.raises(ValueError, match="records are needed with action 'answer' and only there"):
        Override(_name("a.test."), "nxdomain", records=_records("A 192.0.2.1"))
    with pytest.raises(ValueError, match="expected an absolute"):
        Override(dns.name.from_text("a", origin=None), "nxdomain")
    with pytest.raises(ValueError, match="ttl"):
        Blocklist(Path("x"), "answer", records=_records("A 192.0.2.1"), ttl=-1)


# ---- blocklist files -----------------------------------------------------------------

BLOCKLIST = """\
# a comment line, then a blank one

ads.example.com
tracker.test.   # a trailing comment
\t*.Sub.Tracker.test\r
escaped\\.dot.test
\\065bc.test
"""


def _blocked(tmp_path, text, action="nxdomain", subtree=False, records=(), name="list.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path, Blocklist(path, action, subtree, _records(*records))


def test_blocklist_names_and_comments(tmp_path):
    _, blocklist = _blocked(tmp_path, BLOCKLIST)
    img = build(tmp_path, blocklist)
    assert img.info.overrides == 5
    negative(ask(img, "ads.example.com."), dns.rcode.NXDOMAIN)
    assert rrsets(ask(img, "x.ads.example.com.").answer) == {
        "x.ads.example.com. 3600 IN A 198.18.0.6"
    }
    negative(ask(img, "tracker.test."), dns.rcode.NXDOMAIN, soa=False)
    assert ask(img, "x.tracker.test.").rcode() == dns.rcode.REFUSED
    negative(ask(img, "sub.tracker.test."), dns.rcode.NXDOMAIN, soa=False)
    negative(ask(img, "a.b.sub.tracker.test."), dns.rcode.NXDOMAIN, soa=False)
    query = dns.message.make_query(dns.name.Name([b"escaped.dot", b"test", b""]), "A")
    assert dns.message.from_wire(img.answer(query.to_wire())).rcode() == dns.rcode.NXDOMAIN
    negative(ask(img, "abc.test."), dns.rcode.NXDOMAIN, soa=False)


def test_blocklist_subtree_and_answer(tmp_path):
    _, blocklist = _blocked(tmp_path, "ads.example.com\nbad.test\n", "answer", True, SINKHOLE)
    img = build(tmp_path, blocklist)
    assert rrsets(ask(img, "a.ads.example.com.", "AAAA").answer) == {
        "a.ads.example.com. 300 IN AAAA 2001:2::53"
    }
    assert rrsets(ask(img, "bad.test.").answer) == {"bad.test. 300 IN A 198.18.0.53"}


def test_config_rules_come_before_blocklists_and_lists_in_order(tmp_path):
    _, first = _blocked(tmp_path, "a.test\nb.test\n", "refused", name="first.txt")
    _, second = _blocked(tmp_path, "b.test\nc.test\n", "nodata", name="second.txt")
    img = build(tmp_path, rule("a.test.", "nxdomain"), first, second)
    negative(ask(img, "a.test."), dns.rcode.NXDOMAIN, soa=False)
    assert ask(img, "b.test.").rcode() == dns.rcode.REFUSED
    negative(ask(img, "c.test."), dns.rcode.NOERROR, soa=False)


@pytest.mark.parametrize(
    "line, message",
    [
        ("a..b.test", "'a..b.test': an empty label"),
        (".a.test", "an empty label"),
        ("x" * 64 + ".test", "a label longer than 63 bytes"),
        (".".join(["a" * 60] * 5), "a name longer than 255 bytes"),
        ("0.0.0.0 ads.test", "'0.0.0.0 ads.test': more than one name on the line"),
        ("ads.tést", "a byte outside ASCII (write the name in its xn-- form)"),
        ("*", "a subtree needs a name"),
        ("*.", "a subtree needs a name"),
        ("bad\\999.test", "a bad escape"),
        ("bad\\12", "a bad escape"),
    ],
)
def test_blocklist_errors_name_file_and_line(tmp_path, line, message):
    path, blocklist = _blocked(tmp_path, f"# header\nok.test\n{line}\nalso-ok.test\n")
    result = compile_sources([], overrides=[blocklist])
    assert result.image is None
    (problem,) = result.errors
    assert str(problem).startswith(f"{path}:3: error: ")
    assert message in problem.message


def test_every_bad_line_is_reported_and_the_first_in_the_message(tmp_path):
    path, _ = _blocked(tmp_path, "ok.test\na..b\nc..d\n")
    with ImageBuilder() as b:
        assert b.load_blocklist(path, b.add_override_rule("nxdomain")) is False
        assert [(p.file, p.line) for p in b.problems()] == [(str(path), 2), (str(path), 3)]


def test_a_missing_blocklist_is_a_problem(tmp_path):
    result = compile_sources([], overrides=[Blocklist(tmp_path / "nope.txt")])
    (problem,) = result.errors
    assert (
        str(problem) == f"{tmp_path / 'nope.txt'}: error: cannot read the blocklist: "
        "No such file or directory"
    )


def test_an_empty_blocklist_is_fine(tmp_path):
    _, blocklist = _blocked(tmp_path, "")
    assert build(tmp_path, blocklist).info.overrides == 0


def test_a_100k_name_blocklist_loads_quickly(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"host{i}.zone{i % 997}.blocked.test\n" for i in range(100_000)))
    start = time.monotonic()
    result = compile_sources([], overrides=[Blocklist(path)])
    elapsed = time.monotonic() - start
    assert result.image is not None and result.image.info.overrides == 100_000
    # About 30 ms here; generous for a busy machine.
    assert elapsed < 2.0, elapsed
    for i in (0, 4242, 99_999):
        negative(
            ask(result.image, f"host{i}.zone{i % 997}.blocked.test."), dns.rcode.NXDOMAIN, soa=False
        )
    assert ask(result.image, "host100000.zone0.blocked.test.").rcode() == dns.rcode.REFUSED
    assert Image.from_bytes(result.image.to_bytes()).info == result.image.info


# ---- configuration -------------------------------------------------------------------


def _parse(table, base=Path("/etc/xdpdns")):
    return plugin.parse_config(table, Where("test.toml", "plugins.override", base))


def test_config_rules_and_blocklists():
    c = _parse(
        {
            "rules": [
                {"name": "ads.example.com", "subtree": True},
                {"name": "*.wild.test", "action": "refused"},
                {"name": "sink.test", "action": "answer", "records": list(SINKHOLE), "ttl": 60},
            ],
            "blocklists": [
                {"file": "lists/block.txt"},
                {
                    "file": "/abs.txt",
                    "action": "answer",
                    "records": ["A 192.0.2.1"],
                    "subtree": True,
                },
            ],
        }
    )
    assert c.rules == (
        rule("ads.example.com.", "nxdomain", True),
        rule("wild.test.", "refused", True),
        rule("sink.test.", "answer", False, SINKHOLE, 60),
    )
    assert c.blocklists == (
        Blocklist(Path("/etc/xdpdns/lists/block.txt")),
        Blocklist(Path("/abs.txt"), "answer", True, _records("A 192.0.2.1")),
    )
    assert _parse({}) == plugin.OverrideConfig()


@pytest.mark.parametrize(
    "table, message",
    [
        ({"rule": []}, "plugins.override.rule: expected one of the known keys: rules, blocklists"),
        (
            {"rules": {"name": "a.test"}},
            "plugins.override.rules: expected [[plugins.override.rules]]",
        ),
        (
            {"rules": [{"action": "nxdomain"}]},
            "plugins.override.rules[1].name: expected a domain name",
        ),
        (
            {"rules": [{"name": "a..test"}]},
            "plugins.override.rules[1].name: expected a domain name",
        ),
        (
            {"rules": [{"name": "a.test", "action": "block"}]},
            "plugins.override.rules[1].action: expected one of 'nxdomain', 'refused', 'nodata', "
            "'answer', got 'block'",
        ),
        (
            {"rules": [{"name": "a.test", "subtree": "yes"}]},
            "plugins.override.rules[1].subtree: expected true or false",
        ),
        (
            {"rules": [{"name": "*.a.test", "subtree": False}]},
            "plugins.override.rules[1].subtree: expected true or nothing",
        ),
        (
            {"rules": [{"name": "a.test", "action": "answer"}]},
            r"plugins.override.rules\[1\].records: expected a list of records .*needs them",
        ),
        (
            {"rules": [{"name": "a.test", "action": "answer", "records": ["A nope"]}]},
            "plugins.override.rules[1].records: expected a record as TYPE RDATA",
        ),
        (
            {"rules": [{"name": "a.test", "action": "answer", "records": ["A"]}]},
            "plugins.override.rules[1].records: expected a list of records",
        ),
        (
            {
                "rules": [
                    {"name": "a.test", "action": "answer", "records": ["A 192.0.2.1"], "ttl": -5}
                ]
            },
            "plugins.override.rules[1].ttl: expected a TTL from 0 to 2147483647",
        ),
        (
            {"rules": [{"name": "a.test", "ttl": 5}]},
            'plugins.override.rules[1].ttl: expected nothing: records and ttl go with action = "answer"',
        ),
        (
            {
                "rules": [
                    {
                        "name": "a.test",
                        "action": "answer",
                        "records": ["CNAME x.test.", "A 192.0.2.1"],
                    }
                ]
            },
            "plugins.override.rules[1].records: expected records that can be answered: a CNAME "
            "stands alone",
        ),
        (
            {"rules": [{"name": "a.test", "colour": "red"}]},
            "plugins.override.rules[1].colour: expected one of the known keys: name, subtree",
        ),
        (
            {
                "rules": [
                    {"name": "a.test"},
                    {"name": "b.test"},
                    {"name": "A.test.", "action": "refused"},
                ]
            },
            "plugins.override.rules[3].name: expected each name once per kind (exact or subtree); "
            "A.test. is also rules[1]",
        ),
        (
            {"blocklists": [{"action": "nxdomain"}]},
            "plugins.override.blocklists[1].file: expected the blocklist's path (required)",
        ),
        ({"blocklists": "list.txt"}, "plugins.override.blocklists: expected a list of tables"),
        (
            {"blocklists": [{"file": "x", "action": "answer"}]},
            r"plugins.override.blocklists\[1\].records: expected a list of records",
        ),
    ],
)
def test_config_errors_name_the_key(table, message):
    with pytest.raises(ConfigError, match=message if "\\[" in message else _literal(message)):
        _parse(table)


def _literal(text):
    import re

    return re.escape(text)


def test_blocklist_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "block.txt").write_text("www.example.com\nbad..name\n")
    conf = tmp_path / "conf" / "xdpdns.toml"
    conf.write_text(
        f'[[zone]]\nfile = "{tmp_path / "example.com.zone"}"\n'
        '[plugins.override]\nblocklists = [{file = "block.txt"}]\n'
    )
    (tmp_path / "example.com.zone").write_text(ZONE)
    pm = load_plugins()
    with pytest.raises(ZoneLoadError) as exc:
        build_image(pm, load_config(pm, conf))
    assert f"{tmp_path / 'conf' / 'block.txt'}:2: error: 'bad..name': an empty label" in str(
        exc.value
    )


# ---- plugins: order decides ------------------------------------------------------------


class _PlacedFirst:
    XDPDNS_BEFORE = ("override",)

    @hookimpl
    def overrides(self, config):
        return [
            rule("www.example.com.", "answer", records=("A 198.18.0.77",)),
            rule("mail.example.com.", "refused"),
        ]


def test_a_plugin_placed_before_the_builtin_wins_name_by_name(tmp_path):
    zone = tmp_path / "example.com.zone"
    zone.write_text(ZONE)
    conf = tmp_path / "c.toml"
    conf.write_text(
        f'[[zone]]\nfile = "{zone}"\n'
        '[[plugins.override.rules]]\nname = "www.example.com"\n'
        '[[plugins.override.rules]]\nname = "ads.example.com"\nsubtree = true\n'
    )
    pm = new_plugin_manager()
    pm.register(_PlacedFirst(), name="placed-first")
    pm = load_plugins(pm)
    order = plugin_order(pm)
    assert order.index("placed-first") < order.index("override")
    img = build_image(pm, load_config(pm, conf)).image
    assert rrsets(ask(img, "www.example.com.").answer) == {"www.example.com. 300 IN A 198.18.0.77"}
    assert ask(img, "mail.example.com.").rcode() == dns.rcode.REFUSED
    negative(ask(img, "x.ads.example.com."), dns.rcode.NXDOMAIN)  # the builtin's own rule
    pm.unregister(name="placed-first")
    negative(
        ask(build_image(pm, load_config(pm, conf)).image, "www.example.com."), dns.rcode.NXDOMAIN
    )


def test_the_builtin_plugin_is_registered():
    assert "override" in plugin_order(load_plugins())


# ---- a server ---------------------------------------------------------------------------


def test_served_with_a_blocklist(xdpdns_serve, tmp_path):
    zone = tmp_path / "example.com.zone"
    zone.write_text(ZONE)
    (tmp_path / "block.txt").write_text("# blocked\nads.example.com\n*.tracker.test\n")
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        f'[[zone]]\nfile = "{zone}"\n'
        '[plugins.override]\nblocklists = [{file = "block.txt"}]\n'
        '[[plugins.override.rules]]\nname = "sink.test"\naction = "answer"\n'
        'records = ["A 198.18.0.53"]\nttl = 30\n'
    )
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    assert "overrides names=3" in server.output()

    def udp(qname, qtype="A"):
        return dns.query.udp(dns.message.make_query(qname, qtype), host, port=port, timeout=5)

    negative(udp("ads.example.com."), dns.rcode.NXDOMAIN)
    negative(udp("a.b.tracker.test."), dns.rcode.NXDOMAIN, soa=False)
    assert rrsets(udp("www.example.com.").answer) == {"www.example.com. 3600 IN A 198.18.0.3"}
    assert rrsets(udp("x.ads.example.com.").answer) == {"x.ads.example.com. 3600 IN A 198.18.0.6"}
    assert rrsets(udp("sink.test.").answer) == {"sink.test. 30 IN A 198.18.0.53"}
    assert udp("elsewhere.test.").rcode() == dns.rcode.REFUSED
    response = dns.query.tcp(
        dns.message.make_query("ads.example.com.", "A"), host, port=port, timeout=5
    )
    negative(response, dns.rcode.NXDOMAIN)
