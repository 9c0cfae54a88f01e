"""The answering core, case by case (RFC 1034 4.3.2 and what follows it).

Each table row is a query and the expected sections written as zone text,
in the style of CoreDNS's plugin/file tests.  The differential tests against
Knot DNS (test_diff_knot.py) cover the same ground against a real server;
these pin down what xdpdns answers even where no peer is installed.
"""

import dns.flags
import dns.message
import dns.rcode
import pytest

from zoneimage import SOA, ask, image, rrsets

# Also run against the AddressSanitizer build (bootstrap).
pytestmark = pytest.mark.asan

ZONE = (
    SOA
    + """\
@ 3600 IN MX 10 mail
@ 3600 IN NS ns2.example.net.
mail 3600 IN A 198.18.0.2
mail 3600 IN AAAA 2001:2::2
www 3600 IN A 198.18.0.3
alias 3600 IN CNAME www
chain1 3600 IN CNAME chain2
chain2 3600 IN CNAME www
dangling 3600 IN CNAME nothere
outside 3600 IN CNAME www.example.net.
loop1 3600 IN CNAME loop2
loop2 3600 IN CNAME loop1
*.wild 3600 IN A 198.18.0.9
*.wild 3600 IN TXT "wild"
x.wild 3600 IN A 198.18.0.10
*.wcname 3600 IN CNAME www
a.b.c 3600 IN A 198.18.0.11
sub 3600 IN NS ns.sub
sub 3600 IN NS ns2.example.net.
ns.sub 3600 IN A 198.18.0.12
d 3600 IN DNAME example.net.
dd 3600 IN DNAME other.example.com.
x.other 3600 IN A 198.18.0.13
_sip._udp 3600 IN SRV 0 0 5060 mail
"""
)

SOA_NEG = "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300"

