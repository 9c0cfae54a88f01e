"""DNSSEC: serving zones signed elsewhere (issue 12, RFC 4033-4035).

tests/data/dnssec/signed.test.zone is signed here with dnssec-signzone
(bind9-utils), the tool operators sign with, and every answer is checked by
a validator, dnspython's dns.dnssec (python3-cryptography), with the zone's
DNSKEY as the trust anchor: not only compared, but validated.
"""

import shutil
import subprocess
import time
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from xdpdns.engine import Engine, Image, ImageBuilder, SigningKey

# Also run against the AddressSanitizer build (bootstrap): proofs walk the
# image and write names by hand.
pytestmark = pytest.mark.asan

ZONE = Path(__file__).resolve().parent / "data" / "dnssec" / "signed.test.zone"
ORIGIN = dns.name.from_text("signed.test.")
SIGN_TIMEOUT = 60

# How the zone is signed: the dnssec-signzone options of each form.
FORMS = {
    "nsec": [],
    "nsec3": ["-3", "-", "-H", "0"],
    "nsec3-optout": ["-3", "-", "-H", "0", "-A"],
}


def _run(argv, cwd):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=SIGN_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stderr}"
    return done.stdout


def sign_zone(work, options):
    """The test zone signed in directory work (made) with one KSK and one
    ZSK (ECDSA P-256) and dnssec-signzone's options: the signed file."""
    if shutil.which("dnssec-signzone") is None:
        pytest.fail("dnssec-signzone not found: bootstrap installs bind9-utils")
    work.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "dnssec-keygen",
            "-q",
            "-K",
            str(work),
            "-a",
            "ECDSAP256SHA256",
            "-f",
            "KSK",
            "signed.test",
        ],
        work,
    )
    _run(["dnssec-keygen", "-q", "-K", str(work), "-a", "ECDSAP256SHA256", "signed.test"], work)
    signed = work / "signed.test.zone.signed"
    _run(
        [
            "dnssec-signzone",
            "-q",
            "-S",
            "-K",
            str(work),
            "-o",
            "signed.test",
            "-N",
            "keep",
            "-e",
            "+2592000",
            *options,
            "-f",
            str(signed),
            str(ZONE),
        ],
        work,
    )
    return signed


# Signed on load by xdpdns itself (native/zone/zone_sign.c), with NSEC or NSEC3
# (RFC 9276: no salt, no extra iterations, no opt-out): {form: nsec3}.
ON_LOAD = {"load-nsec": False, "load-nsec3": True}
ALL_FORMS = list(FORMS) + list(ON_LOAD)


def keygen_pair(work):
    """A KSK and a ZSK (ECDSA P-256) made by dnssec-keygen in work."""
    work.mkdir(parents=True, exist_ok=True)
    for flags in (["-f", "KSK"], []):
        _run(
            [
                "dnssec-keygen",
                "-q",
                "-K",
                str(work),
                "-a",
                "ECDSAP256SHA256",
                *flags,
                "signed.test",
            ],
            work,
        )
    return sorted(str(p)[:-4] for p in work.glob("K*.key"))


def sign_on_load(path, keys, nsec3, problems=None):
    """The image of zone file path signed on load with keys (SigningKey),
    valid from an hour ago for 30 days."""
    now = int(time.time())
    with ImageBuilder() as builder:
        zone = builder.add_zone(ORIGIN)
        builder.load_zonefile(zone, path)
        builder.set_zone_acl(zone, "transfer", [], "allow")  # _dump transfers it
        builder.sign_zone(zone, keys, nsec3, now - 3600, now + 30 * 86400)
        builder.check()
        found = [str(p) for p in builder.problems()]
        if problems is None:
            assert found == [], found
        else:
            problems.extend(found)
        return builder.finish()


def _dump(img, target):
    """The image's zone as a zone file (by AXFR), at target."""
    from test_axfr import transfer

    engine = Engine()
    with engine:
        engine.set_image(Image.from_bytes(img.to_bytes()))  # the engine takes it
        _query, messages = transfer(engine, "signed.test.")
    dns.zone.from_xfr(iter(messages), relativize=False).to_file(str(target), relativize=False)
    return target


