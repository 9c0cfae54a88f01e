"""dnstap output ([dnstap], native/io/dnstap.c): what a collector that other
servers are read with (fstrm_capture, from fstrm-bin) receives, decoded
here field by field against dnstap.proto and read back by kdig -G, which
decodes dnstap on its own.

Socket mode: every UDP and TCP query and its response, with the client's
and the server's addresses and ports; exact sampling; a collector that
comes late or goes away costs nothing but events.  XDP mode (root): the
program picks the queries, so a query its table would answer is logged
too, and every query is either logged or answered in the program.
"""

import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import pytest

import dnsdiff
from conftest import stop_process
from test_metrics import _metrics_url, _scrape, _total
from xdpdns.control import format_stats
from xdpdns.dnstap import DnstapWatch
from xdpdns.engine import DnstapStats

# Also run against the AddressSanitizer build (bootstrap): the rings and
# the writer thread copy and encode what the workers hand over.
pytestmark = pytest.mark.asan

TIMEOUT = 2.0
AUTH_QUERY, AUTH_RESPONSE = 1, 2
INET, INET6 = 1, 2
UDP, TCP = 1, 2
CONTENT_TYPE = b"protobuf:dnstap.Dnstap"


# ---- reading what the collector wrote ------------------------------------------


def _varint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def protobuf_fields(data):
    """{field number: [values]} of one protobuf message: varints as ints,
    fixed32 as ints, length-delimited as bytes."""
    fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 5:
            value = struct.unpack_from("<I", data, pos)[0]
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        else:
            raise AssertionError(f"wire type {wire} in field {number}")
        fields.setdefault(number, []).append(value)
    assert pos == len(data), "a field ran past the message"
    return fields


@dataclass
class TapMessage:
    identity: bytes
    version: bytes
    type: int
    family: int
    protocol: int
    query_address: bytes
    query_port: int
    response_address: bytes | None
    response_port: int | None
    query_time: float
    query_message: bytes | None
    response_message: bytes | None


def _one(fields, number, default=None):
    values = fields.get(number)
    if values is None:
        return default
    assert len(values) == 1, f"field {number} repeated"
    return values[0]


def decode_dnstap(frame):
    outer = protobuf_fields(frame)
    assert _one(outer, 15) == 1, "Dnstap.type is MESSAGE"
    m = protobuf_fields(_one(outer, 14))
    return TapMessage(
        identity=_one(outer, 1, b""),
        version=_one(outer, 2, b""),
        type=_one(m, 1),
        family=_one(m, 2),
        protocol=_one(m, 3),
        query_address=_one(m, 4),
        response_address=_one(m, 5),
        query_port=_one(m, 6),
        response_port=_one(m, 7),
        query_time=_one(m, 8) + _one(m, 9) / 1e9,
        query_message=_one(m, 10),
        response_message=_one(m, 14),
    )


def read_frame_stream(path):
    """The data frames of a Frame Streams file: START (with our content
    type), data frames, STOP."""
    data = path.read_bytes()
    frames, pos, controls = [], 0, []
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if length == 0:
            (clen,) = struct.unpack_from(">I", data, pos)
            controls.append(data[pos + 4 : pos + 4 + clen])
            pos += 4 + clen
            continue
        frames.append(data[pos : pos + length])
        pos += length
    assert controls and struct.unpack_from(">I", controls[0])[0] == 2, "starts with START"
    assert CONTENT_TYPE in controls[0]
    return frames


# ---- the collector ----------------------------------------------------------------


def _plain_env():
    """The environment for the other projects' tools: without the
    AddressSanitizer runtime that bootstrap's ASan run preloads (kdig -G
    hangs under it)."""
    return {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}


class Collector:
    """fstrm_capture listening on a Unix socket, writing a file; read() stops
    it (SIGINT: it closes the file whole) and decodes what it got."""

    def __init__(self, directory: Path, name="tap"):
        self.socket = directory / f"{name}.sock"
        self.file = directory / f"{name}.fstrm"
        self.log = directory / f"{name}.log"
        self.proc = None

    def start(self):
        self.socket.unlink(missing_ok=True)
        self.file.unlink(missing_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    "fstrm_capture",
                    "-t",
                    CONTENT_TYPE.decode(),
                    "-u",
                    str(self.socket),
                    "-w",
                    str(self.file),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_plain_env(),
            )
        deadline = time.monotonic() + 5
        while not self.socket.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "fstrm_capture made no socket"
            time.sleep(0.02)
        return self

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT)
            self.proc = None

    def read(self):
        self.stop()
        return [decode_dnstap(f) for f in read_frame_stream(self.file)]


