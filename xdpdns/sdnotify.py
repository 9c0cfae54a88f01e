"""systemd's service notification protocol (sd_notify(3)), without libsystemd.

Under a unit with Type=notify, systemd passes $NOTIFY_SOCKET: a datagram
socket (a path, or an abstract name written with a leading "@") that takes
newline-separated KEY=VALUE lines.  xdpdns sends READY=1 once it answers,
RELOADING=1 and READY=1 around a reload, STOPPING=1 when it stops, and
WATCHDOG=1 at half the interval that $WATCHDOG_USEC asks for.  Without
$NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger(__name__)


class SystemdNotify:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith("@"):
            self._address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self._address = path
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            # Twice within the interval, as sd_watchdog_enabled(3) advises.
            self.watchdog_interval = int(usec) / 2e6
        # A child of ours must not talk to systemd as if it were us.
        if environ is None:
            for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(key, None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Sends KEY=VALUE lines; False (logged once per failure) when the
        socket is gone: systemd's bookkeeping must never stop the server."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message, self._address)
        except OSError as exc:
            log.warning("cannot notify systemd at $NOTIFY_SOCKET: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload match the reload it asked for.
        return self.send(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)