@pytest.fixture(scope="session")
def signed_zones(tmp_path_factory, signed_images):
    """{form: (signed zone file, DNSKEY RRset)}: the test zone signed in
    each form of ALL_FORMS (signed on load: the image's zone by AXFR)."""
    out = {}
    for form, (img, keys) in signed_images.items():
        if form in FORMS:
            out[form] = (_signed_files[form], keys)
        else:
            out[form] = (_dump(img, tmp_path_factory.mktemp(f"dump-{form}") / "zone"), keys)
    return out


_signed_files = {}


def _image(path):
    with ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(ORIGIN), path)
        builder.check()
        problems = [p for p in builder.problems() if p.is_error]
        assert not problems, problems
        return builder.finish()


@pytest.fixture(scope="session")
def signed_images(tmp_path_factory):
    """{form: (image, DNSKEY RRset)} of every form of ALL_FORMS."""
    out = {}
    for form, options in FORMS.items():
        signed = sign_zone(tmp_path_factory.mktemp(f"dnssec-{form}"), options)
        _signed_files[form] = signed
        zone = dns.zone.from_file(str(signed), ORIGIN, relativize=False)
        out[form] = (_image(signed), zone.find_rrset(ORIGIN, dns.rdatatype.DNSKEY))
    bases = keygen_pair(tmp_path_factory.mktemp("keys"))
    keys = [SigningKey(base) for base in bases]
    dnskeys = dns.rrset.from_rdata_list(
        ORIGIN,
        3600,
        [
            dns.rdata.from_wire(
                dns.rdataclass.IN, dns.rdatatype.DNSKEY, k.info.dnskey, 0, len(k.info.dnskey)
            )
            for k in keys
        ],
    )
    for form, nsec3 in ON_LOAD.items():
        out[form] = (sign_on_load(ZONE, keys, nsec3), dnskeys)
    return out


