/*
 * resolver.c - the resolver hook's native half (resolver.h): the workers'
 * rings of deferred queries, the eventfd that wakes the resolver thread,
 * sending its answers from the workers' sockets, and the cache of answers
 * that the answering core reads before it defers a query.
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

#include "cookie.h"
#include "engine_internal.h"
#include "image.h"
#include "query.h"
#include "resolver.h"
#include "wire.h"

/* The largest hook answer cached: the sections of a response that fits
 * the 1232-byte payload we advertise. */
#define XD_RCACHE_DATA_MAX 1232
/* Rings and caches beyond this are a configuration mistake, not a need:
 * a million deferred queries is seconds of the hook's work. */
#define XD_RESOLVER_SIZE_MAX (1u << 20)

_Static_assert(sizeof(((struct xd_resolver_query *)0)->addr) >=
	       sizeof(struct sockaddr_in6), "room for an IPv6 client");

/* ---- rings ----------------------------------------------------------------- */

struct xd_resolver_ring *xd_resolver_ring_new(uint32_t size)
{
	struct xd_resolver_ring *ring;

	ring = aligned_alloc(64, (sizeof(*ring) + size * sizeof(ring->slots[0]) + 63) & ~63ul);
	if (!ring)
		return NULL;
	atomic_init(&ring->head, 0);
	atomic_init(&ring->tail, 0);
	ring->mask = size - 1;
	return ring;
}

void xd_resolver_ring_free(struct xd_resolver_ring *ring)
{
	free(ring);
}

bool xd_resolver_ring_put(struct xd_resolver_ring *ring, const struct xd_resolver_query *q)
{
	uint32_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
	uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
	struct xd_resolver_query *slot;

	if (head - tail > ring->mask)
		return false;
	slot = &ring->slots[head & ring->mask];
	/* Only the query's own bytes: a slot is 1.4 KB, a query about 40. */
	memcpy(slot, q, offsetof(struct xd_resolver_query, query));
	memcpy(slot->query, q->query, q->len);
	atomic_store_explicit(&ring->head, head + 1, memory_order_release);
	return true;
}

int xd_resolver_ring_take(struct xd_resolver_ring *ring, struct xd_resolver_query *out,
			  int max)
{
	uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
	uint32_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
	int n = 0;

	for (; tail != head && n < max; tail++, n++) {
		const struct xd_resolver_query *slot = &ring->slots[tail & ring->mask];

		memcpy(&out[n], slot, offsetof(struct xd_resolver_query, query));
		memcpy(out[n].query, slot->query, slot->len);
	}
	atomic_store_explicit(&ring->tail, tail, memory_order_release);
	return n;
}

/* ---- the cache --------------------------------------------------------------- */

/*
 * One cached answer.  seq is a seqlock: odd while the writer rewrites the
 * entry; a reader that sees it change (or odd) takes the lookup as a miss,
 * so readers never wait and never write.  Direct-mapped: a new answer
 * replaces whatever shared its slot.
 */
struct rcache_entry {
	_Atomic uint32_t seq;
	uint32_t expires;		/* UNIX seconds; 0: empty */
	uint16_t qtype;
	uint16_t qclass;
	uint16_t flags;
	uint16_t count[3];
	uint16_t len;
	uint8_t name_len;
	uint8_t name[XD_NAME_MAX];
	uint8_t data[XD_RCACHE_DATA_MAX];
};

struct xd_rcache {
	/* One writer at a time: a seqlock lets readers through, not a second
	 * writer, and answers come from every plugin's hook thread and TCP. */
	pthread_mutex_t put_lock;
	uint32_t mask;
	struct rcache_entry entries[];
};

static uint64_t rcache_hash(const uint8_t *name, size_t len, uint16_t qtype, uint16_t qclass)
{
	return xd_override_hash(name, len) ^ ((uint64_t)qtype << 16 | qclass) *
	       0x9e3779b97f4a7c15ull;
}

static bool entry_matches(const struct rcache_entry *en, const uint8_t *name,
			  size_t name_len, uint16_t qtype, uint16_t qclass, uint32_t now)
{
	return en->expires > now && en->qtype == qtype && en->qclass == qclass &&
	       en->name_len == name_len && memcmp(en->name, name, name_len) == 0;
}

