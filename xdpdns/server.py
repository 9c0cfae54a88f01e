"""The server's life.

configuration -> plugins -> (XDP mode: privileges and interface checked) ->
zone image, source ACL (address_rules hooks), DNS cookie secrets
(cookie_secrets hook) and response rate limiting (rrl_settings hook) ->
engine -> native UDP
workers and the TCP listener on the same
addresses and ports -> (XDP mode: program attached, AF_XDP workers, ports
redirected; see xdpdns/xdp.py) -> control socket -> startup hook -> one
"ready" log line -> wait for SIGTERM or SIGINT (SIGHUP or `xdpdns reload`
meanwhile: the configuration and zones read again and published, see
Server.reload and xdpdns/publication.py) -> shutdown hook -> XDP
program detached first (the kernel's stack and the socket-mode listeners
take over) -> control socket, listeners and workers stopped -> exit 0.

In XDP mode the socket-mode UDP workers and the TCP listener keep running:
they answer TCP/53, and whatever the XDP program passes to the kernel
(NOTIFY, UPDATE, fragments, queries to addresses it does not take).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Mapping

import dns.name

from xdpdns import dnstap, limits, privileges
from xdpdns.acl import Acl
from xdpdns.config import Config, ConfigError, ListenAddress, default_control_socket
from xdpdns.control import ControlError, ControlServer
from xdpdns.counts import summed
from xdpdns.engine import DnstapStats, Engine, ImageInfo, JournalInfo, TcpStats, WorkerStats
from xdpdns.hookspecs import CookieSecrets, RrlSettings
from xdpdns.image import ZoneLoadError, recompile
from xdpdns.metrics import MetricsServer
from xdpdns.notify import Notifier
from xdpdns.plugins import PluginError
from xdpdns.publication import Publication, ReloadRefused, load_publication, publish
from xdpdns.resolver import Resolver, ResolverStats
from xdpdns.sdnotify import SystemdNotify
from xdpdns.secondary.service import Secondary, ZoneStatus
from xdpdns.secondary.storage import ZoneStore
from xdpdns.xdp import XdpMode, XdpStats

log = logging.getLogger("xdpdns.server")


@dataclass(frozen=True)
class ServerStats:
    udp: WorkerStats  # summed over the workers
    workers: tuple[WorkerStats, ...]
    tcp: TcpStats
    xdp: XdpStats | None = None  # XDP mode only
    resolver: ResolverStats | None = None  # when plugins claim names
    dnstap: DnstapStats | None = None  # when [dnstap] is on
    secondary: tuple[ZoneStatus, ...] = ()  # the secondary zones
    journals: tuple[tuple[str, JournalInfo], ...] = ()  # zones that keep changes

    def log_fields(self) -> str:
        parts = [
            f"{f.name}={getattr(self.udp, f.name)}"
            for f in fields(self.udp)
            if not isinstance(getattr(self.udp, f.name), Mapping)
        ]
        parts += [f"tcp_{f.name}={getattr(self.tcp, f.name)}" for f in fields(self.tcp)]
        if self.xdp is not None:
            parts += [
                f"xdp_{name}={self.xdp.total(name)}"
                for name in (
                    "received",
                    "answered",
                    "dropped",
                    "bad_checksum",
                    "malformed",
                    "tx_full",
                )
            ]
            parts.append(f"xdp_denied={sum(c.denied for c in self.xdp.cpus)}")
            parts.append(f"xdp_answered_in_xdp={sum(c.answered_in_xdp for c in self.xdp.cpus)}")
            # The workers' and the program's: one limit, counted where answered.
            limited = self.xdp.total("limited") + sum(c.rate_limited for c in self.xdp.cpus)
            slipped = self.xdp.total("slipped") + sum(c.slipped for c in self.xdp.cpus)
            parts += [f"xdp_limited={limited}", f"xdp_slipped={slipped}"]
        if self.resolver is not None:
            parts += [
                f"resolver_{f.name}={getattr(self.resolver, f.name)}" for f in fields(self.resolver)
            ]
        if self.dnstap is not None:
            parts += [
                f"dnstap_{name}={getattr(self.dnstap, name)}"
                for name in ("events", "written", "lost_full", "lost_unconnected")
            ]
        return " ".join(parts)

    def as_dict(self) -> dict:
        """The JSON of the control socket's "stats" request."""
        return {
            "udp": asdict(self.udp),
            "udp_workers": [asdict(w) for w in self.workers],
            "tcp": asdict(self.tcp),
            "xdp": self.xdp.as_dict() if self.xdp is not None else None,
            "resolver": asdict(self.resolver) if self.resolver is not None else None,
            "dnstap": asdict(self.dnstap) if self.dnstap is not None else None,
            "secondary": [asdict(z) for z in self.secondary],
            "journals": [
                {
                    "zone": zone,
                    "changes": j.depth,
                    "bytes": j.bytes,
                    "oldest_serial": j.oldest_serial,
                }
                for zone, j in self.journals
            ],
        }


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    message: str
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """The JSON of the control socket's "reload" request."""
        return {"ok": self.ok, "message": self.message, "warnings": list(self.warnings)}