def ask(img, qname, qtype, dnssec=True, payload=1232, edns=True):
    query = dns.message.make_query(
        qname, qtype, use_edns=0 if edns else False, want_dnssec=dnssec, payload=payload
    )
    wire = img.answer(query.to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def _signatures(section, rrset):
    return [
        s
        for s in section
        if s.rdtype == dns.rdatatype.RRSIG and s.name == rrset.name and s.covers == rrset.rdtype
    ]


def unsigned_rrsets(response, keys):
    """The RRsets of the response that no valid RRSIG covers, as
    (section, name, type) text; an RRSIG that does not validate fails."""
    anchors = {ORIGIN: keys}
    out = []
    for name, section in (
        ("answer", response.answer),
        ("authority", response.authority),
        ("additional", response.additional),
    ):
        for rrset in section:
            if rrset.rdtype in (dns.rdatatype.RRSIG, dns.rdatatype.OPT):
                continue
            sigs = _signatures(section, rrset)
            if not sigs:
                out.append(f"{name} {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}")
                continue
            for sig in sigs:
                dns.dnssec.validate(rrset, sig, anchors)  # raises when bogus
    return out


# (qname, qtype, what legitimately goes unsigned)
POSITIVE = [
    ("www.signed.test.", "A", []),
    ("www.signed.test.", "AAAA", []),
    ("signed.test.", "SOA", []),
    ("signed.test.", "NS", []),
    ("signed.test.", "MX", []),
    ("signed.test.", "DNSKEY", []),
    ("alias.signed.test.", "A", []),
    ("outside.signed.test.", "A", []),
    ("secure.signed.test.", "DS", []),
    # RFC 6672 5.3.1: the CNAME a DNAME implies is not signed.
    ("www.redirect.signed.test.", "A", ["answer www.redirect.signed.test. CNAME"]),
    # RFC 4035 2.2: a delegation's NS and glue are not signed by the parent.
    (
        "host.secure.signed.test.",
        "A",
        ["authority secure.signed.test. NS", "additional ns.secure.signed.test. A"],
    ),
]


@pytest.mark.parametrize("form", ALL_FORMS)
@pytest.mark.parametrize("qname, qtype, unsigned", POSITIVE)
def test_dnssec_answers_carry_valid_signatures(signed_images, form, qname, qtype, unsigned):
    """DO=1: every RRset of the answer, the authority and the additional
    section comes with RRSIGs that validate against the zone's DNSKEY, but
    what RFCs say goes unsigned."""
    img, keys = signed_images[form]
    response = ask(img, qname, qtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer or response.authority
    assert response.ednsflags & dns.flags.DO
    assert not response.flags & dns.flags.AD  # RFC 6840 5.8: not ours to set
    assert sorted(unsigned_rrsets(response, keys)) == sorted(unsigned)


def test_dnssec_referral_to_a_signed_child_carries_its_ds(signed_images):
    img, keys = signed_images["nsec"]
    response = ask(img, "host.secure.signed.test.", "A")
    assert not response.flags & dns.flags.AA
    ds = response.get_rrset(
        response.authority,
        dns.name.from_text("secure.signed.test."),
        dns.rdataclass.IN,
        dns.rdatatype.DS,
    )
    assert ds is not None and len(ds) == 1


def test_dnssec_wildcard_answer_is_signed_for_the_wildcard(signed_images):
    """The RRSIG of a wildcard answer has the wildcard's label count (RFC
    4035 5.3.4), so that the validator sees the expansion."""
    img, keys = signed_images["nsec"]
    response = ask(img, "x.wild.signed.test.", "A")
    (sig,) = [s for s in response.answer if s.rdtype == dns.rdatatype.RRSIG]
    assert sig[0].labels == 3  # *.wild.signed.test.: wild, signed, test
    assert unsigned_rrsets(response, keys) == []


@pytest.mark.parametrize(
    "qname, qtype, _unsigned",
    POSITIVE + [("www.signed.test.", "TXT", []), ("nothing.signed.test.", "A", [])],
)
def test_dnssec_nothing_without_do(signed_images, qname, qtype, _unsigned):
    """DO=0 (or no EDNS): the answer an unsigned zone would give, no RRSIG."""
    img, _keys = signed_images["nsec3"]
    for edns in (False, True):
        response = ask(img, qname, qtype, dnssec=False, edns=edns)
        assert response.answer or response.authority
        assert [
            r
            for section in (response.answer, response.authority, response.additional)
            for r in section
            if r.rdtype == dns.rdatatype.RRSIG
        ] == []


def test_dnssec_negative_answers_sign_the_soa(signed_images):
    """NODATA and NXDOMAIN: the SOA with the negative TTL (RFC 2308 3) and
    RRSIGs at that TTL, which validate."""
    img, keys = signed_images["nsec"]
    for qname, qtype, rcode in (
        ("www.signed.test.", "TXT", dns.rcode.NOERROR),
        ("nothing.signed.test.", "A", dns.rcode.NXDOMAIN),
    ):
        response = ask(img, qname, qtype)
        assert response.rcode() == rcode
        soa = response.get_rrset(response.authority, ORIGIN, dns.rdataclass.IN, dns.rdatatype.SOA)
        (sig,) = _signatures(response.authority, soa)
        assert soa.ttl == sig.ttl == 300
        dns.dnssec.validate(soa, sig, {ORIGIN: keys})


def test_dnssec_rrsig_ttls_follow_their_rrsets(signed_zones):
    """A signed zone's RRSIGs have the TTL of what they cover, not one TTL
    for the node's RRSIGs: no warning, and each keeps its own."""
    path, _keys = signed_zones["nsec"]
    with ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(ORIGIN), path)
        builder.check()
        assert [str(p) for p in builder.problems()] == []
        img = builder.finish()
    response = ask(img, "www.signed.test.", "TXT")
    nsec_sig = [s for s in response.authority if s.rdtype == dns.rdatatype.RRSIG]
    assert {s.ttl for s in nsec_sig} == {300}


# ---- proofs of non-existence ------------------------------------------------------


def _name(text):
    return dns.name.from_text(text)


def _proof_rrsets(response, keys, rdtype):
    """The authority section's RRsets of rdtype (NSEC, NSEC3), each with a
    valid RRSIG."""
    out = []
    for rrset in response.authority:
        if rrset.rdtype == rdtype:
            sigs = _signatures(response.authority, rrset)
            assert sigs, f"{rrset.name} {dns.rdatatype.to_text(rdtype)} unsigned"
            for sig in sigs:
                dns.dnssec.validate(rrset, sig, {ORIGIN: keys})
            out.append(rrset)
    return out


def _nsec_types(nsec):
    return set(nsec[0].to_text().split()[1:])


def _covers(nsec, name):
    """RFC 4034 4.1.1: name lies strictly between the owner and the next
    name, the last NSEC wrapping round to the apex."""
    owner, following = nsec.name, nsec[0].next
    if owner < following:
        return owner < name < following
    return name > owner or name < following


def _covered(nsecs, name):
    return any(_covers(n, name) for n in nsecs)


def _matched(nsecs, name, absent):
    return any(n.name == name and absent not in _nsec_types(n) for n in nsecs)


# (qname, qtype, rcode, names an NSEC must cover, (name, type) an NSEC must
# show absent)
NSEC_PROOFS = [
    # RFC 4035 3.1.3.2: the name, and the wildcard at its closest encloser
    (
        "nothing.signed.test.",
        "A",
        dns.rcode.NXDOMAIN,
        ["nothing.signed.test.", "*.signed.test."],
        [],
    ),
    (
        "x.deep.ent.signed.test.",
        "A",
        dns.rcode.NXDOMAIN,
        ["x.deep.ent.signed.test.", "*.deep.ent.signed.test."],
        [],
    ),
    # a CNAME into nothing: the proof is for its target
    (
        "dangling.signed.test.",
        "A",
        dns.rcode.NXDOMAIN,
        ["nowhere.signed.test.", "*.signed.test."],
        [],
    ),
    # RFC 4035 3.1.3.1: NODATA, the name's own NSEC
    ("www.signed.test.", "TXT", dns.rcode.NOERROR, [], [("www.signed.test.", "TXT")]),
    ("signed.test.", "A", dns.rcode.NOERROR, [], [("signed.test.", "A")]),
    # an empty non-terminal: the NSEC that covers it
    ("ent.signed.test.", "A", dns.rcode.NOERROR, ["ent.signed.test."], []),
    # RFC 4035 3.1.3.3: a wildcard's answer, no closer match
    ("x.wild.signed.test.", "A", dns.rcode.NOERROR, ["x.wild.signed.test."], []),
    # RFC 4035 3.1.3.4: wildcard NODATA
    (
        "x.wild.signed.test.",
        "AAAA",
        dns.rcode.NOERROR,
        ["x.wild.signed.test."],
        [("*.wild.signed.test.", "AAAA")],
    ),
    # RFC 4035 3.1.4: no DS at an unsigned child, with the referral and
    # when asked for
    ("host.insecure.signed.test.", "A", dns.rcode.NOERROR, [], [("insecure.signed.test.", "DS")]),
    ("insecure.signed.test.", "DS", dns.rcode.NOERROR, [], [("insecure.signed.test.", "DS")]),
]


@pytest.mark.parametrize("form", ["nsec", "load-nsec"])
@pytest.mark.parametrize("qname, qtype, rcode, covered, absent", NSEC_PROOFS)
def test_nsec_proofs(signed_images, form, qname, qtype, rcode, covered, absent):
    """Each negative answer of an NSEC zone carries the NSECs RFC 4035
    asks for, signed, and nothing it does not need."""
    img, keys = signed_images[form]
    response = ask(img, qname, qtype)
    assert response.rcode() == rcode
    assert unsigned_rrsets(response, keys) == [] or qtype != "DS" and "insecure" in qname
    nsecs = _proof_rrsets(response, keys, dns.rdatatype.NSEC)
    for name in covered:
        assert _covered(nsecs, _name(name)), (name, [n.to_text() for n in nsecs])
    for name, rdtype in absent:
        assert _matched(nsecs, _name(name), rdtype), (name, [n.to_text() for n in nsecs])
    assert len(nsecs) <= len(covered) + len(absent)
    # no NSEC without DO
    plain = ask(img, qname, qtype, dnssec=False)
    assert not [r for r in plain.authority if r.rdtype == dns.rdatatype.NSEC]


def test_proof_that_does_not_fit_truncates(signed_images):
    """An answer is whole or TC with nothing (RFC 4035 3.1.1): never a
    partial proof."""
    img, _keys = signed_images["nsec"]
    sizes = []
    for qname in ("nothing.signed.test.", "n" * 60 + ".signed.test.", "www.signed.test."):
        whole = ask(img, qname, "A")
        small = ask(img, qname, "A", payload=512)
        sizes.append(len(whole.to_wire()))
        if sizes[-1] > 512:
            assert small.flags & dns.flags.TC
            assert not small.answer and not small.authority and len(small.additional) == 0
        else:
            assert (small.answer, small.authority) == (whole.answer, whole.authority)
    assert max(sizes) > 512 >= min(sizes), sizes  # both ways were tried


def _nsec3_param(zone_path):
    zone = dns.zone.from_file(str(zone_path), ORIGIN, relativize=False)
    return zone.find_rdataset(ORIGIN, dns.rdatatype.NSEC3PARAM)[0]


def _hash(name, param):
    return dns.dnssec.nsec3_hash(
        name, param.salt or None, param.iterations, param.algorithm
    ).lower()


def _nsec3_span(nsec3):
    """(owner hash, next hash) of an NSEC3, in base32hex lower case."""
    import base64

    owner = nsec3.name.labels[0].decode().lower()
    following = base64.b32encode(nsec3[0].next).decode()
    following = following.translate(
        str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHIJKLMNOPQRSTUV")
    ).lower()
    return owner, following


def _nsec3_covers(nsec3, h):
    owner, following = _nsec3_span(nsec3)
    if owner < following:
        return owner < h < following
    return h > owner or h < following


# (qname, qtype, rcode, {form: (names matched, names covered, names covered
# by an opt-out NSEC3, (name, type) a matching NSEC3 shows absent)})
def _same(matched=(), covered=(), optout=(), absent=()):
    both = (list(matched), list(covered), list(optout), list(absent))
    return {"nsec3": both, "nsec3-optout": both}


NSEC3_PROOFS = [
    # RFC 5155 7.2.2: closest encloser, next closer, wildcard at the encloser
    (
        "nothing.signed.test.",
        "A",
        dns.rcode.NXDOMAIN,
        _same(["signed.test."], ["nothing.signed.test.", "*.signed.test."]),
    ),
    (
        "x.deep.ent.signed.test.",
        "A",
        dns.rcode.NXDOMAIN,
        _same(["deep.ent.signed.test."], ["x.deep.ent.signed.test.", "*.deep.ent.signed.test."]),
    ),
    (
        "dangling.signed.test.",
        "A",
        dns.rcode.NXDOMAIN,
        _same(["signed.test."], ["nowhere.signed.test.", "*.signed.test."]),
    ),
    # 7.2.3: NODATA, the name's own NSEC3
    ("www.signed.test.", "TXT", dns.rcode.NOERROR, _same(absent=[("www.signed.test.", "TXT")])),
    ("ent.signed.test.", "A", dns.rcode.NOERROR, _same(absent=[("ent.signed.test.", "A")])),
    # 7.2.6: a wildcard's answer, the next closer name covered
    ("x.wild.signed.test.", "A", dns.rcode.NOERROR, _same(covered=["x.wild.signed.test."])),
    # 7.2.5: wildcard NODATA
    (
        "x.wild.signed.test.",
        "AAAA",
        dns.rcode.NOERROR,
        _same(
            ["wild.signed.test."], ["x.wild.signed.test."], absent=[("*.wild.signed.test.", "AAAA")]
        ),
    ),
    # 7.2.7 and 7.2.4: an unsigned child; in an opt-out span it has no
    # NSEC3, and the proof is that of its closest provable encloser
    (
        "host.insecure.signed.test.",
        "A",
        dns.rcode.NOERROR,
        {
            "nsec3": ([], [], [], [("insecure.signed.test.", "DS")]),
            "nsec3-optout": (["signed.test."], [], ["insecure.signed.test."], []),
        },
    ),
    (
        "insecure.signed.test.",
        "DS",
        dns.rcode.NOERROR,
        {
            "nsec3": ([], [], [], [("insecure.signed.test.", "DS")]),
            "nsec3-optout": (["signed.test."], [], ["insecure.signed.test."], []),
        },
    ),
]


@pytest.mark.parametrize("form", ["nsec3", "nsec3-optout", "load-nsec3"])
@pytest.mark.parametrize("qname, qtype, rcode, expect", NSEC3_PROOFS)
def test_nsec3_proofs(signed_zones, signed_images, form, qname, qtype, rcode, expect):
    """Each negative answer of an NSEC3 zone carries the NSEC3 records RFC
    5155 7.2 asks for, signed, and no more: the query's names hashed here
    (dnspython) must match or fall strictly inside them."""
    img, keys = signed_images[form]
    param = _nsec3_param(signed_zones[form][0])
    # Signed on load: NSEC3 without opt-out, as the "nsec3" form.
    matched, covered, optout, absent = expect["nsec3" if form == "load-nsec3" else form]
    response = ask(img, qname, qtype)
    assert response.rcode() == rcode
    nsec3s = _proof_rrsets(response, keys, dns.rdatatype.NSEC3)
    for name in matched:
        assert any(_nsec3_span(n)[0] == _hash(name, param) for n in nsec3s), name
    for name in covered:
        assert any(_nsec3_covers(n, _hash(name, param)) for n in nsec3s), name
    for name in optout:
        assert any(_nsec3_covers(n, _hash(name, param)) and n[0].flags & 1 for n in nsec3s), name
    for name, rdtype in absent:
        assert any(
            _nsec3_span(n)[0] == _hash(name, param) and rdtype not in _nsec_types(n) for n in nsec3s
        ), (name, rdtype)
    wanted = {_hash(n, param) for n in matched} | {_hash(n, param) for n, _ in absent}
    assert len(nsec3s) <= len(wanted) + len(covered) + len(optout)
    assert not [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]


def test_nsec3_owner_names_do_not_exist(signed_zones, signed_images):
    """A query for an NSEC3 record's own name: NXDOMAIN with its proof, as
    if the record were not there (RFC 5155 7.2.8), for any type."""
    img, keys = signed_images["nsec3"]
    zone = dns.zone.from_file(str(signed_zones["nsec3"][0]), ORIGIN, relativize=False)
    owner = next(
        name
        for name, node in zone.nodes.items()
        if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC3)
    )
    for qtype in ("NSEC3", "A"):
        response = ask(img, owner.to_text(), qtype)
        assert response.rcode() == dns.rcode.NXDOMAIN
        assert not response.answer
        assert _proof_rrsets(response, keys, dns.rdatatype.NSEC3)


