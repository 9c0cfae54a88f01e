"""TSIG (RFC 8945): signed queries answered and signed by the answering
core (native/wire/tsig.c), its errors, transfer lists that require a key,
and the image's key block; then transfers and NOTIFY signed both ways
against Knot, BIND and NSD with the same key.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.zone
import pytest

from conftest import _free_port, _knotd_path, _start, stop_process, xdpdns_command
from test_secondary import axfr_records
from test_tcp import connect, framed
from xdpdns.config import ConfigError, load_config
from xdpdns.engine import Image, ImageBuilder
from xdpdns.plugins import load_plugins
from zoneimage import SOA, seal

SECRET = bytes(range(32))
SECRET_B64 = base64.b64encode(SECRET).decode()
K1 = dns.name.from_text("k1.")
EX = dns.name.from_text("example.com.")
ZONE_TEXT = SOA + "www 3600 IN A 198.18.0.3\n"
ALGORITHMS = ["hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"]


def _image(tmp_path, algorithm="hmac-sha256", transfer=None):
    (tmp_path / "z.zone").write_text(ZONE_TEXT)
    with ImageBuilder() as b:
        b.add_tsig_key(K1, algorithm, SECRET)
        zone = b.add_zone(EX)
        b.load_zonefile(zone, tmp_path / "z.zone")
        if transfer is not None:
            b.set_zone_acl(zone, "transfer", transfer, "deny")
        b.check()
        return b.finish()


def _key(algorithm="hmac-sha256", secret=SECRET, name="k1."):
    return dns.tsig.Key(name, secret, dns.name.from_text(algorithm))


def _signed(key, qname="www.example.com.", rdtype="A", **kw):
    query = dns.message.make_query(qname, rdtype, **kw)
    query.use_tsig(key)
    return query


def _answer(img, query, key):
    wire = img.answer(query.to_wire())
    return dns.message.from_wire(wire, keyring={key.name: key}, request_mac=query.mac)


# ---- the answering core --------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_signed_query_is_answered_and_signed(tmp_path, algorithm):
    img = _image(tmp_path, algorithm)
    key = _key(algorithm)
    response = _answer(img, _signed(key), key)
    assert response.rcode() == dns.rcode.NOERROR and response.had_tsig
    assert response.answer[0][0].address == "198.18.0.3"
    assert response.keyname == K1 and response.tsig_error == 0


def test_a_signed_query_with_edns_keeps_the_opt_before_the_tsig(tmp_path):
    img = _image(tmp_path)
    key = _key()
    response = _answer(img, _signed(key, use_edns=0, payload=1232), key)
    assert response.edns == 0 and response.had_tsig


@pytest.mark.parametrize(
    "key, error",
    [
        (_key(name="k2."), dns.tsig.PeerBadKey),  # no such key
        (_key("hmac-sha512"), dns.tsig.PeerBadKey),  # k1 is hmac-sha256
        (_key(secret=b"another secret"), dns.tsig.PeerBadSignature),
    ],
)
def test_a_bad_key_or_signature_gets_notauth_unsigned(tmp_path, key, error):
    img = _image(tmp_path)
    query = _signed(key)
    wire = img.answer(query.to_wire())
    assert wire[3] & 0x0F == dns.rcode.NOTAUTH
    with pytest.raises(error):
        dns.message.from_wire(wire, keyring={key.name: key}, request_mac=query.mac)
    # RFC 8945 5.3.2: the TSIG record has no MAC.
    _, mac, tsig_error = _tsig_fields(wire, key.name)
    assert mac == b"" and tsig_error == {dns.tsig.PeerBadKey: 17}.get(error, 16)


def _tsig_fields(wire: bytes, name: dns.name.Name = K1) -> tuple[int, bytes, int]:
    """(where the TSIG record of key ``name`` starts, its MAC, its error),
    read from the end of wire."""
    start = wire.rindex(name.to_wire() + struct.pack("!HH", dns.rdatatype.TSIG, 255))
    rdata = start + len(name.to_wire()) + 10
    alg_end = wire.index(b"\0", rdata) + 1
    mac_len = struct.unpack("!H", wire[alg_end + 8 : alg_end + 10])[0]
    mac = wire[alg_end + 10 : alg_end + 10 + mac_len]
    error = struct.unpack("!H", wire[alg_end + 12 + mac_len : alg_end + 14 + mac_len])[0]
    return start, mac, error


def test_a_query_signed_too_long_ago_gets_badtime_signed(tmp_path, monkeypatch):
    img = _image(tmp_path)
    key = _key()
    query = _signed(key)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 1000)
    wire = query.to_wire()
    monkeypatch.setattr(time, "time", real)
    response_wire = img.answer(wire)
    assert response_wire[3] & 0x0F == dns.rcode.NOTAUTH
    # Signed (dnspython checks the MAC before it reads the error) ...
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(response_wire, keyring={K1: key}, request_mac=query.mac)
    # ... with our time in the other data (RFC 8945 5.2.3).
    ours = int.from_bytes(response_wire[-6:], "big")
    assert abs(ours - real()) < 5


def _with_mac(wire: bytes, mac: bytes) -> bytes:
    """A signed query with its MAC replaced (RDLENGTH and MAC size too)."""
    start, old, _ = _tsig_fields(wire)
    rdlen_at = start + len(K1.to_wire()) + 8
    rdlen = struct.unpack("!H", wire[rdlen_at : rdlen_at + 2])[0] - len(old) + len(mac)
    at = wire.rindex(old)
    return (
        wire[:rdlen_at]
        + struct.pack("!H", rdlen)
        + wire[rdlen_at + 2 : at - 2]
        + struct.pack("!H", len(mac))
        + mac
        + wire[at + len(old) :]
    )


def test_a_truncated_mac_gets_badtrunc_and_a_tiny_one_formerr(tmp_path):
    img = _image(tmp_path)
    key = _key()
    query = _signed(key)
    wire = query.to_wire()
    badtrunc = img.answer(_with_mac(wire, query.mac[:16]))
    assert badtrunc[3] & 0x0F == dns.rcode.NOTAUTH
    with pytest.raises(dns.tsig.PeerBadTruncation):
        dns.message.from_wire(badtrunc, keyring={K1: key}, request_mac=query.mac)
    formerr = img.answer(_with_mac(wire, query.mac[:8]))
    assert formerr[3] & 0x0F == dns.rcode.FORMERR


def test_a_tsig_that_is_not_the_last_record_is_formerr(tmp_path):
    img = _image(tmp_path)
    wire = bytearray(_signed(_key()).to_wire())
    wire[10:12] = struct.pack("!H", struct.unpack("!H", wire[10:12])[0] + 1)
    wire += b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, 1232, 0, 0)  # OPT after it
    response = img.answer(bytes(wire))
    assert response[3] & 0x0F == dns.rcode.FORMERR
    assert struct.unpack("!H", response[10:12])[0] == 0  # unsigned, no OPT


def test_an_unsigned_query_is_answered_as_before(tmp_path):
    img = _image(tmp_path)
    wire = img.answer(dns.message.make_query("www.example.com.", "A").to_wire())
    response = dns.message.from_wire(wire)
    assert response.rcode() == dns.rcode.NOERROR and not response.had_tsig


# ---- the image -----------------------------------------------------------------


def test_the_image_keeps_its_keys(tmp_path):
    img = _image(tmp_path)
    again = Image.from_bytes(img.to_bytes())
    key = _key()
    assert _answer(again, _signed(key), key).rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d, end, at: d.__setitem__(at + 1, 9), "bad TSIG key"),  # algorithm
        (lambda d, end, at: d.__setitem__(slice(at + 2, at + 4), b"\0\0"), "bad TSIG key"),
        (lambda d, end, at: d.__setitem__(at + 5, ord("K")), "TSIG key name not in lower case"),
        (lambda d, end, at: d.__setitem__(at, 200), "TSIG key outside its block"),
    ],
)
def test_the_loader_rejects_a_malformed_key_block(tmp_path, damage, words):
    img = _image(tmp_path)
    data = bytearray(img.to_bytes())
    at = data.rindex(b"\x02k1\x00") - 4  # the key's entry: the image's last bytes
    damage(data, len(data), at)
    with pytest.raises(OSError, match=words):
        Image.from_bytes(seal(data))


def test_builder_refuses_bad_keys():
    with ImageBuilder() as b:
        with pytest.raises(ValueError, match="expected hmac-sha1"):
            b.add_tsig_key(K1, "hmac-md5", SECRET)
        with pytest.raises(ValueError, match="secret of 0 bytes"):
            b.add_tsig_key(K1, "hmac-sha256", b"")
        b.add_tsig_key(K1, "hmac-sha256", SECRET)
        with pytest.raises(ValueError, match="named twice"):
            b.add_tsig_key(dns.name.from_text("K1."), "hmac-sha1", SECRET)
        zone = b.add_zone(EX)
        with pytest.raises(ValueError, match="no TSIG key"):
            b.set_zone_acl(zone, "transfer", [("0.0.0.0/0", "allow", K1.parent())], "deny")


# ---- configuration -------------------------------------------------------------


def _config(tmp_path, text: str):
    (tmp_path / "z.zone").write_text(ZONE_TEXT)
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(text)
    return load_config(load_plugins(), conf)


KEY_TOML = f'[[key]]\nname = "k1."\nsecret = "{SECRET_B64}"\n'


def test_config_keys_lists_and_remotes(tmp_path):
    config = _config(
        tmp_path,
        KEY_TOML + '[[key]]\nname = "k2"\nalgorithm = "hmac-sha512"\nsecret = "AAAA"\n'
        '[[zone]]\nfile = "z.zone"\norigin = "example.com."\n'
        'allow_transfer = ["192.0.2.1", { key = "k1." }, '
        '{ key = "k2", address = "198.18.0.0/15" }]\n'
        'notify = ["192.0.2.2", { address = "[2001:2::2]:5300", key = "k1." }]\n'
        '[[zone]]\norigin = "example.net."\n'
        'primaries = [{ address = "192.0.2.3", key = "k2." }]\n'
        'allow_notify = [{ key = "k2." }]\n',
    )
    k1, k2 = config.keys
    assert (k1.name, k1.algorithm, k1.secret) == (K1, "hmac-sha256", SECRET)
    assert k2.algorithm == "hmac-sha512" and k2.secret == b"\0\0\0"
    assert "secret" not in repr(k1)  # kept out of logs and tracebacks
    primary, secondary = config.zones
    assert primary.acl.rules("transfer") == [
        (ipaddress.ip_network("192.0.2.1/32"), "allow"),
        (ipaddress.ip_network("0.0.0.0/0"), "allow", K1),
        (ipaddress.ip_network("::/0"), "allow", K1),
        (ipaddress.ip_network("198.18.0.0/15"), "allow", dns.name.from_text("k2.")),
    ]
    assert [(str(t), t.key) for t in primary.notify] == [
        ("192.0.2.2:53", None),
        ("[2001:2::2]:5300", k1),
    ]
    assert secondary.primaries[0].key == k2 and secondary.allow_notify[0].key == k2


@pytest.mark.parametrize(
    "text, words",
    [
        ('[[key]]\nsecret = "AAAA"\n', r"key\[1\]\.name: expected the key's name"),
        ('[[key]]\nname = "k1."\n', r"key\[1\]\.secret: expected the key's secret"),
        (
            '[[key]]\nname = "k1."\nalgorithm = "hmac-md5"\nsecret = "AAAA"\n',
            r"key\[1\]\.algorithm: expected one of hmac-sha1, .*got 'hmac-md5'",
        ),
        (
            '[[key]]\nname = "k1."\nsecret = "not base64!"\n',
            r"key\[1\]\.secret: expected the shared secret in base64 .*\(not shown\)",
        ),
        (
            KEY_TOML + KEY_TOML.replace("k1.", "K1"),
            r"key\[2\]\.name: expected each key name once",
        ),
        ('[[key]]\nname = "k1."\nsecret = "AAAA"\nfudge = 300\n', r"key\[1\]\.fudge"),
        (
            KEY_TOML + '[[zone]]\nfile = "z.zone"\nallow_transfer = [{ key = "k9." }]\n',
            r"allow_transfer: expected the name of a \[\[key\]\] table "
            r"\(known keys: k1\.\), got 'k9\.'",
        ),
        (
            KEY_TOML + '[[zone]]\nfile = "z.zone"\nallow_query = [{ key = "k1." }]\n',
            r"allow_query: expected a list of IPv4 or IPv6 prefixes",
        ),
        (
            KEY_TOML + '[[zone]]\nfile = "z.zone"\nallow_transfer = [{ address = "192.0.2.1" }]\n',
            r"allow_transfer: .*tables have a key and an optional address",
        ),
        (
            KEY_TOML + '[[zone]]\norigin = "a."\nprimaries = [{ key = "k1." }]\n',
            r"primaries: .*tables are \{ address",
        ),
        (
            KEY_TOML + '[[zone]]\nfile = "z.zone"\nnotify = [{ address = "192.0.2.1", '
            'key = "k2." }]\n',
            r"notify: expected the name of a \[\[key\]\] table",
        ),
    ],
)
def test_config_errors(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        _config(tmp_path, text)


# ---- transfers and NOTIFY against other servers ---------------------------------

BIG = "big.test."
K2_SECRET = bytes(range(64, 128))
KEYS_TOML = (
    f'[[key]]\nname = "k1."\nsecret = "{SECRET_B64}"\n'
    f'[[key]]\nname = "k2."\nalgorithm = "hmac-sha512"\n'
    f'secret = "{base64.b64encode(K2_SECRET).decode()}"\n'
)


def big_zone(serial: int, hosts: int = 3000) -> str:
    """Big enough that a transfer takes several messages, each signed."""
    lines = [
        f"$ORIGIN {BIG}",
        "$TTL 300",
        f"@ SOA ns1 hostmaster {serial} 3600 600 86400 300",
        "@ NS ns1",
        "ns1 A 198.18.0.53",
    ]
    lines += [f"h{i} A 198.18.{i >> 8 & 255}.{i & 255}" for i in range(hosts)]
    return "\n".join(lines) + "\n"


TRANSFER_ACL = 'allow_transfer = [{ key = "k1." }, { key = "k2.", address = "198.18.0.0/15" }]\n'


class XdpdnsPrimary:
    """`xdpdns serve` with BIG from a file: transfers for k1 from anywhere
    and k2 from 198.18.0.0/15 only, NOTIFY to ``notify`` signed with k1."""

    def __init__(
        self,
        workdir: Path,
        notify_port: int | None = None,
        extra: str = "",
        server: str = "",
        hosts: int = 3000,
        acl: str = TRANSFER_ACL,
    ) -> None:
        self.workdir = workdir
        self.hosts = hosts
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.file = workdir / "big.test.zone"
        notify = (
            f'notify = [{{ address = "127.0.0.1:{notify_port}", key = "k1." }}]\n'
            if notify_port
            else ""
        )
        self.conf = workdir / "xdpdns.toml"
        self.conf.write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.port}"]\n'
            f'control_socket = "{workdir}/control.sock"\n'
            + server
            + KEYS_TOML
            + f'[[zone]]\nfile = "{self.file}"\norigin = "{BIG}"\n'
            + acl
            + notify
            + extra
        )

    def start(self, serial: int = 1):
        self.file.write_text(big_zone(serial, self.hosts))
        self.server = _start(
            "xdpdns",
            xdpdns_command() + ["serve", "--config", str(self.conf)],
            self.workdir / "xdpdns.log",
            self.port,
            [(BIG, self.file)],
        )
        return self

    def update(self, serial: int, changed: str = "h7") -> None:
        """Serial, with host ``changed`` renamed "changed", then SIGHUP."""
        self.file.write_text(big_zone(serial).replace(f"{changed} A", "changed A"))
        self.server.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self.server.stop()


def serial_at(port: int, origin: str = BIG) -> int | None:
    try:
        r = dns.query.udp(dns.message.make_query(origin, "SOA"), "127.0.0.1", port=port, timeout=1)
    except (OSError, dns.exception.Timeout):
        return None
    if r.rcode() != dns.rcode.NOERROR or not r.answer:
        return None
    return r.answer[0][0].serial


def wait_serial(port: int, serial: int, log: Path, timeout: float = 15.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if serial_at(port) == serial:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(
        f"serial {serial} not served within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def signed_axfr(port: int, key: dns.tsig.Key) -> set[str]:
    """The zone by AXFR signed with key, each message's TSIG checked."""
    return axfr_records(port, BIG, key)


