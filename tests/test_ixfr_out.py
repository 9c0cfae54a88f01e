"""IXFR out from the journal (RFC 1995; native/image/journal.c and
answer/axfr.c): each publication that changes a zone keeps the
differences, and a secondary asking IXFR from an older serial gets only
those, checked by applying them with dnspython and comparing with the new
zone; the whole zone when the journal does not reach back, and the log
says why a journal was emptied."""

import ipaddress
import logging
import re
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone
import pytest

from engine_helpers import axfr
from test_axfr import records, zone_files
from test_secondary import ORIGIN as SECONDARY_ORIGIN
from test_secondary import axfr_records, start_pair  # noqa: F401 (a fixture)
from test_secondary import zone_text as secondary_zone
from conftest import _free_port, _start, run_xdpdns_cli
from test_tsig import (
    BIG,
    XdpdnsPrimary,
    _key,
    _knot_conf,
    _knotd,
    _start_peer,
    signed_axfr,
    wait_serial,
)
from xdpdns.config import ConfigError, load_config
from xdpdns.engine import Engine, JournalLimits, tcp_messages
from xdpdns.hookspecs import ZoneAcl, ZoneFile
from xdpdns.image import compile_sources
from xdpdns.plugins import load_plugins
from xdpdns.publication import journal_limits

ORIGIN = dns.name.from_text("example.test.")
LOCAL = ZoneAcl(allow_transfer=(ipaddress.ip_network("127.0.0.1/32"),))


def zone_text(serial: int, hosts=range(40), extra: str = "", ttl: int = 300) -> str:
    lines = [
        f"$ORIGIN {ORIGIN}",
        f"$TTL {ttl}",
        f"@ SOA ns1 hostmaster {serial} 3600 600 86400 300",
        "@ NS ns1",
        "@ MX 10 mail",
        "ns1 A 198.18.0.53",
        "mail A 198.18.0.25",
    ]
    lines += [f"h{i} A 198.18.1.{i}" for i in hosts]
    return "\n".join(lines) + "\n" + extra


class Primary:
    """An engine that publishes versions of ORIGIN as a reload does: each
    image gets its journal against the one served, then is published."""

    def __init__(self, tmp_path: Path, limits: JournalLimits = JournalLimits(), acl=LOCAL):
        self.tmp_path = tmp_path
        self.limits = limits
        self.acl = acl
        self.engine = Engine()
        self.texts: dict[int, str] = {}
        self.version = 0

    def publish(self, serial: int, text: str):
        self.version += 1
        path = self.tmp_path / f"v{self.version}.zone"
        path.write_text(text)
        result = compile_sources([ZoneFile(ORIGIN, path, acl=self.acl)])
        assert result.image is not None, result.problems
        events = self.engine.keep_journal(result.image, self.limits)
        self.engine.set_image(result.image)
        self.texts[serial] = text
        return events

    def ixfr(self, serial: int) -> list[dns.message.Message]:
        query = dns.message.make_query(ORIGIN, "IXFR")
        query.authority.append(
            dns.rrset.from_text(
                ORIGIN, 0, "IN", "SOA", f"ns1.{ORIGIN} hostmaster.{ORIGIN} {serial} 1 1 1 1"
            )
        )
        stream = axfr(self.engine, query.to_wire(), "127.0.0.1")
        return [
            dns.message.from_wire(m, xfr=True, origin=ORIGIN, one_rr_per_rrset=True)
            for m in tcp_messages(stream)
        ]

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def primary(tmp_path):
    p = Primary(tmp_path)
    yield p
    p.close()


def rrs(messages) -> list[tuple[str, str, str]]:
    return [
        (name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rr.to_text())
        for m in messages
        for rrset in m.answer
        for name, rr in ((rrset.name, rr) for rr in rrset)
    ]


def soa_serials(messages) -> list[int]:
    return [rr.serial for m in messages for rrset in m.answer for rr in rrset if rr.rdtype == 6]


