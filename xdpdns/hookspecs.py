"""Hook specifications of xdpdns (pluggy project name ``xdpdns``).

Plugins shape what the engine holds; none of these hooks is called per
packet on the fast path.  A plugin is a module or object with functions
marked by :data:`hookimpl` and named like the specifications below; it may
accept any subset of a hook's parameters, by the same names.  Plugins are
registered through the ``xdpdns`` entry-point group (see xdpdns.plugins),
the built-in ones (``xdpdns_plugins``) exactly like third-party ones, and
ordered by what they declare, never by a list compiled in.  A plugin module
may declare ``XDPDNS_BEFORE = ("zonefile",)`` (its hooks are called before
those plugins') and ``XDPDNS_AFTER = ("acl",)`` (after them): tuples of
plugin (entry-point) names.  The plugins are sorted by these declarations,
ties by name, into the *plugin order*; a cycle is an error, a name that is
not loaded a warning.  pluggy's ``tryfirst``/``trylast`` on one hook
implementation still win over the declarations for that hook.  The exact
rule is in xdpdns.plugins; ``xdpdns plugins`` shows the result.

Hooks are added here as the features that call them arrive; each existing
hook keeps its signature (pluggy lets a spec grow parameters that older
implementations simply do not ask for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import pluggy

# The data of the hooks, re-exported: plugins import them from here.
from xdpdns.plugin_types import (
    ConfigSection,
    DEFAULT_TTL,
    ZONE_ACL_KINDS,
    ZoneAcl,
    ZoneSigning,
    ZoneFile,
    ZoneData,
    ZoneSource,
    Identity,
    Prefix,
    ADDRESS_ACTIONS,
    SOCKET_ACTIONS,
    AddressRule,
    AddressPolicy,
    OVERRIDE_ACTIONS,
    DEFAULT_OVERRIDE_TTL,
    MAX_TTL,
    Override,
    Blocklist,
    CookieSecrets,
    RrlSettings,
    Claim,
    parse_question,
    ResolverQuery,
    Answer,
)

if TYPE_CHECKING:
    from xdpdns.config import Config
    from xdpdns.server import Server, ServerStats

PROJECT = "xdpdns"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "ConfigSection",
    "DEFAULT_TTL",
    "ZONE_ACL_KINDS",
    "ZoneAcl",
    "ZoneSigning",
    "ZoneFile",
    "ZoneData",
    "ZoneSource",
    "Identity",
    "Prefix",
    "ADDRESS_ACTIONS",
    "SOCKET_ACTIONS",
    "AddressRule",
    "AddressPolicy",
    "OVERRIDE_ACTIONS",
    "DEFAULT_OVERRIDE_TTL",
    "MAX_TTL",
    "Override",
    "Blocklist",
    "CookieSecrets",
    "RrlSettings",
    "Claim",
    "parse_question",
    "ResolverQuery",
    "Answer",
    "config_sections",
    "zone_sources",
    "identity",
    "address_rules",
    "address_policy",
    "startup",
    "shutdown",
    "reload",
    "stats",
    "overrides",
    "cookie_secrets",
    "rrl_settings",
    "resolver_claims",
    "resolve",
]


@hookspec
def config_sections() -> Sequence[ConfigSection]:
    """Declare the configuration sections this plugin owns.

    Called once per configuration load (at start, and again for every
    reload), after the plugins are loaded and before the configuration file
    is read.  Every ``[plugins.NAME]`` table of the file must be owned by
    exactly one plugin: an unowned section is an error that names it, and
    so is a name that two plugins claim.  All results are collected.

    :return: the sections owned by this plugin (possibly empty).
    """


@hookspec
def zone_sources(config: "Config") -> Sequence["ZoneSource"]:
    """Provide zones to compile into the zone image.

    Called every time an image is built: once at start and by ``xdpdns
    check``, and for every reload later.  All results are collected, in
    plugin order, and compiled into one image; a zone origin provided twice
    is an error.  A source is either :class:`ZoneFile` (a master
    file compiled natively by libzscanner, the fast path for bulk data) or
    :class:`ZoneData` (dnspython names and rdatasets, for
    plugins that read a database or generate records; slower, same result).

    :param config: the whole parsed configuration; a plugin's own section is
        ``config.plugins[NAME]``, the ``[[zone]]`` entries ``config.zones``.
    :return: the zone sources of this plugin (possibly empty).
    """


@hookspec(firstresult=True)
def identity(config: "Config") -> "Identity | None":
    """Say what the server tells about itself (see :class:`Identity`).

    Called every time an image is built.  The first result wins: the first
    plugin (in plugin order) that returns an Identity decides; the built-in ``identity`` plugin
    answers from ``[plugins.identity]``, so a plugin placed before it
    (``XDPDNS_BEFORE = ("identity",)`` or ``tryfirst``) overrides it.
    Without any, everything is hidden.

    :param config: the whole parsed configuration.
    :return: an :class:`Identity`, or None to leave the decision to the
        next plugin.
    """


@hookspec
def address_rules(config: "Config") -> Sequence[AddressRule]:
    """Provide source address rules (an ACL) for the engine to enforce.

    Called once at start, after the zone image is built and before any
    listener answers.  All results are collected, in plugin order; the
    longest prefix holding a source decides, and when two rules name the
    same prefix, the one that comes first in plugin order wins (a plugin
    placed before the built-in ``acl`` plugin overrides its rules prefix by
    prefix).  The rules apply to every UDP query the engine answers (in XDP
    mode, dropped in the XDP program) and to TCP connections.

    :param config: the whole parsed configuration; a plugin's own section is
        ``config.plugins[NAME]``.
    :return: the rules of this plugin (possibly empty).
    """


@hookspec(firstresult=True)
def address_policy(config: "Config") -> "AddressPolicy | None":
    """Decide what the address rules leave open (see :class:`AddressPolicy`):
    the default for sources no rule holds, and what socket mode does with
    denied sources.

    Called once at start, with :func:`address_rules`.  The first result
    wins: the first plugin (in plugin order) that returns an AddressPolicy
    decides; the built-in ``acl`` plugin answers from ``[plugins.acl]``, so
    a plugin placed before it overrides it.  Without any: allow, and refuse.

    :param config: the whole parsed configuration.
    :return: the policy, or None to leave the decision to later plugins.
    """


@hookspec
def startup(server: "Server") -> None:
    """The server is up: the image is published and every listener is bound.

    Called once, after the UDP and TCP workers have started and
    before the server logs that it is ready.  An exception aborts the start
    (the server stops again and exits non-zero).  Every implementation is
    called; results are ignored.

    :param server: the running server: ``server.config``,
        ``server.addresses`` (the bound (host, port) pairs),
        ``server.zones`` (the served origins), ``server.image_info``.
    """


@hookspec
def shutdown(server: "Server") -> None:
    """The server is stopping (SIGTERM, SIGINT, or a failed start).

    Called once, while the workers still run, before they are stopped.
    Every implementation is called, even when one raises (the error is
    logged); results are ignored.

    :param server: the server being stopped, as for :func:`startup`.
    """


@hookspec
def reload(server: "Server") -> None:
    """The server published what a reload read (SIGHUP or `xdpdns reload`):
    its new configuration, image, ACL, cookie secrets and rate limiting.

    Called after each reload that succeeded, never after one that failed
    (the server then keeps what it had).  The hooks that build the image
    (zone_sources, overrides, resolver_claims, ...) have run again just
    before, with the new configuration.  Every implementation is called;
    results are ignored.

    :param server: the running server, as for :func:`startup`, with
        ``server.config`` the configuration now in force.
    """


@hookspec
def stats(server: "Server", stats: "ServerStats") -> None:
    """A snapshot of the server's counters was taken.

    Called every ``[server] stats_interval`` seconds while the server runs
    (when that is not 0) and once more at shutdown, after the workers have
    stopped, with the final counts.  Every implementation is called; results
    are ignored.

    :param server: the running server, as for :func:`startup`.
    :param stats: the counters: ``stats.udp`` (summed over the UDP workers),
        ``stats.workers`` (one entry per worker), ``stats.tcp`` (the TCP
        listener's counters), ``stats.xdp`` (XDP mode: per AF_XDP queue,
        per CPU of the XDP program, the port actions; None in socket mode).
    """


@hookspec
def overrides(config: "Config") -> Sequence["Override | Blocklist"]:
    """Provide per-name override rules (see :class:`Override`) and blocklists
    (:class:`Blocklist`) to compile into the zone image.

    Called every time an image is built, after :func:`zone_sources`.  All
    results are collected, in plugin order, and within each result in its
    order; where a name gets two rules of the same kind (exact, or subtree),
    the first one wins, so a plugin placed before the built-in ``override``
    plugin (``XDPDNS_BEFORE = ("override",)``) overrides its rules name by
    name.  Overrides win over zone data: that is what they are for.

    :param config: the whole parsed configuration; a plugin's own section is
        ``config.plugins[NAME]``.
    :return: the rules and blocklists of this plugin (possibly empty).
    """


@hookspec(firstresult=True)
def cookie_secrets(config: "Config") -> "CookieSecrets | None":
    """Decide the DNS cookie secrets (see :class:`CookieSecrets`).

    Called once at start, after the source ACL is set and before any
    listener answers.  The first result wins: the first plugin (in plugin
    order) that returns CookieSecrets decides; the built-in ``cookies``
    plugin answers from ``[plugins.cookies]`` (a random secret unless one is
    configured), so a plugin placed before it (one that fetches a fleet's
    shared secret, say) overrides it.  Without any: no cookies.

    :param config: the whole parsed configuration.
    :return: the secrets, or None to leave the decision to later plugins.
    """


@hookspec(firstresult=True)
def rrl_settings(config: "Config") -> "RrlSettings | None":
    """Decide response rate limiting (see :class:`RrlSettings`).

    Called once at start, after the DNS cookie secrets are set and before
    any listener answers.  The first result wins: the first plugin (in
    plugin order) that returns RrlSettings decides; the built-in ``rrl``
    plugin answers from ``[plugins.rrl]`` when it is enabled, so a plugin
    placed before it overrides it.  Without any: no rate limiting.

    :param config: the whole parsed configuration.
    :return: the settings, or None to leave the decision to later plugins.
    """


@hookspec
def resolver_claims(config: "Config") -> Sequence[Claim]:
    """Claim names whose queries this plugin answers through :func:`resolve`.

    Called every time an image is built, after :func:`overrides`.  All
    results are collected, in plugin order; a name claimed twice (same
    kind, exact or subtree) stays with the first plugin.

    :param config: the whole parsed configuration.
    :return: the claims of this plugin (possibly empty).
    """


@hookspec
def resolve(queries: Sequence[ResolverQuery]) -> "Sequence[Answer | bytes | Any | None]":
    """Answer a batch of queries for names this plugin claimed.

    Called in a thread of the resolver (never on the fast path, never in the
    event loop), with up to a few hundred queries at once; only the
    implementation of the plugin that claimed the query names (see
    :func:`resolver_claims`) is called, never pluggy's chain of all of them,
    so exactly one plugin answers each query.  A plugin that raises, or takes longer
    than ``[resolver] timeout`` seconds, gets SERVFAIL sent for the whole
    batch; so does a None in the result.  A response's records may be
    cached by the engine for their smallest TTL (capped by ``[resolver]
    cache_max_ttl``; TTL 0: never cached), then answered on the fast path
    without calling this hook.

    The fast way: read the cheap fields of each query (``qname``, ``qtype``,
    ``qclass``, ``client_address``; see :class:`ResolverQuery`) and return
    :class:`Answer` objects, which the engine turns into responses in C (a
    few microseconds a query, against some 150 with dnspython both ways).
    Reading ``query.message`` parses the query with dnspython, for plugins
    that want it.

    :param queries: the batch, as :class:`ResolverQuery` objects.
    :return: one response per query, in order: an :class:`Answer` (the
        fast form), a dns.message.Message (made with
        dns.message.make_response, so that it carries the query's ID), its
        wire form as bytes, or None (SERVFAIL).
    """
