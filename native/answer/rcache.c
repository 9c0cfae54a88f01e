/*
 * rcache.c - the cache of resolver hooks' answers (rcache.h), which the
 * answering core reads before it hands a claimed name to its hook, and a
 * hook's answer in its fast form (packed records, engine.h) made into
 * sections.  A seqlock per entry: readers never wait and never write.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "answer/rcache.h"
#include "image/image.h"
#include "wire/query.h"
#include "wire/wire.h"

/* ---- the cache --------------------------------------------------------------- */

/*
 * One cached answer.  seq is a seqlock: odd while the writer rewrites the
 * entry; a reader that sees it change (or odd) takes the lookup as a miss,
 * so readers never wait and never write.  Direct-mapped: a new answer
 * replaces whatever shared its slot.
 */
struct rcache_entry {
	_Atomic uint32_t seq;
	uint32_t expires; /* UNIX seconds; 0: empty */
	uint32_t stored; /* UNIX seconds when cached */
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
	return xd_override_hash(name, len) ^
	       ((uint64_t)qtype << 16 | qclass) * 0x9e3779b97f4a7c15ull;
}

static bool entry_matches(const struct rcache_entry *en, const uint8_t *name, size_t name_len,
			  uint16_t qtype, uint16_t qclass, uint32_t now)
{
	return en->expires > now && en->qtype == qtype && en->qclass == qclass &&
	       en->name_len == name_len && memcmp(en->name, name, name_len) == 0;
}

/*
 * Lowers the TTL of each of the count records in sections[0..len) by age
 * seconds (to 0 at least), as a cache counts them down (RFC 1035 3.2.1):
 * a client asking later must not keep the answer longer than one asking
 * first.  False when the records do not parse.
 */
static bool age_ttls(uint8_t *p, size_t len, unsigned count, uint32_t age)
{
	size_t off = 0;

	for (unsigned i = 0; i < count; i++) {
		size_t owner = xd_name_skip(p + off, len - off);
		uint32_t ttl;
		uint16_t rdlen;

		if (!owner || len - off - owner < 10)
			return false;
		off += owner;
		ttl = xd_get32(p + off + 4);
		if (xd_get16(p + off) != XD_TYPE_OPT) /* its "TTL" is flags */
			xd_put32(p + off + 4, ttl > age ? ttl - age : 0);
		rdlen = xd_get16(p + off + 8);
		off += 10;
		if (len - off < rdlen)
			return false;
		off += rdlen;
	}
	return true;
}

int xd_rcache_get(const struct xd_rcache *c, const uint8_t *name, size_t name_len, uint16_t qtype,
		  uint16_t qclass, uint32_t now, uint8_t *out, size_t room,
		  struct xd_rcache_hit *hit)
{
	const struct rcache_entry *en;
	uint32_t seq, stored;
	int rc = 1;

	en = &c->entries[rcache_hash(name, name_len, qtype, qclass) & c->mask];
	seq = atomic_load_explicit(&en->seq, memory_order_acquire);
	if ((seq & 1) || !entry_matches(en, name, name_len, qtype, qclass, now))
		return 0;
	hit->flags = en->flags;
	memcpy(hit->count, en->count, sizeof(hit->count));
	hit->len = en->len;
	stored = en->stored;
	if (hit->len > room)
		rc = -ENOSPC;
	else
		memcpy(out, en->data, hit->len);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&en->seq, memory_order_relaxed) != seq)
		return 0; /* rewritten under us: what we copied is torn */
	if (rc == 1 && now > stored &&
	    !age_ttls(out, hit->len, (unsigned)hit->count[0] + hit->count[1] + hit->count[2],
		      now - stored))
		return 0; /* records we cannot read: asked again */
	return rc;
}

struct xd_rcache *xd_rcache_new(uint32_t size)
{
	struct xd_rcache *c = calloc(1, sizeof(*c) + size * sizeof(c->entries[0]));

	if (c) {
		pthread_mutex_init(&c->put_lock, NULL);
		c->mask = size - 1;
	}
	return c;
}

void xd_rcache_free(struct xd_rcache *c)
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
	size_t len; /* at most XD_RCACHE_DATA_MAX */
};

/* Caches v for (name, qtype, qclass) for ttl seconds from now. */
static void rcache_store(struct xd_rcache *c, const uint8_t *name, size_t name_len, uint16_t qtype,
			 uint16_t qclass, const struct rcache_value *v, uint32_t now, uint32_t ttl)
{
	struct rcache_entry *en;
	uint32_t seq;

	en = &c->entries[rcache_hash(name, name_len, qtype, qclass) & c->mask];
	pthread_mutex_lock(&c->put_lock);
	seq = atomic_load_explicit(&en->seq, memory_order_relaxed);
	atomic_store_explicit(&en->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	en->expires = now + ttl;
	en->stored = now;
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

void xd_rcache_put(struct xd_rcache *c, const uint8_t *name, size_t name_len, uint16_t qtype,
		   uint16_t qclass, const uint8_t *resp, size_t len, size_t question_end,
		   uint32_t now, uint32_t ttl)
{
	struct rcache_value v = {
		.flags = xd_get16(resp + 2),
		.data = resp + question_end,
		.len = len - question_end,
	};

	for (int i = 0; i < 3; i++)
		v.count[i] = xd_get16(resp + 6 + 2 * i);
	rcache_store(c, name, name_len, qtype, qclass, &v, now, ttl);
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
int xd_resolver_records_count(const uint8_t *rec, size_t len)
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
		memcpy(out + w + 2, rec + off, 2); /* type */
		xd_put16(out + w + 4, XD_CLASS_IN);
		memcpy(out + w + 6, rec + off + 2, 6); /* TTL, RDLENGTH */
		memcpy(out + w + 12, rec + off + XD_RESOLVER_RECORD_HEAD, rdlen);
		w += rr;
		off += XD_RESOLVER_RECORD_HEAD + rdlen;
	}
	return (int)w;
}

int xd_resolver_given_get(const struct xd_resolver_given *g, uint8_t *out, size_t room,
			  struct xd_rcache_hit *hit)
{
	int len = g->oversized ? -ENOSPC : put_records(g->records, g->len, out, room);

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
bool xd_rcache_put_given(struct xd_rcache *c, const struct xd_resolver_given *g,
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
		return false; /* larger than an entry: asked again next time */
	v.len = (size_t)len;
	rcache_store(c, q.qname, q.qname_len, q.qtype, q.qclass, &v, (uint32_t)time(NULL), ttl);
	return true;
}
