/*
 * resolver.c - the resolver hook's native half (resolver.h, engine.h): each
 * worker's deferred queries (its endpoint), the rings that carry their
 * handles to the hooks' threads and the hooks' answers back, the eventfds
 * that wake either side; the cache of their answers is answer/rcache.c.
 *
 * Every ring has one consumer, which takes no lock.  A worker is the only
 * producer of its rings to the hooks; its ring of answers has many
 * producers (any hook's thread), which take the ring's lock: they are the
 * slow side.  Sleeping is a flag and an eventfd: the sleeper sets its flag,
 * looks once more, then waits; a producer that finds the flag set clears
 * it and writes the eventfd, so a busy consumer costs its producers no
 * system call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "answer/answer.h"
#include "answer/rcache.h"
#include "engine_internal.h"
#include "error.h"
#include "io/resolver.h"
#include "wire/wire.h"
/* Rings and caches beyond this are a configuration mistake, not a need:
 * a million deferred queries is seconds of the hook's work. */
#define XD_RESOLVER_SIZE_MAX (1u << 20)

_Static_assert(XD_RESOLVER_ANSWER_MAX <= UINT16_MAX, "answer lengths are 16 bits");

/* ---- the engine's resolver --------------------------------------------------- */

/* A single-producer single-consumer ring of query handles (seq). */
struct seq_ring {
	_Atomic uint32_t head __attribute__((aligned(64))); /* producer */
	_Atomic uint32_t tail __attribute__((aligned(64))); /* consumer */
	uint32_t seqs[];
};

/* Answers for one worker: producers under lock, one consumer (the worker). */
struct reply_ring {
	pthread_mutex_t lock;
	_Atomic uint32_t head __attribute__((aligned(64)));
	_Atomic uint32_t tail __attribute__((aligned(64)));
	struct xd_resolver_reply *entries;
};

/* Someone who sleeps on an eventfd when there is nothing to do. */
struct sleeper {
	int fd;
	_Atomic int sleeping;
};

struct xd_resolver_endpoint {
	struct xd_resolver *r;
	/* The worker's own: */
	uint32_t head; /* next handle to give */
	uint32_t tail; /* oldest handle maybe still pending */
	uint32_t woken; /* hooks given queries this batch: a bit
					 * each */
	bool holding; /* the reply at replies.tail is out to
					 * the worker (xd_resolver_work) */
	uint32_t mask;
	struct xd_resolver_slot *slots;
	struct seq_ring *to_hook[XD_RESOLVER_HOOKS_MAX];
	struct reply_ring replies;
	struct sleeper wake; /* the worker's */
	_Atomic int given; /* answers given since the last flush */
	bool stream; /* a TCP worker's: answers up to 65535 bytes */
};

struct hook_state {
	struct sleeper wake;
	uint32_t next; /* the endpoint its next take starts at */
};

struct xd_resolver {
	uint32_t ring_size;
	uint32_t nhooks;
	uint64_t timeout_ns;
	struct xd_rcache *cache; /* NULL: no cache */
	struct hook_state hooks[XD_RESOLVER_HOOKS_MAX];
	/* Endpoints by the worker's reader slot, and in the order made (what
	 * the hooks' threads walk): appended under the lock, never removed
	 * until the resolver is freed. */
	pthread_mutex_t attach_lock;
	struct xd_resolver_endpoint *by_index[XD_READERS];
	struct xd_resolver_endpoint *list[XD_READERS];
	_Atomic uint32_t nlist;
};

static bool power_of_two(uint32_t n)
{
	return n && !(n & (n - 1)) && n <= XD_RESOLVER_SIZE_MAX;
}

uint64_t xd_resolver_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wake(struct sleeper *s)
{
	uint64_t one = 1;

	/* Orders what the producer published before this load of the flag,
	 * as the sleeper's flag store is ordered before its last look (a
	 * plain load could pass the producer's earlier store, and both sides
	 * would miss each other). */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&s->sleeping, memory_order_relaxed) &&
	    atomic_exchange(&s->sleeping, 0) && write(s->fd, &one, sizeof(one)) < 0) {
		/* Fails only when the counter would overflow: it is set. */
	}
}

