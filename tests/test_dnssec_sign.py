"""DNSSEC signing keys and RRSIGs made by the engine (native/zone/dnssec_sign.c),
the first part of signing zones on load (issue 12): keys made by BIND's
dnssec-keygen, each RRSIG validated by dnspython's dns.dnssec against the
key's DNSKEY, and every broken key file refused with a message naming it.
"""

import shutil
import subprocess
import time

import dns.dnssec
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from xdpdns.engine import SigningKey

# Also run against the AddressSanitizer build (bootstrap).
pytestmark = pytest.mark.asan

ORIGIN = dns.name.from_text("example.com.")
ALGORITHMS = {13: "ECDSAP256SHA256", 15: "ED25519"}


def keygen(directory, algorithm, ksk=False):
    """A key made by dnssec-keygen; the base of its two files."""
    if shutil.which("dnssec-keygen") is None:
        pytest.fail("dnssec-keygen not found: bootstrap installs bind9-utils")
    argv = ["dnssec-keygen", "-q", "-K", str(directory), "-a", ALGORITHMS[algorithm]]
    done = subprocess.run(
        argv + (["-f", "KSK"] if ksk else []) + ["example.com"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return directory / done.stdout.strip()


def _dnskey(key):
    info = key.info
    rdata = dns.rdata.from_wire(
        dns.rdataclass.IN, dns.rdatatype.DNSKEY, info.dnskey, 0, len(info.dnskey)
    )
    return {ORIGIN: dns.rrset.from_rdata(ORIGIN, 3600, rdata)}


def _sign(key, rrset, inception=None, expiration=None):
    now = int(time.time())
    rd = key.sign(
        rrset.name.to_wire(),
        ORIGIN.to_wire(),
        rrset.rdtype,
        rrset.ttl,
        [r.to_wire() for r in rrset],
        inception or now - 3600,
        expiration or now + 86400,
    )
    sig = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RRSIG, rd, 0, len(rd))
    return dns.rrset.from_rdata(rrset.name, rrset.ttl, sig)


RRSETS = [
    ("www.example.com.", "A", ["198.18.0.10", "198.18.0.11"]),
    # owner and RDATA names in mixed case: signed in canonical form
    ("WWW.Example.COM.", "MX", ["10 MAIL.example.com.", "20 b.Example.com."]),
    ("example.com.", "SOA", ["NS1.example.com. Hostmaster.example.com. 1 7200 3600 1209600 300"]),
    ("_sip._udp.example.com.", "SRV", ["0 5 5060 SIP.example.com."]),
    ("txt.example.com.", "TXT", ['"b"', '"a" "second string"']),
    # a wildcard: its labels field leaves the "*" out (RFC 4034 3.1.3)
    ("*.wild.example.com.", "A", ["198.18.0.99"]),
    ("alias.example.com.", "CNAME", ["Target.example.com."]),
]

# Names after other fields, or two of them (RFC 4034 6.2).
RP_AND_NAPTR = [
    ("rp.example.com.", "RP", ["Admin.example.com. Info.example.com."]),
    ("naptr.example.com.", "NAPTR", ['100 10 "S" "SIP+D2U" "" _SIP._udp.Example.com.']),
]


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("owner, rdtype, texts", RRSETS)
def test_rrsigs_validate(tmp_path, algorithm, owner, rdtype, texts):
    key = SigningKey(keygen(tmp_path, algorithm))
    rrset = dns.rrset.from_text(owner, 300, "IN", rdtype, *texts)
    sig = _sign(key, rrset)
    assert sig[0].algorithm == algorithm and sig[0].key_tag == key.info.tag
    assert sig[0].labels == len(rrset.name) - 1 - (rrset.name.labels[0] == b"*")
    assert sig[0].original_ttl == 300 and sig[0].signer == ORIGIN
    dns.dnssec.validate(rrset, sig, _dnskey(key))
    # The order the records come in does not matter (RFC 4034 6.3).
    reordered = dns.rrset.from_text(owner, 300, "IN", rdtype, *reversed(texts))
    dns.dnssec.validate(reordered, sig, _dnskey(key))


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("owner, rdtype, texts", RP_AND_NAPTR)
def test_rp_and_naptr_names_signed_in_canonical_form(tmp_path, algorithm, owner, rdtype, texts):
    """Regression: RP's two names and NAPTR's replacement name were signed
    in the case the zone file wrote them, where validators lower-case them
    (RFC 4034 6.2), so an upper-case one never validated."""
    test_rrsigs_validate(tmp_path, algorithm, owner, rdtype, texts)


def test_a_changed_rrset_does_not_validate(tmp_path):
    key = SigningKey(keygen(tmp_path, 13))
    rrset = dns.rrset.from_text("www.example.com.", 300, "IN", "A", "198.18.0.10")
    sig = _sign(key, rrset)
    other = dns.rrset.from_text("www.example.com.", 300, "IN", "A", "198.18.0.12")
    with pytest.raises(dns.dnssec.ValidationFailure):
        dns.dnssec.validate(other, sig, _dnskey(key))


def test_key_info_is_the_key_files(tmp_path):
    """Flags, algorithm and tag as dnssec-keygen wrote them (the tag is in
    the file name)."""
    base = keygen(tmp_path, 13, ksk=True)
    info = SigningKey(base).info
    assert info.flags == 257 and info.algorithm == 13
    assert base.name.endswith(f"+013+{info.tag:05d}")
    rdata = dns.rdata.from_wire(
        dns.rdataclass.IN, dns.rdatatype.DNSKEY, info.dnskey, 0, len(info.dnskey)
    )
    assert dns.dnssec.key_id(rdata) == info.tag


def test_ecdsa_private_key_of_31_bytes_is_read(tmp_path):
    """Regression: BIND writes an ECDSA private key as a number, without its
    leading zero bytes, so one key in 256 that dnssec-keygen made has a
    31-byte PrivateKey; it was refused as "not base64 of 32 bytes"."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import ec

    while True:  # about 256 tries
        private = ec.generate_private_key(ec.SECP256R1())
        d = private.private_numbers().private_value
        if d < 1 << 248:
            break
    public = private.public_key().public_numbers()
    pub = public.x.to_bytes(32, "big") + public.y.to_bytes(32, "big")
    base = tmp_path / "Kexample.com.+013+00000"
    (tmp_path / f"{base.name}.key").write_text(
        f"example.com. IN DNSKEY 256 3 13 {base64.b64encode(pub).decode()}\n"
    )
    (tmp_path / f"{base.name}.private").write_text(
        "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n"
        f"PrivateKey: {base64.b64encode(d.to_bytes(31, 'big')).decode()}\n"
    )
    key = SigningKey(base)
    rrset = dns.rrset.from_text("www.example.com.", 300, "IN", "A", "198.18.0.10")
    dns.dnssec.validate(rrset, _sign(key, rrset), _dnskey(key))


def test_broken_key_files_are_refused_by_name(tmp_path):
    ecdsa = keygen(tmp_path, 13)
    other = keygen(tmp_path, 13)
    with pytest.raises(OSError, match=r"no-such-key\.key: No such file"):
        SigningKey(tmp_path / "no-such-key")
    # a .private that is not the .key file's key
    mixed = tmp_path / "Kmixed"
    shutil.copy(f"{ecdsa}.key", f"{mixed}.key")
    shutil.copy(f"{other}.private", f"{mixed}.private")
    with pytest.raises(OSError, match=r"Kmixed\.private: not the private key of"):
        SigningKey(mixed)
    # an algorithm xdpdns does not sign with
    rsa = tmp_path / "Krsa"
    text = open(f"{ecdsa}.key").read().replace(" 3 13 ", " 3 8 ")
    open(f"{rsa}.key", "w").write(text)
    shutil.copy(f"{ecdsa}.private", f"{rsa}.private")
    with pytest.raises(OSError, match=r"Krsa\.key: algorithm 8: xdpdns signs with 13"):
        SigningKey(rsa)
    # a private key file without its key
    broken = tmp_path / "Kbroken"
    shutil.copy(f"{ecdsa}.key", f"{broken}.key")
    open(f"{broken}.private", "w").write("Private-key-format: v1.3\nAlgorithm: 13\n")
    with pytest.raises(OSError, match=r"Kbroken\.private: not a private key file"):
        SigningKey(broken)


# ---- signing zones on load: [[zone]] dnssec = { ... } ------------------------------


ZONE_TEXT = """$ORIGIN example.com.
$TTL 3600
@       SOA  ns1 hostmaster {serial} 7200 3600 1209600 300
        NS   ns1
ns1     A    198.18.0.1
www     A    198.18.0.{last}
"""


def _signed_setup(tmp_path, extra=""):
    ksk = keygen(tmp_path, 13, ksk=True)
    zsk = keygen(tmp_path, 15)
    zone = tmp_path / "example.com.zone"
    zone.write_text(ZONE_TEXT.format(serial=1, last=10))
    conf = tmp_path / "signed.toml"
    conf.write_text(
        f'[server]\nstorage = "{tmp_path}/storage"\n'
        f'[[zone]]\nfile = "{zone.name}"\n'
        f'dnssec = {{ keys = ["{ksk.name}", "{zsk.name}.private"]{extra} }}\n'
    )
    return conf, zone


def _validated(address, qname, qtype):
    """The DO=1 answer from the server, every RRset of it validated against
    the DNSKEYs the server gives (themselves validated)."""
    import dnsdiff

    def ask(name, rdtype):
        query = dns.message.make_query(name, rdtype, want_dnssec=True, payload=1232)
        wire = dnsdiff.exchange(address, query.to_wire(), tcp=True)
        assert wire is not None
        return dns.message.from_wire(wire)

    keys = ask("example.com.", "DNSKEY")
    dnskey = keys.answer[0] if keys.answer[0].rdtype == dns.rdatatype.DNSKEY else keys.answer[1]
    anchors = {ORIGIN: dnskey}
    response = ask(qname, qtype)
    for section in (keys.answer, response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = [
                s
                for s in section
                if s.rdtype == dns.rdatatype.RRSIG
                and s.name == rrset.name
                and s.covers == rrset.rdtype
            ]
            assert sigs, f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} unsigned"
            for sig in sigs:
                dns.dnssec.validate(rrset, sig, anchors)
    return response


def test_zone_signed_on_load_is_served_signed_and_resigned_on_reload(
    tmp_path, xdpdns_serve, xdpdns_cli
):
    """`[[zone]] dnssec`: the server signs the zone file when it loads it
    (a KSK and a ZSK of two algorithms), every DO=1 answer validates, and
    after a reload that changed data the new data is signed too."""
    conf, zone = _signed_setup(tmp_path, ", nsec3 = true")
    control = tmp_path / "ctl.sock"
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0", "--control-socket", control)
    address = server.addresses[0]
    answer = _validated(address, "www.example.com.", "A")
    assert answer.answer[0][0].address == "198.18.0.10"
    nx = _validated(address, "nothing.example.com.", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert [r for r in nx.authority if r.rdtype == dns.rdatatype.NSEC3]
    ns1_before = _validated(address, "ns1.example.com.", "A").find_rrset(
        dns.message.ANSWER,
        dns.name.from_text("ns1.example.com."),
        dns.rdataclass.IN,
        dns.rdatatype.RRSIG,
        dns.rdatatype.A,
    )
    zone.write_text(ZONE_TEXT.format(serial=2, last=20))
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    answer = _validated(address, "www.example.com.", "A")
    assert answer.answer[0][0].address == "198.18.0.20"
    # What did not change keeps its signature; the log says how many.
    ns1_after = _validated(address, "ns1.example.com.", "A").find_rrset(
        dns.message.ANSWER,
        dns.name.from_text("ns1.example.com."),
        dns.rdataclass.IN,
        dns.rdatatype.RRSIG,
        dns.rdatatype.A,
    )
    assert ns1_after == ns1_before
    log = server.output()
    # SOA, NS, DNSKEY, NSEC3PARAM, ns1 A, www A and three NSEC3s; then SOA
    # and www A again.
    assert "zone example.com. signed: 9 signatures made, 0 kept, serial 1;" in log, log
    assert "zone example.com. signed: 2 signatures made, 7 kept, serial 2;" in log, log


def _serial(address):
    soa = _validated(address, "example.com.", "SOA")
    return next(r for r in soa.answer if r.rdtype == dns.rdatatype.SOA)[0].serial


def test_signatures_changed_under_one_serial_take_the_next_even_after_a_restart(
    tmp_path, xdpdns_serve, xdpdns_cli
):
    """Regression: a zone signed on load whose data (or signatures, on the
    re-signing timer) changed without a new serial in its file kept that
    serial, so its secondaries never took the change.  Now it is served
    with the next serial, kept in storage, and a restart (which signs
    everything anew) goes on from there instead of back to the file's."""
    conf, zone = _signed_setup(tmp_path)
    control = tmp_path / "ctl.sock"
    args = ("--config", conf, "--listen", "127.0.0.1:0", "--control-socket", control)
    server = xdpdns_serve(*args)
    assert _serial(server.addresses[0]) == 1
    zone.write_text(ZONE_TEXT.format(serial=1, last=20))  # changed, the same serial
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    assert _serial(server.addresses[0]) == 2
    www = _validated(server.addresses[0], "www.example.com.", "A")
    assert www.answer[0][0].address == "198.18.0.20"
    assert "serial 2 (the zone's own: 1)" in server.output()
    assert (tmp_path / "storage" / "example.com.serial").read_text() == "2"
    # Reloaded unchanged: the serial stays.
    assert xdpdns_cli("reload", "--control-socket", control).returncode == 0
    assert _serial(server.addresses[0]) == 2
    server.stop()
    server = xdpdns_serve(*args)
    assert _serial(server.addresses[0]) == 3
    assert (tmp_path / "storage" / "example.com.serial").read_text() == "3"


def test_signing_a_signed_zone_is_an_error_naming_it(tmp_path, xdpdns_cli):
    conf, zone = _signed_setup(tmp_path)
    zone.write_text(
        zone.read_text() + "www RRSIG A 13 3 3600 20300101000000 "
        "20200101000000 1 example.com. AAAA\n"
    )
    result = xdpdns_cli("check", "--config", conf)
    assert result.returncode == 1
    assert "the zone is signed already" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "dnssec, key, words",
    [
        ("{ nsec3 = true }", "keys", "non-empty list of key file names"),
        ('{ keys = ["Knothere"] }', "keys", "key files that exist"),
        ('{ keys = ["KEY"], algorithm = 13 }', "algorithm", "unknown key"),
        ('{ keys = ["KEY"], validity = 60 }', "validity", "an integer from 3600"),
        ('{ keys = ["KEY"], validity = 7200, refresh = 7200 }', "refresh", "an integer from 600"),
        ('{ keys = ["KEY"], nsec3 = "yes" }', "nsec3", "true or false"),
        ('"KEY"', "", "a table"),
    ],
)
def test_bad_dnssec_settings_name_the_key(tmp_path, dnssec, key, words):
    from conftest import run_xdpdns_cli

    base = keygen(tmp_path, 13)
    (tmp_path / "z.zone").write_text(ZONE_TEXT.format(serial=1, last=1))
    conf = tmp_path / "bad.toml"
    conf.write_text(
        f'[[zone]]\nfile = "z.zone"\norigin = "example.com."\n'
        f"dnssec = {dnssec.replace('KEY', base.name)}\n"
    )
    result = run_xdpdns_cli("check", "--config", conf)
    assert result.returncode != 0
    where = f"zone[1].dnssec.{key}" if key else "zone[1].dnssec"
    assert where in result.stderr and words in result.stderr, result.stderr


