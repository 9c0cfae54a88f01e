"""Hook specifications of xdpdns (pluggy project name ``xdpdns``).

Plugins shape what the engine holds; none of these hooks is called per
packet on the fast path.  A plugin is a module or object with functions
marked by :data:`hookimpl` and named like the specifications below; it may
accept any subset of a hook's parameters, by the same names.  Plugins are
registered through the ``xdpdns`` entry-point group (see xdpdns.plugins),
the built-in ones (``xdpdns_plugins``) exactly like third-party ones, and
ordered by pluggy's ``tryfirst``/``trylast`` markers.

Hooks are added here as the features that call them arrive; each existing
hook keeps its signature (pluggy lets a spec grow parameters that older
implementations simply do not ask for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, Union

import dns.name
import dns.rdataset
import pluggy

if TYPE_CHECKING:
    from xdpdns.config import Config, Where
    from xdpdns.server import Server, ServerStats

PROJECT = "xdpdns"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class ConfigSection:
    """A ``[plugins.NAME]`` section of the configuration that a plugin owns.

    ``parse(table, where)`` turns the section's TOML table (an empty one when
    the file has no such section) into a frozen dataclass, the only form in
    which the plugin sees its configuration afterwards
    (``config.plugins[NAME]``).  It raises :class:`xdpdns.config.ConfigError`
    through ``where.error(key, expected, value)`` for unknown keys and bad
    values; :func:`xdpdns.config.parse_table` does that for plain dataclasses.
    """

    name: str
    parse: Callable[[Mapping[str, Any], "Where"], Any]


DEFAULT_TTL = 3600


@dataclass(frozen=True)
class ZoneFile:
    """A master file (RFC 1035) to compile natively, with $INCLUDE and $GENERATE."""

    origin: dns.name.Name
    path: Path
    default_ttl: int = DEFAULT_TTL


@dataclass(frozen=True)
class ZoneData:
    """Records as dnspython objects: (owner name, rdataset) pairs.

    Names may be relative to ``origin``.  ``description`` names the data in
    problem reports (in place of a file name), e.g. "database zones".
    """

    origin: dns.name.Name
    records: Iterable[tuple[dns.name.Name, dns.rdataset.Rdataset]]
    description: str = ""


# What the zone_sources hook returns a sequence of.
ZoneSource = Union[ZoneFile, ZoneData]


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


@hookspec
def startup(server: "Server") -> None:
    """The server is up: the image is published and every listener is bound.

    Called once, after the UDP workers and the TCP listener have started and
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