static void drain_fd(int fd)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing was written. */
	}
}

static int sleeper_init(struct sleeper *s)
{
	atomic_init(&s->sleeping, 0);
	s->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return s->fd < 0 ? -errno : 0;
}

static void endpoint_free(struct xd_resolver_endpoint *ep)
{
	if (!ep)
		return;
	if (ep->replies.entries) {
		uint32_t head = atomic_load(&ep->replies.head);

		for (uint32_t t = atomic_load(&ep->replies.tail); t != head; t++)
			free(ep->replies.entries[t & ep->mask].big);
	}
	for (int i = 0; i < XD_RESOLVER_HOOKS_MAX; i++)
		free(ep->to_hook[i]);
	free(ep->slots);
	free(ep->replies.entries);
	pthread_mutex_destroy(&ep->replies.lock);
	if (ep->wake.fd >= 0)
		close(ep->wake.fd);
	free(ep);
}

static struct xd_resolver_endpoint *endpoint_new(struct xd_resolver *r)
{
	struct xd_resolver_endpoint *ep = aligned_alloc(64, (sizeof(*ep) + 63) & ~63ul);
	size_t ring = sizeof(struct seq_ring) + r->ring_size * sizeof(uint32_t);

	if (!ep)
		return NULL;
	memset(ep, 0, sizeof(*ep));
	pthread_mutex_init(&ep->replies.lock, NULL);
	ep->wake.fd = -1;
	ep->r = r;
	ep->mask = r->ring_size - 1;
	ep->slots = calloc(r->ring_size, sizeof(*ep->slots));
	ep->replies.entries = calloc(r->ring_size, sizeof(*ep->replies.entries));
	if (!ep->slots || !ep->replies.entries || sleeper_init(&ep->wake))
		goto fail;
	for (uint32_t h = 0; h < r->nhooks; h++) {
		ep->to_hook[h] = aligned_alloc(64, (ring + 63) & ~63ul);
		if (!ep->to_hook[h])
			goto fail;
		atomic_init(&ep->to_hook[h]->head, 0);
		atomic_init(&ep->to_hook[h]->tail, 0);
	}
	return ep;
fail:
	endpoint_free(ep);
	return NULL;
}

int xd_resolver_attach(struct xd_resolver *r, int index, bool stream,
		       struct xd_resolver_endpoint **out, struct xd_error *err)
{
	struct xd_resolver_endpoint *ep;
	int rc = 0;

	if (index < 0 || index >= XD_READERS)
		return xd_errorf(err, -EINVAL, "resolver endpoint %d out of range", index);
	pthread_mutex_lock(&r->attach_lock);
	ep = r->by_index[index];
	if (!ep) {
		ep = endpoint_new(r);
		if (ep) {
			uint32_t n = atomic_load(&r->nlist);

			r->by_index[index] = ep;
			r->list[n] = ep;
			atomic_store_explicit(&r->nlist, n + 1, memory_order_release);
		} else {
			rc = xd_errorf(err, -ENOMEM,
				       "out of memory for a worker's "
				       "deferred queries");
		}
	} else {
		/* A previous worker's queries are forgotten: a hook's answer to
		 * one of them finds its slot no longer pending.  Handles keep
		 * counting up, so none is given twice. */
		for (uint32_t i = 0; i <= ep->mask; i++)
			ep->slots[i].pending = false;
		ep->tail = ep->head;
		ep->woken = 0;
	}
	if (ep)
		ep->stream = stream;
	pthread_mutex_unlock(&r->attach_lock);
	*out = ep;
	return rc;
}

int xd_resolver_endpoint_fd(const struct xd_resolver_endpoint *ep)
{
	return ep->wake.fd;
}

