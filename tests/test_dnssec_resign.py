"""Signing on reload (issue 12, part 2): a zone signed on load keeps the
RRSIGs of the image being served over what did not change and is not due
for refresh, and makes the others (native/zone/sign_reuse.c), so a reload of a
large zone that changed a few records signs those few.  Every signature
of the result, kept or made, is validated with dns.dnssec against the
zone's DNSKEY.
"""

import shutil
import time

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from test_axfr import LOCAL, transfer
from test_dnssec import ORIGIN, ZONE, keygen_pair
from xdpdns.engine import Engine, Image, ImageBuilder, SigningKey
from xdpdns.hookspecs import ZoneFile, ZoneSigning
from xdpdns.image import KEEP_MARGIN, compile_sources

pytestmark = pytest.mark.asan

VALIDITY, REFRESH = 14 * 86400, 7 * 86400
NEW_SERIAL = "2026120302"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A KSK and a ZSK (ECDSA P-256, whose signatures differ every time:
    a signature made again never looks kept)."""
    return keygen_pair(tmp_path_factory.mktemp("resign-keys"))


def _compile(path, keys, nsec3, previous=None):
    signing = ZoneSigning(tuple(keys), nsec3, VALIDITY, REFRESH)
    result = compile_sources(
        [ZoneFile(ORIGIN, path, acl=LOCAL, signing=signing)], previous=previous
    )
    assert result.image is not None, result.problems
    assert [z.origin for z in result.signed] == [ORIGIN]
    return result


def _zone(engine):
    _query, messages = transfer(engine, "signed.test.")
    return dns.zone.from_xfr(iter(messages), relativize=False)


def _signatures(zone):
    """{(owner, covered type, key tag): RRSIG RDATA}."""
    out = {}
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype == dns.rdatatype.RRSIG:
                for sig in rdataset:
                    out[(name, sig.type_covered, sig.key_tag)] = sig
    return out


def _validate_all(zone):
    """Every RRset the zone signs validates against its DNSKEY RRset."""
    anchors = {ORIGIN: zone.find_rdataset(ORIGIN, dns.rdatatype.DNSKEY)}
    checked = 0
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
            if sigs is None:
                continue  # a delegation's NS, glue: not signed (RFC 4035 2.2)
            dns.dnssec.validate((name, rdataset), (name, sigs), anchors)
            checked += 1
    return checked


def _edit(path):
    """The zone changed as a reload would find it: a new serial, one
    address changed, a name added, one record removed."""
    text = path.read_text()
    text = text.replace("2026120301", NEW_SERIAL)
    text = text.replace("A       198.18.5.81", "A       198.18.5.82")
    text = text.replace("                AAAA    2001:2::5:25\n", "")
    path.write_text(text + "new             A       198.18.5.7\n")


@pytest.mark.parametrize("nsec3", [False, True], ids=["nsec", "nsec3"])
def test_reload_signs_only_what_changed(tmp_path, keys, nsec3):
    path = tmp_path / "signed.test.zone"
    shutil.copy(ZONE, path)
    first = _compile(path, keys, nsec3)
    assert first.signed[0].report.kept == 0
    with Engine() as engine:
        engine.set_image(first.image)
        before = _signatures(_zone(engine))
        assert first.signed[0].report.made == len(before)
        _edit(path)
        second = _compile(path, keys, nsec3, engine.published_image())
        engine.set_image(second.image)
        zone = _zone(engine)
    after = _signatures(zone)
    report = second.signed[0].report
    assert _validate_all(zone) == len(after)  # one key signs each RRset
    made = {k for k, sig in after.items() if before.get(k) != sig}
    kept = {k for k, sig in after.items() if before.get(k) == sig}
    assert (report.made, report.kept) == (len(made), len(kept))
    name = dns.name.Name.concatenate
    soa = (ORIGIN, dns.rdatatype.SOA)
    www = (name(dns.name.from_text("www", None), ORIGIN), dns.rdatatype.A)
    new = (name(dns.name.from_text("new", None), ORIGIN), dns.rdatatype.A)
    mail = name(dns.name.from_text("mail", None), ORIGIN)
    changed = {(owner, covered) for owner, covered, _tag in made}
    if not nsec3:
        # mail's NSEC: its bitmap lost AAAA and its next name is now "new"
        assert changed == {soa, www, new, (new[0], dns.rdatatype.NSEC), (mail, dns.rdatatype.NSEC)}
    else:
        assert {soa, www, new} < changed
        assert all(covered == dns.rdatatype.NSEC3 for _o, covered in changed - {soa, www, new})
        assert len(changed) <= 6  # and the NSEC3s of mail, new and new's predecessor
    assert (mail, dns.rdatatype.AAAA) not in {(o, c) for o, c, _t in after}
    assert len(kept) > 3 * len(made)


def _sign(path, keys, inception, expiration, previous=None, keep_after=0, served=None):
    with ImageBuilder() as builder:
        zone = builder.add_zone(ORIGIN)
        builder.load_zonefile(zone, path)
        builder.set_zone_acl(zone, "transfer", [("127.0.0.1/32", "allow")], "deny")
        report = builder.sign_zone(
            zone, keys, False, inception, expiration, previous, keep_after, served
        )
        builder.check()
        assert not [p for p in builder.problems() if p.is_error]
        return builder.finish(), report


def test_unchanged_zone_keeps_every_signature_until_due(keys):
    """Signing the same data again makes nothing while the signatures hold
    past keep_after, and makes everything once they do not; the report's
    earliest expiration is the kept signatures'."""
    signing = [SigningKey(k) for k in keys]
    now = int(time.time())
    img, first = _sign(ZONE, signing, now - 3600, now + 5000)
    _img, again = _sign(ZONE, signing, now - 60, now + 9000, img, now + 4000)
    assert (again.made, again.kept) == (0, first.made)
    assert again.earliest_expiration == now + 5000
    _img, due = _sign(ZONE, signing, now - 60, now + 9000, img, now + 5000)
    assert (due.made, due.kept) == (first.made, 0)
    assert due.earliest_expiration == now + 9000
    # A signature made after the new inception is never kept.
    _img, later = _sign(ZONE, signing, now - 7200, now + 9000, img, now)
    assert later.kept == 0