# After a re-signing reload that failed, the next try (the signatures made
# last time still hold for at least `refresh` seconds).
RESIGN_RETRY = 3600.0
RESIGN_POLL = 60.0


def _restart_only_changes(old: Config, new: Config) -> list[str]:
    """The sections that changed and that a reload cannot apply: listeners,
    workers and the control socket, XDP mode, the resolver's rings, the
    metrics endpoint and dnstap."""
    return [
        name
        for name in ("server", "xdp", "resolver", "metrics", "dnstap")
        if getattr(old, name) != getattr(new, name)
    ]


def _sum_stats(workers: list[WorkerStats]) -> WorkerStats:
    total: dict = {}
    for f in fields(WorkerStats):
        values = [getattr(w, f.name) for w in workers]
        mappings = bool(values) and isinstance(values[0], Mapping)
        total[f.name] = summed(values) if mappings else sum(values)
    return WorkerStats(**total)


def _default_cookies(cookies: CookieSecrets) -> bool:
    return cookies.current is not None and cookies.previous is None and not cookies.require


def _describe_cookies(cookies: CookieSecrets) -> str:
    """For the log: never the secrets themselves."""
    if cookies.current is None:
        return "off"
    return (
        f"on previous_secret={'yes' if cookies.previous else 'no'} "
        f"require={'yes' if cookies.require else 'no'}"
    )


def _describe_rrl(rrl: RrlSettings) -> str:
    return (
        f"rate={rrl.rate} nxdomain_rate={rrl.nxdomain_rate} "
        f"errors_rate={rrl.errors_rate} nodata_rate={rrl.nodata_rate} "
        f"referrals_rate={rrl.referrals_rate} window={rrl.window} slip={rrl.slip} "
        f"ipv4_prefix={rrl.ipv4_prefix} ipv6_prefix={rrl.ipv6_prefix} "
        f"exempt={len(rrl.exempt)} table_size={rrl.table_size}"
    )


# How often the log of limited prefixes reads the workers' event rings
# (each holds 64 events: a second of new limited buckets is plenty).
RRL_LOG_INTERVAL = 1.0


