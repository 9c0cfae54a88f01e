"""Differential DNS testing: send the same query bytes to two servers and
compare the responses section by section.

The reference is a real authoritative server (Knot DNS); the other is xdpdns.
Responses are compared as parsed messages (dnspython), never as text:

- header: ID, opcode, rcode (with the extended bits of EDNS), the flags QR,
  AA, TC, RD, RA, AD and CD;
- question: byte for byte, so the query name's case must be echoed exactly;
- EDNS: presence, version, advertised UDP payload, DO, options (EDE by code);
- answer, authority, additional: as sets of RRsets, with TTLs; owner names
  and names in RDATA compare case-insensitively (RFC 4343), TXT strings do
  not; and no RR may appear twice in a section.

Where servers may legitimately differ, a Rule relaxes one part of the
comparison and says which RFC allows it (see tests/test_diff_knot.py).
"""

import dataclasses
import random
import socket
import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

# The flags compared; dnspython's names.
FLAG_BITS = {
    "QR": dns.flags.QR,
    "AA": dns.flags.AA,
    "TC": dns.flags.TC,
    "RD": dns.flags.RD,
    "RA": dns.flags.RA,
    "AD": dns.flags.AD,
    "CD": dns.flags.CD,
}

UDP_LIMIT_NO_EDNS = 512  # RFC 1035 section 4.2.1
UDP_PAYLOAD_MAX = 1232  # DNS flag day 2020; both Knot and xdpdns cap at this


# ---- building and sending queries --------------------------------------------


def make_query(
    qname,
    qtype="A",
    *,
    rdclass="IN",
    edns=0,
    payload=1232,
    dnssec=False,
    rd=True,
    options=None,
    qid=None,
):
    """A query as a dnspython message; edns=None sends no OPT record."""
    msg = dns.message.make_query(
        qname,
        qtype,
        rdclass=rdclass,
        use_edns=False if edns is None else edns,
        payload=payload,
        want_dnssec=dnssec,
        options=options,
        id=qid if qid is not None else random.randrange(1 << 16),
    )
    if not rd:
        msg.flags &= ~dns.flags.RD
    if edns is not None and msg.edns != edns:
        # dnspython 2.3's make_query takes use_edns=1 for True: version 0.
        msg.use_edns(edns, msg.ednsflags & ~0xFF0000, payload, options=msg.options)
    return msg


def exchange(address, wire, *, tcp=False, timeout=2.0):
    """Sends raw query bytes; returns the raw response, or None when none
    came (timeout, or the TCP connection was closed without one)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    if tcp:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(address)
            s.sendall(struct.pack("!H", len(wire)) + wire)
            try:
                head = _recv_exactly(s, 2)
                if head is None:
                    return None
                return _recv_exactly(s, struct.unpack("!H", head)[0])
            except (socket.timeout, ConnectionResetError):
                return None
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, address)
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def _recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def udp_limit(query):
    """The largest UDP response the client accepts (RFC 6891 section 6.2.5:
    values below 512 mean 512), capped at our advertised 1232."""
    if query is None or query.edns < 0:
        return UDP_LIMIT_NO_EDNS
    return min(max(query.payload, UDP_LIMIT_NO_EDNS), UDP_PAYLOAD_MAX)


# ---- normalised views of a response -------------------------------------------


def raw_question(wire):
    """The question section's bytes, as sent (names in it are never
    compressed in what we compare); None when qdcount is 0 or it is cut."""
    if wire is None or len(wire) < 12 or struct.unpack("!H", wire[4:6])[0] == 0:
        return None
    pos = 12
    while pos < len(wire):
        n = wire[pos]
        if n == 0:
            return wire[12 : pos + 5] if pos + 5 <= len(wire) else None
        if n & 0xC0:
            return None
        pos += 1 + n
    return None


def section_counts(wire):
    return struct.unpack("!HHHH", wire[4:12])


def rr_set(section):
    """A section as a set of (owner, class, type, ttl, canonical rdata):
    one element per RR, so RRsets compare as sets with their TTLs."""
    out = set()
    for rrset in section:
        owner = rrset.name.canonicalize().to_text()
        for rd in rrset:
            out.add(
                (owner, rrset.rdclass, rrset.rdtype, rrset.ttl, rd.to_digestable(dns.name.root))
            )
    return out


def rr_text(rr):
    owner, rdclass, rdtype, ttl, digest = rr
    rd = dns.rdata.from_wire(rdclass, rdtype, digest, 0, len(digest))
    return (
        f"{owner} {ttl} {dns.rdataclass.to_text(rdclass)} "
        f"{dns.rdatatype.to_text(rdtype)} {rd.to_text()}"
    )[:200]


def rrsets_of(section):
    """A section as {(owner, type): set of RRs}, for RRset-level rules."""
    out = {}
    for rr in rr_set(section):
        out.setdefault((rr[0], rr[2]), set()).add(rr)
    return out


def flags_text(flags):
    return " ".join(name for name, bit in FLAG_BITS.items() if flags & bit) or "-"


def edns_view(msg, cookie="exact"):
    """EDNS as compared: None without OPT, else (version, payload, DO, Z
    bits, options); EDE options by code (RFC 8914 makes the text free).
    With cookie="structure" a COOKIE option is compared by its client
    cookie, its length and the server cookie's version and reserved bytes:
    the timestamp and hash of RFC 9018 are the test's to check."""
    if msg.edns < 0:
        return None
    opts = []
    for opt in msg.options:
        if opt.otype == dns.edns.OptionType.EDE:
            opts.append(("EDE", int(opt.code)))
        elif opt.otype == dns.edns.OptionType.COOKIE and cookie == "structure":
            data = opt.to_wire()
            opts.append(("COOKIE", data[:8], len(data), data[8:12]))
        else:
            opts.append((int(opt.otype), opt.to_wire()))
    return (
        msg.edns,
        msg.payload,
        bool(msg.ednsflags & dns.flags.DO),
        msg.ednsflags & 0x7FFF,
        tuple(sorted(opts, key=repr)),
    )