def test_nsec3_hash_matches_dnspython():
    """RFC 5155 5 as native/wire/nsec3.c computes it, against dnspython, with
    and without salt and iterations (RFC 5155 appendix A's parameters)."""
    from xdpdns.engine import nsec3_label

    for name in ("example.", "a.example.", "ns1.example.", "*.w.example.", "EXAMPLE."):
        for salt, iterations in ((b"", 0), (bytes.fromhex("aabbccdd"), 12)):
            ours = nsec3_label(dns.name.from_text(name).to_wire(), 1, salt, iterations)
            theirs = dns.dnssec.nsec3_hash(name, salt or None, iterations, 1).lower()
            assert ours == theirs, (name, salt, iterations)


# ---- what `xdpdns check` says of a signed zone ------------------------------------


def _problems(path):
    with ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(ORIGIN), path)
        builder.check()
        return [str(p) for p in builder.problems()]


def _edit(source, target, edit):
    """source with edit(zone) applied, written to target (a zone file)."""
    zone = dns.zone.from_file(str(source), ORIGIN, relativize=False)
    edit(zone)
    zone.to_file(str(target), relativize=False)
    return target


def _drop(name, rdtype, covers=dns.rdatatype.NONE):
    def edit(zone):
        zone.delete_rdataset(dns.name.from_text(name), rdtype, covers)

    return edit


