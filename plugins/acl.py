"""The source address ACL: allow and deny lists of prefixes from
``[plugins.acl]``, enforced by the engine (in XDP mode, denied sources are
dropped by the XDP program before any copy to user space).

Configuration, all optional::

    [plugins.acl]
    allow = ["192.0.2.0/24", "2001:db8::/32"]   # IPv4 and IPv6 prefixes, or
    deny = ["198.51.100.7", "192.0.2.128/25"]   # plain addresses (/32, /128)
    default = "allow"          # for a source no prefix holds: allow | deny
    socket_action = "refuse"   # socket mode and TCP: refuse (REFUSED) | drop

The longest prefix holding a source decides: an allowed /24 inside a denied
/16 lets that /24 in.  A prefix may not be both allowed and denied.  Rules
that other plugins provide through the ``address_rules`` hook join these;
for a prefix named twice the plugin first in plugin order wins.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from xdpdns.hookspecs import (
    ADDRESS_ACTIONS,
    SOCKET_ACTIONS,
    AddressPolicy,
    AddressRule,
    ConfigSection,
    Prefix,
    hookimpl,
)

NAME = "acl"
KEYS = ("allow", "deny", "default", "socket_action")
PREFIXES = 'a list of IPv4 or IPv6 prefixes or addresses, like ["192.0.2.0/24", "2001:db8::1"]'


@dataclass(frozen=True)
class AclConfig:
    allow: tuple[Prefix, ...] = ()
    deny: tuple[Prefix, ...] = ()
    default: str = "allow"
    socket_action: str = "refuse"


def _prefix(text: Any, where, key: str) -> Prefix:
    if not isinstance(text, str):
        raise where.error(key, PREFIXES, text)
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError:
        pass
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise where.error(key, PREFIXES, text) from None
    # 192.0.2.1/24 is a typo for the network or for the address: not guessed.
    raise where.error(key, f"a prefix without host bits set ({iface.network} or "
                      f"{iface.ip} alone)", text)


def _prefixes(value: Any, where, key: str) -> tuple[Prefix, ...]:
    if not isinstance(value, list):
        raise where.error(key, PREFIXES, value)
    return tuple(dict.fromkeys(_prefix(item, where, key) for item in value))


def _choice(value: Any, choices: tuple[str, ...], where, key: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise where.error(key, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def parse_config(table, where) -> AclConfig:
    for key in table:
        if key not in KEYS:
            raise where.error(key, "one of the known keys: " + ", ".join(KEYS)
                              + " (unknown key)")
    allow = _prefixes(table.get("allow", []), where, "allow")
    deny = _prefixes(table.get("deny", []), where, "deny")
    both = [str(p) for p in deny if p in set(allow)]
    if both:
        raise where.error("deny", "prefixes that are not also in allow", ", ".join(both))
    return AclConfig(
        allow=allow,
        deny=deny,
        default=_choice(table.get("default", "allow"), ADDRESS_ACTIONS, where, "default"),
        socket_action=_choice(table.get("socket_action", "refuse"), SOCKET_ACTIONS, where,
                              "socket_action"),
    )


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def address_rules(config):
    acl = config.plugins[NAME]
    return ([AddressRule(p, "allow") for p in acl.allow]
            + [AddressRule(p, "deny") for p in acl.deny])


@hookimpl
def address_policy(config):
    acl = config.plugins[NAME]
    return AddressPolicy(acl.default, acl.socket_action)
