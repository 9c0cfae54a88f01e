"""Differential tests: xdpdns against Knot DNS 3.2, the same zones
(tests/data/diff), the same query bytes, responses compared section by
section (tests/dnsdiff.py).

Each table row is one query name and type; every row runs in several
transports (UDP and TCP, with and without EDNS, small buffers, the name in
mixed case), each its own test id.  Where xdpdns legitimately differs from
Knot the row's Rule says which RFC xdpdns follows and what is checked instead.

What Knot 3.2.6 does in the special cases (found with kdig and dnspython; the
answering core should do the same unless a Rule says otherwise):

- Responses: RD copied, CD and AD cleared, RA never set, Z cleared; QR=1
  packets get no response at all.
- Minimal responses: no NS in authority of positive answers, additional
  only for NS/MX/SRV targets inside the same zone (never from another served
  zone, never after following a CNAME at the target).
- NXDOMAIN / NODATA: SOA in authority with TTL min(SOA TTL, SOA minimum)
  (example.com: 7200/300 -> 300; parent.test: 60/3600 -> 60).
- CNAME: followed inside the zone only (not into another served zone), at most
  5 CNAME records in the answer; a chain cut there ends the answer with
  NOERROR, AA and nothing in authority; a loop stops when a name repeats
  (loop1: two CNAMEs; self: one).  CNAME to a missing name: NXDOMAIN with the
  CNAME and the SOA (RFC 6604); into a delegation: the CNAME, then the
  referral (NS in authority, glue), AA still set.
- DNAME: DNAME, synthesized CNAME (TTL of the DNAME), then the target's data
  if the target is in the zone; the DNAME owner itself is not redirected
  (NODATA for A); a result longer than 255 octets is YXDOMAIN with the DNAME.
- Referral: AA clear, NS in authority, glue in additional for NS targets at or
  below the cut and for any other NS target that is in the zone (sub-sib);
  queries for the cut's NS, SOA, ANY or for names below the cut all get the
  referral; DS at the cut is answered authoritatively by the parent.  When
  the child zone is served too, the most specific zone answers, except DS at
  the child's apex, which the parent answers (RFC 4035 section 3.1.4.1).
- Wildcards as in RFC 4592; the owner is the query name; `*` queried
  literally matches the wildcard node itself; a wildcard CNAME is followed.
- ANY (RFC 8482): one RRset of the node (the first Knot stores, e.g. A).
- EDNS: OPT echoed with version 0, payload 1232 whatever the client offers,
  DO echoed, unknown options and NSID (no nsid configured) ignored;
  payload below 512 treated as 512.  Version 1: BADVERS (extended rcode 16),
  question kept, no AA, OPT v0, also for names outside our zones and with
  qdcount 0.  Two OPT RRs or an OPT whose RDLENGTH overruns: FORMERR without
  OPT.  An OPT whose owner is not the root: accepted.
- Truncation (UDP): TC=1 with the question (and OPT) only, no records at all;
  additional data that does not fit is dropped without TC (mx-many).
- Names outside every zone: REFUSED, AA clear, no records; with EDNS an EDE
  option 20 (Not Authoritative).
- CHAOS: TXT queries for version.bind and version.server, hostname.bind and
  id.server get a TXT record (class CH, TTL 0) with AA clear; other types
  (ANY too) and other names REFUSED.  NSID
  (RFC 5001) is sent only when asked for.  Both servers are given the same
  identity (tests/conftest.py DIFF_*).
- Cookies (RFC 7873), with mod-cookies and one secret for both servers
  (tests/conftest.py DIFF_COOKIE_SECRET): RFC 9018 server cookies, byte for
  byte the same as xdpdns's for the same client, secret and second.  A
  well-formed COOKIE always gets the client cookie and a server cookie back,
  on errors too (REFUSED outside our zones); a valid server cookie is sent
  back as it is (also when older than half an hour, where xdpdns renews it),
  else a fresh one.  Without a valid server cookie a UDP query gets
  BADCOOKIE (23: the question, no records, AA clear; xdpdns with `require`)
  and a TCP query its answer.  A COOKIE of 0-7, 9-15 or over 40 octets:
  FORMERR with OPT (no options).  EDNS version 1: BADVERS, the COOKIE
  ignored.  Knot takes the last of several COOKIE options (RFC 7873 5.2:
  the first) and answers qdcount 0 with a cookie FORMERR (RFC 7873 5.4
  would answer it): neither is compared.
- Classes HS, NONE, unknown: REFUSED, no EDE; class ANY (255) is answered
  with the IN data.
- Opcodes: IQUERY, STATUS, 3, DSO (6), 7-15: NOTIMP (question echoed, RD
  copied); NOTIFY and UPDATE: NOTAUTH (Knot implements them, no ACL).
- qtypes: AXFR over UDP NOTIMP, over TCP NOTAUTH (no ACL); IXFR NOTAUTH;
  qtype 0 NOTIMP; MAILA, MAILB, OPT, TSIG, TKEY, RRSIG, NSEC and private
  types: NODATA.
- Malformed: no response (UDP and TCP) to a short header, a missing or cut
  question, qdcount 2, a label over 63 octets, label types 01/10, a name over
  255 octets, compression pointers in the question; FORMERR to qdcount 0 (no
  question echoed), trailing bytes after the message (question echoed, OPT
  dropped), an answer count the packet does not hold.  Records in the
  answer/authority/additional sections of a query are ignored.
"""

import dataclasses
import ipaddress
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from conftest import DIFF_COOKIE_SECRET
from dnsdiff import EXACT, Exchange, Rule, ask, compare, make_query, parse, report, rr_set
from engine_helpers import siphash24

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH = (
    dns.rcode.NOERROR,
    dns.rcode.FORMERR,
    dns.rcode.SERVFAIL,
    dns.rcode.NXDOMAIN,
    dns.rcode.NOTIMP,
    dns.rcode.REFUSED,
    dns.rcode.NOTAUTH,
)

# ---- relaxations, each naming the RFC xdpdns follows --------------------------

