"""The XDP program's answer table (native/io/xdp_answers.c, bpf/xdpdns.bpf.c):
what it holds, and that what the program would send from it is, byte for
byte, what the answering core sends.

Without root, a model of the program's lookup (exact entry, else the name's
"other types" entry; only plain queries; only where the answer fits) answers
from Image.answer_table() and is compared with Image.answer for every row of
the differential suite and every name and type of the zones, in several
shapes (no OPT, OPT of several sizes, mixed case).  As root, the same queries
go to a server in XDP mode (port 53: the program or a worker) and to its
socket-mode workers (port 5353), over IPv4 and IPv6, and the bytes must be
the same; the program's counters say it answered; a reload under load never
goes back to the old serial.
"""

import random
import socket
import struct
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rcode
import pytest

import dnsdiff
from conftest import diff_zones
from netns import SOCKET_PORT, listen_args
from zoneimage import SERIAL_ZONE
from test_diff_knot import CASES
from xdpdns.engine import ImageBuilder

# Also run against the AddressSanitizer build (bootstrap): the compiler of
# the table walks the image and its own buffers.
pytestmark = pytest.mark.asan

UDP_MIN, UDP_MAX, OPT_RESERVE = 512, 1232, 17
# Types the table holds no answers to (xd_answer_type_held): the workers'.
NOT_HELD = (
    dns.rdatatype.AXFR,
    dns.rdatatype.IXFR,
    dns.rdatatype.ANY,
    dns.rdatatype.RRSIG,
    dns.rdatatype.NSEC,
    dns.rdatatype.NSEC3,
)


def bare_opt(dnssec):
    return bytes([0, 0, 41, UDP_MAX >> 8, UDP_MAX & 0xFF, 0, 0, 0x80 if dnssec else 0, 0, 0, 0])


ZONE_DIR = Path(__file__).resolve().parent.parent / "zones"

# Shapes of one query: (use_edns, payload, mixed case, DO)
SHAPES = [
    (False, 0, False, False),
    (True, 1232, False, False),
    (True, 512, False, False),
    (True, 100, False, False),
    (True, 4096, False, False),
    (False, 0, True, False),
    (True, 1232, True, False),
    (True, 1232, False, True),
    (True, 512, False, True),
    (True, 1232, True, True),
]


def _image(overrides=False):
    with ImageBuilder() as builder:
        for origin, path in diff_zones():
            builder.load_zonefile(builder.add_zone(dns.name.from_text(origin)), path)
        if overrides:
            _add_overrides(builder)
        return builder.finish()


def _add_overrides(builder):
    """Rules of every action, over zone names and names outside the zones."""

    def rdata(rdtype, text):
        return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)

    answer = builder.add_override_rule(
        "answer", 60, [rdata("A", "198.18.7.7"), rdata("AAAA", "2001:2::77")]
    )
    cname = builder.add_override_rule("answer", 60, [rdata("CNAME", "www.example.com.")])
    nxdomain = builder.add_override_rule("nxdomain")
    refused = builder.add_override_rule("refused")
    nodata = builder.add_override_rule("nodata")
    for name, rule, subtree in (
        ("www.example.com.", answer, False),
        ("blocked.example.com.", nxdomain, True),
        ("mail.example.com.", refused, False),
        ("ns1.example.com.", nodata, False),
        ("ads.other.test.", answer, True),
        ("go.other.test.", cname, False),
        ("alias.example.com.", cname, False),
    ):
        builder.add_override(dns.name.from_text(name), rule, subtree)


def _table(image):
    info, entries = image.answer_table()
    return info, {(e.name.to_wire().lower(), e.qtype, e.qclass, e.dnssec): e for e in entries}


def _mixcase(name):
    rng = random.Random(name.to_text())
    labels = [
        bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.5 else c for c in label)
        for label in name.labels
    ]
    return dns.name.Name(labels)


def _query_wire(qname, qtype, edns, payload, mixed, dnssec=False):
    name = dns.name.from_text(qname) if isinstance(qname, str) else qname
    if mixed:
        name = _mixcase(name)
    q = dns.message.make_query(
        name, qtype, use_edns=0 if edns else False, payload=payload or 1232, want_dnssec=dnssec
    )
    q.flags &= ~dns.flags.RD if random.Random(str(name)).random() < 0.5 else 0xFFFF
    return q.to_wire()


