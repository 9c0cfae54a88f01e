/*
 * worker_core.h - what every worker does with its queries, whatever brings
 * them (UDP sockets: udp.c; an AF_XDP queue: xdp_worker.c): the engine's
 * published objects read once a batch, each query answered (source ACL,
 * answering core, hand-off to a resolver hook, rate limiting) and its
 * response counted, the hooks' answers sent back, and the batch's counters
 * written.  A transport receives, says how an answer goes back, and sends.
 * Not seen by cffi.
 */
#ifndef XDPDNS_WORKER_CORE_H
#define XDPDNS_WORKER_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "answer/answer.h"
#include "engine.h"
#include "answer/response_counts.h"
#include "answer/rrl.h"

struct xd_acl;
struct xd_dnstap_ring;
struct xd_resolver_endpoint;

/* One worker's side of the core. */
struct xd_worker_core {
	struct xd_engine *engine;
	int reader; /* its epoch slot in the engine */
	struct xd_worker_stats *stats; /* written by this worker only */
	struct xd_response_counts counts; /* this batch's responses */
	struct xd_rrl_state rrl; /* its view of the buckets, events */
	struct xd_resolver_endpoint *ep; /* deferred queries; NULL: no
						 * resolver */
	struct xd_dnstap_ring *tap; /* NULL: no dnstap */
	unsigned answer_flags; /* XD_ANSWER_TCP for TCP */
};

/* What a batch reads once, and counts until its end. */
struct xd_core_batch {
	const struct xd_image *img; /* NULL: none published, none answered */
	const struct xd_acl *acl; /* NULL: the transport judged the source */
	const struct xd_rrl *rrl; /* NULL: no rate limiting */
	struct xd_answer_ctx ctx; /* cookie secrets, time; the client */
	struct xd_rrl_counts rrl_counts;
	uint64_t now_ns; /* the resolver's clock; 0: not read */
	uint64_t deferred; /* handed to a resolver hook */
	uint64_t resolver_full; /* SERVFAIL: the worker holds enough */
	uint64_t denied; /* from sources the ACL denies */
};

/* How a deferred query's answer goes back: make writes the transport's
 * route (at most XD_RESOLVER_ROUTE_MAX bytes) and the client's port, and
 * returns the route's length, or 0 when it has none; called only for a
 * query that is deferred. */
struct xd_core_way_back {
	size_t (*make)(const void *arg, void *route, uint16_t *port);
	const void *arg;
};

static inline void xd_count(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

/* Enters the engine and reads what the batch answers with; with_acl: the
 * worker judges sources by the source ACL. */
void xd_core_begin(struct xd_worker_core *w, struct xd_core_batch *b, bool with_acl);

/*
 * The response to one query into resp (cap bytes): its length, or 0 when
 * nothing is sent now (a denied source the ACL drops, rate limiting, or a
 * query handed to a resolver hook: b->deferred grows then).  With a
 * source, the ACL judges it (REFUSED, or nothing) and it is the client;
 * without, the transport set b->ctx.client.
 */
int xd_core_answer(struct xd_worker_core *w, struct xd_core_batch *b, const struct sockaddr *source,
		   const uint8_t *query, size_t qlen, uint8_t *resp, size_t cap,
		   const struct xd_core_way_back *back);

/* Leaves the engine and counts the batch: `received` queries of which
 * `sent` answers left; the rest were dropped, but for the deferred. */
void xd_core_end(struct xd_worker_core *w, struct xd_core_batch *b, uint64_t received,
		 uint64_t sent);

/* The transport's side of sending the resolver hooks' answers. */
struct xd_core_sender {
	/* Whether another answer can be taken now (else the rest wait). */
	bool (*room)(void *arg);
	/* A buffer for the answer that goes back by route; *cap its size. */
	uint8_t *(*reserve)(void *arg, const void *route, size_t *cap);
	/* The answer made in that buffer (len bytes), or len 0: none. */
	void (*put)(void *arg, const void *route, uint8_t *buf, int len);
	/* Sends what was put since the last flush; how many left. */
	uint64_t (*flush)(void *arg);
	void *arg;
};

/* Sends what the resolver has for this worker, at most max answers: the
 * hooks' answers, and SERVFAIL for the queries whose time is up. */
void xd_core_serve_resolver(struct xd_worker_core *w, const struct xd_core_sender *s, int max);

/* Reads a worker's counters from another thread. */
void xd_worker_stats_read(const struct xd_worker_stats *s, struct xd_worker_stats *out);

/* How long an idle worker may sleep: until its oldest deferred query's
 * deadline (rounded up to a millisecond), 0 when answers already wait,
 * `longest` (-1: for ever) when neither. */
int xd_core_sleep_ms(struct xd_worker_core *w, int longest);

#endif