ANY_RULE = Rule(
    rfc="RFC 8482 section 4.1: ANY answered with one or more whole "
    "RRsets of the node; Knot picks one, xdpdns may pick another",
    answer="subset-of-node",
)
CHAIN_RULE = Rule(
    rfc="RFC 1034 section 4.3.2 step 3a: the CNAME chain bound is the "
    "server's choice; Knot stops after 5 CNAMEs, xdpdns must follow "
    "at least as far, along the chain",
    answer="cname-prefix",
)

# Transports: how one row is sent.  edns None = no OPT record.
TRANSPORTS = {
    "udp": dict(tcp=False, edns=None),
    "udp-edns": dict(tcp=False, edns=0),
    "tcp": dict(tcp=True, edns=None),
    "tcp-edns": dict(tcp=True, edns=0),
    "udp-0x20": dict(tcp=False, edns=0, mixcase=True),
    "udp-do": dict(tcp=False, edns=0, dnssec=True),
    "udp-edns512": dict(tcp=False, edns=0, payload=512),
    "udp-edns100": dict(tcp=False, edns=0, payload=100),
    "udp-edns1000": dict(tcp=False, edns=0, payload=1000),
    "udp-edns4096": dict(tcp=False, edns=0, payload=4096),
}
STD = ("udp", "udp-edns", "tcp-edns", "udp-0x20")
SIZES = (
    "udp",
    "udp-edns",
    "udp-edns512",
    "udp-edns100",
    "udp-edns1000",
    "udp-edns4096",
    "tcp",
    "tcp-edns",
)


@dataclasses.dataclass(frozen=True)
class Case:
    qname: str
    qtype: str = "A"
    rule: Rule = EXACT
    transports: tuple = STD
    note: str = ""


def C(qname, qtype="A", rule=EXACT, transports=STD, note=""):
    return Case(qname, qtype, rule, transports, note)


# ---- the table -------------------------------------------------------------------