def _lookup(table, name, qtype, dnssec):
    if qtype in NOT_HELD:
        return None
    entry = table.get((name, qtype, 1, dnssec))
    if entry is None:
        entry = table.get((name, 0, 0, dnssec))
    return entry


def program_answer(table, wire):
    """What the XDP program sends for a query: the response bytes, or None
    when it passes the query on to the worker (bpf/xdpdns.bpf.c)."""
    if len(wire) < 12:
        return None
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", wire[:12])
    if flags & 0xF800 or qd != 1 or an or ns or ar > 1:
        return None
    pos = 12
    while True:
        if pos >= len(wire) or wire[pos] > 63:
            return None
        if wire[pos] == 0:
            break
        pos += 1 + wire[pos]
    name = wire[12 : pos + 1]
    if len(name) > 255 or len(wire) < pos + 5:
        return None
    qtype, qclass = struct.unpack("!HH", wire[pos + 1 : pos + 5])
    qend = pos + 5
    rest = wire[qend:]
    if qclass != 1:
        return None
    edns, payload, dnssec = False, 0, False
    if ar == 0 and not rest:
        pass
    elif (
        ar == 1
        and len(rest) == 11
        and rest[0:3] == b"\x00\x00\x29"
        and rest[6] == 0
        and rest[9:11] == b"\x00\x00"
    ):
        edns, payload = True, struct.unpack("!H", rest[3:5])[0]
        dnssec = bool(rest[7] & 0x80)
    else:
        return None
    entry = _lookup(table, name.lower(), qtype, False)
    if dnssec and not (entry is not None and entry.also_do):
        entry = _lookup(table, name.lower(), qtype, True)
    if entry is None or entry.to_worker:
        return None
    need = qend + len(entry.sections)
    limit = max(UDP_MIN, min(payload, UDP_MAX)) if edns else UDP_MIN
    if need + (OPT_RESERVE if edns else 0) > limit:
        return None
    header = struct.pack(
        "!HHHHHH",
        qid,
        0x8000 | entry.flags | (flags & 0x0110),
        1,
        entry.counts[0],
        entry.counts[1],
        entry.counts[2] + edns,
    )
    return header + wire[12:qend] + entry.sections + (bare_opt(dnssec) if edns else b"")


def _questions(table):
    """Every row of the differential suite, and every name of the table
    with every type the zones hold and a few they do not."""
    types = {e.qtype for e in table.values() if e.qtype} | {0, 5, 43, 255, 252, 251, 65280, 999, 99}
    names = {e.name for e in table.values()}
    out = [(c.qname, c.qtype) for c in CASES]
    for name in sorted(names):
        out += [(name, dns.rdatatype.to_text(t)) for t in sorted(types)]
    return out


def _compare(image, table, questions):
    sent = 0
    for qname, qtype in questions:
        for edns, payload, mixed, dnssec in SHAPES:
            wire = _query_wire(qname, qtype, edns, payload, mixed, dnssec)
            ours = program_answer(table, wire)
            if ours is None:
                continue
            sent += 1
            core = image.answer(wire)
            assert ours == core, (
                f"{qname} {qtype} edns={edns} payload={payload} "
                f"mixed={mixed} do={dnssec}:\n program {ours.hex()}\n core    "
                f"{core.hex() if core else None}"
            )
    return sent


@pytest.mark.parametrize("overrides", [False, True], ids=["zones", "zones+overrides"])
def test_table_answers_are_the_cores(overrides):
    image = _image(overrides)
    info, table = _table(image)
    assert info.entries == len(table)  # one entry a key
    sent = _compare(image, table, _questions(table))
    assert sent > 1000, sent


def test_table_answers_the_answering_core_cases(tmp_path):
    """The answering core's own table of cases (tests/test_answer.py: CNAME
    chains, wildcards, DNAME, delegations, SRV) through the model of the
    program: where it answers, the core's bytes."""
    import zoneimage
    from test_answer import CASES as CORE_CASES, ZONE

    image = zoneimage.image(tmp_path, {"example.com.": ZONE})
    _, table = _table(image)
    questions = [(qname, qtype) for qname, qtype, *_ in CORE_CASES]
    assert _compare(image, table, questions + _questions(table)) > 100


