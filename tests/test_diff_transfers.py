"""Differential tests of zone transfers out: xdpdns's TCP workers against
Knot DNS 3.2, both serving tests/data/diff with transfers allowed to
127.0.0.1.  Every zone by AXFR, by IXFR from an older serial (neither
keeps a journal here: the whole zone) and by IXFR from the current one
(the SOA alone, RFC 1995 2).  Records are compared as sets, owner names
in lower case: the order within a transfer is each server's own, and
xdpdns keeps names lower-cased (README)."""

import dns.message
import dns.query
import dns.rdatatype
import pytest

from conftest import diff_zones, start_knot, start_xdpdns


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    zones = diff_zones()
    knot = start_knot(tmp_path_factory.mktemp("knot-xfr"), zones, transfers=True)
    workdir = tmp_path_factory.mktemp("xdpdns-xfr")
    conf = workdir / "xdpdns.toml"
    conf.write_text(
        "".join(
            f'[[zone]]\nfile = "{path}"\norigin = "{origin}"\nallow_transfer = ["127.0.0.1"]\n'
            for origin, path in zones
        )
    )
    try:
        xdp = start_xdpdns(workdir, zones, ["--config", conf], zone_args=False)
    except BaseException:
        knot.stop()
        raise
    yield knot, xdp
    xdp.stop()
    knot.stop()


def records(server, origin, rdtype, serial=None):
    """The transfer's records as lower-case text lines, in order."""
    lines = []
    for message in dns.query.xfr(
        server.host,
        origin,
        rdtype=rdtype,
        port=server.port,
        timeout=10,
        lifetime=30,
        relativize=False,
        serial=serial or 0,
        use_udp=False,
    ):
        for rrset in message.answer:
            for rdata in rrset:
                lines.append(
                    f"{rrset.name.to_text().lower()} {rrset.ttl} "
                    f"{dns.rdatatype.to_text(rrset.rdtype)} "
                    f"{rdata.to_text().lower()}"
                )
    return lines


def serial_of(server, origin):
    answer = dns.query.tcp(
        dns.message.make_query(origin, "SOA"), server.host, port=server.port, timeout=5
    )
    return answer.answer[0][0].serial


@pytest.mark.parametrize("origin", [origin for origin, _ in diff_zones()])
def test_axfr_gives_the_same_records(servers, origin):
    knot, xdp = servers
    got = records(xdp, origin, dns.rdatatype.AXFR)
    want = records(knot, origin, dns.rdatatype.AXFR)
    assert got[0] == got[-1] and " SOA " in got[0]  # RFC 5936 2.2
    assert sorted(got[1:-1]) == sorted(want[1:-1])
    assert got[0] == want[0]


@pytest.mark.parametrize("origin", [origin for origin, _ in diff_zones()])
def test_ixfr_from_an_older_serial_gives_the_whole_zone_as_knot(servers, origin):
    knot, xdp = servers
    old = (serial_of(knot, origin) - 1) % (1 << 32)
    got = records(xdp, origin, dns.rdatatype.IXFR, old)
    want = records(knot, origin, dns.rdatatype.IXFR, old)
    assert sorted(got) == sorted(want)


@pytest.mark.parametrize("origin", [origin for origin, _ in diff_zones()])
def test_ixfr_from_the_current_serial_gives_the_soa_alone_as_knot(servers, origin):
    knot, xdp = servers
    current = serial_of(knot, origin)
    assert serial_of(xdp, origin) == current
    got = records(xdp, origin, dns.rdatatype.IXFR, current)
    want = records(knot, origin, dns.rdatatype.IXFR, current)
    assert got == want and len(got) == 1