def test_check_is_quiet_about_a_good_signed_zone(signed_zones):
    for form in FORMS:
        assert _problems(signed_zones[form][0]) == [], form


def test_check_finds_an_rrset_without_rrsig(signed_zones, tmp_path):
    path = _edit(
        signed_zones["nsec"][0],
        tmp_path / "z",
        _drop("www.signed.test.", dns.rdatatype.RRSIG, dns.rdatatype.A),
    )
    (problem,) = _problems(path)
    assert "www.signed.test.: A has no RRSIG (RFC 4035 2.2)" in problem
    assert problem.startswith(f"{path}:") and "warning" in problem


def test_check_finds_a_broken_nsec_chain(signed_zones, tmp_path):
    path = _edit(
        signed_zones["nsec"][0], tmp_path / "z", _drop("mail.signed.test.", dns.rdatatype.NSEC)
    )
    problems = "\n".join(_problems(path))
    assert "the NSEC chain is broken: the next name is not" in problems
    assert "mail.signed.test.: no NSEC" in problems
    assert "an RRSIG covers NSEC, which the name does not have" in problems


def test_check_finds_a_broken_nsec3_chain(signed_zones, tmp_path):
    source = signed_zones["nsec3"][0]
    param = _nsec3_param(source)
    victim = dns.name.from_text(_hash("mail.signed.test.", param) + ".signed.test.")

    def edit(zone):
        zone.delete_node(victim)

    problems = "\n".join(_problems(_edit(source, tmp_path / "z", edit)))
    assert "the NSEC3 chain is broken" in problems
    assert "mail.signed.test.: no NSEC3 matches this name" in problems


