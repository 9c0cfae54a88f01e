"""Overrides: per-name rules compiled into the zone image and applied before
any zone data: NXDOMAIN, NODATA, REFUSED or a fixed answer, for a name or a
whole subtree, from the configuration or from blocklist files (one name a
line, read natively: a million names in a fraction of a second).

Configuration, all optional::

    [plugins.override]
    blocklists = [
        { file = "blocklist.txt", action = "nxdomain", subtree = true },
        { file = "sinkholed.txt", action = "answer", records = ["A 198.18.0.53"], ttl = 60 },
    ]

    [[plugins.override.rules]]
    name = "ads.example.com"     # "*.ads.example.com" is the same with subtree = true
    subtree = true               # the name and every name below it; default false
    action = "nxdomain"          # nxdomain | nodata | refused | answer

    [[plugins.override.rules]]
    name = "tracker.example.net"
    action = "answer"
    records = ["A 198.18.0.53", "AAAA 2001:2::53"]   # TYPE RDATA, names absolute
    ttl = 60                     # of the records; default 300

A blocklist's ``file`` is relative to the configuration file's directory.
Which rule a query name gets: the exact rule of the name itself, else the
subtree rule of its longest suffix that has one.  The ``rules`` come before
the blocklists, in order: for a name listed twice with the same kind, the
first rule wins; rules that other plugins provide through the ``overrides``
hook join these in plugin order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from xdpdns.hookspecs import (
    DEFAULT_OVERRIDE_TTL,
    MAX_TTL,
    OVERRIDE_ACTIONS,
    Blocklist,
    ConfigSection,
    Override,
    hookimpl,
)

NAME = "override"
KEYS = ("rules", "blocklists")
RULE_KEYS = ("name", "subtree", "action", "records", "ttl")
BLOCKLIST_KEYS = ("file", "action", "subtree", "records", "ttl")
RECORDS = 'a list of records as "TYPE RDATA", like ["A 198.18.0.53", "AAAA 2001:2::53"]'


@dataclass(frozen=True)
class OverrideConfig:
    rules: tuple[Override, ...] = ()
    blocklists: tuple[Blocklist, ...] = ()


def _known_keys(table: dict, keys: tuple[str, ...], where) -> None:
    for key in table:
        if key not in keys:
            raise where.error(key, "one of the known keys: " + ", ".join(keys) + " (unknown key)")


def _tables(value: Any, where, key: str, what: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise where.error(key, what, value)
    return value


def _record(text: Any, where) -> dns.rdata.Rdata:
    if not isinstance(text, str) or len(text.split(None, 1)) != 2:
        raise where.error("records", RECORDS, text)
    rdtype, rdata = text.split(None, 1)
    try:
        return dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), rdata, origin=dns.name.root
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise where.error("records", f"a record as TYPE RDATA ({exc})", text) from None


def _answer(table: dict, where, action: str) -> tuple[tuple[dns.rdata.Rdata, ...], int]:
    """The records and TTL: given with action "answer", and only there."""
    if action != "answer":
        for key in ("records", "ttl"):
            if key in table:
                raise where.error(
                    key, 'nothing: records and ttl go with action = "answer"', table[key]
                )
        return (), DEFAULT_OVERRIDE_TTL
    records = table.get("records")
    if not isinstance(records, list) or not records:
        raise where.error("records", RECORDS + ' (action "answer" needs them)', records)
    parsed = tuple(_record(text, where) for text in records)
    ttl = table.get("ttl", DEFAULT_OVERRIDE_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
        raise where.error("ttl", f"a TTL from 0 to {MAX_TTL}", ttl)
    return parsed, ttl


def _action(table: dict, where) -> str:
    action = table.get("action", "nxdomain")
    if action not in OVERRIDE_ACTIONS:
        raise where.error(
            "action", "one of " + ", ".join(repr(a) for a in OVERRIDE_ACTIONS), action
        )
    return action


def _subtree(table: dict, where) -> bool:
    subtree = table.get("subtree", False)
    if not isinstance(subtree, bool):
        raise where.error("subtree", "true or false", subtree)
    return subtree


def _checked(make, where, key: str):
    """Builds an Override or Blocklist; what its own checks refuse (a CNAME
    beside other records) is a config error too."""
    try:
        return make()
    except ValueError as exc:
        raise where.error(
            key, "records that can be answered: " + str(exc).split(": ", 1)[-1]
        ) from None


def _rule(table: dict, where) -> Override:
    _known_keys(table, RULE_KEYS, where)
    text = table.get("name")
    if not isinstance(text, str) or not text:
        raise where.error("name", 'a domain name, like "ads.example.com" (required)', text)
    subtree = _subtree(table, where)
    if text.startswith("*."):
        # As in blocklists: *.NAME is NAME's subtree.
        if table.get("subtree") is False:
            raise where.error("subtree", f"true or nothing with the name {text!r}", False)
        text, subtree = text[2:], True
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise where.error("name", f"a domain name ({exc})", table["name"]) from None
    action = _action(table, where)
    records, ttl = _answer(table, where, action)
    return _checked(lambda: Override(name, action, subtree, records, ttl), where, "records")


def _blocklist(table: dict, where) -> Blocklist:
    _known_keys(table, BLOCKLIST_KEYS, where)
    file = table.get("file")
    if not isinstance(file, str) or not file:
        raise where.error("file", "the blocklist's path (required)", file)
    action = _action(table, where)
    subtree = _subtree(table, where)
    records, ttl = _answer(table, where, action)
    return _checked(
        lambda: Blocklist(where.base / file, action, subtree, records, ttl), where, "records"
    )


def parse_config(table, where) -> OverrideConfig:
    _known_keys(table, KEYS, where)
    rules, seen = [], {}
    for i, t in enumerate(
        _tables(table.get("rules", []), where, "rules", "[[plugins.override.rules]] tables"), 1
    ):
        w = where.sub(f"{where.section}.rules[{i}]")
        rule = _rule(t, w)
        key = (rule.name, rule.subtree)
        if key in seen:
            raise w.error(
                "name",
                f"each name once per kind (exact or subtree); "
                f"{rule.name} is also rules[{seen[key]}]",
                t["name"],
            )
        seen[key] = i
        rules.append(rule)
    blocklists = [
        _blocklist(t, where.sub(f"{where.section}.blocklists[{i}]"))
        for i, t in enumerate(
            _tables(
                table.get("blocklists", []),
                where,
                "blocklists",
                'a list of tables like {file = "list.txt", action = "nxdomain"}',
            ),
            1,
        )
    ]
    return OverrideConfig(tuple(rules), tuple(blocklists))


@hookimpl
def config_sections():
    return [ConfigSection(NAME, parse_config)]


@hookimpl
def overrides(config):
    c = config.plugins[NAME]
    return [*c.rules, *c.blocklists]
