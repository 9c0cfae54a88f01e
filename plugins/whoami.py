"""whoami: a name that answers with the asking client's address, the example
of the resolver hook (xdpdns/resolver.py).

Configuration::

    [plugins.whoami]
    name = "whoami.example.com."   # without it the plugin claims nothing

A query for the name gets an A record with the client's address when it
asks over IPv4 for A, an AAAA record when it asks over IPv6 for AAAA, and a
TXT record "ADDRESS PORT" for every other type; TTL 0, so that no cache
(ours included) keeps an answer that belongs to one client.  It answers in
the fast form (xdpdns.hookspecs.Answer: record data in wire form, the
response made by the engine in C) from the query's cheap fields, so no
dnspython runs per query.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype

from xdpdns.hookspecs import Answer, Claim, ConfigSection, hookimpl

NAME = "whoami"
A, AAAA, TXT = int(dns.rdatatype.A), int(dns.rdatatype.AAAA), int(dns.rdatatype.TXT)


@dataclass(frozen=True)
class WhoamiConfig:
    name: dns.name.Name | None = None


def parse_config(table, where) -> WhoamiConfig:
    for key in table:
        if key != "name":
            raise where.error(key, "one of the known keys: name (unknown key)")
    if "name" not in table:
        return WhoamiConfig()
    text = table["name"]
    if not isinstance(text, str) or not text:
        raise where.error("name", 'a domain name, like "whoami.example.com."', text)
    try:
        return WhoamiConfig(dns.name.from_text(text))
    except dns.exception.DNSException as exc:
        raise where.error("name", f"a domain name ({exc})", text) from None


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def resolver_claims(config):
    name = config.plugins[NAME].name
    return [Claim(name)] if name is not None else []


def _address(host: str) -> tuple[int, bytes]:
    """The address family (4 or 6) and packed form of a client address."""
    if ":" in host:
        return 6, socket.inet_pton(socket.AF_INET6, host)
    return 4, socket.inet_pton(socket.AF_INET, host)


def _answer(query) -> Answer:
    """The fast form (no dnspython): the engine makes the response in C."""
    host, port = query.client_address
    version, packed = _address(host)
    if query.qtype == A and version == 4:
        return Answer(((A, 0, packed),))
    if query.qtype == AAAA and version == 6:
        return Answer(((AAAA, 0, packed),))
    text = f"{host} {port}".encode()
    return Answer(((TXT, 0, bytes((len(text),)) + text),))  # one character-string


@hookimpl
def resolve(queries):
    return [_answer(q) for q in queries]