def test_what_the_table_holds():
    image = _image()
    _, table = _table(image)

    def entry(name, rdtype, other=False):
        key = (
            dns.name.from_text(name).to_wire(),
            0 if other else dns.rdatatype.from_text(rdtype),
            0 if other else 1,
            False,
        )
        return table.get(key)

    assert entry("www.example.com.", "A").counts[0] >= 1
    assert entry("www.example.com.", None, other=True).counts == (0, 1, 0)  # NODATA
    assert entry("sub.example.com.", None, other=True).flags & 0x0400 == 0  # referral
    assert entry("sub.example.com.", "DS") is not None  # the parent answers it
    assert entry("alias.example.com.", "A") is not None  # the chain's end decides
    # DNAME synthesis copies the query's case: the worker's.
    assert entry("www.dn.example.com.", None, other=True) is None
    assert entry("www.dn.example.com.", "A") is None
    # Names that do not exist have no entry: NXDOMAIN is the worker's.
    assert not any(e.name == dns.name.from_text("nothere.example.com.") for e in table.values())
    # The checksum of every answer is its sections' sum.
    for e in table.values():
        if not e.to_worker:
            assert e.csum == _csum(e.sections), e


def test_unsigned_names_answer_do_from_their_plain_entries():
    """Regression guard for the table's size: in unsigned zones the answers
    with DO=1 are the answers without, so no DO entry is made and every
    plain entry says it holds for DO too."""
    info, table = _table(_image())
    assert info.do_entries == 0
    assert not any(e.dnssec for e in table.values())
    assert all(e.also_do for e in table.values())


@pytest.fixture(scope="module")
def signed_tables(tmp_path_factory):
    """{form: (image, table)} of tests/data/dnssec/signed.test.zone signed
    by dnssec-signzone (NSEC, NSEC3, NSEC3 opt-out) and on load (NSEC3)."""
    from test_dnssec import FORMS, _image as load_image, keygen_pair, sign_on_load, sign_zone
    from test_dnssec import ZONE as SIGNED_SOURCE
    from xdpdns.engine import SigningKey

    out = {}
    for form in ("nsec", "nsec3", "nsec3-optout"):
        work = tmp_path_factory.mktemp(f"xdp-{form}")
        image = load_image(sign_zone(work, FORMS[form]))
        out[form] = (image, _table(image)[1])
    keys = [SigningKey(k) for k in keygen_pair(tmp_path_factory.mktemp("xdp-load"))]
    image = sign_on_load(SIGNED_SOURCE, keys, True)
    out["load-nsec3"] = (image, _table(image)[1])
    return out


@pytest.mark.parametrize("form", ["nsec", "nsec3", "nsec3-optout", "load-nsec3"])
def test_table_do_answers_of_signed_zones_are_the_cores(signed_tables, form):
    """A signed zone's names get DO entries (RRSIGs, proofs, DS) besides
    their plain ones, and the model of the program answers DO=1 and DO=0
    queries from them with the core's bytes, for every name and type."""
    image, table = signed_tables[form]
    do_entries = [e for e in table.values() if e.dnssec]
    assert do_entries and not any(e.also_do for e in do_entries)
    rrsig = dns.rdatatype.RRSIG.to_bytes(2, "big")
    assert any(rrsig in e.sections for e in do_entries if not e.to_worker)
    questions = _questions(table) + [
        ("www.signed.test.", "A"),
        ("secure.signed.test.", "A"),
        ("insecure.signed.test.", "A"),
        ("ent.signed.test.", "A"),
    ]
    sent = _compare(image, table, questions)
    answered_do = sum(
        program_answer(table, _query_wire(q, t, True, 1232, False, True)) is not None
        for q, t in questions
    )
    assert sent > 500 and answered_do > 100, (sent, answered_do)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"<{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_answer_too_long_for_udp_stays_with_the_worker(tmp_path):
    """An RRset too long for any UDP answer differs from the name's NODATA
    but cannot be held: an entry sends that type to the worker, and the
    program does not fall back to the NODATA (regression: it would have)."""
    zone = tmp_path / "big.test.zone"
    txt = " ".join(f'"{"x" * 200}"' for _ in range(8))
    zone.write_text(
        "@ 3600 SOA ns hostmaster 1 7200 3600 1209600 300\n@ 3600 NS ns\n"
        f"ns 3600 A 198.18.0.1\nbig 3600 TXT {txt}\n"
    )
    with ImageBuilder() as builder:
        builder.load_zonefile(builder.add_zone(dns.name.from_text("big.test.")), zone)
        image = builder.finish()
    _, table = _table(image)
    name = dns.name.from_text("big.big.test.").to_wire()
    assert table[(name, dns.rdatatype.TXT, 1, False)].to_worker
    wire = dns.message.make_query("big.big.test.", "TXT", use_edns=0).to_wire()
    assert program_answer(table, wire) is None
    assert program_answer(table, dns.message.make_query("big.big.test.", "A").to_wire())


