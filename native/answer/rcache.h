/*
 * rcache.h - the cache of resolver hooks' answers, and a hook's answer in
 * its fast form made into sections (rcache.c).  Not seen by cffi.
 */
#ifndef XDPDNS_RCACHE_H
#define XDPDNS_RCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* The largest hook answer cached: the sections of a response that fits
 * the 1232-byte payload we advertise. */
#define XD_RCACHE_DATA_MAX 1232

struct xd_rcache;

/* What a cached answer puts into a response after its question. */
struct xd_rcache_hit {
	uint16_t flags; /* the hook's header flags and RCODE */
	uint16_t count[3]; /* answer, authority, additional */
	size_t len; /* bytes written */
};

/*
 * Copies the cached sections for (name, qtype, qclass) to out (at most room
 * bytes): 1 on a hit, 0 on a miss (absent, expired, or being rewritten this
 * instant), -ENOSPC when they do not fit.  name is lower-case wire form.
 * Readers take no lock: each entry is a seqlock that its writer (one at a
 * time: the hooks' threads take the cache's lock) bumps around a rewrite.
 */
int xd_rcache_get(const struct xd_rcache *c, const uint8_t *name, size_t name_len, uint16_t qtype,
		  uint16_t qclass, uint32_t now, uint8_t *out, size_t room,
		  struct xd_rcache_hit *hit);

/*
 * A hook's answer in its fast form (xd_engine_resolver_build), handed to
 * the answering core in place of a cache lookup, so that it leaves with
 * the header, question, OPT, NSID and cookie of any other answer.
 * records: the packed records as xd_engine_resolver_build takes them,
 * already checked; count of them; header: AA and RCODE.
 */
struct xd_resolver_given {
	const uint8_t *records;
	size_t len;
	uint16_t count;
	uint16_t header;
	bool oversized; /* larger than any UDP response: TC */
};

/*
 * Writes a hook's answer to out (at most room bytes) as the answer
 * section, each record owned by the qname (a compression pointer to the
 * question): 1 with *hit filled, as xd_rcache_get does, or -ENOSPC (the
 * caller truncates; hit->flags is set).
 */
int xd_resolver_given_get(const struct xd_resolver_given *g, uint8_t *out, size_t room,
			  struct xd_rcache_hit *hit);

/* A cache of size entries (a power of two), or NULL without memory. */
struct xd_rcache *xd_rcache_new(uint32_t size);
void xd_rcache_free(struct xd_rcache *c);

/* Caches the sections after the question of response resp (len bytes,
 * the question ending at question_end) for (name, qtype, qclass), ttl
 * seconds from now. */
void xd_rcache_put(struct xd_rcache *c, const uint8_t *name, size_t name_len, uint16_t qtype,
		   uint16_t qclass, const uint8_t *resp, size_t len, size_t question_end,
		   uint32_t now, uint32_t ttl);

/* The number of packed records (engine.h) in rec[0..len), each within the
 * buffer, of a data type and a TTL of at most 2^31-1 (RFC 2181 8); -EINVAL
 * otherwise, and for more than an answer section can count. */
int xd_resolver_records_count(const uint8_t *rec, size_t len);

/* Caches a hook's answer for the query's (name, type, class), when the
 * query parses and its records fit an entry; true when it did. */
bool xd_rcache_put_given(struct xd_rcache *c, const struct xd_resolver_given *g,
			 const uint8_t *query, size_t qlen, uint32_t ttl);

#endif