EX = "example.com."
CASES = [
    # exact answers, apex, additional-section processing
    C(EX, "SOA"),
    C(EX, "NS", note="ns1 glue A/AAAA; ns2.example.net no glue"),
    C(EX, "MX", note="mail A/AAAA in additional"),
    C(EX, "A"),
    C(EX, "AAAA"),
    C(EX, "TXT"),
    C(EX, "DS", note="no parent served: NODATA"),
    C(EX, "CAA"),
    C(EX, "ANY", ANY_RULE),
    C("www." + EX),
    C("www." + EX, "AAAA"),
    C("www." + EX, "MX"),
    C("www." + EX, "TXT"),
    C("www." + EX, "CNAME"),
    C("www." + EX, "ANY", ANY_RULE),
    C("www." + EX, "TYPE65280"),
    C("ns1." + EX),
    C("ns1." + EX, "AAAA"),
    C("mail." + EX, "AAAA"),
    C("v4only." + EX, "AAAA"),
    C("ttl-short." + EX),
    C("_sip._udp." + EX, "SRV", note="additional for both targets"),
    C("_ldap._tcp." + EX, "SRV", note="out-of-zone target: no additional"),
    C("_udp." + EX, "SRV", note="empty non-terminal"),
    C("mx-ext." + EX, "MX"),
    C("mx-nx." + EX, "MX"),
    C("mx-cname." + EX, "MX", note="target is a CNAME: no additional"),
    C("srv-root." + EX, "SRV"),
    # empty non-terminals, NXDOMAIN, NODATA (negative TTL 300)
    C("a.b.ent." + EX),
    C("b.ent." + EX),
    C("ent." + EX),
    C("ent." + EX, "TXT"),
    C("x.ent." + EX),
    C("x.b.ent." + EX),
    C("ent." + EX, "ANY", note="ANY at an ENT: NODATA"),
    C("nothere." + EX),
    C("nothere." + EX, "MX"),
    C("deep.nothere." + EX, "TXT"),
    C("xexample.com.", note="outside: only a suffix of the string matches"),
    # CNAME
    C("alias." + EX),
    C("alias." + EX, "AAAA"),
    C("alias." + EX, "MX"),
    C("alias." + EX, "CNAME"),
    C("alias." + EX, "ANY", ANY_RULE),
    C("alias-ext." + EX),
    C("alias-alias." + EX),
    C("alias-nx." + EX),
    C("alias-ent." + EX),
    C("alias-deleg." + EX, note="CNAME then referral, AA set"),
    C("alias-wild." + EX, "TXT"),
    C("alias-wild." + EX),
    C("alias-wc." + EX),
    C("alias-dname." + EX, "TXT"),
    C("alias-other." + EX, note="target in another served zone: not followed"),
    C("alias-child." + EX),
    C("alias-unk." + EX),
    C("loop1." + EX),
    C("loop2." + EX, "CNAME"),
    C("self." + EX),
    C("self." + EX, "CNAME"),
    C("c1." + EX, rule=CHAIN_RULE),
    C("c5." + EX, rule=CHAIN_RULE),
    C("c7." + EX, rule=CHAIN_RULE),
    C("c8." + EX, rule=CHAIN_RULE),
    C("c9." + EX),
    C("c12." + EX),
    C("c1." + EX, "CNAME"),
    C("c4." + EX, "MX", CHAIN_RULE),
    # DNAME (RFC 6672)
    C("dn." + EX),
    C("dn." + EX, "DNAME"),
    C("www.dn." + EX),
    C("www.dn." + EX, "AAAA"),
    C("alias.dn." + EX),
    C("nx.dn." + EX),
    C("x.dn." + EX, "TXT"),
    C("a.b.dn." + EX),
    C("www.dn-ext." + EX),
    C("dn-ext." + EX, "DNAME"),
    C("www.dn-child." + EX),
    C("x.dn-dn." + EX, "TXT"),
    C("www.dn." + EX, "DNAME"),
    C("x.dn." + EX, "CNAME"),
    C("nx.dn." + EX, "CNAME"),
    C("alias.dn." + EX, "CNAME"),
    C("d" * 62 + "." + "e" * 62 + ".dn-long." + EX, note="YXDOMAIN"),
    # delegations, glue, DS at the cut
    C("sub." + EX, "NS"),
    C("sub." + EX),
    C("sub." + EX, "DS"),
    C("sub." + EX, "SOA"),
    C("sub." + EX, "ANY"),
    C("host.sub." + EX),
    C("ns.sub." + EX),
    C("ns.sub." + EX, "AAAA"),
    C("deep.host.sub." + EX, "TXT"),
    C("sub-ext." + EX),
    C("sub-ext." + EX, "NS"),
    C("nx.sub-ext." + EX),
    C("sub-ext." + EX, "DS"),
    C("sub-sib." + EX, note="in-zone NS targets outside the cut get glue too"),
    # wildcards below the apex
    C("foo.wild." + EX),
    C("foo.wild." + EX, "TXT"),
    C("foo.wild." + EX, "AAAA"),
    C("a.b.wild." + EX),
    C("exists.wild." + EX),
    C("exists.wild." + EX, "AAAA"),
    C("*.wild." + EX),
    C("*.wild." + EX, "AAAA"),
    C("wild." + EX),
    C("x.wc." + EX),
    C("x.wc." + EX, "TXT"),
    C("x.wcx." + EX),
    C("x.wild." + EX, "ANY", ANY_RULE),
    # mixed-case owners, escapes
    C("mixed." + EX),
    C("MIXED." + EX),
    C("caseset." + EX),
    C("CaseSet." + EX, "AAAA"),
    C("CASESET." + EX, "ANY", ANY_RULE),
    C("case." + EX, "TXT"),
    C("upper.case." + EX, "TXT"),
    C("weird\\.dot." + EX),
    C("weird.dot." + EX),
    C("sp\\032ace." + EX),
    C("bin\\000ary." + EX),
    C("\\@at." + EX, "TXT"),
    C('esc\\"q.' + EX, "TXT"),
    # large RRsets: truncation and additional that does not fit
    C("medium." + EX, "TXT", transports=SIZES),
    C("big." + EX, "TXT", transports=SIZES),
    C("huge." + EX, "TXT", transports=SIZES),
    C("many." + EX, transports=SIZES),
    C("mx-many." + EX, "MX", transports=SIZES),
    C(
        "www." + EX,
        transports=("udp-edns512", "udp-edns100", "udp-edns1000", "udp-edns4096", "tcp", "udp-do"),
    ),
    # RFC 4592 section 2.2.1 zone
    C("example.", "SOA"),
    C("example.", "NS", note="NS targets in other zones: no glue"),
    C("host3.example.", "MX"),
    C("host3.example.", "A"),
    C("foo.bar.example.", "TXT"),
    C("host1.example.", "MX"),
    C("host1.example.", "A"),
    C("sub.*.example.", "MX"),
    C("_telnet._tcp.host1.example.", "SRV"),
    C("host.subdel.example."),
    C("subdel.example.", "NS"),
    C("ghost.*.example.", "MX"),
    C("*.example.", "MX"),
    C("*.example.", "A"),
    C("_ssh._tcp.host1.example.", "SRV"),
    C("_ssh._tcp.host2.example.", "SRV"),
    C("_tcp.host1.example."),
    C("x.cn.example."),
    C("x.cn.example.", "MX"),
    C("x.cnx.example."),
    C("x.deep.example."),
    C("b.c.deep.example."),
    C("x.c.deep.example."),
    C("x.a.b.c.deep.example."),
    C("host3.example.", "ANY", ANY_RULE),
    C("*.cn.example."),
    C("x.y.example.", "TXT"),
    C("sub.*.example.", "TXT"),
    C("x.sub.*.example.", "TXT"),
    # parent and child zones served together (negative TTL 60 in the parent)
    C("parent.test.", "SOA"),
    C("www.parent.test."),
    C("www.parent.test.", "MX"),
    C("nx.parent.test."),
    C("child.parent.test.", "NS"),
    C("child.parent.test.", "SOA"),
    C("child.parent.test.", "DS", note="RFC 4035 3.1.4.1: the parent answers DS"),
    C("www.child.parent.test."),
    C("ns.child.parent.test."),
    C("alias.child.parent.test."),
    C("nx.child.parent.test."),
    C("nochild.parent.test."),
    C("x.nochild.parent.test."),
    C("nochild.parent.test.", "DS"),
    C("x.grand.child.parent.test."),
    C("grand.child.parent.test.", "DS"),
    # outside every zone: REFUSED (+ EDE 20 with EDNS)
    C("www.unserved.test."),
    C("test.", "SOA"),
    C("com.", "SOA"),
    C(".", "NS"),
    C("example.net."),
    C("www.example.org.", "AAAA"),
]


def _mixcase(name):
    """The query name with ASCII letters in alternating case (0x20)."""
    labels = []
    for label in dns.name.from_text(name).labels:
        out = bytearray(label)
        for i, b in enumerate(out):
            if 0x61 <= b <= 0x7A or 0x41 <= b <= 0x5A:
                out[i] = (b & ~0x20) if i % 2 == 0 else (b | 0x20)
        labels.append(bytes(out))
    return dns.name.Name(labels)


def _params():
    seen = set()
    for case in CASES:
        for transport in case.transports:
            cid = f"{case.qname}/{case.qtype}/{transport}"
            assert cid not in seen, f"duplicate case {cid}"
            seen.add(cid)
            yield pytest.param(case, transport, id=cid)


def _node_rrsets(knot, qname):
    """Every RR owned by qname, asking Knot for each type over TCP (for ANY)."""
    owner = qname.canonicalize().to_text()
    rrs = set()
    for rdtype in ("A", "AAAA", "MX", "TXT", "NS", "SOA", "SRV", "CNAME", "DNAME", "DS"):
        msg = ask(knot.address, make_query(qname, rdtype), tcp=True, full=False).msg
        rrs |= {
            rr
            for rr in rr_set(msg.answer)
            if rr[0] == owner and rr[2] == dns.rdatatype.from_text(rdtype)
        }
    return frozenset(rrs)


