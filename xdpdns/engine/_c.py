"""The cffi binding of the C engine (xdpdns._engine), the one module that
imports it, and what the rest of xdpdns.engine does with it: errors as
OSError, C objects owned and freed, answers into buffers, and C structs
made from Python values."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from typing import Sequence

import dns.name
import dns.rcode
import dns.rdatatype

from xdpdns._engine import ffi, lib


# The largest DNS message (RFC 1035 4.2.2: TCP length prefix of 16 bits).
MAX_MESSAGE = 65535


def _raise_for(rc: int, err=None, what: str = "") -> int:
    """Returns rc when it is not negative, else raises OSError(-rc, message).

    The message is the engine's (from err) when it wrote one, else strerror;
    ``what`` says which operation failed when the engine gave no words.
    """
    if rc >= 0:
        return rc
    message = ""
    if err is not None:
        message = ffi.string(err.message).decode("utf-8", "replace")
    if not message:
        message = os.strerror(-rc)
        if what:
            message = f"{what}: {message}"
    raise OSError(-rc, message)


def _wire(name: dns.name.Name, origin: dns.name.Name | None = None) -> bytes:
    if not name.is_absolute():
        if origin is None:
            raise ValueError(f"relative name {name} without an origin")
        name = name.derelativize(origin)
    return name.to_wire()


class _CObject:
    """Owns one C object: freed by close() or a ``with`` block, and by
    ``ffi.gc`` when dropped without either.  ``_closed`` is what using it
    after that says."""

    _closed = "closed"
    _c = None

    def _own(self, ptr, free) -> None:
        self._c = ffi.gc(ptr, free)

    def _ptr(self):
        if self._c is None:
            raise ValueError(self._closed)
        return self._c

    def close(self) -> None:
        if self._c is not None:
            ffi.release(self._c)
            self._c = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_buffers = threading.local()


class _Deferred:
    """What Engine.answer(defer=True) returns for a query that the resolver
    hook must answer: the name is claimed and the cache has no answer."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = _Deferred()


def _answer(call, query: bytes, tcp: bool, defer: bool = False):
    # One response buffer per thread: the resolver's threads and tests may answer
    # from several threads at once, and a fresh 64 KiB buffer per query costs.
    resp = getattr(_buffers, "resp", None)
    if resp is None:
        resp = _buffers.resp = ffi.new("uint8_t[]", MAX_MESSAGE)
    q = ffi.from_buffer("uint8_t[]", query)
    flags = (lib.XD_ANSWER_TCP if tcp else 0) | (lib.XD_ANSWER_DEFER if defer else 0)
    rc = call(q, len(query), resp, MAX_MESSAGE, flags)
    if defer and rc == -errno.EAGAIN:
        return DEFERRED
    _raise_for(rc, what="answer")
    if rc == 0:
        return None
    return bytes(ffi.buffer(resp, rc))


def _set_chars(struct, field: str, text: str, what: str) -> None:
    """Copies text into a fixed char array of struct, NUL included."""
    encoded = text.encode()
    if len(encoded) >= len(getattr(struct, field)):
        raise ValueError(f"{what} too long: {text}")
    setattr(struct, field, encoded)


def _listen_array(listen: Sequence[tuple[str, int]]):
    addrs = ffi.new("struct xd_listen[]", len(listen))
    for slot, (host, port) in zip(addrs, listen):
        encoded = host.encode()
        if len(encoded) >= len(slot.host):
            raise ValueError(f"address too long: {host}")
        slot.host = encoded
        slot.port = port
    return addrs


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _rcode_counts(counts) -> dict[str, int]:
    return {dns.rcode.to_text(rcode): counts[rcode] for rcode in range(16) if counts[rcode]}


def _qtype_bucket_names() -> list[str]:
    """The name of each query type bucket (bpf/xdpdns_maps.h's list, all
    below 512), "other" for bucket 0."""
    names = ["other"] * 16
    for qtype in range(1, 512):
        bucket = lib.xd_qtype_bucket_of(qtype)
        if bucket:
            names[bucket] = dns.rdatatype.to_text(qtype)
    return names


_QTYPE_BUCKETS = _qtype_bucket_names()


def _qtype_counts(counts) -> dict[str, int]:
    return {_QTYPE_BUCKETS[i]: counts[i] for i in range(16) if counts[i]}


def _client(address: str | None):
    """A struct xd_client for an IP address (NULL for None)."""
    if address is None:
        return ffi.NULL
    ip = ipaddress.ip_address(address)
    client = ffi.new("struct xd_client *")
    client.family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    ffi.memmove(client.addr, ip.packed, len(ip.packed))
    return client
