"""What a configuration puts into the engine, besides its threads: the zone
image (zones, identity, overrides, the names resolver plugins claim), the
source ACL, the DNS cookie secrets and response rate limiting.

:func:`load_publication` asks the plugins for all of it and compiles the image,
raising before anything is published; :func:`publish` hands it to the
engine, each part with one atomic swap (native/engine.c).  The server does
both at start and again for every reload, so a reload whose configuration
or zones are broken changes nothing: the running server keeps answering
from what it had.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from xdpdns.acl import Acl, collect_acl
from xdpdns.config import Config
from xdpdns.engine import Engine, Image, JournalEvent, JournalLimits
from xdpdns.hookspecs import Claim, CookieSecrets, RrlSettings
from xdpdns.image import CompileResult, build_image
from xdpdns.plugins import PluginError
from xdpdns.resolver import collect_claims, hook_numbers, numbered_claims
from xdpdns.secondary.service import Secondary

log = logging.getLogger("xdpdns.publication")


@dataclass
class Publication:
    compiled: CompileResult  # its image is handed to the engine by publish
    acl: Acl
    cookies: CookieSecrets
    rrl: RrlSettings | None
    claims: list[tuple[str, Claim]]  # (plugin, claim)
    hooks: list[str]  # the plugins that answer claimed names, by hook number
    journal: JournalLimits = JournalLimits()  # what each zone keeps of its changes


class ReloadRefused(Exception):
    """A new configuration that the running server cannot take without a
    restart; the message says what."""


def load_publication(
    pm,
    config: Config,
    hooks: list[str] | None = None,
    previous: Image | None = None,
    secondary: Secondary | None = None,
    notify: bool = False,
    served: dict | None = None,
) -> Publication:
    """Everything the plugins say for config, the image compiled.

    ``hooks``: the hook numbering the running server's resolver has (a
    reload), or None to number the claiming plugins now (the start).
    ``previous``: the image being served (a reload), whose signatures the
    zones signed on load keep where they still hold.
    ``secondary``: the secondary zones' service, configured for config,
    which says what they serve.  ``notify``: the resolver has the server's
    NOTIFY hook, numbered after the plugins' hooks.  ``served``: the
    serials zones signed on load were served with before a restart.
    Raises ZoneLoadError, PluginError, ConfigError, or ReloadRefused for
    claims that need a resolver hook the server did not start with.
    """
    claims = collect_claims(pm, config)
    if hooks is None:
        hooks = hook_numbers(claims)
    else:
        new = [p for p in hook_numbers(claims) if p not in hooks]
        if new:
            raise ReloadRefused(
                f"plugin {new[0]} claims names now but did not when the "
                "server started: its resolver thread starts with the "
                "server (restart it)"
            )
    compiled = build_image(
        pm,
        config,
        numbered_claims(claims, hooks),
        previous,
        secondary.sources(previous) if secondary is not None else (),
        len(hooks) if notify else None,
        served,
    )
    return Publication(
        compiled,
        collect_acl(pm, config),
        cookie_secrets(pm, config),
        rrl_settings(pm, config),
        claims,
        hooks,
        journal_limits(config),
    )


def journal_limits(config: Config) -> JournalLimits:
    return JournalLimits(config.server.ixfr_journal_depth, config.server.ixfr_journal_size)


def publish(engine: Engine, publication: Publication, previous: Publication | None = None) -> None:
    """Hands what was loaded to the engine: the ACL (in XDP mode also the program's
    maps), the cookie secrets, rate limiting and the image, each switched
    at once for every worker.  All or nothing: the image, which the engine
    takes and cannot give back, goes last, and when a step before it fails
    the steps already taken are set back to ``previous`` before the error
    is raised.  At a reload (``previous``) a new cookie secret that comes
    without a previous one keeps the old one as the previous (RFC 9018
    rotation): clients' server cookies stay valid."""
    cookies = _rotated(publication.cookies, previous)
    set_cookies = cookies.current is not None or (
        previous is not None and previous.cookies.current is not None
    )
    set_rrl = publication.rrl is not None or (previous is not None and previous.rrl is not None)
    done: list[str] = []
    try:
        _set_acl(engine, publication.acl)
        done.append("acl")
        if set_cookies:
            engine.set_cookie_secrets(cookies.current, cookies.previous, cookies.require)
            done.append("cookies")
        if set_rrl:
            engine.set_rrl(publication.rrl)
            done.append("rrl")
        events = _keep_journal(engine, publication)
        engine.set_image(publication.compiled.image)
    except BaseException:
        if previous is not None:
            _restore(engine, previous, done)
        raise
    publication.cookies = cookies
    for event in events:
        _log_journal(event)