CASES = [
    # qname, qtype, rcode, aa, answer, authority, additional
    (
        "www.example.com.",
        "A",
        "NOERROR",
        True,
        {"www.example.com. 3600 IN A 198.18.0.3"},
        set(),
        set(),
    ),
    (
        "alias.example.com.",
        "A",
        "NOERROR",
        True,
        {
            "alias.example.com. 3600 IN CNAME www.example.com.",
            "www.example.com. 3600 IN A 198.18.0.3",
        },
        set(),
        set(),
    ),
    (
        "alias.example.com.",
        "CNAME",
        "NOERROR",
        True,
        {"alias.example.com. 3600 IN CNAME www.example.com."},
        set(),
        set(),
    ),
    (
        "chain1.example.com.",
        "A",
        "NOERROR",
        True,
        {
            "chain1.example.com. 3600 IN CNAME chain2.example.com.",
            "chain2.example.com. 3600 IN CNAME www.example.com.",
            "www.example.com. 3600 IN A 198.18.0.3",
        },
        set(),
        set(),
    ),
    # RFC 6604 3: the rcode is that of the last name in the chain.
    (
        "dangling.example.com.",
        "A",
        "NXDOMAIN",
        True,
        {"dangling.example.com. 3600 IN CNAME nothere.example.com."},
        {SOA_NEG},
        set(),
    ),
    (
        "outside.example.com.",
        "A",
        "NOERROR",
        True,
        {"outside.example.com. 3600 IN CNAME www.example.net."},
        set(),
        set(),
    ),
    ("www.example.com.", "MX", "NOERROR", True, set(), {SOA_NEG}, set()),
    ("nothing.example.com.", "A", "NXDOMAIN", True, set(), {SOA_NEG}, set()),
    # Empty non-terminal: NODATA, not NXDOMAIN (RFC 8020).
    ("c.example.com.", "A", "NOERROR", True, set(), {SOA_NEG}, set()),
    ("b.c.example.com.", "A", "NOERROR", True, set(), {SOA_NEG}, set()),
    ("z.a.b.c.example.com.", "A", "NXDOMAIN", True, set(), {SOA_NEG}, set()),
    # Wildcards (RFC 4592): synthesis, NODATA at the wildcard, blocking.
    (
        "foo.wild.example.com.",
        "A",
        "NOERROR",
        True,
        {"foo.wild.example.com. 3600 IN A 198.18.0.9"},
        set(),
        set(),
    ),
    (
        "a.b.wild.example.com.",
        "TXT",
        "NOERROR",
        True,
        {'a.b.wild.example.com. 3600 IN TXT "wild"'},
        set(),
        set(),
    ),
    ("foo.wild.example.com.", "MX", "NOERROR", True, set(), {SOA_NEG}, set()),
    ("x.wild.example.com.", "TXT", "NOERROR", True, set(), {SOA_NEG}, set()),
    ("y.x.wild.example.com.", "A", "NXDOMAIN", True, set(), {SOA_NEG}, set()),
    (
        "*.wild.example.com.",
        "A",
        "NOERROR",
        True,
        {"*.wild.example.com. 3600 IN A 198.18.0.9"},
        set(),
        set(),
    ),
    (
        "q.wcname.example.com.",
        "A",
        "NOERROR",
        True,
        {
            "q.wcname.example.com. 3600 IN CNAME www.example.com.",
            "www.example.com. 3600 IN A 198.18.0.3",
        },
        set(),
        set(),
    ),
    # Delegation: referral with glue, AA clear; DS answered by the parent.
    (
        "host.sub.example.com.",
        "A",
        "NOERROR",
        False,
        set(),
        {
            "sub.example.com. 3600 IN NS ns.sub.example.com.",
            "sub.example.com. 3600 IN NS ns2.example.net.",
        },
        {"ns.sub.example.com. 3600 IN A 198.18.0.12"},
    ),
    (
        "sub.example.com.",
        "NS",
        "NOERROR",
        False,
        set(),
        {
            "sub.example.com. 3600 IN NS ns.sub.example.com.",
            "sub.example.com. 3600 IN NS ns2.example.net.",
        },
        {"ns.sub.example.com. 3600 IN A 198.18.0.12"},
    ),
    (
        "ns.sub.example.com.",
        "A",
        "NOERROR",
        False,
        set(),
        {
            "sub.example.com. 3600 IN NS ns.sub.example.com.",
            "sub.example.com. 3600 IN NS ns2.example.net.",
        },
        {"ns.sub.example.com. 3600 IN A 198.18.0.12"},
    ),
    ("sub.example.com.", "DS", "NOERROR", True, set(), {SOA_NEG}, set()),
    # Additional-section processing for MX, SRV and NS targets.
    (
        "example.com.",
        "MX",
        "NOERROR",
        True,
        {"example.com. 3600 IN MX 10 mail.example.com."},
        set(),
        {"mail.example.com. 3600 IN A 198.18.0.2", "mail.example.com. 3600 IN AAAA 2001:2::2"},
    ),
    (
        "_sip._udp.example.com.",
        "SRV",
        "NOERROR",
        True,
        {"_sip._udp.example.com. 3600 IN SRV 0 0 5060 mail.example.com."},
        set(),
        {"mail.example.com. 3600 IN A 198.18.0.2", "mail.example.com. 3600 IN AAAA 2001:2::2"},
    ),
    (
        "example.com.",
        "NS",
        "NOERROR",
        True,
        {"example.com. 3600 IN NS ns1.example.com.", "example.com. 3600 IN NS ns2.example.net."},
        set(),
        {"ns1.example.com. 3600 IN A 198.18.0.1"},
    ),
    # DNAME (RFC 6672): the DNAME, a synthesized CNAME, and the chain.
    (
        "a.d.example.com.",
        "A",
        "NOERROR",
        True,
        {
            "d.example.com. 3600 IN DNAME example.net.",
            "a.d.example.com. 3600 IN CNAME a.example.net.",
        },
        set(),
        set(),
    ),
    (
        "x.dd.example.com.",
        "A",
        "NOERROR",
        True,
        {
            "dd.example.com. 3600 IN DNAME other.example.com.",
            "x.dd.example.com. 3600 IN CNAME x.other.example.com.",
            "x.other.example.com. 3600 IN A 198.18.0.13",
        },
        set(),
        set(),
    ),
    (
        "d.example.com.",
        "DNAME",
        "NOERROR",
        True,
        {"d.example.com. 3600 IN DNAME example.net."},
        set(),
        set(),
    ),
    # Outside every zone.
    ("www.example.org.", "A", "REFUSED", False, set(), set(), set()),
]


@pytest.fixture(scope="module")
def img(tmp_path_factory):
    return image(tmp_path_factory.mktemp("answer"), {"example.com.": ZONE})


@pytest.mark.parametrize(
    "qname,qtype,rcode,aa,answer,authority,additional", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES]
)
def test_answer(img, qname, qtype, rcode, aa, answer, authority, additional):
    r = ask(img, qname, qtype)
    assert dns.rcode.to_text(r.rcode()) == rcode
    assert bool(r.flags & dns.flags.AA) == aa
    assert rrsets(r.answer) == answer
    assert rrsets(r.authority) == authority
    assert rrsets(r.additional) == additional