def test_check_finds_nsec3param_without_its_chain(signed_zones, tmp_path):
    def edit(zone):
        for name in [
            n
            for n, node in zone.nodes.items()
            if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC3)
        ]:
            zone.delete_node(name)

    problems = _problems(_edit(signed_zones["nsec3"][0], tmp_path / "z", edit))
    assert any("NSEC3PARAM without NSEC3 records" in p for p in problems), problems


def test_check_finds_expired_signatures(tmp_path):
    """Signatures that expired (a zone signed for January 2020) are each a
    warning with the record and the time; the zone still loads."""
    signed = sign_zone(tmp_path / "old", ["-P", "-s", "20200101000000", "-e", "20200201000000"])
    problems = _problems(signed)
    assert problems and all("expired at 2020-02-01T00:00:00Z" in p for p in problems)
    assert any(
        "www.signed.test.: the RRSIG of A expired at 2020-02-01T00:00:00Z" in p for p in problems
    )
    assert _image(signed) is not None


def test_check_finds_signatures_not_yet_valid(tmp_path):
    signed = sign_zone(tmp_path / "early", ["-P", "-s", "+864000", "-e", "+2592000"])
    problems = _problems(signed)
    assert problems and all("is not valid before" in p for p in problems), problems[:3]


@pytest.mark.parametrize("form", ALL_FORMS)
def test_axfr_carries_the_signatures(signed_zones, form):
    """A transfer of a signed zone is the signed zone: every RRSIG, NSEC,
    NSEC3 and NSEC3PARAM of the file, and nothing else (RFC 5936)."""
    from test_axfr import LOCAL, engine_with, records, transfer

    path = signed_zones[form][0]
    with engine_with([("signed.test.", path)], acl=LOCAL) as engine:
        _query, messages = transfer(engine, "signed.test.")
        got = dns.zone.from_xfr(iter(messages), relativize=False)
    want = dns.zone.from_file(str(path), ORIGIN, relativize=False)
    assert records(got) == records(want)