/* ---- the worker's side ------------------------------------------------------- */

int xd_resolver_defer(struct xd_resolver_endpoint *ep, unsigned hook,
		      const struct xd_client *client, uint16_t port, const uint8_t *query,
		      size_t len, const void *route, size_t route_len, uint64_t now_ns)
{
	struct seq_ring *ring = hook < ep->r->nhooks ? ep->to_hook[hook] : NULL;
	struct xd_resolver_slot *slot;
	uint32_t seq = ep->head, h;

	/* Handles from tail up to head may still be pending: the slot at
	 * head is free only while that span is shorter than the table.  The
	 * hook's ring also keeps the handles of queries that expired before
	 * the hook took them: a hook that hangs fills it, and its queries get
	 * SERVFAIL at once. */
	if (!ring || seq - ep->tail > ep->mask || len > XD_RESOLVER_QUERY_MAX ||
	    route_len > XD_RESOLVER_ROUTE_MAX)
		return -ENOBUFS;
	h = atomic_load_explicit(&ring->head, memory_order_relaxed);
	if (h - atomic_load_explicit(&ring->tail, memory_order_acquire) > ep->mask)
		return -ENOBUFS;
	slot = &ep->slots[seq & ep->mask];
	/* A hook's thread that copies the slot checks seq after its copy: the
	 * handle itself is the seqlock's count. */
	atomic_store_explicit(&slot->seq, seq, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	slot->pending = true;
	slot->hook = (uint8_t)hook;
	slot->len = (uint16_t)len;
	slot->deadline = now_ns + ep->r->timeout_ns;
	slot->client = *client;
	slot->port = port;
	slot->route_len = (uint16_t)route_len;
	memcpy(slot->route, route, route_len);
	memcpy(slot->query, query, len);
	ep->head = seq + 1;
	ring->seqs[h & ep->mask] = seq;
	atomic_store_explicit(&ring->head, h + 1, memory_order_release);
	ep->woken |= 1u << hook;
	return 0;
}

void xd_resolver_defer_done(struct xd_resolver_endpoint *ep)
{
	for (uint32_t woken = ep->woken; woken; woken &= woken - 1)
		wake(&ep->r->hooks[__builtin_ctz(woken)].wake);
	ep->woken = 0;
}

static bool replies_waiting(const struct xd_resolver_endpoint *ep)
{
	return atomic_load_explicit(&ep->replies.head, memory_order_seq_cst) !=
	       atomic_load_explicit(&ep->replies.tail, memory_order_relaxed) + ep->holding;
}

bool xd_resolver_busy(const struct xd_resolver_endpoint *ep)
{
	return ep->tail != ep->head || replies_waiting(ep);
}

/* Moves tail past the queries no longer pending. */
static void sweep(struct xd_resolver_endpoint *ep)
{
	while (ep->tail != ep->head && !ep->slots[ep->tail & ep->mask].pending)
		ep->tail++;
}

/* The worker is past reply tail: what it held of its own is freed. */
static void reply_done(struct xd_resolver_endpoint *ep, uint32_t tail)
{
	struct xd_resolver_reply *rep = &ep->replies.entries[tail & ep->mask];

	free(rep->big);
	rep->big = NULL;
}

bool xd_resolver_next(struct xd_resolver_endpoint *ep, uint64_t now_ns, struct xd_resolver_work *w)
{
	struct reply_ring *rr = &ep->replies;
	uint32_t tail = atomic_load_explicit(&rr->tail, memory_order_relaxed);
	uint32_t head;

	if (ep->holding) {
		reply_done(ep, tail);
		atomic_store_explicit(&rr->tail, ++tail, memory_order_release);
		ep->holding = false;
	}
	head = atomic_load_explicit(&rr->head, memory_order_acquire);
	for (; tail != head; atomic_store_explicit(&rr->tail, ++tail, memory_order_release)) {
		struct xd_resolver_reply *rep = &rr->entries[tail & ep->mask];
		struct xd_resolver_slot *slot = &ep->slots[rep->seq & ep->mask];

		/* Not pending, or a newer query in its slot: it came too late. */
		if (!slot->pending ||
		    atomic_load_explicit(&slot->seq, memory_order_relaxed) != rep->seq) {
			reply_done(ep, tail);
			continue;
		}
		slot->pending = false;
		ep->holding = true;
		w->slot = slot;
		w->reply = rep;
		return true;
	}
	sweep(ep);
	if (ep->tail != ep->head && ep->slots[ep->tail & ep->mask].deadline <= now_ns) {
		struct xd_resolver_slot *slot = &ep->slots[ep->tail++ & ep->mask];

		slot->pending = false;
		w->slot = slot;
		w->reply = NULL;
		return true;
	}
	return false;
}

int64_t xd_resolver_next_deadline(const struct xd_resolver_endpoint *ep, uint64_t now_ns)
{
	uint32_t tail = ep->tail;
	uint64_t deadline;

	while (tail != ep->head && !ep->slots[tail & ep->mask].pending)
		tail++;
	if (tail == ep->head)
		return -1;
	deadline = ep->slots[tail & ep->mask].deadline;
	return deadline > now_ns ? (int64_t)(deadline - now_ns) : 0;
}

bool xd_resolver_sleep(struct xd_resolver_endpoint *ep)
{
	atomic_store_explicit(&ep->wake.sleeping, 1, memory_order_seq_cst);
	if (!replies_waiting(ep))
		return true;
	atomic_store(&ep->wake.sleeping, 0);
	return false;
}

void xd_resolver_awake(struct xd_resolver_endpoint *ep)
{
	atomic_store_explicit(&ep->wake.sleeping, 0, memory_order_relaxed);
	drain_fd(ep->wake.fd);
}

int xd_resolver_respond(const struct xd_image *img, struct xd_answer_ctx *ctx,
			const struct xd_resolver_work *w, uint8_t *resp, size_t cap, unsigned flags)
{
	const struct xd_resolver_reply *rep = w->reply;
	const uint8_t *data = rep && rep->big ? rep->big : rep ? rep->data : NULL;
	struct xd_resolver_given given;
	int len;

	ctx->client = w->slot->client;
	if (rep && rep->kind == XD_RESOLVER_WIRE) {
		ctx->kind.kind = -1; /* the plugin's bytes: rate limiting reads them */
		ctx->cookie = XD_COOKIE_NONE; /* not the previous query's */
		if (rep->len > cap)
			return 0;
		memcpy(resp, data, rep->len);
		return rep->len;
	}
	if (rep && (rep->kind == XD_RESOLVER_RECORDS || rep->kind == XD_RESOLVER_OVERSIZED)) {
		given = (struct xd_resolver_given){ data, rep->len, rep->count, rep->header,
						    rep->kind == XD_RESOLVER_OVERSIZED };
		ctx->given = &given;
	}
	/* Without the hook's records: SERVFAIL, or the cache's answer if one
	 * came meanwhile. */
	len = xd_answer_ctx(img, ctx, w->slot->query, w->slot->len, resp, cap,
			    flags & XD_ANSWER_TCP);
	ctx->given = NULL;
	return len;
}

/* ---- the hooks' side ----------------------------------------------------------- */

int xd_engine_resolver_start(struct xd_engine *e, const struct xd_resolver_config *cfg,
			     struct xd_error *err)
{
	struct xd_resolver *r;
	uint32_t h;

	if (e->resolver || e->udp || e->tcp || e->xdp)
		return xd_errorf(err, -EBUSY, "the resolver starts once, before the workers");
	if (!power_of_two(cfg->ring_size) || (cfg->cache_size && !power_of_two(cfg->cache_size)))
		return xd_errorf(err, -EINVAL,
				 "ring_size and cache_size must be powers of two "
				 "up to %u",
				 XD_RESOLVER_SIZE_MAX);
	if (cfg->hooks < 1 || cfg->hooks > XD_RESOLVER_HOOKS_MAX)
		return xd_errorf(err, -EINVAL, "%u resolver hooks: 1 to %d", cfg->hooks,
				 XD_RESOLVER_HOOKS_MAX);
	if (cfg->timeout_ms < 1)
		return xd_errorf(err, -EINVAL, "the resolver's timeout must be at least 1 ms");
	r = calloc(1, sizeof(*r));
	if (!r)
		return xd_errorf(err, -ENOMEM, "out of memory for the resolver");
	pthread_mutex_init(&r->attach_lock, NULL);
	r->ring_size = cfg->ring_size;
	r->nhooks = cfg->hooks;
	r->timeout_ns = (uint64_t)cfg->timeout_ms * 1000000ull;
	for (h = 0; h < XD_RESOLVER_HOOKS_MAX; h++)
		r->hooks[h].wake.fd = -1;
	for (h = 0; h < r->nhooks; h++) {
		int rc = sleeper_init(&r->hooks[h].wake);

		if (rc) {
			xd_resolver_free(r);
			return xd_errorf(err, rc, "eventfd: %s", strerror(-rc));
		}
	}
	if (cfg->cache_size && !(r->cache = xd_rcache_new(cfg->cache_size))) {
		xd_resolver_free(r);
		return xd_errorf(err, -ENOMEM, "out of memory for the resolver's cache");
	}
	e->resolver = r;
	return 0;
}

void xd_resolver_free(struct xd_resolver *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < atomic_load(&r->nlist); i++)
		endpoint_free(r->list[i]);
	for (int h = 0; h < XD_RESOLVER_HOOKS_MAX; h++)
		if (r->hooks[h].wake.fd >= 0)
			close(r->hooks[h].wake.fd);
	xd_rcache_free(r->cache);
	pthread_mutex_destroy(&r->attach_lock);
	free(r);
}

