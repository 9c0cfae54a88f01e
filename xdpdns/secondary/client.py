"""Asking a primary: its SOA serial (UDP, TCP when truncated) and a zone
transfer (IXFR from our serial, or AXFR) over TCP, read message by message
into an XfrReader.  With the primary's TSIG key every query is signed and
every response checked (a transfer's messages each after the one before,
RFC 8945 5.3.1).  Every failure is an XfrError that names the primary and
what went wrong; nothing here changes what is served.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset

from xdpdns.ask import TsigRefused, read_response, udp_response
from xdpdns.config import Remote
from xdpdns.secondary.xfr import Full, Incremental, NeedsFull, UpToDate, XfrError, XfrReader

SOA_TIMEOUT = 2.0  # seconds for a primary's answer to an SOA query
IO_TIMEOUT = 10.0  # seconds for each message of a transfer (and connecting)


def _check(response: dns.message.Message, query: dns.message.Message, primary) -> None:
    if response.id != query.id or not response.flags & dns.flags.QR:
        raise XfrError(f"{primary}: a response that is not to our query")
    if response.opcode() != dns.opcode.QUERY:
        raise XfrError(f"{primary}: a response with opcode {response.opcode()}")
    if response.rcode() != dns.rcode.NOERROR:
        raise XfrError(f"{primary} answered {dns.rcode.to_text(response.rcode())}")


def _soa_serial(response: dns.message.Message, origin: dns.name.Name, primary) -> int:
    if not response.flags & dns.flags.AA:
        raise XfrError(f"{primary} is not authoritative for {origin} (AA clear)")
    for rrset in response.answer:
        if rrset.name == origin and rrset.rdtype == dns.rdatatype.SOA and rrset:
            return rrset[0].serial
    raise XfrError(f"{primary} gave no SOA for {origin}")


def _query(primary: Remote, origin: dns.name.Name, rdtype) -> dns.message.Message:
    query = dns.message.make_query(origin, rdtype)
    query.flags = 0  # no RD: a primary is asked, not a resolver
    if primary.key is not None:
        query.use_tsig(primary.key.dnspython())
    return query


async def query_soa(primary: Remote, origin: dns.name.Name) -> int:
    """The serial of the primary's SOA for origin."""
    query = _query(primary, origin, dns.rdatatype.SOA)
    loop = asyncio.get_running_loop()
    try:
        family = socket.AF_INET6 if primary.is_ipv6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, (primary.host, primary.port))
            await loop.sock_sendall(sock, query.to_wire())
            response = await udp_response(sock, query, SOA_TIMEOUT)
    except TsigRefused as exc:
        raise XfrError(f"{primary}: {exc}") from None
    except OSError as exc:
        raise XfrError(f"{primary}: {exc.strerror or exc}") from None
    if response is None:
        raise XfrError(f"{primary}: no answer to the SOA query")
    if response.flags & dns.flags.TC:
        return _soa_serial(await _tcp_query(primary, query), origin, primary)
    _check(response, query, primary)
    return _soa_serial(response, origin, primary)


async def _tcp_query(primary: Remote, query: dns.message.Message) -> dns.message.Message:
    async with _Connection(primary) as conn:
        await conn.send(query)
        wire = await conn.receive()
        if wire is None:
            raise XfrError(f"{primary}: the connection closed before the response")
        try:
            response = read_response(wire, query)
        except TsigRefused as exc:
            raise XfrError(f"{primary}: {exc}") from None
        except dns.exception.DNSException as exc:
            raise XfrError(f"{primary}: a malformed response ({exc})") from None
    _check(response, query, primary)
    return response