def applied(text: str, serial: int, messages) -> dns.zone.Zone:
    """The zone of text with the IXFR (or AXFR-style answer) applied, as a
    secondary at serial would apply it."""
    zone = dns.zone.from_text(text, ORIGIN)
    with dns.xfr.Inbound(zone, dns.rdatatype.IXFR, serial) as inbound:
        done = False
        for m in messages:
            assert not done
            done = inbound.process_message(m)
        assert done
    return zone


def assert_current(primary: Primary, serial: int, messages) -> None:
    want = dns.zone.from_text(primary.texts[max(primary.texts)], ORIGIN)
    assert records(applied(primary.texts[serial], serial, messages)) == records(want)


@pytest.mark.asan
def test_ixfr_sends_only_what_a_reload_changed(primary):
    assert primary.publish(1, zone_text(1)) == []
    v2 = zone_text(
        2, hosts=[h for h in range(40) if h != 8], extra="new CNAME h1\nh7 A 198.18.2.7\n"
    )
    v2 = v2.replace("@ MX 10 mail", "@ MX 20 mail")  # a name under the origin in RDATA
    (event,) = primary.publish(2, v2)
    assert (event.zone, event.kind, event.serial_from, event.serial_to) == (
        ORIGIN,
        "recorded",
        1,
        2,
    )
    assert (event.removed, event.added, event.depth) == (2, 3, 1) and event.bytes > 0
    messages = primary.ixfr(1)
    assert rrs(messages) == [
        ("@", "SOA", "ns1 hostmaster 2 3600 600 86400 300"),
        ("@", "SOA", "ns1 hostmaster 1 3600 600 86400 300"),
        ("@", "MX", "10 mail"),
        ("h8", "A", "198.18.1.8"),
        ("@", "SOA", "ns1 hostmaster 2 3600 600 86400 300"),
        ("@", "MX", "20 mail"),
        ("h7", "A", "198.18.2.7"),
        ("new", "CNAME", "h1"),
        ("@", "SOA", "ns1 hostmaster 2 3600 600 86400 300"),
    ]
    assert_current(primary, 1, messages)


@pytest.mark.asan
def test_changesets_chain_and_a_client_gets_those_from_its_serial(primary):
    primary.publish(1, zone_text(1))
    primary.publish(2, zone_text(2, extra="a A 198.18.3.1\n"))
    primary.publish(3, zone_text(3, extra="a A 198.18.3.2\n"))
    (event,) = primary.publish(4, zone_text(4, extra="a A 198.18.3.2\nb A 198.18.3.3\n"))
    assert (event.depth, event.removed, event.added) == (3, 0, 1)
    assert soa_serials(primary.ixfr(1)) == [4, 1, 2, 2, 3, 3, 4, 4]
    info = primary.engine.zone_journal(ORIGIN)
    assert (info.depth, info.oldest_serial, info.bytes) == (3, 1, event.bytes)
    assert primary.engine.zone_journal(dns.name.from_text("other.test.")) is None
    assert soa_serials(primary.ixfr(3)) == [4, 3, 4, 4]
    for serial in (1, 2, 3):
        assert_current(primary, serial, primary.ixfr(serial))
    # Current (or newer): the SOA alone.  A serial the journal never had:
    # the whole zone, which a secondary applies as an AXFR.
    assert soa_serials(primary.ixfr(4)) == [4]
    whole = primary.ixfr((4 - 100) % 2**32)
    assert len(rrs(whole)) == 5 + 40 + 2 + 1 and soa_serials(whole) == [4, 4]
    assert_current(primary, 1, whole)


@pytest.mark.asan
def test_an_unchanged_reload_keeps_the_journal(primary):
    primary.publish(1, zone_text(1))
    primary.publish(2, zone_text(2, extra="a A 198.18.3.1\n"))
    # The same data again, and the same data written another way.
    assert primary.publish(2, zone_text(2, extra="a A 198.18.3.1\n")) == []
    assert primary.publish(2, zone_text(2, extra="A.example.test. 300 IN A 198.18.3.1\n")) == []
    assert soa_serials(primary.ixfr(1)) == [2, 1, 2, 2]