def run_diff(knot, xdp, case_id, query, tcp, rule=EXACT, wire=None):
    ref = ask(knot.address, query, tcp=tcp, wire=wire)
    got = ask(xdp.address, query, tcp=tcp, wire=wire, full=False)
    diffs = compare(ref, got, rule)
    assert not diffs, report(case_id, query, ref, got, diffs, rule)


@pytest.mark.parametrize("case,transport", list(_params()))
def test_query(knot_server, xdpdns_server, case, transport, request):
    t = dict(TRANSPORTS[transport])
    tcp = t.pop("tcp")
    name = _mixcase(case.qname) if t.pop("mixcase", False) else dns.name.from_text(case.qname)
    query = make_query(name, case.qtype, **t)
    rule = case.rule
    if rule.answer == "subset-of-node":
        rule = dataclasses.replace(rule, node_rrsets=_node_rrsets(knot_server, name))
    run_diff(knot_server, xdpdns_server, request.node.callspec.id, query, tcp, rule)


# ---- protocol corner cases: queries built by hand -----------------------------------


def _with(query, *, flags=None, opcode=None, rdclass=None):
    if flags is not None:
        query.flags = flags
    if opcode is not None:
        query.set_opcode(opcode)
    return query


def _edns_wire(query, version=None, ednsflags=None):
    q = query
    q.use_edns(
        version if version is not None else q.edns,
        ednsflags if ednsflags is not None else q.ednsflags,
        q.payload,
        options=q.options,
    )
    return q


def _www(**kw):
    return make_query("www.example.com.", "A", **kw)


NOTIMP_OPCODE = Rule(
    rfc="RFC 1035 section 4.1.1: xdpdns does not implement NOTIFY (RFC "
    "1996) or UPDATE (RFC 2136) and answers NOTIMP; Knot "
    "implements them and answers NOTAUTH without an ACL",
    rcodes=(NOTIMP,),
)
NO_XFR = Rule(
    rfc="RFC 5936 section 2.2: xdpdns serves no zone transfers; any of NOTIMP, "
    "REFUSED, NOTAUTH (Knot: NOTIMP over UDP, NOTAUTH over TCP)",
    rcodes=(NOTIMP, REFUSED, NOTAUTH),
)
META_QTYPE = Rule(
    rfc="RFC 6895 section 3.1: meta-types (OPT, TSIG, TKEY) asked as "
    "qtypes; Knot answers NODATA, an error is fine",
    rcodes=(NOERROR, FORMERR, NOTIMP, REFUSED),
)
FORMERR_ONLY = Rule(
    rfc="RFC 1035 section 4.1.1: FORMERR (details of its header and sections are free)",
    rcodes=(FORMERR,),
)

# (id, query message, transports, rule)
SPECIAL = [
    ("edns-v1", _www(edns=1), EXACT),
    ("edns-v1-outside", make_query("www.unserved.test.", edns=1), EXACT),
    ("edns-do", _www(dnssec=True), EXACT),
    ("edns-do-referral", make_query("host.sub.example.com.", dnssec=True), EXACT),
    ("edns-do-nxdomain", make_query("nothere.example.com.", dnssec=True), EXACT),
    ("edns-payload-0", _www(payload=0), EXACT),
    ("edns-payload-511", _www(payload=511), EXACT),
    ("edns-payload-65535", _www(payload=65535), EXACT),
    ("edns-z-bits", _edns_wire(_www(), ednsflags=0x7FFF), EXACT),
    ("edns-nsid", _www(options=[dns.edns.GenericOption(dns.edns.NSID, b"")]), EXACT),
    (
        "edns-cookie",
        _www(options=[dns.edns.GenericOption(dns.edns.COOKIE, b"12345678")]),
        Rule(
            rfc="RFC 9018 section 4: both servers make a server cookie with the shared "
            "secret; its timestamp may differ (test_cookie checks the hashes)",
            cookie="structure",
        ),
    ),
    ("edns-unknown-option", _www(options=[dns.edns.GenericOption(65001, b"xy")]), EXACT),
    ("outside-noedns", make_query("www.unserved.test.", edns=None), EXACT),
    ("outside-edns-ede20", make_query("www.unserved.test.", edns=0), EXACT),
    ("chaos-id.server", make_query("id.server.", "TXT", rdclass="CH"), EXACT),
    (
        "chaos-version.bind-noedns",
        make_query("version.bind.", "TXT", rdclass="CH", edns=None),
        EXACT,
    ),
    ("chaos-hostname.bind", make_query("hostname.bind.", "TXT", rdclass="CH"), EXACT),
    ("chaos-inzone-name", make_query("www.example.com.", "A", rdclass="CH"), EXACT),
    ("chaos-version.server", make_query("VERSION.Server.", "TXT", rdclass="CH"), EXACT),
    ("chaos-version.bind-any", make_query("version.bind.", "ANY", rdclass="CH"), EXACT),
    ("chaos-version.bind-a", make_query("version.bind.", "A", rdclass="CH"), EXACT),
    ("chaos-unknown-name", make_query("foo.bind.", "TXT", rdclass="CH"), EXACT),
    (
        "chaos-nsid",
        make_query(
            "id.server.", "TXT", rdclass="CH", options=[dns.edns.GenericOption(dns.edns.NSID, b"")]
        ),
        EXACT,
    ),
    ("class-hs", make_query("www.example.com.", "A", rdclass="HS"), EXACT),
    ("class-none", make_query("www.example.com.", "A", rdclass="NONE", edns=None), EXACT),
    ("class-4242", make_query("www.example.com.", "A", rdclass=4242, edns=None), EXACT),
    (
        "class-any",
        make_query("www.example.com.", "A", rdclass="ANY"),
        Rule(
            rfc="RFC 1035 section 3.2.5: QCLASS * (Knot answers with the IN data); "
            "answering or refusing are both acceptable",
            rcodes=(NOERROR, REFUSED, NOTIMP),
        ),
    ),
    ("opcode-iquery", _with(_www(), opcode=1), EXACT),
    ("opcode-status", _with(_www(), opcode=2), EXACT),
    ("opcode-3", _with(_www(edns=None), opcode=3), EXACT),
    ("opcode-notify", _with(make_query(EX, "SOA", edns=None, rd=False), opcode=4), NOTIMP_OPCODE),
    ("opcode-update", _with(make_query(EX, "SOA", edns=None, rd=False), opcode=5), NOTIMP_OPCODE),
    ("opcode-15", _with(_www(), opcode=15), EXACT),
    ("flags-aa-tc-in-query", _with(_www(), flags=0x0700), EXACT),
    ("flags-ad-in-query", _with(_www(), flags=0x0120), EXACT),
    ("flags-cd-in-query", _with(_www(), flags=0x0110), EXACT),
    ("flags-cd-do", _with(_www(dnssec=True), flags=0x0110), EXACT),
    ("flags-z-in-query", _with(_www(), flags=0x0140), EXACT),
    ("flags-ra-in-query", _with(_www(), flags=0x0180), EXACT),
    ("flags-rcode-in-query", _with(_www(), flags=0x0105), EXACT),
    ("flags-rd-clear", _www(rd=False), EXACT),
    ("flags-rd-clear-referral", make_query("host.sub.example.com.", rd=False), EXACT),
    ("flags-rd-clear-nxdomain", make_query("nothere.example.com.", rd=False), EXACT),
    ("qtype-axfr", make_query(EX, "AXFR", edns=None), NO_XFR),
    ("qtype-ixfr", make_query(EX, "IXFR", edns=None), NO_XFR),
    (
        "qtype-maila",
        make_query(EX, "MAILA"),
        Rule(
            rfc="RFC 1035 section 3.2.3 (obsolete MAILA): NODATA or NOTIMP",
            rcodes=(NOERROR, NOTIMP),
        ),
    ),
    (
        "qtype-mailb",
        make_query(EX, "MAILB"),
        Rule(
            rfc="RFC 1035 section 3.2.3 (obsolete MAILB): NODATA or NOTIMP",
            rcodes=(NOERROR, NOTIMP),
        ),
    ),
    ("qtype-opt", make_query(EX, "OPT"), META_QTYPE),
    ("qtype-tsig", make_query(EX, "TSIG"), META_QTYPE),
    ("qtype-tkey", make_query(EX, "TKEY"), META_QTYPE),
    (
        "qtype-0",
        make_query(EX, 0),
        Rule(
            rfc="RFC 6895 section 3.1: type 0 is reserved, not forbidden in a query; Knot "
            "NOTIMP, NODATA or another error is fine",
            rcodes=(NOERROR, NOTIMP, FORMERR, REFUSED),
        ),
    ),
    ("qtype-rrsig", make_query("www.example.com.", "RRSIG"), EXACT),
    ("qtype-nsec", make_query("www.example.com.", "NSEC"), EXACT),
    ("qtype-private", make_query(EX, 65280), EXACT),
]


