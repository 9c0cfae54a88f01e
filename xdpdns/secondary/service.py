"""The secondary service: zones served as their primaries transfer them.

Each ``[[zone]]`` with ``primaries`` has a task in the server's event loop
that runs its SOA timers (RFC 1035 3.3.13, RFC 1996):

- at start, on NOTIFY, and every REFRESH seconds it asks the primaries in
  turn (the one that sent a NOTIFY first) for their SOA serial, and when
  one is newer transfers the zone: IXFR from our serial when we have a
  version (the differences applied to the served zone, native/zone/copy.c),
  else AXFR; an IXFR whose differences do not apply is asked again as AXFR;
- after a failure it tries again after RETRY seconds (a zone never
  transferred: after a few seconds, doubling);
- a zone not refreshed for EXPIRE seconds is expired: SERVFAIL, as BIND,
  Knot and NSD answer, until a transfer succeeds.

A new version is published by the server (Server.update_zones), with every
other zone copied out of the served image: nothing else is read again, and
a transfer that fails or brings a broken zone changes nothing served.  The
zone is then kept on disk (storage.py), so a restart serves it at once.

A catalog zone (``[[catalog]]``, RFC 9432) is a secondary zone whose new
versions also say which zones are its members (catalog.py): members added
are published with it (SERVFAIL until their first transfer) and get a task
of their own, with the catalog's primaries and the ACL of the template their
group selects; members removed are published without, so that they are
REFUSED, and their copies on disk are deleted.  A catalog version whose
content is broken is refused like a broken transfer.

NOTIFY reaches :meth:`Secondary.answer_notify` through the server's
resolver hook (native/answer/answer.c defers every NOTIFY to it, once the
TSIG of a signed one verified): NOERROR from the zone's primaries (or
``allow_notify``), NOTAUTH for a zone that is not ours or a sender that
may not, FORMERR for a question that is not the zone's SOA, as Knot
answers; signed with the NOTIFY's key when it was signed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Mapping, Sequence

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.tsig

from xdpdns.config import ListenAddress, ZoneConfig
from xdpdns.engine import Image
from xdpdns.hookspecs import ZoneAcl, ZoneData
from xdpdns.image import (
    AnySource,
    ZoneCopy,
    ZoneExpired,
    ZoneLoadError,
    carried,
    compile_sources,
)
from xdpdns.secondary import client
from xdpdns.secondary.catalog import Catalog, CatalogError, Member
from xdpdns.secondary.storage import Timers, ZoneStore
from xdpdns.secondary.xfr import (
    Full,
    Incremental,
    NeedsFull,
    Record,
    UpToDate,
    XfrError,
    serial_newer,
)
from xdpdns.tsig import TsigKey, entry_holds, keyring

log = logging.getLogger("xdpdns.secondary")

FIRST_RETRY = 2.0  # seconds before a zone never transferred is asked again ...
FIRST_RETRY_MAX = 300.0  # ... doubling up to this
# Without an SOA yet (RFC 1912 2.2's suggestions for the others).
DEFAULT_TIMERS = (3600, 600, 1209600)  # refresh, retry, expire


@dataclass(frozen=True)
class ZoneStatus:
    """What `xdpdns stats` shows of one secondary zone."""

    zone: str
    serial: int | None  # served; None: no data (never transferred, or expired)
    expired: bool
    refreshed: float | None  # UNIX time the primaries last agreed
    next_refresh: float | None  # UNIX time of the next SOA query
    expires: float | None  # UNIX time it expires unless refreshed
    last_transfer: dict | None  # kind, primary, serial, records, bytes, seconds, at
    last_error: str | None
    catalog: str | None = None  # the catalog a member zone comes from


def _soa_timers(records: Sequence[Record], origin) -> tuple[int, int, int] | None:
    for r in records:
        if r.rdata.rdtype == dns.rdatatype.SOA and r.name == origin:
            return r.rdata.refresh, r.rdata.retry, r.rdata.expire
    return None


# Publishes new versions: {origin: make(served image) -> source} (new
# zones too), or what prepare() returns, (that mapping, the zones to
# publish without), called in the publisher's thread with no other
# publication under way; after publishing it calls keep(published image)
# in the same thread.
Changes = dict[dns.name.Name, Callable[[Image], AnySource]]
Publisher = Callable[
    [
        Changes | Callable[[], tuple[Changes, frozenset[dns.name.Name]]],
        Callable[[Image], None] | None,
    ],
    Awaitable[None],
]


def member_config(catalog: ZoneConfig, member: Member) -> ZoneConfig:
    """A member zone of catalog: its primaries, and the template of its
    groups (or the catalog's default) for the rest."""
    template = catalog.catalog.template_for(member.groups) if catalog.catalog else None
    return ZoneConfig(
        None,
        member.zone,
        template.acl if template is not None else ZoneAcl(),
        template.notify if template is not None else (),
        None,
        catalog.primaries,
        catalog.allow_notify,
        None,
        catalog.origin,
    )


def with_members(
    configured: Mapping[dns.name.Name, ZoneConfig], catalogs: Mapping[dns.name.Name, Catalog]
) -> dict[dns.name.Name, ZoneConfig]:
    """The configured secondary zones and the members of their catalogs.  A
    member that is a configured zone or another catalog's member already
    stays that (logged), unless that catalog hands it over with a coo
    property naming this one (RFC 9432 5.6)."""
    out = dict(configured)
    owners: dict[dns.name.Name, tuple[dns.name.Name, Member]] = {}
    for origin, catalog in catalogs.items():
        for member in catalog.members().values():
            owner = owners.get(member.zone)
            if owner is not None and owner[1].coo == origin:
                log.info(
                    "zone %s: catalog %s hands it over to catalog %s (coo)",
                    member.zone,
                    owner[0],
                    origin,
                )
            elif member.zone in out:
                log.warning(
                    "catalog %s: member %s is %s already: ignored",
                    origin,
                    member.zone,
                    f"a member of catalog {owner[0]}" if owner else "a configured zone",
                )
                continue
            owners[member.zone] = (origin, member)
            out[member.zone] = member_config(configured[origin], member)
    return out


@dataclass
class _CatalogPlan:
    """What a catalog's new version does: computed before it is published,
    carried out once it is."""

    catalog: Catalog
    added: dict[dns.name.Name, "SecondaryZone"]
    removed: frozenset[dns.name.Name]
    changed: dict[dns.name.Name, ZoneConfig]  # members whose template changed


class SecondaryZone:
    def __init__(self, config: ZoneConfig, service: "Secondary") -> None:
        self.config = config
        self.service = service
        self.origin = config.origin
        self.serial: int | None = None
        self.refresh, self.retry, self.expire = DEFAULT_TIMERS
        self.refreshed: float | None = None
        self.expired = True
        self.next_at = 0.0  # loop time of the next refresh
        self.first_retry = FIRST_RETRY
        self.last_transfer: dict | None = None
        self.last_error: str | None = None
        self.preferred: ListenAddress | None = None  # who sent the last NOTIFY
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    # ---- state -------------------------------------------------------------------

    def loaded(self, timers: Timers, expired: bool) -> None:
        """The version kept on disk is served (or was, until it expired)."""
        self.serial = None if expired else timers.serial
        self.refresh, self.retry, self.expire = timers.refresh, timers.retry, timers.expire
        self.refreshed = timers.refreshed
        self.expired = expired

    def status(self, loop_now: float) -> ZoneStatus:
        now = time.time()
        return ZoneStatus(
            self.origin.to_text(),
            self.serial,
            self.expired,
            self.refreshed,
            now + max(0.0, self.next_at - loop_now),
            None if self.refreshed is None or self.expired else self.refreshed + self.expire,
            self.last_transfer,
            self.last_error,
            None if self.config.member_of is None else self.config.member_of.to_text(),
        )

    def _timers(self) -> Timers:
        return Timers(
            self.serial or 0, self.refreshed or 0.0, self.refresh, self.retry, self.expire
        )

    # ---- the task ------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            wait = self.next_at - now
            expire_in = self._expire_in()
            if expire_in is not None:
                wait = min(wait, expire_in)
            if wait > 0:
                # Not cleared here: a NOTIFY that came during the last
                # refresh must start the next one at once.
                try:
                    await asyncio.wait_for(self.wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            if self._expire_in() is not None and self._expire_in() <= 0:
                await self.service.expire_zone(self)
            if loop.time() >= self.next_at or self.wake.is_set():
                self.wake.clear()
                try:
                    await self.refresh_now()
                except Exception:
                    # A bug, not a primary's fault: logged whole; the zone
                    # keeps what it serves and tries again after RETRY.
                    log.exception("zone %s: refresh", self.origin)
                    self._schedule(self.retry)

    def _expire_in(self) -> float | None:
        if self.expired or self.refreshed is None:
            return None
        return self.refreshed + self.expire - time.time()

    def notified(self, serial: int | None, sender: ListenAddress | None) -> None:
        """A NOTIFY came (in the event loop's thread)."""
        if serial is not None and self.serial is not None and serial == self.serial:
            return  # Knot's rule: the same serial changes nothing, timers kept
        self.preferred = sender
        self.wake.set()

    def _schedule(self, seconds: float) -> None:
        # A little jitter: secondaries of one primary spread their queries.
        self.next_at = asyncio.get_running_loop().time() + seconds * random.uniform(0.95, 1.0)

    def _primaries(self) -> list[ListenAddress]:
        primaries = list(self.config.primaries)
        if self.preferred in primaries:
            primaries.remove(self.preferred)
            primaries.insert(0, self.preferred)
        return primaries

    async def refresh_now(self) -> None:
        errors = []
        for primary in self._primaries():
            try:
                if await self._refresh_from(primary):
                    self.last_error = None
                    self.first_retry = FIRST_RETRY
                    self._schedule(self.refresh)
                    return
            except (XfrError, ZoneLoadError) as exc:
                errors.append(str(exc))
        self.last_error = "; ".join(errors)
        if self.serial is None and self.refreshed is None:
            wait, self.first_retry = self.first_retry, min(self.first_retry * 2, FIRST_RETRY_MAX)
        else:
            wait = self.retry
        log.warning(
            "zone %s: refresh failed, next try in %.0fs: %s", self.origin, wait, self.last_error
        )
        self._schedule(wait)

    async def _refresh_from(self, primary: ListenAddress) -> bool:
        theirs = await client.query_soa(primary, self.origin)
        if self.serial is not None and not serial_newer(theirs, self.serial):
            if theirs != self.serial:
                log.warning(
                    "zone %s: %s has serial %d, older than ours (%d)",
                    self.origin,
                    primary,
                    theirs,
                    self.serial,
                )
            self.refreshed = time.time()
            await self.service.keep_timers(self)
            return True
        transfer = await client.transfer(primary, self.origin, self.serial)
        if isinstance(transfer.result, NeedsFull):
            transfer = await client.transfer(primary, self.origin, None)
        if isinstance(transfer.result, UpToDate):
            self.refreshed = time.time()
            await self.service.keep_timers(self)
            return True
        try:
            await self.service.apply(self, transfer)
        except ZoneLoadError as exc:
            if not isinstance(transfer.result, Incremental):
                raise
            log.warning(
                "zone %s: the IXFR from %s does not apply (%s); asking for AXFR",
                self.origin,
                primary,
                exc,
            )
            transfer = await client.transfer(primary, self.origin, None)
            await self.service.apply(self, transfer)
        return True


class Secondary:
    """The secondary zones of one server."""

    def __init__(self, store: ZoneStore, publish: Publisher) -> None:
        self.store = store
        self.publish = publish
        self.zones: dict[dns.name.Name, SecondaryZone] = {}
        # Each catalog zone's content, as served (catalog.py).
        self.catalogs: dict[dns.name.Name, Catalog] = {}
        # configure's undo: the zones, keyring and catalogs before it.
        self._before: tuple[dict, Mapping, dict] | None = None
        self._kept: dict[dns.name.Name, Image] = {}  # loaded from disk, until published
        self._loop: asyncio.AbstractEventLoop | None = None
        # The configuration's TSIG keys, for signed NOTIFY (whose MAC the
        # answering core checked before it handed them over).
        self._keyring: Mapping[dns.name.Name, dns.tsig.Key] = {}

    # ---- configuration ---------------------------------------------------------

    def configure(
        self,
        zones: Sequence[ZoneConfig],
        owner: tuple[int, int] | None = None,
        keys: Iterable[TsigKey] = (),
    ) -> None:
        """Takes the secondary zones and TSIG keys of a (new)
        configuration: new zones are loaded from disk.  Then sources() says
        what to compile, and once it is published commit() starts and stops
        their tasks; rollback() forgets this when it is not.  ``owner``:
        (uid, gid) that storage must belong to (the user the server runs
        as).  OSError when storage cannot be made."""
        wanted = {z.origin: z for z in zones if z.secondary}
        if wanted:
            self.store.prepare(owner)
        self._before = (dict(self.zones), self._keyring, dict(self.catalogs))
        self._keyring = keyring(keys)
        catalogs = {}
        for origin, config in wanted.items():
            if config.catalog is not None:
                catalog = self.catalogs.get(origin) or self._load_catalog(origin)
                if catalog is not None:
                    catalogs[origin] = catalog
        self.catalogs = catalogs
        wanted = with_members(wanted, catalogs)
        zones_now = {}
        for origin, config in wanted.items():
            zone = self.zones.get(origin)
            if zone is None:
                zone = SecondaryZone(config, self)
                self._load_kept(zone)
            zone.config = config
            zones_now[origin] = zone
        self.zones = zones_now

    def commit(self) -> None:
        before = self._before[0] if self._before is not None else {}
        self._before = None
        for origin, zone in before.items():
            if origin not in self.zones:
                self._drop(zone, "no longer a secondary zone")
        self.published()
        if self._loop is None:
            return
        for zone in self.zones.values():
            if zone.task is None:
                zone.task = self._loop.create_task(zone.run())

    def rollback(self) -> None:
        if self._before is not None:
            (self.zones, self._keyring, self.catalogs), self._before = self._before, None
        self.published()

    def _drop(self, zone: SecondaryZone, why: str) -> None:
        """A zone no longer served: its task ends; a member's copy on disk
        goes too (its catalog dropped it)."""
        if zone.task is not None:
            zone.task.cancel()
        if zone.config.member_of is None:
            log.info("zone %s: %s", zone.origin, why)
            return
        self.store.remove(zone.origin)
        log.info(
            "zone %s: %s (was in catalog %s): REFUSED from now on, its copy in %s deleted",
            zone.origin,
            why,
            zone.config.member_of,
            self.store.directory,
        )

    def _load_catalog(self, origin: dns.name.Name) -> Catalog | None:
        """A catalog's content as kept on disk, None when there is none
        that holds (the catalog is then transferred anew)."""
        data = self.store.load_catalog(origin)
        if data is None:
            return None
        try:
            catalog = Catalog.from_json(origin, data)
            catalog.members()
        except (ValueError, CatalogError) as exc:
            log.warning("catalog %s: the content kept on disk cannot be used: %s", origin, exc)
            return None
        return catalog

    def member_configs(self) -> list[ZoneConfig]:
        """The member zones of catalogs, as configured by their templates."""
        return [z.config for z in self.zones.values() if z.config.member_of is not None]

    def _load_kept(self, zone: SecondaryZone) -> None:
        if zone.config.catalog is not None and zone.origin not in self.catalogs:
            # Its members are not known without the content.
            return
        kept = self.store.load(zone.origin)
        if kept is None:
            return
        image, timers = kept
        expired = time.time() - timers.refreshed > timers.expire
        zone.loaded(timers, expired)
        if expired:
            log.warning(
                "zone %s: the copy kept on disk (serial %d) expired while the server was down",
                zone.origin,
                timers.serial,
            )
            image.close()
            return
        log.info("zone %s: serial %d from %s", zone.origin, timers.serial, self.store.directory)
        self._kept[zone.origin] = image

    def sources(self, previous: Image | None) -> list[AnySource]:
        """The secondary zones' sources for a full compile: as ``previous``
        (the image served) has them, else as kept on disk, else with no data."""
        return [self._source(zone.config, previous) for zone in self.zones.values()]

    def _source(self, config: ZoneConfig, served: Image | None) -> AnySource:
        origin, acl = config.origin, config.acl
        label = f"secondary zone {origin}"
        source = carried(origin, served, acl, label)
        if isinstance(source, ZoneExpired) and origin in self._kept:
            source = carried(origin, self._kept[origin], acl, label)
        return source

    def published(self) -> None:
        """The sources were published: what was loaded from disk is served."""
        self._release_kept(list(self._kept))

    # ---- life ------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the zones' tasks (in the event loop, after the first
        publication)."""
        self._loop = asyncio.get_running_loop()
        self.commit()

    async def stop(self) -> None:
        tasks = [z.task for z in self.zones.values() if z.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def status(self) -> list[ZoneStatus]:
        loop_now = self._loop.time() if self._loop is not None else 0.0
        return [z.status(loop_now) for z in self.zones.values()]

    # ---- new versions ----------------------------------------------------------------

    async def apply(self, zone: SecondaryZone, transfer: client.Transfer) -> None:
        """Publishes what a transfer brought; ZoneLoadError (nothing
        changed) when it does not make a zone."""
        result = transfer.result
        origin, acl = zone.origin, zone.config.acl
        label = f"{transfer.kind} of {origin} from {transfer.primary}"
        if isinstance(result, Full):
            records = result.records

            def make(served: Image) -> AnySource:
                return ZoneData(
                    origin,
                    [(r.name, dns.rdataset.from_rdata(r.ttl, r.rdata)) for r in records],
                    label,
                    acl,
                )

            timers = _soa_timers(records, origin)
            count = len(records)
        else:

            def make(served: Image) -> AnySource:
                return ZoneCopy(origin, served, acl, result.deletes, result.adds, label)

            timers = _soa_timers(result.adds, origin)
            count = len(result.deletes) + len(result.adds)
        start = time.monotonic()
        if zone.config.catalog is None:
            await self.publish({origin: make}, lambda image: self._keep(zone, image))
        else:
            await self._publish_catalog(zone, result, make)
        old = zone.serial
        zone.serial = result.serial
        zone.expired = False
        zone.refreshed = time.time()
        if timers is not None:
            zone.refresh, zone.retry, zone.expire = timers
        zone.last_transfer = {
            "kind": transfer.kind if isinstance(result, Full) else "IXFR",
            "incremental": isinstance(result, Incremental),
            "primary": str(transfer.primary),
            "serial": result.serial,
            "records": count,
            "bytes": transfer.bytes,
            "seconds": round(transfer.seconds, 3),
            "at": zone.refreshed,
        }
        await self.keep_timers(zone)
        log.info(
            "zone %s: serial %s -> %d by %s from %s (%s records, %d bytes, "
            "transfer %.3fs, publish %.3fs)",
            origin,
            "none" if old is None else old,
            result.serial,
            "IXFR" if isinstance(result, Incremental) else transfer.kind + " (whole zone)",
            transfer.primary,
            count,
            transfer.bytes,
            transfer.seconds,
            time.monotonic() - start,
        )

    async def _publish_catalog(self, zone: SecondaryZone, result, make) -> None:
        """A catalog's new version and what it does to its members, planned
        and carried out in the publisher's thread, so that a reload sees
        them before or after, never half done."""
        plans: list[_CatalogPlan] = []

        def prepare():
            plan = self._catalog_plan(zone, result)
            plans.append(plan)
            changes = {zone.origin: make}
            for member, config in list(plan.changed.items()) + [
                (o, z.config) for o, z in plan.added.items()
            ]:
                changes[member] = lambda served, c=config: self._source(c, served)
            return changes, plan.removed

        def keep(image: Image) -> None:
            self._keep(zone, image, plans[0])
            self._catalog_commit(zone, plans[0])

        try:
            await self.publish(prepare, keep)
        finally:
            for plan in plans:
                self._release_kept(plan.added)

    def _release_kept(self, origins: Iterable[dns.name.Name]) -> None:
        for origin in origins:
            image = self._kept.pop(origin, None)
            if image is not None:
                image.close()

    def _catalog_plan(self, zone: SecondaryZone, result) -> _CatalogPlan:
        """What a catalog's new version changes; XfrError (nothing
        changes) when its content is broken."""
        catalog = self.catalogs.get(zone.origin, Catalog(zone.origin)).copy()
        if isinstance(result, Full):
            catalog.replace(result.records)
        else:
            catalog.apply(result.deletes, result.adds)
        try:
            catalog.members()
        except CatalogError as exc:
            raise XfrError(str(exc)) from None
        configured = {o: z.config for o, z in self.zones.items() if z.config.member_of is None}
        wanted = with_members(configured, {**self.catalogs, zone.origin: catalog})
        added = {}
        for origin, config in wanted.items():
            if origin not in self.zones:
                added[origin] = SecondaryZone(config, self)
                self._load_kept(added[origin])  # a copy left on disk
        return _CatalogPlan(
            catalog,
            added,
            frozenset(o for o in self.zones if o not in wanted),
            {o: c for o, c in wanted.items() if o in self.zones and self.zones[o].config != c},
        )

    def _catalog_commit(self, zone: SecondaryZone, plan: _CatalogPlan) -> None:
        """The catalog's version is published (in the publisher's thread):
        its members follow, their tasks started and stopped in the loop."""
        self.catalogs[zone.origin] = plan.catalog
        zones = dict(self.zones)
        removed = [zones.pop(origin) for origin in plan.removed]
        for origin, config in plan.changed.items():
            zones[origin].config = config
        zones.update(plan.added)
        self.zones = zones
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._catalog_tasks, zone, plan, removed)

    def _catalog_tasks(
        self, zone: SecondaryZone, plan: _CatalogPlan, removed: list[SecondaryZone]
    ) -> None:
        members = plan.catalog.members()
        for gone in removed:
            self._drop(gone, "removed from its catalog")
        for origin, config in plan.changed.items():
            log.info(
                "zone %s: now as catalog %s configures it (its template or owner changed)",
                origin,
                config.member_of,
            )
        for origin, added in plan.added.items():
            member = members.get(origin)
            log.info(
                "zone %s: added by catalog %s (ID %s, group %s, coo %s)",
                origin,
                zone.origin,
                member.id if member else "-",
                ", ".join(member.groups) if member and member.groups else "none",
                member.coo if member and member.coo else "none",
            )
            if added.task is None:  # a reload's commit may have started it
                added.task = self._loop.create_task(added.run())

    def _keep(
        self, zone: SecondaryZone, published: Image, plan: _CatalogPlan | None = None
    ) -> None:
        """On disk: the zone's data alone, copied out of the image just
        published (in the publisher's thread, while that image is served),
        and a catalog's content; its ACL comes from the configuration when
        it is served again, and the TSIG keys that an ACL names stay out of
        the file."""
        if plan is not None:
            try:
                self.store.save_catalog(zone.origin, plan.catalog.to_json())
            except OSError as exc:
                log.error("catalog %s: its content cannot be kept on disk: %s", zone.origin, exc)
        result = compile_sources([ZoneCopy(zone.origin, published)])
        if result.image is None:
            log.error("zone %s: cannot be kept on disk: %s", zone.origin, result.problems[:1])
            return
        try:
            with result.image as image:
                self.store.save(zone.origin, image, None)
        except OSError as exc:
            log.error("zone %s: cannot be kept on disk: %s", zone.origin, exc)

    async def keep_timers(self, zone: SecondaryZone) -> None:
        loop = asyncio.get_running_loop()
        try:
            # fsync: not in the event loop.
            await loop.run_in_executor(None, self.store.save, zone.origin, None, zone._timers())
        except OSError as exc:
            log.error("zone %s: its timers cannot be kept on disk: %s", zone.origin, exc)

    async def expire_zone(self, zone: SecondaryZone) -> None:
        log.error(
            "zone %s: expired (no refresh for %ds): SERVFAIL until a transfer succeeds",
            zone.origin,
            zone.expire,
        )
        origin, acl = zone.origin, zone.config.acl
        try:
            await self.publish(
                {origin: lambda served: ZoneExpired(origin, acl, f"secondary zone {origin}")}, None
            )
        except ZoneLoadError as exc:
            log.error("zone %s: expiring it failed: %s", origin, exc)
            return
        zone.expired = True
        zone.serial = None

    # ---- NOTIFY ----------------------------------------------------------------------

    def answer_notify(self, queries) -> list[bytes | None]:
        """The resolver hook of NOTIFY messages (in its own thread)."""
        return [self._notify(q) for q in queries]

    def _notify(self, query) -> bytes | None:
        try:
            message = dns.message.from_wire(query.wire, keyring=self._keyring)
        except Exception:
            return None  # unparsable, or its key gone in a reload: SERVFAIL
        response = dns.message.make_response(message)
        response.set_opcode(dns.opcode.NOTIFY)
        question = message.question[0] if message.question else None
        zone = self.zones.get(question.name) if question is not None else None
        sender = query.client_address[0] if query.client_address else None
        if zone is None:
            response.set_rcode(dns.rcode.NOTAUTH)
            # Debug: anyone can send these, and a log line each is theirs to fill.
            log.debug("notify for %s from %s: not a secondary zone here", question.name, sender)
            return response.to_wire()
        key = message.keyname if message.had_tsig else None
        if not _notify_allowed(zone.config, sender, key):
            response.set_rcode(dns.rcode.NOTAUTH)
            signed = f"signed with {key}" if key is not None else "unsigned"
            log.warning("notify for %s from %s (%s): not allowed", zone.origin, sender, signed)
            return response.to_wire()
        if question.rdtype != dns.rdatatype.SOA:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        response.flags |= dns.flags.AA
        serial = None
        for rrset in message.answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset:
                serial = rrset[0].serial
        log.info("notify for %s from %s: serial %s", zone.origin, sender, serial)
        primary = next((p for p in zone.config.primaries if p.host == _host(sender)), None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(zone.notified, serial, primary)
        return response.to_wire()


def _host(sender: str | None) -> str | None:
    return None if sender is None else str(ipaddress.ip_address(sender))


def _notify_allowed(config: ZoneConfig, sender: str | None, key: dns.name.Name | None) -> bool:
    """Whether a NOTIFY from ``sender`` signed with ``key`` (None:
    unsigned) is one the zone takes: as its allow_notify list says, else
    from a primary's address and, where that primary has a key, signed
    with it."""
    if sender is None:
        return False
    address = ipaddress.ip_address(sender)
    if config.allow_notify:
        return any(entry_holds(entry, address, key) for entry in config.allow_notify)
    return any(
        address == ipaddress.ip_address(p.host) and (p.key is None or p.key.name == key)
        for p in config.primaries
    )