def wire_opcode(wire):
    """The opcode bits of a message's header."""
    return (wire[2] >> 3) & 0xF


def parse(wire):
    """dns.message.from_wire, also for opcodes this dnspython has no name for.

    Debian 12's dnspython (2.3) raises ValueError for opcodes 3, 6 and 15;
    such messages are parsed with the opcode bits cleared, so compare
    opcodes with wire_opcode(), never with Message.opcode().
    """
    try:
        return dns.message.from_wire(wire)
    except ValueError:
        if len(wire) < 3 or wire_opcode(wire) in (0, 1, 2, 4, 5):
            raise
        return dns.message.from_wire(wire[:2] + bytes([wire[2] & 0x87]) + wire[3:])


def summary(wire):
    """One message in a few readable lines, for failure output."""
    if wire is None:
        return "  (no response)"
    try:
        msg = parse(wire)
    except dns.exception.DNSException as e:
        return f"  (unparseable {len(wire)} bytes: {e}; {wire[:48].hex()})"
    lines = [
        f"  id {msg.id} opcode {wire_opcode(wire)} "
        f"rcode {dns.rcode.to_text(msg.rcode())} flags {flags_text(msg.flags)} "
        f"edns {edns_view(msg)} size {len(wire)}"
    ]
    for q in msg.question:
        lines.append(f"  question {q.to_text()}")
    for name, section in (("an", msg.answer), ("ns", msg.authority), ("ar", msg.additional)):
        for rr in sorted(rr_set(section)):
            lines.append(f"  {name} {rr_text(rr)}")
    return "\n".join(lines)


# ---- comparing -----------------------------------------------------------------


@dataclasses.dataclass
class Exchange:
    """One query and what a server did with it.  full is the same server's
    answer over TCP (untruncated), used to judge truncated UDP answers."""

    query_wire: bytes
    query: object  # dns.message.Message or None for raw malformed bytes
    tcp: bool
    wire: bytes = None
    full: bytes = None

    @property
    def msg(self):
        return parse(self.wire) if self.wire is not None else None