def test_signatures_of_a_key_no_longer_used_are_not_kept(tmp_path, keys):
    """A new ZSK signs everything again, and the DNSKEY RRset, which
    changed, gets a new KSK signature."""
    other = keygen_pair(tmp_path)
    old = [SigningKey(k) for k in keys]
    ksk = next(k for k in old if k.info.flags == 257)
    new_zsk = next(k for k in map(SigningKey, other) if k.info.flags == 256)
    now = int(time.time())
    img, first = _sign(ZONE, old, now - 3600, now + VALIDITY)
    _img, report = _sign(ZONE, [ksk, new_zsk], now - 3600, now + VALIDITY, img, now)
    assert (report.made, report.kept) == (first.made, 0)


def test_previous_image_without_the_zone_signs_everything(tmp_path, keys):
    signing = [SigningKey(k) for k in keys]
    now = int(time.time())
    other = tmp_path / "other.test.zone"
    other.write_text(
        "@ 3600 SOA ns hostmaster 1 7200 3600 1209600 300\n@ 3600 NS ns\nns 3600 A 198.18.5.1\n"
    )
    with ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(dns.name.from_text("other.test.")), other)
        builder.check()
        unrelated = builder.finish()
    _img, report = _sign(ZONE, signing, now - 3600, now + VALIDITY, unrelated, now)
    assert report.kept == 0 and report.made > 0


def test_kept_signatures_leave_a_margin_before_the_next_refresh(tmp_path, keys):
    """The time compile_sources gives for signing again is never before
    KEEP_MARGIN from now: a re-signing reload is not due again at once."""
    path = tmp_path / "signed.test.zone"
    shutil.copy(ZONE, path)
    first = _compile(path, keys, False)
    with Engine() as engine:
        engine.set_image(first.image)
        second = _compile(path, keys, False, engine.published_image())
    assert second.signed[0].report.made == 0
    assert second.signed[0].resign_at == first.signed[0].resign_at
    assert second.signed[0].resign_at >= time.time() + KEEP_MARGIN


def _served(image):
    """The zone as a transfer of image gives it, every signature validated."""
    with Engine() as engine:
        engine.set_image(Image.from_bytes(image.to_bytes()))  # image stays ours
        zone = _zone(engine)
    assert _validate_all(zone) > 0
    return zone


def test_signatures_made_under_the_served_serial_take_the_next_one(tmp_path, keys):
    """Regression: a zone re-signed on its timer (or changed) without a new
    serial in its file kept the served serial, so secondaries never took
    the new signatures and served the old ones until they expired.  Now
    the zone follows the served serial: the same when nothing was signed
    anew, the next one when anything was, the file's when it is newer."""
    signing = [SigningKey(k) for k in keys]
    now = int(time.time())
    own = 2026120301
    first_img, first = _sign(ZONE, signing, now - 3600, now + 5000, served=None)
    assert (first.serial, first.zone_serial) == (own, own)
    # Nothing due, nothing changed: the served serial, every signature kept.
    _img, same = _sign(ZONE, signing, now - 60, now + 9000, first_img, now + 4000, own)
    assert (same.serial, same.made) == (own, 0)
    # Every signature due: the next serial, and the SOA's RRSIG over it.
    due_img, due = _sign(ZONE, signing, now - 60, now + 9000, first_img, now + 5000, own)
    assert (due.serial, due.zone_serial, due.kept) == (own + 1, own, 0)
    zone = _served(due_img)
    assert zone.find_rdataset(ORIGIN, dns.rdatatype.SOA)[0].serial == own + 1
    # The file still says own, the served one is own + 1: kept, nothing made.
    _img, after = _sign(ZONE, signing, now - 60, now + 9000, due_img, now + 4000, own + 1)
    assert (after.serial, after.made) == (own + 1, 0)
    # A file whose serial is newer than the one served wins.
    path = tmp_path / "signed.test.zone"
    path.write_text(ZONE.read_text().replace(str(own), str(own + 7)))
    newer_img, newer = _sign(path, signing, now - 60, now + 9000, due_img, now + 4000, own + 1)
    assert (newer.serial, newer.zone_serial) == (own + 7, own + 7)
    _served(newer_img)


def test_a_reload_that_changes_data_without_a_new_serial_takes_the_next_one(tmp_path, keys):
    path = tmp_path / "signed.test.zone"
    shutil.copy(ZONE, path)
    first = _compile(path, keys, False)
    path.write_text(path.read_text() + "new             A       198.18.5.7\n")
    with Engine() as engine:
        engine.set_image(first.image)
        second = _compile(path, keys, False, engine.published_image())
        engine.set_image(second.image)
        zone = _zone(engine)
    report = second.signed[0].report
    assert (report.serial, report.zone_serial) == (2026120302, 2026120301)
    assert "serial 2026120302 (the zone's own: 2026120301)" in second.signed[0].describe()
    assert zone.find_rdataset(ORIGIN, dns.rdatatype.SOA)[0].serial == 2026120302
    assert _validate_all(zone) > 0
