"""The resolver hook: names that plugins answer in Python.

A plugin claims names (the ``resolver_claims`` hook); they are compiled into
the image as override rules with the action RESOLVER, each naming the
*hook* (the plugin's number among the plugins that claim names) that
answers them.  For such a name the answering core first reads the resolver
cache (answers on the fast path, with the client's ID and question case);
on a miss the worker that received the query (a socket-mode UDP worker,
an AF_XDP queue worker or a TCP worker) keeps it with what its answer
needs to leave, puts its handle on the ring of that hook, and goes on: it
never waits, and when
it holds ``ring_size`` queries it answers SERVFAIL at once
(``resolver_full`` in its counters).  native/io/resolver.c has the rings.

Each hook has one Python thread, which takes its queries from every
worker in batches, reads each query's question straight from its bytes
(no dnspython: the query's dnspython message is parsed only when a plugin
reads ``ResolverQuery.message``), calls the plugin's ``resolve`` hook, and
hands the answers back to the workers, which send them with their own
answers: from the socket the query came to, in a frame of the queue's
UMEM through its TX ring, or on the TCP connection it came on (after the
answers to later queries, as RFC 7766 allows), through rate limiting like
any UDP answer.  Why a
thread per plugin: a Python call cannot be interrupted, so a hook that
hangs must hang in a thread of its own, while other plugins go on.  A query
whose answer has not come back ``[resolver] timeout`` after it was deferred
is answered SERVFAIL by its worker (``resolver_expired``), and an answer
that comes later is dropped: the workers keep time, so no worker waits for
a hook.  A hook's thread skips the queries whose deadline passed while it
was behind, and a hung hook's ring fills, after which its queries get
SERVFAIL at once.  A worker's ``ring_size`` deferred queries are shared by
all hooks and freed in the order they came, so a hook that answers late
holds the others' room until its queries expire: ``ring_size`` should be
at least the worker's rate of claimed queries times the timeout.

An answer in the fast form (:class:`xdpdns.hookspecs.Answer`) goes back as
its packed records, and the worker's answering core makes the response (the
core's header, question, OPT and cookie, as for a cached answer); dnspython
messages and bytes go back as the plugin made them.  Answers with records
are cached for their smallest TTL, at most ``cache_max_ttl``: an Answer in C
from its records, the others through dnspython; a cached answer's TTLs are
counted down as it ages, as a resolver's cache does.

A TCP worker's answers may be as long as a TCP message (65535 bytes); the
query's ``transport`` says which limit applies.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import dns.exception
import dns.flags
import dns.message

from xdpdns.config import ResolverConfig
from xdpdns.engine import (
    RESOLVER_AA,
    RESOLVER_HOOKS_MAX as HOOKS_MAX,
    RESOLVER_RECORDS,
    RESOLVER_SERVFAIL,
    RESOLVER_WIRE,
    ResolverBatch,
    resolver_query_fields,
)
from xdpdns.hookspecs import Answer, Claim, ResolverQuery
from xdpdns.plugins import PluginError

log = logging.getLogger("xdpdns.resolver")

# Queries taken at once: enough to amortise a hook call (and the cffi calls
# around it), few enough that one batch takes milliseconds.
BATCH = 256
# How long a hook thread sleeps at most with nothing to do: it looks at
# whether the server stops this often.
IDLE_WAKE = 0.5
UDP_LIMIT = 1232  # the payload we advertise (native/io/udp.c)
TCP_LIMIT = 65535


def collect_claims(pm, config) -> list[tuple[str, Claim]]:
    """Every plugin's claims (the resolver_claims hook), in plugin order,
    with the name of the plugin that made each.  A plugin that claims names
    must answer them: PluginError when it has no resolve hook, and when
    more plugins claim names than the engine has hooks for."""
    answering = {impl.plugin_name for impl in pm.hook.resolve.get_hookimpls()}
    claims = []
    for impl in reversed(pm.hook.resolver_claims.get_hookimpls()):
        result = impl.function(**{a: config for a in impl.argnames})
        for claim in result or ():
            if not isinstance(claim, Claim):
                raise PluginError(
                    f"resolver_claims of plugin {impl.plugin_name} returned "
                    f"{claim!r}, not an xdpdns.hookspecs.Claim"
                )
            if impl.plugin_name not in answering:
                raise PluginError(
                    f"plugin {impl.plugin_name} claims {claim.name} but has "
                    f"no resolve hook to answer it"
                )
            claims.append((impl.plugin_name, claim))
    if len(hook_numbers(claims)) > HOOKS_MAX:
        raise PluginError(f"{len(hook_numbers(claims))} plugins claim names: at most {HOOKS_MAX}")
    return claims


def hook_numbers(claims: Sequence[tuple[str, Claim]]) -> list[str]:
    """The plugins that answer claimed names, in the order of their first
    claim: a plugin's hook number is its place here."""
    return list(dict.fromkeys(plugin for plugin, _ in claims))


