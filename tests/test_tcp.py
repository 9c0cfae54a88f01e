"""native/io/tcp.c: DNS over TCP per RFC 7766 and RFC 7828, and its
limits, against a running `xdpdns serve`."""

import json
import os
import resource
import signal
import socket
import struct
import threading
import time

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.zone
import pytest

from conftest import run_xdpdns_cli
from xdpdns.config import default_zone_path

IDLE_TIMEOUT = 0.5
MAX_CONNECTIONS = 2


@pytest.fixture
def server(xdpdns_serve, tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\nudp_workers = 1\n'
        f"tcp_idle_timeout = {IDLE_TIMEOUT}\ntcp_max_connections = {MAX_CONNECTIONS}\n"
    )
    # A config file without [[zone]] serves none: give the example zone.
    serve = xdpdns_serve("--config", conf, "--zone", default_zone_path())
    return serve.addresses[0]


def framed(msg):
    wire = msg.to_wire()
    return struct.pack("!H", len(wire)) + wire


def read_message(sock):
    prefix = recv_exactly(sock, 2)
    if prefix is None:
        return None
    (size,) = struct.unpack("!H", prefix)
    return dns.message.from_wire(recv_exactly(sock, size))


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except ConnectionResetError:  # closed with our query unread
            return None
        if not chunk:
            return None
        data += chunk
    return data


