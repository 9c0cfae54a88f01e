"""DNS cookies (RFC 7873) with the interoperable server cookies of RFC 9018:
the secrets the engine makes and checks server cookies with, from
``[plugins.cookies]``.

Configuration, all optional::

    [plugins.cookies]
    enabled = true                  # false: the COOKIE option is ignored
    secret = "32 hex digits"        # default: a random one at every start
    previous_secret = "..."         # still accepted while a rotation runs
    require = false                 # true: UDP queries with a client cookie
                                    # but no valid server cookie get BADCOOKIE

Servers that share ``secret`` make and accept each other's cookies (Knot's
mod-cookies ``secret``, BIND's ``cookie-secret`` and PowerDNS's
``edns-cookie-secret`` take the same 16 bytes), so an anycast fleet
configures one.  To rotate it: give every server the new ``secret`` with
the old one as ``previous_secret``, then after an hour (the lifetime of a
server cookie) drop ``previous_secret``.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from xdpdns.hookspecs import ConfigSection, CookieSecrets, hookimpl

NAME = "cookies"
KEYS = ("enabled", "secret", "previous_secret", "require")
SECRET_LEN = 16  # a SipHash-2-4 key
SECRET = f"{2 * SECRET_LEN} hex digits (a {SECRET_LEN}-byte secret)"


@dataclass(frozen=True)
class CookiesConfig:
    enabled: bool = True
    secret: bytes | None = None  # None: a random one at start
    previous_secret: bytes | None = None
    require: bool = False


def _secret(value: Any, where, key: str) -> bytes:
    if not isinstance(value, str):
        raise where.error(key, SECRET, value)
    try:
        data = binascii.unhexlify(value.strip())
    except (binascii.Error, ValueError):
        raise where.error(key, SECRET, value) from None
    if len(data) != SECRET_LEN:
        raise where.error(key, SECRET, value)
    return data


def _bool(value: Any, where, key: str) -> bool:
    if not isinstance(value, bool):
        raise where.error(key, "true or false", value)
    return value


def parse_config(table: Mapping[str, Any], where) -> CookiesConfig:
    for key in table:
        if key not in KEYS:
            raise where.error(key, "one of " + ", ".join(KEYS) + " (unknown key)")
    secret = _secret(table["secret"], where, "secret") if "secret" in table else None
    previous = (
        _secret(table["previous_secret"], where, "previous_secret")
        if "previous_secret" in table
        else None
    )
    if previous is not None and secret is None:
        # A random secret has no predecessor: the key is a mistake.
        raise where.error(
            "previous_secret", "a secret to rotate to (secret is not set)", table["previous_secret"]
        )
    return CookiesConfig(
        enabled=_bool(table.get("enabled", True), where, "enabled"),
        secret=secret,
        previous_secret=previous,
        require=_bool(table.get("require", False), where, "require"),
    )


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def cookie_secrets(config):
    c = config.plugins[NAME]
    if not c.enabled:
        return CookieSecrets(None)
    current = c.secret if c.secret is not None else _random_secret()
    return CookieSecrets(current, c.previous_secret, c.require)


_RANDOM: list[bytes] = []


def _random_secret() -> bytes:
    """The process's random secret: made once, so that a reload (which asks
    again) does not rotate it and turn every client's server cookie into a
    stale one."""
    if not _RANDOM:
        _RANDOM.append(secrets.token_bytes(SECRET_LEN))
    return _RANDOM[0]