@pytest.fixture
def xdpdns_primary(tmp_path):
    primary = XdpdnsPrimary(tmp_path / "xdpdns").start()
    yield primary
    primary.stop()


def test_a_transfer_list_of_keys(xdpdns_primary):
    port = xdpdns_primary.port
    records = signed_axfr(port, _key())
    assert len(records) == 3000 + 3 and "h2999 300 A 198.18.11.183" in records
    # Unsigned, or k2 (whose rule holds 198.18.0.0/15 alone): REFUSED.
    with pytest.raises(dns.query.TransferError, match="REFUSED"):
        dns.zone.from_xfr(dns.query.xfr("127.0.0.1", BIG, port=port, timeout=5))
    k2 = _key("hmac-sha512", K2_SECRET, "k2.")
    with pytest.raises(dns.query.TransferError, match="REFUSED"):
        signed_axfr(port, k2)
    with pytest.raises(dns.tsig.PeerBadSignature):
        signed_axfr(port, _key(secret=b"not the secret"))
    # A signed query that needs no key is answered, and signed.
    query = _signed(k2, "ns1." + BIG)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    assert response.had_tsig and response.answer[0][0].address == "198.18.0.53"


def test_a_keyed_entry_wins_over_a_plain_one_of_the_same_prefix(tmp_path):
    acl = (
        'allow_transfer = [{ key = "k1.", address = "127.0.0.1" }]\n'
        'deny_transfer = ["127.0.0.1"]\n'
    )
    primary = XdpdnsPrimary(tmp_path, acl=acl).start()
    try:
        assert len(signed_axfr(primary.port, _key())) == 3000 + 3
        with pytest.raises(dns.query.TransferError, match="REFUSED"):
            _unsigned_axfr(primary.port)
    finally:
        primary.stop()