@pytest.mark.xdp
def test_xdp_mode_answers_do_queries_with_signatures(signed_zones, xdp_topology, xdp_serve):
    """XDP mode: DO=1 queries are answered from the program's answer table
    (its DO entries) where the answer fits the frame, else by an AF_XDP
    worker, with the socket path's bytes either way, signed and valid;
    DO=0 queries too."""
    import dnsdiff
    from netns import SOCKET_PORT, listen_args

    path, keys = signed_zones["nsec3-optout"]
    topo = xdp_topology
    server = xdp_serve("--zone", f"signed.test.={path}", *listen_args(topo))

    def in_xdp():
        return server.stats()["xdp"]["program"]["answered_in_xdp"]

    def both(query):
        with topo.client.entered():
            got = dnsdiff.exchange((topo.server_v4, 53), query.to_wire(), timeout=2.0)
            ref = dnsdiff.exchange((topo.server_v4, SOCKET_PORT), query.to_wire(), timeout=2.0)
        assert got is not None and got == ref, (query.question, got, ref)
        return dns.message.from_wire(got)

    before = in_xdp()
    # RFC 4035 2.2: a referral's NS and glue are not signed; its DS is.
    referral = ["authority secure.signed.test. NS", "additional ns.secure.signed.test. A"]
    for qname, qtype, rcode, unsigned in (
        ("ns1.signed.test.", "A", dns.rcode.NOERROR, []),
        ("www.signed.test.", "A", dns.rcode.NOERROR, []),
        ("www.signed.test.", "TXT", dns.rcode.NOERROR, []),
        ("secure.signed.test.", "A", dns.rcode.NOERROR, referral),
        ("nothing.signed.test.", "A", dns.rcode.NXDOMAIN, []),
    ):
        response = both(dns.message.make_query(qname, qtype, want_dnssec=True, payload=1232))
        assert response.rcode() == rcode
        assert unsigned_rrsets(response, keys) == unsigned
        assert [r for r in response.answer + response.authority if r.rdtype == dns.rdatatype.RRSIG]
    # ns1's A with its RRSIG fits any frame: the program answered it.
    assert in_xdp() > before
    before = in_xdp()
    response = both(dns.message.make_query("www.signed.test.", "A"))
    assert not [r for r in response.answer if r.rdtype == dns.rdatatype.RRSIG]
    assert in_xdp() == before + 1