@dataclasses.dataclass(frozen=True)
class Rule:
    """How to compare one case.  The defaults compare everything exactly.

    rfc: where a relaxation comes from (shown in failure output).
    answer: "exact", "subset-of-node" (RFC 8482 ANY: each RRset xdpdns gives
        is one of the node's RRsets, at least one), "cname-prefix" (CNAME
        chain bound: xdpdns follows at least as far as the reference, in
        order, possibly further), or "superset" (every RR of the
        reference's answer, and more of the same owners and types).
    additional: "exact", "subset" (RFC 2181 section 9: additional data
        that does not fit is left out without TC), or "optional" (not
        compared: the reference leaves out what RFC 1034 makes optional).
    cd: "exact", or "cleared-or-copied" (RFC 4035 section 3: a
        security-aware server copies CD; Knot clears it).
    rcodes: when set, xdpdns's rcode must be one of these and the sections
        are not compared (the reference implements something xdpdns does not).
    drop_or: when set, xdpdns may send nothing (as the reference does), or a
        response with one of these rcodes and no records.
    or_error: when set, xdpdns may answer with one of these rcodes and no
        records instead of what the reference answers; anything else is
        compared as usual.
    cookie: "exact", or "structure" (RFC 9018 section 4: a server cookie
        holds a timestamp, so two servers' cookies may differ in it and in
        the hash; only the client cookie, the length, the version and the
        reserved bytes are compared, the caller verifies the rest).
    """

    rfc: str = ""
    answer: str = "exact"
    additional: str = "exact"
    cd: str = "cleared-or-copied"
    rcodes: tuple = ()
    drop_or: tuple = ()
    or_error: tuple = ()
    cookie: str = "exact"
    node_rrsets: frozenset = None  # filled in by the test for subset-of-node


EXACT = Rule()


def compare(ref, got, rule=EXACT):
    """Differences between the reference's response and xdpdns's, as a list of
    readable lines (empty when they agree under rule)."""
    diffs = []
    if ref.wire is None and got.wire is None:
        return diffs
    if rule.drop_or and got.wire is not None:
        return _check_error_only(got, rule.drop_or)
    if rule.drop_or and got.wire is None:
        return diffs
    if rule.or_error and got.wire is not None and ref.wire is not None:
        if not _check_error_only(got, rule.or_error):
            return diffs
    if got.wire is None:
        return ["xdpdns sent no response; the reference did:\n" + summary(ref.wire)]
    if ref.wire is None:
        return ["xdpdns responded where the reference sent nothing:\n" + summary(got.wire)]
    try:
        gmsg = got.msg
    except dns.exception.DNSException as e:
        return [f"xdpdns's response does not parse: {e}: {got.wire[:64].hex()}"]
    rmsg = ref.msg
    qid = struct.unpack("!H", got.query_wire[:2])[0] if len(got.query_wire) >= 2 else None
    if gmsg.id != qid:
        diffs.append(f"id {gmsg.id} != query id {qid}")
    if wire_opcode(got.wire) != wire_opcode(ref.wire):
        diffs.append(f"opcode {wire_opcode(got.wire)} != {wire_opcode(ref.wire)}")
    if rule.rcodes:
        if gmsg.rcode() not in rule.rcodes:
            diffs.append(
                f"rcode {dns.rcode.to_text(gmsg.rcode())} not in "
                f"{[dns.rcode.to_text(r) for r in rule.rcodes]} ({rule.rfc})"
            )
        return diffs + _check_no_duplicates(got)
    if gmsg.rcode() != rmsg.rcode():
        diffs.append(
            f"rcode {dns.rcode.to_text(gmsg.rcode())} != {dns.rcode.to_text(rmsg.rcode())}"
        )
    diffs += _compare_flags(ref, got, rmsg, gmsg, rule)
    diffs += _compare_question(ref, got)
    if edns_view(gmsg, rule.cookie) != edns_view(rmsg, rule.cookie):
        diffs.append(f"EDNS {edns_view(gmsg, rule.cookie)} != {edns_view(rmsg, rule.cookie)}")
    diffs += _check_no_duplicates(got)
    if not got.tcp and len(got.wire) > udp_limit(got.query):
        diffs.append(
            f"UDP response of {len(got.wire)} bytes exceeds the client's "
            f"limit {udp_limit(got.query)}"
        )
    if rmsg.flags & dns.flags.TC:
        return diffs + _compare_truncated(ref, got)
    diffs += _compare_answer(rmsg, gmsg, rule)
    diffs += _compare_section("authority", rr_set(rmsg.authority), rr_set(gmsg.authority))
    diffs += _compare_additional(ref, rmsg, gmsg, rule)
    return diffs