const struct xd_rcache *xd_resolver_cache(const struct xd_resolver *r)
{
	return r ? r->cache : NULL;
}

int xd_engine_resolver_fd(const struct xd_engine *e, unsigned hook)
{
	if (!e->resolver)
		return -ENOENT;
	return hook < e->resolver->nhooks ? e->resolver->hooks[hook].wake.fd : -EINVAL;
}

/* Copies slot seq's query to out; false when its deadline has passed
 * (its worker answered SERVFAIL: a hook that was behind does not spend
 * its time on queries nobody waits for), or when the slot holds another
 * by now (reused while we copied). */
static bool copy_query(const struct xd_resolver_endpoint *ep, uint32_t seq,
		       struct xd_resolver_query *out, uint64_t now_ns)
{
	const struct xd_resolver_slot *slot = &ep->slots[seq & ep->mask];

	if (atomic_load_explicit(&slot->seq, memory_order_acquire) != seq ||
	    slot->deadline <= now_ns)
		return false;
	out->seq = seq;
	out->family = slot->client.family;
	memcpy(out->ip, slot->client.addr, sizeof(out->ip));
	out->port = slot->port;
	out->tcp = ep->stream;
	out->len = slot->len <= XD_RESOLVER_QUERY_MAX ? slot->len : 0;
	memcpy(out->query, slot->query, out->len);
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&slot->seq, memory_order_relaxed) == seq;
}

