"""The engine object (engine.h's engine, TCP, XDP mode, resolver and
dnstap sections): the published image, the workers, and the settings
published to them."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from typing import Iterable, Sequence

import dns.name

from xdpdns.engine._c import (
    ffi,
    lib,
    _raise_for,
    _CObject,
    _answer,
    _set_chars,
    _listen_array,
    _ms,
    _rcode_counts,
    _qtype_counts,
    _client,
)
from xdpdns.engine.policy import (
    ACL_ACTIONS,
    ACL_SOCKET_ACTIONS,
    COOKIE_STATES,
    _acl_rules,
    RrlEvent,
    _rrl_config,
    _rrl_event,
)
from xdpdns.engine.stats import WorkerStats, TcpStats, DnstapStats
from xdpdns.engine.xdp import (
    PORT_ACTIONS,
    _HUGEPAGES,
    _ZEROCOPY,
    _ATTACH,
    XdpInfo,
    QueueStats,
    ProgStats,
    AnswersInfo,
    _prog_stats,
    _answers_info,
    _ANSWERS,
)
from xdpdns.engine.resolver_rings import ResolverBatch
from xdpdns.engine.image import ImageInfo, Image, PublishedImage, ClientAnswer
from xdpdns.engine.journal import (
    JournalEvent,
    JournalInfo,
    JournalLimits,
    derive_journal,
    journal_info,
)


class Engine(_CObject):
    """The published image and the socket-mode UDP workers; close() stops
    the workers and frees the engine and its image."""

    _closed = "the engine is closed"

    def __init__(self) -> None:
        out = ffi.new("struct xd_engine **")
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_new(out, err), err, "creating the engine")
        self._own(out[0], lib.xd_engine_free)
        self.image_info: ImageInfo | None = None

    def keep_journal(self, image: Image, limits: JournalLimits) -> list[JournalEvent]:
        """Gives image, about to be published, the journal of what changed
        since the image being served, for IXFR out (xdpdns.engine.journal);
        the events say what each zone's journal did.  Only the thread that
        publishes may call it.  OSError (ENOMEM): image keeps no journal,
        and can still be published."""
        return derive_journal(image._ptr(), lib.xd_engine_image(self._ptr()), limits)

    def set_image(self, image: Image) -> None:
        """Publishes image; the engine owns it from now on (image is emptied)."""
        info = image.info
        ptr = image._take()
        rc = lib.xd_engine_set_image(self._ptr(), ptr)
        if rc < 0:
            lib.xd_image_free(ptr)
        _raise_for(rc, what="publishing the zone image")
        self.image_info = info

    def published_image(self) -> PublishedImage | None:
        """The image being served, borrowed until the next set_image (which
        only the caller's thread may make while it holds it); None before
        the first."""
        ptr = lib.xd_engine_image(self._ptr())
        return None if ptr == ffi.NULL else PublishedImage(ptr)

    def answer(
        self,
        query: bytes,
        tcp: bool = False,
        client: str | None = None,
        now: int | None = None,
        defer: bool = False,
    ):
        """Answers one DNS message; None when nothing must be sent back.

        With tcp=True there is no UDP size limit (the caller writes the
        two-byte length prefix).  ``client`` (the sender's IP address) and
        ``now`` (UNIX time; default: the clock) are what DNS cookies depend
        on; without a client the COOKIE option is ignored.  A name that a
        resolver plugin claims is answered from the resolver cache, else
        SERVFAIL, or with ``defer`` :data:`DEFERRED` (the caller asks the
        resolver, xdpdns/resolver.py).
        """
        return self.answer_client(query, client, tcp=tcp, now=now, defer=defer).wire

    def failure(self) -> str | None:
        """Why a worker thread stopped for an error (the first one), or None
        while every worker runs."""
        out = ffi.new("char[256]")
        if lib.xd_engine_failure(self._ptr(), out, len(out)):
            return ffi.string(out).decode("utf-8", "replace")
        return None

    def udp_start(self, listen: Sequence[tuple[str, int]], workers: int) -> list[int]:
        """Starts UDP workers on every (host, port); returns the bound ports."""
        err = ffi.new("struct xd_error *")
        e = self._ptr()
        _raise_for(
            lib.xd_engine_udp_start(e, _listen_array(listen), len(listen), workers, err),
            err,
            "starting UDP workers",
        )
        return [_raise_for(lib.xd_engine_udp_port(e, i)) for i in range(len(listen))]

    def udp_stop(self) -> None:
        _raise_for(lib.xd_engine_udp_stop(self._ptr()), what="stopping UDP workers")

    def tcp_start(
        self,
        listen: Sequence[tuple[str, int]],
        *,
        workers: int = 1,
        max_connections: int = 256,
        max_client_connections: int = 32,
        idle_timeout: float = 10.0,
        io_timeout: float = 0.5,
        max_queries: int = 0,
        lifetime: float = 0.0,
        max_transfers: int = 10,
    ) -> list[int]:
        """Starts the TCP workers on every (host, port), with the limits of
        [server]'s tcp_* keys (times in seconds); returns the bound ports."""
        cfg = ffi.new(
            "struct xd_tcp_config *",
            {
                "workers": workers,
                "max_connections": max_connections,
                "max_client_connections": max_client_connections,
                "idle_timeout_ms": _ms(idle_timeout),
                "io_timeout_ms": _ms(io_timeout),
                "max_queries": max_queries,
                "lifetime_ms": _ms(lifetime),
                "max_transfers": max_transfers,
            },
        )
        err = ffi.new("struct xd_error *")
        e = self._ptr()
        _raise_for(
            lib.xd_engine_tcp_start(e, _listen_array(listen), len(listen), cfg, err),
            err,
            "starting TCP workers",
        )
        return [_raise_for(lib.xd_engine_tcp_port(e, i)) for i in range(len(listen))]

    def tcp_stop(self) -> None:
        """Closes every TCP connection and stops the TCP workers."""
        _raise_for(lib.xd_engine_tcp_stop(self._ptr()), what="stopping TCP workers")

    def tcp_stats(self) -> TcpStats:
        out = ffi.new("struct xd_tcp_stats *")
        lib.xd_engine_tcp_stats(self._ptr(), out)
        c = out.core
        return TcpStats(
            connections=out.connections,
            open=out.open,
            rejected=out.rejected,
            client_rejected=out.client_rejected,
            received=c.received,
            answered=c.answered,
            dropped=c.dropped,
            denied=c.denied,
            denied_closed=out.denied_closed,
            idle_closed=out.idle_closed,
            io_timeouts=out.io_timeouts,
            limit_closed=out.limit_closed,
            transfers=out.transfers,
            transfers_refused=out.transfers_refused,
            transfers_failed=out.transfers_failed,
            deferred=c.deferred,
            resolver_full=c.resolver_full,
            resolver_expired=c.resolver_expired,
            rcodes=_rcode_counts(c.rcode),
            qtypes=_qtype_counts(c.qtype),
        )

    def worker_stats(self) -> list[WorkerStats]:
        e = self._ptr()
        out = ffi.new("struct xd_worker_stats *")
        result = []
        for i in range(lib.xd_engine_worker_count(e)):
            _raise_for(lib.xd_engine_worker_stats(e, i, out), what="worker stats")
            result.append(
                WorkerStats(
                    out.received,
                    out.answered,
                    out.dropped,
                    out.truncated,
                    out.batches,
                    out.denied,
                    out.limited,
                    out.slipped,
                    out.deferred,
                    out.resolver_full,
                    out.resolver_expired,
                    _rcode_counts(out.rcode),
                    _qtype_counts(out.qtype),
                )
            )
        return result

    # ---- XDP mode ----------------------------------------------------------

    def xdp_start(self, config, bpf_object: str | os.PathLike | None = None) -> XdpInfo:
        """Attaches the XDP program to ``config.interface`` and starts one
        AF_XDP worker per queue.

        ``config`` is an :class:`xdpdns.config.XdpConfig` (or anything with
        its attributes).  Nothing is redirected until :meth:`xdp_set_port`
        says so.  Raises OSError with the engine's message (a verifier
        rejection carries the verifier's last lines); on failure nothing
        stays attached.
        """
        if bpf_object is None:
            from xdpdns.bpfobj import bpf_object_path

            bpf_object = bpf_object_path()
        cfg = ffi.new("struct xd_xdp_config *")
        _set_chars(cfg, "ifname", config.interface, "interface name")
        _set_chars(cfg, "bpf_object", os.fsdecode(bpf_object), "BPF object path")
        cfg.queues = config.queues
        cfg.first_queue = config.first_queue
        cfg.frames_per_queue = config.frames_per_queue
        cfg.frame_size = config.frame_size
        cfg.ring_size = config.ring_size
        cfg.hugepages = _HUGEPAGES[config.hugepages]
        cfg.hugepage_mb = config.hugepage_mb
        cfg.zerocopy = _ZEROCOPY[config.zerocopy]
        cfg.generic = 1 if config.mode == "generic" else 0
        cfg.verify_checksums = 1 if config.verify_checksums else 0
        cfg.busy_poll = 1 if config.busy_poll else 0
        cfg.answers = _ANSWERS[config.answers]
        cfg.busy_poll_wait_us = config.busy_poll_wait_us
        cfg.attach = _ATTACH[getattr(config, "attach", "link")]
        info = ffi.new("struct xd_xdp_info *")
        err = ffi.new("struct xd_error *")
        _raise_for(
            lib.xd_engine_xdp_start(self._ptr(), cfg, info, err),
            err,
            f"starting XDP mode on {config.interface}",
        )
        warnings = ffi.string(info.warnings).decode("utf-8", "replace")
        return XdpInfo(
            interface=config.interface,
            queues=info.queues,
            first_queue=info.first_queue,
            native=bool(info.native),
            zerocopy=bool(info.zerocopy),
            busy_poll=bool(info.busy_poll),
            hugepages=bool(info.hugepages),
            numa_node=info.numa_node,
            umem_bytes=info.umem_bytes,
            warnings=tuple(w for w in warnings.splitlines() if w.strip()),
            attach=getattr(config, "attach", "link"),
            prog_id=info.prog_id,
        )

    def xdp_stop(self) -> None:
        """Stops the AF_XDP workers and detaches the program (idempotent)."""
        _raise_for(lib.xd_engine_xdp_stop(self._ptr()), what="stopping XDP mode")

    def xdp_set_port(self, port: int, action: str) -> None:
        """Sets what the program does with UDP to ``port`` on every CPU:
        "redirect" (to the queue's worker), "pass" (to the kernel) or "drop"."""
        if action not in PORT_ACTIONS:
            raise ValueError(f"port action {action!r}: expected one of " + ", ".join(PORT_ACTIONS))
        err = ffi.new("struct xd_error *")
        _raise_for(
            lib.xd_engine_xdp_set_port(self._ptr(), port, PORT_ACTIONS[action], err),
            err,
            f"setting the action of UDP port {port}",
        )

    def xdp_port_actions(self, port: int) -> list[int]:
        """The action codes (PORT_ACTIONS values) that every possible CPU's
        slot of ``port`` holds, read back from the per-CPU map."""
        e = self._ptr()
        size = max(1, os.cpu_count() or 1)
        while True:
            actions = ffi.new("uint32_t[]", size)
            n = _raise_for(
                lib.xd_engine_xdp_port_actions(e, port, actions, size),
                what=f"reading the action of UDP port {port}",
            )
            if n <= size:
                return list(actions[0:n])
            size = n

    def xdp_add_address(self, address: str) -> None:
        """Takes only packets to the added addresses (with none: every one)."""
        ip = ipaddress.ip_address(address)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        err = ffi.new("struct xd_error *")
        _raise_for(
            lib.xd_engine_xdp_add_address(self._ptr(), family, ip.packed, err),
            err,
            f"adding the address {ip}",
        )

    def xdp_queue_stats(self) -> list[QueueStats]:
        """One entry per AF_XDP queue (empty when XDP mode is off)."""
        e = self._ptr()
        out = ffi.new("struct xd_queue_stats *")
        result = []
        for i in range(max(0, lib.xd_engine_xdp_queue_count(e))):
            _raise_for(lib.xd_engine_xdp_queue_stats(e, i, out), what="queue stats")
            c = out.core
            result.append(
                QueueStats(
                    i,
                    c.received,
                    c.answered,
                    c.dropped,
                    out.bad_checksum,
                    out.malformed,
                    c.truncated,
                    out.tx_full,
                    out.kicks,
                    c.batches,
                    out.frames_fill,
                    out.frames_rx,
                    out.frames_tx,
                    out.frames_free,
                    out.frames_total,
                    out.kernel_rx_dropped,
                    out.kernel_rx_ring_full,
                    out.kernel_fill_empty,
                    out.cpu,
                    c.limited,
                    c.slipped,
                    c.deferred,
                    c.resolver_full,
                    c.resolver_expired,
                    out.busy_polls,
                    out.sleeps,
                    _rcode_counts(c.rcode),
                    _qtype_counts(c.qtype),
                )
            )
        return result

    def xdp_prog_stats(self, cpu: int | None = None) -> ProgStats:
        """The XDP program's counters on one CPU, or summed (cpu None)."""
        out = ffi.new("struct xd_prog_stats *")
        _raise_for(
            lib.xd_engine_xdp_prog_stats(self._ptr(), -1 if cpu is None else cpu, out),
            what="XDP program stats",
        )
        return _prog_stats(out)

    def xdp_answers_info(self) -> AnswersInfo:
        """The XDP program's answer table: state, size, how long it took."""
        out = ffi.new("struct xd_answers_info *")
        _raise_for(lib.xd_engine_xdp_answers_info(self._ptr(), out), what="answer table")
        return _answers_info(out)

    def xdp_prog_stats_per_cpu(self) -> list[ProgStats]:
        """The XDP program's counters, one entry per possible CPU."""
        e = self._ptr()
        out = ffi.new("struct xd_prog_stats *")
        ncpus = _raise_for(lib.xd_engine_xdp_prog_stats(e, -1, out), what="XDP program stats")
        result = []
        for cpu in range(ncpus):
            _raise_for(lib.xd_engine_xdp_prog_stats(e, cpu, out), what="XDP program stats")
            result.append(_prog_stats(out))
        return result

    # ---- the source address ACL ----------------------------------------------

    def acl_set(
        self,
        rules: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]],
        default: str = "allow",
        socket_action: str = "refuse",
    ) -> None:
        """Replaces the source ACL: ``rules`` are (prefix, "allow" | "deny")
        pairs, the longest prefix holding a source decides, ``default`` is
        for sources no prefix holds, and ``socket_action`` ("refuse" or
        "drop") is what socket mode does with denied sources (XDP mode drops
        them in the XDP program).  A prefix given twice keeps its first
        rule.  Socket-mode workers and, when XDP mode runs, the XDP program
        switch to the new rules at once; on failure the old ones stay."""
        rules = list(rules)
        if default not in ACL_ACTIONS:
            raise ValueError(f"ACL default {default!r}: expected one of " + ", ".join(ACL_ACTIONS))
        if socket_action not in ACL_SOCKET_ACTIONS:
            raise ValueError(
                f"ACL socket action {socket_action!r}: expected one of "
                + ", ".join(ACL_SOCKET_ACTIONS)
            )
        c_rules = _acl_rules(rules)
        err = ffi.new("struct xd_error *")
        _raise_for(
            lib.xd_engine_acl_set(
                self._ptr(),
                c_rules,
                len(rules),
                ACL_ACTIONS[default],
                ACL_SOCKET_ACTIONS[socket_action],
                err,
            ),
            err,
            "setting the source ACL",
        )

    # ---- DNS cookies (RFC 7873, RFC 9018) --------------------------------------

    def set_cookie_secrets(
        self, current: bytes | None, previous: bytes | None = None, require: bool = False
    ) -> None:
        """Turns DNS cookies on with ``current`` (16 bytes: every new server
        cookie is made with it) and ``previous`` (16 bytes or None: still
        accepted during a rotation); ``require``: UDP queries with a client
        cookie but no valid server cookie get BADCOOKIE instead of an
        answer.  ``current`` None turns cookies off.  Workers switch at once."""
        for name, secret in (("current", current), ("previous", previous)):
            if secret is not None and len(secret) != lib.XD_COOKIE_SECRET_LEN:
                raise ValueError(
                    f"{name} cookie secret: {len(secret)} bytes, expected "
                    f"{lib.XD_COOKIE_SECRET_LEN}"
                )
        err = ffi.new("struct xd_error *")
        flags = lib.XD_COOKIE_REQUIRE_UDP if require else 0
        _raise_for(
            lib.xd_engine_set_cookie_secrets(
                self._ptr(),
                ffi.NULL if current is None else current,
                ffi.NULL if previous is None else previous,
                flags,
                err,
            ),
            err,
            "setting the cookie secrets",
        )

    # ---- response rate limiting ------------------------------------------------

    def set_rrl(self, settings) -> None:
        """Turns rate limiting of UDP responses on with ``settings`` (an
        :class:`xdpdns.hookspecs.RrlSettings`), or off with None.  Workers
        switch at once, each with a new, empty table."""
        err = ffi.new("struct xd_error *")
        if settings is None:
            _raise_for(
                lib.xd_engine_set_rrl(self._ptr(), ffi.NULL, err), err, "turning rate limiting off"
            )
            return
        cfg, keep = _rrl_config(settings)
        _raise_for(lib.xd_engine_set_rrl(self._ptr(), cfg, err), err, "setting rate limiting")
        del keep

    def rrl_events(self, max_events: int = 256) -> list["RrlEvent"]:
        """The buckets that started to be limited since the last call (at
        most one per bucket per window), oldest first per worker."""
        out = ffi.new("struct xd_rrl_event[]", max_events)
        n = _raise_for(
            lib.xd_engine_rrl_events(self._ptr(), out, max_events), what="rate limiting events"
        )
        return [_rrl_event(out[i]) for i in range(n)]

    def zone_serial(self, origin: dns.name.Name) -> int | None:
        """The SOA serial of the served zone ``origin`` (None: not served),
        whatever its ACL says."""
        wire = origin.to_wire()
        serial = ffi.new("uint32_t *")
        rc = lib.xd_engine_zone_serial(self._ptr(), wire, len(wire), serial)
        if rc in (-errno.ENOENT, -errno.ENODATA):
            return None
        _raise_for(rc, what="zone serial")
        return serial[0]

    def zone_journal(self, origin: dns.name.Name) -> JournalInfo | None:
        """What the served zone ``origin``'s IXFR journal holds (None: not
        served)."""
        wire = origin.to_wire()
        info = ffi.new("struct xd_journal_info *")
        rc = lib.xd_engine_zone_journal(self._ptr(), wire, len(wire), info)
        if rc in (-errno.ENOENT, -errno.ENODATA):
            return None
        _raise_for(rc, what="zone journal")
        return journal_info(info)

    def answer_client(
        self,
        query: bytes,
        client: str | None,
        tcp: bool = False,
        now: int | None = None,
        defer: bool = False,
    ) -> "ClientAnswer":
        """Answers one DNS message from ``client`` (an IP address, None:
        unknown) at ``now`` (UNIX time; None: the clock), and tells what its
        COOKIE option showed (:data:`COOKIE_STATES`).  ``defer``: as for
        :meth:`answer` (the wire is then :data:`DEFERRED`)."""
        e = self._ptr()
        c_client = _client(client)
        cookie = ffi.new("int *")
        wire = _answer(
            lambda q, n, r, c, f: lib.xd_engine_answer_client(
                e, c_client, now or 0, q, n, r, c, f, cookie
            ),
            query,
            tcp,
            defer,
        )
        return ClientAnswer(wire, COOKIE_STATES[cookie[0]])

    # ---- the resolver hook (xdpdns/resolver.py) ------------------------------

    def resolver_start(self, ring_size: int, cache_size: int, hooks: int, timeout: float) -> None:
        """Sets the resolver up before any worker starts: ``ring_size``
        deferred queries per worker, a cache of ``cache_size`` answers (0:
        none), both powers of two, ``hooks`` hook threads (one per plugin
        that answers claimed names), and the ``timeout`` (seconds) after
        which a worker answers a deferred query SERVFAIL.  Once."""
        cfg = ffi.new("struct xd_resolver_config *")
        cfg.ring_size = ring_size
        cfg.cache_size = cache_size
        cfg.hooks = hooks
        cfg.timeout_ms = max(1, round(timeout * 1000))
        err = ffi.new("struct xd_error *")
        _raise_for(
            lib.xd_engine_resolver_start(self._ptr(), cfg, err), err, "starting the resolver"
        )

    def dnstap_start(
        self,
        socket_path: str,
        sample: int,
        queries: bool,
        responses: bool,
        identity: str = "",
        version: str = "",
    ) -> None:
        """Starts the dnstap writer (native/io/dnstap.c) before any worker
        starts: one query in ``sample`` per worker is logged, as AUTH_QUERY
        and/or AUTH_RESPONSE, to the Frame Streams collector listening on
        ``socket_path`` (connected, and reconnected, in the background)."""
        keep = [ffi.new("char[]", text.encode()) for text in (socket_path, identity, version)]
        cfg = ffi.new("struct xd_dnstap_config *")
        cfg.socket_path, cfg.identity, cfg.version = keep
        cfg.sample = sample
        cfg.queries = int(queries)
        cfg.responses = int(responses)
        err = ffi.new("struct xd_error *")
        _raise_for(lib.xd_engine_dnstap_start(self._ptr(), cfg, err), err, "starting dnstap")

    def dnstap_stop(self) -> None:
        """Writes what the rings hold and stops the writer; after the
        workers stopped."""
        lib.xd_engine_dnstap_stop(self._ptr())

    def dnstap_stats(self) -> DnstapStats | None:
        """The writer's counters; None when dnstap is off."""
        out = ffi.new("struct xd_dnstap_stats *")
        if not lib.xd_engine_dnstap_stats(self._ptr(), out):
            return None
        return DnstapStats(
            out.events,
            out.written,
            out.lost_full,
            out.lost_unconnected,
            out.connects,
            bool(out.connected),
            ffi.string(out.error).decode(errors="replace"),
        )

    def resolver_fd(self, hook: int) -> int:
        """The eventfd of hook ``hook``: readable when queries wait for it
        (after :meth:`resolver_idle` said to sleep)."""
        return _raise_for(lib.xd_engine_resolver_fd(self._ptr(), hook), what="resolver fd")

    def resolver_take(self, hook: int, out: "ResolverBatch") -> int:
        """Moves deferred queries for ``hook`` into ``out`` (as many as it
        holds); returns how many.  One caller per hook at a time."""
        n = _raise_for(
            lib.xd_engine_resolver_take(self._ptr(), hook, out.array, out.size),
            what="taking deferred queries",
        )
        out.n = n
        return n

    def resolver_idle(self, hook: int) -> bool:
        """True: nothing waits for ``hook``, and the next deferred query
        writes its eventfd (sleep on it); False: take again."""
        return _raise_for(lib.xd_engine_resolver_idle(self._ptr(), hook), what="resolver idle") == 1

    def resolver_answer(
        self, query, kind: int, data: bytes = b"", header: int = 0, cache_ttl: int = 0
    ) -> bool:
        """Hands the answer to ``query`` (an entry of a :class:`ResolverBatch`)
        back to the worker that holds it: ``kind`` RESOLVER_RECORDS (``data``
        packed as :attr:`xdpdns.hookspecs.Answer.packed`, ``header`` its AA
        bit and RCODE, cached for ``cache_ttl`` seconds), RESOLVER_WIRE
        (``data`` the whole response) or RESOLVER_SERVFAIL.  Sent once
        :meth:`resolver_flush` wakes the worker.  Returns whether it was
        cached; OSError: EINVAL (malformed), EMSGSIZE (a response longer
        than UDP's), ENOBUFS (the worker's ring is full: SERVFAIL at the
        deadline)."""
        cached = ffi.new("int *") if cache_ttl else ffi.NULL
        rc = lib.xd_engine_resolver_answer(
            self._ptr(), query, kind, data, len(data), header, cache_ttl, cached
        )
        if rc < 0:
            raise OSError(-rc, f"handing back a resolver answer: {os.strerror(-rc)}")
        return bool(cache_ttl and cached[0])

    def resolver_flush(self) -> None:
        """Wakes the workers that were handed answers."""
        lib.xd_engine_resolver_flush(self._ptr())

    def resolver_cache(
        self,
        name: dns.name.Name,
        rdtype: int,
        rdclass: int,
        response: bytes,
        question_end: int,
        ttl: int,
    ) -> None:
        """Caches ``response`` (no OPT record) for (name, type, class) for
        ``ttl`` seconds: later queries get it on the fast path."""
        wire = name.canonicalize().to_wire()
        _raise_for(
            lib.xd_engine_resolver_cache(
                self._ptr(),
                wire,
                len(wire),
                rdtype,
                rdclass,
                response,
                len(response),
                question_end,
                ttl,
            ),
            what="caching a resolver answer",
        )

    def resolver_build(
        self,
        query: bytes,
        records: bytes,
        header: int,
        cache_ttl: int,
        tcp: bool = False,
        client: str | None = None,
    ) -> tuple[bytes | None, bool]:
        """The response to ``query`` (None: nothing to send) from a hook's
        answer in its fast form: ``records`` packed as
        xd_engine_resolver_build takes them (:attr:`xdpdns.hookspecs.Answer.packed`),
        ``header`` its AA bit (:data:`RESOLVER_AA`) and RCODE; with
        ``cache_ttl`` also cached.  Returns it and whether it was cached;
        OSError(EINVAL) for malformed records."""
        cached = ffi.new("int *") if cache_ttl else ffi.NULL
        wire = _answer(
            lambda q, n, r, c, f: lib.xd_engine_resolver_build(
                self._ptr(),
                _client(client),
                q,
                n,
                records,
                len(records),
                header,
                cache_ttl,
                r,
                c,
                f,
                cached,
            ),
            query,
            tcp,
        )
        return wire, bool(cache_ttl and cached[0])


def drop_privileges(uid: int, gid: int, keep: int) -> None:
    """Switches the process to uid/gid for good; the calling thread (and
    the threads it starts later) keeps the capabilities of the bit mask
    ``keep``.  Raises OSError naming the step that failed."""
    err = ffi.new("struct xd_error *")
    _raise_for(lib.xd_privileges_drop(uid, gid, keep, err), err, "drop privileges")
