"""What a transfer's records say (xdpdns/secondary/xfr.py), and the
differences applied to a zone in an image (native/zone/copy.c), without a
network: each broken transfer is an error that names what was wrong."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataset
import dns.rrset
import pytest

from xdpdns.engine import ImageBuilder
from xdpdns.image import ZoneCopy, ZoneData, compile_sources
from xdpdns.secondary.xfr import (
    Full,
    Incremental,
    NeedsFull,
    Record,
    UpToDate,
    XfrError,
    XfrReader,
    serial_newer,
)

ORIGIN = dns.name.from_text("x.test.")


def soa(serial: int) -> dns.rrset.RRset:
    return _rrset(ORIGIN, "SOA", f"ns1 host {serial} 3600 600 86400 300")


def rr(name: str, rdtype: str, text: str) -> dns.rrset.RRset:
    return _rrset(dns.name.from_text(name, ORIGIN), rdtype, text)


def _rrset(name, rdtype: str, text: str) -> dns.rrset.RRset:
    # Names in RDATA absolute, as a transfer's records have them.
    rdata = dns.rdata.from_text("IN", rdtype, text, origin=ORIGIN, relativize=False)
    return dns.rrset.from_rdata(name, 300, rdata)


def read(rrsets, ours=None, messages=None):
    reader = XfrReader(ORIGIN, ours)
    for rrset in rrsets:
        reader.feed(rrset)
    reader.message_end()
    return reader.result()


ZONE = [rr("@", "NS", "ns1"), rr("ns1", "A", "198.18.0.1"), rr("a", "A", "198.18.0.2")]


def test_an_axfr_is_the_whole_zone():
    result = read([soa(5)] + ZONE + [soa(5)])
    assert isinstance(result, Full) and result.serial == 5
    assert len(result.records) == 4  # the SOA once


def test_an_ixfr_is_the_net_differences_of_its_steps():
    steps = [
        soa(7),
        soa(5),  # 5 -> 6: a goes, b comes
        rr("a", "A", "198.18.0.2"),
        soa(6),
        rr("b", "A", "198.18.0.3"),
        soa(6),  # 6 -> 7: b goes again, c comes
        rr("b", "A", "198.18.0.3"),
        soa(7),
        rr("c", "A", "198.18.0.4"),
        soa(7),
    ]
    result = read(steps, ours=5)
    assert isinstance(result, Incremental) and (result.serial, result.steps) == (7, 2)
    deletes = sorted(r.to_text() for r in result.deletes)
    adds = sorted(r.to_text() for r in result.adds)
    assert deletes == sorted([soa_text(5), "a.x.test. 300 A 198.18.0.2"])
    assert adds == sorted([soa_text(7), "c.x.test. 300 A 198.18.0.4"])


def soa_text(serial: int) -> str:
    return Record(ORIGIN, 300, soa(serial)[0]).to_text()


def test_the_soa_alone_is_up_to_date_or_asks_for_the_whole_zone():
    assert isinstance(read([soa(5)], ours=5), UpToDate)
    assert isinstance(read([soa(9)], ours=5), NeedsFull)


def test_an_ixfr_answered_with_the_whole_zone_is_a_whole_zone():
    assert isinstance(read([soa(9)] + ZONE + [soa(9)], ours=5), Full)


@pytest.mark.parametrize(
    "rrsets, ours, reason",
    [
        ([soa(5)] + ZONE, None, "truncated after 4 records"),
        ([soa(5)] + ZONE + [soa(6)], None, "SOA serials disagree"),
        (ZONE + [soa(5)], None, "does not begin with the zone's SOA"),
        ([soa(7), soa(4), soa(7), soa(7)], 5, r"begin at serial 4, not at ours \(5\)"),
        (
            [soa(7), soa(5), rr("a", "A", "198.18.0.2"), soa(6), soa(6)]
            + [rr("a", "A", "198.18.0.2"), soa(7), soa(7)],
            5,
            "delete a record twice",
        ),
        ([soa(7), soa(5), soa(6), soa(5), soa(7), soa(7)], 5, "the one before ended at 6"),
        ([soa(5)] + ZONE + [soa(5), rr("z", "A", "198.18.0.9")], None, "after the closing SOA"),
    ],
    ids=["truncated", "serials", "no-soa", "wrong-start", "twice", "gap", "trailing"],
)
def test_a_broken_transfer_says_what_is_wrong(rrsets, ours, reason):
    with pytest.raises(XfrError, match=reason):
        read(rrsets, ours)


def test_serial_arithmetic_wraps():
    assert serial_newer(1, 0xFFFFFFF0) and not serial_newer(0xFFFFFFF0, 1)
    assert not serial_newer(5, 5)


def _image(rrsets):
    data = ZoneData(ORIGIN, [(r.name, dns.rdataset.from_rdata(r.ttl, *r)) for r in rrsets])
    result = compile_sources([data])
    assert result.image is not None, result.problems
    return result.image


def _answer(image, name, rdtype="A"):
    wire = image.answer(dns.message.make_query(name, rdtype).to_wire())
    return dns.message.from_wire(wire)


def test_differences_apply_to_the_zone_in_an_image():
    base = _image([soa(5)] + ZONE)
    result = read(
        [soa(6), soa(5), rr("a", "A", "198.18.0.2"), soa(6), rr("NS1", "A", "198.18.0.7"), soa(6)],
        ours=5,
    )
    copy = ZoneCopy(ORIGIN, base, deletes=result.deletes, adds=result.adds)
    new = compile_sources([copy])
    assert new.image is not None, new.problems
    assert new.image.zone_serial(ORIGIN) == 6
    assert _answer(new.image, "a.x.test.").rcode() == dns.rcode.NXDOMAIN
    ns1 = {r.address for r in _answer(new.image, "ns1.x.test.").answer[0]}
    assert ns1 == {"198.18.0.1", "198.18.0.7"}


def test_a_deletion_of_a_record_the_zone_does_not_have_changes_nothing():
    base = _image([soa(5)] + ZONE)
    missing = rr("a", "A", "198.18.0.99")
    result = read([soa(6), soa(5), missing, soa(6), soa(6)], ours=5)
    new = compile_sources([ZoneCopy(ORIGIN, base, deletes=result.deletes, adds=result.adds)])
    assert new.image is None
    assert any(
        "delete a record the zone does not have: a.x.test. 300 A 198.18.0.99" in str(p)
        for p in new.problems
    )


def test_a_deletion_matches_names_in_rdata_without_regard_to_case():
    base = _image([soa(5)] + ZONE + [rr("m", "MX", "10 Mail.X.Test.")])
    result = read([soa(6), soa(5), rr("m", "MX", "10 mail.x.TEST."), soa(6), soa(6)], ours=5)
    new = compile_sources([ZoneCopy(ORIGIN, base, deletes=result.deletes, adds=result.adds)])
    assert new.image is not None, new.problems
    assert not _answer(new.image, "m.x.test.", "MX").answer


def test_an_expired_zone_answers_servfail_and_keeps_its_place():
    with ImageBuilder() as b:
        b.set_zone_expired(b.add_zone(ORIGIN))
        b.check()
        image = b.finish()
    response = _answer(image, "a.x.test.")
    assert response.rcode() == dns.rcode.SERVFAIL
    assert image.zone_serial(ORIGIN) is None
    outside = _answer(image, "a.y.test.")
    assert outside.rcode() == dns.rcode.REFUSED


def test_a_notify_during_a_refresh_is_not_lost():
    """The bug: the zone's task cleared its wake-up before waiting, so a
    NOTIFY that came while a transfer ran was forgotten until REFRESH."""
    import asyncio

    from xdpdns.config import ZoneConfig, parse_listen
    from xdpdns.secondary.service import SecondaryZone

    async def scenario() -> int:
        primary = parse_listen("127.0.0.1:53", None, "primaries")
        zone = SecondaryZone(ZoneConfig(None, ORIGIN, primaries=(primary,)), service=None)
        calls = 0

        async def refresh_now():
            nonlocal calls
            calls += 1
            if calls == 1:
                zone.notified(7, primary)  # a NOTIFY while this one runs
            zone._schedule(3600)

        zone.refresh_now = refresh_now
        task = asyncio.get_running_loop().create_task(zone.run())
        await asyncio.sleep(0.2)
        task.cancel()
        return calls

    assert asyncio.run(scenario()) == 2
