"""Signals during a benchmark: SIGTERM, SIGINT and SIGHUP become an
exception, so that every ``finally`` (stop the server, delete the
namespaces, remove the working directory) runs on the way out; clean-ups
hold them back so that none is cut in half."""

from __future__ import annotations

import contextlib
import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):
    """A signal ended the benchmark (BaseException, like KeyboardInterrupt:
    no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def raised():
    """Turns the signals into Interrupted, once: a second signal must not
    cut the clean-up of the first short, so it is ignored."""

    def handler(signum, frame):
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred():
    """Holds the signals back while a clean-up runs; one that came meanwhile
    is delivered at the end of the block."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
