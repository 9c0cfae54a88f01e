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

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
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


def axfr_records(port: int) -> set[str]:
    """The zone as a transfer from 127.0.0.1:port gives it, one text line a record."""
    zone = dns.zone.from_xfr(dns.query.xfr("127.0.0.1", ORIGIN, port=port, timeout=5))
    return {
        f"{name} {rdataset.ttl} {dns.rdatatype.to_text(rdataset.rdtype)} {rdata}"
        for name, rdataset in zone.iterate_rdatasets()
        for rdata in rdataset
    }


@pytest.fixture
def pair(tmp_path):
    """(primary, secondary): Knot with the zone, and xdpdns following it."""
    port = _free_port()
    primary = Primary(tmp_path / "knot", port)
    secondary = Secondary(tmp_path, port, primary.port)
    primary.start(zone_text(1, 100))
    secondary.start()
    yield primary, secondary
    secondary.stop()
    primary.stop()


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
