"""What the server says about itself: CHAOS-class TXT answers for
version.bind (and version.server), hostname.bind and id.server, and the EDNS
NSID option (RFC 5001), compiled into the zone image.

Configuration, all optional::

    [plugins.identity]
    version = true       # true: "xdpdns VERSION"; a string; false hides it
    hostname = false     # true: this machine's host name; a string; false hides it
    id = false           # id.server: the same choices as hostname
    nsid = false         # the NSID option: true (host name), a string, or false
    nsid_hex = "0a0b"    # the NSID as hex bytes instead of text

Hidden items are answered REFUSED (and no NSID is sent), as Knot and NSD do
when an operator hides them.  The version is shown by default, as every
common server does; host names only when asked for, since they tell an
outsider which machine of a fleet answered.
"""

from __future__ import annotations

import binascii
import socket
from dataclasses import dataclass
from typing import Any, Mapping

from xdpdns import __version__
from xdpdns.hookspecs import ConfigSection, Identity, hookimpl

NAME = "identity"
MAX_LEN = 255  # one TXT character-string
KEYS = ("version", "hostname", "id", "nsid", "nsid_hex")


@dataclass(frozen=True)
class IdentityConfig:
    version: bytes | None
    hostname: bytes | None
    id: bytes | None
    nsid: bytes | None


def _text(value: Any, default: str | None, where, key: str) -> bytes | None:
    """true -> default, false -> hidden, a string -> itself (UTF-8)."""
    if value is False:
        return None
    if value is True:
        value = default
    if not isinstance(value, str):
        raise where.error(key, "true, false or a string", value)
    data = value.encode()
    if len(data) > MAX_LEN:
        raise where.error(key, f"at most {MAX_LEN} bytes", value)
    return data


def _hex(value: Any, where, key: str) -> bytes:
    if not isinstance(value, str):
        raise where.error(key, "hex digits", value)
    try:
        data = binascii.unhexlify(value.replace(":", "").replace(" ", ""))
    except (binascii.Error, ValueError):
        raise where.error(key, "hex digits (an even number of them)", value) from None
    if not data or len(data) > MAX_LEN:
        raise where.error(key, f"1 to {MAX_LEN} bytes of hex", value)
    return data


def parse_config(table: Mapping[str, Any], where) -> IdentityConfig:
    for key in table:
        if key not in KEYS:
            raise where.error(key, "one of " + ", ".join(KEYS) + " (unknown key)")
    if "nsid" in table and "nsid_hex" in table:
        raise where.error("nsid_hex", "either nsid or nsid_hex, not both", table["nsid_hex"])
    host = socket.gethostname()
    nsid = (
        _hex(table["nsid_hex"], where, "nsid_hex")
        if "nsid_hex" in table
        else _text(table.get("nsid", False), host, where, "nsid")
    )
    return IdentityConfig(
        version=_text(table.get("version", True), f"xdpdns {__version__}", where, "version"),
        hostname=_text(table.get("hostname", False), host, where, "hostname"),
        id=_text(table.get("id", False), host, where, "id"),
        nsid=nsid,
    )


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def identity(config):
    c = config.plugins[NAME]
    return Identity(version=c.version, hostname=c.hostname, id=c.id, nsid=c.nsid)
