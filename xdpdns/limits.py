"""Resource limits checked at start: the open files the configuration needs."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Descriptors beside TCP connections: listeners, the control socket,
# workers' sockets and eventfds, BPF maps, logs, plugins' files.
BASE_FILES = 256
PER_WORKER_FILES = 4


class LimitError(OSError):
    """A resource limit the configuration cannot run under."""


def files_needed(tcp_max_connections: int, workers: int) -> int:
    return tcp_max_connections + BASE_FILES + PER_WORKER_FILES * workers


def ensure_open_files(tcp_max_connections: int, workers: int) -> int:
    """Raises the soft RLIMIT_NOFILE up to what the configuration needs
    (within the hard limit); returns the limit in force.  LimitError when
    even the hard limit is too low."""
    need = files_needed(tcp_max_connections, workers)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        raise LimitError(
            f"[server] tcp_max_connections = {tcp_max_connections} needs {need} open files "
            f"(with {workers} workers), but RLIMIT_NOFILE allows {soft} (hard limit {hard}): "
            f"raise it (LimitNOFILE= in the systemd unit, ulimit -n) or lower "
            f"tcp_max_connections"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    log.debug("RLIMIT_NOFILE raised from %d to %d", soft, need)
    return need
