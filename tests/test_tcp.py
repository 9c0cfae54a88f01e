"""xdpdns/tcp.py: DNS over TCP per RFC 7766, against a running `xdpdns serve`."""

import socket
import struct
import time

import dns.flags
import dns.message
import dns.rcode
import pytest

IDLE_TIMEOUT = 0.5
MAX_CONNECTIONS = 2


@pytest.fixture
def server(xdpdns_serve, tmp_path):
    conf = tmp_path / "xdpdns.toml"
    conf.write_text(
        '[server]\nlisten = ["127.0.0.1:0"]\nudp_workers = 1\n'
        f"tcp_idle_timeout = {IDLE_TIMEOUT}\ntcp_max_connections = {MAX_CONNECTIONS}\n")
    # A config file without [[zone]] serves none: give the example zone.
    from xdpdns.config import default_zone_path

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


def connect(address):
    return socket.create_connection(address, timeout=5)


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
            sock.sendall(data[i:i + 1])
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
