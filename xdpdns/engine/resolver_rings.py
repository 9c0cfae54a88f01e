"""The resolver hook's side of the engine (engine.h's resolver section):
the deferred queries a hook thread takes, and the kinds of its answers."""

from __future__ import annotations

import socket

from xdpdns.engine._c import ffi, lib


# The AA bit of the header that Engine.resolver_build takes.
RESOLVER_AA = lib.XD_RESOLVER_AA


# What Engine.resolver_answer hands back.
RESOLVER_RECORDS = lib.XD_RESOLVER_RECORDS


RESOLVER_WIRE = lib.XD_RESOLVER_WIRE


RESOLVER_SERVFAIL = lib.XD_RESOLVER_SERVFAIL


# Plugins that may answer claimed names (their hook threads).
RESOLVER_HOOKS_MAX = lib.XD_RESOLVER_HOOKS_MAX


class ResolverBatch:
    """Room for ``size`` deferred queries (struct xd_resolver_query) that
    :meth:`Engine.resolver_take` fills; ``n`` of them are valid, and
    ``self[i]`` is the i-th, for :meth:`Engine.resolver_answer`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.array = ffi.new("struct xd_resolver_query[]", size)
        self.n = 0

    def __getitem__(self, i: int):
        return self.array + i


# Client addresses as text, by their 16 bytes and family: a busy resolver
# sees the same clients again and again, and inet_ntop is a good part of
# what a query costs the drain thread.  Bounded: cleared when full.
_HOSTS: dict[tuple[int, bytes], str] = {}


_HOSTS_MAX = 65536


def resolver_query_fields(q) -> tuple[bytes, tuple[str, int]]:
    """The query's bytes and the client's (address, port) of one entry of a
    :class:`ResolverBatch`."""
    key = (q.family, ffi.buffer(q.ip, 16)[:])
    host = _HOSTS.get(key)
    if host is None:
        if len(_HOSTS) >= _HOSTS_MAX:
            _HOSTS.clear()
        if q.family == socket.AF_INET:
            host = socket.inet_ntop(socket.AF_INET, key[1][:4])
        else:
            host = socket.inet_ntop(socket.AF_INET6, key[1])
        _HOSTS[key] = host
    return ffi.buffer(q.query, q.len)[:], (host, q.port)
