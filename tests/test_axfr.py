"""Outgoing zone transfers (AXFR, RFC 5936; IXFR answered with the whole
zone, RFC 1995 4), made in C from the published image: what a secondary
receives is the zone as served, checked against dnspython's reading of the
same files; only clients the zone's transfer ACL allows get it."""

import ipaddress
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest

from engine_helpers import axfr
from xdpdns.engine import Engine, tcp_messages
from xdpdns.hookspecs import ZoneAcl, ZoneFile
from xdpdns.image import compile_sources

ZONES = Path(__file__).resolve().parent.parent / "zones"
DIFF = Path(__file__).resolve().parent / "data" / "diff"
LOCAL = ZoneAcl(
    allow_transfer=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("2001:db8::/32"))
)


def zone_files():
    """The example zone and the differential tests' zones (glue, wildcards,
    CNAME and DNAME, delegations), one example.com. among them."""
    files = [(p.name.removesuffix(".zone") + ".", p) for p in sorted(DIFF.glob("*.zone"))]
    return (
        files + [("example.com.", ZONES / "example.com.zone")]
        if not any(o == "example.com." for o, _ in files)
        else files
    )


def engine_with(files, acl=LOCAL):
    result = compile_sources([ZoneFile(dns.name.from_text(o), p, acl=acl) for o, p in files])
    assert result.image is not None, result.problems
    engine = Engine()
    engine.set_image(result.image)
    return engine


def records(zone):
    # Owners compared without case: the image keeps them lower-cased (names
    # are equal whatever their case, RFC 4343); RDATA as written.
    return sorted(
        (name.canonicalize().to_text(), rdata.rdclass, rdata.rdtype, ttl, rdata.to_text())
        for name, ttl, rdata in zone.iterate_rdatas()
    )


def transfer(engine, origin, client="127.0.0.1", rdtype="AXFR", use_edns=False):
    query = dns.message.make_query(origin, rdtype, use_edns=use_edns)
    stream = axfr(engine, query.to_wire(), client)
    if stream is None:
        return None, None
    parsed = [dns.message.from_wire(m, xfr=True, origin=None) for m in tcp_messages(stream)]
    return query, parsed


@pytest.mark.asan
def test_every_zone_transfers_as_dnspython_reads_its_file():
    files = zone_files()
    with engine_with(files) as engine:
        for origin, path in files:
            query, messages = transfer(engine, origin)
            assert messages, origin
            rrs = [(rrset, rd) for m in messages for rrset in m.answer for rd in rrset]
            # The apex SOA first and last (RFC 5936 2.2).
            assert rrs[0][0].rdtype == rrs[-1][0].rdtype == dns.rdatatype.SOA
            assert rrs[0][0].name == rrs[-1][0].name == dns.name.from_text(origin)
            for m in messages:
                assert m.id == query.id and m.flags & dns.flags.AA and m.rcode() == 0
                assert m.question[0].name == dns.name.from_text(origin)
            got = dns.zone.from_xfr(iter(messages), relativize=False)
            want = dns.zone.from_file(str(path), origin, relativize=False)
            assert records(got) == records(want), origin