# ---- in XDP mode (root) --------------------------------------------------------

TIMEOUT = 2.0
# How much longer than its query an answer can always be made in place: a
# frame keeps XDP_PACKET_HEADROOM (256 bytes) in front, less what the frame
# has been moved by; a copied veth frame has little room behind its data,
# and a longer answer goes to the worker.
ROOM_ANYWHERE = 192


def _in_xdp(server):
    program = server.stats()["xdp"]["program"]
    return program["answered_in_xdp"], program["answered_in_xdp_rcodes"]


def _send_all(topo, server, questions):
    """Every question in every shape to port 53 and to the socket-mode port,
    over IPv4 and IPv6: the differences, and how many were asked."""
    failures, asked = [], 0
    with topo.client.entered():
        for host in (topo.server_v4, topo.server_v6):
            for qname, qtype in questions:
                for edns, payload, mixed, dnssec in SHAPES:
                    wire = _query_wire(qname, qtype, edns, payload, mixed, dnssec)
                    ref = dnsdiff.exchange((host, SOCKET_PORT), wire, timeout=TIMEOUT)
                    got = dnsdiff.exchange((host, 53), wire, timeout=TIMEOUT)
                    asked += 1
                    if got != ref:
                        failures.append(
                            f"{host} {qname} {qtype} edns={edns} "
                            f"payload={payload} mixed={mixed} do={dnssec}:\n  xdp    "
                            f"{got.hex() if got else None}\n  socket "
                            f"{ref.hex() if ref else None}"
                        )
    return failures, asked


@pytest.mark.xdp
def test_xdp_answers_are_the_workers_bytes(xdp_topology, xdp_serve):
    """Every row of the differential suite, in every shape, over IPv4 and
    IPv6: the same bytes from port 53 (the program's table or a worker) as
    from the socket-mode workers; the client's kernel took every answer, so
    the program's UDP checksums were right; and the program answered the
    ones its table holds, by RCODE."""
    server = xdp_serve(*listen_args(xdp_topology))
    before, _ = _in_xdp(server)
    questions = [(c.qname, c.qtype) for c in CASES]
    failures, asked = _send_all(xdp_topology, server, questions)
    assert not failures, "\n".join(failures[:20])
    _, table = _table(_image())
    held = small = 0
    for qname, qtype in questions:
        for edns, payload, mixed, dnssec in SHAPES:
            wire = _query_wire(qname, qtype, edns, payload, mixed, dnssec)
            answer = program_answer(table, wire)
            held += answer is not None
            small += answer is not None and len(answer) - len(wire) <= ROOM_ANYWHERE
    after, rcodes = _in_xdp(server)
    # What the model says the program answers, it answered (twice: IPv4,
    # IPv6), but for long answers a veth frame may have no room for.
    assert 2 * small <= after - before <= 2 * held, (after - before, small, held, asked)
    assert rcodes.get("NOERROR", 0) > 0


@pytest.mark.xdp
def test_xdp_answers_off(xdp_topology, xdp_serve, tmp_path):
    """[xdp] answers = "off": the workers answer everything, the same bytes."""
    conf = tmp_path / "off.toml"
    conf.write_text('[xdp]\nanswers = "off"\n')
    server = xdp_serve("--config", conf, *listen_args(xdp_topology))
    questions = [(c.qname, c.qtype) for c in CASES[:40]]
    failures, asked = _send_all(xdp_topology, server, questions)
    assert not failures, "\n".join(failures[:20])
    stats = server.stats()["xdp"]
    assert stats["program"]["answered_in_xdp"] == 0
    assert stats["answers"]["state"] == "off"
    assert sum(q["answered"] for q in stats["queues"]) >= asked


