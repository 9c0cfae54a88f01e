"""Secondary zones against a real primary: Knot DNS on loopback, started
here, with a journal so that it answers IXFR and sends NOTIFY.

Each test gets its own Knot and its own xdpdns (fresh ports and storage).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from conftest import _free_port, _knotd_path, _start, stop_process, xdpdns_command

ORIGIN = "sec.test."


def zone_text(serial: int, hosts: int, extra: str = "") -> str:
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 300",
        f"@ SOA ns1 hostmaster {serial} 3600 600 86400 300",
        "@ NS ns1",
        "ns1 A 198.18.0.53",
    ]
    lines += [f"h{i} A 198.18.{i >> 8 & 255}.{i & 255}" for i in range(hosts)]
    return "\n".join(lines) + "\n" + extra


class Primary:
    """Knot serving ORIGIN from a file, IXFR from its journal, NOTIFY to
    `notify` (host, port)."""

    def __init__(self, workdir: Path, notify_port: int | None, expire: int = 86400) -> None:
        knotd = _knotd_path()
        if knotd is None:
            pytest.skip("knotd not installed (Debian: apt-get install knot)")
        self.workdir = workdir
        (workdir / "db").mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.file = workdir / "sec.test.zone"
        self.conf = workdir / "knot.conf"
        self.knotc = shutil.which("knotc", path=os.environ.get("PATH", "") + ":/usr/sbin")
        user = "    user: root:root\n" if os.geteuid() == 0 else ""
        notify = (
            f"remote:\n  - id: secondary\n    address: 127.0.0.1@{notify_port}\n"
            if notify_port
            else ""
        )
        self.conf.write_text(
            "server:\n"
            f'    rundir: "{workdir}"\n'
            f"{user}"
            f"    listen: 127.0.0.1@{self.port}\n"
            "log:\n  - target: stderr\n    any: info\n"
            f'database:\n    storage: "{workdir}/db"\n'
            f'control:\n    listen: "{workdir}/knot.sock"\n'
            "acl:\n  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n"
            f"{notify}"
            "template:\n  - id: default\n"
            f'    storage: "{workdir}"\n'
            "    zonefile-sync: -1\n"
            "    zonefile-load: difference\n"
            "    journal-content: changes\n"
            "    semantic-checks: off\n"
            "zone:\n"
            f'  - domain: "{ORIGIN}"\n    file: "{self.file}"\n    acl: xfr\n'
            + ("    notify: secondary\n" if notify_port else "")
        )
        self.knotd = knotd
        self.server = None

    def start(self, text: str) -> None:
        self.file.write_text(text)
        self.server = _start(
            "knotd",
            [self.knotd, "-c", str(self.conf)],
            self.workdir / "knotd.log",
            self.port,
            [(ORIGIN, self.file)],
        )

    def update(self, text: str) -> None:
        """A new version of the zone file, loaded as differences (IXFR)."""
        self.file.write_text(text)
        subprocess.run(
            [self.knotc, "-c", str(self.conf), "zone-reload", ORIGIN],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class Secondary:
    """`xdpdns serve` with ORIGIN as a secondary zone of primary."""

    def __init__(self, workdir: Path, port: int, primary_port: int, extra: str = "") -> None:
        self.workdir = workdir
        self.port = port
        self.conf = workdir / "xdpdns.toml"
        self.conf.write_text(
            "[server]\n"
            f'listen = ["127.0.0.1:{port}"]\n'
            f'storage = "{workdir}/storage"\n'
            f'control_socket = "{workdir}/control.sock"\n'
            "[[zone]]\n"
            f'origin = "{ORIGIN}"\n'
            f'primaries = ["127.0.0.1:{primary_port}"]\n'
            'allow_transfer = ["127.0.0.1"]\n' + extra
        )
        self.proc = None

    def start(self) -> None:
        log = open(self.workdir / "xdpdns.log", "ab")
        self.proc = subprocess.Popen(
            xdpdns_command() + ["serve", "--config", str(self.conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        log.close()

    def log(self) -> str:
        return (self.workdir / "xdpdns.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def query(self, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        ask = dns.query.tcp if tcp else dns.query.udp
        return ask(q, "127.0.0.1", port=self.port, timeout=2)

    def serial(self) -> int | None:
        try:
            r = self.query(ORIGIN, "SOA")
        except (OSError, dns.exception.Timeout):
            return None
        if r.rcode() != dns.rcode.NOERROR or not r.answer:
            return None
        return r.answer[0][0].serial

    def wait_serial(self, serial: int, timeout: float = 10.0) -> float:
        """Seconds until the secondary serves serial."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"xdpdns exited:\n{self.log()[-3000:]}")
            if self.serial() == serial:
                return time.monotonic() - start
            time.sleep(0.02)
        raise AssertionError(f"serial {serial} not served within {timeout}s:\n{self.log()[-3000:]}")


