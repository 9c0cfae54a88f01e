"""Differential tests of signed zones: xdpdns against Knot DNS and NSD
serving the same files signed by dnssec-signzone (tests/test_dnssec.py's zone, NSEC and
NSEC3 opt-out), the same query bytes, responses compared section by section
as RRsets (tests/dnsdiff.py), with DO=1 and DO=0, over UDP (512 and 1232
bytes) and TCP.  Also the zone signed on load by xdpdns (`[[zone]] dnssec`,
NSEC3): the peers serve what xdpdns transfers of it.

Knot (no dnssec-signing) and NSD serve a zone signed elsewhere as it is,
which is what xdpdns does.  Where the two may differ, the Rule says which RFC allows
it.
"""

import dns.name
import pytest

from conftest import start_knot, start_nsd, start_xdpdns
from dnsdiff import Rule, ask, compare, make_query, report
from test_dnssec import FORMS, NSEC3_PROOFS, NSEC_PROOFS, POSITIVE, ZONE, keygen_pair, sign_zone

TRANSPORTS = {
    "udp-do": dict(tcp=False, edns=0, dnssec=True),
    "udp-do512": dict(tcp=False, edns=0, dnssec=True, payload=512),
    "tcp-do": dict(tcp=True, edns=0, dnssec=True),
    "udp": dict(tcp=False, edns=0),
    "udp-noedns": dict(tcp=False, edns=None),
}

# Additional data that does not fit is left out without TC (RFC 2181 9);
# which of it, and whether with its RRSIGs (RFC 4035 3.1.1), is the
# server's choice.
ADDITIONAL = Rule(
    rfc="RFC 4035 section 3.1.1: RRSIGs of additional data are added only where room allows",
    additional="subset",
)

QUESTIONS = sorted(
    {(q, t) for q, t, *_ in POSITIVE + NSEC_PROOFS + NSEC3_PROOFS}
    | {
        ("signed.test.", "NSEC3PARAM"),
        ("signed.test.", "DNSKEY"),
        ("www.signed.test.", "NSEC"),
        ("www.signed.test.", "RRSIG"),
        ("*.wild.signed.test.", "A"),
        ("secure.signed.test.", "NS"),
        ("ns.secure.signed.test.", "A"),
        ("deep.ent.signed.test.", "A"),
        ("signed.test.", "CNAME"),
        ("alias.signed.test.", "CNAME"),
    }
)


STARTERS = {"knot": start_knot, "nsd": start_nsd}


def _signing_on_load(work):
    """xdpdns signing the test zone when it loads it (NSEC3), and the zone
    it signed, transferred from it into a file for the peer."""
    import dns.query
    import dns.zone

    keys = keygen_pair(work / "keys")
    conf = work / "signed.toml"
    conf.write_text(
        f'[server]\nstorage = "{work}/storage"\n'
        f'[[zone]]\norigin = "signed.test."\nfile = "{ZONE}"\n'
        'allow_transfer = ["127.0.0.1"]\n'
        f"dnssec = {{ keys = {[str(k) for k in keys]!r}, nsec3 = true }}\n".replace("'", '"')
    )
    xdp = start_xdpdns(work, [("signed.test.", ZONE)], ["--config", conf], zone_args=False)
    try:
        dump = work / "signed.test.zone"
        zone = dns.zone.from_xfr(
            dns.query.xfr(xdp.address[0], "signed.test.", port=xdp.address[1], timeout=10)
        )
        zone.to_file(str(dump), relativize=False)
    except BaseException:
        xdp.stop()
        raise
    return xdp, dump


@pytest.fixture(
    scope="module",
    params=[(peer, form) for peer in STARTERS for form in ("nsec", "nsec3-optout", "load-nsec3")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def servers(request, tmp_path_factory):
    """(the peer, xdpdns), both serving the test zone signed in one form."""
    peer, form = request.param
    work = tmp_path_factory.mktemp(f"xdpdns-{form}")
    if form == "load-nsec3":
        xdp, zone = _signing_on_load(work)
    else:
        zone = sign_zone(tmp_path_factory.mktemp(f"sign-{form}"), FORMS[form])
        xdp = start_xdpdns(work, [("signed.test.", zone)])
    try:
        ref = STARTERS[peer](tmp_path_factory.mktemp(f"{peer}-{form}"), [("signed.test.", zone)])
    except BaseException:
        xdp.stop()
        raise
    yield ref, xdp
    xdp.stop()
    ref.stop()


# Knot answers an RRSIG query with the RRSIGs of one type, as it answers
# ANY (RFC 8482); xdpdns gives every RRSIG at the name, as BIND and NSD do:
# a query for a type gets the whole RRset of that type (RFC 2181 5).
RRSIG_RULE = Rule(
    rfc="RFC 2181 section 5: the RRSIG RRset whole, where Knot picks the "
    "RRSIGs of one covered type",
    answer="superset",
    additional="subset",
)


# NSD with minimal-responses (as xdpdns bench runs it) adds no additional
# data to an MX answer; Knot and xdpdns add the in-zone targets' addresses.
NSD_MX = Rule(
    rfc="RFC 1034 section 4.3.2 step 6: additional data for MX is optional; "
    "NSD's minimal-responses leaves it out",
    additional="optional",
)


def _rule(peer, qtype):
    if qtype == "RRSIG":
        return RRSIG_RULE
    if peer == "nsd" and qtype == "MX":
        return NSD_MX
    return ADDITIONAL


@pytest.mark.parametrize("transport", list(TRANSPORTS))
@pytest.mark.parametrize("qname, qtype", QUESTIONS)
def test_signed_zone_like_knot_and_nsd(servers, qname, qtype, transport, request):
    knot, xdp = servers
    t = dict(TRANSPORTS[transport])
    tcp = t.pop("tcp")
    query = make_query(dns.name.from_text(qname), qtype, **t)
    peer = request.node.callspec.params["servers"][0]
    rule = _rule(peer, qtype)
    ref = ask(knot.address, query, tcp=tcp)
    got = ask(xdp.address, query, tcp=tcp, full=False)
    diffs = compare(ref, got, rule)
    assert not diffs, report(
        request.node.callspec.id,
        query,
        ref,
        got,
        diffs,
        rule,
        reference={"knot": "Knot", "nsd": "NSD"}[peer],
    )