def _keep_journal(engine: Engine, publication: Publication) -> list[JournalEvent]:
    """The new image's journal of changes for IXFR out; without one (out of
    memory) it is published all the same, and IXFR gets whole zones."""
    try:
        return engine.keep_journal(publication.compiled.image, publication.journal)
    except OSError as e:
        log.warning("IXFR journal not kept, IXFR gets whole zones until the next change: %s", e)
        return []


def _log_journal(e: JournalEvent) -> None:
    if e.kind == "recorded":
        log.info(
            "zone %s: serial %d -> %d, %d records removed, %d added; "
            "journal of %d changes, %d bytes (IXFR)",
            e.zone,
            e.serial_from,
            e.serial_to,
            e.removed,
            e.added,
            e.depth,
            e.bytes,
        )
    elif e.kind == "same-serial":
        log.warning(
            "zone %s changed (%d records removed, %d added) but its serial stayed %d: "
            "secondaries will not transfer the change until the serial increases; "
            "IXFR gets the whole zone until then",
            e.zone,
            e.removed,
            e.added,
            e.serial_to,
        )
    elif e.kind == "older-serial":
        log.warning(
            "zone %s: serial %d -> %d is not an increase (RFC 1982): secondaries "
            "at %d will not transfer it; journal emptied, IXFR gets the whole zone",
            e.zone,
            e.serial_from,
            e.serial_to,
            e.serial_from,
        )
    else:
        log.warning(
            "zone %s: serial %d -> %d changed more than [server] ixfr_journal_size "
            "holds (or a record too long to keep): journal emptied, IXFR gets the whole zone",
            e.zone,
            e.serial_from,
            e.serial_to,
        )


def _set_acl(engine: Engine, acl: Acl) -> None:
    engine.acl_set(acl.pairs(), acl.policy.default, acl.policy.socket_action)


def _rotated(cookies: CookieSecrets, previous: Publication | None) -> CookieSecrets:
    if previous is None or cookies.current is None or cookies.previous is not None:
        return cookies
    old = previous.cookies
    if old.current not in (None, cookies.current):
        # Rotated: the secret in force until now stays valid.
        return CookieSecrets(cookies.current, old.current, cookies.require)
    if old.current == cookies.current and old.previous is not None:
        # The same secret: keep the previous one a rotation kept.
        return CookieSecrets(cookies.current, old.previous, cookies.require)
    return cookies


def _restore(engine: Engine, previous: Publication, done: list[str]) -> None:
    """Sets back what publish changed before it failed.  Each of these was
    in force a moment ago, so they take again; one that does not is
    logged, and the error that stopped publish is the one raised."""
    for step in reversed(done):
        try:
            if step == "rrl":
                engine.set_rrl(previous.rrl)
            elif step == "cookies":
                c = previous.cookies
                engine.set_cookie_secrets(c.current, c.previous, c.require)
            elif step == "acl":
                _set_acl(engine, previous.acl)
        except Exception:
            log.exception("setting back the %s in force before the failed reload", step)


def cookie_secrets(pm, config) -> CookieSecrets:
    """The DNS cookie secrets of the first plugin that decides (no cookies
    when none does); raises PluginError for something that is not a
    CookieSecrets."""
    result = pm.hook.cookie_secrets(config=config)
    if result is None:
        return CookieSecrets(None)
    if not isinstance(result, CookieSecrets):
        raise PluginError(
            f"cookie_secrets returned {result!r}, not an xdpdns.hookspecs.CookieSecrets"
        )
    return result


def rrl_settings(pm, config) -> RrlSettings | None:
    """The rate limiting of the first plugin that decides (None: off);
    raises PluginError for something that is not an RrlSettings."""
    result = pm.hook.rrl_settings(config=config)
    if result is not None and not isinstance(result, RrlSettings):
        raise PluginError(f"rrl_settings returned {result!r}, not an xdpdns.hookspecs.RrlSettings")
    return result
