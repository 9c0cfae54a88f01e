"""dnstap output ([dnstap]): what the engine's writer (native/io/dnstap.c) is
started with, and what the server logs of its collector.

The writer connects to the collector in the background and again once a
second after losing it, so a collector started after the server, or
restarted, needs nothing from the operator; these lines say when that
happens and what was lost meanwhile.
"""

from __future__ import annotations

import logging
import socket

from xdpdns import __version__
from xdpdns.config import DnstapConfig

log = logging.getLogger("xdpdns")

# How often the server looks at the writer's state.
WATCH_INTERVAL = 1.0


def start(engine, cfg: DnstapConfig) -> None:
    """Starts the engine's dnstap writer as [dnstap] says; before the workers."""
    identity = cfg.identity if cfg.identity is not None else socket.gethostname()
    version = cfg.version if cfg.version is not None else f"xdpdns {__version__}"
    engine.dnstap_start(
        str(cfg.socket), cfg.sample, cfg.log_queries, cfg.log_responses, identity, version
    )
    log.info(
        "dnstap socket=%s sample=%d queries=%s responses=%s",
        cfg.socket,
        cfg.sample,
        "on" if cfg.log_queries else "off",
        "on" if cfg.log_responses else "off",
    )


class DnstapWatch:
    """Turns successive DnstapStats into log lines: one when the collector
    is reached, one when it is lost or cannot be reached (each error once,
    not every second), with what was lost since the last line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connects = 0
        self._error = ""
        self._lost = 0

    def lines(self, stats) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        lost = stats.lost_full + stats.lost_unconnected
        if stats.connects > self._connects:
            out.append(
                (
                    logging.INFO,
                    f"dnstap connected to {self.path}"
                    + (f" ({lost - self._lost} events lost before)" if lost > self._lost else ""),
                )
            )
            self._connects = stats.connects
            self._lost = lost
        if stats.error and stats.error != self._error:
            out.append(
                (
                    logging.WARNING,
                    f"dnstap {stats.error}; events are lost until it "
                    "listens (tried again every second)",
                )
            )
            self._lost = lost
        self._error = stats.error
        return out