def _special_params():
    for cid, query, rule in SPECIAL:
        for transport in ("udp", "tcp"):
            yield pytest.param(query, rule, transport == "tcp", id=f"{cid}/{transport}")


@pytest.mark.parametrize("query,rule,tcp", list(_special_params()))
def test_special(knot_server, xdpdns_server, query, rule, tcp, request):
    run_diff(knot_server, xdpdns_server, request.node.callspec.id, query, tcp, rule)


# ---- DNS cookies: both servers share DIFF_COOKIE_SECRET ------------------------------

SECRET = bytes.fromhex(DIFF_COOKIE_SECRET)
CC = bytes.fromhex("0123456789abcdef")
LOOPBACK = "127.0.0.1"  # the address both servers see the test's queries from
COOKIE_LIFETIME = (3600, 300)  # RFC 9018 4.3: an hour back, five minutes ahead

COOKIE_STRUCTURE = Rule(
    rfc="RFC 9018 section 4: a server cookie holds its timestamp, "
    "which may differ between the servers; each one's hash must "
    "verify under the shared secret",
    cookie="structure",
)
COOKIE_RENEWED = Rule(
    rfc="RFC 9018 section 4.3: a server cookie older than half an hour "
    "is renewed (Knot sends it back); both must verify",
    cookie="structure",
)


def _server_cookie(
    age, client=LOOPBACK, secret=SECRET, version=1, reserved=bytes(3), client_cookie=CC
):
    """An RFC 9018 server cookie made `age` seconds ago (negative: ahead)."""
    head = bytes([version]) + reserved + struct.pack("!I", (int(time.time()) - age) % 2**32)
    return head + siphash24(secret, client_cookie + head + ipaddress.ip_address(client).packed)


# (id, COOKIE option data, made when the test runs; rule; query keywords)
COOKIE_CASES = [
    ("client-only", lambda: CC, COOKIE_STRUCTURE, {}),
    ("valid", lambda: CC + _server_cookie(10), EXACT, {}),
    ("valid-reserved-bits", lambda: CC + _server_cookie(10, reserved=b"\xab\xcd\xef"), EXACT, {}),
    ("valid-ahead", lambda: CC + _server_cookie(-200), EXACT, {}),
    ("valid-40-minutes-old", lambda: CC + _server_cookie(2400), COOKIE_RENEWED, {}),
    ("expired", lambda: CC + _server_cookie(3700), COOKIE_STRUCTURE, {}),
    ("too-far-ahead", lambda: CC + _server_cookie(-400), COOKIE_STRUCTURE, {}),
    ("wrong-secret", lambda: CC + _server_cookie(10, secret=bytes(16)), COOKIE_STRUCTURE, {}),
    ("other-client", lambda: CC + _server_cookie(10, client="127.0.0.2"), COOKIE_STRUCTURE, {}),
    (
        "other-client-cookie",
        lambda: CC + _server_cookie(10, client_cookie=bytes(8)),
        COOKIE_STRUCTURE,
        {},
    ),
    ("version-2", lambda: CC + _server_cookie(10, version=2), COOKIE_STRUCTURE, {}),
    ("server-cookie-8", lambda: CC + _server_cookie(10)[:8], COOKIE_STRUCTURE, {}),
    ("server-cookie-32", lambda: CC + _server_cookie(10) + bytes(16), COOKIE_STRUCTURE, {}),
    ("malformed-0", lambda: b"", EXACT, {}),
    ("malformed-7", lambda: CC[:7], EXACT, {}),
    ("malformed-9", lambda: CC + b"\x01", EXACT, {}),
    ("malformed-15", lambda: CC + bytes(7), EXACT, {}),
    ("malformed-41", lambda: CC + bytes(33), EXACT, {}),
    ("outside-zones", lambda: CC, COOKIE_STRUCTURE, {"qname": "www.unserved.test."}),
    ("nxdomain", lambda: CC + _server_cookie(10), EXACT, {"qname": "nothere.example.com."}),
    (
        "chaos",
        lambda: CC + _server_cookie(10),
        EXACT,
        {"qname": "version.bind.", "qtype": "TXT", "rdclass": "CH"},
    ),
    ("edns-v1", lambda: CC, EXACT, {"version": 1}),
    ("edns-v1-malformed", lambda: CC[:3], EXACT, {"version": 1}),
]