class _Connection:
    def __init__(self, primary: Remote) -> None:
        self.primary = primary
        self.received = 0  # bytes

    async def __aenter__(self) -> "_Connection":
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.primary.host, self.primary.port), IO_TIMEOUT
            )
        except asyncio.TimeoutError:
            raise XfrError(f"{self.primary}: no TCP connection within {IO_TIMEOUT:g}s")
        except OSError as exc:
            raise XfrError(f"{self.primary}: {exc.strerror or exc}") from None
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def send(self, message: dns.message.Message) -> None:
        wire = message.to_wire()
        self.writer.write(len(wire).to_bytes(2, "big") + wire)
        try:
            await asyncio.wait_for(self.writer.drain(), IO_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            raise XfrError(f"{self.primary}: sending the query: {exc}") from None

    async def receive(self) -> bytes | None:
        """The next message; None when the primary closed between messages."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), IO_TIMEOUT)
            wire = await asyncio.wait_for(
                self.reader.readexactly(int.from_bytes(head, "big")), IO_TIMEOUT
            )
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None
            raise XfrError(f"{self.primary}: the connection closed inside a message")
        except asyncio.TimeoutError:
            raise XfrError(f"{self.primary}: nothing for {IO_TIMEOUT:g}s") from None
        except OSError as exc:
            raise XfrError(f"{self.primary}: {exc.strerror or exc}") from None
        self.received += 2 + len(wire)
        return wire


@dataclass
class Transfer:
    """What a transfer brought, and what it cost."""

    result: Full | Incremental | UpToDate | NeedsFull
    kind: str  # "AXFR" or "IXFR", as asked
    primary: Remote
    messages: int
    bytes: int
    seconds: float


def _ixfr_query(primary: Remote, origin: dns.name.Name, serial: int) -> dns.message.Message:
    query = _query(primary, origin, dns.rdatatype.IXFR)
    # RFC 1995 3: our version's SOA; a primary reads its serial alone.
    soa = dns.rdtypes.ANY.SOA.SOA(
        dns.rdataclass.IN, dns.rdatatype.SOA, origin, origin, serial, 0, 0, 0, 0
    )
    query.authority.append(dns.rrset.from_rdata(origin, 0, soa))
    return query


class _Signatures:
    """The TSIG state of a transfer's messages: each signed one follows the
    MAC before it (RFC 8945 5.3.1); up to 99 unsigned ones between are
    covered by the next."""

    def __init__(self, query: dns.message.Message) -> None:
        self.query = query
        self.ctx = None
        self.last_signed = True

    def read(self, wire: bytes) -> dns.message.Message:
        if not self.query.had_tsig:
            return dns.message.from_wire(wire, xfr=True, origin=None, one_rr_per_rrset=True)
        # multi: dnspython then carries each MAC to the next message (the
        # first, with no context yet, follows the query's).
        response = read_response(
            wire,
            self.query,
            xfr=True,
            origin=None,
            one_rr_per_rrset=True,
            tsig_ctx=self.ctx,
            multi=True,
        )
        self.ctx = response.tsig_ctx
        self.last_signed = response.had_tsig
        return response


def _take(reader: XfrReader, wire: bytes, query, primary, signatures, first: bool) -> None:
    """One message of a transfer into reader."""
    try:
        response = signatures.read(wire)
    except TsigRefused as exc:
        raise XfrError(f"{primary}: {exc}") from None
    except dns.exception.DNSException as exc:
        raise XfrError(f"{primary}: a malformed message ({exc})") from None
    _check(response, query, primary)
    question = query.question[0]
    if (
        first
        and response.question
        and (
            response.question[0].name != question.name
            or response.question[0].rdtype != question.rdtype
        )
    ):
        raise XfrError(f"{primary}: a response to another question")
    try:
        for rrset in response.answer:
            reader.feed(rrset)
    except XfrError as exc:
        raise XfrError(f"{primary}: {exc}") from None
    reader.message_end()


async def transfer(primary: Remote, origin: dns.name.Name, ours: int | None) -> Transfer:
    """The zone from primary: IXFR from serial ``ours``, or AXFR (None)."""
    if ours is None:
        query = _query(primary, origin, dns.rdatatype.AXFR)
    else:
        query = _ixfr_query(primary, origin, ours)
    signatures = _Signatures(query)
    reader = XfrReader(origin, ours)
    start = time.monotonic()
    messages = 0
    loop = asyncio.get_running_loop()
    async with _Connection(primary) as conn:
        await conn.send(query)
        while not reader.done:
            wire = await conn.receive()
            if wire is None:
                break
            messages += 1
            # Parsing a message of a large zone takes milliseconds: not in
            # the event loop, which serves the other zones and NOTIFY.
            await loop.run_in_executor(
                None, _take, reader, wire, query, primary, signatures, messages == 1
            )
        received = conn.received
    if not signatures.last_signed:
        raise XfrError(f"{primary}: the transfer's last message is not signed")
    try:
        result = reader.result()
    except XfrError as exc:
        raise XfrError(f"{primary}: {exc}") from None
    return Transfer(
        result,
        "IXFR" if ours is not None else "AXFR",
        primary,
        messages,
        received,
        time.monotonic() - start,
    )