def test_dname_synthesized_cname_answers_a_cname_query_without_soa(img):
    """Regression: a CNAME query below a DNAME went on chasing the
    synthesized CNAME's target for type CNAME and added the SOA (NXDOMAIN
    where the target does not exist).  The synthesized CNAME is the answer,
    as a CNAME in the zone is (RFC 6672 3.2; Knot and NSD): NOERROR, no
    authority."""
    for qname, target in (
        ("a.dd.example.com.", "a.other.example.com."),
        ("x.dd.example.com.", "x.other.example.com."),
    ):
        r = ask(img, qname, "CNAME")
        assert r.rcode() == dns.rcode.NOERROR
        assert rrsets(r.answer) == {
            "dd.example.com. 3600 IN DNAME other.example.com.",
            f"{qname} 3600 IN CNAME {target}",
        }
        assert rrsets(r.authority) == set()


def test_cname_loop_stops(img):
    r = ask(img, "loop1.example.com.", "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert rrsets(r.answer) == {
        "loop1.example.com. 3600 IN CNAME loop2.example.com.",
        "loop2.example.com. 3600 IN CNAME loop1.example.com.",
    }


def test_case_of_qname_is_echoed(img):
    r = ask(img, "WwW.ExAmPlE.cOm.", "A")
    assert r.question[0].name.to_text() == "WwW.ExAmPlE.cOm."
    assert r.answer[0].name.to_text() == "WwW.ExAmPlE.cOm."


def test_any_is_answered_with_one_rrset(img):
    """RFC 8482 4.1: one RRset of the name rather than all of them."""
    r = ask(img, "mail.example.com.", "ANY")
    assert len(r.answer) == 1
    assert r.answer[0].to_text() in (
        "mail.example.com. 3600 IN A 198.18.0.2",
        "mail.example.com. 3600 IN AAAA 2001:2::2",
    )


def test_edns_payload_and_do_bit(img):
    r = ask(img, "www.example.com.", "A", use_edns=0, payload=4096, want_dnssec=True)
    assert r.edns == 0
    assert r.payload == 1232
    assert r.ednsflags & dns.flags.DO


def test_badvers(img):
    query = dns.message.make_query("www.example.com.", "A")
    query.use_edns(1)  # make_query(use_edns=1) sends version 0 in dnspython 2.3
    r = dns.message.from_wire(img.answer(query.to_wire()))
    assert r.rcode() == dns.rcode.BADVERS
    assert r.answer == []


def test_refused_carries_ede_not_authoritative(img):
    r = ask(img, "www.example.org.", "A", use_edns=0)
    assert r.rcode() == dns.rcode.REFUSED
    assert [(o.otype, o.code) for o in r.options] == [(dns.edns.OptionType.EDE, 20)]


def test_chaos_is_refused(img):
    query = dns.message.make_query("version.bind.", "TXT", "CH")
    r = dns.message.from_wire(img.answer(query.to_wire()))
    assert r.rcode() == dns.rcode.REFUSED


def test_response_is_not_answered(img):
    query = dns.message.make_query("www.example.com.", "A")
    query.flags |= dns.flags.QR
    assert img.answer(query.to_wire()) is None


def test_other_opcode_is_notimp(img):
    query = dns.message.make_query("www.example.com.", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    r = dns.message.from_wire(img.answer(query.to_wire()))
    assert r.rcode() == dns.rcode.NOTIMP


def test_truncation_without_edns(tmp_path):
    big = SOA + "".join(f'big 3600 IN TXT "{"x" * 200}{i}"\n' for i in range(10))
    img = image(tmp_path, {"example.com.": big})
    r = ask(img, "big.example.com.", "TXT")
    assert r.flags & dns.flags.TC and r.answer == []
    r = ask(img, "big.example.com.", "TXT", use_edns=0, payload=4096)
    assert r.flags & dns.flags.TC, "over 1232 bytes even with EDNS"
    r = ask(img, "big.example.com.", "TXT", tcp=True)
    assert not r.flags & dns.flags.TC
    assert len(r.answer[0]) == 10


def test_most_specific_zone_wins(tmp_path):
    img = image(
        tmp_path,
        {
            "example.com.": SOA + "sub 3600 IN NS ns.sub\nns.sub 3600 IN A 198.18.0.12\n",
            "sub.example.com.": SOA + "www 3600 IN A 198.18.0.99\n",
        },
    )
    r = ask(img, "www.sub.example.com.", "A")
    assert r.flags & dns.flags.AA
    assert rrsets(r.answer) == {"www.sub.example.com. 3600 IN A 198.18.0.99"}
    # DS belongs to the parent side of the cut (RFC 4035 3.1.4.1).
    r = ask(img, "sub.example.com.", "DS")
    assert rrsets(r.authority) == {SOA_NEG}