int xd_engine_resolver_take(struct xd_engine *e, unsigned hook, struct xd_resolver_query *out,
			    int max)
{
	struct xd_resolver *r = e->resolver;
	uint64_t now = xd_resolver_clock();
	struct hook_state *hs;
	uint32_t nlist;
	int n = 0;

	if (!r || hook >= r->nhooks || max < 0)
		return -EINVAL;
	hs = &r->hooks[hook];
	nlist = atomic_load_explicit(&r->nlist, memory_order_acquire);
	/* Round robin over the workers, so that a busy one cannot keep the
	 * rest out of a batch. */
	for (uint32_t i = 0; i < nlist && n < max; i++) {
		uint32_t index = (hs->next + i) % nlist;
		struct xd_resolver_endpoint *ep = r->list[index];
		struct seq_ring *ring = ep->to_hook[hook];
		uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
		uint32_t head = atomic_load_explicit(&ring->head, memory_order_acquire);

		for (; tail != head && n < max; tail++) {
			out[n].endpoint = index;
			if (copy_query(ep, ring->seqs[tail & ep->mask], &out[n], now))
				n++;
		}
		atomic_store_explicit(&ring->tail, tail, memory_order_release);
	}
	if (nlist)
		hs->next = (hs->next + 1) % nlist;
	return n;
}