def _cookie_params():
    for cid, option, rule, kw in COOKIE_CASES:
        for transport in ("udp", "tcp"):
            yield pytest.param(option, rule, kw, transport == "tcp", id=f"{cid}/{transport}")


def _cookie_query(option, qname="www.example.com.", qtype="A", rdclass="IN", version=0):
    query = make_query(qname, qtype, rdclass=rdclass)
    query.use_edns(version, payload=1232, options=[dns.edns.GenericOption(dns.edns.COOKIE, option)])
    return query


def _cookie_problems(server, sent, response):
    """Why the COOKIE of a response is not one the shared secret made for
    the client within its lifetime (empty: it is)."""
    cookies = [o.to_wire() for o in response.options if o.otype == dns.edns.COOKIE]
    if not cookies:
        return []
    (cookie,) = cookies
    head, hash_ = cookie[8:16], cookie[16:]
    stamp = struct.unpack("!I", head[4:])[0]
    age = int(time.time()) - stamp
    expected = siphash24(SECRET, sent[:8] + head + ipaddress.ip_address(LOOPBACK).packed)
    problems = []
    if cookie[:8] != sent[:8] or len(cookie) != 24:
        problems.append(f"{server}: cookie {cookie.hex()} does not echo {sent[:8].hex()}")
    if not -COOKIE_LIFETIME[1] <= age <= COOKIE_LIFETIME[0]:
        problems.append(f"{server}: server cookie timestamp {stamp} is {age} s old")
    if hash_ != expected:
        problems.append(f"{server}: server cookie hash {hash_.hex()} != {expected.hex()}")
    return problems


@pytest.mark.parametrize("option,rule,kw,tcp", list(_cookie_params()))
def test_cookie(knot_server, xdpdns_server, option, rule, kw, tcp, request):
    sent = option()
    query = _cookie_query(sent, **kw)
    ref = ask(knot_server.address, query, tcp=tcp)
    got = ask(xdpdns_server.address, query, tcp=tcp, full=False)
    diffs = compare(ref, got, rule)
    for server, exchange in (("knot", ref), ("xdpdns", got)):
        if exchange.wire is not None and len(sent) >= 8:
            diffs += _cookie_problems(server, sent, exchange.msg)
    # xdpdns's own rule (a second Knot in its place, XDPDNS_DIFF_SELFTEST, keeps it).
    if rule is COOKIE_RENEWED and got.wire is not None and xdpdns_server.name == "xdpdns":
        (cookie,) = [o.to_wire() for o in got.msg.options if o.otype == dns.edns.COOKIE]
        if abs(struct.unpack("!I", cookie[12:16])[0] - time.time()) > 30:
            diffs.append(f"xdpdns did not renew the old cookie: {cookie.hex()}")
    assert not diffs, report(request.node.callspec.id, query, ref, got, diffs, rule)


# ---- malformed packets: raw bytes --------------------------------------------------


