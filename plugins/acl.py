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

from dataclasses import dataclass
from typing import Any

from xdpdns.config import parse_allow_deny
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


@dataclass(frozen=True)
class AclConfig:
    allow: tuple[Prefix, ...] = ()
    deny: tuple[Prefix, ...] = ()
    default: str = "allow"
    socket_action: str = "refuse"


def _choice(value: Any, choices: tuple[str, ...], where, key: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise where.error(key, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def parse_config(table, where) -> AclConfig:
    for key in table:
        if key not in KEYS:
            raise where.error(key, "one of the known keys: " + ", ".join(KEYS) + " (unknown key)")
    allow, deny = parse_allow_deny(table, where, "allow", "deny")
    return AclConfig(
        allow=allow,
        deny=deny,
        default=_choice(table.get("default", "allow"), ADDRESS_ACTIONS, where, "default"),
        socket_action=_choice(
            table.get("socket_action", "refuse"), SOCKET_ACTIONS, where, "socket_action"
        ),
    )


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def address_rules(config):
    acl = config.plugins[NAME]
    return [AddressRule(p, "allow") for p in acl.allow] + [AddressRule(p, "deny") for p in acl.deny]


@hookimpl
def address_policy(config):
    acl = config.plugins[NAME]
    return AddressPolicy(acl.default, acl.socket_action)