@pytest.mark.xdp
def test_xdp_answers_stay_on_while_rrl_turns_on_and_off(
    xdp_topology, xdp_serve, tmp_path, xdpdns_cli
):
    """Rate limiting counts the program's answers in its own buckets: the
    table answers with RRL on, and reloads that turn RRL off and on again
    leave it answering."""
    conf = tmp_path / "rrl.toml"
    rrl = "[plugins.rrl]\nenabled = true\nrate = 1000\n"
    conf.write_text(rrl)
    server = xdp_serve("--config", conf)
    query = dns.message.make_query("www.example.com.", "A").to_wire()
    answered = 0

    def ask_five():
        nonlocal answered
        with xdp_topology.client.entered():
            for _ in range(5):
                assert dnsdiff.exchange((xdp_topology.server_v4, 53), query, timeout=TIMEOUT)
        stats = server.stats()["xdp"]
        assert stats["answers"]["state"] == "on", stats["answers"]
        answered += 5
        assert stats["program"]["answered_in_xdp"] == answered
        assert stats["program"]["rate_limited"] == 0

    ask_five()
    for text in ("", rrl):
        conf.write_text(text)
        assert xdpdns_cli("reload", "--control-socket", server.control_socket).returncode == 0
        ask_five()


def _serial(wire):
    msg = dns.message.from_wire(wire)
    return msg.answer[0][0].serial if msg.answer else None


@pytest.mark.xdp
def test_reload_under_load_never_goes_back(xdp_topology, xdp_serve, tmp_path, xdpdns_cli):
    """A client asking for the SOA as fast as it gets answers while the
    zone is reloaded from serial 1 to 2 (and to 3): once it has seen a
    serial it never sees an older one, and every query sent after `reload`
    returned gets the new one, from the program's table or a worker."""
    topo = xdp_topology
    zone = tmp_path / "example.test.zone"
    zone.write_text(SERIAL_ZONE.format(serial=1))
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(f'[[zone]]\nfile = "{zone}"\n')
    server = xdp_serve("--config", conf, diff_zones=False)
    query = dns.message.make_query("example.test.", "SOA").to_wire()
    seen = []  # (serial, sent after the last reload returned)
    reloaded = threading.Event()
    stop = threading.Event()

    def ask():
        with topo.client.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(TIMEOUT)
        sock.connect((topo.server_v4, 53))
        try:
            while not stop.is_set():
                after = reloaded.is_set()
                sock.send(query)
                try:
                    seen.append((_serial(sock.recv(4096)), after))
                except TimeoutError:
                    seen.append((None, after))
        finally:
            sock.close()

    thread = threading.Thread(target=ask)
    thread.start()
    try:
        for serial in (2, 3):
            time.sleep(0.3)
            reloaded.clear()
            zone.write_text(SERIAL_ZONE.format(serial=serial))
            result = xdpdns_cli("reload", "--control-socket", server.control_socket)
            assert result.returncode == 0, result.stderr
            reloaded.set()
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(10)
    serials = [s for s, _ in seen]
    assert None not in serials, "a query went unanswered"
    assert serials[0] == 1 and serials[-1] == 3
    for i in range(1, len(serials)):
        assert serials[i] >= serials[i - 1], f"serial {serials[i]} after {serials[i - 1]}"
    last_reload = max(i for i, (_, after) in enumerate(seen) if not after) + 1
    assert all(s == 3 for s, _ in seen[last_reload:])
    assert server.stats()["xdp"]["program"]["answered_in_xdp"] > len(seen) // 2


def test_type_answer_like_the_names_other_answer_is_kept(tmp_path):
    """DS at a child zone's apex is the parent's NODATA, the child's other
    types the child's: the same flags, counts and length, other bytes.
    Regression: the other-types answer was compared from a buffer the next
    question had overwritten, so the DS answer looked the same as it and
    was left out, and the program would have sent the child's NODATA."""
    soa = "@ 3600 SOA ns hostmaster {serial} 7200 3600 1209600 300\n@ 3600 NS ns\n"
    parent = tmp_path / "p.test.zone"
    parent.write_text(
        soa.format(serial=1) + "ns 3600 A 198.18.0.1\nc 3600 NS ns.c\nns.c 3600 A 198.18.0.2\n"
    )
    child = tmp_path / "c.p.test.zone"
    child.write_text(soa.format(serial=2) + "ns 3600 A 198.18.0.2\n")
    with ImageBuilder() as builder:
        for origin, path in (("p.test.", parent), ("c.p.test.", child)):
            builder.load_zonefile(builder.add_zone(dns.name.from_text(origin)), path)
        image = builder.finish()
    _, table = _table(image)
    for qtype in ("DS", "TXT", "SOA"):
        wire = dns.message.make_query("c.p.test.", qtype).to_wire()
        assert program_answer(table, wire) == image.answer(wire), qtype


