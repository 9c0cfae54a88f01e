"""Counts by name (responses by RCODE or query type), summed over workers,
queues or CPUs, and the names of the XDP program's counters: shared by the
stats, their tables and the metrics."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

# The XDP program's per-CPU packet counters (xdpdns.engine's ProgStats),
# in the order the tables and metrics show them.
XDP_PROGRAM_COUNTERS = (
    "seen",
    "redirected",
    "answered_in_xdp",
    "rate_limited",
    "slipped",
    "passed",
    "dropped",
    "denied",
    "malformed",
)


def summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The counts added up name by name (names never counted stay out)."""
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)