class RrlLog:
    """Log lines for limited prefixes: at most one per prefix per window
    (the engine already sends at most one event per bucket per window; a
    prefix has a bucket per kind and name)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._last: dict = {}  # prefix -> monotonic time of its line

    def lines(self, events, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        # Forget prefixes whose window has passed: bounded by the prefixes
        # limited in one window.
        self._last = {p: t for p, t in self._last.items() if now - t < self.window}
        result = []
        for ev in events:
            if ev.prefix in self._last:
                continue
            self._last[ev.prefix] = now
            result.append(f"rrl limiting prefix={ev.prefix} kind={ev.kind}")
        return result


class Server:
    """One serving process.  Plugins get it in the lifecycle hooks.

    Public attributes: ``config``, ``addresses`` (the bound ListenAddress
    list, with the ports the kernel chose for port 0), ``zones`` (the served
    origins), ``image_info``, ``acl`` (the source ACL in force) and ``rrl``
    (the rate limiting in force, None when off).
    """

    def __init__(self, config: Config, pm, reread: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.pm = pm
        # How a reload reads the configuration again: as the command line
        # read it at start (its file and options); None: the same Config,
        # so that the zone files and plugins' sources are read again.
        self._reread = reread
        self._publication: Publication | None = None
        self._reloading: asyncio.Lock | None = None
        self._notifier: Notifier | None = None
        self.addresses: tuple[ListenAddress, ...] = ()
        self.zones: tuple[dns.name.Name, ...] = ()
        self.image_info: ImageInfo | None = None
        self.acl: Acl | None = None
        self.rrl: RrlSettings | None = None
        self._engine: Engine | None = None
        self._xdp: XdpMode | None = XdpMode(config.xdp) if config.xdp.enabled else None
        self._stop: asyncio.Event | None = None
        self._control: ControlServer | None = None
        self._resolver: Resolver | None = None
        self._systemd = SystemdNotify()
        self._failure: str | None = None  # a worker that stopped for an error
        self.reloads = {"ok": 0, "failed": 0}  # reloads by result, for metrics
        self._metrics: MetricsServer | None = None
        self._store = ZoneStore(config.server.storage)
        self._secondary = Secondary(self._store, self.update_zones)
        # The serials of zones signed on load as kept in storage (None:
        # storage cannot be used for them).
        self._kept_serials: dict[dns.name.Name, int] | None = {}
        self._notify_hook = False  # the resolver has the NOTIFY hook
        self._owner: tuple[int, int] | None = None  # who storage belongs to
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> int:
        """Serves until SIGTERM or SIGINT; returns the exit status (0, or 1
        when a worker thread stopped for an error).

        Raises ZoneLoadError for broken zones and OSError for addresses that
        cannot be bound, before anything was started.
        """
        return asyncio.run(self._main())

    def stats(self) -> ServerStats:
        workers = self._engine.worker_stats() if self._engine else []
        return ServerStats(
            _sum_stats(workers),
            tuple(workers),
            self._engine.tcp_stats() if self._engine else TcpStats(),
            self._xdp.stats() if self._xdp else None,
            ResolverStats(**vars(self._resolver.stats)) if self._resolver else None,
            self._engine.dnstap_stats() if self._engine else None,
            tuple(self._secondary.status()),
            tuple((zone, j) for zone, j in self.zone_journals() if j.depth),
        )

    @property
    def xdp_info(self):
        """What XDP mode ended up with (an XdpInfo), None in socket mode."""
        return self._xdp.info if self._xdp else None

    def _load_signed_serials(self) -> dict[dns.name.Name, int]:
        """The serials that the zones signed on load were last served with
        (storage), which their serials follow after a restart."""
        origins = [z.origin for z in self.config.zones if z.signing is not None]
        if not origins or not self._serial_store_ready():
            return {}
        self._kept_serials = self._store.load_serials(origins)
        return dict(self._kept_serials)

    def _serial_store_ready(self) -> bool:
        """Whether storage takes the serials of zones signed on load: made
        once; when it cannot be, said once."""
        if self._kept_serials is None:
            return False
        try:
            self._store.prepare(self._owner)
        except OSError as exc:
            log.warning(
                "%s; the serials of zones signed on load are not kept, and after a "
                "restart they start from the zone files' again",
                exc,
            )
            self._kept_serials = None
            return False
        return True

    def _keep_signed_serials(self, publication: Publication) -> None:
        kept = self._kept_serials
        signed = publication.compiled.signed
        if kept is None or not signed:
            return
        if not self._store.directory.is_dir() and not self._serial_store_ready():
            return
        for zone in signed:
            serial = zone.report.serial
            if kept.get(zone.origin) == serial:
                continue
            try:
                self._store.save_serial(zone.origin, serial)
            except OSError as exc:
                log.warning("zone %s: its serial cannot be kept in storage: %s", zone.origin, exc)
                continue
            kept[zone.origin] = serial

    def _adopt(self, publication: Publication) -> None:
        """What the server tells about what it publishes."""
        self._keep_signed_serials(publication)
        self._publication = publication
        self.zones = publication.compiled.zones
        self.image_info = publication.compiled.image.info
        self.acl = publication.acl
        self.rrl = publication.rrl

    @staticmethod
    def _log_publication(publication: Publication) -> None:
        if publication.acl.denies_anything:
            log.info("acl %s", publication.acl.describe())
        # Like the ACL's line: only what differs from the default (on,
        # answering every client) is worth a line at info.
        log.log(
            logging.DEBUG if _default_cookies(publication.cookies) else logging.INFO,
            "cookies %s",
            _describe_cookies(publication.cookies),
        )
        if publication.rrl is not None:
            log.info("rrl on %s", _describe_rrl(publication.rrl))

    # ---- reload ----------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Reads the configuration again and publishes what it says: zones,
        identity, overrides and claims (a new image), the source ACL, the
        cookie secrets and rate limiting, each swapped at once for every
        worker; answering never stops.  Anything wrong (a broken zone file,
        a bad key, a plugin that raises) changes nothing: the server keeps
        what it had, and the result says why.  [server], [xdp] and
        [resolver] take effect at the next start only (a warning says
        which changed).  One reload at a time; SIGHUP and `xdpdns reload`
        both come here."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            start = time.monotonic()
            loop = asyncio.get_running_loop()
            self._systemd.reloading()
            # Compiling a large zone set takes seconds: not in the event loop.
            try:
                result = await loop.run_in_executor(None, self._reload_sync)
            except (
                ConfigError,
                ZoneLoadError,
                PluginError,
                ReloadRefused,
                OSError,
                ValueError,
            ) as exc:
                result = ReloadResult(
                    False, f"reload failed, still serving what was loaded before: {exc}"
                )
            except Exception as exc:  # a plugin's bug: logged whole, the server goes on
                log.exception("reload")
                result = ReloadResult(
                    False,
                    f"reload failed, still serving what was loaded "
                    f"before: {type(exc).__name__}: {exc}",
                )
            self.reloads["ok" if result.ok else "failed"] += 1
            if result.ok:
                log.info("%s in %.3fs", result.message, time.monotonic() - start)
                for warning in result.warnings:
                    log.warning("reload: %s", warning)
                if self._xdp is not None:
                    self._xdp.log_answers()
                if self._notifier is not None:
                    self._notifier.zones_published(self._notify_zones())
                self._each_hook("reload")
            else:
                log.error("%s", result.message)
            # Serving either way: the new data, or what it had.
            self._systemd.ready(
                self._status() if result.ok else f"{self._status()}; last reload failed"
            )
            return result

    async def _control_reload(self) -> dict:
        return (await self.reload()).as_dict()

    def _reload_sync(self) -> ReloadResult:
        engine = self._engine
        if engine is None or self._publication is None:
            return ReloadResult(False, "reload failed: the server is not running")
        new = self._reread() if self._reread is not None else self.config
        warnings = [
            f"[{name}] changed: it takes effect when the server restarts"
            for name in _restart_only_changes(self.config, new)
        ]
        # What needs a restart stays as it was started with.
        new = dataclasses.replace(
            new,
            server=self.config.server,
            xdp=self.config.xdp,
            resolver=self.config.resolver,
            metrics=self.config.metrics,
        )
        # This thread is the only one that publishes (one reload at a time):
        # the image being served stays until publish, below.
        hooks = self._publication.hooks if self._resolver else []
        self._secondary.configure(new.zones, self._owner, new.keys)
        try:
            publication = load_publication(
                self.pm,
                new,
                hooks,
                engine.published_image(),
                self._secondary,
                self._notify_hook,
                dict(self._kept_serials or {}),
            )
            publish(engine, publication, self._publication)
        except BaseException:
            self._secondary.rollback()
            raise
        asyncio.run_coroutine_threadsafe(self._secondary_commit(), self._loop)
        if not self._notify_hook and any(z.secondary for z in new.zones):
            warnings.append(
                "the server started without secondary zones: NOTIFY is answered NOTIMP "
                "until it restarts, and its secondary zones refresh on their SOA timers"
            )
        if self._resolver is not None:
            self._resolver.set_claims(publication.claims, publication.hooks)
        self.config = new
        self._adopt(publication)
        info = publication.compiled.image.info
        return ReloadResult(
            True,
            f"reloaded zones={len(self.zones)} "
            f"records={info.records} overrides={info.overrides} "
            f"claims={len(publication.claims)}",
            tuple(warnings),
        )

    async def _secondary_commit(self) -> None:
        self._secondary.commit()

    # ---- secondary zones ---------------------------------------------------------

    async def update_zones(self, changes, keep=None) -> None:
        """Publishes new versions of some zones (xdpdns/secondary/):
        ``changes`` maps an origin to make(served image) -> its source (a
        zone not served yet is added), or is prepare() -> (that mapping,
        origins of zones to drop), called first in the publishing thread;
        every other zone is copied out of the served image, so no file or
        plugin is read again.  ``keep(published image)`` runs after in the
        same thread.  ZoneLoadError, and nothing changes, when the new
        versions do not compile (or what prepare raises).  One at a time
        with reloads."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._update_sync, changes, keep)
        if self._notifier is not None:
            self._notifier.zones_published(self._notify_zones())

    def _notify_zones(self) -> list:
        """The zones NOTIFY goes out for: the configured ones and the
        members of catalogs."""
        return list(self.config.zones) + self._secondary.member_configs()

    def _update_sync(self, changes, keep) -> None:
        engine, previous = self._engine, self._publication
        if engine is None or previous is None:
            raise RuntimeError("the server is not serving")
        removed: frozenset = frozenset()
        if callable(changes):
            changes, removed = changes()
        served = engine.published_image()
        compiled = recompile(
            previous.compiled.inputs,
            served,
            {o: make(served) for o, make in changes.items()},
            removed,
        )
        if compiled.image is None:
            raise ZoneLoadError(compiled.problems)
        for problem in compiled.warnings:
            log.warning("%s", problem)
        # Zones signed on load were copied with their signatures: their
        # re-signing stays due when it was.
        compiled.signed = previous.compiled.signed
        publication = dataclasses.replace(previous, compiled=compiled)
        publish(engine, publication, previous)
        self._adopt(publication)
        if keep is not None:
            keep(engine.published_image())

    def stop(self) -> None:
        """Asks the server to stop (safe from the event loop's thread)."""
        if self._stop is not None:
            self._stop.set()

    async def _main(self) -> int:
        who = privileges.run_as(self.config.server.user, self.config.server.group)
        if who is not None:
            privileges.check_root(who)
        srv = self.config.server
        # Now, not at the connection that finds no descriptor left.  XDP
        # mode's "all" queues: at most one a CPU.
        xdp_queues = (self.config.xdp.queues or os.cpu_count() or 1) if self._xdp else 0
        limits.ensure_open_files(srv.tcp_max_connections, srv.udp_workers + xdp_queues)
        if self._xdp is not None:
            # Before the zones are compiled: a missing privilege or a typo in
            # the interface name should not wait for a large zone set.
            self._xdp.check()
        self._owner = (who.uid, who.gid) if who is not None else None
        self._secondary.configure(self.config.zones, self._owner, self.config.keys)
        self._notify_hook = any(z.secondary for z in self.config.zones)
        # Read as the user it will run as: a file that a reload could not
        # read fails now, not later.
        served = self._load_signed_serials()
        with privileges.acting_as(who):
            publication = load_publication(
                self.pm,
                self.config,
                secondary=self._secondary,
                notify=self._notify_hook,
                served=served,
            )
        self._adopt(publication)
        claims = publication.claims
        with Engine() as engine:
            self._engine = engine
            # Before any listener: no query is answered under no ACL and
            # every server cookie is made with the secret the plugins
            # decided on.  XDP mode's start puts the same ACL into the
            # program's maps.
            publish(engine, publication)
            self._log_publication(publication)
            # Before the workers, which keep their deferred queries in it.
            if claims or self._notify_hook:
                res = self.config.resolver
                hooks = len(publication.hooks) + self._notify_hook
                engine.resolver_start(
                    res.ring_size, res.cache_size if res.cache_max_ttl else 0, hooks, res.timeout
                )
                log.info(
                    "resolver claims=%d hooks=%d timeout=%g cache_max_ttl=%d ring_size=%d",
                    len(claims),
                    hooks,
                    res.timeout,
                    res.cache_max_ttl,
                    res.ring_size,
                )
            # Before the workers, which take their rings from it.
            if self.config.dnstap.socket is not None:
                dnstap.start(engine, self.config.dnstap)
            try:
                # TCP first, so that port 0 gets one kernel-chosen port that
                # UDP then shares.
                ports = engine.tcp_start(
                    [(a.host, a.port) for a in srv.listen],
                    workers=srv.tcp_workers,
                    max_connections=srv.tcp_max_connections,
                    max_client_connections=srv.tcp_max_client_connections,
                    idle_timeout=srv.tcp_idle_timeout,
                    io_timeout=srv.tcp_io_timeout,
                    max_queries=srv.tcp_max_queries,
                    lifetime=srv.tcp_lifetime,
                    max_transfers=srv.tcp_max_transfers,
                )
                bound = [ListenAddress(a.host, port) for a, port in zip(srv.listen, ports)]
                engine.udp_start([(a.host, a.port) for a in bound], srv.udp_workers)
                if self._xdp is not None:
                    self._xdp.start(engine)
            except BaseException:
                engine.tcp_stop()
                raise
            self.addresses = tuple(bound)
            if claims or self._notify_hook:
                notify = [("xdpdns-notify", self._secondary.answer_notify)]
                self._resolver = Resolver(
                    engine,
                    self.pm,
                    claims,
                    self.config.resolver,
                    notify if self._notify_hook else [],
                )
                self._resolver.start()
            self._notifier = Notifier(engine)
            try:
                await self._start_control()
                await self._start_metrics()
                if who is not None:
                    self._drop_privileges(who)
                # Secondaries hear of the zones as served from now on.
                self._notifier.zones_published(self._notify_zones())
                self._loop = asyncio.get_running_loop()
                self._secondary.start()
                await self._serve()
            finally:
                await self._secondary.stop()
                await self._notifier.stop()
                if self._reloading is not None:
                    async with self._reloading:
                        pass  # a reload under way finishes before the engine goes
                if self._xdp is not None:
                    self._xdp.stop()
                if self._control is not None:
                    await self._control.stop()
                if self._metrics is not None:
                    await self._metrics.stop()
                # Before the workers stop: no hook thread calls the engine
                # after this.
                if self._resolver is not None:
                    self._resolver.stop()
                final = self.stats()
                engine.tcp_stop()
                engine.udp_stop()
                engine.dnstap_stop()  # after every worker: what they logged goes out
                self.pm.hook.stats(server=self, stats=final)
                log.info("stopped %s", final.log_fields())
                self._engine = None
        return 1 if self._failure is not None else 0

    def _drop_privileges(self, who: privileges.RunAs) -> None:
        """Becomes `who` for good, now that everything needing root is set
        up.  Reloads and transfers run in the default executor's threads:
        a new executor's threads start from this thread, with what it kept."""
        xdp = self._xdp is not None
        privileges.drop(who, xdp)
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(thread_name_prefix="xdpdns")
        )
        log.info(
            "running as %s%s",
            who,
            " with CAP_BPF and CAP_NET_ADMIN (XDP maps)" if xdp else " without capabilities",
        )

    async def _start_metrics(self) -> None:
        """The Prometheus endpoint of [metrics] listen, if any: bound before
        the server gives up root, so that any port will do."""
        listen = self.config.metrics.listen
        if listen is None:
            return
        metrics = MetricsServer.for_server(listen.host, listen.port, self)
        try:
            await metrics.start()
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot serve metrics on {listen}: {exc.strerror or exc}"
            ) from None
        self._metrics = metrics
        log.info(
            "metrics on http://%s/metrics",
            f"[{listen.host}]:{metrics.port}"
            if ":" in listen.host
            else f"{listen.host}:{metrics.port}",
        )

    def zone_serials(self) -> list[tuple[str, int]]:
        """(zone, SOA serial) of every zone served now."""
        return self._each_zone(lambda engine, zone: engine.zone_serial(zone))

    def zone_journals(self) -> list[tuple[str, JournalInfo]]:
        """(zone, its IXFR journal) of every zone served now."""
        return self._each_zone(lambda engine, zone: engine.zone_journal(zone))

    def _each_zone(self, read) -> list:
        """(zone, read(engine, zone)) for every zone served now, where it
        is not None."""
        engine = self._engine
        if engine is None:
            return []
        out = []
        for zone in self.zones:
            value = read(engine, zone)
            if value is not None:
                out.append((zone.to_text(), value))
        return out

    async def _start_control(self) -> None:
        """Serves `xdpdns stats` on the control socket.  A default path that
        another server already serves is left to it (a warning); a path the
        configuration names must be ours."""
        configured = self.config.server.control_socket
        path = Path(configured) if configured is not None else default_control_socket()
        control = ControlServer(
            path, {"stats": lambda: self.stats().as_dict(), "reload": self._control_reload}
        )
        try:
            await control.start()
        except ControlError as exc:
            if configured is not None:
                raise OSError(str(exc)) from None
            log.warning("%s; `xdpdns stats` needs --control-socket for this server", exc)
            return
        self._control = control

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        reloads: set[asyncio.Task] = set()

        def on_sighup() -> None:
            task = loop.create_task(self.reload())
            reloads.add(task)  # held until done: the loop keeps weak references
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            try:
                self.pm.hook.startup(server=self)
            except BaseException:
                self._shutdown_hook()
                raise
            xdp = ""
            if self._xdp is not None and self._xdp.info is not None:
                info = self._xdp.info
                xdp = f" xdp={info.interface} xdp_queues={info.queues} xdp_mode={info.mode}"
            control = f" control_socket={self._control.path}" if self._control else ""
            log.info(
                "ready listen=%s zones=%d udp_workers=%d%s%s",
                ",".join(str(a) for a in self.addresses),
                len(self.zones),
                self.config.server.udp_workers,
                xdp,
                control,
            )
            self._systemd.ready(self._status())
            reporter = asyncio.create_task(self._report_stats())
            rrl_log = asyncio.create_task(self._log_rrl())
            watchdog = asyncio.create_task(self._watchdog())
            workers = asyncio.create_task(self._watch_workers())
            tap = asyncio.create_task(self._watch_dnstap())
            resign = asyncio.create_task(self._resign())
            await self._stop.wait()
            resign.cancel()
            reporter.cancel()
            rrl_log.cancel()
            watchdog.cancel()
            workers.cancel()
            tap.cancel()
            log.info("stopping")
            self._systemd.stopping()
            self._shutdown_hook()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for task in list(reloads):
                await task  # a reload under way finishes before the engine goes

    def _status(self) -> str:
        """One line for systemctl status."""
        return (
            f"serving {len(self.zones)} zone{'s' if len(self.zones) != 1 else ''} on "
            + ", ".join(str(a) for a in self.addresses)
        )

    async def _watch_workers(self, interval: float = 0.5) -> None:
        """Stops the server, exit status 1, when a worker thread stopped
        for an error: its socket or queue would go on taking its share of
        the queries with nobody to answer them.  A supervisor (systemd's
        Restart=on-failure) starts it again."""
        while self._engine is not None:
            failure = self._engine.failure()
            if failure is not None:
                self._failure = failure
                log.error(
                    "%s; stopping: that worker's share of the queries would go unanswered", failure
                )
                if self._stop is not None:
                    self._stop.set()
                return
            await asyncio.sleep(interval)

    def _resign_interval(self) -> float | None:
        """Seconds until a zone signed on load must be signed again: its
        first signature expires within its refresh period then (every
        reload moves that); None when no zone is."""
        signed = self._publication.compiled.signed if self._publication is not None else ()
        if not signed:
            return None
        return max(0.0, min(z.resign_at for z in signed) - time.time())

    async def _resign(self) -> None:
        """Signs the zones signed on load again before their signatures
        expire, by reloading: the signatures due for refresh are made
        again, with those of what changed meanwhile, and the others kept.
        Looked at every RESIGN_POLL seconds, so that a reload that brings
        a zone with a shorter validity is seen in time; an hour later
        again when the re-signing reload fails, while the old signatures
        still hold."""
        retry_at = 0.0
        while True:
            wait = self._resign_interval()
            if wait is not None and wait <= 0 and time.time() >= retry_at:
                log.info("re-signing the zones signed on load before their signatures expire")
                result = await self.reload()
                retry_at = 0.0 if result.ok else time.time() + RESIGN_RETRY
                continue
            await asyncio.sleep(min(wait, RESIGN_POLL) if wait else RESIGN_POLL)

    async def _watch_dnstap(self) -> None:
        """Logs the dnstap collector's comings and goings."""
        if self.config.dnstap.socket is None:
            return
        watch = dnstap.DnstapWatch(str(self.config.dnstap.socket))
        while self._engine is not None:
            stats = self._engine.dnstap_stats()
            for level, line in watch.lines(stats) if stats is not None else ():
                log.log(level, line)
            await asyncio.sleep(dnstap.WATCH_INTERVAL)

    async def _watchdog(self) -> None:
        """WATCHDOG=1 at half of systemd's interval, from the event loop:
        a loop that stops turning (stats, reloads, the control socket
        stuck) gets the service restarted."""
        interval = self._systemd.watchdog_interval
        if interval is None:
            return
        while True:
            self._systemd.watchdog()
            await asyncio.sleep(interval)

    def _shutdown_hook(self) -> None:
        self._each_hook("shutdown")

    def _each_hook(self, name: str) -> None:
        # Every plugin's implementation runs even when one fails: pluggy
        # stops at the first exception, so call them one by one.
        for impl in reversed(getattr(self.pm.hook, name).get_hookimpls()):
            if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
                continue
            try:
                impl.function(**{a: self for a in impl.argnames})
            except Exception:
                log.exception("%s hook of plugin %s", name, impl.plugin_name)

    async def _log_rrl(self) -> None:
        if self.rrl is None or self._engine is None:
            return
        rrl_log = RrlLog(self.rrl.window)
        while True:
            await asyncio.sleep(RRL_LOG_INTERVAL)
            for line in rrl_log.lines(self._engine.rrl_events()):
                log.warning(line)

    async def _report_stats(self) -> None:
        interval = self.config.server.stats_interval
        if not interval:
            return
        while True:
            await asyncio.sleep(interval)
            snapshot = self.stats()
            log.debug("stats %s", snapshot.log_fields())
            self.pm.hook.stats(server=self, stats=snapshot)