# ---- frame by frame: the program's reply is the worker's reply ----------------------


def _flags(wire, flags):
    return wire[:2] + struct.pack("!H", flags) + wire[4:]


def _opt_version(wire, version):
    """A query whose OPT (its last 11 bytes) says EDNS version `version`."""
    return wire[:-5] + bytes([version]) + wire[-4:]


def _opt_flags(wire, high, low):
    """The query's OPT (its last 11 bytes) with these flag bytes."""
    return wire[:-4] + bytes([high, low]) + wire[-2:]


def _qdcount(wire, n):
    return wire[:4] + struct.pack("!H", n) + wire[6:]


def _dns_of(frame):
    """The UDP destination port and DNS ID of an Ethernet frame, or None."""
    pos, ethertype = 14, struct.unpack("!H", frame[12:14])[0]
    while ethertype in (0x8100, 0x88A8) and len(frame) >= pos + 4:
        ethertype = struct.unpack("!H", frame[pos + 2 : pos + 4])[0]
        pos += 4
    if ethertype == 0x0800 and len(frame) > pos and frame[pos + 9] == 17:
        pos += (frame[pos] & 0xF) * 4
    elif ethertype == 0x86DD and len(frame) > pos + 40 and frame[pos + 6] == 17:
        pos += 40
    else:
        return None
    if len(frame) < pos + 10:
        return None
    return struct.unpack("!H", frame[pos + 2 : pos + 4])[0], frame[pos + 8 : pos + 10]


def _frame_cases():
    """(case, frame builder, answered by the program): hand-made frames
    (tests/test_xdp_prog.py's Frames) whose reply frame, whole, must be the
    same from the program's table and from the worker."""
    from test_xdp_prog import _query

    ids = iter(range(1000, 2000))

    def q(name="www.example.com.", rdtype="A", edns=None, **kw):
        msg = dns.message.make_query(
            name, rdtype, use_edns=edns if edns is not None else False, **kw
        )
        msg.id = next(ids)
        return msg.to_wire()

    def v4(f, payload, **kw):
        return f.ether(0x0800, f.ipv4(payload, **kw))

    def v6(f, payload):
        return f.ether(0x86DD, f.ipv6(payload))

    def set_udp_check(frame, value):
        return frame[:40] + struct.pack("!H", value) + frame[42:]

    def ip_total(frame, extra):
        total = struct.unpack("!H", frame[16:18])[0] + extra
        header = frame[14:16] + struct.pack("!H", total) + frame[18:24] + b"\0\0" + frame[26:34]
        from test_xdp_prog import _checksum

        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return frame[:14] + header + frame[34:]

    with_nsid = dns.message.make_query(
        "www.example.com.", "A", use_edns=0, options=[dns.edns.GenericOption(3, b"")]
    )
    with_nsid.id = 999
    return [
        ("ipv4", lambda f: v4(f, q()), True),
        ("ipv6", lambda f: v6(f, q()), True),
        ("mixed case", lambda f: v4(f, q("WwW.eXaMpLe.CoM.")), True),
        ("OPT", lambda f: v4(f, q(edns=0)), True),
        ("OPT, ipv6, 4096", lambda f: v6(f, q(edns=0, payload=4096)), True),
        ("NODATA", lambda f: v4(f, q(rdtype="TXT")), True),
        ("MX with additional", lambda f: v4(f, q("example.com.", "MX")), True),
        ("802.1Q tag", lambda f: f.ether(0x0800, f.ipv4(q()), vlans=(0x8100,)), True),
        ("no UDP checksum", lambda f: set_udp_check(v4(f, q()), 0), True),
        ("no RD", lambda f: v4(f, _flags(q(), 0x0000)), True),
        ("CD", lambda f: v4(f, _flags(q(), 0x0110)), True),
        ("NXDOMAIN", lambda f: v4(f, q("nothere.example.com.")), False),
        ("ANY", lambda f: v4(f, q(rdtype="ANY")), False),
        # An unsigned zone: the plain answer, with DO in its OPT (RFC 3225 3)
        ("DO", lambda f: v4(f, q(edns=0, want_dnssec=True)), True),
        ("DO, ipv6", lambda f: v6(f, q(edns=0, want_dnssec=True, payload=4096)), True),
        # Flag bits no one defines are summed as they came, and not echoed.
        (
            "OPT flags beyond DO",
            lambda f: v4(f, _opt_flags(q(edns=0, want_dnssec=True), 0x80, 0x41)),
            True,
        ),
        ("NSID option", lambda f: v4(f, with_nsid.to_wire()), False),
        # dnspython takes use_edns=1 for True: the version byte by hand
        ("OPT version 1", lambda f: v4(f, _opt_version(q(edns=0), 1)), False),
        ("class CH", lambda f: v4(f, q("version.bind.", "TXT", rdclass="CH")), False),
        ("IPv4 options", lambda f: v4(f, q(), options=b"\x01\x01\x01\x00"), False),
        ("bad UDP checksum", lambda f: set_udp_check(v4(f, q()), 0x1234), False),
        ("IP length past the frame", lambda f: ip_total(v4(f, q()), 8), False),
        ("trailing byte", lambda f: v4(f, q() + b"\0"), False),
        ("qdcount 2", lambda f: v4(f, _qdcount(q(), 2)), False),
        ("refused outside", lambda f: v4(f, _query()), False),
    ]


