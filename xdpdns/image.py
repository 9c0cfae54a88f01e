"""What goes into the zone image: the zone sources that plugins provide,
what the server says about itself, and the override rules (per-name rules
and blocklists), compiled by the C builder into one image.

Zone files are read natively (libzscanner); dnspython data goes through the
wrapper in wire form.  Every problem found comes back with file and line;
warnings are logged, and any error stops the build with all of them listed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence, Union

import dns.name
import dns.rdataset

from xdpdns.engine import Image, ImageBuilder, Problem, SigningKey, SigningReport
from xdpdns.hookspecs import (
    ZONE_ACL_KINDS,
    Blocklist,
    Claim,
    Identity,
    Override,
    ZoneAcl,
    ZoneData,
    ZoneFile,
    ZoneSource,
)
from xdpdns.tsig import TsigKey

__all__ = [
    "CompileInputs",
    "CompileResult",
    "ZoneCopy",
    "ZoneExpired",
    "carried",
    "SignedZone",
    "ZoneData",
    "ZoneFile",
    "ZoneLoadError",
    "ZoneSource",
    "build_image",
    "collect_overrides",
    "collect_sources",
    "compile_sources",
]

OverrideSource = Union[Override, Blocklist]


@dataclass(frozen=True)
class ZoneCopy:
    """A zone as ``image`` has it (the served image, or one kept on disk),
    less the records ``deletes`` names, plus ``adds``: how a secondary
    zone is carried into a new image and how it takes an incremental
    transfer.  Records are xdpdns.secondary.xfr.Record.  ``image`` must stay
    valid while the copy is compiled."""

    origin: dns.name.Name
    image: Image
    acl: ZoneAcl = ZoneAcl()
    deletes: Sequence = ()
    adds: Sequence = ()
    description: str = ""


@dataclass(frozen=True)
class ZoneExpired:
    """A secondary zone with no data to serve: SERVFAIL for its queries."""

    origin: dns.name.Name
    acl: ZoneAcl = ZoneAcl()
    description: str = ""


AnySource = Union[ZoneFile, ZoneData, ZoneCopy, ZoneExpired]


def carried(
    origin: dns.name.Name, image: Image | None, acl: ZoneAcl, label: str
) -> ZoneCopy | ZoneExpired:
    """The zone as ``image`` has it; with no data when it has none there
    (no image, or a secondary zone not transferred or expired)."""
    if image is not None and image.zone_serial(origin) is not None:
        return ZoneCopy(origin, image, acl, description=label)
    return ZoneExpired(origin, acl, label)


log = logging.getLogger("xdpdns.image")


class ZoneLoadError(Exception):
    """Zones with errors: the message lists every problem, one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = sum(p.is_error for p in problems)
        lines = [str(p) for p in problems]
        lines.append(
            f"zone data has {errors} error{'s' if errors != 1 else ''}; nothing was loaded"
        )
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SignedZone:
    """A zone signed on load, and when it must be signed again."""

    origin: dns.name.Name
    report: SigningReport
    resign_at: int  # UNIX time: its first signature expires `refresh` later

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.resign_at))
        r = self.report
        own = f" (the zone's own: {r.zone_serial})" if r.serial != r.zone_serial else ""
        return (
            f"zone {self.origin} signed: {r.made} signatures made, {r.kept} kept, "
            f"serial {r.serial}{own}; signed again by {when}"
        )


@dataclass(frozen=True)
class CompileInputs:
    """What an image was compiled from but its zones' data: enough to
    compile it again with the zones copied out of it (recompile)."""

    zones: tuple[tuple[dns.name.Name, ZoneAcl, str], ...] = ()  # origin, ACL, label
    identity: Identity | None = None
    overrides: tuple = ()
    claims: tuple = ()
    notify_hook: int | None = None
    keys: tuple[TsigKey, ...] = ()


@dataclass
class CompileResult:
    image: Image | None  # None when there were errors
    problems: list[Problem]
    zones: tuple[dns.name.Name, ...]
    signed: tuple[SignedZone, ...] = ()
    inputs: CompileInputs = CompileInputs()

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


def collect_sources(pm, config) -> list[ZoneSource]:
    """Asks every plugin for its zone sources (the zone_sources hook)."""
    sources: list[ZoneSource] = []
    for provided in pm.hook.zone_sources(config=config):
        for source in provided or ():
            if not isinstance(source, (ZoneFile, ZoneData)):
                raise TypeError(
                    f"a zone_sources hook returned {source!r}; expected "
                    "xdpdns.image.ZoneFile or xdpdns.image.ZoneData"
                )
            sources.append(source)
    return sources


def collect_overrides(pm, config) -> list[OverrideSource]:
    """Asks every plugin for its override rules (the overrides hook), in
    plugin order: where two rules of one kind name the same name, the first
    one wins."""
    rules: list[OverrideSource] = []
    for provided in pm.hook.overrides(config=config):
        for rule in provided or ():
            if not isinstance(rule, (Override, Blocklist)):
                raise TypeError(
                    f"an overrides hook returned {rule!r}; expected "
                    "xdpdns.hookspecs.Override or xdpdns.hookspecs.Blocklist"
                )
            rules.append(rule)
    return rules