def numbered_claims(
    claims: Sequence[tuple[str, Claim]], hooks: Sequence[str] | None = None
) -> list[tuple[int, Claim]]:
    """Each claim with the number of the hook that answers it, as the image
    takes them (xdpdns.image.compile_sources): its plugin's place in
    ``hooks`` (default: hook_numbers(claims)), which must hold them all."""
    numbers = {
        plugin: i for i, plugin in enumerate(hook_numbers(claims) if hooks is None else hooks)
    }
    return [(numbers[plugin], claim) for plugin, claim in claims]


@dataclass
class ResolverStats:
    batches: int = 0  # hook calls
    queries: int = 0  # queries handed to hooks
    answered: int = 0  # answers from hooks handed back to the workers
    servfail: int = 0  # SERVFAIL for errors, None, unparsable queries
    errors: int = 0  # batches whose hook raised or returned garbage
    cached: int = 0  # answers put into the cache


class _Hook:
    """One plugin's resolve hook, called in a daemon thread of its own (a
    hung hook must not keep the process from exiting)."""

    def __init__(self, resolver: "Resolver", number: int, plugin: str, function) -> None:
        self.resolver = resolver
        self.number = number
        self.plugin = plugin
        self.function = function
        self.fd = resolver.engine.resolver_fd(number)
        self.batch = ResolverBatch(BATCH)
        self.thread = threading.Thread(target=self._run, name=f"resolve-{plugin}", daemon=True)

    def wake(self) -> None:
        # The eventfd: what the workers write too, and what the thread
        # sleeps on.
        os.write(self.fd, (1).to_bytes(8, "little"))

    def _run(self) -> None:
        while not self.resolver.closing:
            try:
                self._once()
            except Exception:
                # The thread is the plugin's only way to answer: it logs
                # and goes on, whatever went wrong.
                log.exception("resolver thread of plugin %s", self.plugin)

    def _once(self) -> None:
        r = self.resolver
        with r.alive:
            if r.closing:
                return
            n = r.engine.resolver_take(self.number, self.batch)
        if n:
            r._serve(self, n)
            return
        with r.alive:
            if r.closing:
                return
            idle = r.engine.resolver_idle(self.number)
        if idle:
            select.select([self.fd], [], [], IDLE_WAKE)