@pytest.mark.asan
def test_every_example_zone_reloaded_unchanged_records_nothing(tmp_path):
    """No difference found where there is none: every zone of the example
    and differential test data (delegations, glue, wildcards, DNAME, signed
    zones with NSEC and NSEC3) published twice."""
    zones = [ZoneFile(dns.name.from_text(o), p, acl=LOCAL) for o, p in zone_files()]
    with Engine() as engine:
        for _ in range(2):
            image = compile_sources(zones).image
            assert engine.keep_journal(image, JournalLimits()) == []
            engine.set_image(image)


@pytest.mark.asan
def test_the_oldest_changes_go_first_at_the_depth_and_size_limits(tmp_path):
    p = Primary(tmp_path, JournalLimits(depth=2, bytes=1 << 20))
    try:
        for serial in range(1, 5):
            events = p.publish(serial, zone_text(serial, extra=f"a A 198.18.3.{serial}\n"))
        assert events[0].depth == 2
        assert soa_serials(p.ixfr(2)) == [4, 2, 3, 3, 4, 4]
        assert len(soa_serials(p.ixfr(1))) == 2  # the whole zone
        assert_current(p, 1, p.ixfr(1))
    finally:
        p.close()
    p = Primary(tmp_path / "small", JournalLimits(depth=20, bytes=300))
    (tmp_path / "small").mkdir()
    try:
        p.publish(1, zone_text(1))
        assert p.publish(2, zone_text(2, extra="a A 198.18.3.1\n"))[0].depth == 1
        (event,) = p.publish(3, zone_text(3, extra="a A 198.18.3.1\nb A 198.18.3.2\n"))
        assert (event.kind, event.depth) == ("recorded", 1)  # the 1 -> 2 change went
        assert soa_serials(p.ixfr(2)) == [3, 2, 3, 3]
        (event,) = p.publish(4, zone_text(4, hosts=range(10, 50)))
        assert (event.kind, event.depth) == ("too-large", 0)
        assert len(soa_serials(p.ixfr(3))) == 2
    finally:
        p.close()


@pytest.mark.asan
def test_a_change_without_a_serial_increase_empties_the_journal(primary):
    primary.publish(1, zone_text(1))
    primary.publish(2, zone_text(2, extra="a A 198.18.3.1\n"))
    (event,) = primary.publish(2, zone_text(2, extra="a A 198.18.3.9\n"))
    assert (event.kind, event.removed, event.added, event.depth) == ("same-serial", 1, 1, 0)
    # Serial 1 gets the whole zone, the data as served now.
    whole = primary.ixfr(1)
    assert len(soa_serials(whole)) == 2 and ("a", "A", "198.18.3.9") in rrs(whole)
    (event,) = primary.publish(1, zone_text(1))
    assert (event.kind, event.serial_from, event.serial_to) == ("older-serial", 2, 1)
    primary.publish(3, zone_text(3))
    assert soa_serials(primary.ixfr(1)) == [3, 1, 3, 3]


@pytest.mark.asan
def test_changes_longer_than_the_zone_go_as_the_whole_zone(primary):
    primary.publish(1, zone_text(1))
    primary.publish(2, zone_text(2, ttl=600))  # every record's TTL
    whole = primary.ixfr(1)
    assert soa_serials(whole) == [2, 2]
    assert_current(primary, 1, whole)


@pytest.mark.asan
def test_no_journal_for_a_zone_nobody_may_transfer_or_with_depth_0(tmp_path):
    for name, limits, acl in (
        ("closed", JournalLimits(), None),
        ("depth0", JournalLimits(depth=0), LOCAL),
    ):
        (tmp_path / name).mkdir()
        p = Primary(tmp_path / name, limits, acl)
        try:
            p.publish(1, zone_text(1))
            assert p.publish(2, zone_text(2, extra="a A 198.18.3.1\n")) == []
        finally:
            p.close()


