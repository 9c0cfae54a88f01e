"""The differential comparator itself (tests/dnsdiff.py), on hand-made
responses: it must see every difference that matters and none that does not."""

import dns.flags
import dns.message
import dns.rrset

from dnsdiff import EXACT, Exchange, Rule, compare, make_query


def _response(query, answer=(), authority=(), additional=(), flags=None):
    resp = dns.message.make_response(query)
    resp.flags = flags if flags is not None else (dns.flags.QR | dns.flags.AA | dns.flags.RD)
    for section, rrs in (
        (resp.answer, answer),
        (resp.authority, authority),
        (resp.additional, additional),
    ):
        for text in rrs:
            section.append(dns.rrset.from_text(*text.split(None, 4)))
    return resp


def _ex(query, resp, tcp=False, wire=None):
    return Exchange(query.to_wire(), query, tcp, wire if wire is not None else resp.to_wire())


WWW = ["www.example.com. 3600 IN A 198.18.0.80"]


def test_equal_responses_agree_whatever_the_record_order():
    q = make_query("www.example.com.", edns=None)
    a = _response(
        q,
        answer=[
            "www.example.com. 3600 IN A 198.18.0.80",
            "www.example.com. 3600 IN AAAA 2001:2::80",
        ],
    )
    b = _response(
        q,
        answer=[
            "www.example.com. 3600 IN AAAA 2001:2::80",
            "www.example.com. 3600 IN A 198.18.0.80",
        ],
    )
    assert compare(_ex(q, a), _ex(q, b)) == []


def test_ttl_rdata_and_txt_case_differences_are_seen():
    q = make_query("www.example.com.", edns=None)
    ref = _response(q, answer=['www.example.com. 3600 IN TXT "abc"'])
    for other in ('www.example.com. 300 IN TXT "abc"', 'www.example.com. 3600 IN TXT "ABC"'):
        assert compare(_ex(q, ref), _ex(q, _response(q, answer=[other])))


def test_owner_case_does_not_matter_but_the_echoed_question_does():
    q = make_query("WwW.example.com.", edns=None)
    ref = _response(q, answer=WWW)
    assert (
        compare(
            _ex(q, ref), _ex(q, _response(q, answer=["WWW.EXAMPLE.COM. 3600 IN A 198.18.0.80"]))
        )
        == []
    )
    lowered = bytearray(ref.to_wire())
    lowered[13] = ord("w")  # the question's first letter, as if not echoed
    diffs = compare(_ex(q, ref), _ex(q, ref, wire=bytes(lowered)))
    assert any("question" in d for d in diffs)


def test_flags_rcode_and_edns_differences_are_seen():
    q = make_query("www.example.com.")
    ref = _response(q, answer=WWW)
    no_aa = _response(q, answer=WWW, flags=dns.flags.QR | dns.flags.RD)
    assert any("AA" in d for d in compare(_ex(q, ref), _ex(q, no_aa)))
    other_payload = _response(q, answer=WWW)
    other_payload.use_edns(0, 0, 4096)
    assert any("EDNS" in d for d in compare(_ex(q, ref), _ex(q, other_payload)))


def test_cd_may_be_copied_or_cleared():
    q = make_query("www.example.com.", edns=None)
    q.flags |= dns.flags.CD
    ref = _response(q, answer=WWW)
    copied = _response(
        q, answer=WWW, flags=dns.flags.QR | dns.flags.AA | dns.flags.RD | dns.flags.CD
    )
    assert compare(_ex(q, ref), _ex(q, copied)) == []


def test_a_repeated_record_is_seen():
    q = make_query("self.example.com.", edns=None)
    ref = _response(q, answer=["self.example.com. 3600 IN CNAME self.example.com."])
    wire = bytearray(ref.to_wire())
    rr = bytes(wire[len(wire) - 14 :])  # owner pointer, type..rdlength, target pointer
    doubled = bytes(wire[:7]) + b"\x02" + bytes(wire[8:]) + rr
    diffs = compare(_ex(q, ref), _ex(q, ref, wire=doubled))
    assert any("repeated" in d for d in diffs)


def test_cname_prefix_accepts_a_longer_chain_only_along_the_chain():
    q = make_query("c1.example.com.", edns=None)
    chain = [f"c{i}.example.com. 3600 IN CNAME c{i + 1}.example.com." for i in range(1, 9)]
    rule = Rule(rfc="test", answer="cname-prefix")
    ref = _response(q, answer=chain[:5])
    assert compare(_ex(q, ref), _ex(q, _response(q, answer=chain)), rule) == []
    assert compare(_ex(q, ref), _ex(q, _response(q, answer=chain[:4])), rule)
    stray = chain + ["other.example.com. 3600 IN A 198.18.0.1"]
    assert compare(_ex(q, ref), _ex(q, _response(q, answer=stray)), rule)


def test_error_only_rules():
    q = make_query("www.example.com.", edns=None)
    ref = _response(q, answer=WWW)
    formerr = dns.message.make_response(q)
    formerr.set_rcode(dns.rcode.FORMERR)
    assert compare(_ex(q, ref), _ex(q, formerr), Rule(or_error=(dns.rcode.FORMERR,))) == []
    assert compare(_ex(q, ref), _ex(q, formerr), EXACT)
    nothing = Exchange(q.to_wire(), q, False, None)
    assert compare(nothing, nothing, Rule(drop_or=(dns.rcode.FORMERR,))) == []
    assert compare(nothing, _ex(q, formerr), Rule(drop_or=(dns.rcode.FORMERR,))) == []
    assert compare(nothing, _ex(q, ref), Rule(drop_or=(dns.rcode.FORMERR,)))


def test_truncated_answers_may_keep_whole_rrsets_only():
    q = make_query("many.example.com.", edns=None)
    full = _response(
        q,
        answer=[f"many.example.com. 3600 IN A 198.18.2.{i}" for i in range(1, 4)]
        + ['many.example.com. 3600 IN TXT "x"'],
    )
    tc = dns.flags.QR | dns.flags.AA | dns.flags.RD | dns.flags.TC
    ref = _ex(q, _response(q, flags=tc))
    ref.full = full.to_wire()
    whole = _response(q, answer=['many.example.com. 3600 IN TXT "x"'], flags=tc)
    part = _response(q, answer=["many.example.com. 3600 IN A 198.18.2.1"], flags=tc)
    assert compare(ref, _ex(q, whole)) == []
    assert compare(ref, _ex(q, part))
    assert compare(ref, _ex(q, _response(q, answer=WWW)))  # TC missing
