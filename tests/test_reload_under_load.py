"""A hundred reloads in a row under steady dnsperf load, the zone's serial
changing between them: no query is lost, and once `reload` has returned
every answer has the new serial.  In socket mode and in XDP mode."""

import shutil
import subprocess
import time

import dns.message
import dns.query
import pytest

from xdpdns.bench.generators import parse_dnsperf
from xdpdns.control import request
from zoneimage import SERIAL_ZONE

RELOADS = 100
RATE = 3000  # queries a second: steady, far below what either mode takes
# Longer than the hundred reloads take: in XDP mode each one also builds
# and installs a new answer table.
LOAD_SECONDS = 15
XDP_LOAD_SECONDS = 40


def _write_zone(path, serial):
    path.write_text(SERIAL_ZONE.format(serial=serial))


def _reload_many(zone, control, ask_serial):
    """RELOADS reloads, each with the next serial; after each returns, one
    query must see it.  The failures, in words."""
    failures = []
    for serial in range(2, RELOADS + 2):
        _write_zone(zone, serial)
        result = request(control, "reload", timeout=60)
        if not result.get("ok"):
            failures.append(f"reload to {serial}: {result}")
            continue
        seen = ask_serial()
        if seen != serial:
            failures.append(f"after the reload to {serial}: serial {seen}")
    return failures


def _dnsperf(argv_prefix, host, port, queries, seconds):
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        pytest.fail("dnsperf missing: ./bootstrap installs it")
    return subprocess.Popen(
        argv_prefix
        + [
            dnsperf,
            "-s",
            host,
            "-p",
            str(port),
            "-d",
            str(queries),
            "-l",
            str(seconds),
            "-Q",
            str(RATE),
            "-c",
            "2",
            "-t",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _check(load, failures, started, seconds):
    # The reloads are done before the load ends: they happened under it.
    took = time.monotonic() - started
    assert took < seconds, f"the reloads outlasted the load: {took:.1f} s"
    out, _ = load.communicate(timeout=120)
    stats = parse_dnsperf(out)
    assert not failures, "\n".join(failures[:10])
    assert stats.counters["lost"] == 0, out
    assert stats.answered == stats.sent >= RATE * (seconds - 1), out


def test_hundred_reloads_under_load_socket_mode(xdpdns_serve, tmp_path):
    zone = tmp_path / "example.test.zone"
    _write_zone(zone, 1)
    control = tmp_path / "ctl.sock"
    conf = tmp_path / "x.toml"
    conf.write_text(f'[server]\nudp_workers = 2\n[[zone]]\nfile = "{zone}"\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0", "--control-socket", control)
    host, port = server.addresses[0]
    queries = tmp_path / "queries"
    queries.write_text("example.test. SOA\nwww.example.test. A\n" * 50)
    soa = dns.message.make_query("example.test.", "SOA")

    def ask_serial():
        return dns.query.udp(soa, host, port=port, timeout=3).answer[0][0].serial

    started = time.monotonic()
    load = _dnsperf([], host, port, queries, LOAD_SECONDS)
    time.sleep(0.5)
    failures = _reload_many(zone, control, ask_serial)
    _check(load, failures, started, LOAD_SECONDS)


@pytest.mark.xdp
def test_hundred_reloads_under_load_xdp_mode(xdp_topology, xdp_serve, tmp_path):
    topo = xdp_topology
    zone = tmp_path / "example.test.zone"
    _write_zone(zone, 1)
    conf = tmp_path / "x.toml"
    conf.write_text(f'[[zone]]\nfile = "{zone}"\n')
    server = xdp_serve("--config", conf, diff_zones=False)
    queries = tmp_path / "queries"
    queries.write_text("example.test. SOA\nwww.example.test. A\n" * 50)
    soa = dns.message.make_query("example.test.", "SOA")

    def ask_serial():
        with topo.client.entered():
            return dns.query.udp(soa, topo.server_v4, port=53, timeout=3).answer[0][0].serial

    started = time.monotonic()
    load = _dnsperf(topo.client.exec_argv([]), topo.server_v4, 53, queries, XDP_LOAD_SECONDS)
    time.sleep(0.5)
    failures = _reload_many(zone, server.control_socket, ask_serial)
    _check(load, failures, started, XDP_LOAD_SECONDS)
    assert server.stats()["xdp"]["program"]["answered_in_xdp"] > 0
