"""DNS over TCP (RFC 7766) in front of the same answering core as UDP.

Each message is preceded by its length in two bytes (RFC 1035 4.2.2); a
client may send several queries on one connection without waiting
(pipelining, RFC 7766 6.2.1.1), and they are answered in order.  An idle
connection is closed after ``idle_timeout`` seconds (RFC 7766 6.2.3), and
new connections beyond ``max_connections`` are closed at once so that a
flood of idle clients cannot starve the others.  A client the source ACL
denies gets REFUSED to every query, or its connection closed at once, as
the ACL's socket action says (the engine decides, as for UDP).  The peer's
address goes with every query to the engine: DNS cookies are made for it.

The answers come from Engine.answer(tcp=True), a C call that releases the
GIL and takes microseconds, so it runs inline in the event loop.  Names a
resolver plugin claims (and the resolver cache does not hold) go to the
resolver's threads (xdpdns/resolver.py); the connection awaits the answer,
which comes within the resolver's timeout (SERVFAIL after it).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Sequence

import dns.exception
import dns.name
import dns.rdatatype

from xdpdns.config import ListenAddress
from xdpdns.engine import DEFERRED
from xdpdns.hookspecs import parse_question

log = logging.getLogger("xdpdns.tcp")

LENGTH_PREFIX = 2
BACKLOG = 1024


@dataclass
class TcpStats:
    connections: int = 0  # accepted and served
    rejected: int = 0  # closed at once: max_connections reached
    received: int = 0  # queries read
    answered: int = 0  # responses written
    idle_closed: int = 0  # closed by the idle timeout
    denied: int = 0  # from sources the ACL denies: refused, or closed at once
    transfers: int = 0  # zone transfers sent (AXFR, IXFR as a whole zone)


TRANSFER_TYPES = (dns.rdatatype.IXFR, dns.rdatatype.AXFR)
TRANSFER_SLICE = 1 << 16  # bytes of a transfer written before waiting for the client


def _is_transfer(query: bytes) -> bool:
    """Whether the query's question is an AXFR or IXFR (the rest is the
    engine's to check)."""
    try:
        return parse_question(query)[1] in TRANSFER_TYPES
    except ValueError:
        return False


def _qname_text(query: bytes) -> str:
    try:
        return dns.name.from_wire(query, 12)[0].to_text()
    except dns.exception.DNSException:
        return "?"


def bind_sockets(addresses: Sequence[ListenAddress]) -> list[socket.socket]:
    """Binds one listening TCP socket per address (port 0: the kernel picks).

    Raises OSError whose message names the address.
    """
    socks = []
    try:
        for addr in addresses:
            family = socket.AF_INET6 if addr.is_ipv6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((addr.host, addr.port))
                sock.listen(BACKLOG)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {addr} (tcp): {exc.strerror}") from None
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class TcpListener:
    def __init__(self, engine, idle_timeout: float, max_connections: int,
                 resolver=None, dnstap: bool = False) -> None:
        self.engine = engine
        self.resolver = resolver
        # Queries are offered to dnstap's sampling (Engine.dnstap_log).
        self.dnstap = dnstap
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.stats = TcpStats()
        self._servers: list[asyncio.base_events.Server] = []
        self._handlers: set[asyncio.Task] = set()
        # Transfers being made in other threads: waited for at stop, for
        # they read the engine, which is freed after.
        self._making: set[asyncio.Future] = set()

    async def start(self, socks: Sequence[socket.socket]) -> None:
        for sock in socks:
            self._servers.append(await asyncio.start_server(self._accept, sock=sock))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._making:
            await asyncio.gather(*self._making, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _verdict(self, client: str | None) -> str:
        """The source ACL's word on the peer: "answer", "refuse" or "drop"."""
        if client is None:
            return "answer"  # not an IP peer (never on our listeners)
        return self.engine.acl_check(client)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else None
        verdict = self._verdict(client)
        if verdict != "answer":
            self.stats.denied += 1
        if verdict == "drop":
            writer.close()
            return
        if len(self._handlers) >= self.max_connections:
            self.stats.rejected += 1
            writer.close()
            return
        task = asyncio.current_task()
        self._handlers.add(task)
        self.stats.connections += 1
        try:
            await self._serve(reader, writer, client, refuse=verdict == "refuse")
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # the listener is stopping
        except Exception:
            log.exception("tcp connection from %s", writer.get_extra_info("peername"))
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _transfer(self, writer: asyncio.StreamWriter, query: bytes,
                        client: str | None) -> bool:
        """Sends the zone an AXFR or IXFR asks for, when its transfer ACL
        allows the client (False: it does not, or no such zone; the query is
        answered as any other, REFUSED).  Made in another thread: a large
        zone takes a while, and the event loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        making = loop.run_in_executor(None, self.engine.axfr, query, client)
        self._making.add(making)
        making.add_done_callback(self._making.discard)
        try:
            # Shielded: a connection cancelled meanwhile (the server stops)
            # leaves the future for stop() to wait for.
            stream = await asyncio.shield(making)
        except OSError as exc:
            log.error("transfer %s to %s: %s", _qname_text(query), client, exc)
            return False  # REFUSED, as for a transfer not allowed
        if not stream:
            return False
        # Written in slices, waiting for the client between them: one drain
        # per slice, not per message, and a slice small enough that the
        # idle timeout measures a stall, not a slow secondary.
        view = memoryview(stream)
        try:
            for pos in range(0, len(view), TRANSFER_SLICE):
                writer.write(view[pos:pos + TRANSFER_SLICE])
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("transfer %s to %s aborted after %d of %d bytes: %s",
                        _qname_text(query), client, pos, len(stream),
                        "no progress" if isinstance(exc, TimeoutError) else exc)
            raise
        self.stats.answered += 1
        self.stats.transfers += 1
        log.info("transfer %s to %s: %d bytes", _qname_text(query), client, len(stream))
        return True

    async def _read(self, reader: asyncio.StreamReader, n: int) -> bytes | None:
        try:
            return await asyncio.wait_for(reader.readexactly(n), self.idle_timeout)
        except TimeoutError:
            self.stats.idle_closed += 1
            return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     client: str | None, refuse: bool = False) -> None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        while True:
            prefix = await self._read(reader, LENGTH_PREFIX)
            if prefix is None:
                return
            size = int.from_bytes(prefix, "big")
            if size == 0:
                return  # no DNS message is empty: the peer is not speaking DNS
            query = await self._read(reader, size)
            if query is None:
                return
            self.stats.received += 1
            if not refuse and _is_transfer(query) and await self._transfer(writer, query,
                                                                           client):
                continue
            if refuse:
                response = self.engine.refused(query)
            else:
                response = self.engine.answer(query, tcp=True, client=client,
                                              defer=self.resolver is not None)
            if response is DEFERRED:
                response = await self.resolver.answer_tcp(query, (peer[0], peer[1]))
            if self.dnstap and peer:
                self.engine.dnstap_log(query, response, (peer[0], peer[1]),
                                       (local[0], local[1]) if local else None)
            if response is None:
                continue  # e.g. the message was itself a response
            writer.write(len(response).to_bytes(LENGTH_PREFIX, "big") + response)
            self.stats.answered += 1
            # A client that stops reading counts as idle too (RFC 7766 6.2.3).
            await asyncio.wait_for(writer.drain(), self.idle_timeout)
