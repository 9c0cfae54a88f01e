"""The counters of the UDP and TCP workers and of dnstap, as Python reads
them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class WorkerStats:
    received: int
    answered: int
    dropped: int
    truncated: int
    batches: int
    denied: int = 0  # from sources the ACL denies (also in answered or dropped)
    limited: int = 0  # responses rate limiting withheld (dropped, or slipped)
    slipped: int = 0  # of those, sent truncated (also in answered)
    deferred: int = 0  # handed to the resolver hook (answered or dropped when it answers)
    resolver_full: int = 0  # SERVFAIL at once: the worker held as many as it may
    resolver_expired: int = 0  # SERVFAIL: the hook did not answer in time
    # Responses made, by RCODE name and by query type ("other": the types
    # without a counter of their own); only those seen.
    rcodes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    qtypes: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class TcpStats:
    """The TCP workers' counters, summed (xd_tcp_stats)."""

    connections: int = 0  # accepted and served
    open: int = 0  # open now
    rejected: int = 0  # closed at once: tcp_max_connections
    client_rejected: int = 0  # closed at once: tcp_max_client_connections
    received: int = 0  # queries read
    answered: int = 0  # responses written (a transfer counts once)
    dropped: int = 0  # queries that got no response
    denied: int = 0  # queries from sources the ACL denies (refused, or closed)
    denied_closed: int = 0  # connections closed: the ACL drops the client
    idle_closed: int = 0  # closed by tcp_idle_timeout
    io_timeouts: int = 0  # closed: a query or an answer stalled past tcp_io_timeout
    limit_closed: int = 0  # closed after tcp_max_queries or tcp_lifetime
    transfers: int = 0  # zone transfers sent whole
    transfers_refused: int = 0  # REFUSED: tcp_max_transfers were running
    transfers_failed: int = 0  # cut short: the client left or stalled
    deferred: int = 0  # as in WorkerStats
    resolver_full: int = 0
    resolver_expired: int = 0
    rcodes: Mapping[str, int] = dataclasses.field(default_factory=dict)  # as WorkerStats
    qtypes: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class DnstapStats:
    """The dnstap writer's counters (struct xd_dnstap_stats)."""

    events: int  # queries sampled
    written: int  # messages written to the collector
    lost_full: int  # events lost to a full worker ring
    lost_unconnected: int  # messages lost while no collector listened
    connects: int
    connected: bool
    error: str  # why no collector is connected ("" when none)
