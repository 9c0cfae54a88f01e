"""Query files: generated from the served zones with a chosen mix and seed,
or the user's own, in the format dnsperf and kxdpgun read (``NAME TYPE`` a
line); and the same queries in wire form for xdpdns's generator.

The kinds of the mix are the outcomes an authoritative server decides
between (RFC 1034 4.3.2): ``hit`` (an existing RRset; a CNAME's owner is
asked for A, so the chain is followed), ``nxdomain``, ``nodata`` (an
existing name, a type it lacks), ``wildcard`` (a name synthesized from a
wildcard, RFC 4592) and ``referral`` (a name at or below a delegation).
A kind the zones cannot produce (no wildcard, no delegation) is left out
and its share goes to the others; the plan says so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from xdpdns.bench.zones import ZoneFile

KINDS = ("hit", "nxdomain", "nodata", "wildcard", "referral")
DEFAULT_MIX = {"hit": 60, "nxdomain": 10, "nodata": 10, "wildcard": 10, "referral": 10}
DEFAULT_COUNT = 10_000
DEFAULT_SEED = 2024
MAX_COUNT = 10_000_000
# Types tried, in order, for a NODATA question: common ones a name may lack.
NODATA_TYPES = ("TXT", "AAAA", "MX", "A", "SRV", "CAA")
# Generated labels: long enough that a collision with a real name is
# checked for anyway, short enough to keep queries small.
LABEL_DIGITS = 7


class QueryFileError(ValueError):
    """A query file, mix or zone that cannot be used; the message names the
    file (and line) and what was expected."""


@dataclass(frozen=True)
class Query:
    name: str  # absolute, trailing dot
    rdtype: str
    kind: str = ""  # which KINDS it was made as (generated queries only)

    def line(self) -> str:
        return f"{self.name} {self.rdtype}"


@dataclass
class QueryPlan:
    """What went into a query file, for the report."""

    path: Path
    count: int
    source: str  # "generated" or the user's file
    seed: int | None = None
    mix: dict[str, float] = field(default_factory=dict)  # the shares used, in %
    dropped: dict[str, str] = field(default_factory=dict)  # kind -> why not

    def describe(self) -> dict:
        return {
            "file": str(self.path),
            "count": self.count,
            "source": self.source,
            "seed": self.seed,
            "mix_percent": self.mix,
            "left_out": self.dropped,
        }


def parse_mix(text: str) -> dict[str, float]:
    """``hit=60,nxdomain=10,...`` -> shares; kinds not named get 0."""
    mix = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = item.partition("=")
        kind = kind.strip()
        if not sep or kind not in KINDS:
            raise QueryFileError(
                f"--mix: {item!r}: expected KIND=SHARE with KIND one of {', '.join(KINDS)}"
            )
        try:
            share = float(value)
        except ValueError:
            raise QueryFileError(f"--mix: {item!r}: the share is not a number") from None
        if share < 0:
            raise QueryFileError(f"--mix: {item!r}: the share must not be negative")
        mix[kind] = share
    if not mix or sum(mix.values()) <= 0:
        raise QueryFileError("--mix: give at least one kind with a positive share")
    return mix


# ---- what the zones offer -------------------------------------------------------


@dataclass
class ZoneFacts:
    """The names of the zones sorted by what a question about them gives."""

    names: set[dns.name.Name] = field(default_factory=set)  # every owner, all zones
    hits: list[tuple[dns.name.Name, str]] = field(default_factory=list)
    nodata: list[tuple[dns.name.Name, str]] = field(default_factory=list)
    wildcards: list[tuple[dns.name.Name, str]] = field(default_factory=list)  # parent, type
    cuts: list[dns.name.Name] = field(default_factory=list)
    nx_parents: list[dns.name.Name] = field(default_factory=list)


def load_zone(zone: ZoneFile) -> dns.zone.Zone:
    try:
        return dns.zone.from_file(
            str(zone.path), origin=zone.origin, relativize=False, check_origin=True
        )
    except (dns.exception.DNSException, OSError, KeyError, ValueError) as exc:
        raise QueryFileError(
            f"{zone.path}: cannot read the zone for the query mix ({exc}); "
            "fix it, or give your own query file with --queries"
        ) from None


def zone_facts(zones: Sequence[ZoneFile]) -> ZoneFacts:
    facts = ZoneFacts()
    for zf in zones:
        _add_zone(facts, load_zone(zf))
    return facts


def _add_zone(facts: ZoneFacts, zone: dns.zone.Zone) -> None:
    origin = zone.origin
    cuts = {
        name
        for name, node in zone.nodes.items()
        if name != origin and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
    }
    # Below a DNAME every name is synthesized (RFC 6672): no NXDOMAIN there.
    dnames = {
        name
        for name, node in zone.nodes.items()
        if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.DNAME)
    }
    facts.cuts.extend(sorted(cuts))
    wildcard_parents = set()
    for name, node in sorted(zone.nodes.items()):
        # The owner and its empty non-terminals: names that exist.
        ancestor = name
        while ancestor not in facts.names and ancestor.is_subdomain(origin):
            facts.names.add(ancestor)
            ancestor = ancestor.parent()
        # Names below a zone cut are glue (or occluded): asking for them is
        # a referral, counted under its own kind.
        if any(name != cut and name.is_subdomain(cut) for cut in cuts) or name in cuts:
            continue
        types = sorted(dns.rdatatype.to_text(r.rdtype) for r in node.rdatasets)
        if name.labels[0] == b"*":
            parent = name.parent()
            wildcard_parents.add(parent)
            facts.wildcards.extend((parent, t) for t in types if t != "CNAME")
            continue
        if "CNAME" in types:
            facts.hits.append((name, "A"))  # answered with the chain
            continue
        facts.hits.extend((name, t) for t in types if t not in ("RRSIG", "NSEC", "NSEC3"))
        lacking = [t for t in NODATA_TYPES if t not in types]
        if lacking:
            facts.nodata.append((name, lacking[0]))
    # NXDOMAIN needs a parent with no wildcard child (else the wildcard
    # answers); a new label under it cannot exist.
    for name in sorted(zone.nodes):
        if any(name.is_subdomain(cut) for cut in cuts | dnames):
            continue
        if name.labels[0] != b"*" and name not in wildcard_parents:
            facts.nx_parents.append(name)


# ---- generating ----------------------------------------------------------------


def generate(
    zones: Sequence[ZoneFile], count: int, mix: dict[str, float], seed: int
) -> tuple[list[Query], dict[str, float], dict[str, str]]:
    """count queries drawn with the mix's shares from what the zones offer;
    returns them, the shares used (%) and the kinds left out with why."""
    if not 1 <= count <= MAX_COUNT:
        raise QueryFileError(f"--query-count: expected 1 to {MAX_COUNT}, got {count}")
    facts = zone_facts(zones)
    rng = random.Random(seed)
    makers = {
        "hit": (facts.hits, lambda: Query(*_text(rng.choice(facts.hits)), "hit")),
        "nodata": (facts.nodata, lambda: Query(*_text(rng.choice(facts.nodata)), "nodata")),
        "wildcard": (
            facts.wildcards,
            lambda: _below(rng, facts, rng.choice(facts.wildcards), "w", "wildcard"),
        ),
        "referral": (facts.cuts, lambda: _referral(rng, facts)),
        "nxdomain": (
            facts.nx_parents,
            lambda: _below(rng, facts, (rng.choice(facts.nx_parents), "A"), "nx", "nxdomain"),
        ),
    }
    why = {
        "hit": "no RRsets",
        "nodata": "no name lacks a common type",
        "wildcard": "no wildcard",
        "referral": "no delegation",
        "nxdomain": "every name has a wildcard child",
    }
    dropped = {k: why[k] for k, share in mix.items() if share > 0 and not makers[k][0]}
    usable = {k: share for k, share in mix.items() if share > 0 and makers[k][0]}
    if not usable:
        raise QueryFileError(
            "the zones offer none of the kinds of the mix ("
            + "; ".join(f"{k}: {v}" for k, v in dropped.items())
            + ")"
        )
    total = sum(usable.values())
    shares = {k: round(100 * v / total, 2) for k, v in usable.items()}
    kinds, weights = zip(*usable.items())
    queries = [makers[kind][1]() for kind in rng.choices(kinds, weights, k=count)]
    return queries, shares, dropped


def _text(pair: tuple[dns.name.Name, str]) -> tuple[str, str]:
    return pair[0].to_text(), pair[1]


def _below(
    rng: random.Random, facts: ZoneFacts, pair: tuple[dns.name.Name, str], prefix: str, kind: str
) -> Query:
    """A new name one label below pair's name (that no zone holds)."""
    parent, rdtype = pair
    while True:
        label = f"{prefix}{rng.randrange(10**LABEL_DIGITS):0{LABEL_DIGITS}d}"
        name = dns.name.Name((label.encode(),) + parent.labels)
        if name not in facts.names:
            return Query(name.to_text(), rdtype, kind)