@pytest.mark.asan
def test_a_large_zone_comes_in_messages_of_16k(tmp_path):
    path = tmp_path / "big.test.zone"
    lines = [
        "$ORIGIN big.test.",
        "$TTL 300",
        "@ SOA ns admin 7 3600 600 86400 300",
        "@ NS ns",
        "ns A 198.18.0.53",
    ]
    lines += [f'h{i} A 198.18.{i // 250}.{i % 250}\nh{i} TXT "host {i}"' for i in range(5000)]
    lines += [f"d{i} NS ns.d{i}\nns.d{i} A 198.19.{i // 250}.{i % 250}" for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    with engine_with([("big.test.", path)]) as engine:
        query = dns.message.make_query("big.test.", "AXFR")
        wires = tcp_messages(axfr(engine, query.to_wire(), "127.0.0.1"))
        assert len(wires) > 10 and all(len(w) <= 16384 + 600 for w in wires)
        messages = [dns.message.from_wire(w, xfr=True, origin=None) for w in wires]
        got = dns.zone.from_xfr(iter(messages), relativize=False)
    want = dns.zone.from_file(str(path), "big.test.", relativize=False)
    assert records(got) == records(want)


def test_axfr_message_over_65535_bytes_fails_the_transfer(tmp_path):
    """Regression (cf36dd2): an RRset near 64 KiB with a long owner made a
    transfer message longer than 65535 bytes, sent with its length prefix
    wrapped; the transfer fails instead (the TCP listener logs it and
    answers REFUSED)."""
    import errno

    owner = ".".join(["a" * 60] * 3)
    lines = [
        "$ORIGIN big.test.",
        "@ 3600 SOA ns hostmaster 1 7200 3600 1209600 300",
        "@ 3600 NS ns",
        "ns 3600 A 198.18.0.1",
    ]
    lines += [f'{owner} 3600 TXT "{i:05d}{"x" * 245}"' for i in range(249)]
    path = tmp_path / "big.test.zone"
    path.write_text("\n".join(lines) + "\n")
    with engine_with([("big.test.", path)]) as engine:
        query = dns.message.make_query("big.test.", "AXFR")
        with pytest.raises(OSError) as raised:
            axfr(engine, query.to_wire(), "127.0.0.1")
        assert raised.value.errno == errno.EMSGSIZE
    # One record fewer fits: every message is whole and reads back.
    path.write_text("\n".join(lines[:-1]) + "\n")
    with engine_with([("big.test.", path)]) as engine:
        _query, messages = transfer(engine, "big.test.")
        got = dns.zone.from_xfr(iter(messages), relativize=False)
    assert len(got.find_rdataset(f"{owner}.big.test.", "TXT")) == 248


@pytest.mark.asan
def test_only_allowed_clients_and_only_zone_apexes():
    files = [("example.com.", ZONES / "example.com.zone")]
    with engine_with(files) as engine:
        assert transfer(engine, "example.com.", "127.0.0.2")[1] is None
        assert transfer(engine, "example.com.", "2001:db8::53")[1]
        assert transfer(engine, "www.example.com.")[1] is None  # not an apex
        assert transfer(engine, "example.org.")[1] is None  # not ours
        # And the core still refuses what it is asked (no transfer over it).
        refused = dns.message.from_wire(
            engine.answer(
                dns.message.make_query("example.com.", "AXFR").to_wire(),
                tcp=True,
                client="127.0.0.2",
            )
        )
        assert refused.rcode() == dns.rcode.REFUSED
    with engine_with(files, acl=ZoneAcl()) as engine:  # no ACL: nobody
        assert transfer(engine, "example.com.")[1] is None


@pytest.mark.asan
def test_ixfr_gets_the_whole_zone_and_edns_an_opt_in_every_message():
    files = [("example.com.", ZONES / "example.com.zone")]
    with engine_with(files) as engine:
        _, messages = transfer(engine, "example.com.", rdtype="IXFR", use_edns=0)
        assert messages and all(m.edns == 0 for m in messages)
        assert messages[0].question[0].rdtype == dns.rdatatype.IXFR
        got = dns.zone.from_xfr(iter(messages), relativize=False)
        want = dns.zone.from_file(str(ZONES / "example.com.zone"), "example.com.", relativize=False)
        assert records(got) == records(want)


def test_serve_transfers_over_tcp_and_refuses_others(tmp_path, xdpdns_serve, xdpdns_cli):
    zone = tmp_path / "example.com.zone"
    zone.write_text((ZONES / "example.com.zone").read_text())
    conf = tmp_path / "xdpdns.toml"
    control = tmp_path / "c.sock"
    conf.write_text(
        f'[[zone]]\nfile = "{zone}"\nallow_transfer = ["127.0.0.1"]\n'
        f'[server]\ncontrol_socket = "{control}"\n'
    )
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    host, port = server.addresses[0]
    got = dns.zone.from_xfr(
        dns.query.xfr(host, "example.com.", port=port, lifetime=10, relativize=False),
        relativize=False,
    )
    want = dns.zone.from_file(str(zone), "example.com.", relativize=False)
    assert records(got) == records(want)
    # A reload: the next transfer has the new record.
    zone.write_text(zone.read_text() + "added 300 IN A 198.18.0.123\n")
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    got = dns.zone.from_xfr(
        dns.query.xfr(host, "example.com.", port=port, lifetime=10, relativize=False),
        relativize=False,
    )
    assert got.get_rdataset("added", "A") is not None
    # Another source: REFUSED, as before transfers were served.
    with pytest.raises(dns.query.TransferError):
        list(dns.query.xfr(host, "example.com.", port=port, lifetime=10, source="127.0.0.2"))
    # Over UDP: no transfer (RFC 5936 4.2: TCP only).
    udp = dns.query.udp(dns.message.make_query("example.com.", "AXFR"), host, port=port, timeout=5)
    assert udp.rcode() == dns.rcode.NOTIMP and not udp.answer
    stats = xdpdns_cli("stats", "--control-socket", control, "--json")
    assert '"transfers": 2' in stats.stdout


@pytest.mark.asan
def test_ixfr_from_a_client_up_to_date_gets_the_soa_alone():
    """RFC 1995 4: a client whose SOA (in the query's authority section)
    has our serial, or a newer one by RFC 1982 arithmetic, gets our SOA
    alone; an older one the whole zone."""
    import dns.rrset

    files = [("example.com.", ZONES / "example.com.zone")]
    want = dns.zone.from_file(str(ZONES / "example.com.zone"), "example.com.", relativize=False)
    ours = want.get_rdataset("example.com.", "SOA")[0].serial
    with engine_with(files) as engine:
        newest = (ours + 2**31 - 1) % 2**32
        for serial, whole in (
            (ours, False),
            (ours + 1, False),
            (newest, False),
            (ours - 1, True),
            (0, True),
        ):
            query = dns.message.make_query("example.com.", "IXFR")
            query.authority.append(
                dns.rrset.from_text(
                    "example.com.",
                    0,
                    "IN",
                    "SOA",
                    f"ns1.example.com. h.example.com. {serial} 1 1 1 1",
                )
            )
            messages = [
                dns.message.from_wire(m, xfr=True, origin=None)
                for m in tcp_messages(axfr(engine, query.to_wire(), "127.0.0.1"))
            ]
            rrs = [rr for m in messages for rrset in m.answer for rr in rrset]
            if whole:
                assert len(rrs) > 3 and rrs[0].serial == rrs[-1].serial == ours, serial
            else:
                assert len(rrs) == 1 and rrs[0].serial == ours, serial


@pytest.mark.asan
def test_axfr_over_udp_is_notimp_as_knot_and_nsd():
    """Regression: AXFR over UDP was REFUSED; Knot and NSD answer NOTIMP
    (RFC 5936 4.2: AXFR is TCP only), the question echoed, no records.
    IXFR over UDP is another matter (RFC 1995 allows it) and keeps its
    answer."""
    files = [("example.com.", ZONES / "example.com.zone")]
    with engine_with(files) as engine:
        for client in ("127.0.0.1", "127.0.0.2"):  # allowed to transfer or not
            wire = engine.answer(
                dns.message.make_query("example.com.", "AXFR").to_wire(), client=client
            )
            udp = dns.message.from_wire(wire)
            assert udp.rcode() == dns.rcode.NOTIMP
            assert udp.question and not udp.answer and not udp.authority
        ixfr = dns.message.from_wire(
            engine.answer(
                dns.message.make_query("example.com.", "IXFR").to_wire(), client="127.0.0.2"
            )
        )
        assert ixfr.rcode() == dns.rcode.REFUSED
