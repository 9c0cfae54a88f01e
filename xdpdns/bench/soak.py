"""Soak: one long run at a fixed rate, sampling the server's memory (RSS of
its processes) and its answer rate (its own counters, `xdpdns stats` over
the control socket) every few seconds, to show that neither drifts.

Drift is the least-squares slope over the samples after the first
``SETTLE`` seconds (allocations at start-up and the first fill of the rings
are not a leak): KiB per minute for memory, answers/s per minute for the
rate.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from xdpdns.bench.process import Server, answered_total

SETTLE = 10.0  # seconds after the load starts that drift ignores


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_kib: int
    answered: int | None  # the server's answer counter, None when unreadable
    rate: float | None  # answers/s since the previous sample
    cpu_s: float  # the server's CPU seconds so far


@dataclass
class Sampler:
    """Called as the generator's tick; takes a sample every `interval`
    seconds until `until` (the load's duration: after it the generator only
    drains, and a falling rate there is no drift)."""

    server: Server
    interval: float
    until: float
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _next: float = 0.0
    _last: tuple[float, int] | None = None

    def start(self) -> None:
        """The first sample, just before the load starts."""
        self.take(0.0)
        self._next = self.interval

    def __call__(self, elapsed: float) -> None:
        if elapsed < self._next or elapsed > self.until:
            return
        self._next = elapsed + self.interval
        self.take(elapsed)

    def take(self, elapsed: float) -> Sample:
        from xdpdns.bench import procfs
        from xdpdns.control import ControlError

        answered = rate = None
        try:
            stats = self.server.stats()
            answered = answered_total(stats) if stats is not None else None
        except ControlError as exc:
            if not self.errors:
                self.errors.append(f"soak: the server's counters: {exc}")
        now = time.monotonic()
        if answered is not None:
            if self._last is not None and now > self._last[0]:
                rate = (answered - self._last[1]) / (now - self._last[0])
            self._last = (now, answered)
        sample = Sample(
            round(elapsed, 3),
            self.server.rss_kib(),
            answered,
            rate,
            procfs.cpu_seconds(self.server.pids()),
        )
        self.samples.append(sample)
        return sample

    def summary(self) -> dict:
        settled = [s for s in self.samples if s.t >= SETTLE] or self.samples
        rss = [s.rss_kib for s in settled]
        rates = [s.rate for s in settled if s.rate is not None]
        out = {
            "samples": len(self.samples),
            "interval_s": self.interval,
            "settle_s": SETTLE,
            "rss_kib_first": rss[0] if rss else None,
            "rss_kib_last": rss[-1] if rss else None,
            "rss_kib_max": max(rss) if rss else None,
            "rss_kib_per_minute": _slope([(s.t, s.rss_kib) for s in settled]),
            "rate_median": statistics.median(rates) if rates else None,
            "rate_min": min(rates) if rates else None,
            "rate_max": max(rates) if rates else None,
            "rate_per_minute": _slope([(s.t, s.rate) for s in settled if s.rate is not None]),
        }
        return out

    def as_list(self) -> list[dict]:
        return [vars(s).copy() for s in self.samples]


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of value over time, per minute."""
    if len(points) < 2:
        return None
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    return 60.0 * sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / var