def _referral(rng: random.Random, facts: ZoneFacts) -> Query:
    """The delegated name itself or a name below it."""
    cut = rng.choice(facts.cuts)
    if rng.random() < 0.5:
        return Query(cut.to_text(), "A", "referral")
    return Query(dns.name.Name((b"www",) + cut.labels).to_text(), "A", "referral")


def write(path: Path, queries: Sequence[Query]) -> None:
    with open(path, "w") as f:
        for q in queries:
            f.write(q.line() + "\n")


def generated_file(
    path: Path,
    zones: Sequence[ZoneFile],
    count: int = DEFAULT_COUNT,
    mix: dict[str, float] | None = None,
    seed: int = DEFAULT_SEED,
) -> QueryPlan:
    queries, shares, dropped = generate(zones, count, mix or DEFAULT_MIX, seed)
    write(path, queries)
    return QueryPlan(path, len(queries), "generated", seed, shares, dropped)


# ---- the user's file ------------------------------------------------------------


def read(path: Path) -> list[Query]:
    """A query file in dnsperf's format: ``NAME TYPE`` a line (kxdpgun's
    optional third column of flags is not accepted: dnsperf would not read
    it); blank lines and lines starting with ``;`` or ``#`` are skipped."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise QueryFileError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise QueryFileError(f"{path}: not a text file") from None
    queries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        parts = line.split()
        if len(parts) != 2:
            raise QueryFileError(f"{path}:{number}: expected NAME TYPE, got {line!r}")
        name, rdtype = parts
        try:
            dns.rdatatype.from_text(rdtype)
            absolute = dns.name.from_text(name).to_text()
        except (dns.exception.DNSException, ValueError) as exc:
            raise QueryFileError(f"{path}:{number}: {line!r}: {exc}") from None
        queries.append(Query(absolute, rdtype.upper()))
    if not queries:
        raise QueryFileError(f"{path}: no queries in the file")
    return queries


def user_file(source: Path, path: Path) -> QueryPlan:
    """The user's file, checked and copied (normalized) to path."""
    queries = read(source)
    write(path, queries)
    return QueryPlan(path, len(queries), str(source))


def to_wire(queries: Sequence[Query], dnssec: bool = False) -> list[bytes]:
    """DNS messages as dnsperf sends them: RD set, ID 0 (the generator
    sets its own), no EDNS; with dnssec, EDNS (1232 bytes) and DO, as
    dnsperf -D."""
    out = []
    for q in queries:
        msg = dns.message.make_query(
            q.name, q.rdtype, use_edns=0 if dnssec else False, payload=1232, want_dnssec=dnssec
        )
        msg.id = 0
        out.append(msg.to_wire())
    return out