@pytest.mark.parametrize("nsec3", [False, True])
def test_proof_past_16k_of_a_tcp_answer_is_whole(tmp_path, nsec3):
    """A wildcard answer long enough over TCP (a 20 KB TXT RRset) puts its
    proof where no compression pointer reaches: the proof's owner is spelled
    out in each RR, never a TC over TCP (regression: the proof did not fit
    and the answer was truncated)."""
    text = ZONE.read_text() + "".join(
        f'*.big 3600 IN TXT "{i:04d}{"x" * 190}"\n' for i in range(100)
    )
    zone = tmp_path / "big.zone"
    zone.write_text(text)
    keys = [SigningKey(base) for base in keygen_pair(tmp_path / "keys")]
    img = sign_on_load(zone, keys, nsec3)
    dnskeys = dns.rrset.from_rdata_list(
        ORIGIN,
        3600,
        [
            dns.rdata.from_wire(
                dns.rdataclass.IN, dns.rdatatype.DNSKEY, k.info.dnskey, 0, len(k.info.dnskey)
            )
            for k in keys
        ],
    )
    query = dns.message.make_query("x.big.signed.test.", "TXT", want_dnssec=True)
    wire = img.answer(query.to_wire(), tcp=True)
    response = dns.message.from_wire(wire)
    assert len(wire) > 16384 and not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 100
    proof = dns.rdatatype.NSEC3 if nsec3 else dns.rdatatype.NSEC
    assert _proof_rrsets(response, dnskeys, proof)
    assert unsigned_rrsets(response, dnskeys) == []