def test_publish_logs_what_each_journal_did(tmp_path, caplog):
    from xdpdns.acl import Acl
    from xdpdns.hookspecs import AddressPolicy, CookieSecrets
    from xdpdns.image import CompileResult
    from xdpdns.publication import Publication, publish

    engine = Engine()
    try:
        for serial, extra in ((1, ""), (2, "a A 198.18.3.1\n"), (2, "a A 198.18.3.2\n")):
            path = tmp_path / f"{serial}{len(extra)}.zone"
            path.write_text(zone_text(serial, extra=extra))
            compiled = compile_sources([ZoneFile(ORIGIN, path, acl=LOCAL)])
            assert isinstance(compiled, CompileResult)
            publication = Publication(
                compiled, Acl((), AddressPolicy()), CookieSecrets(None), None, [], []
            )
            with caplog.at_level(logging.INFO, logger="xdpdns.publication"):
                publish(engine, publication)
    finally:
        engine.close()
    text = caplog.text
    assert "zone example.test.: serial 1 -> 2, 0 records removed, 1 added; journal of 1" in text
    assert "zone example.test. changed (1 records removed, 1 added) but its serial stayed 2" in text


def test_config_journal_limits(tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text('[server]\nixfr_journal_depth = 5\nixfr_journal_size = "2M"\n')
    assert journal_limits(load_config(load_plugins(), conf)) == JournalLimits(5, 2 << 20)
    conf.write_text("[server]\nixfr_journal_size = 4096\n")
    assert journal_limits(load_config(load_plugins(), conf)) == JournalLimits(20, 4096)
    assert journal_limits(load_config(load_plugins(), None)) == JournalLimits(20, 64 << 20)
    for text, words in (
        ("ixfr_journal_depth = -1", "ixfr_journal_depth: expected an integer from 0 to 100000"),
        ('ixfr_journal_size = "2X"', "ixfr_journal_size: expected a size in bytes"),
        ("ixfr_journal_size = 0", "ixfr_journal_size: expected a size in bytes"),
    ):
        conf.write_text(f"[server]\n{text}\n")
        with pytest.raises(ConfigError, match=words):
            load_config(load_plugins(), conf)


# ---- Knot, BIND and NSD as secondaries of xdpdns --------------------------------


def _secondary_zone(kind: str, db: Path, primary_port: int) -> str:
    if kind == "knot":
        return (
            f"remote:\n  - id: primary\n    address: 127.0.0.1@{primary_port}\n    key: k1.\n"
            "acl:\n  - id: notify\n    address: 127.0.0.1\n    key: k1.\n    action: notify\n"
            "  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n"
            f'template:\n  - id: default\n    storage: "{db.parent}"\n'
            "    semantic-checks: off\n"
            f'zone:\n  - domain: "{BIG}"\n    master: primary\n    acl: [notify, xfr]\n'
        )
    if kind == "bind":
        return (
            f'zone "{BIG}" {{ type secondary; file "{db}"; request-ixfr yes;\n'
            f'  primaries port {primary_port} {{ 127.0.0.1 key "k1."; }};\n'
            '  allow-notify { key "k1."; }; };\n'
        )
    return (
        f'zone:\n    name: "{BIG}"\n    zonefile: "{db}"\n'
        f"    request-xfr: 127.0.0.1@{primary_port} k1.\n"
        "    allow-notify: 127.0.0.1 k1.\n    provide-xfr: 127.0.0.1 NOKEY\n"
    )


def _start_secondary(kind: str, workdir: Path, port: int, primary_port: int):
    zone = _secondary_zone(kind, workdir / "big.test.db", primary_port)
    if kind == "knot":
        conf = _knot_conf(workdir, port, zone)
        return _start("knotd", [_knotd(), "-c", str(conf)], workdir / "knotd.log", port, [])
    return _start_peer(kind, workdir, port, zone, [])


# The bytes of each transfer a peer logs taking after its first (the whole
# zone, 65 kB); an IXFR of the changes is a few hundred.
UPDATE_BYTES = {
    "knot": r"IXFR, incoming, remote [^,]+, finished, [\d.]+ seconds, 1 messages, (\d+) bytes",
    "bind": r"Transfer completed: 1 messages, \d+ records, (\d+) bytes",
    "nsd": r"received update to serial [23] .* of (\d+) bytes",
}


@pytest.mark.parametrize("kind", ["knot", "bind", "nsd"])
def test_a_secondary_follows_xdpdns_by_ixfr(tmp_path, kind):
    """Each of Knot, BIND and NSD takes xdpdns's changes by IXFR, signed
    with k1, a few hundred bytes in one message each (the zone is 65 kB),
    and then holds the zone xdpdns serves."""
    port = _free_port()
    primary = XdpdnsPrimary(tmp_path / "xdpdns", port).start()
    workdir = tmp_path / kind
    workdir.mkdir()
    peer = _start_secondary(kind, workdir, port, primary.port)
    try:
        wait_serial(port, 1, peer.log_path)
        for serial, changed in ((2, "h7"), (3, "h9")):
            primary.update(serial, changed)
            wait_serial(port, serial, peer.log_path)
            assert axfr_records(port, BIG) == signed_axfr(primary.port, _key())
        log = peer.log_path.read_text()
        updates = [int(b) for b in re.findall(UPDATE_BYTES[kind], log)]
        assert len(updates) == 2 and max(updates) < 1000, log[-3000:]
        stats = run_xdpdns_cli("stats", "--control-socket", primary.workdir / "control.sock")
        assert re.search(r"big\.test\.\s+2\s+\d+\s+1\n", stats.stdout), stats.stdout
        assert "serial 2 -> 3, 2 records removed, 2 added" in primary.server.log_path.read_text()
    finally:
        peer.stop()
        primary.stop()


def test_a_secondary_zone_passes_its_changes_on_by_ixfr(start_pair):  # noqa: F811
    """xdpdns as a secondary of Knot is a primary for others too: the new
    version a transfer brings is journaled like a reload's."""
    primary, secondary = start_pair(secondary_zone(1, 100))
    secondary.wait_serial(1)
    primary.update(secondary_zone(2, 100, extra="new A 198.18.9.9\n"))
    secondary.wait_serial(2)
    messages = list(
        dns.query.xfr(
            "127.0.0.1",
            SECONDARY_ORIGIN,
            rdtype=dns.rdatatype.IXFR,
            serial=1,
            port=secondary.port,
            timeout=5,
        )
    )
    assert soa_serials(messages) == [2, 1, 2, 2]
    assert [r for r in rrs(messages) if r[1] != "SOA"] == [("new", "A", "198.18.9.9")]


@pytest.mark.asan
def test_ixfr_over_udp_gets_the_soa_alone(primary):
    """RFC 1995 2: an IXFR over UDP whose answer does not fit one datagram
    gets the SOA alone, and the client asks again over TCP; here every one
    does.  Knot and BIND answer IXFR over UDP too; it was REFUSED before.
    Only for clients the transfer list allows; others are REFUSED as
    before."""
    primary.publish(1, zone_text(1))
    primary.publish(2, zone_text(2, extra="a A 198.18.3.1\n"))
    query = dns.message.make_query(ORIGIN, "IXFR")
    query.authority.append(
        dns.rrset.from_text(ORIGIN, 0, "IN", "SOA", f"ns1.{ORIGIN} hostmaster.{ORIGIN} 1 1 1 1 1")
    )
    allowed = dns.message.from_wire(primary.engine.answer(query.to_wire(), client="127.0.0.1"))
    assert allowed.rcode() == dns.rcode.NOERROR and allowed.flags & dns.flags.AA
    assert [(r.rdtype, r[0].serial) for r in allowed.answer] == [(dns.rdatatype.SOA, 2)]
    assert allowed.question[0].rdtype == dns.rdatatype.IXFR
    denied = dns.message.from_wire(primary.engine.answer(query.to_wire(), client="198.18.0.9"))
    assert denied.rcode() == dns.rcode.REFUSED and not denied.answer
    other = dns.message.make_query("a.example.test.", "IXFR")
    refused = dns.message.from_wire(primary.engine.answer(other.to_wire(), client="127.0.0.1"))
    assert refused.rcode() == dns.rcode.REFUSED
