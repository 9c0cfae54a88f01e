"""Asking another server over UDP (NOTIFY out, a primary's SOA): on a
connected socket, so that only that server's datagrams come back, the
response to our message is picked out of what arrives."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.tsig


class TsigRefused(Exception):
    """The other side answered our signed message with a TSIG error (RFC
    8945 5.3.2: BADKEY, BADSIG, BADTIME, BADTRUNC)."""

    def __init__(self, key, error: str) -> None:
        super().__init__(f"it refused TSIG key {key}: {error}")


_PEER_ERRORS = {
    dns.tsig.PeerBadKey: "BADKEY (it has no such key)",
    dns.tsig.PeerBadSignature: "BADSIG (its secret differs)",
    dns.tsig.PeerBadTime: "BADTIME (our clocks differ)",
    dns.tsig.PeerBadTruncation: "BADTRUNC",
}


def read_response(data: bytes, query: dns.message.Message, **kw) -> dns.message.Message:
    """A response to query from its wire form, its TSIG checked when the
    query was signed (an unsigned one is then malformed).  Raises
    TsigRefused for the other side's TSIG error, DNSException otherwise."""
    if not query.had_tsig:
        return dns.message.from_wire(data, **kw)
    try:
        response = dns.message.from_wire(
            data, keyring={query.keyname: query.keyring}, request_mac=query.mac, **kw
        )
    except dns.tsig.PeerError as exc:
        raise TsigRefused(query.keyname, _PEER_ERRORS.get(type(exc), str(exc))) from None
    if not response.had_tsig:
        raise dns.exception.FormError(
            f"an unsigned {dns.rcode.to_text(response.rcode())} to a query signed with "
            f"{query.keyname}"
        )
    return response


async def udp_response(
    sock: socket.socket,
    query: dns.message.Message,
    timeout: float,
    accept: Callable[[dns.message.Message], bool] = lambda response: True,
) -> dns.message.Message | None:
    """The first datagram on sock within timeout that parses as a response
    (QR) with query's ID and that ``accept`` takes; None when none comes.
    Datagrams that are not (garbage, late answers to another ID, for a
    signed query one whose TSIG does not verify) are skipped; a TSIG error
    the other side signals raises TsigRefused."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
        except asyncio.TimeoutError:
            return None
        try:
            response = read_response(data, query)
        except TsigRefused:
            if data[:2] == query.id.to_bytes(2, "big"):
                raise
            continue
        except dns.exception.DNSException:
            continue
        if response.id == query.id and response.flags & dns.flags.QR and accept(response):
            return response
    return None
