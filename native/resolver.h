/*
 * resolver.h - the way out of the fast path for names a plugin claims
 * (the resolver hook, xdpdns/resolver.py): a bounded ring per socket-mode
 * worker that carries deferred queries to one Python thread, and the cache
 * of the hook's answers that every worker reads before deferring.  Not
 * seen by cffi.
 */
#ifndef XDPDNS_RESOLVER_H
#define XDPDNS_RESOLVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine.h"

/*
 * One worker's ring: single producer (the worker), single consumer (the
 * resolver thread through xd_engine_resolver_take).  The producer never
 * waits: a full ring is the caller's cue to answer SERVFAIL.  head and tail
 * live on their own cache lines so that the two sides do not share one.
 */
struct xd_resolver_ring {
	_Atomic uint32_t head __attribute__((aligned(64)));	/* producer */
	_Atomic uint32_t tail __attribute__((aligned(64)));	/* consumer */
	uint32_t mask;
	struct xd_resolver_query slots[];
};

struct xd_resolver_ring *xd_resolver_ring_new(uint32_t size);
void xd_resolver_ring_free(struct xd_resolver_ring *ring);
/* Copies one query in; false when the ring is full. */
bool xd_resolver_ring_put(struct xd_resolver_ring *ring, const struct xd_resolver_query *q);
int xd_resolver_ring_take(struct xd_resolver_ring *ring, struct xd_resolver_query *out,
			  int max);

struct xd_rcache;

/* What a cached answer puts into a response after its question. */
struct xd_rcache_hit {
	uint16_t flags;		/* the hook's header flags and RCODE */
	uint16_t count[3];	/* answer, authority, additional */
	size_t len;		/* bytes written */
};

/*
 * Copies the cached sections for (name, qtype, qclass) to out (at most room
 * bytes): 1 on a hit, 0 on a miss (absent, expired, or being rewritten this
 * instant), -ENOSPC when they do not fit.  name is lower-case wire form.
 * Readers take no lock: each entry is a seqlock that the one writer (the
 * resolver thread) bumps around every rewrite.
 */
int xd_rcache_get(const struct xd_rcache *c, const uint8_t *name, size_t name_len,
		  uint16_t qtype, uint16_t qclass, uint32_t now, uint8_t *out,
		  size_t room, struct xd_rcache_hit *hit);

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
};

/*
 * Writes a hook's answer to out (at most room bytes) as the answer
 * section, each record owned by the qname (a compression pointer to the
 * question): 1 with *hit filled, as xd_rcache_get does, or -ENOSPC (the
 * caller truncates; hit->flags is set).
 */
int xd_resolver_given_get(const struct xd_resolver_given *g, uint8_t *out, size_t room,
			  struct xd_rcache_hit *hit);

/* The engine's resolver (resolver.c), NULL until xd_engine_resolver_start. */
struct xd_resolver;

void xd_resolver_free(struct xd_resolver *r);
uint32_t xd_resolver_ring_size(const struct xd_resolver *r);
/* NULL for no resolver or no cache: the cache lives as long as the engine,
 * so readers need no epoch for it. */
const struct xd_rcache *xd_resolver_cache(const struct xd_resolver *r);
/* Wakes the resolver thread. */
void xd_resolver_notify(const struct xd_resolver *r);

#endif