def _compare_flags(ref, got, rmsg, gmsg, rule):
    diffs = []
    for name, bit in FLAG_BITS.items():
        r, g = bool(rmsg.flags & bit), bool(gmsg.flags & bit)
        if name == "CD" and rule.cd == "cleared-or-copied":
            copied = bool(got.query.flags & bit) if got.query is not None else False
            if g not in (r, copied):
                diffs.append(
                    f"flag CD {g}: neither the reference's {r} nor the "
                    f"query's {copied} (RFC 4035 section 3)"
                )
            continue
        if r != g:
            diffs.append(f"flag {name} is {g}, reference {r}")
    return diffs


def _compare_question(ref, got):
    rq, gq, qq = raw_question(ref.wire), raw_question(got.wire), raw_question(got.query_wire)
    if gq == rq:
        return []
    return [
        f"question {gq!r} != reference {rq!r} (query {qq!r}; the name's case "
        f"must be echoed exactly)"
    ]


def _compare_section(name, ref_rrs, got_rrs):
    if ref_rrs == got_rrs:
        return []
    lines = [f"{name} section differs:"]
    lines += [f"  - {rr_text(rr)}" for rr in sorted(ref_rrs - got_rrs)]
    lines += [f"  + {rr_text(rr)}" for rr in sorted(got_rrs - ref_rrs)]
    return ["\n".join(lines)]


def _compare_answer(rmsg, gmsg, rule):
    ref_rrs, got_rrs = rr_set(rmsg.answer), rr_set(gmsg.answer)
    if rule.answer == "exact":
        return _compare_section("answer", ref_rrs, got_rrs)
    if rule.answer == "subset-of-node":
        node = rule.node_rrsets or frozenset()
        allowed = set(node) | ref_rrs
        extra = got_rrs - allowed
        diffs = []
        if not got_rrs:
            diffs.append(f"answer is empty; expected one of the node's RRsets ({rule.rfc})")
        if extra:
            diffs.append(
                "answer holds RRs that are not the node's ({}):\n{}".format(
                    rule.rfc, "\n".join(f"  + {rr_text(rr)}" for rr in sorted(extra))
                )
            )
        for key, rrs in rrsets_of(gmsg.answer).items():
            whole = {rr for rr in allowed if (rr[0], rr[2]) == key}
            if rrs != whole:
                diffs.append(f"answer RRset {key} is incomplete ({rule.rfc})")
        return diffs
    if rule.answer == "cname-prefix":
        return _compare_cname_prefix(rmsg, gmsg, rule)
    if rule.answer == "superset":
        keys = {(rr[0], rr[2]) for rr in ref_rrs}
        diffs = _compare_section("answer", ref_rrs, ref_rrs & got_rrs)
        extra = {rr for rr in got_rrs - ref_rrs if (rr[0], rr[2]) not in keys}
        if extra:
            diffs.append(
                "answer holds RRs of another owner or type ({}):\n{}".format(
                    rule.rfc, "\n".join(f"  + {rr_text(rr)}" for rr in sorted(extra))
                )
            )
        return diffs
    raise ValueError(rule.answer)


def _compare_cname_prefix(rmsg, gmsg, rule):
    """xdpdns must follow the chain at least as far as the reference did and
    only along the chain; the reference's answer is a prefix of xdpdns's."""
    ref_rrs, got_rrs = rr_set(rmsg.answer), rr_set(gmsg.answer)
    diffs = []
    if not ref_rrs <= got_rrs:
        diffs.append(
            "answer stops earlier in the CNAME chain than the reference's "
            f"({rule.rfc}):\n" + "\n".join(f"  - {rr_text(rr)}" for rr in sorted(ref_rrs - got_rrs))
        )
    # every extra RR must continue the chain: its owner is a CNAME target in the answer
    targets = {
        rd.target.canonicalize().to_text()
        for rrset in gmsg.answer
        if rrset.rdtype == dns.rdatatype.CNAME
        for rd in rrset
    }
    stray = {rr for rr in got_rrs - ref_rrs if rr[0] not in targets}
    if stray:
        diffs.append(
            "answer RRs off the CNAME chain:\n"
            + "\n".join(f"  + {rr_text(rr)}" for rr in sorted(stray))
        )
    return diffs