def connect(address, source="127.0.0.1", rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    if rcvbuf:  # before connect: the window the server sees
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.connect(address)
    return sock


def closed(sock, within):
    """Whether the server closes sock within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class Served:
    """A server of serve_with: its process, and its TCP counters."""

    def __init__(self, serve, control):
        self.serve = serve
        self.proc = serve.proc
        self.output = serve.output
        self.control = control

    def tcp_stats(self):
        result = run_xdpdns_cli("stats", "--control-socket", self.control, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["tcp"]


def serve_with(xdpdns_serve, tmp_path, server_keys, extra="", zone=None):
    conf = tmp_path / "xdpdns.toml"
    keys = "".join(f"{k} = {v}\n" for k, v in server_keys.items())
    zone = zone or default_zone_path()
    conf.write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\nudp_workers = 1\n'
        + keys
        + extra
        + f'[[zone]]\nfile = "{zone}"\nallow_transfer = ["127.0.0.0/8"]\n'
    )
    control = tmp_path / "ctl.sock"
    serve = xdpdns_serve("--config", conf, "--control-socket", control)
    return Served(serve, control), serve.addresses[0]


def query(name, rdtype="A", qid=None):
    q = dns.message.make_query(name, rdtype)
    if qid is not None:
        q.id = qid
    return q


def test_pipelined_queries_on_one_connection(server):
    names = ["www.example.com.", "mail.example.com.", "nothere.example.com.", "x.apps.example.com."]
    with connect(server) as sock:
        sock.sendall(b"".join(framed(query(n, qid=i + 1)) for i, n in enumerate(names)))
        responses = [read_message(sock) for _ in names]
    assert [r.id for r in responses] == [1, 2, 3, 4]
    assert [r.question[0].name.to_text() for r in responses] == names
    assert responses[2].rcode() == dns.rcode.NXDOMAIN
    assert all(r.flags & dns.flags.AA for r in responses)


def test_message_split_across_segments(server):
    data = framed(query("www.example.com.", qid=7))
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(0.001)
        response = read_message(sock)
    assert response.id == 7 and response.answer


def test_tcp_answers_are_never_truncated(server):
    with connect(server) as sock:
        sock.sendall(framed(query("example.com.", "MX")))
        response = read_message(sock)
    assert not response.flags & dns.flags.TC
    assert response.answer


def test_a_response_gets_no_answer_but_the_connection_stays(server):
    not_a_query = dns.message.make_response(query("www.example.com.", qid=5))
    with connect(server) as sock:
        sock.sendall(framed(not_a_query) + framed(query("www.example.com.", qid=6)))
        assert read_message(sock).id == 6


def test_idle_connection_is_closed(server):
    with connect(server) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert IDLE_TIMEOUT * 0.8 <= time.monotonic() - started < IDLE_TIMEOUT + 3


def test_half_sent_query_is_closed_after_the_idle_timeout(server):
    with connect(server) as sock:
        sock.sendall(b"\x00\x40abc")
        assert sock.recv(1) == b""


def test_connection_cap(server):
    held = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:  # make sure the server has accepted them
            sock.sendall(framed(query("www.example.com.")))
            assert read_message(sock) is not None
        with connect(server) as extra:
            extra.sendall(framed(query("www.example.com.")))
            assert read_message(extra) is None  # closed at once
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    with connect(server) as again:
        again.sendall(framed(query("www.example.com.")))
        assert read_message(again) is not None


def test_a_deferred_answer_comes_after_later_ones(xdpdns_serve, tmp_path):
    """RFC 7766 7: the whoami plugin's name goes to its hook thread, and
    the query sent after it, answered on the fast path, comes back first."""
    _, address = serve_with(
        xdpdns_serve, tmp_path, {}, '[plugins.whoami]\nname = "whoami.example.com."\n'
    )
    with connect(address) as sock:
        sock.sendall(
            framed(query("whoami.example.com.", qid=1)) + framed(query("www.example.com.", qid=2))
        )
        first, second = read_message(sock), read_message(sock)
    assert (first.id, second.id) == (2, 1)
    assert second.answer[0].to_text().endswith("127.0.0.1")


def test_one_client_cannot_hold_every_connection(xdpdns_serve, tmp_path):
    """Slowloris: a client that opens connections and sends nothing holds
    at most tcp_max_client_connections; another client is answered."""
    server, address = serve_with(
        xdpdns_serve,
        tmp_path,
        {"tcp_max_connections": 20, "tcp_max_client_connections": 3, "tcp_idle_timeout": 30},
    )
    held = [connect(address, "127.0.0.2") for _ in range(3)]
    try:
        time.sleep(0.2)  # accepted by now
        with connect(address, "127.0.0.2") as extra:
            assert closed(extra, 2)
        with connect(address, "127.0.0.3") as other:
            other.sendall(framed(query("www.example.com.", qid=9)))
            assert read_message(other).id == 9
        stats = server.tcp_stats()
        assert stats["client_rejected"] == 1 and stats["open"] == 3
    finally:
        for sock in held:
            sock.close()


def test_a_query_sent_too_slowly_is_cut_by_the_io_timeout(xdpdns_serve, tmp_path):
    server, address = serve_with(
        xdpdns_serve, tmp_path, {"tcp_io_timeout": 0.3, "tcp_idle_timeout": 30}
    )
    with connect(address) as sock:
        sock.sendall(b"\x00\x20ab")  # 4 of the 34 bytes it announces
        started = time.monotonic()
        assert closed(sock, 5)
        assert time.monotonic() - started < 3  # well before the idle timeout
    assert server.tcp_stats()["io_timeouts"] == 1


def test_the_last_query_a_connection_may_ask_is_answered_then_closed(xdpdns_serve, tmp_path):
    server, address = serve_with(xdpdns_serve, tmp_path, {"tcp_max_queries": 2})
    with connect(address) as sock:
        sock.sendall(b"".join(framed(query("www.example.com.", qid=i)) for i in (1, 2, 3)))
        assert [read_message(sock).id for _ in range(2)] == [1, 2]
        assert read_message(sock) is None


def test_a_connection_lives_no_longer_than_its_lifetime(xdpdns_serve, tmp_path):
    server, address = serve_with(
        xdpdns_serve, tmp_path, {"tcp_lifetime": 0.5, "tcp_idle_timeout": 30}
    )
    with connect(address) as sock:
        for i in range(3):  # busy, not idle
            sock.sendall(framed(query("www.example.com.", qid=i)))
            assert read_message(sock).id == i
            time.sleep(0.1)
        assert closed(sock, 3)
    assert server.tcp_stats()["limit_closed"] == 1


KEEPALIVE = 11  # RFC 7828's option code


def _keepalive(response):
    return [o for o in response.options if o.otype == KEEPALIVE]


def test_keepalive_tells_the_idle_timeout_to_a_client_that_asks(xdpdns_serve, tmp_path):
    """RFC 7828: over TCP, to a query with the option, the idle timeout in
    units of 100 ms; never over UDP, nor unasked."""
    _, address = serve_with(xdpdns_serve, tmp_path, {"tcp_idle_timeout": 7.5})
    asking = dns.message.make_query(
        "www.example.com.", "A", use_edns=0, options=[dns.edns.GenericOption(KEEPALIVE, b"")]
    )
    got = dns.query.tcp(asking, address[0], port=address[1], timeout=5)
    assert [o.to_wire() for o in _keepalive(got)] == [struct.pack("!H", 75)]
    assert not _keepalive(dns.query.udp(asking, address[0], port=address[1], timeout=5))
    unasked = dns.message.make_query("www.example.com.", "A", use_edns=0)
    assert not _keepalive(dns.query.tcp(unasked, address[0], port=address[1], timeout=5))


def _big_zone(tmp_path, records):
    path = tmp_path / "big.test.zone"
    lines = [
        "$ORIGIN big.test.",
        "$TTL 300",
        "@ SOA ns1 hostmaster 1 3600 600 86400 300",
        "@ NS ns1",
        "ns1 A 198.18.0.1",
    ]
    lines += [f"h{i} A 198.18.{i >> 8 & 255}.{i & 255}" for i in range(records)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _axfr_query(qid):
    q = dns.message.make_query("big.test.", "AXFR")
    q.id = qid
    return q


def _transfer_records(sock, expect):
    """Reads messages until `expect` records came (ANCOUNTs summed, no
    parsing: a large zone would take seconds); returns how many came."""
    total = 0
    while total < expect:
        prefix = recv_exactly(sock, 2)
        assert prefix is not None, f"the transfer was cut short after {total} records"
        message = recv_exactly(sock, struct.unpack("!H", prefix)[0])
        total += struct.unpack("!H", message[6:8])[0]
    return total


# About 5.7 MB: more than the kernel's send buffer grows to (tcp_wmem's
# 4 MiB), so a client that does not read stalls the transfer.
STALLING_RECORDS = 250000


def test_a_slow_transfer_reader_holds_no_one_else(xdpdns_serve, tmp_path):
    """A secondary that reads a large transfer slowly gets all of it, while
    queries on other connections are answered at once meanwhile: the
    transfer is made only as fast as it is read."""
    server, address = serve_with(
        xdpdns_serve,
        tmp_path,
        {"tcp_io_timeout": 5, "tcp_workers": 1},
        zone=_big_zone(tmp_path, STALLING_RECORDS),
    )
    with connect(address, rcvbuf=4096) as slow:
        slow.sendall(framed(_axfr_query(77)))
        time.sleep(0.3)  # the server fills the window and waits
        with connect(address) as other:
            for i in range(50):
                started = time.monotonic()
                other.sendall(framed(query("h5.big.test.", qid=i)))
                assert read_message(other).answer
                assert time.monotonic() - started < 0.5
        assert server.tcp_stats()["transfers"] == 0  # still going
        total = 0
        while total < STALLING_RECORDS + 4:  # a slow reader: a pause a message
            total += _transfer_records(slow, 1)
            time.sleep(0.001)
    assert total == STALLING_RECORDS + 4
    assert server.tcp_stats()["transfers"] == 1


def test_transfers_beyond_the_limit_are_refused_and_a_stalled_one_is_cut(xdpdns_serve, tmp_path):
    server, address = serve_with(
        xdpdns_serve,
        tmp_path,
        {"tcp_io_timeout": 1, "tcp_max_transfers": 1},
        zone=_big_zone(tmp_path, STALLING_RECORDS),
    )
    with connect(address, rcvbuf=4096) as stalled:
        stalled.sendall(framed(_axfr_query(1)))
        time.sleep(0.2)
        with connect(address) as second:
            second.sendall(framed(_axfr_query(2)))
            refused = read_message(second)
            assert refused.id == 2 and refused.rcode() == dns.rcode.REFUSED
        # Never read: the transfer stalls, and the io timeout ends it.
        time.sleep(2)
        stats = server.tcp_stats()
        assert stats["transfers_refused"] == 1 and stats["io_timeouts"] == 1
        assert stats["transfers_failed"] == 1
    with connect(address) as third:  # the slot is free again
        third.sendall(framed(_axfr_query(3)))
        assert _transfer_records(third, STALLING_RECORDS + 4) == STALLING_RECORDS + 4


def test_a_reload_that_denies_a_client_closes_its_open_connection(xdpdns_serve, tmp_path):
    """The source ACL is read for every query: a client the reloaded ACL
    drops loses the connection it already had."""
    server, address = serve_with(
        xdpdns_serve,
        tmp_path,
        {},
        '[plugins.acl]\ndeny = ["198.18.0.0/15"]\nsocket_action = "drop"\n',
    )
    conf = tmp_path / "xdpdns.toml"
    with connect(address, "127.0.0.2") as sock:
        sock.sendall(framed(query("www.example.com.", qid=1)))
        assert read_message(sock).id == 1
        conf.write_text(conf.read_text().replace("198.18.0.0/15", "127.0.0.2"))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded" not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reloaded" in server.output()
        sock.sendall(framed(query("www.example.com.", qid=2)))
        assert read_message(sock) is None
    assert server.tcp_stats()["denied_closed"] == 1


def test_many_pipelined_queries_from_many_connections_at_once(xdpdns_serve, tmp_path):
    """Every connection gets every answer, in its own order."""
    _, address = serve_with(xdpdns_serve, tmp_path, {"tcp_workers": 2})
    errors = []

    def client(n):
        try:
            with connect(address) as sock:
                sock.sendall(
                    b"".join(framed(query("www.example.com.", qid=n * 100 + i)) for i in range(100))
                )
                ids = [read_message(sock).id for _ in range(100)]
            assert ids == [n * 100 + i for i in range(100)]
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_query_pipelined_behind_a_transfer_is_answered_after_it(xdpdns_serve, tmp_path):
    """A query sent right behind an AXFR, in the same segment, waits for
    the transfer and is answered after its last message (it waited for
    ever when the transfer ended inside the write that began it)."""
    _, address = serve_with(xdpdns_serve, tmp_path, {})
    axfr = dns.message.make_query("example.com.", "AXFR")
    axfr.id = 1
    with connect(address) as sock:
        sock.sendall(framed(axfr) + framed(query("www.example.com.", qid=2)))
        soas = 0
        while soas < 2:  # the apex SOA first and last, maybe in one message
            prefix = recv_exactly(sock, 2)
            assert prefix is not None
            wire = recv_exactly(sock, struct.unpack("!H", prefix)[0])
            msg = dns.message.from_wire(wire, one_rr_per_rrset=True)
            assert msg.id == 1
            soas += sum(r.rdtype == dns.rdatatype.SOA for r in msg.answer)
        after = read_message(sock)
    assert after.id == 2 and after.answer


def test_a_slow_secondary_with_a_query_behind_its_transfer_keeps_its_connection(
    xdpdns_serve, tmp_path
):
    """Reading steadily but slowly, a secondary gets its whole transfer and
    the answer it pipelined behind it, with an io timeout far shorter than
    the transfer: the queued query is no message arriving too slowly, and a
    send queue the client drains is progress though the kernel signals no
    room for a while (it waits for half the queue to go)."""
    server, address = serve_with(
        xdpdns_serve,
        tmp_path,
        {"tcp_io_timeout": 0.3},
        zone=_big_zone(tmp_path, STALLING_RECORDS),
    )
    with connect(address, rcvbuf=4096) as slow:
        slow.sendall(framed(_axfr_query(5)) + framed(query("h5.big.test.", qid=6)))
        total = 0
        while total < STALLING_RECORDS + 4:  # about 3 MB/s
            total += _transfer_records(slow, 1)
            time.sleep(0.005)
        after = read_message(slow)
    assert after.id == 6 and after.answer
    stats = server.tcp_stats()
    assert stats["io_timeouts"] == 0 and stats["transfers"] == 1


def test_out_of_descriptors_the_worker_waits_instead_of_spinning(xdpdns_serve, tmp_path):
    """accept() failing for want of a descriptor leaves the connection in
    the backlog and the socket readable: the worker stops watching it for
    a while (each failure counts as rejected) rather than retrying at
    once, and accepts again once descriptors are free."""
    server, address = serve_with(
        xdpdns_serve,
        tmp_path,
        {"tcp_max_connections": 1000, "tcp_max_client_connections": 1000},
    )
    pid = server.proc.pid
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 2, limits[1]))
    socks = []
    try:
        socks = [connect(address) for _ in range(10)]
        time.sleep(1)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
    try:
        for i, sock in enumerate(socks):  # the waiting ones are taken now
            sock.sendall(framed(query("www.example.com.", qid=i)))
            assert read_message(sock).id == i
    finally:
        for sock in socks:
            sock.close()
    # About ten a second while descriptors ran out; a worker retrying at
    # once counts hundreds of thousands.
    assert 1 <= server.tcp_stats()["rejected"] < 100