def axfr_records(port: int, origin: str = ORIGIN, key=None) -> set[str]:
    """The zone as a transfer from 127.0.0.1:port gives it, one text line a
    record; signed with TSIG key (a dns.tsig.Key) and each message's
    signature checked, when one is given."""
    keyring = {key.name: key} if key is not None else None
    keyname = key.name if key is not None else None
    messages = dns.query.xfr(
        "127.0.0.1", origin, port=port, timeout=5, keyring=keyring, keyname=keyname
    )
    zone = dns.zone.from_xfr(messages)
    return {
        f"{name} {rdataset.ttl} {dns.rdatatype.to_text(rdataset.rdtype)} {rdata}"
        for name, rdataset in zone.iterate_rdatasets()
        for rdata in rdataset
    }


@pytest.fixture
def start_pair(tmp_path):
    """start(text, notify, extra) -> (primary, secondary): Knot serving text
    (NOTIFY to the secondary unless notify is False), and xdpdns following
    it (extra: more keys for its [[zone]]); both stopped after the test."""
    started = []

    def start(text: str | None = None, notify: bool = True, extra: str = ""):
        port = _free_port()
        primary = Primary(tmp_path / "knot", port if notify else None)
        secondary = Secondary(tmp_path, port, primary.port, extra)
        started.append((primary, secondary))
        primary.start(text or zone_text(1, 100))
        secondary.start()
        return primary, secondary

    yield start
    for primary, secondary in started:
        secondary.stop()
        primary.stop()


@pytest.fixture
def pair(start_pair):
    return start_pair()


def test_a_secondary_zone_is_transferred_at_start(pair):
    primary, secondary = pair
    secondary.wait_serial(1)
    assert secondary.query("h7." + ORIGIN).answer[0][0].address == "198.18.0.7"
    assert axfr_records(secondary.port) == axfr_records(primary.port)


def test_a_change_with_notify_is_served_by_ixfr(pair):
    primary, secondary = pair
    secondary.wait_serial(1)
    primary.update(zone_text(2, 100, "new A 198.18.9.9\n").replace("h5 A 198.18.0.5\n", ""))
    took = secondary.wait_serial(2)
    assert took < 2.0
    assert secondary.query("new." + ORIGIN).answer[0][0].address == "198.18.9.9"
    assert secondary.query("h5." + ORIGIN).rcode() == dns.rcode.NXDOMAIN
    assert axfr_records(secondary.port) == axfr_records(primary.port)
    assert "by IXFR" in secondary.log()


def test_a_restart_without_the_primary_serves_the_copy_kept_on_disk(pair):
    primary, secondary = pair
    secondary.wait_serial(1)
    secondary.stop()
    primary.stop()
    secondary.start()
    assert secondary.wait_serial(1) < 5
    assert secondary.query("h7." + ORIGIN).answer[0][0].address == "198.18.0.7"
    assert "serial 1 from" in secondary.log()


def test_a_zone_whose_primary_is_gone_expires_then_comes_back(start_pair):
    # refresh 1, retry 1, expire 3
    text = zone_text(1, 10).replace("3600 600 86400 300", "1 1 3 300")
    primary, secondary = start_pair(text)
    secondary.wait_serial(1)
    primary.stop()
    deadline = time.monotonic() + 10
    while secondary.query("h1." + ORIGIN).rcode() != dns.rcode.SERVFAIL:
        assert time.monotonic() < deadline, secondary.log()[-2000:]
        time.sleep(0.1)
    assert not secondary.query("h1." + ORIGIN).flags & dns.flags.AA
    assert "expired" in secondary.log()
    # Still ours: another zone's name is REFUSED, not this one's.
    assert secondary.query("h1.other.test.").rcode() == dns.rcode.REFUSED
    primary.start(text.replace("hostmaster 1", "hostmaster 2"))
    secondary.wait_serial(2, timeout=10)