def test_resigning_reloads_when_due_and_retries_a_failure(monkeypatch):
    """The server's re-signing loop: a reload when the first signature is
    within its refresh period, an hour later after one that failed, and a
    due time that a reload moved earlier is seen within RESIGN_POLL."""
    import asyncio

    from xdpdns import server as server_module

    clock, due, reloads, sleeps = [1000.0], [1000.0], [], []
    results = [False, True, True, True]

    class Stop(Exception):
        pass

    class Fake:
        def _resign_interval(self):
            return max(0.0, due[0] - clock[0])

        async def reload(self):
            reloads.append(clock[0])
            ok = results.pop(0)
            if ok:
                due[0] = clock[0] + 5000
            return server_module.ReloadResult(ok, "")

    async def fake_sleep(seconds):
        sleeps.append(seconds)
        clock[0] += seconds
        if clock[0] == 7000.0:
            due[0] = 7100.0  # a reload brought a zone due sooner
        if len(reloads) == 4:
            raise Stop

    monkeypatch.setattr(server_module.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(server_module.time, "time", lambda: clock[0])
    with pytest.raises(Stop):
        asyncio.run(server_module.Server._resign(Fake()))
    retry = 1000 + server_module.RESIGN_RETRY
    assert reloads == [1000.0, retry, 7100.0, 12100.0]
    assert max(sleeps) <= server_module.RESIGN_POLL


def test_storage_that_cannot_keep_serials_is_said_once_and_signing_goes_on(tmp_path, caplog):
    """Bad storage (here a file where the directory should be): a warning
    naming it, once; the zone is signed with no kept serial, and later
    publications do not try again."""
    from types import SimpleNamespace

    from xdpdns.config import load_config
    from xdpdns.image import SignedZone
    from xdpdns.plugins import load_plugins
    from xdpdns.server import Server

    conf, _zone = _signed_setup(tmp_path)
    (tmp_path / "storage").write_text("not a directory")
    pm = load_plugins()
    server = Server(load_config(pm, conf), pm)
    assert server._load_signed_serials() == {}
    report = SimpleNamespace(serial=5)
    publication = SimpleNamespace(compiled=SimpleNamespace(signed=(SignedZone(ORIGIN, report, 0),)))
    server._keep_signed_serials(publication)
    warnings = [r.getMessage() for r in caplog.records if "serials of zones" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "storage") in warnings[0]
    assert (tmp_path / "storage").read_text() == "not a directory"