def _capture(topo):
    """A raw socket on the client's end that sees what arrives there."""
    with topo.client.entered():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((topo.client_if, 0))
    s.settimeout(0.5)
    return s


def _reply(sock, sent, timeout=1.0):
    """The frame that answers `sent` (to its source port, with its DNS ID),
    or None when none comes within timeout."""
    deadline = time.monotonic() + timeout
    sent_dns = _dns_of(sent)
    want = (40053, sent_dns[1]) if sent_dns else None
    while time.monotonic() < deadline:
        try:
            frame, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if addr[2] != socket.PACKET_OUTGOING and _dns_of(frame) == want:
            return frame
    return None


def _replies(topo, engine, frames, cases):
    """Each case's reply frame and which path answered it; cases are
    (case, frame, answered in XDP)."""
    out = {}
    sock = _capture(topo)
    try:
        for case, frame, in_xdp in cases:
            before = engine.xdp_prog_stats()
            frames.send(frame)
            reply = _reply(sock, frame, 1.0 if in_xdp else 0.3)
            time.sleep(0.05)
            after = engine.xdp_prog_stats()
            out[case] = (
                reply,
                after.answered_in_xdp - before.answered_in_xdp,
                after.redirected - before.redirected,
            )
    finally:
        sock.close()
    return out


@pytest.mark.xdp
def test_reply_frames_are_the_workers(xdp_topology):
    """Each frame's reply, whole (Ethernet, IP, UDP, DNS), from the program's
    table is the reply the AF_XDP worker sends with the table off; the
    program answered exactly the cases it should, and the rest reached the
    worker, which answered or dropped them as before."""
    from test_xdp_prog import Frames, _mac, _xdp_engine

    topo = xdp_topology
    frames = Frames(topo, _mac(topo.server, topo.server_if), _mac(topo.client, topo.client_if))
    cases = [(case, build(frames), in_xdp) for case, build, in_xdp in _frame_cases()]
    with _xdp_engine(topo) as engine:
        on = _replies(topo, engine, frames, cases)
        assert engine.xdp_answers_info().state == "on"
    with _xdp_engine(topo, answers="off") as engine:
        off = _replies(topo, engine, frames, cases)
    failures = []
    for case, _, in_xdp in cases:
        (reply, answered, redirected), (ref, ref_answered, _) = on[case], off[case]
        if ref_answered:
            failures.append(f"{case}: the program answered with the table off")
        if in_xdp and (answered, redirected) != (1, 0):
            failures.append(f"{case}: answered_in_xdp {answered}, redirected {redirected}")
        if not in_xdp and (answered, redirected) != (0, 1):
            failures.append(
                f"{case}: not the worker's: answered_in_xdp {answered}, redirected {redirected}"
            )
        if reply != ref:
            failures.append(
                f"{case}:\n  table  {reply.hex() if reply else None}\n"
                f"  worker {ref.hex() if ref else None}"
            )
        elif in_xdp and reply is None:
            failures.append(f"{case}: no reply")
    assert not failures, "\n".join(failures)


