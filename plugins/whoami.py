"""whoami: a name that answers with the asking client's address, the example
of the resolver hook (xdpdns/resolver.py).

Configuration::

    [plugins.whoami]
    name = "whoami.example.com."   # without it the plugin claims nothing

A query for the name gets an A record with the client's address when it
asks over IPv4 for A, an AAAA record when it asks over IPv6 for AAAA, and a
TXT record "ADDRESS PORT" for every other type; TTL 0, so that no cache
(ours included) keeps an answer that belongs to one client.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from xdpdns.hookspecs import Claim, ConfigSection, hookimpl

NAME = "whoami"


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


def _answer(query) -> dns.message.Message:
    msg = query.message
    question = msg.question[0]
    host, port = query.client_address
    address = ipaddress.ip_address(host)
    response = dns.message.make_response(msg)
    response.flags |= dns.flags.AA
    if question.rdtype == dns.rdatatype.A and address.version == 4:
        rdtype, text = dns.rdatatype.A, str(address)
    elif question.rdtype == dns.rdatatype.AAAA and address.version == 6:
        rdtype, text = dns.rdatatype.AAAA, str(address)
    else:
        rdtype, text = dns.rdatatype.TXT, f'"{address} {port}"'
    response.answer.append(dns.rrset.from_text(question.name, 0, dns.rdataclass.IN,
                                               rdtype, text))
    return response


@hookimpl
def resolve(queries):
    return [_answer(q) for q in queries]