int xd_rcache_get(const struct xd_rcache *c, const uint8_t *name, size_t name_len,
		  uint16_t qtype, uint16_t qclass, uint32_t now, uint8_t *out,
		  size_t room, struct xd_rcache_hit *hit)
{
	const struct rcache_entry *en;
	uint32_t seq;
	int rc = 1;

	en = &c->entries[rcache_hash(name, name_len, qtype, qclass) & c->mask];
	seq = atomic_load_explicit(&en->seq, memory_order_acquire);
	if ((seq & 1) || !entry_matches(en, name, name_len, qtype, qclass, now))
		return 0;
	hit->flags = en->flags;
	memcpy(hit->count, en->count, sizeof(hit->count));
	hit->len = en->len;
	if (hit->len > room)
		rc = -ENOSPC;
	else
		memcpy(out, en->data, hit->len);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&en->seq, memory_order_relaxed) != seq)
		return 0;	/* rewritten under us: what we copied is torn */
	return rc;
}

static struct xd_rcache *rcache_new(uint32_t size)
{
	struct xd_rcache *c = calloc(1, sizeof(*c) + size * sizeof(c->entries[0]));

	if (c) {
		pthread_mutex_init(&c->put_lock, NULL);
		c->mask = size - 1;
	}
	return c;
}

static void rcache_free(struct xd_rcache *c)
{
	if (c) {
		pthread_mutex_destroy(&c->put_lock);
		free(c);
	}
}

/* What one cache entry holds besides its key: the sections after the
 * question, their counts, and the header's AA and RCODE. */
struct rcache_value {
	uint16_t flags;
	uint16_t count[3];
	const uint8_t *data;
	size_t len;			/* at most XD_RCACHE_DATA_MAX */
};

