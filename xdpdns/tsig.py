"""TSIG keys (RFC 8945) as the configuration names them: the ``[[key]]``
tables, and the transfer and NOTIFY lists that require one.

The answering core checks signed requests and signs its answers and
outgoing transfers itself (native/wire/tsig.c), from the keys compiled into
the image; the server's own messages (transfers in, NOTIFY in and out) are
signed and checked by dnspython with the same keys (:func:`keyring`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

import dns.name
import dns.tsig

if TYPE_CHECKING:
    from xdpdns.plugin_types import Prefix  # which imports KeyRule from here

# What the engine and dnspython both know (RFC 8945 6; no MD5).
ALGORITHMS = ("hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512")
SECRET_MAX = 512  # bytes (XD_TSIG_SECRET_MAX)


@dataclass(frozen=True)
class TsigKey:
    """A shared secret: ``[[key]] name, algorithm, secret`` (base64)."""

    name: dns.name.Name
    algorithm: str  # one of ALGORITHMS
    secret: bytes = field(repr=False)  # never in a log line or a traceback

    def dnspython(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.name, self.secret, dns.name.from_text(self.algorithm))


@dataclass(frozen=True)
class KeyRule:
    """An entry of a transfer or NOTIFY list that holds only requests signed
    with ``key``: ``{ key = "k1" }`` from any address, or with ``address``
    from that prefix alone."""

    key: TsigKey
    prefix: Prefix | None = None

    def prefixes(self) -> tuple[Prefix, ...]:
        """The prefixes it holds: both families' /0 for any address."""
        if self.prefix is not None:
            return (self.prefix,)
        return (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))

    def holds(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, key) -> bool:
        """Whether a request from ``address`` signed with ``key`` (a key
        name, None: unsigned) is one it holds."""
        return key == self.key.name and any(address in p for p in self.prefixes())

    def __str__(self) -> str:
        address = "" if self.prefix is None else f" from {self.prefix}"
        return f"key {self.key.name}{address}"


def entry_holds(entry: Prefix | KeyRule, address, key: dns.name.Name | None) -> bool:
    """Whether a list entry (a prefix: any request from it) holds a request
    from ``address`` signed with ``key``."""
    if isinstance(entry, KeyRule):
        return entry.holds(address, key)
    return address in entry


def keyring(keys: Iterable[TsigKey]) -> Mapping[dns.name.Name, dns.tsig.Key]:
    """dnspython's keyring of ``keys``, for reading signed messages."""
    return {k.name: k.dnspython() for k in keys}
