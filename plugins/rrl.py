"""Response rate limiting (RRL), the defence against reflection and
amplification: how many UDP responses a second a client prefix gets, from
``[plugins.rrl]``, enforced in the native workers (native/answer/rrl.c).

Configuration, all optional::

    [plugins.rrl]
    enabled = false        # off unless turned on (see below)
    rate = 20              # answers/s per bucket
    nxdomain_rate = 20     # NXDOMAIN responses/s per bucket (default: rate)
    nodata_rate = 20       # NODATA responses/s per bucket (default: rate)
    referrals_rate = 20    # referrals/s per bucket (default: rate)
    errors_rate = 20       # REFUSED, FORMERR, SERVFAIL... /s (default: rate)
    window = 15            # seconds the rates are averaged over (1 to 3600)
    slip = 2               # every slip-th limited response goes out truncated
                           # (TC=1: real clients retry over TCP); 0 never, 1 always
    ipv4_prefix = 24       # clients are counted per /24 ...
    ipv6_prefix = 56       # ... and per /56
    exempt = ["192.0.2.0/24"]   # sources never limited (your own resolvers)
    table_size = 32768     # buckets per worker: the memory bound

The meaning is BIND's ``rate-limit`` (responses-per-second, window, slip,
errors-per-second, nxdomains-per-second, nodata-per-second,
referrals-per-second, ipv4/ipv6-prefix-length, exempt-clients) and Knot's
mod-rrl (rate-limit, slip, table-size, whitelist). A bucket is one client
prefix and one kind of response, and for answers the name and type asked, for
NODATA and NXDOMAIN the zone, for referrals the delegation. A bucket earns its
kind's rate in credits a second (at most one second's worth) and spends one
per response; once it is below zero its responses are limited until its
average over ``window`` seconds is under the rate again. TCP is never limited,
and neither is a query with a valid server cookie ([plugins.cookies]): both
prove the address.

Why it is off by default: the right rate depends on the clients a server
has (a large resolver behind one /24 asks far more than 20 names a second,
though rarely the same one), and a limit that is wrong drops real
answers.  Knot and BIND also leave it off until configured.  Servers
exposed to the Internet should turn it on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping

from xdpdns.hookspecs import ConfigSection, RrlSettings, hookimpl

NAME = "rrl"
KEYS = (
    "enabled",
    "rate",
    "nxdomain_rate",
    "errors_rate",
    "nodata_rate",
    "referrals_rate",
    "window",
    "slip",
    "ipv4_prefix",
    "ipv6_prefix",
    "exempt",
    "table_size",
)
# Each integer key: the lowest and highest value it takes.
RANGES = {
    "rate": (0, 1000000),
    "nxdomain_rate": (0, 1000000),
    "errors_rate": (0, 1000000),
    "nodata_rate": (0, 1000000),
    "referrals_rate": (0, 1000000),
    "window": (1, 3600),
    "slip": (0, 10),
    "ipv4_prefix": (0, 32),
    "ipv6_prefix": (0, 128),
    "table_size": (1, 1 << 24),
}


@dataclass(frozen=True)
class RrlConfig:
    enabled: bool = False
    settings: RrlSettings = field(default_factory=RrlSettings)


PREFIXES = 'a list of IPv4 or IPv6 prefixes or addresses, like ["192.0.2.0/24", "2001:db8::1"]'


def _int(value: Any, where, key: str) -> int:
    low, high = RANGES[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise where.error(key, f"an integer from {low} to {high}", value)
    return value


def _prefixes(value: Any, where) -> tuple:
    if not isinstance(value, list):
        raise where.error("exempt", PREFIXES, value)
    result = []
    for item in value:
        if not isinstance(item, str):
            raise where.error("exempt", PREFIXES, item)
        try:
            result.append(ipaddress.ip_network(item.strip()))
        except ValueError:
            raise where.error(
                "exempt", "prefixes without host bits set (" + PREFIXES + ")", item
            ) from None
    return tuple(dict.fromkeys(result))


def parse_config(table: Mapping[str, Any], where) -> RrlConfig:
    for key in table:
        if key not in KEYS:
            raise where.error(key, "one of the known keys: " + ", ".join(KEYS) + " (unknown key)")
    enabled = table.get("enabled", False)
    if not isinstance(enabled, bool):
        raise where.error("enabled", "true or false", enabled)
    defaults = RrlSettings()
    values = {key: _int(table[key], where, key) for key in RANGES if key in table}
    rate = values.get("rate", defaults.rate)
    # Like BIND's errors-per-second, nxdomains-per-second,
    # nodata-per-second and referrals-per-second: the rate unless said
    # otherwise.
    for key in ("nxdomain_rate", "errors_rate", "nodata_rate", "referrals_rate"):
        values.setdefault(key, rate)
    exempt = _prefixes(table.get("exempt", []), where)
    return RrlConfig(enabled, RrlSettings(exempt=exempt, **values))


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def rrl_settings(config):
    c = config.plugins[NAME]
    return c.settings if c.enabled else None
