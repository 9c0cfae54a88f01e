"""Counts by name (responses by RCODE or query type), summed over workers,
queues or CPUs: one helper for the stats, their tables and the metrics."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping


def summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The counts added up name by name (names never counted stay out)."""
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)