def test_a_signed_query_is_answered_with_cookies_off(tmp_path):
    # Bug: the workers set the answering core's clock only for cookies,
    # rate limiting or a resolver cache; without them a signed query was
    # checked against no time at all and got BADTIME.
    primary = XdpdnsPrimary(tmp_path, extra="[plugins.cookies]\nenabled = false\n").start()
    try:
        for tcp in (False, True):
            ask = dns.query.tcp if tcp else dns.query.udp
            query = _signed(_key(), "ns1." + BIG)
            response = ask(query, "127.0.0.1", port=primary.port, timeout=2)
            assert response.rcode() == dns.rcode.NOERROR and response.had_tsig
    finally:
        primary.stop()


def test_a_signed_transfer_refused_as_one_too_many_is_signed(tmp_path):
    primary = XdpdnsPrimary(tmp_path, server="tcp_max_transfers = 1\n", hosts=250000).start()
    try:
        with connect(("127.0.0.1", primary.port), rcvbuf=4096) as stalled:
            stalled.sendall(framed(_signed(_key(), BIG, "AXFR")))
            time.sleep(0.2)  # the server fills the window and waits
            query = _signed(_key(), BIG, "AXFR")
            refused = dns.query.tcp(query, "127.0.0.1", port=primary.port, timeout=5)
            # dnspython checked the signature with the query's MAC.
            assert refused.rcode() == dns.rcode.REFUSED and refused.had_tsig
    finally:
        primary.stop()