def test_an_ixfr_that_does_not_apply_is_asked_again_as_axfr(start_pair, tmp_path):
    """Our copy of serial 1 lacks h5, which the primary's IXFR to serial 2
    deletes: the differences do not apply, and AXFR brings serial 2."""
    primary, secondary = start_pair(zone_text(1, 10))
    secondary.wait_serial(1)
    secondary.stop()
    # Our copy loses h5 (serial unchanged), as a broken journal would.
    _keep_copy(tmp_path / "storage", zone_text(1, 10).replace("h5 A 198.18.0.5\n", ""))
    primary.update(zone_text(2, 10).replace("h5 A 198.18.0.5\n", ""))
    secondary.start()
    secondary.wait_serial(2)
    assert "does not apply" in secondary.log()
    assert "a record the zone does not have: h5.sec.test. 300 A 198.18.0.5" in secondary.log()
    assert axfr_records(secondary.port) == axfr_records(primary.port)


def _keep_copy(storage: Path, text: str) -> None:
    from xdpdns.image import ZoneFile, compile_sources

    path = storage / "tmp.zone"
    path.write_text(text)
    result = compile_sources([ZoneFile(dns.name.from_text(ORIGIN), path)])
    (storage / "sec.test.image").write_bytes(result.image.to_bytes())
    path.unlink()


def test_a_broken_zone_from_the_primary_changes_nothing_served(pair):
    primary, secondary = pair
    secondary.wait_serial(1)
    # No NS at the apex: Knot (semantic checks off) serves it; xdpdns,
    # as NSD and BIND, does not load such a zone.
    primary.update(zone_text(2, 100).replace("@ NS ns1\n", ""))
    deadline = time.monotonic() + 10
    while "no NS records at the apex" not in secondary.log():
        assert time.monotonic() < deadline, secondary.log()[-2000:]
        time.sleep(0.05)
    assert secondary.serial() == 1
    assert secondary.query("h1." + ORIGIN).answer[0][0].address == "198.18.0.1"
    assert "refresh failed" in secondary.log()


def notify(port: int, name: str, rdtype: str = "SOA", serial: int | None = None):
    q = dns.message.make_query(name, rdtype)
    q.flags = dns.flags.AA
    q.set_opcode(dns.opcode.NOTIFY)
    if serial is not None:
        q.answer.append(dns.rrset.from_text(name, 300, "IN", "SOA", f"ns1. h. {serial} 1 1 1 1"))
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=3)


def test_notify_is_answered_as_knot_answers_it(start_pair):
    _, secondary = start_pair(zone_text(1, 10), notify=False)
    secondary.wait_serial(1)
    good = notify(secondary.port, ORIGIN, serial=1)
    assert (good.rcode(), good.opcode()) == (dns.rcode.NOERROR, dns.opcode.NOTIFY)
    assert good.flags & dns.flags.AA and good.flags & dns.flags.QR
    assert notify(secondary.port, "other.test.").rcode() == dns.rcode.NOTAUTH
    assert notify(secondary.port, ORIGIN, "A").rcode() == dns.rcode.FORMERR
    # Over TCP too.
    q = dns.message.make_query(ORIGIN, "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    response = dns.query.tcp(q, "127.0.0.1", port=secondary.port, timeout=3)
    assert response.rcode() == dns.rcode.NOERROR


def test_notify_from_a_sender_not_allowed_is_notauth(start_pair):
    _, secondary = start_pair(
        zone_text(1, 10), notify=False, extra='allow_notify = ["198.18.0.0/24"]\n'
    )
    secondary.wait_serial(1)
    assert notify(secondary.port, ORIGIN).rcode() == dns.rcode.NOTAUTH
    assert "not allowed" in secondary.log()


def test_stats_show_each_secondary_zone(pair, xdpdns_cli):
    primary, secondary = pair
    secondary.wait_serial(1)
    out = xdpdns_cli("stats", "--control-socket", secondary.workdir / "control.sock")
    assert out.returncode == 0, out.stderr
    assert "secondary zones" in out.stdout
    line = next(line for line in out.stdout.splitlines() if line.lstrip().startswith(ORIGIN))
    assert " 1 " in line and "AXFR 103 records from 127.0.0.1" in line


def test_a_storage_that_cannot_be_written_is_an_error_at_start(tmp_path, xdpdns_cli):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        f'[server]\nlisten = ["127.0.0.1:{_free_port()}"]\nstorage = "/dev/null/zones"\n'
        f'control_socket = "{tmp_path}/control.sock"\n'
        f'[[zone]]\norigin = "{ORIGIN}"\nprimaries = ["127.0.0.1:53"]\n'
    )
    out = xdpdns_cli("serve", "--config", conf)
    assert out.returncode != 0
    assert "[server] storage /dev/null/zones: secondary zones cannot be kept there" in out.stderr
