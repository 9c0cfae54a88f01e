"""An example third-party xdpdns plugin: it generates one small zone and
hands it over as dnspython records (ZoneData).

Configuration, all optional::

    [plugins.example]
    origin = "example.test."   # the zone it provides
    address = "198.18.7.7"     # the IPv4 address of www.ORIGIN
    ttl = 300                  # the TTL of every record

It declares that its hooks are called before the built-in zonefile plugin's,
so its zone comes first among the zone sources.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdataset
import dns.rrset

from xdpdns.config import parse_table
from xdpdns.hookspecs import ConfigSection, ZoneData, hookimpl

NAME = "example"
MAX_TTL = 2**31 - 1  # RFC 2181 section 8

XDPDNS_BEFORE = ("zonefile",)


@dataclass(frozen=True)
class ExampleConfig:
    origin: str = "example.test."
    address: str = "198.18.7.7"
    ttl: int = 300


def parse_config(table, where) -> ExampleConfig:
    config = parse_table(ExampleConfig, table, where)
    try:
        dns.name.from_text(config.origin)
    except dns.exception.DNSException:
        raise where.error("origin", "a domain name like example.test.", config.origin) from None
    try:
        ipaddress.IPv4Address(config.address)
    except ValueError:
        raise where.error("address", "an IPv4 address", config.address) from None
    if not 0 <= config.ttl <= MAX_TTL:
        raise where.error("ttl", f"a TTL from 0 to {MAX_TTL}", config.ttl)
    return config


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def zone_sources(config):
    own = config.plugins[NAME]
    rrsets = [
        dns.rrset.from_text("@", own.ttl, "IN", "SOA", "ns1 hostmaster 1 7200 3600 1209600 300"),
        dns.rrset.from_text("@", own.ttl, "IN", "NS", "ns1"),
        dns.rrset.from_text("ns1", own.ttl, "IN", "A", "198.18.7.1"),
        dns.rrset.from_text("www", own.ttl, "IN", "A", own.address),
    ]
    records = [
        (rrset.name, dns.rdataset.from_rdata_list(rrset.ttl, list(rrset))) for rrset in rrsets
    ]
    return [ZoneData(dns.name.from_text(own.origin), records, "example plugin")]
