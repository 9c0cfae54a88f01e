"""A worker thread that stops for an error makes the server stop (exit
status 1, logged), instead of leaving its socket bound with nobody to
answer the queries the kernel keeps giving it."""

import asyncio
import logging
import os
import socket
import time

import dns.message
import dns.name

from xdpdns.config import default_zone_path, load_config
from xdpdns.engine import Engine, ImageBuilder
from xdpdns.plugins import load_plugins
from xdpdns.server import Server


def _epoll_fds():
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]":
                fds.add(int(name))
        except OSError:
            pass
    return fds


def test_udp_worker_that_fails_is_reported_by_the_engine():
    """Regression: a UDP worker whose epoll_wait failed returned quietly.
    Here its epoll descriptor is swapped for /dev/null under it: the next
    wait fails with EINVAL, and the engine says which worker and why."""
    with Engine() as engine, ImageBuilder() as builder:
        builder.load_zonefile(
            builder.add_zone(dns.name.from_text("example.com.")), default_zone_path()
        )
        engine.set_image(builder.finish())
        before = _epoll_fds()
        (port,) = engine.udp_start([("127.0.0.1", 0)], 1)
        try:
            assert engine.failure() is None
            (epfd,) = _epoll_fds() - before
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, epfd)  # udp_stop closes /dev/null there, not another file
            os.close(null)
            # The wait under way ends with this query; the next one fails.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(
                    dns.message.make_query("www.example.com.", "A").to_wire(), ("127.0.0.1", port)
                )
            deadline = time.monotonic() + 5
            while engine.failure() is None:
                assert time.monotonic() < deadline, "the failure was not reported"
                time.sleep(0.01)
            assert engine.failure() == "UDP worker 0: epoll_wait: Invalid argument"
        finally:
            engine.udp_stop()


class _FailedEngine:
    def failure(self):
        return "UDP worker 3: epoll_wait: Invalid argument"


def test_server_stops_with_status_1_when_a_worker_failed(caplog):
    server = Server(load_config(None), load_plugins())
    server._engine = _FailedEngine()

    async def watch():
        server._stop = asyncio.Event()
        await asyncio.wait_for(server._watch_workers(0.01), 5)
        return server._stop.is_set()

    with caplog.at_level(logging.ERROR, logger="xdpdns.server"):
        assert asyncio.run(watch())
    assert server._failure == "UDP worker 3: epoll_wait: Invalid argument"
    assert "UDP worker 3: epoll_wait: Invalid argument; stopping" in caplog.text