def _knot_conf(workdir: Path, port: int, body: str) -> Path:
    user = "    user: root:root\n" if os.geteuid() == 0 else ""
    conf = workdir / "knot.conf"
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f'server:\n    rundir: "{workdir}"\n{user}    listen: 127.0.0.1@{port}\n'
        "log:\n  - target: stderr\n    any: info\n"
        f'database:\n    storage: "{workdir}/db"\n'
        f'control:\n    listen: "{workdir}/knot.sock"\n'
        f"key:\n  - id: k1.\n    algorithm: hmac-sha256\n    secret: {SECRET_B64}\n" + body
    )
    return conf


def _knotd():
    knotd = _knotd_path()
    if knotd is None:
        pytest.fail("knotd not installed: bootstrap installs it")
    return knotd


def test_knot_follows_xdpdns_with_tsig(tmp_path):
    knot_port = _free_port()
    primary = XdpdnsPrimary(tmp_path / "xdpdns", knot_port).start()
    workdir = tmp_path / "knot"
    workdir.mkdir()
    conf = _knot_conf(
        workdir,
        knot_port,
        f"remote:\n  - id: primary\n    address: 127.0.0.1@{primary.port}\n    key: k1.\n"
        "acl:\n  - id: notify\n    address: 127.0.0.1\n    key: k1.\n    action: notify\n"
        "  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n"
        f'template:\n  - id: default\n    storage: "{workdir}"\n    semantic-checks: off\n'
        f'zone:\n  - domain: "{BIG}"\n    master: primary\n    acl: [notify, xfr]\n',
    )
    knot = _start("knotd", [_knotd(), "-c", str(conf)], workdir / "knotd.log", knot_port, [])
    try:
        wait_serial(knot_port, 1, workdir / "knotd.log")
        primary.update(2)  # NOTIFY signed with k1, then Knot's signed IXFR
        wait_serial(knot_port, 2, workdir / "knotd.log")
        assert signed_axfr(primary.port, _key()) == _unsigned_axfr(knot_port)
        log = (workdir / "knotd.log").read_text()
        assert "IXFR, incoming" in log and "BADSIG" not in log
        assert (
            "serial 2 to 127.0.0.1:%d: acknowledged" % knot_port
            in (tmp_path / "xdpdns" / "xdpdns.log").read_text()
        )
    finally:
        knot.stop()
        primary.stop()