static bool queries_waiting(struct xd_resolver *r, unsigned hook)
{
	uint32_t nlist = atomic_load_explicit(&r->nlist, memory_order_acquire);

	for (uint32_t i = 0; i < nlist; i++) {
		struct seq_ring *ring = r->list[i]->to_hook[hook];

		if (atomic_load_explicit(&ring->head, memory_order_seq_cst) !=
		    atomic_load_explicit(&ring->tail, memory_order_relaxed))
			return true;
	}
	return false;
}

int xd_engine_resolver_idle(struct xd_engine *e, unsigned hook)
{
	struct xd_resolver *r = e->resolver;
	struct sleeper *s;

	if (!r || hook >= r->nhooks)
		return -EINVAL;
	s = &r->hooks[hook].wake;
	drain_fd(s->fd);
	atomic_store_explicit(&s->sleeping, 1, memory_order_seq_cst);
	if (!queries_waiting(r, hook))
		return 1;
	atomic_store(&s->sleeping, 0);
	return 0;
}

/* Puts one answer on the ring of the worker that holds its query. */
static int give(struct xd_resolver_endpoint *ep, const struct xd_resolver_reply *head,
		const uint8_t *data, size_t len)
{
	struct reply_ring *rr = &ep->replies;
	struct xd_resolver_reply *slot;
	uint8_t *big = NULL;
	uint32_t h;
	int rc = 0;

	if (len > sizeof(slot->data)) {
		big = malloc(len);
		if (!big)
			return -ENOBUFS;
		memcpy(big, data, len);
	}
	pthread_mutex_lock(&rr->lock);
	h = atomic_load_explicit(&rr->head, memory_order_relaxed);
	if (h - atomic_load_explicit(&rr->tail, memory_order_acquire) > ep->mask) {
		rc = -ENOBUFS;
	} else {
		slot = &rr->entries[h & ep->mask];
		memcpy(slot, head, offsetof(struct xd_resolver_reply, data));
		slot->big = big;
		if (!big)
			memcpy(slot->data, data, len);
		big = NULL;
		atomic_store_explicit(&rr->head, h + 1, memory_order_release);
	}
	pthread_mutex_unlock(&rr->lock);
	free(big); /* not given */
	if (rc == 0)
		atomic_store_explicit(&ep->given, 1, memory_order_release);
	return rc;
}

void xd_engine_resolver_flush(struct xd_engine *e)
{
	struct xd_resolver *r = e->resolver;
	uint32_t nlist = r ? atomic_load_explicit(&r->nlist, memory_order_acquire) : 0;

	for (uint32_t i = 0; i < nlist; i++)
		if (atomic_load_explicit(&r->list[i]->given, memory_order_relaxed) &&
		    atomic_exchange(&r->list[i]->given, 0))
			wake(&r->list[i]->wake);
}