def _hdr(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def _rr_a():
    return b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([198, 18, 0, 1])


def _opt(ttl=0, rdlen=0, rdata=b""):
    return b"\x00" + struct.pack("!HHIH", 41, 1232, ttl, rdlen) + rdata


QWWW = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
DROP_OR_FORMERR = Rule(
    rfc="RFC 1035 section 4.1.1 / RFC 9619: Knot drops what it cannot "
    "parse; xdpdns may drop it or answer FORMERR",
    drop_or=(FORMERR,),
)
MALFORMED = [
    ("empty", b"", DROP_OR_FORMERR),
    ("one-byte", b"\x12", DROP_OR_FORMERR),
    ("truncated-header", _hdr()[:7], DROP_OR_FORMERR),
    ("header-only-qdcount-1", _hdr(), DROP_OR_FORMERR),
    ("question-cut-in-name", _hdr() + b"\x03www\x07exam", DROP_OR_FORMERR),
    ("question-cut-in-qtype", _hdr() + QWWW[:-3], DROP_OR_FORMERR),
    ("qdcount-2", _hdr(qd=2) + QWWW + QWWW, DROP_OR_FORMERR),
    ("qdcount-2-one-present", _hdr(qd=2) + QWWW, DROP_OR_FORMERR),
    ("label-64", _hdr() + b"\x40" + b"a" * 64 + QWWW[4:], DROP_OR_FORMERR),
    ("label-type-01", _hdr() + b"\x41a\x00\x00\x01\x00\x01", DROP_OR_FORMERR),
    ("label-type-10", _hdr() + b"\x81a\x00\x00\x01\x00\x01", DROP_OR_FORMERR),
    (
        "name-over-255",
        _hdr() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
        DROP_OR_FORMERR,
    ),
    (
        "compression-pointer-in-question",
        _hdr() + b"\x03www\xc0\x0c\x00\x01\x00\x01",
        DROP_OR_FORMERR,
    ),
    ("compression-pointer-loop", _hdr() + b"\xc0\x0c\x00\x01\x00\x01", DROP_OR_FORMERR),
    (
        "compression-pointer-forward",
        _hdr() + b"\x03www\xc0\x16\x00\x01\x00\x01" + b"\x07example\x03com\x00",
        DROP_OR_FORMERR,
    ),
    ("compression-pointer-outside", _hdr() + b"\x03www\xc3\xff\x00\x01\x00\x01", DROP_OR_FORMERR),
    ("qdcount-0", _hdr(qd=0), FORMERR_ONLY),
    ("qdcount-0-edns", _hdr(qd=0, ar=1) + _opt(), FORMERR_ONLY),
    ("twelve-zero-bytes", b"\x00" * 12, FORMERR_ONLY),
    ("trailing-garbage", _hdr() + QWWW + b"GARBAGE", FORMERR_ONLY),
    ("trailing-zero-byte", _hdr() + QWWW + b"\x00", FORMERR_ONLY),
    ("trailing-garbage-edns", _hdr(ar=1) + QWWW + _opt() + b"XX", FORMERR_ONLY),
    ("ancount-1-missing", _hdr(an=1) + QWWW, FORMERR_ONLY),
    ("arcount-2-missing", _hdr(ar=2) + QWWW + _opt(), FORMERR_ONLY),
    (
        "two-opt",
        _hdr(ar=2) + QWWW + _opt() + _opt(),
        Rule(rfc="RFC 6891 section 6.1.1: more than one OPT is FORMERR", rcodes=(FORMERR,)),
    ),
    ("opt-rdlen-overrun", _hdr(ar=1) + QWWW + _opt(rdlen=10, rdata=b"\x00\x0a"), FORMERR_ONLY),
    (
        "opt-option-overrun",
        _hdr(ar=1) + QWWW + _opt(rdlen=4, rdata=b"\x00\x0a\x00\x08"),
        Rule(
            rfc="RFC 6891 section 6.1.2: an option longer than the RDATA is FORMERR "
            "(Knot ignores it)",
            or_error=(FORMERR,),
        ),
    ),
    (
        "opt-owner-not-root",
        _hdr(ar=1) + QWWW + b"\x01x\x00" + _opt()[1:],
        Rule(
            rfc="RFC 6891 section 6.1.2: the OPT owner MUST be root; Knot accepts it, "
            "xdpdns may answer FORMERR",
            or_error=(FORMERR,),
        ),
    ),
    (
        "edns-v1-qdcount-0",
        _hdr(qd=0, ar=1) + _opt(ttl=0x00010000),
        Rule(
            rfc="RFC 6891 section 6.1.3: BADVERS (Knot) or FORMERR for the missing question",
            rcodes=(FORMERR, dns.rcode.BADVERS),
        ),
    ),
    (
        "answer-rr-in-query",
        _hdr(an=1) + QWWW + _rr_a(),
        Rule(
            rfc="RFC 1035 section 4.1: records in a query's answer section are ignored "
            "(Knot) or FORMERR",
            or_error=(FORMERR,),
        ),
    ),
    (
        "authority-rr-in-query",
        _hdr(ns=1) + QWWW + _rr_a(),
        Rule(rfc="RFC 1035 section 4.1: ignored (Knot) or FORMERR", or_error=(FORMERR,)),
    ),
    (
        "additional-a-rr-in-query",
        _hdr(ar=1) + QWWW + _rr_a(),
        Rule(rfc="RFC 1035 section 4.1: ignored (Knot) or FORMERR", or_error=(FORMERR,)),
    ),
    ("qr-set", _hdr(flags=0x8100) + QWWW, EXACT),
    ("qr-set-outside", _hdr(flags=0x8000) + b"\x01x\x04test\x00\x00\x01\x00\x01", EXACT),
    ("qr-set-malformed", _hdr(flags=0x8000, qd=2), EXACT),
    (
        "opcode-dso-qdcount-0",
        _hdr(flags=0x3000, qd=0),
        Rule(rfc="RFC 8490 section 5.1.1: a DSO-unaware server answers NOTIMP", rcodes=(NOTIMP,)),
    ),
]


def _malformed_params():
    for cid, wire, rule in MALFORMED:
        for transport in ("udp", "tcp"):
            if transport == "tcp" and not wire:
                continue  # a zero-length TCP message is the end of the stream
            yield pytest.param(wire, rule, transport == "tcp", id=f"{cid}/{transport}")


@pytest.mark.parametrize("wire,rule,tcp", list(_malformed_params()))
def test_malformed(knot_server, xdpdns_server, wire, rule, tcp, request):
    ref = ask(knot_server.address, None, tcp=tcp, wire=wire, full=False, timeout=0.5)
    got = ask(xdpdns_server.address, None, tcp=tcp, wire=wire, full=False, timeout=0.5)
    diffs = compare(ref, got, rule)
    assert not diffs, report(request.node.callspec.id, None, ref, got, diffs, rule)


# ---- stored expectations: what the reference must say ------------------------------
#
# These pin Knot's answers to a few queries written out as text, so a change
# in the reference (another Knot version) shows up here rather than as a
# puzzling difference above; the same expectations are checked against xdpdns.

EXPECTED = [
    (
        "www.example.com.",
        "A",
        """
flags QR AA RD
;ANSWER
www.example.com. 3600 IN A 198.18.0.80
www.example.com. 3600 IN A 198.18.0.81
""",
    ),
    (
        "nothere.example.com.",
        "A",
        """
rcode NXDOMAIN
flags QR AA RD
;AUTHORITY
example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2024010101 3600 900 604800 300
""",
    ),
    (
        "www.parent.test.",
        "MX",
        """
flags QR AA RD
;AUTHORITY
parent.test. 60 IN SOA ns.parent.test. hostmaster.parent.test. 7 3600 900 604800 3600
""",
    ),
    (
        "host.sub.example.com.",
        "A",
        """
flags QR RD
;AUTHORITY
sub.example.com. 3600 IN NS ns.sub.example.com.
sub.example.com. 3600 IN NS ns.example.net.
;ADDITIONAL
ns.sub.example.com. 3600 IN A 198.18.1.53
ns.sub.example.com. 3600 IN AAAA 2001:2:0:1::53
""",
    ),
    (
        "sub.example.com.",
        "DS",
        """
flags QR AA RD
;ANSWER
sub.example.com. 3600 IN DS 12345 13 2 3490A6806D47F17A34C29E2CE80E8A999FFBE4BE1A4B6CCB4D8E5BE2F7FEC6F5
""",
    ),
    (
        "child.parent.test.",
        "DS",
        """
flags QR AA RD
;ANSWER
child.parent.test. 3600 IN DS 54321 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
""",
    ),
    (
        "www.child.parent.test.",
        "A",
        """
flags QR AA RD
;ANSWER
www.child.parent.test. 3600 IN A 198.18.6.80
""",
    ),
    (
        "host3.example.",
        "MX",
        """
flags QR AA RD
;ANSWER
host3.example. 3600 IN MX 10 host1.example.
;ADDITIONAL
host1.example. 3600 IN A 198.18.4.1
""",
    ),
    (
        "x.c.deep.example.",
        "A",
        """
rcode NXDOMAIN
flags QR AA RD
;AUTHORITY
example. 3600 IN SOA ns.example.com. hostmaster.example. 1 3600 900 604800 3600
""",
    ),
    (
        "alias-nx.example.com.",
        "A",
        """
rcode NXDOMAIN
flags QR AA RD
;ANSWER
alias-nx.example.com. 3600 IN CNAME nothere.example.com.
;AUTHORITY
example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2024010101 3600 900 604800 300
""",
    ),
    (
        "alias.dn.example.com.",
        "A",
        """
flags QR AA RD
;ANSWER
dn.example.com. 3600 IN DNAME tgt.example.com.
alias.dn.example.com. 3600 IN CNAME alias.tgt.example.com.
alias.tgt.example.com. 3600 IN CNAME www.example.com.
www.example.com. 3600 IN A 198.18.0.80
www.example.com. 3600 IN A 198.18.0.81
""",
    ),
    (
        "x.wc.example.com.",
        "TXT",
        """
flags QR AA RD
;ANSWER
x.wc.example.com. 3600 IN CNAME www.example.com.
;AUTHORITY
example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2024010101 3600 900 604800 300
""",
    ),
    (
        "sub-sib.example.com.",
        "A",
        """
flags QR RD
;AUTHORITY
sub-sib.example.com. 3600 IN NS ns1.example.com.
sub-sib.example.com. 3600 IN NS www.example.com.
;ADDITIONAL
ns1.example.com. 3600 IN A 198.18.0.53
ns1.example.com. 3600 IN AAAA 2001:2::53
www.example.com. 3600 IN A 198.18.0.80
www.example.com. 3600 IN A 198.18.0.81
www.example.com. 3600 IN AAAA 2001:2::80
""",
    ),
    (
        "www.unserved.test.",
        "A",
        """
rcode REFUSED
flags QR RD
""",
    ),
]


def _expected_message(query, text):
    """The expected response to query: header lines (rcode, flags) and the
    sections of text, under the query's ID and question."""
    header = {"rcode": "NOERROR"}
    sections = {";ANSWER": [], ";AUTHORITY": [], ";ADDITIONAL": []}
    current = None
    for line in text.strip().splitlines():
        if line in sections:
            current = line
        elif current:
            sections[current].append(line)
        else:
            key, value = line.split(" ", 1)
            header[key] = value
    lines = [
        f"id {query.id}",
        "opcode QUERY",
        f"rcode {header['rcode']}",
        f"flags {header['flags']}",
        ";QUESTION",
        query.question[0].to_text(),
    ]
    for name, rrs in sections.items():
        lines += [name] + rrs
    return dns.message.from_text("\n".join(lines))


@pytest.mark.parametrize("server_name", ["knot", "xdpdns"])
@pytest.mark.parametrize("qname,qtype,text", EXPECTED, ids=[f"{q}/{t}" for q, t, _ in EXPECTED])
def test_expected(server_name, qname, qtype, text, request):
    server = request.getfixturevalue(f"{server_name}_server")
    query = make_query(qname, qtype, edns=None)
    expected = Exchange(query.to_wire(), query, False, _expected_message(query, text).to_wire())
    got = ask(server.address, query, tcp=False, full=False)
    diffs = compare(expected, got)
    assert not diffs, report(f"{qname}/{qtype}", query, expected, got, diffs)


@pytest.mark.parametrize("server_name", ["knot", "xdpdns"])
def test_refused_outside_carries_ede_20(server_name, request):
    """RFC 8914 section 4.21: REFUSED for a name outside our zones carries EDE 20
    (Not Authoritative) when the query had EDNS, as Knot does."""
    server = request.getfixturevalue(f"{server_name}_server")
    got = ask(server.address, make_query("www.unserved.test.", edns=0), full=False).msg
    assert got.rcode() == REFUSED
    assert not got.flags & dns.flags.AA
    assert [(o.otype, o.code) for o in got.options] == [(dns.edns.OptionType.EDE, 20)]
    assert got.payload == 1232


@pytest.mark.parametrize("server_name", ["knot", "xdpdns"])
def test_truncated_udp_answer_sets_tc(server_name, request):
    """RFC 1035 section 4.2.1 / RFC 2181 section 9: an answer over 512 bytes to a
    query without EDNS sets TC and fits in 512 bytes; over TCP it is whole."""
    server = request.getfixturevalue(f"{server_name}_server")
    query = make_query("big.example.com.", "TXT", edns=None)
    ex = ask(server.address, query)
    assert ex.msg.flags & dns.flags.TC and len(ex.wire) <= 512
    full = parse(ex.full)
    assert not full.flags & dns.flags.TC
    assert len(full.answer) == 1 and len(full.answer[0]) == 6
