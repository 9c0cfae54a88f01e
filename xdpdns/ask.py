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


async def udp_response(
    sock: socket.socket,
    query: dns.message.Message,
    timeout: float,
    accept: Callable[[dns.message.Message], bool] = lambda response: True,
) -> dns.message.Message | None:
    """The first datagram on sock within timeout that parses as a response
    (QR) with query's ID and that ``accept`` takes; None when none comes.
    Datagrams that are not (garbage, late answers to another ID) are
    skipped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
        except asyncio.TimeoutError:
            return None
        try:
            response = dns.message.from_wire(data)
        except dns.exception.DNSException:
            continue
        if response.id == query.id and response.flags & dns.flags.QR and accept(response):
            return response
    return None