static void rcache_store(struct xd_rcache *c, const uint8_t *name, size_t name_len,
			 uint16_t qtype, uint16_t qclass, const struct rcache_value *v,
			 uint32_t expires)
{
	struct rcache_entry *en;
	uint32_t seq;

	en = &c->entries[rcache_hash(name, name_len, qtype, qclass) & c->mask];
	pthread_mutex_lock(&c->put_lock);
	seq = atomic_load_explicit(&en->seq, memory_order_relaxed);
	atomic_store_explicit(&en->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	en->expires = expires;
	en->qtype = qtype;
	en->qclass = qclass;
	en->flags = v->flags & (XD_FLAG_AA | 0xf);
	memcpy(en->count, v->count, sizeof(en->count));
	en->len = v->len;
	en->name_len = name_len;
	memcpy(en->name, name, name_len);
	memcpy(en->data, v->data, v->len);
	atomic_store_explicit(&en->seq, seq + 2, memory_order_release);
	pthread_mutex_unlock(&c->put_lock);
}

static void rcache_put(struct xd_rcache *c, const uint8_t *name, size_t name_len,
		       uint16_t qtype, uint16_t qclass, const uint8_t *resp,
		       size_t len, size_t question_end, uint32_t expires)
{
	struct rcache_value v = {
		.flags = xd_get16(resp + 2),
		.data = resp + question_end,
		.len = len - question_end,
	};

	for (int i = 0; i < 3; i++)
		v.count[i] = xd_get16(resp + 6 + 2 * i);
	rcache_store(c, name, name_len, qtype, qclass, &v, expires);
}

/* ---- the engine's resolver --------------------------------------------------- */

struct xd_resolver {
	int eventfd;
	uint32_t ring_size;
	struct xd_rcache *cache;	/* NULL: no cache */
};

static bool power_of_two(uint32_t n)
{
	return n && !(n & (n - 1)) && n <= XD_RESOLVER_SIZE_MAX;
}

int xd_engine_resolver_start(struct xd_engine *e, const struct xd_resolver_config *cfg,
			     struct xd_error *err)
{
	struct xd_resolver *r;

	if (e->resolver || e->udp) {
		snprintf(err->message, sizeof(err->message),
			 "the resolver starts once, before the UDP workers");
		return -EBUSY;
	}
	if (!power_of_two(cfg->ring_size) || (cfg->cache_size && !power_of_two(cfg->cache_size))) {
		snprintf(err->message, sizeof(err->message), "ring_size and cache_size must "
			 "be powers of two up to %u", XD_RESOLVER_SIZE_MAX);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		goto out_nomem;
	r->ring_size = cfg->ring_size;
	if (cfg->cache_size && !(r->cache = rcache_new(cfg->cache_size)))
		goto out_free;
	r->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->eventfd < 0) {
		int rc = -errno;

		rcache_free(r->cache);
		free(r);
		snprintf(err->message, sizeof(err->message), "eventfd: %s", strerror(-rc));
		return rc;
	}
	e->resolver = r;
	return 0;

out_free:
	free(r);
out_nomem:
	snprintf(err->message, sizeof(err->message), "out of memory for the resolver");
	return -ENOMEM;
}

void xd_resolver_free(struct xd_resolver *r)
{
	if (!r)
		return;
	close(r->eventfd);
	rcache_free(r->cache);
	free(r);
}

uint32_t xd_resolver_ring_size(const struct xd_resolver *r)
{
	return r->ring_size;
}

const struct xd_rcache *xd_resolver_cache(const struct xd_resolver *r)
{
	return r ? r->cache : NULL;
}

void xd_resolver_notify(const struct xd_resolver *r)
{
	uint64_t one = 1;

	if (write(r->eventfd, &one, sizeof(one)) < 0) {
		/* Fails only when the counter would overflow: it is set. */
	}
}

int xd_engine_resolver_fd(const struct xd_engine *e)
{
	return e->resolver ? e->resolver->eventfd : -ENOENT;
}

int xd_engine_resolver_send(struct xd_engine *e, const struct xd_resolver_query *q,
			    const uint8_t *resp, size_t len)
{
	struct iovec iov = { (void *)resp, len };
	struct msghdr m = {
		.msg_name = (void *)q->addr,
		.msg_namelen = q->addr_len,
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = q->control_len ? (void *)q->control : NULL,
		.msg_controllen = q->control_len,
	};

	(void)e;
	/* MSG_DONTWAIT: a full socket buffer drops the answer, as the
	 * workers' sendmmsg does; the resolver thread never blocks on one. */
	return sendmsg(q->fd, &m, MSG_DONTWAIT) < 0 ? -errno : 0;
}

int xd_engine_resolver_cache(struct xd_engine *e, const uint8_t *name, size_t name_len,
			     uint16_t qtype, uint16_t qclass, const uint8_t *resp,
			     size_t len, size_t question_end, uint32_t ttl)
{
	struct xd_rcache *c = e->resolver ? e->resolver->cache : NULL;

	if (!c)
		return -ENOENT;
	if (name_len > XD_NAME_MAX || len < question_end || question_end < XD_DNS_HEADER_LEN ||
	    len - question_end > XD_RCACHE_DATA_MAX)
		return -EINVAL;
	if (ttl == 0)
		return 0;
	rcache_put(c, name, name_len, qtype, qclass, resp, len, question_end,
		   (uint32_t)time(NULL) + ttl);
	return 0;
}

/* ---- a hook's answer in its fast form (xdpdns.hookspecs.Answer) ------------ */

/* Types that cannot be data in an answer: 0, OPT (RFC 6891 6.1.1: only
 * ours, in the additional section) and the meta and query types from TKEY
 * to ANY, as the overrides refuse them (xdpdns/hookspecs.py). */
static bool data_type(uint16_t type)
{
	return type != 0 && type != XD_TYPE_OPT && (type < XD_TYPE_TKEY || type > XD_TYPE_ANY);
}

/* The number of packed records in rec[0..len) (engine.h), checking that
 * each lies within the buffer, has a data type and a TTL of at most 2^31-1
 * (RFC 2181 8); -EINVAL otherwise, and for more than an answer section can
 * count. */
static int count_records(const uint8_t *rec, size_t len)
{
	size_t off = 0;
	int n = 0;

	while (off < len) {
		uint16_t rdlen;

		if (len - off < XD_RESOLVER_RECORD_HEAD)
			return -EINVAL;
		rdlen = xd_get16(rec + off + 6);
		if (!data_type(xd_get16(rec + off)) || xd_get32(rec + off + 2) > INT32_MAX ||
		    len - off - XD_RESOLVER_RECORD_HEAD < rdlen || n == UINT16_MAX)
			return -EINVAL;
		off += XD_RESOLVER_RECORD_HEAD + rdlen;
		n++;
	}
	return n;
}

/* Writes checked packed records to out (room bytes) as resource records
 * owned by the question's name, class IN; returns the bytes written, or
 * -ENOSPC.  A record grows by 4 bytes: the owner pointer and the class. */
static int put_records(const uint8_t *rec, size_t len, uint8_t *out, size_t room)
{
	size_t off = 0, w = 0;

	while (off < len) {
		uint16_t rdlen = xd_get16(rec + off + 6);
		size_t rr = 12 + (size_t)rdlen;

		if (room - w < rr)
			return -ENOSPC;
		xd_put16(out + w, 0xc000 | XD_DNS_HEADER_LEN);
		memcpy(out + w + 2, rec + off, 2);		/* type */
		xd_put16(out + w + 4, XD_CLASS_IN);
		memcpy(out + w + 6, rec + off + 2, 6);		/* TTL, RDLENGTH */
		memcpy(out + w + 12, rec + off + XD_RESOLVER_RECORD_HEAD, rdlen);
		w += rr;
		off += XD_RESOLVER_RECORD_HEAD + rdlen;
	}
	return (int)w;
}

int xd_resolver_given_get(const struct xd_resolver_given *g, uint8_t *out, size_t room,
			  struct xd_rcache_hit *hit)
{
	int len = put_records(g->records, g->len, out, room);

	hit->flags = g->header;
	if (len < 0)
		return len;
	hit->count[0] = g->count;
	hit->count[1] = hit->count[2] = 0;
	hit->len = (size_t)len;
	return 1;
}

/* Caches a hook's answer for the query's (name, type, class), when the
 * query parses and its records fit a cache entry; true when it did. */
static bool cache_given(struct xd_rcache *c, const struct xd_resolver_given *g,
			const uint8_t *query, size_t qlen, uint32_t ttl)
{
	uint8_t data[XD_RCACHE_DATA_MAX];
	struct rcache_value v = { .flags = g->header, .count = { g->count, 0, 0 }, .data = data };
	struct xd_query q;
	int len;

	if (xd_query_parse(&q, query, qlen) != XD_QUERY_OK || q.question_end <= XD_DNS_HEADER_LEN)
		return false;
	len = put_records(g->records, g->len, data, sizeof(data));
	if (len < 0)
		return false;	/* larger than an entry: asked again next time */
	v.len = (size_t)len;
	rcache_store(c, q.qname, q.qname_len, q.qtype, q.qclass, &v, (uint32_t)time(NULL) + ttl);
	return true;
}

int xd_engine_resolver_build(struct xd_engine *e, const struct xd_client *client,
			     const uint8_t *query, size_t qlen, const uint8_t *records,
			     size_t records_len, unsigned header, uint32_t cache_ttl,
			     uint8_t *resp, size_t cap, unsigned flags, int *cached)
{
	struct xd_resolver_given g = { records, records_len, 0, (uint16_t)header };
	struct xd_rcache *c = e->resolver ? e->resolver->cache : NULL;
	int n = count_records(records, records_len);

	if (cached)
		*cached = 0;
	if (n < 0 || (header & ~(unsigned)(XD_RESOLVER_AA | 0xf)))
		return -EINVAL;
	g.count = (uint16_t)n;
	/* An answer without records is not cached: a negative answer lives
	 * by its SOA's TTL (RFC 2308 5), and these carry none. */
	if (c && cache_ttl && n > 0 && cache_given(c, &g, query, qlen, cache_ttl) && cached)
		*cached = 1;
	return xd_engine_answer_given(e, client, &g, query, qlen, resp, cap,
				      flags & XD_ANSWER_TCP);
}

int xd_engine_resolver_reply(struct xd_engine *e, const struct xd_resolver_query *q,
			     const uint8_t *records, size_t records_len, unsigned header,
			     uint32_t cache_ttl, int *cached)
{
	/* The workers' response size: a UDP answer never needs more. */
	uint8_t resp[XD_RCACHE_DATA_MAX];
	struct xd_client client;
	int len, rc;

	xd_client_set(&client, q->family, q->ip);
	len = xd_engine_resolver_build(e, &client, q->query, q->len, records, records_len,
				       header, cache_ttl, resp, sizeof(resp), 0, cached);
	if (len <= 0)
		return len;
	rc = xd_engine_resolver_send(e, q, resp, (size_t)len);
	return rc < 0 ? rc : len;
}