class Resolver:
    """The hook threads of one server."""

    def __init__(
        self,
        engine,
        pm,
        claims: Sequence[tuple[str, Claim]],
        config: ResolverConfig,
        server_hooks: Sequence[tuple[str, Callable]] = (),
    ) -> None:
        """``server_hooks``: (name, function) of the server's own hooks,
        numbered after the plugins' (the NOTIFY hook: xdpdns/secondary/)."""
        self.engine = engine
        self.config = config
        self.stats = ResolverStats()
        functions = {impl.plugin_name: impl.function for impl in pm.hook.resolve.get_hookimpls()}
        functions.update(server_hooks)
        plugins = hook_numbers(claims) + [name for name, _ in server_hooks]
        self.set_claims(claims, plugins)
        # Held around every call into the engine: once stop() has it and
        # sets closing, no hook thread touches the engine again (it is
        # freed after the server stops, and a hung hook may return later).
        self.alive = threading.Lock()
        self.closing = False
        self._stats_lock = threading.Lock()
        self._hooks = [
            _Hook(self, i, plugin, functions[plugin]) for i, plugin in enumerate(plugins)
        ]

    def set_claims(self, claims: Sequence[tuple[str, Claim]], hooks: Sequence[str]) -> None:
        """The claimed names in lower-case wire form, as ResolverQuery.qname
        is: which hook a TCP query goes to (at start, and after a reload,
        with the same hook numbering)."""
        exact: dict[bytes, int] = {}
        subtree: dict[bytes, int] = {}
        for number, claim in numbered_claims(claims, hooks):
            (subtree if claim.subtree else exact).setdefault(
                claim.name.canonicalize().to_wire(), number
            )
        # One attribute, swapped whole: the event loop reads it while a
        # reload runs in another thread.
        self._claims = (exact, subtree)

    # ---- life ----------------------------------------------------------------

    def start(self) -> None:
        for hook in self._hooks:
            hook.thread.start()

    def stop(self) -> None:
        """Stops the hook threads; answers that hooks return later are
        dropped.  A thread inside its hook is not waited for."""
        with self.alive:
            self.closing = True
        for hook in self._hooks:
            hook.wake()
        for hook in self._hooks:
            hook.thread.join(timeout=0.1)

    # ---- TCP ---------------------------------------------------------------------

    def _claimant(self, qname: bytes) -> int | None:
        """The hook whose claim holds qname (lower-case wire form): the
        exact claim of the name, else the subtree claim of its longest
        suffix, as the image decides (docs/IMAGE.md)."""
        exact, subtree = self._claims
        number = exact.get(qname)
        pos = 0
        while number is None:
            number = subtree.get(qname[pos:])
            if number is not None or qname[pos] == 0:
                break
            pos += qname[pos] + 1
        return number

    # ---- a hook thread's batch ---------------------------------------------------

    def _serve(self, hook: _Hook, n: int) -> None:
        batch = hook.batch
        queries: list[ResolverQuery | None] = []
        for i in range(n):
            wire, client = resolver_query_fields(batch[i])
            try:
                queries.append(
                    ResolverQuery(
                        wire=wire, client_address=client, transport="tcp" if batch[i].tcp else "udp"
                    )
                )
            except ValueError:
                queries.append(None)  # no question to answer: SERVFAIL
        asked = [q for q in queries if q is not None]
        errors = 0
        start = time.monotonic()
        try:
            results = iter(self._results(hook.function, asked))
        except Exception:
            log.exception("resolve hook of plugin %s", hook.plugin)
            errors = 1
            results = iter([None] * len(asked))
        took = time.monotonic() - start
        if took > self.config.timeout:
            # The workers answered SERVFAIL at the deadline; these come late.
            log.warning(
                "resolve hook of plugin %s: no answer within %gs (took %.3gs): "
                "SERVFAIL for %d queries",
                hook.plugin,
                self.config.timeout,
                took,
                len(queries),
            )
        answers = [None if q is None else next(results) for q in queries]
        counts = ResolverStats(batches=1, queries=len(queries), errors=errors)
        with self.alive:
            if self.closing:
                return
            for i in range(n):
                self._give(batch[i], queries[i], answers[i], counts)
            self.engine.resolver_flush()
        with self._stats_lock:
            for name in ("batches", "queries", "answered", "servfail", "errors", "cached"):
                setattr(self.stats, name, getattr(self.stats, name) + getattr(counts, name))

    @staticmethod
    def _results(function, queries: list[ResolverQuery]) -> list:
        """The hook's answers to queries.  A query that dnspython cannot
        parse (though the engine could) fails the call when the plugin
        reads its message; it gets SERVFAIL, and the hook is called once
        more with the rest."""
        if not queries:
            return []
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

    def _ttl(self, answer: Answer) -> int:
        cap = self.config.cache_max_ttl
        return min(answer.ttl, cap) if answer.ttl and cap and self.config.cache_size else 0

    def _give(self, raw, query: ResolverQuery | None, result, counts: ResolverStats) -> None:
        """Hands the answer to one query back to its worker."""
        engine = self.engine
        try:
            if isinstance(result, Answer):
                counts.cached += engine.resolver_answer(
                    raw,
                    RESOLVER_RECORDS,
                    result.packed,
                    (RESOLVER_AA if result.aa else 0) | result.rcode,
                    self._ttl(result),
                )
                counts.answered += 1
                return
            wire = None if query is None else self._wire(query, result, counts)
            if wire is None:
                engine.resolver_answer(raw, RESOLVER_SERVFAIL)
                counts.servfail += 1
                return
            engine.resolver_answer(raw, RESOLVER_WIRE, wire)
            counts.answered += 1
        except OSError as exc:
            # ENOBUFS: the worker's ring is full; its deadline answers.
            if exc.errno != errno.ENOBUFS:
                log.warning("resolve hook answer %r: %s", result, exc)
                self._servfail_quietly(raw)
            counts.servfail += 1
        except Exception:
            log.exception("resolve hook answer %r", result)
            self._servfail_quietly(raw)
            counts.servfail += 1

    def _servfail_quietly(self, raw) -> None:
        try:
            self.engine.resolver_answer(raw, RESOLVER_SERVFAIL)
        except OSError:
            pass  # SERVFAIL at its deadline

    def _wire(self, query: ResolverQuery, result, counts: ResolverStats) -> bytes | None:
        """The response's wire form (None: SERVFAIL) from a message or
        bytes, which is cached when it may be."""
        if result is None:
            return None
        if isinstance(result, (bytes, bytearray)):
            wire = bytes(result)
            if len(wire) > self._limit(query):
                return self._truncated(query)
            try:
                message = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                return wire  # the plugin's bytes, sent as they are
            counts.cached += self._cache(query, message)
            return wire
        if not isinstance(result, dns.message.Message):
            raise PluginError(f"not an Answer, bytes, a dns.message.Message or None: {result!r}")
        try:
            wire = result.to_wire(max_size=self._limit(query))
        except dns.exception.TooBig:
            return self._truncated(query)
        counts.cached += self._cache(query, result)
        return wire

    @staticmethod
    def _truncated(query: ResolverQuery) -> bytes:
        """RFC 2181 9: a response too large for the client's UDP size goes
        out as TC and the question, and the client asks over TCP."""
        tc = dns.message.make_response(query.message)
        tc.flags |= dns.flags.TC
        return tc.to_wire()

    @staticmethod
    def _limit(query: ResolverQuery) -> int:
        if query.transport == "tcp":
            return TCP_LIMIT
        q = query.message
        return min(UDP_LIMIT, max(512, q.payload)) if q.edns >= 0 else 512

    def _cache(self, query: ResolverQuery, message: dns.message.Message) -> bool:
        """RFC 2308, RFC 1035 3.2.1: an answer lives as long as its shortest
        TTL; negative answers without an SOA are not cached."""
        cap = self.config.cache_max_ttl
        rrsets = message.answer + message.authority + message.additional
        if not cap or not rrsets or not self.config.cache_size:
            return False
        ttl = min(min(r.ttl for r in rrsets), cap)
        question = query.message.question[0]
        if ttl <= 0 or len(message.question) != 1 or message.question[0] != question:
            return False
        message.use_edns(False)  # each query gets its own OPT from the core
        wire = message.to_wire()
        question_end = 12 + len(question.name.to_wire()) + 4
        try:
            self.engine.resolver_cache(
                question.name, question.rdtype, question.rdclass, wire, question_end, ttl
            )
        except OSError:
            return False  # larger than a cache entry holds: asked again next time
        return True
