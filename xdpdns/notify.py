"""NOTIFY (RFC 1996): telling a zone's secondaries that its serial changed,
so that they transfer it now instead of at their next refresh.

The server calls :meth:`Notifier.zones_published` once its first image is
out and after every reload.  For each ``[[zone]]`` with ``notify``
addresses whose SOA serial (as the engine answers it now) is not the one
last announced, one NOTIFY goes to every address over UDP, with the new SOA
in the answer section (RFC 1996 3.7), retried (RFC 1996 3.6) until the
secondary answers or the tries run out; each outcome is logged.  Sending
never holds up answering: it runs in the event loop, a task per target.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rdatatype
import dns.rrset

from xdpdns.config import ListenAddress, ZoneConfig

log = logging.getLogger("xdpdns.notify")

TRIES = 5  # RFC 1996 3.6: a small number of retransmissions
TIMEOUT = 2.0  # seconds before a retransmission


class Notifier:
    def __init__(self, engine) -> None:
        self.engine = engine
        self._announced: dict[object, int] = {}  # origin -> serial
        self._tasks: set[asyncio.Task] = set()

    def zones_published(self, zones: Iterable[ZoneConfig]) -> None:
        """Sends NOTIFY for every zone with notify addresses whose serial
        is not the one last announced (at start: every such zone)."""
        for zone in zones:
            if not zone.notify:
                continue
            soa = self._soa(zone.origin)
            if soa is None or self._announced.get(zone.origin) == soa[0].serial:
                continue
            self._announced[zone.origin] = soa[0].serial
            for target in zone.notify:
                task = asyncio.get_running_loop().create_task(self._send(soa, target))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Ends the NOTIFY still being retried (the server is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _soa(self, origin) -> dns.rrset.RRset | None:
        """The zone's SOA as the engine answers it now (None: not served)."""
        query = dns.message.make_query(origin, dns.rdatatype.SOA)
        wire = self.engine.answer(query.to_wire())
        if wire is None:
            return None
        response = dns.message.from_wire(wire)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset
        return None

    async def _send(self, soa: dns.rrset.RRset, target: ListenAddress) -> None:
        origin, serial = soa.name, soa[0].serial
        message = dns.message.make_query(origin, dns.rdatatype.SOA)
        message.flags = dns.flags.AA  # RFC 1996 3.7; not RD
        message.set_opcode(dns.opcode.NOTIFY)  # after flags: it lives in them
        message.answer.append(soa)
        wire = message.to_wire()
        where = f"{target.host}:{target.port}" if ":" not in target.host \
            else f"[{target.host}]:{target.port}"
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        loop = asyncio.get_running_loop()
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for attempt in range(1, TRIES + 1):
                try:
                    await loop.sock_sendto(sock, wire, (target.host, target.port))
                    if await self._answered(loop, sock, message, TIMEOUT):
                        log.info("notify %s serial %d to %s: acknowledged", origin, serial,
                                 where)
                        return
                except OSError as exc:
                    log.warning("notify %s serial %d to %s: %s", origin, serial, where,
                                exc.strerror or exc)
                    return
        log.warning("notify %s serial %d to %s: no answer after %d tries", origin, serial,
                    where, TRIES)

    @staticmethod
    async def _answered(loop, sock, message, timeout: float) -> bool:
        """Waits up to timeout for the response to message (same ID and
        opcode, QR set); other datagrams are ignored."""
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), left)
            except asyncio.TimeoutError:
                return False
            try:
                response = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            if (response.id == message.id and response.flags & dns.flags.QR and
                    response.opcode() == dns.opcode.NOTIFY):
                return True
        return False
