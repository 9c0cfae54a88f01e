/*
 * resolver.h - the way out of the fast path for names a plugin claims
 * (the resolver hook, xdpdns/resolver.py, engine.h): each worker's
 * deferred queries with their rings to the hooks' threads and back, and
 * the cache of the hooks' answers that every worker reads before
 * deferring.  Not seen by cffi.
 */
#ifndef XDPDNS_RESOLVER_H
#define XDPDNS_RESOLVER_H

#include "answer/rcache.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine.h"

/* The engine's resolver (resolver.c), NULL until xd_engine_resolver_start. */
struct xd_resolver;

/* What a worker keeps of how to answer a deferred query (its socket and
 * addresses, or its frame's headers): opaque to the resolver. */
#define XD_RESOLVER_ROUTE_MAX 128

/* A deferred query, kept by its worker until answered or expired. */
struct xd_resolver_slot {
	_Atomic uint32_t seq; /* the handle of the query it holds */
	bool pending; /* the worker's own: not answered yet */
	uint8_t hook;
	uint16_t len;
	uint64_t deadline; /* CLOCK_MONOTONIC, ns */
	struct xd_client client;
	uint16_t port;
	uint16_t route_len;
	uint8_t route[XD_RESOLVER_ROUTE_MAX];
	uint8_t query[XD_RESOLVER_QUERY_MAX];
};

/* The kind of an answer that does not fit a reply (more than
 * XD_RESOLVER_ANSWER_MAX bytes of records): TC from the worker's core. */
#define XD_RESOLVER_OVERSIZED 3

/* A hook's answer on its way back to the worker. */
struct xd_resolver_reply {
	uint32_t seq; /* the query's handle */
	uint16_t kind; /* XD_RESOLVER_RECORDS, _WIRE, _SERVFAIL,
					 * _OVERSIZED */
	uint16_t header; /* RECORDS: AA and RCODE */
	uint16_t count; /* RECORDS: how many */
	uint16_t len;
	/* An answer for a stream transport (TCP) longer than data holds, in
	 * memory of its own: freed once the worker is past it. */
	uint8_t *big;
	uint8_t data[XD_RESOLVER_ANSWER_MAX];
};

/* One worker's deferred queries (resolver.c). */
struct xd_resolver_endpoint;

/* The endpoint of the worker with reader slot `index` (engine_internal.h),
 * made the first time and kept until the resolver is freed (a hook's
 * thread may still read it after the worker stopped): queries a previous
 * worker left there are forgotten.  stream: the worker's transport is TCP,
 * whose answers may be up to 65535 bytes. */
int xd_resolver_attach(struct xd_resolver *r, int index, bool stream,
		       struct xd_resolver_endpoint **out, struct xd_error *err);
/* Readable when the worker has answers to send (after xd_resolver_sleep). */
int xd_resolver_endpoint_fd(const struct xd_resolver_endpoint *ep);

/* Keeps a query for hook `hook` with route[0..route_len): 0, or -ENOBUFS
 * when the worker holds as many as it may (or the query or route is too
 * long, or no such hook runs): the caller answers SERVFAIL.  The hook is
 * woken by xd_resolver_defer_done, once a batch. */
int xd_resolver_defer(struct xd_resolver_endpoint *ep, unsigned hook,
		      const struct xd_client *client, uint16_t port, const uint8_t *query,
		      size_t len, const void *route, size_t route_len, uint64_t now_ns);
void xd_resolver_defer_done(struct xd_resolver_endpoint *ep);

/* A deferred query to answer now: its hook's reply, or (reply NULL) none
 * in time: SERVFAIL.  Both stay valid until the worker's next
 * xd_resolver_next or xd_resolver_defer. */
struct xd_resolver_work {
	const struct xd_resolver_slot *slot;
	const struct xd_resolver_reply *reply;
};
/* False when xd_resolver_next has nothing for certain: no answer waits
 * and no query is held. */
bool xd_resolver_busy(const struct xd_resolver_endpoint *ep);
/* The next query to answer, if any (true). */
bool xd_resolver_next(struct xd_resolver_endpoint *ep, uint64_t now_ns, struct xd_resolver_work *w);
/* Nanoseconds until the oldest deferred query expires (0: now), -1 when
 * none is held. */
int64_t xd_resolver_next_deadline(const struct xd_resolver_endpoint *ep, uint64_t now_ns);
/* Before the worker sleeps: false when answers already wait (do not
 * sleep), else true, and the next flush writes the endpoint's fd. */
bool xd_resolver_sleep(struct xd_resolver_endpoint *ep);
/* After it woke (or did not sleep after all). */
void xd_resolver_awake(struct xd_resolver_endpoint *ep);

/* The response to w into resp (at most cap bytes): the reply's records
 * through the answering core (with ctx's cookies and time; the client is
 * set here), its wire form as it is, or SERVFAIL from the core.  Returns
 * the length, 0 for nothing to send. */
struct xd_answer_ctx;
struct xd_image;
int xd_resolver_respond(const struct xd_image *img, struct xd_answer_ctx *ctx,
			const struct xd_resolver_work *w, uint8_t *resp, size_t cap,
			unsigned flags);

/* CLOCK_MONOTONIC in nanoseconds, the clock of the deadlines. */
uint64_t xd_resolver_clock(void);

void xd_resolver_free(struct xd_resolver *r);
/* NULL for no resolver or no cache: the cache lives as long as the engine,
 * so readers need no epoch for it. */
const struct xd_rcache *xd_resolver_cache(const struct xd_resolver *r);

#endif