@pytest.fixture
def collector():
    if shutil.which("fstrm_capture") is None:
        pytest.fail("fstrm_capture not found: bootstrap installs fstrm-bin")
    # A Unix socket path holds at most 107 bytes: tmp_path may be longer.
    directory = Path(tempfile.mkdtemp(prefix="xdpdns-tap-", dir="/tmp"))
    made = []

    def make(name="tap"):
        made.append(Collector(directory, name))
        return made[-1]

    yield make
    for c in made:
        c.stop()
    shutil.rmtree(directory, ignore_errors=True)


def _config(tmp_path, tap, extra="", workers=1):
    conf = tmp_path / "dnstap.toml"
    conf.write_text(
        f'[server]\nudp_workers = {workers}\n[dnstap]\nsocket = "{tap.socket}"\n{extra}'
    )
    return conf


def _wait_for(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _udp_exchange(address, wire):
    """(response, client port) of one UDP exchange."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(wire, address)
        return sock.recv(65535), sock.getsockname()[1]


def _tcp_exchange(address, wire):
    """(response, client port) of one query over TCP."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        reader = sock.makefile("rb")
        size = int.from_bytes(reader.read(2), "big")
        return reader.read(size), sock.getsockname()[1]


# ---- socket mode --------------------------------------------------------------------


def test_dnstap_logs_udp_and_tcp_queries_with_their_responses(xdpdns_serve, tmp_path, collector):
    """Every query and response, byte for byte, as AUTH_QUERY and
    AUTH_RESPONSE with the right addresses, ports, protocol, identity and
    version; kdig reads the same file."""
    tap = collector().start()
    conf = _config(tmp_path, tap, 'identity = "ns-test"\nversion = "v-test"\n')
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    address = server.addresses[0]
    sent = []  # (protocol, query, response, client port)
    started = time.time()
    for i, name in enumerate(("www.example.com.", "example.com.", "nothing.example.com.")):
        wire = dns.message.make_query(name, "A", id=1000 + i).to_wire()
        response, port = _udp_exchange(address, wire)
        sent.append((UDP, wire, response, port))
    wire = dns.message.make_query("example.com.", "SOA", id=2000).to_wire()
    response, port = _tcp_exchange(address, wire)
    sent.append((TCP, wire, response, port))
    assert server.stop() == 0  # the writer's last drain, then STOP
    messages = tap.read()

    queries = [m for m in messages if m.type == AUTH_QUERY]
    responses = [m for m in messages if m.type == AUTH_RESPONSE]
    assert len(queries) == len(responses) == len(sent), messages
    by_query = {m.query_message: m for m in queries}
    by_response = {m.response_message: m for m in responses}
    for protocol, wire, response, port in sent:
        for m in (by_query[wire], by_response[response]):
            assert (m.identity, m.version) == (b"ns-test", b"v-test")
            assert (m.family, m.protocol) == (INET, protocol)
            assert m.query_address == socket.inet_aton("127.0.0.1")
            assert m.query_port == port
            assert m.response_address == socket.inet_aton("127.0.0.1")
            assert m.response_port == address[1]
            assert started - 1 <= m.query_time <= time.time()

    shown = subprocess.run(
        ["kdig", "-G", str(tap.file)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=_plain_env(),
    )
    assert shown.returncode == 0, shown.stderr
    for _protocol, wire, _response, _port in sent:
        assert f"id: {dns.message.from_wire(wire).id}" in shown.stdout


def test_dnstap_samples_one_query_in_n(xdpdns_serve, tmp_path, collector):
    """sample = 4 with one worker: exactly every fourth query; only
    responses with log_queries off."""
    tap = collector().start()
    conf = _config(
        tmp_path, tap, 'sample = 4\nlog_queries = false\n[metrics]\nlisten = "127.0.0.1:0"\n'
    )
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    wires = [dns.message.make_query("www.example.com.", "A", id=i).to_wire() for i in range(1, 21)]
    for wire in wires:
        assert _udp_exchange(server.addresses[0], wire)[0]
    samples = _scrape(_metrics_url(server))
    assert _total(samples, "xdpdns_dnstap_events_total") == 5
    assert _total(samples, "xdpdns_dnstap_connected") == 1
    assert server.stop() == 0
    messages = tap.read()
    assert [m.type for m in messages] == [AUTH_RESPONSE] * 5
    assert sorted(dns.message.from_wire(m.response_message).id for m in messages) == [
        4,
        8,
        12,
        16,
        20,
    ]


def test_dnstap_collector_late_then_gone(xdpdns_serve, tmp_path, collector):
    """No collector at start: the server answers anyway and says so; one
    that comes later is connected to within seconds; one that goes away
    costs only events, and the next one is connected to again."""
    tap = collector("late")
    conf = _config(tmp_path, tap)
    server = xdpdns_serve("--config", conf, "--listen", "127.0.0.1:0")
    address = server.addresses[0]
    query = dns.message.make_query("www.example.com.", "A").to_wire()
    _wait_for(lambda: "dnstap cannot connect to" in server.output(), "no warning")
    assert _udp_exchange(address, query)[0]  # lost: nobody listens

    tap.start()
    _wait_for(lambda: "dnstap connected to" in server.output(), "never connected")
    first = dns.message.make_query("example.com.", "SOA", id=7).to_wire()
    _udp_exchange(address, first)
    time.sleep(0.5)  # drained every 10 ms
    assert first in [m.query_message for m in tap.read()]  # and the collector goes

    for _ in range(3):
        assert _udp_exchange(address, query)[0]  # still answering
    again = collector("again")
    again.socket = tap.socket  # the same path, a new listener
    again.start()
    _wait_for(lambda: server.output().count("dnstap connected to") == 2, "no reconnect")
    second = dns.message.make_query("example.com.", "NS", id=8).to_wire()
    _udp_exchange(address, second)
    assert server.stop() == 0
    assert second in [m.query_message for m in again.read()]
    stopped = [line for line in server.output().splitlines() if " stopped " in line][0]
    assert "dnstap_lost_unconnected=0" not in stopped, stopped


def test_dnstap_watch_tells_each_change_once():
    def stats(connects=0, error="", lost=0):
        return DnstapStats(
            events=0,
            written=0,
            lost_full=0,
            lost_unconnected=lost,
            connects=connects,
            connected=connects > 0 and not error,
            error=error,
        )

    watch = DnstapWatch("/run/tap.sock")
    refused = "cannot connect to /run/tap.sock: Connection refused"
    assert [level for level, _ in watch.lines(stats(error=refused))] == [logging.WARNING]
    assert watch.lines(stats(error=refused, lost=5)) == []
    (line,) = watch.lines(stats(connects=1, lost=5))
    assert line == (logging.INFO, "dnstap connected to /run/tap.sock (5 events lost before)")
    assert watch.lines(stats(connects=1, lost=5)) == []


def test_dnstap_in_xdpdns_stats():
    shown = format_stats(
        {
            "udp": {},
            "udp_workers": [],
            "tcp": {},
            "dnstap": {
                "events": 9,
                "written": 7,
                "lost_full": 1,
                "lost_unconnected": 1,
                "connects": 2,
                "connected": False,
                "error": "cannot connect to /run/t.sock: No such file",
            },
        }
    )
    assert "dnstap: not connected: cannot connect to /run/t.sock" in shown
    assert "lost_unconnected" in shown


# ---- XDP mode -------------------------------------------------------------------------


def _xdp_program(server):
    return server.stats()["xdp"]["program"]


@pytest.mark.xdp
@pytest.mark.parametrize("sample", [1, 3])
def test_dnstap_in_xdp_mode_logs_what_the_program_picks(
    xdp_topology, xdp_serve, tmp_path, collector, sample
):
    """The program picks one DNS query in `sample` for its worker, even one
    its table would answer: with 1, every query is logged and none answered
    in the program; with 3, each query is either logged or answered in the
    program, and both happen."""
    topo = xdp_topology
    tap = collector().start()
    conf = tmp_path / "xdp-dnstap.toml"
    conf.write_text(f'[dnstap]\nsocket = "{tap.socket}"\nsample = {sample}\n')
    server = xdp_serve("--config", conf)
    _wait_for(lambda: "dnstap connected to" in server.output(), "never connected")
    before = _xdp_program(server)["answered_in_xdp"]
    count = 30
    wires = [
        dns.message.make_query("www.example.com.", "A", id=i).to_wire() for i in range(1, count + 1)
    ]
    with topo.client.entered():
        for wire in wires:
            assert dnsdiff.exchange((topo.server_v4, 53), wire, timeout=TIMEOUT)
    in_xdp = _xdp_program(server)["answered_in_xdp"] - before
    assert server.stop() == 0
    messages = tap.read()
    logged = {m.query_message for m in messages if m.type == AUTH_QUERY}
    assert logged <= set(wires)
    assert len(logged) + in_xdp == count, (len(logged), in_xdp)
    if sample == 1:
        assert in_xdp == 0
    else:
        assert logged and in_xdp, (len(logged), in_xdp)
    for m in messages:
        assert m.query_address == socket.inet_aton(topo.client_v4)
        assert m.response_address == socket.inet_aton(topo.server_v4)
        assert m.response_port == 53
