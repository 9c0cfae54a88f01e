"""The server's life in socket mode.

configuration -> plugins -> zone image -> engine -> native UDP workers and
the TCP listener on the same addresses and ports -> startup hook -> one
"ready" log line -> wait for SIGTERM or SIGINT -> shutdown hook -> stop
listeners and workers -> exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, fields

import dns.name

from xdpdns.config import Config, ListenAddress
from xdpdns.engine import Engine, ImageInfo, WorkerStats
from xdpdns.image import build_image
from xdpdns.tcp import TcpListener, TcpStats, bind_sockets

log = logging.getLogger("xdpdns.server")


@dataclass(frozen=True)
class ServerStats:
    udp: WorkerStats  # summed over the workers
    workers: tuple[WorkerStats, ...]
    tcp: TcpStats

    def log_fields(self) -> str:
        parts = [f"{f.name}={getattr(self.udp, f.name)}" for f in fields(self.udp)]
        parts += [f"tcp_{f.name}={getattr(self.tcp, f.name)}" for f in fields(self.tcp)]
        return " ".join(parts)


def _sum_stats(workers: list[WorkerStats]) -> WorkerStats:
    return WorkerStats(**{f.name: sum(getattr(w, f.name) for w in workers)
                          for f in fields(WorkerStats)})


class Server:
    """One serving process.  Plugins get it in the lifecycle hooks.

    Public attributes: ``config``, ``addresses`` (the bound ListenAddress
    list, with the ports the kernel chose for port 0), ``zones`` (the served
    origins) and ``image_info``.
    """

    def __init__(self, config: Config, pm) -> None:
        self.config = config
        self.pm = pm
        self.addresses: tuple[ListenAddress, ...] = ()
        self.zones: tuple[dns.name.Name, ...] = ()
        self.image_info: ImageInfo | None = None
        self._engine: Engine | None = None
        self._tcp: TcpListener | None = None
        self._stop: asyncio.Event | None = None

    def run(self) -> int:
        """Serves until SIGTERM or SIGINT; returns the exit status (0).

        Raises ZoneLoadError for broken zones and OSError for addresses that
        cannot be bound, before anything was started.
        """
        return asyncio.run(self._main())

    def stats(self) -> ServerStats:
        workers = self._engine.worker_stats() if self._engine else []
        return ServerStats(_sum_stats(workers), tuple(workers),
                           TcpStats(**vars(self._tcp.stats)) if self._tcp else TcpStats())

    def stop(self) -> None:
        """Asks the server to stop (safe from the event loop's thread)."""
        if self._stop is not None:
            self._stop.set()

    async def _main(self) -> int:
        result = build_image(self.pm, self.config)
        self.zones = result.zones
        self.image_info = result.image.info
        srv = self.config.server
        with Engine() as engine:
            self._engine = engine
            engine.set_image(result.image)
            socks = bind_sockets(srv.listen)
            try:
                # TCP binds first so that port 0 gets one kernel-chosen port
                # that UDP then shares.
                bound = [ListenAddress(a.host, s.getsockname()[1])
                         for a, s in zip(srv.listen, socks)]
                engine.udp_start([(a.host, a.port) for a in bound], srv.udp_workers)
            except BaseException:
                for sock in socks:
                    sock.close()
                raise
            self.addresses = tuple(bound)
            self._tcp = TcpListener(engine, srv.tcp_idle_timeout, srv.tcp_max_connections)
            try:
                await self._tcp.start(socks)
                await self._serve()
            finally:
                await self._tcp.stop()
                final = self.stats()
                engine.udp_stop()
                self.pm.hook.stats(server=self, stats=final)
                log.info("stopped %s", final.log_fields())
                self._engine = None
        return 0

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            try:
                self.pm.hook.startup(server=self)
            except BaseException:
                self._shutdown_hook()
                raise
            log.info("ready listen=%s zones=%d udp_workers=%d",
                     ",".join(str(a) for a in self.addresses), len(self.zones),
                     self.config.server.udp_workers)
            reporter = asyncio.create_task(self._report_stats())
            await self._stop.wait()
            reporter.cancel()
            log.info("stopping")
            self._shutdown_hook()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _shutdown_hook(self) -> None:
        # Every plugin's shutdown runs even when one fails: pluggy stops at
        # the first exception, so call the implementations one by one.
        for impl in reversed(self.pm.hook.shutdown.get_hookimpls()):
            if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
                continue
            try:
                impl.function(**{a: self for a in impl.argnames})
            except Exception:
                log.exception("shutdown hook of plugin %s", impl.plugin_name)

    async def _report_stats(self) -> None:
        interval = self.config.server.stats_interval
        if not interval:
            return
        while True:
            await asyncio.sleep(interval)
            snapshot = self.stats()
            log.debug("stats %s", snapshot.log_fields())
            self.pm.hook.stats(server=self, stats=snapshot)