int xd_engine_resolver_cache(struct xd_engine *e, const uint8_t *name, size_t name_len,
			     uint16_t qtype, uint16_t qclass, const uint8_t *resp, size_t len,
			     size_t question_end, uint32_t ttl)
{
	struct xd_rcache *c = e->resolver ? e->resolver->cache : NULL;

	if (!c)
		return -ENOENT;
	if (name_len > XD_NAME_MAX || len < question_end || question_end < XD_DNS_HEADER_LEN ||
	    len - question_end > XD_RCACHE_DATA_MAX)
		return -EINVAL;
	if (ttl == 0)
		return 0;
	xd_rcache_put(c, name, name_len, qtype, qclass, resp, len, question_end,
		      (uint32_t)time(NULL), ttl);
	return 0;
}

int xd_engine_resolver_build(struct xd_engine *e, const struct xd_client *client,
			     const uint8_t *query, size_t qlen, const uint8_t *records,
			     size_t records_len, unsigned header, uint32_t cache_ttl, uint8_t *resp,
			     size_t cap, unsigned flags, int *cached)
{
	struct xd_resolver_given g = { records, records_len, 0, (uint16_t)header, false };
	struct xd_rcache *c = e->resolver ? e->resolver->cache : NULL;
	int n = xd_resolver_records_count(records, records_len);

	if (cached)
		*cached = 0;
	if (n < 0 || (header & ~(unsigned)(XD_RESOLVER_AA | 0xf)))
		return -EINVAL;
	g.count = (uint16_t)n;
	/* An answer without records is not cached: a negative answer lives
	 * by its SOA's TTL (RFC 2308 5), and these carry none. */
	if (c && cache_ttl && n > 0 && xd_rcache_put_given(c, &g, query, qlen, cache_ttl) && cached)
		*cached = 1;
	return xd_engine_answer_given(e, client, &g, query, qlen, resp, cap, flags & XD_ANSWER_TCP);
}

int xd_engine_resolver_answer(struct xd_engine *e, const struct xd_resolver_query *q, int kind,
			      const uint8_t *data, size_t len, unsigned header, uint32_t cache_ttl,
			      int *cached)
{
	struct xd_resolver *r = e->resolver;
	struct xd_resolver_reply head = { .seq = q->seq, .kind = (uint16_t)kind };
	uint32_t nlist = r ? atomic_load_explicit(&r->nlist, memory_order_acquire) : 0;
	struct xd_resolver_endpoint *ep;
	size_t most;
	int n;

	if (cached)
		*cached = 0;
	if (q->endpoint >= nlist || q->len > XD_RESOLVER_QUERY_MAX)
		return -EINVAL;
	ep = r->list[q->endpoint];
	/* What one message holds: a datagram we send, or a TCP message. */
	most = ep->stream ? UINT16_MAX : XD_RESOLVER_ANSWER_MAX;
	switch (kind) {
	case XD_RESOLVER_RECORDS:
		n = xd_resolver_records_count(data, len);
		if (n < 0 || (header & ~(unsigned)(XD_RESOLVER_AA | 0xf)))
			return -EINVAL;
		head.count = (uint16_t)n;
		head.header = (uint16_t)header;
		if (len > most) {
			/* More than any UDP response holds (nor a cache entry):
			 * the worker's core sends TC, and the client asks over
			 * TCP. */
			head.kind = XD_RESOLVER_OVERSIZED;
			len = 0;
			break;
		}
		if (r->cache && cache_ttl && n > 0 && len <= XD_RESOLVER_ANSWER_MAX &&
		    xd_rcache_put_given(r->cache,
					&(struct xd_resolver_given){ data, len, head.count,
								     head.header, false },
					q->query, q->len, cache_ttl) &&
		    cached)
			*cached = 1;
		break;
	case XD_RESOLVER_WIRE:
		if (len > most)
			return -EMSGSIZE;
		if (len < XD_DNS_HEADER_LEN)
			return -EINVAL;
		break;
	case XD_RESOLVER_SERVFAIL:
		len = 0;
		break;
	default:
		return -EINVAL;
	}
	head.len = (uint16_t)len;
	return give(ep, &head, data, len);
}