def _add_overrides(builder: ImageBuilder, overrides: Iterable[OverrideSource]) -> None:
    # Names with the same action (and answer) share one rule in the image:
    # a million blocklisted names cost one rule, not a million.
    rules: dict[tuple, int] = {}
    for o in overrides:
        key = (o.action, o.ttl, o.records) if o.action == "answer" else (o.action,)
        if key not in rules:
            try:
                rules[key] = builder.add_override_rule(o.action, o.ttl, o.records)
            except ValueError as exc:
                builder.add_problem("error", str(exc))
                continue
        if isinstance(o, Blocklist):
            builder.load_blocklist(o.path, rules[key], o.subtree)
        else:
            builder.add_override(o.name, rules[key], o.subtree)


def _add_claims(builder: ImageBuilder, claims: Iterable[tuple[int, Claim]]) -> None:
    # After the overrides: an operator's rule for a name wins over a claim.
    # One rule per hook, which names it.
    rules: dict[int, int] = {}
    for hook, claim in claims:
        if hook not in rules:
            rules[hook] = builder.add_override_rule("resolver", hook)
        builder.add_override(claim.name, rules[hook], claim.subtree)


def _label(source: AnySource) -> str:
    if isinstance(source, ZoneFile):
        return os.fspath(source.path)
    return source.description or f"<records of {source.origin}>"


def _add_copy(builder: ImageBuilder, zone: int, source: ZoneCopy, index: int) -> None:
    deletes = b"".join(r.wire() for r in source.deletes)
    try:
        missing = builder.copy_zone(zone, source.image, deletes)
    except KeyError:
        builder.add_problem("error", f"zone {source.origin}: not in the image copied from", index)
        return
    if missing is not None:
        builder.add_problem(
            "error",
            f"zone {source.origin}: the differences delete a record the zone does not "
            f"have: {source.deletes[missing].to_text()}",
            index,
        )
    for record in source.adds:
        rdataset = dns.rdataset.from_rdata(record.ttl, record.rdata)
        builder.add_rdataset(zone, record.name, rdataset, index)


def _add_source(
    builder: ImageBuilder,
    source: AnySource,
    previous: Image | None,
    served: Mapping[dns.name.Name, int],
) -> SignedZone | None:
    index = builder.add_source(_label(source))
    try:
        zone = builder.add_zone(source.origin)
    except FileExistsError:
        return None  # the builder recorded "zone added twice" as a problem
    except OSError as exc:
        builder.add_problem("error", f"zone {source.origin}: {exc.strerror}", index)
        return None
    if isinstance(source, ZoneFile):
        builder.load_zonefile(zone, source.path, source.default_ttl)
    elif isinstance(source, ZoneCopy):
        _add_copy(builder, zone, source, index)
    elif isinstance(source, ZoneExpired):
        builder.set_zone_expired(zone)
    else:
        builder.add_records(zone, source.records, index)
    _add_zone_acl(builder, zone, source, index)
    if getattr(source, "signing", None) is None:
        return None
    return _sign(builder, zone, source, index, previous, served)


# Signatures are valid from this long before now: a validator whose clock
# is behind ours accepts them (Knot and BIND sign an hour back too).
SIGNING_SKEW = 3600
# A signature kept at a reload holds at least this long past the zone's
# refresh period: the next re-signing is never due at once.
KEEP_MARGIN = 60


def _sign(
    builder: ImageBuilder,
    zone: int,
    source: ZoneSource,
    index: int,
    previous: Image | None,
    served: Mapping[dns.name.Name, int],
) -> SignedZone | None:
    """Signs the zone on load (native/zone/zone_sign.c), keeping the signatures
    of ``previous`` (the image being served) over what did not change and
    is not due for refresh; a key that cannot be read, or a zone that
    cannot be signed, is an error of the zone.  Its serial follows the one
    served (``previous``'s, else ``served``'s): kept when nothing changed,
    the next one when anything did, unless the zone's own is newer."""
    signing = source.signing
    serial = previous.zone_serial(source.origin) if previous is not None else None
    if serial is None:
        serial = served.get(source.origin)
    try:
        keys = [SigningKey(base) for base in signing.keys]
        now = int(time.time())
        report = builder.sign_zone(
            zone,
            keys,
            signing.nsec3,
            now - SIGNING_SKEW,
            now + signing.validity,
            previous,
            now + signing.refresh + KEEP_MARGIN,
            serial,
        )
    except OSError as exc:
        builder.add_problem("error", f"zone {source.origin}: signing: {exc.strerror or exc}", index)
        return None
    return SignedZone(source.origin, report, report.earliest_expiration - signing.refresh)


