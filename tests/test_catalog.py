"""Catalog zones (RFC 9432 version 2) as a consumer: the catalog's content
(xdpdns/secondary/catalog.py), [[catalog]] and [templates.NAME], and
xdpdns following a Knot primary that serves a catalog: members added are
answered, members removed are REFUSED and their copies deleted, a broken
catalog changes nothing, and a restart serves the members from disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import pytest

from conftest import (
    _free_port,
    _knotd_path,
    _start,
    run_xdpdns_cli,
    stop_process,
    xdpdns_command,
)
from xdpdns.config import ConfigError, load_config
from xdpdns.plugins import load_plugins
from xdpdns.secondary.catalog import Catalog, CatalogError
from xdpdns.secondary.service import member_config, with_members
from xdpdns.secondary.xfr import Record

CATALOG = dns.name.from_text("catalog.test.")


def record(name: str, rdtype: str, text: str, ttl: int = 0) -> Record:
    return Record(dns.name.from_text(name, CATALOG), ttl, dns.rdata.from_text("IN", rdtype, text))


def catalog_records(*members: tuple[str, str], version: str = '"2"', extra=()) -> list[Record]:
    """(ID, member zone) pairs, as a catalog lists them."""
    out = [
        record("@", "SOA", "invalid. invalid. 1 3600 600 86400 0"),
        record("@", "NS", "invalid."),
        record("version", "TXT", version),
    ]
    out += [record(f"{uid}.zones", "PTR", zone) for uid, zone in members]
    return out + list(extra)


def test_members_with_their_groups_and_coo():
    catalog = Catalog(CATALOG)
    catalog.replace(
        catalog_records(
            ("a1", "one.test."),
            ("b2", "Two.Test."),
            extra=[
                record("group.a1.zones", "TXT", '"edge"'),
                record("coo.b2.zones", "PTR", "other-catalog.test."),
                record("ext.a1.zones", "TXT", '"an unknown property: ignored"'),
                record("zones", "TXT", '"not a member"'),
            ],
        )
    )
    members = catalog.members()
    assert sorted(m.to_text() for m in members) == ["one.test.", "two.test."]
    one = members[dns.name.from_text("one.test.")]
    two = members[dns.name.from_text("two.test.")]
    assert (one.id, one.groups, one.coo) == ("a1", ("edge",), None)
    assert (two.id, two.groups, two.coo) == ("b2", (), dns.name.from_text("other-catalog.test."))


def test_differences_apply_to_the_content():
    catalog = Catalog(CATALOG)
    catalog.replace(catalog_records(("a1", "one.test."), ("b2", "two.test.")))
    catalog.apply(
        [record("b2.zones", "PTR", "two.test.")],
        [record("c3.zones", "PTR", "three.test."), record("group.c3.zones", "TXT", '"edge"')],
    )
    members = catalog.members()
    assert sorted(m.to_text() for m in members) == ["one.test.", "three.test."]
    assert members[dns.name.from_text("three.test.")].groups == ("edge",)
    again = Catalog.from_json(CATALOG, catalog.to_json())
    assert again.content == catalog.content


@pytest.mark.parametrize(
    "records, words",
    [
        (catalog_records(("a1", "one.test."), version='"1"'), 'must be "2" alone'),
        (catalog_records(("a1", "one.test.")), None),
        (
            catalog_records(("a1", "one.test."))[:2] + [record("a1.zones", "PTR", "one.test.")],
            "version.catalog.test. TXT must be",
        ),
        (
            catalog_records(("a1", "one.test."), ("b2", "one.test.")),
            "zone one.test. is a member twice",
        ),
        (
            catalog_records(("a1", "one.test."), ("a1", "two.test.")),
            "one member zone per ID",
        ),
        (catalog_records(("a1", "x.catalog.test.")), "not a member zone"),
        (catalog_records(("a1", ".")), "not a member zone"),
    ],
)
def test_broken_catalogs_are_refused(records, words):
    catalog = Catalog(CATALOG)
    catalog.replace(records)
    if words is None:
        assert list(catalog.members()) == [dns.name.from_text("one.test.")]
        return
    with pytest.raises(CatalogError, match=words):
        catalog.members()


def test_config_catalogs_and_templates(tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text(
        '[templates.edge]\nallow_transfer = ["127.0.0.1"]\nnotify = ["127.0.0.1:5300"]\n'
        "[templates.plain]\n"
        '[[catalog]]\nzone = "catalog.test."\nprimaries = ["127.0.0.1:5301"]\n'
        'template = "plain"\n'
    )
    config = load_config(load_plugins(), conf)
    (catalog,) = config.zones
    assert catalog.secondary and catalog.catalog is not None
    assert catalog.catalog.template_for(("other", "edge")).name == "edge"
    assert catalog.catalog.template_for(("other",)).name == "plain"
    catalog_content = Catalog(CATALOG)
    catalog_content.replace(
        catalog_records(("a1", "one.test."), extra=[record("group.a1.zones", "TXT", '"edge"')])
    )
    member = member_config(catalog, catalog_content.members()[dns.name.from_text("one.test.")])
    assert member.primaries == catalog.primaries and member.member_of == CATALOG
    assert member.acl.allow_transfer and member.notify


def _catalogs(lists: dict[str, tuple[str, ...]], coo: dict[str, str] | None = None):
    """Catalogs by origin, each listing zones; coo: zone -> the catalog
    its listing in a.test. hands it over to."""
    from xdpdns.config import CatalogConfig, ZoneConfig

    catalogs, configured = {}, {}
    for name, members in lists.items():
        origin = dns.name.from_text(name)
        configured[origin] = ZoneConfig(None, origin, primaries=(), catalog=CatalogConfig())
        version = dns.rdata.from_text("IN", "TXT", '"2"')
        records = [Record(dns.name.from_text("version", origin), 0, version)]
        for i, zone in enumerate(members):
            owner = dns.name.from_text(f"m{i}.zones", origin)
            records.append(Record(owner, 0, dns.rdata.from_text("IN", "PTR", zone)))
            if name == "a.test." and zone in (coo or {}):
                coo_owner = dns.name.Name((b"coo",) + owner.labels)
                records.append(Record(coo_owner, 0, dns.rdata.from_text("IN", "PTR", coo[zone])))
        catalogs[origin] = Catalog(origin)
        catalogs[origin].replace(records)
    return configured, catalogs


def test_a_member_that_is_configured_already_stays_what_it_is(caplog):
    from xdpdns.config import ZoneConfig

    configured, catalogs = _catalogs(
        {"a.test.": ("one.test.", "two.test."), "b.test.": ("two.test.",)}
    )
    one = dns.name.from_text("one.test.")
    configured[one] = ZoneConfig(Path("one.zone"), one)
    wanted = with_members(configured, catalogs)
    two = wanted[dns.name.from_text("two.test.")]
    assert wanted[one].file == Path("one.zone") and two.member_of == dns.name.from_text("a.test.")
    assert "catalog a.test.: member one.test. is a configured zone already" in caplog.text
    assert "catalog b.test.: member two.test. is a member of catalog a.test. already" in caplog.text


def test_coo_hands_a_member_over_to_the_catalog_it_names(caplog):
    two, a, b = (dns.name.from_text(n) for n in ("two.test.", "a.test.", "b.test."))
    lists = {"a.test.": ("two.test.",), "b.test.": ("two.test.",)}
    caplog.set_level("INFO")
    configured, catalogs = _catalogs(lists, coo={"two.test.": "b.test."})
    assert with_members(configured, catalogs)[two].member_of == b
    assert "zone two.test.: catalog a.test. hands it over to catalog b.test. (coo)" in caplog.text
    # A coo that names another catalog: a keeps it.
    configured, catalogs = _catalogs(lists, coo={"two.test.": "c.test."})
    assert with_members(configured, catalogs)[two].member_of == a


@pytest.mark.parametrize(
    "text, words",
    [
        ('[[catalog]]\nprimaries = ["127.0.0.1"]\n', r"catalog\[1\].*zone: expected the catalog"),
        ('[[catalog]]\nzone = "c.test."\n', r"primaries: expected a non-empty list"),
        (
            '[[catalog]]\nzone = "c.test."\nprimaries = ["127.0.0.1"]\ntemplate = "nope"\n',
            r"template: expected the name of a \[templates.NAME\] table \(none\)",
        ),
        (
            '[[catalog]]\nzone = "c.test."\nprimaries = ["127.0.0.1"]\nfile = "x"\n',
            r"unknown key",
        ),
        ('[templates.t]\nprimaries = ["127.0.0.1"]\n', r"templates.t.*unknown key"),
        (
            '[[zone]]\norigin = "c.test."\nprimaries = ["127.0.0.1"]\n'
            '[[catalog]]\nzone = "c.test."\nprimaries = ["127.0.0.1"]\n',
            r"each zone once; c.test. comes from both its primaries and a \[\[catalog\]\]",
        ),
    ],
)
def test_config_errors(tmp_path, text, words):
    conf = tmp_path / "x.toml"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(load_plugins(), conf)


# ---- xdpdns following a Knot primary that serves a catalog -----------------------


def member_zone(origin: str, serial: int = 1) -> str:
    return (
        f"$ORIGIN {origin}\n$TTL 300\n@ SOA ns1 hostmaster {serial} 3600 600 86400 300\n"
        f"@ NS ns1\nns1 A 198.18.0.53\nwww A 198.18.0.80\n"
    )


def catalog_zone(serial: int, members: dict[str, tuple[str, str | None]]) -> str:
    """members: ID -> (zone, group or None)."""
    lines = [
        f"$ORIGIN {CATALOG}",
        "$TTL 0",
        f"@ SOA invalid. invalid. {serial} 3600 600 86400 0",
        "@ NS invalid.",
        'version TXT "2"',
    ]
    for uid, (zone, group) in members.items():
        lines.append(f"{uid}.zones PTR {zone}")
        if group:
            lines.append(f'group.{uid}.zones TXT "{group}"')
    return "\n".join(lines) + "\n"


MEMBERS = ("one.test.", "two.test.", "three.test.")


class KnotCatalogPrimary:
    """Knot serving the catalog (NOTIFY to the secondary) and MEMBERS."""

    def __init__(self, workdir: Path, notify_port: int) -> None:
        knotd = _knotd_path()
        if knotd is None:
            pytest.fail("knotd not installed: bootstrap installs it")
        workdir.mkdir(parents=True)
        (workdir / "db").mkdir()
        self.workdir, self.knotd = workdir, knotd
        self.port = _free_port()
        self.conf = workdir / "knot.conf"
        self.knotc = shutil.which("knotc", path=os.environ.get("PATH", "") + ":/usr/sbin")
        user = "    user: root:root\n" if os.geteuid() == 0 else ""
        zones = "".join(
            f'  - domain: "{z}"\n    file: "{workdir}/{z}zone"\n    acl: xfr\n' for z in MEMBERS
        )
        self.conf.write_text(
            f'server:\n    rundir: "{workdir}"\n{user}    listen: 127.0.0.1@{self.port}\n'
            "log:\n  - target: stderr\n    any: info\n"
            f'database:\n    storage: "{workdir}/db"\n'
            f'control:\n    listen: "{workdir}/knot.sock"\n'
            "acl:\n  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n"
            f"remote:\n  - id: secondary\n    address: 127.0.0.1@{notify_port}\n"
            f'template:\n  - id: default\n    storage: "{workdir}"\n    zonefile-sync: -1\n'
            "    zonefile-load: difference\n    journal-content: changes\n"
            "    semantic-checks: off\n"
            f'zone:\n  - domain: "{CATALOG}"\n    file: "{workdir}/catalog.zone"\n'
            "    acl: xfr\n    notify: secondary\n" + zones
        )
        for z in MEMBERS:
            (workdir / f"{z}zone").write_text(member_zone(z))

    def start(self, catalog: str) -> None:
        (self.workdir / "catalog.zone").write_text(catalog)
        self.server = _start(
            "knotd", [self.knotd, "-c", str(self.conf)], self.workdir / "knotd.log", self.port, []
        )

    def update(self, catalog: str) -> None:
        (self.workdir / "catalog.zone").write_text(catalog)
        subprocess.run(
            [self.knotc, "-c", str(self.conf), "zone-reload", str(CATALOG)],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def stop(self) -> None:
        self.server.stop()


class CatalogSecondary:
    def __init__(self, workdir: Path, port: int, primary_port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir, self.port = workdir, port
        self.storage = workdir / "storage"
        self.log_path = workdir / "xdpdns.log"
        self.conf = workdir / "xdpdns.toml"
        self.conf.write_text(
            f'[server]\nlisten = ["127.0.0.1:{port}"]\nstorage = "{self.storage}"\n'
            f'control_socket = "{workdir}/control.sock"\n'
            '[templates.edge]\nallow_transfer = ["127.0.0.1"]\n'
            f'[[catalog]]\nzone = "{CATALOG}"\nprimaries = ["127.0.0.1:{primary_port}"]\n'
        )
        self.proc = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                xdpdns_command() + ["serve", "--config", str(self.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rcode(self, zone: str) -> int | None:
        try:
            r = dns.query.udp(
                dns.message.make_query(zone, "SOA"), "127.0.0.1", port=self.port, timeout=1
            )
        except (OSError, dns.exception.Timeout):
            return None
        return r.rcode()

    def wait(self, zone: str, rcode: int, timeout: float = 15.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.rcode(zone) == rcode:
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(
            f"{zone} not {dns.rcode.to_text(rcode)} within {timeout}s:\n{self.log()[-3000:]}"
        )


def _transfer_allowed(port: int, zone: str) -> bool:
    try:
        list(dns.query.xfr("127.0.0.1", zone, port=port, timeout=3))
    except dns.query.TransferError:
        return False
    return True


def test_xdpdns_follows_a_catalog_of_knot(tmp_path):
    port = _free_port()
    primary = KnotCatalogPrimary(tmp_path / "knot", port)
    secondary = CatalogSecondary(tmp_path / "xdpdns", port, primary.port)
    primary.start(catalog_zone(1, {"a1": ("one.test.", "edge"), "b2": ("two.test.", None)}))
    secondary.start()
    try:
        for zone in ("one.test.", "two.test."):
            secondary.wait(zone, dns.rcode.NOERROR)
        assert secondary.rcode("three.test.") == dns.rcode.REFUSED
        # The group's template lets 127.0.0.1 transfer one.test.; two.test.
        # has no group and the catalog no default template: no transfers.
        assert _transfer_allowed(port, "one.test.")
        assert not _transfer_allowed(port, "two.test.")
        log = secondary.log()
        assert "zone one.test.: added by catalog catalog.test. (ID a1, group edge" in log

        # A member added, one removed: answered / REFUSED, its copy deleted.
        assert (secondary.storage / "two.test.image").exists()
        primary.update(catalog_zone(2, {"a1": ("one.test.", "edge"), "c3": ("three.test.", None)}))
        took = secondary.wait("three.test.", dns.rcode.NOERROR)
        secondary.wait("two.test.", dns.rcode.REFUSED)
        assert not (secondary.storage / "two.test.image").exists()
        assert "zone two.test.: removed from its catalog (was in catalog catalog.test.)" in (
            secondary.log()
        )
        print(f"a member added on the primary answered after {took:.2f}s")

        # A member's group changes: it takes the template of the new one.
        assert not _transfer_allowed(port, "three.test.")
        primary.update(
            catalog_zone(3, {"a1": ("one.test.", "edge"), "c3": ("three.test.", "edge")})
        )
        deadline = time.monotonic() + 10
        while not _transfer_allowed(port, "three.test."):
            assert time.monotonic() < deadline, secondary.log()[-3000:]
            time.sleep(0.05)

        # A broken member name: logged, nothing served changes.
        primary.update(
            catalog_zone(
                4,
                {
                    "a1": ("one.test.", "edge"),
                    "c3": ("three.test.", "edge"),
                    "d4": ("bad.catalog.test.", None),
                },
            )
        )
        deadline = time.monotonic() + 10
        while "bad.catalog.test." not in secondary.log():
            assert time.monotonic() < deadline, secondary.log()[-3000:]
            time.sleep(0.05)
        assert "PTR bad.catalog.test.: not a member zone" in secondary.log()
        soa = dns.query.udp(
            dns.message.make_query(str(CATALOG), "SOA"), "127.0.0.1", port=port, timeout=1
        )
        assert soa.answer[0][0].serial == 3
        for zone in ("one.test.", "three.test."):
            assert secondary.rcode(zone) == dns.rcode.NOERROR

        # A reload keeps the members.
        secondary.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded zones=3" not in secondary.log():
            assert time.monotonic() < deadline, secondary.log()[-3000:]
            time.sleep(0.05)
        for zone in ("one.test.", "three.test."):
            assert secondary.rcode(zone) == dns.rcode.NOERROR

        # A restart without the primary: the members are served from disk.
        primary.stop()
        secondary.stop()
        secondary.start()
        for zone in ("one.test.", "three.test."):
            secondary.wait(zone, dns.rcode.NOERROR)
        assert secondary.rcode("two.test.") == dns.rcode.REFUSED
        stats = run_xdpdns_cli("stats", "--control-socket", secondary.workdir / "control.sock")
        assert "one.test. (catalog catalog.test.)" in stats.stdout, stats.stdout + stats.stderr

        # The catalog taken out of the configuration takes its members along.
        secondary.conf.write_text(
            secondary.conf.read_text().replace("[[catalog]]\nzone =", "[[zone]]\norigin =")
        )
        secondary.proc.send_signal(signal.SIGHUP)
        secondary.wait("one.test.", dns.rcode.REFUSED)
        assert secondary.rcode("three.test.") == dns.rcode.REFUSED
        assert not (secondary.storage / "one.test.image").exists()
        assert secondary.rcode(str(CATALOG)) == dns.rcode.NOERROR
    finally:
        secondary.stop()
        primary.stop()