def _compare_additional(ref, rmsg, gmsg, rule):
    ref_rrs, got_rrs = rr_set(rmsg.additional), rr_set(gmsg.additional)
    if rule.additional == "optional":
        return []  # the rule's RFC makes the section the server's choice
    full = ref_rrs
    if ref.full is not None:
        full = ref_rrs | rr_set(parse(ref.full).additional)
    if rule.additional == "subset" or (ref.full is not None and full != ref_rrs):
        # The reference itself left additional data out (RFC 2181 section 9):
        # whatever xdpdns adds must come from the complete additional section.
        extra = got_rrs - full
        if not extra:
            return []
        return [
            "additional section holds RRs the reference never adds:\n"
            + "\n".join(f"  + {rr_text(rr)}" for rr in sorted(extra))
        ]
    return _compare_section("additional", ref_rrs, got_rrs)


def _compare_truncated(ref, got):
    """Both set TC (RFC 2181 section 9): the reference sends no records
    (Knot), xdpdns may keep whole RRsets that fit; every RR it sends must be
    in the complete answer and every RRset it sends must be whole."""
    diffs = []
    if ref.full is None:
        return diffs
    fmsg = parse(ref.full)
    gmsg = got.msg
    for name, fsec, gsec in (
        ("answer", fmsg.answer, gmsg.answer),
        ("authority", fmsg.authority, gmsg.authority),
        ("additional", fmsg.additional, gmsg.additional),
    ):
        frrsets, grrsets = rrsets_of(fsec), rrsets_of(gsec)
        for key, rrs in grrsets.items():
            if key not in frrsets or not rrs <= frrsets[key]:
                diffs.append(f"truncated {name} holds RRs not in the full answer: {key}")
            elif name != "additional" and rrs != frrsets[key]:
                diffs.append(
                    f"truncated {name} holds part of RRset {key} (RFC 2181 "
                    f"section 9: a partial RRset must not be sent)"
                )
    return diffs


def _check_no_duplicates(got):
    """dnspython merges repeated RRs; the header counts tell."""
    msg = got.msg
    counts = section_counts(got.wire)
    seen = (
        len(msg.question),
        sum(len(r) for r in msg.answer),
        sum(len(r) for r in msg.authority),
        sum(len(r) for r in msg.additional) + (1 if msg.edns >= 0 else 0),
    )
    if counts != seen:
        return [f"section counts {counts} but distinct RRs {seen}: an RR is repeated"]
    return []


def _check_error_only(got, rcodes):
    try:
        msg = got.msg
    except dns.exception.DNSException as e:
        return [f"xdpdns's response does not parse: {e}: {got.wire[:64].hex()}"]
    diffs = []
    if len(got.query_wire) >= 2 and msg.id != struct.unpack("!H", got.query_wire[:2])[0]:
        diffs.append("response id differs from the query's")
    if not msg.flags & dns.flags.QR:
        diffs.append("QR is clear in the response")
    if msg.rcode() not in rcodes:
        diffs.append(
            f"rcode {dns.rcode.to_text(msg.rcode())} not in "
            f"{[dns.rcode.to_text(r) for r in rcodes]}"
        )
    if msg.answer or msg.authority or msg.additional:
        diffs.append("an error response carries records")
    return diffs


def ask(address, query, *, tcp=False, wire=None, full=True, timeout=2.0):
    """Sends query (a message, or raw bytes in wire) and returns an Exchange;
    for a UDP query also asks over TCP for the complete answer when full."""
    wire = wire if wire is not None else query.to_wire()
    ex = Exchange(wire, query, tcp, exchange(address, wire, tcp=tcp, timeout=timeout))
    if full and not tcp and query is not None:
        ex.full = exchange(address, wire, tcp=True, timeout=timeout)
    return ex


def report(case_id, query, ref, got, diffs, rule=EXACT, reference="Knot"):
    """The failure text of one case."""
    qtext = query.question[0].to_text() if query is not None and query.question else "(raw)"
    head = f"{case_id}: {qtext} over {'TCP' if got.tcp else 'UDP'}"
    if rule.rfc:
        head += f" [rule: {rule.rfc}]"
    return "\n".join(
        [head]
        + diffs
        + [f"reference ({reference}):", summary(ref.wire), "xdpdns:", summary(got.wire)]
    )