def _add_zone_acl(builder: ImageBuilder, zone: int, source: ZoneSource, index: int) -> None:
    # Only a zone with prefixes gets an ACL in the image: the others cost the
    # answering core one test of a zero field.
    acl = getattr(source, "acl", None) or ZoneAcl()
    if not acl.configured:
        return
    for kind in ZONE_ACL_KINDS:
        try:
            builder.set_zone_acl(zone, kind, acl.rules(kind), acl.default(kind))
        except ValueError as exc:
            builder.add_problem("error", f"zone {source.origin}: {kind} ACL: {exc}", index)


def compile_sources(
    sources: Iterable[AnySource],
    identity: Identity | None = None,
    overrides: Iterable[OverrideSource] = (),
    claims: Iterable[tuple[int, Claim]] = (),
    previous: Image | None = None,
    notify_hook: int | None = None,
    keys: Iterable[TsigKey] = (),
    served: Mapping[dns.name.Name, int] | None = None,
) -> CompileResult:
    """Compiles zone sources (what the server says about itself, the
    override rules in order of precedence, the names that resolver
    plugins claim, each with the number of the hook that answers it:
    xdpdns.resolver.numbered_claims, and the TSIG keys that signed
    requests are checked with and transfer lists name) into an image,
    collecting every problem.  Zones signed on load keep the signatures of ``previous``
    (the image being served, published until this returns) that still
    hold for what did not change, and follow its serials (without it,
    those of ``served``, the serials served before a restart).

    Never raises for bad zone data: the result has image None and the
    problems instead.
    """
    origins = []
    signed = []
    zones = []
    overrides, claims, keys = tuple(overrides), tuple(claims), tuple(keys)
    with ImageBuilder() as builder:
        for key in keys:
            builder.add_tsig_key(key.name, key.algorithm, key.secret)
        for source in sources:
            origins.append(source.origin)
            zones.append((source.origin, getattr(source, "acl", None) or ZoneAcl(), _label(source)))
            zone = _add_source(builder, source, previous, served or {})
            if zone is not None:
                signed.append(zone)
        _add_overrides(builder, overrides)
        _add_claims(builder, claims)
        if notify_hook is not None:
            builder.set_notify_hook(notify_hook)
        if identity is not None:
            for item in ("version", "hostname", "id", "nsid"):
                value = getattr(identity, item)
                if value is not None:
                    builder.set_identity(item, value)
        builder.check()
        problems = builder.problems()
        # finish does not check again once check() ran, so these are all.
        image = None if any(p.is_error for p in problems) else builder.finish()
    inputs = CompileInputs(tuple(zones), identity, overrides, claims, notify_hook, keys)
    return CompileResult(image, problems, tuple(origins), tuple(signed), inputs)


def recompile(
    inputs: CompileInputs,
    served: Image,
    replace: dict[dns.name.Name, AnySource],
    removed: frozenset[dns.name.Name] = frozenset(),
) -> CompileResult:
    """The image of ``inputs`` again, every zone copied out of ``served``
    (the image being served, which must stay published until this
    returns) but those in ``replace`` (which may add zones) and those
    ``removed``: how a secondary zone's new version is published without
    reading any other zone's source again (a zone file edited since the
    last reload stays as it was served)."""
    known = {origin for origin, _, _ in inputs.zones}
    sources = [
        replace.get(origin) or carried(origin, served, acl, label)
        for origin, acl, label in inputs.zones
        if origin not in removed
    ]
    sources += [source for origin, source in replace.items() if origin not in known]
    return compile_sources(
        sources,
        inputs.identity,
        inputs.overrides,
        inputs.claims,
        None,
        inputs.notify_hook,
        inputs.keys,
    )


def build_image(
    pm,
    config,
    claims: Iterable[tuple[int, Claim]] = (),
    previous: Image | None = None,
    extra: Iterable[AnySource] = (),
    notify_hook: int | None = None,
    served: Mapping[dns.name.Name, int] | None = None,
) -> CompileResult:
    """The server's path: sources from the plugins, warnings logged, errors raised.
    ``claims``: the names of resolver plugins with their hook numbers
    (xdpdns.resolver.numbered_claims); ``previous``: the image being
    served, whose signatures a zone signed on load keeps where they hold.

    Raises ZoneLoadError listing every problem when any is an error.
    """
    result = compile_sources(
        collect_sources(pm, config) + list(extra),
        pm.hook.identity(config=config),
        collect_overrides(pm, config),
        claims,
        previous,
        notify_hook,
        config.keys if config is not None else (),
        served,
    )
    if result.image is None:
        raise ZoneLoadError(result.problems)
    for zone in result.signed:
        log.info("%s", zone.describe())
    for problem in result.warnings:
        log.warning("%s", problem)
    if result.image.info.overrides:
        log.info("overrides names=%d", result.image.info.overrides)
    if result.image.info.zone_acls:
        log.info("zone ACLs zones=%d", result.image.info.zone_acls)
    return result
