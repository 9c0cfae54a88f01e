"""Prometheus metrics ([metrics] listen): what `xdpdns stats` shows, for
scraping.

Every scrape reads the counters afresh on the server's event loop (the
thread that keeps the capabilities XDP mode's maps need), and the text is
written by prometheus_client, Debian's python3-prometheus-client.  Names
follow Prometheus conventions (xdpdns_ prefix, _total for counters, base
units), and the labels are those CoreDNS and Knot's exporter use for the
same things (proto, rcode, zone).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from xdpdns.counts import XDP_PROGRAM_COUNTERS, summed

log = logging.getLogger("xdpdns.metrics")

# A scrape request larger than this is not a scrape.
REQUEST_LIMIT = 8192
REQUEST_TIMEOUT = 5.0

# The XDP queue fields that say where frames are now: gauges, not counters.
# Levels, not counts: XDP queues' frames, open TCP connections.
_QUEUE_GAUGES = ("frames_fill", "frames_rx", "frames_tx", "frames_free", "frames_total", "open")
# Of the numbers in stats, the ones that are not counters or are labels.
_NOT_COUNTERS = {"queue", "cpu"}


def _counters(prefix: str, what: str, rows, label: str | None) -> Iterator[Metric]:
    """One counter family per numeric field of the dataclass rows, labelled
    by label (the row's index) when given."""
    if not rows:
        return
    for field in dataclasses.fields(rows[0]):
        if field.name in _NOT_COUNTERS or field.type not in ("int", int):
            continue
        gauge = field.name in _QUEUE_GAUGES
        name = f"{prefix}_{field.name}"
        family: Metric
        if gauge:
            family = GaugeMetricFamily(
                name, f"{what}: {field.name}", labels=[label] if label else []
            )
        else:
            family = CounterMetricFamily(
                name, f"{what}: {field.name}", labels=[label] if label else []
            )
        for index, row in enumerate(rows):
            value = getattr(row, field.name)
            key = getattr(row, label, index) if label else None
            if label:
                family.add_metric([str(key)], value)
            else:
                family.add_metric([], value)
        yield family


def _by_kind(prefix: str, what: str, rows, label: str) -> Iterator[Metric]:
    """Responses by RCODE and by query type (the rows' rcodes and qtypes),
    labelled by the row's label as well."""
    for attr, kind in (("rcodes", "rcode"), ("qtypes", "qtype")):
        family = CounterMetricFamily(
            f"{prefix}_responses_by_{kind}",
            f"{what}: responses made, by {kind}",
            labels=[label, kind],
        )
        for index, row in enumerate(rows):
            key = getattr(row, label, index)
            for name, n in sorted(getattr(row, attr).items()):
                family.add_metric([str(key), name], n)
        yield family


class StatsCollector:
    """A prometheus_client collector over a server's stats()."""

    def __init__(self, server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        stats = self.server.stats()
        yield from _counters(
            "xdpdns_udp_worker", "a UDP worker's queries", list(stats.workers), "worker"
        )
        yield from _by_kind("xdpdns_udp_worker", "a UDP worker", list(stats.workers), "worker")
        yield from _counters("xdpdns_tcp", "TCP", [stats.tcp], None)
        if stats.resolver is not None:
            yield from _counters("xdpdns_resolver", "the resolver hook", [stats.resolver], None)
        if stats.dnstap is not None:
            yield from _counters("xdpdns_dnstap", "dnstap", [stats.dnstap], None)
            yield GaugeMetricFamily(
                "xdpdns_dnstap_connected",
                "whether the dnstap collector is connected",
                value=int(stats.dnstap.connected),
            )
        if stats.xdp is not None:
            yield from self._xdp(stats.xdp)
        if stats.secondary:
            yield from _secondary(stats.secondary)
        yield from self._server()

    def _xdp(self, xdp) -> Iterator[Metric]:
        yield from _counters(
            "xdpdns_xdp_queue", "an AF_XDP queue worker", list(xdp.queues), "queue"
        )
        yield from _by_kind("xdpdns_xdp_queue", "an AF_XDP queue worker", list(xdp.queues), "queue")
        cpus = list(xdp.cpus)
        for field in XDP_PROGRAM_COUNTERS:
            family = CounterMetricFamily(
                f"xdpdns_xdp_program_{field}", f"the XDP program's packets: {field}", labels=["cpu"]
            )
            for cpu, counters in enumerate(cpus):
                family.add_metric([str(cpu)], getattr(counters, field))
            yield family
        for kind, what in (("rcode", "RCODE"), ("qtype", "query type")):
            family = CounterMetricFamily(
                f"xdpdns_xdp_program_answers_by_{kind}",
                f"answers the XDP program sent itself, by {what}",
                labels=[kind],
            )
            totals = summed(getattr(c, f"answered_in_xdp_{kind}s") for c in cpus)
            for name, n in sorted(totals.items()):
                family.add_metric([name], n)
            yield family
        if xdp.answers is not None:
            info = xdp.answers
            state = GaugeMetricFamily(
                "xdpdns_xdp_answer_table_state",
                "the XDP answer table's state (1 for the one in force)",
                labels=["state"],
            )
            for name in ("off", "on", "paused", "failed"):
                state.add_metric([name], 1 if info.state == name else 0)
            yield state
            for name, value in (("entries", info.entries), ("bytes", info.bytes)):
                yield GaugeMetricFamily(
                    f"xdpdns_xdp_answer_table_{name}", f"the XDP answer table's {name}", value=value
                )

    def _server(self) -> Iterator[Metric]:
        server = self.server
        reloads = CounterMetricFamily("xdpdns_reloads", "reloads, by result", labels=["result"])
        for result, n in sorted(server.reloads.items()):
            reloads.add_metric([result], n)
        yield reloads
        serials = GaugeMetricFamily("xdpdns_zone_serial", "the SOA serial served", labels=["zone"])
        for zone, serial in server.zone_serials():
            serials.add_metric([zone], serial)
        yield serials
        changes = GaugeMetricFamily(
            "xdpdns_zone_journal_changes", "changes kept for IXFR out", labels=["zone"]
        )
        size = GaugeMetricFamily(
            "xdpdns_zone_journal_bytes", "bytes of the changes kept for IXFR out", labels=["zone"]
        )
        for zone, journal in server.zone_journals():
            changes.add_metric([zone], journal.depth)
            size.add_metric([zone], journal.bytes)
        yield changes
        yield size


# Secondary zones: (metric, help, the ZoneStatus field it shows).  Times are
# UNIX timestamps, as node_exporter writes them; a zone without one (never
# transferred, expired) has no sample.
_SECONDARY_TIMES = (
    ("last_refresh", "when its primaries last agreed with it", "refreshed"),
    ("next_refresh", "when it asks its primaries next", "next_refresh"),
    ("expiry", "when it expires unless refreshed", "expires"),
)


def _secondary(zones) -> Iterator[Metric]:
    """The secondary zones: serial, expired or not, failing or not, and
    their timers, labelled by zone (and catalog, for members)."""
    labels = ["zone", "catalog"]
    serial = GaugeMetricFamily(
        "xdpdns_secondary_zone_serial", "the serial a secondary zone serves", labels=labels
    )
    expired = GaugeMetricFamily(
        "xdpdns_secondary_zone_expired", "1: SERVFAIL for want of data", labels=labels
    )
    failing = GaugeMetricFamily(
        "xdpdns_secondary_zone_refresh_failing", "1: its last refresh failed", labels=labels
    )
    times = {
        name: GaugeMetricFamily(
            f"xdpdns_secondary_zone_{name}_timestamp_seconds", words, labels=labels
        )
        for name, words, _ in _SECONDARY_TIMES
    }
    for z in zones:
        key = [z.zone, z.catalog or ""]
        if z.serial is not None:
            serial.add_metric(key, z.serial)
        expired.add_metric(key, int(z.serial is None))
        failing.add_metric(key, int(z.last_error is not None))
        for name, _, field in _SECONDARY_TIMES:
            value = getattr(z, field)
            if value is not None:
                times[name].add_metric(key, value)
    yield serial
    yield expired
    yield failing
    yield from times.values()


class MetricsServer:
    """GET /metrics over HTTP/1.0 from the running event loop."""

    def __init__(self, host: str, port: int, collect: Callable[[], bytes]) -> None:
        self.host = host
        self.port = port
        self._collect = collect
        self._server: asyncio.base_events.Server | None = None

    @classmethod
    def for_server(cls, host: str, port: int, server) -> "MetricsServer":
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsCollector(server))
        return cls(host, port, lambda: generate_latest(registry))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            parts = head[:REQUEST_LIMIT].split(b"\r\n", 1)[0].split()
            if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
                self._reply(writer, 405, b"text/plain", b"only GET\n")
            elif parts[1].split(b"?", 1)[0] != b"/metrics":
                self._reply(writer, 404, b"text/plain", b"see /metrics\n")
            else:
                body = self._collect()
                self._reply(
                    writer,
                    200,
                    CONTENT_TYPE_LATEST.encode(),
                    body if parts[0] == b"GET" else b"",
                    len(body),
                )
            await writer.drain()
        except (
            asyncio.TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass
        except Exception:  # a collector's bug: logged, the server goes on
            log.exception("metrics scrape")
        finally:
            writer.close()

    @staticmethod
    def _reply(
        writer: asyncio.StreamWriter,
        status: int,
        ctype: bytes,
        body: bytes,
        length: int | None = None,
    ) -> None:
        reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}[status]
        writer.write(
            b"HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n"
            % (status, reason, ctype, len(body) if length is None else length)
            + body
        )
