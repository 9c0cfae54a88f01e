"""NOTIFY (RFC 1996): telling a zone's secondaries that its serial changed,
so that they transfer it now instead of at their next refresh.

The server calls :meth:`Notifier.zones_published` once its first image is
out and after every reload.  For each ``[[zone]]`` with ``notify``
addresses whose SOA serial (as the engine answers it now) is not the one
last announced, one NOTIFY goes to every address over UDP, with the new SOA
in the answer section (RFC 1996 3.7), signed with the target's TSIG key
when it has one, retried (RFC 1996 3.6) until the secondary answers or the
tries run out; each outcome is logged.  Sending
never holds up answering: it runs in the event loop, a task per target.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
from typing import Iterable

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

from xdpdns.ask import TsigRefused, udp_response
from xdpdns.config import Remote, ZoneConfig

log = logging.getLogger("xdpdns.notify")

TRIES = 5  # RFC 1996 3.6: a small number of retransmissions
TIMEOUT = 2.0  # seconds before a retransmission


class Notifier:
    def __init__(self, engine) -> None:
        self.engine = engine
        self._announced: dict[object, int] = {}  # origin -> serial
        self._tasks: dict[object, set[asyncio.Task]] = {}  # origin -> its NOTIFY

    def zones_published(self, zones: Iterable[ZoneConfig]) -> None:
        """Sends NOTIFY for every zone with notify addresses whose serial
        is not the one last announced (at start: every such zone).  Zones
        that are gone, or no longer notify, stop being retried."""
        zones = [z for z in zones if z.notify]
        for origin in set(self._tasks) - {z.origin for z in zones}:
            self._cancel(origin)
            self._announced.pop(origin, None)
        for zone in zones:
            serial = self.engine.zone_serial(zone.origin)
            if serial is None:
                log.warning("notify %s: the zone is not served (no SOA)", zone.origin)
                continue
            if self._announced.get(zone.origin) == serial:
                continue
            self._announced[zone.origin] = serial
            self._cancel(zone.origin)  # an older serial's retries end
            message = self._message(zone.origin)
            tasks = self._tasks.setdefault(zone.origin, set())
            for target in zone.notify:
                task = asyncio.get_running_loop().create_task(
                    self._send(message, zone.origin, serial, target)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def stop(self) -> None:
        """Ends the NOTIFY still being retried (the server is stopping)."""
        tasks = [t for ts in self._tasks.values() for t in ts]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _cancel(self, origin) -> None:
        for task in self._tasks.get(origin, ()):
            task.cancel()

    def _message(self, origin) -> dns.message.Message:
        """The NOTIFY for origin, with its SOA in the answer section when
        the engine gives it to a client with no address (RFC 1996 3.7: may;
        a zone whose allow_query lists prefixes does not)."""
        message = dns.message.make_query(origin, dns.rdatatype.SOA)
        message.flags = dns.flags.AA  # RFC 1996 3.7; not RD
        message.set_opcode(dns.opcode.NOTIFY)  # after flags: it lives in them
        wire = self.engine.answer(dns.message.make_query(origin, dns.rdatatype.SOA).to_wire())
        if wire is not None:
            for rrset in dns.message.from_wire(wire).answer:
                if rrset.rdtype == dns.rdatatype.SOA:
                    message.answer.append(rrset)
        return message

    async def _send(
        self, message: dns.message.Message, origin, serial: int, target: Remote
    ) -> None:
        where = str(target)
        family = socket.AF_INET6 if target.is_ipv6 else socket.AF_INET
        loop = asyncio.get_running_loop()
        if target.key is not None:
            # A copy per target: each signs with its own key and MAC.
            message = copy.copy(message)
            message.use_tsig(target.key.dnspython())
        wire = message.to_wire()
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            try:
                # Connected: only the secondary's own datagrams come back.
                await loop.sock_connect(sock, (target.host, target.port))
                for _ in range(TRIES):
                    await loop.sock_sendall(sock, wire)
                    rcode = await self._answer(sock, message, TIMEOUT)
                    if rcode is None:
                        continue
                    if rcode == dns.rcode.NOERROR:
                        log.info("notify %s serial %d to %s: acknowledged", origin, serial, where)
                    else:
                        log.warning(
                            "notify %s serial %d to %s: answered %s",
                            origin,
                            serial,
                            where,
                            dns.rcode.to_text(rcode),
                        )
                    return
            except TsigRefused as exc:
                log.warning("notify %s serial %d to %s: %s", origin, serial, where, exc)
                return
            except OSError as exc:
                log.warning(
                    "notify %s serial %d to %s: %s", origin, serial, where, exc.strerror or exc
                )
                return
        log.warning(
            "notify %s serial %d to %s: no answer after %d tries", origin, serial, where, TRIES
        )

    @staticmethod
    async def _answer(sock, message, timeout: float):
        """The RCODE of the response to message (same ID, QR set, opcode
        NOTIFY) within timeout, else None; other datagrams are ignored."""
        response = await udp_response(
            sock, message, timeout, lambda r: r.opcode() == dns.opcode.NOTIFY
        )
        return None if response is None else response.rcode()
