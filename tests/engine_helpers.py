"""Test-only wrappers of engine functions (native/engine.h) that the
server does not use: SipHash as DNS cookies use it, and a rate limiter of
its own with the workers' logic, the time passed in.  They live here, not
in xdpdns/engine/, so that the product carries only what it runs."""

from __future__ import annotations

import errno
import ipaddress
import socket

from xdpdns.engine import COOKIE_STATES, RRL_KINDS, Image, RrlEvent
from xdpdns.engine._c import _answer, _client, _CObject, _raise_for, ffi, lib
from xdpdns.engine.policy import _VERDICTS, _rrl_config, _rrl_event

_RRL_VERDICTS = {lib.XD_RRL_SEND: "send", lib.XD_RRL_DROP: "drop", lib.XD_RRL_SLIP: "slip"}
_COOKIE_CODES = {name: code for code, name in COOKIE_STATES.items()}


def siphash24(key: bytes, data: bytes) -> bytes:
    """SipHash-2-4 of ``data`` under a 16-byte ``key`` (the engine's, as DNS
    cookies use it): 8 bytes in the reference implementation's order."""
    if len(key) != 16:
        raise ValueError(f"SipHash key: {len(key)} bytes, expected 16")
    out = ffi.new("uint8_t[8]")
    lib.xd_siphash24(key, data, len(data), out)
    return bytes(out)


class RrlTable(_CObject):
    """A rate limiter of its own with the workers' logic (native/answer/rrl.c): the
    time is passed in."""

    def __init__(self, settings) -> None:
        cfg, keep = _rrl_config(settings)
        out = ffi.new("struct xd_rrl_table **")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_rrl_table_new(cfg, out, err), err, "creating a rate limiter")
        del keep
        self._own(out[0], lib.xd_rrl_table_free)

    def check(self, response: bytes, client: str, now: int, cookie: str = "none") -> str:
        """ "send", "drop" or "slip" for ``response`` to ``client`` at ``now``
        (UNIX seconds); ``cookie`` is what its query's COOKIE option showed."""
        verdict = lib.xd_rrl_table_check(
            self._ptr(), _client(client), response, len(response), _COOKIE_CODES[cookie], now
        )
        return _RRL_VERDICTS[_raise_for(verdict, what="rate limiting")]

    def answer(self, image: Image, query: bytes, client: str, now: int) -> bytes | None:
        """The response to a UDP ``query`` from ``client`` at ``now`` as a
        worker sends it: answered from ``image``, then limited by the kind of
        response the answering core noted (its truncated form when it slips;
        None when nothing is sent)."""
        table, img, source = self._ptr(), image._ptr(), _client(client)
        return _answer(
            lambda q, n, r, c, f: lib.xd_rrl_table_answer(table, img, source, now, q, n, r, c),
            query,
            tcp=False,
        )

    def events(self, max_events: int = 256) -> list[RrlEvent]:
        out = ffi.new("struct xd_rrl_event[]", max_events)
        n = _raise_for(
            lib.xd_rrl_table_events(self._ptr(), out, max_events), what="rate limiting events"
        )
        return [_rrl_event(out[i]) for i in range(n)]


def rrl_classify(response: bytes) -> str:
    """The kind of a response as rate limiting counts it (:data:`RRL_KINDS`)."""
    return RRL_KINDS[
        _raise_for(lib.xd_rrl_classify(response, len(response)), what="classifying a response")
    ]


def rrl_slip(response: bytes) -> bytes:
    """The truncated form of a response that slip sends: TC=1, the question
    only."""
    buf = ffi.new("uint8_t[]", response)
    n = _raise_for(lib.xd_rrl_slip(buf, len(response)), what="truncating a response")
    return bytes(ffi.buffer(buf, n))


# ---- what the Python TCP listener used, before TCP moved into C ------------------

AXFR_FIRST_BUFFER = 1 << 16  # a first guess; xd_engine_axfr says what it needs


def acl_check(engine, address: str) -> str:
    """What socket mode does with a query from ``address``: "answer",
    "refuse" (REFUSED) or "drop"."""
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    verdict = _raise_for(
        lib.xd_engine_acl_check(engine._ptr(), family, ip.packed),
        what=f"checking {ip} against the source ACL",
    )
    return _VERDICTS[verdict]


def refused(query: bytes) -> bytes | None:
    """The REFUSED response to ``query`` (xd_answer_refused, what a denied
    source gets); None when nothing must be sent back."""
    return _answer(lambda q, n, r, c, f: lib.xd_answer_refused(q, n, r, c), query, False)


def axfr(engine, query: bytes, client: str | None) -> bytes | None:
    """The whole zone transfer an AXFR or IXFR query asks for
    (xd_engine_axfr), as the bytes a TCP connection would carry; None when
    there is none to send (not allowed, no such zone, not a transfer)."""
    c_client = _client(client)
    size = ffi.new("size_t *")
    cap = AXFR_FIRST_BUFFER
    while True:
        out = ffi.new("uint8_t[]", cap)
        rc = lib.xd_engine_axfr(engine._ptr(), c_client, query, len(query), out, cap, size)
        if rc != -errno.ENOSPC:
            break
        cap = size[0]  # a reload meanwhile may change it: ask again
    if rc in (-errno.EPERM, -errno.ENOENT, -errno.EINVAL, -errno.ENODATA):
        return None
    _raise_for(rc, what="zone transfer")
    return ffi.buffer(out, size[0])[:]