@pytest.mark.xdp
def test_program_without_answer_maps_says_so_and_workers_answer(xdp_topology, xdp_serve, tmp_path):
    """An [xdp] program built without the answer table's maps (here the load
    generator's build of the same source) starts with the table "failed"
    and a message naming the maps and the fix; nothing is answered from
    it, and the server keeps answering."""
    from xdpdns.bpfobj import GENERATOR_OBJECT_NAME, bpf_object_path

    conf = tmp_path / "old-program.toml"
    conf.write_text(f'[xdp]\nprogram = "{bpf_object_path(GENERATOR_OBJECT_NAME)}"\n')
    server = xdp_serve("--config", conf)
    assert "xdp answers=failed" in server.output()
    stats = server.stats()["xdp"]
    assert stats["answers"]["state"] == "failed"
    assert "no answer table maps" in stats["answers"]["message"]
    assert '[xdp] answers = "off"' in stats["answers"]["message"]
    query = dns.message.make_query("www.example.com.", "A").to_wire()
    with xdp_topology.client.entered():
        reply = dnsdiff.exchange((xdp_topology.server_v4, 53), query, timeout=TIMEOUT)
    assert reply is not None and dns.message.from_wire(reply).answer
    assert server.stats()["xdp"]["program"]["answered_in_xdp"] == 0


def _two_zone_image(tmp_path, parent_text, child_text=None):
    soa = "@ 3600 SOA ns hostmaster 1 7200 3600 1209600 300\n@ 3600 NS ns\n"
    with ImageBuilder() as builder:
        zones = [("p.test.", soa + parent_text)]
        if child_text is not None:
            zones.append(("c.p.test.", soa + child_text))
        for origin, text in zones:
            path = tmp_path / f"{origin}zone"
            path.write_text(text)
            builder.load_zonefile(builder.add_zone(dns.name.from_text(origin)), path)
        return builder.finish()


def test_key_set_collision_c3_cname_c7_a(tmp_path):
    """Regression: the type and class went into xd_hash's seed, which it
    mixes linearly with the name's first word, so (c3, CNAME) and (c7, A)
    hashed alike and c7's A answer was left out of the table."""
    image = _two_zone_image(
        tmp_path,
        "ns 3600 A 198.18.0.1\nwww 3600 A 198.18.0.2\n"
        + "".join(f"c{i} 3600 CNAME c{i + 1}\n" for i in range(1, 8))
        + "c8 3600 CNAME www\n",
    )
    _, table = _table(image)
    assert (dns.name.from_text("c7.p.test.").to_wire(), dns.rdatatype.A, 1, False) in table
    assert (dns.name.from_text("c3.p.test.").to_wire(), dns.rdatatype.CNAME, 1, False) in table
    wire = dns.message.make_query("c7.p.test.", "A").to_wire()
    assert program_answer(table, wire) == image.answer(wire)


def test_child_apex_types_not_lost_to_the_cut(tmp_path):
    """Regression: a name that is a cut in the parent and the child's apex
    was compiled once, from the cut's types (NS), so the child's SOA was
    answered from the other-types entry (NODATA)."""
    image = _two_zone_image(
        tmp_path,
        "ns 3600 A 198.18.0.1\nc 3600 NS ns.c\nns.c 3600 A 198.18.0.2\n",
        'ns 3600 A 198.18.0.2\n@ 3600 TXT "child"\n',
    )
    _, table = _table(image)
    for qtype in ("SOA", "TXT", "NS", "A"):
        wire = dns.message.make_query("c.p.test.", qtype).to_wire()
        assert program_answer(table, wire) == image.answer(wire), qtype


def test_zone_with_transfer_acl_alone_stays_in_the_table():
    """Regression: a zone with allow_transfer (as most primaries have) was
    left out of the answer table whole, as if its queries depended on the
    client; only a query ACL makes them so."""
    import ipaddress

    from xdpdns.hookspecs import ZoneAcl, ZoneFile
    from xdpdns.image import compile_sources

    path = ZONE_DIR / "example.com.zone"
    origin = dns.name.from_text("example.com.")
    local = (ipaddress.ip_network("127.0.0.0/8"),)
    for acl, held in (
        (ZoneAcl(allow_transfer=local), True),
        (ZoneAcl(deny_transfer=local), True),
        (ZoneAcl(allow_query=local), False),
        (ZoneAcl(deny_query=local), False),
    ):
        image = compile_sources([ZoneFile(origin, path, acl=acl)]).image
        _, table = _table(image)
        wire = dns.message.make_query("www.example.com.", "A").to_wire()
        assert (program_answer(table, wire) is not None) == held, acl
        if held:
            assert program_answer(table, wire) == image.answer(wire)
