"""The resolver hook: names that plugins answer in Python.

A plugin claims names (the ``resolver_claims`` hook); they are compiled into
the image as override rules with the action RESOLVER.  For such a name the
answering core first reads the resolver cache (answers on the fast path,
with the client's ID and question case); on a miss a socket-mode UDP worker
copies the query, the client's address and its socket into its bounded
ring (native/resolver.c) and writes an eventfd, never waiting: a full ring
means SERVFAIL at once (``resolver_full`` in the worker's counters).  TCP
queries come the same way from the listener (:meth:`Resolver.submit`).

One thread, the *drain thread*, takes the rings in batches, reads each
query's question straight from its bytes (no dnspython: the query's
dnspython message is parsed only when a plugin reads
``ResolverQuery.message``) and hands the batch, grouped by the plugin that
claimed the names, to that plugin's *hook thread*, which calls its
``resolve`` hook.  Why a thread per plugin: a Python call cannot be
interrupted, so a hook that hangs must hang in a thread of its own; its
queries get SERVFAIL from the drain thread at their deadline (``[resolver]
timeout`` after they were taken), and other plugins go on.  Queries in
flight are bounded (``ring_size``): while a hook is behind, the rings fill
and the workers answer SERVFAIL themselves.

UDP answers are sent by the hook thread with sendmsg on the worker's own
socket (thread-safe in the kernel), from the address the query came to; TCP
answers complete a future that the listener awaits.  An answer in the fast
form (:class:`xdpdns.hookspecs.Answer`) is made into the response by the
engine in C (xd_engine_resolver_build: the answering core's header,
question, OPT and cookie, as for a cached answer), and for UDP sent in the
same call; dnspython messages and bytes are sent as the plugin made them.
Answers with records are cached for their smallest TTL, at most
``cache_max_ttl``: an Answer in C from its records, the others through
dnspython.  SERVFAIL
comes from the answering core (the query answered without deferring), so it
carries the same OPT and cookie as any answer.

Answers of the resolver bypass response rate limiting.  In XDP mode the
AF_XDP workers answer claimed names from the cache only, and SERVFAIL
otherwise: a frame has no socket for the drain thread to answer on.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Sequence

import dns.exception
import dns.flags
import dns.message

from xdpdns.config import ResolverConfig
from xdpdns.engine import (
    DEFERRED,
    RESOLVER_AA,
    resolver_batch,
    resolver_buffer,
    resolver_query_fields,
)
from xdpdns.hookspecs import Answer, Claim, ResolverQuery
from xdpdns.plugins import PluginError

log = logging.getLogger("xdpdns.resolver")

# Queries taken from the rings at once: enough to amortise a hook call (and
# the cffi calls around it), few enough that one batch takes milliseconds.
BATCH = 256
# How long the drain thread sleeps at most with nothing to do: it checks the
# deadlines of batches in flight this often.
IDLE_WAKE = 0.05
UDP_LIMIT = 1232  # the payload we advertise (native/udp.c)
TCP_LIMIT = 65535


def collect_claims(pm, config) -> list[tuple[str, Claim]]:
    """Every plugin's claims (the resolver_claims hook), in plugin order,
    with the name of the plugin that made each."""
    claims = []
    for impl in reversed(pm.hook.resolver_claims.get_hookimpls()):
        result = impl.function(**{a: config for a in impl.argnames})
        for claim in result or ():
            if not isinstance(claim, Claim):
                raise PluginError(f"resolver_claims of plugin {impl.plugin_name} returned "
                                  f"{claim!r}, not an xdpdns.hookspecs.Claim")
            claims.append((impl.plugin_name, claim))
    return claims


@dataclass
class ResolverStats:
    batches: int = 0  # hook calls
    queries: int = 0  # queries handed to hooks
    answered: int = 0  # answers from hooks sent
    servfail: int = 0  # SERVFAIL sent: timeouts, errors, None, full, unparsable
    timeouts: int = 0  # batches past their deadline
    errors: int = 0  # batches whose hook raised or returned garbage
    cached: int = 0  # answers put into the cache


class _Item:
    """One query on its way through the resolver: ``query`` (None when its
    question does not parse: SERVFAIL), and where its answer goes: ``raw``,
    the worker's struct xd_resolver_query (UDP; ``owner`` keeps the array
    that holds it alive), else ``future`` (TCP)."""

    __slots__ = ("wire", "client", "transport", "query", "raw", "owner", "future")

    def __init__(self, wire: bytes, client: tuple[str, int], transport: str,
                 raw: Any = None, owner: Any = None, future: Future | None = None) -> None:
        self.wire = wire
        self.client = client
        self.transport = transport
        self.raw = raw
        self.owner = owner
        self.future = future
        try:
            self.query: ResolverQuery | None = ResolverQuery(
                wire=wire, client_address=client, transport=transport)
        except ValueError:
            self.query = None


class _Batch:
    def __init__(self, plugin: str, items: list[_Item], deadline: float) -> None:
        self.plugin = plugin
        self.items = items
        self.deadline = deadline
        self.done = False
        self.lock = threading.Lock()

    def claim(self) -> bool:
        """True for the one caller that gets to answer this batch."""
        with self.lock:
            if self.done:
                return False
            self.done = True
            return True


class _HookThread:
    """One plugin's resolve hook, called in a daemon thread of its own (a
    hung hook must not keep the process from exiting)."""

    def __init__(self, name: str, function, resolver: "Resolver") -> None:
        self.function = function
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.resolver = resolver
        self.thread = threading.Thread(target=self._run, name=f"resolve-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            self.resolver._call(batch, self.function)


class Resolver:
    """The drain thread and the plugins' hook threads of one server."""

    def __init__(self, engine, pm, claims: Sequence[tuple[str, Claim]],
                 config: ResolverConfig) -> None:
        self.engine = engine
        self.config = config
        self.stats = ResolverStats()
        # Claimed names in lower-case wire form, as ResolverQuery.qname is.
        self._exact: dict[bytes, str] = {}
        self._subtree: dict[bytes, str] = {}
        for plugin, claim in claims:
            (self._subtree if claim.subtree else self._exact).setdefault(
                claim.name.canonicalize().to_wire(), plugin)
        self._functions = {impl.plugin_name: impl.function
                           for impl in pm.hook.resolve.get_hookimpls()}
        self._hooks: dict[str, _HookThread] = {}
        self._pending: list[_Batch] = []
        self._inflight = 0
        self._lock = threading.Lock()  # _inflight, stats, the cache, closing
        self._closing = False
        self._tcp: queue.SimpleQueue = queue.SimpleQueue()
        self._fd = engine.resolver_fd()
        self._buffer = resolver_buffer(BATCH)
        self._thread: threading.Thread | None = None

    # ---- life ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._drain, name="resolver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the drain thread; answers that hooks return later are
        dropped (the sockets are about to close)."""
        with self._lock:
            self._closing = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
        for hook in self._hooks.values():
            hook.queue.put(None)

    def _wake(self) -> None:
        os.write(self._fd, (1).to_bytes(8, "little"))

    # ---- the way in ------------------------------------------------------------

    def submit(self, wire: bytes, client: tuple[str, int], transport: str = "tcp") -> Future:
        """Queues a query that Engine.answer deferred; the future gets the
        response (None: nothing to send).  For the TCP listener."""
        future: Future = Future()
        self._tcp.put(_Item(wire, client, transport, future=future))
        self._wake()
        return future

    def _take(self, room: int) -> list[_Item]:
        items = []
        while room > len(items):
            try:
                items.append(self._tcp.get_nowait())
            except queue.Empty:
                break
        n = self.engine.resolver_take(self._buffer, min(BATCH, room - len(items)))
        if n:
            # A copy of the batch's entries (one allocation), which their
            # answers are sent from after the next take.
            batch = resolver_batch(self._buffer, n)
            for i in range(n):
                wire, client = resolver_query_fields(batch[i])
                items.append(_Item(wire, client, "udp", batch + i, batch))
        return items

    def _reply(self, item: _Item, response: bytes | None) -> None:
        """Sends a response (None: nothing) to the client of item."""
        if item.future is not None:
            item.future.set_result(response)
            return
        if response is None:
            return
        # Under the lock that stop() sets _closing under: once stop() has
        # returned no answer is on its way to a worker's socket, which the
        # server closes next (its descriptor could then be reused).
        with self._lock:
            if self._closing:
                return
            try:
                self.engine.resolver_send(item.raw, response)
            except OSError:
                pass  # a full socket buffer: dropped, as on the fast path

    # ---- the drain thread --------------------------------------------------------

    def _drain(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                room = self.config.ring_size - self._inflight
            items = self._take(room) if room > 0 else []
            if items:
                self._dispatch(items)
            self._expire()
            if len(items) < BATCH:
                self._wait()

    def _wait(self) -> None:
        deadline = min((b.deadline for b in self._pending), default=None)
        timeout = IDLE_WAKE if deadline is None else \
            max(0.0, min(IDLE_WAKE, deadline - time.monotonic()))
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if ready:
            try:
                os.read(self._fd, 8)
            except BlockingIOError:
                pass

    def _claimant(self, qname: bytes) -> str | None:
        """The plugin whose claim holds qname (lower-case wire form): the
        exact claim of the name, else the subtree claim of its longest
        suffix, as the image decides (docs/IMAGE.md)."""
        plugin = self._exact.get(qname)
        pos = 0
        while plugin is None:
            plugin = self._subtree.get(qname[pos:])
            if plugin is not None or qname[pos] == 0:
                break
            pos += qname[pos] + 1
        return plugin

    def _dispatch(self, items: list[_Item]) -> None:
        groups: dict[str, list[_Item]] = {}
        for item in items:
            plugin = None if item.query is None else self._claimant(item.query.qname)
            if plugin is None or plugin not in self._functions:
                self._servfail([item])
                continue
            groups.setdefault(plugin, []).append(item)
        deadline = time.monotonic() + self.config.timeout
        for plugin, group in groups.items():
            batch = _Batch(plugin, group, deadline)
            with self._lock:
                self._inflight += len(group)
                self.stats.batches += 1
                self.stats.queries += len(group)
            self._pending.append(batch)
            self._hook(plugin).queue.put(batch)

    def _hook(self, plugin: str) -> _HookThread:
        hook = self._hooks.get(plugin)
        if hook is None:
            hook = self._hooks[plugin] = _HookThread(plugin, self._functions[plugin], self)
        return hook

    def _expire(self) -> None:
        now = time.monotonic()
        keep = []
        for batch in self._pending:
            if batch.done:
                continue
            if now < batch.deadline:
                keep.append(batch)
            elif batch.claim():
                log.warning("resolve hook of plugin %s: no answer within %gs: SERVFAIL "
                            "for %d queries", batch.plugin, self.config.timeout,
                            len(batch.items))
                with self._lock:
                    self.stats.timeouts += 1
                self._finish(batch.items, [None] * len(batch.items))
        self._pending = keep

    # ---- the hook threads --------------------------------------------------------

    def _call(self, batch: _Batch, function) -> None:
        if batch.done:
            return  # timed out while it waited behind a slow one
        queries = [i.query for i in batch.items]
        try:
            results = self._results(function, queries)
        except Exception:
            log.exception("resolve hook of plugin %s", batch.plugin)
            with self._lock:
                self.stats.errors += 1
            results = [None] * len(queries)
        if batch.claim():
            self._finish(batch.items, results)

    @staticmethod
    def _results(function, queries: list[ResolverQuery]) -> list:
        """The hook's answers to queries.  A query that dnspython cannot
        parse (though the engine could) fails the call when the plugin
        reads its message; it gets SERVFAIL, and the hook is called once
        more with the rest, as when the drain thread parsed every query."""
        try:
            results = list(function(queries=queries))
        except Exception:
            good = [q for q in queries if not q.message_unparsable]
            if len(good) in (0, len(queries)):
                raise
            answers = iter(Resolver._results(function, good))
            return [None if q.message_unparsable else next(answers) for q in queries]
        if len(results) != len(queries):
            raise PluginError(f"{len(results)} responses for {len(queries)} queries")
        return results

    def _finish(self, items: list[_Item], results: list) -> None:
        """Sends every answer (SERVFAIL for None) and caches what may be."""
        with self._lock:
            self._inflight -= len(items)
            if self._closing:
                return
        answered = cached = 0
        for item, result in zip(items, results):
            try:
                if isinstance(result, Answer):
                    sent, was_cached = self._send_answer(item, result)
                    answered += sent
                    cached += was_cached
                    continue
                wire, message = self._wire(item, result)
            except Exception:
                log.exception("resolve hook answer %r", result)
                wire = message = None
            if wire is None:
                self._servfail([item])
                continue
            # Cached first: a client that asks again as soon as it has the
            # answer must find it on the fast path.
            if message is not None:
                self._cache(item, message)
            self._reply(item, wire)
            answered += 1
        with self._lock:
            self.stats.answered += answered
            self.stats.cached += cached

    def _send_answer(self, item: _Item, answer: Answer) -> tuple[bool, bool]:
        """Makes the response to an Answer in C and sends it (a UDP one in
        the same call); whether it was sent, and whether it was cached."""
        cap = self.config.cache_max_ttl
        ttl = min(answer.ttl, cap) if answer.ttl and cap and self.config.cache_size else 0
        header = (RESOLVER_AA if answer.aa else 0) | answer.rcode
        if item.future is not None:
            wire, cached = self.engine.resolver_build(item.wire, answer.packed, header, ttl,
                                                      tcp=item.transport == "tcp",
                                                      client=item.client[0])
            item.future.set_result(wire)
            return wire is not None, cached
        with self._lock:  # as in _reply: nothing leaves after stop()
            if self._closing:
                return False, False
            try:
                return True, self.engine.resolver_reply(item.raw, answer.packed, header, ttl)
            except OSError:
                return True, False  # a full socket buffer: dropped, as on the fast path

    def _wire(self, item: _Item, result) -> tuple[bytes | None, Any]:
        """The response's wire form (None: SERVFAIL) and its message."""
        if result is None:
            return None, None
        if isinstance(result, (bytes, bytearray)):
            wire = bytes(result)
            try:
                return wire, dns.message.from_wire(wire)
            except dns.exception.DNSException:
                return wire, None  # the plugin's bytes, sent as they are
        if not isinstance(result, dns.message.Message):
            raise PluginError(f"not bytes, a dns.message.Message or None: {result!r}")
        try:
            return result.to_wire(max_size=self._limit(item)), result
        except dns.exception.TooBig:
            # RFC 2181 9: too large for UDP: TC, and the client retries over TCP.
            tc = dns.message.make_response(item.query.message)
            tc.flags |= dns.flags.TC
            return tc.to_wire(), None

    @staticmethod
    def _limit(item: _Item) -> int:
        if item.transport == "tcp":
            return TCP_LIMIT
        q = item.query.message
        return min(UDP_LIMIT, max(512, q.payload)) if q.edns >= 0 else 512

    def _servfail(self, items: list[_Item]) -> None:
        for item in items:
            try:
                answer = self.engine.answer(item.wire, tcp=item.transport == "tcp",
                                            client=item.client[0])
            except OSError:
                answer = None
            self._reply(item, None if answer is DEFERRED else answer)
            with self._lock:
                self.stats.servfail += 1

    def _cache(self, item: _Item, message: dns.message.Message) -> None:
        """RFC 2308, RFC 1035 3.2.1: an answer lives as long as its shortest
        TTL; negative answers without an SOA are not cached."""
        cap = self.config.cache_max_ttl
        rrsets = message.answer + message.authority + message.additional
        if not cap or not rrsets or not self.config.cache_size:
            return
        ttl = min(min(r.ttl for r in rrsets), cap)
        question = item.query.message.question[0]
        if ttl <= 0 or len(message.question) != 1 or message.question[0] != question:
            return
        message.use_edns(False)  # each query gets its own OPT from the core
        wire = message.to_wire()
        question_end = 12 + len(question.name.to_wire()) + 4
        with self._lock:
            try:
                self.engine.resolver_cache(question.name, question.rdtype, question.rdclass,
                                           wire, question_end, ttl)
            except OSError:
                return  # larger than a cache entry holds: asked again next time
            self.stats.cached += 1
