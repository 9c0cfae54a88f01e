"""Zone files: the ``[[zone]]`` entries of the configuration (and ``--zone``)
as zone-file sources, compiled natively by libzscanner.

Configuration, all optional::

    [plugins.zonefile]
    default_ttl = 3600   # TTL of records before any $TTL or SOA sets one
"""

from __future__ import annotations

from dataclasses import dataclass

from xdpdns.config import parse_table
from xdpdns.hookspecs import ConfigSection, ZoneFile, hookimpl

NAME = "zonefile"
MAX_TTL = 2**31 - 1  # RFC 2181 section 8


@dataclass(frozen=True)
class ZonefileConfig:
    default_ttl: int = 3600


def parse_config(table, where) -> ZonefileConfig:
    config = parse_table(ZonefileConfig, table, where)
    if not 0 <= config.default_ttl <= MAX_TTL:
        raise where.error("default_ttl", f"a TTL from 0 to {MAX_TTL}", config.default_ttl)
    return config


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def zone_sources(config):
    ttl = config.plugins[NAME].default_ttl
    # Secondary zones (no file) come from xdpdns/secondary/.
    return [
        ZoneFile(zone.origin, zone.file, ttl, zone.acl, zone.signing)
        for zone in config.zones
        if zone.file is not None
    ]