def _unsigned_axfr(port: int) -> set[str]:
    return axfr_records(port, BIG)


class XdpdnsSecondary:
    """`xdpdns serve` with BIG transferred from 127.0.0.1:primary_port,
    signed with k1 (holding ``secret``), NOTIFY taken signed with k1."""

    def __init__(
        self, workdir: Path, primary_port: int, port: int | None = None, secret: bytes = SECRET
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.log = workdir / "xdpdns.log"
        (workdir / "xdpdns.toml").write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.port}"]\n'
            f'storage = "{workdir}/storage"\ncontrol_socket = "{workdir}/control.sock"\n'
            f'[[key]]\nname = "k1."\nsecret = "{base64.b64encode(secret).decode()}"\n'
            f'[[zone]]\norigin = "{BIG}"\n'
            f'primaries = [{{ address = "127.0.0.1:{primary_port}", key = "k1." }}]\n'
            'allow_transfer = ["127.0.0.1", { key = "k1." }]\n'
        )
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            xdpdns_command() + ["serve", "--config", str(workdir / "xdpdns.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def stop(self) -> None:
        stop_process(self.proc)


class KnotPrimary:
    """Knot serving BIG with a journal: transfers to k1 alone, NOTIFY to
    ``notify_port`` signed with k1."""

    def __init__(self, workdir: Path, notify_port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = _free_port()
        self.file = workdir / "big.test.zone"
        self.conf = _knot_conf(
            workdir,
            self.port,
            f"remote:\n  - id: secondary\n    address: 127.0.0.1@{notify_port}\n    key: k1.\n"
            "acl:\n  - id: xfr\n    address: 127.0.0.1\n    key: k1.\n    action: transfer\n"
            f'template:\n  - id: default\n    storage: "{workdir}"\n    zonefile-sync: -1\n'
            "    zonefile-load: difference\n    journal-content: changes\n"
            "    semantic-checks: off\n"
            f'zone:\n  - domain: "{BIG}"\n    file: "{self.file}"\n    acl: xfr\n'
            "    notify: secondary\n",
        )

    def start(self, serial: int = 1):
        self.file.write_text(big_zone(serial))
        self.server = _start(
            "knotd",
            [_knotd(), "-c", str(self.conf)],
            self.workdir / "knotd.log",
            self.port,
            [(BIG, self.file)],
        )
        return self

    def update(self, serial: int) -> None:
        self.file.write_text(big_zone(serial).replace("h7 A", "changed A"))
        knotc = shutil.which("knotc", path=os.environ.get("PATH", "") + ":/usr/sbin")
        subprocess.run(
            [knotc, "-c", str(self.conf), "zone-reload", BIG], check=True, capture_output=True
        )

    def stop(self) -> None:
        self.server.stop()


def test_xdpdns_follows_knot_with_tsig(tmp_path):
    notify_port = _free_port()
    knot = KnotPrimary(tmp_path / "knot", notify_port).start()
    secondary = XdpdnsSecondary(tmp_path / "xdpdns", knot.port, notify_port)
    try:
        wait_serial(secondary.port, 1, secondary.log)
        knot.update(2)
        took = wait_serial(secondary.port, 2, secondary.log)
        assert took < 2.0, "the signed NOTIFY was not taken"
        log = secondary.log.read_text()
        assert "by IXFR" in log and "notify for big.test. from 127.0.0.1" in log
        assert _unsigned_axfr(secondary.port) == signed_axfr(knot.port, _key())
        # Kept on disk (just after it is served), though its transfer list
        # names a key, and without the key.
        deadline = time.monotonic() + 5
        while b"changed" not in _kept(tmp_path / "xdpdns" / "storage"):
            assert time.monotonic() < deadline, secondary.log.read_text()[-2000:]
            time.sleep(0.05)
        assert SECRET not in _kept(tmp_path / "xdpdns" / "storage")
    finally:
        secondary.stop()
        knot.stop()


def _kept(storage: Path) -> bytes:
    return b"".join(path.read_bytes() for path in storage.glob("*.image"))


def test_a_wrong_secret_for_the_primary_is_logged_and_nothing_served(tmp_path):
    knot = KnotPrimary(tmp_path / "knot", _free_port()).start()
    secondary = XdpdnsSecondary(tmp_path / "xdpdns", knot.port, secret=b"not the secret")
    try:
        deadline = time.monotonic() + 10
        while "BADSIG" not in secondary.log.read_text():
            assert time.monotonic() < deadline, secondary.log.read_text()[-2000:]
            time.sleep(0.1)
        assert "refused TSIG key k1.: BADSIG (its secret differs)" in secondary.log.read_text()
        response = dns.query.udp(
            dns.message.make_query(BIG, "SOA"), "127.0.0.1", port=secondary.port, timeout=2
        )
        assert response.rcode() == dns.rcode.SERVFAIL
    finally:
        secondary.stop()
        knot.stop()


def test_notify_in_takes_only_the_primarys_key(tmp_path):
    # The primary is not there: NOTIFY is answered all the same.
    secondary = XdpdnsSecondary(tmp_path / "xdpdns", _free_port())
    try:
        wait_answering(secondary.port)

        def notify(key=None):
            message = dns.message.make_query(BIG, "SOA")
            message.flags = dns.flags.AA
            message.set_opcode(dns.opcode.NOTIFY)  # after flags: it lives in them
            if key is not None:
                message.use_tsig(key)
            return dns.query.udp(message, "127.0.0.1", port=secondary.port, timeout=2)

        signed = notify(_key())
        assert signed.rcode() == dns.rcode.NOERROR and signed.had_tsig
        assert notify().rcode() == dns.rcode.NOTAUTH  # the primary signs with k1
        with pytest.raises(dns.tsig.PeerBadSignature):
            notify(_key(secret=b"not the secret"))
        with pytest.raises(dns.tsig.PeerBadKey):
            notify(_key(name="k9."))
    finally:
        secondary.stop()


def wait_answering(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            dns.query.udp(dns.message.make_query(BIG, "SOA"), "127.0.0.1", port=port, timeout=0.5)
            return
        except (OSError, dns.exception.Timeout):
            assert time.monotonic() < deadline, f"nothing answers on port {port}"
            time.sleep(0.1)


# ---- BIND and NSD, with the same key ---------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} not installed: bootstrap installs it")
    return path


def _named_conf(workdir: Path, port: int, zone: str) -> Path:
    conf = workdir / "named.conf"
    conf.write_text(
        "options {\n"
        f'  directory "{workdir}";\n  pid-file "{workdir}/named.pid";\n'
        f'  session-keyfile "{workdir}/session.key";\n'
        f'  managed-keys-directory "{workdir}";\n'
        f"  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n"
        "  recursion no;\n  dnssec-validation no;\n  allow-transfer { 127.0.0.1; };\n"
        "};\n"
        f'key "k1." {{ algorithm hmac-sha256; secret "{SECRET_B64}"; }};\n'
        "controls { };\n" + zone
    )
    return conf


def _nsd_conf(workdir: Path, port: int, zone: str) -> Path:
    conf = workdir / "nsd.conf"
    conf.write_text(
        f"server:\n    ip-address: 127.0.0.1@{port}\n    do-ip6: no\n"
        '    username: ""\n    chroot: ""\n'
        f'    zonesdir: "{workdir}"\n    database: ""\n'
        f'    zonelistfile: "{workdir}/zone.list"\n    xfrdfile: "{workdir}/xfrd.state"\n'
        f'    xfrdir: "{workdir}"\n    pidfile: "{workdir}/nsd.pid"\n    verbosity: 2\n'
        "remote-control:\n    control-enable: no\n"
        f'key:\n    name: "k1."\n    algorithm: hmac-sha256\n    secret: "{SECRET_B64}"\n' + zone
    )
    return conf


def _start_peer(kind: str, workdir: Path, port: int, zone: str, zones):
    if kind == "bind":
        conf = _named_conf(workdir, port, zone)
        argv = [_tool("named"), "-g", "-c", str(conf)]
        return _start("named", argv, workdir / "named.log", port, zones, cwd=workdir)
    conf = _nsd_conf(workdir, port, zone)
    argv = [_tool("nsd"), "-d", "-c", str(conf)]
    return _start("nsd", argv, workdir / "nsd.log", port, zones, cwd=workdir)


@pytest.mark.parametrize("kind", ["bind", "nsd"])
def test_a_secondary_follows_xdpdns_with_tsig(tmp_path, kind):
    port = _free_port()
    primary = XdpdnsPrimary(tmp_path / "xdpdns", port).start()
    workdir = tmp_path / kind
    workdir.mkdir()
    db = workdir / "big.test.db"
    if kind == "bind":
        zone = (
            f'zone "{BIG}" {{ type secondary; file "{db}";\n'
            f'  primaries port {primary.port} {{ 127.0.0.1 key "k1."; }};\n'
            '  allow-notify { key "k1."; }; };\n'
        )
    else:
        zone = (
            f'zone:\n    name: "{BIG}"\n    zonefile: "{db}"\n'
            f"    request-xfr: AXFR 127.0.0.1@{primary.port} k1.\n"
            "    allow-notify: 127.0.0.1 k1.\n    provide-xfr: 127.0.0.1 NOKEY\n"
        )
    peer = _start_peer(kind, workdir, port, zone, [])
    try:
        wait_serial(port, 1, peer.log_path)
        primary.update(2)  # signed NOTIFY, then the peer's signed transfer
        wait_serial(port, 2, peer.log_path)
        assert _unsigned_axfr(port) == signed_axfr(primary.port, _key())
        assert (
            f"serial 2 to 127.0.0.1:{port}: acknowledged"
            in (tmp_path / "xdpdns" / "xdpdns.log").read_text()
        )
    finally:
        peer.stop()
        primary.stop()


@pytest.mark.parametrize("kind", ["bind", "nsd"])
def test_xdpdns_follows_a_primary_with_tsig(tmp_path, kind):
    notify_port = _free_port()
    workdir = tmp_path / kind
    workdir.mkdir()
    file = workdir / "big.test.zone"
    file.write_text(big_zone(1))
    port = _free_port()
    if kind == "bind":
        zone = (
            f'zone "{BIG}" {{ type primary; file "{file}"; ixfr-from-differences yes;\n'
            '  allow-transfer { key "k1."; }; notify explicit;\n'
            f'  also-notify {{ 127.0.0.1 port {notify_port} key "k1."; }}; }};\n'
        )
    else:
        zone = (
            f'zone:\n    name: "{BIG}"\n    zonefile: "{file}"\n'
            "    provide-xfr: 127.0.0.1 k1.\n"
            f"    notify: 127.0.0.1@{notify_port} k1.\n"
        )
    peer = _start_peer(kind, workdir, port, zone, [(BIG, file)])
    secondary = XdpdnsSecondary(tmp_path / "xdpdns", port, notify_port)
    try:
        wait_serial(secondary.port, 1, secondary.log)
        file.write_text(big_zone(2).replace("h7 A", "changed A"))
        peer.proc.send_signal(signal.SIGHUP)  # both reload changed zone files
        took = wait_serial(secondary.port, 2, secondary.log)
        assert took < 5.0, "the signed NOTIFY was not taken"
        assert "notify for big.test. from 127.0.0.1" in secondary.log.read_text()
        assert _unsigned_axfr(secondary.port) == signed_axfr(port, _key())
    finally:
        secondary.stop()
        peer.stop()


def test_a_signed_query_parses_for_a_resolver_hook():
    # Bug: ResolverQuery.message parsed the wire without a keyring, which
    # dnspython refuses for a signed message, so every signed NOTIFY (and
    # signed query for a claimed name) got SERVFAIL.
    from xdpdns.plugin_types import ResolverQuery

    wire = _signed(_key(), use_edns=0).to_wire()
    message = ResolverQuery(wire=wire, client_address=("127.0.0.1", 53)).message
    assert not message.had_tsig and message.edns == 0
    assert message.question[0].name == dns.name.from_text("www.example.com.")
