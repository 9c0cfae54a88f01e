"""Catalog zones (RFC 9432, version 2), as a consumer: what a catalog's
records say about its member zones.

A catalog is a zone like any other, transferred from its primaries; what
matters in it is few records, kept here as its content:

- ``version.CATALOG TXT "2"``: the schema (RFC 9432 3); any other is
  refused;
- ``ID.zones.CATALOG PTR MEMBER``: one member zone per unique ID
  (RFC 9432 4.1);
- ``group.ID.zones.CATALOG TXT "NAME"``: groups, which select a
  configuration template (RFC 9432 4.4.2);
- ``coo.ID.zones.CATALOG PTR OTHER``: a change of ownership to another
  catalog (RFC 9432 4.4.1), which takes the member once it lists it too
  (service.with_members).

Everything else under the catalog is ignored, as the RFC asks (4.4: an
unknown property is not an error).  A catalog whose content is broken (no
version 2, a member ID with two PTRs, a member twice, a member that is the
catalog itself or below it) raises CatalogError naming the record, and its
consumer keeps what it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import dns.exception
import dns.name
import dns.rdata
import dns.rdatatype

VERSION = "2"


class CatalogError(Exception):
    """A catalog version that cannot be used; the message says why."""


@dataclass(frozen=True)
class Member:
    zone: dns.name.Name
    id: str  # the unique ID's label
    groups: tuple[str, ...] = ()
    coo: dns.name.Name | None = None  # the catalog it may move to


# The content kept of a catalog: (relative owner, type) -> RDATA texts.
Content = dict[tuple[dns.name.Name, int], set[str]]


@dataclass
class Catalog:
    """One catalog's content and the members it makes."""

    origin: dns.name.Name
    content: Content = field(default_factory=dict)

    # ---- content -------------------------------------------------------------------

    def _key(self, name: dns.name.Name, rdtype: int) -> tuple[dns.name.Name, int] | None:
        """Where a record goes in the content; None for the ones that say
        nothing about members."""
        if rdtype not in (dns.rdatatype.TXT, dns.rdatatype.PTR):
            return None
        if not name.is_subdomain(self.origin) or name == self.origin:
            return None
        return name.relativize(self.origin).canonicalize(), int(rdtype)

    def _text(self, rdata: dns.rdata.Rdata) -> str:
        return rdata.to_text(origin=None, relativize=False)

    def replace(self, records: Iterable) -> None:
        """The content of a whole zone (xfr.Record: name, ttl, rdata)."""
        self.content = {}
        self.apply((), records)

    def apply(self, deletes: Iterable, adds: Iterable) -> None:
        """Differences (xfr.Record) applied to the content, deletes first."""
        for record in deletes:
            key = self._key(record.name, record.rdata.rdtype)
            if key is not None:
                texts = self.content.get(key, set())
                texts.discard(self._text(record.rdata))
                if not texts:
                    self.content.pop(key, None)
        for record in adds:
            key = self._key(record.name, record.rdata.rdtype)
            if key is not None:
                self.content.setdefault(key, set()).add(self._text(record.rdata))

    def copy(self) -> "Catalog":
        return Catalog(self.origin, {k: set(v) for k, v in self.content.items()})

    # ---- members -------------------------------------------------------------------

    def members(self) -> dict[dns.name.Name, Member]:
        """The member zones by name; CatalogError for broken content."""
        version = self.content.get((dns.name.from_text("version", None), dns.rdatatype.TXT))
        if version != {f'"{VERSION}"'}:
            found = ", ".join(sorted(version)) if version else "none"
            raise CatalogError(
                f"catalog {self.origin}: version.{self.origin} TXT must be "
                f'"{VERSION}" alone (RFC 9432), found {found}'
            )
        members: dict[dns.name.Name, Member] = {}
        for (owner, rdtype), texts in sorted(self.content.items(), key=_order):
            labels = owner.labels
            if rdtype != dns.rdatatype.PTR or len(labels) != 2 or labels[1] != b"zones":
                continue
            member = self._member(owner, texts)
            if member.zone in members:
                raise CatalogError(
                    f"catalog {self.origin}: zone {member.zone} is a member twice "
                    f"(IDs {members[member.zone].id} and {member.id})"
                )
            members[member.zone] = member
        return members

    def _member(self, owner: dns.name.Name, texts: set[str]) -> Member:
        where = f"catalog {self.origin}: {owner.derelativize(self.origin)} PTR"
        if len(texts) != 1:
            raise CatalogError(
                f"{where}: one member zone per ID (RFC 9432 4.1), found {len(texts)}"
            )
        try:
            zone = dns.name.from_text(next(iter(texts)))
        except dns.exception.DNSException as exc:
            raise CatalogError(f"{where}: not a zone name: {exc}") from None
        if zone == dns.name.root or zone.is_subdomain(self.origin):
            raise CatalogError(
                f"{where} {zone}: not a member zone (the root, or the catalog or below it)"
            )
        id_label = owner.labels[0].decode("ascii", "replace")
        groups = self.content.get((dns.name.Name((b"group",) + owner.labels), dns.rdatatype.TXT))
        coo = self.content.get((dns.name.Name((b"coo",) + owner.labels), dns.rdatatype.PTR))
        return Member(
            zone.canonicalize(),
            id_label,
            tuple(sorted(_txt_value(t) for t in groups or ())),
            dns.name.from_text(sorted(coo)[0]) if coo else None,
        )

    # ---- kept on disk ---------------------------------------------------------------

    def to_json(self) -> list[list]:
        return [
            [name.to_text(), rdtype, sorted(texts)]
            for (name, rdtype), texts in sorted(self.content.items(), key=_order)
        ]

    @classmethod
    def from_json(cls, origin: dns.name.Name, data) -> "Catalog":
        """ValueError for data this module did not write."""
        try:
            content = {
                (dns.name.from_text(name, None), int(rdtype)): set(texts)
                for name, rdtype, texts in data
            }
        except (TypeError, ValueError, dns.exception.DNSException) as exc:
            raise ValueError(f"not a catalog's content: {exc}") from None
        return cls(origin, content)


def _order(item) -> tuple:
    (name, rdtype), _ = item
    return (name.to_text(), rdtype)


def _txt_value(text: str) -> str:
    """The strings of a TXT record's text form, joined: its value."""
    rdata = dns.rdata.from_text("IN", "TXT", text)
    return b"".join(rdata.strings).decode("utf-8", "replace")
