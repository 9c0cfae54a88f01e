/*
 * engine_internal.h - the engine object: what it publishes to the workers
 * (reclaimed by epoch.c), their transports and the writers beside them.
 * Not seen by cffi.
 */
#ifndef XDPDNS_ENGINE_INTERNAL_H
#define XDPDNS_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "engine.h"
#include "epoch.h"

struct xd_acl;
struct xd_cookies;
struct xd_dnstap;
struct xd_dnstap_ring;
struct xd_rrl;
struct xd_rrl_shared;
struct xd_rrl_state;
struct xd_answer_ctx;
struct xd_resolver;
struct xd_tcp;
struct xd_udp;
struct xd_xdp;

struct xd_engine {
	_Atomic(struct xd_image *) image;
	/* The source ACL (native/wire/prefixes.c), NULL when it denies nothing;
	 * published and reclaimed like the image. */
	_Atomic(struct xd_acl *) acl;
	/* The DNS cookie secrets (native/answer/cookie.c), NULL when cookies are
	 * off; published and reclaimed like the image. */
	_Atomic(struct xd_cookies *) cookies;
	/* Response rate limiting (native/answer/rrl.c), NULL when off; published
	 * and reclaimed like the image.  rrl_lock serializes the settings'
	 * generations and the one reader of the workers' event rings. */
	_Atomic(struct xd_rrl *) rrl;
	uint64_t rrl_generation;
	pthread_mutex_t rrl_lock;
	/* The buckets every worker counts in (rrl.h), published before the
	 * settings they are for: the XDP program's in XDP mode, else rrl_heap,
	 * which the engine owns (both written under rrl_lock). */
	_Atomic(const struct xd_rrl_shared *) rrl_buckets;
	struct xd_rrl_shared *rrl_heap;
	struct xd_epoch epoch; /* reclaims all of the above */
	pthread_mutex_t external_lock;
	/* Serializes ACL changes with XDP mode's start and stop, so that the
	 * program's maps always hold the ACL last set, and with the other
	 * writer of the program's config entry (xd_engine_xdp_add_address). */
	pthread_mutex_t acl_lock;
	/* The resolver hook's eventfd and cache (native/io/resolver.c), NULL
	 * when no plugin claims names; set before the workers start and
	 * freed after they stop. */
	struct xd_resolver *resolver;
	struct xd_udp *udp;
	struct xd_tcp *tcp;
	struct xd_xdp *xdp;
	/* The dnstap writer (native/io/dnstap.c), NULL when off; set before the
	 * workers start and freed after they stop. */
	struct xd_dnstap *dnstap;
	/* The first worker that stopped for an error, in words; set once
	 * (failed goes 0 -> 1 -> 2: claimed, then written). */
	_Atomic int failed;
	char failure[256];
};

/* A worker thread's last words before it stops for an error: the server
 * must stop too (xd_engine_failure), or the worker's share of the traffic
 * is lost without a sound. */
void xd_engine_worker_failed(struct xd_engine *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline const struct xd_image *xd_engine_enter(struct xd_engine *e, int slot)
{
	xd_epoch_enter(&e->epoch, slot);
	return atomic_load(&e->image);
}

/* Returns once every reader that could still hold a pointer published
 * before this call (image, ACL or cookie secrets) has left: the old object
 * can be freed. */
void xd_engine_synchronize(struct xd_engine *e);

/* The dnstap ring of reader slot `slot` (a worker's), NULL when dnstap is
 * off; taken once when the worker starts. */
struct xd_dnstap_ring *xd_engine_dnstap_ring(struct xd_engine *e, int slot);

/* xd_engine_answer_client with a resolver hook's answer for a claimed
 * name (resolver.c): the image is read under the external reader's slot. */
struct xd_resolver_given;
int xd_engine_answer_given(struct xd_engine *e, const struct xd_client *client,
			   const struct xd_resolver_given *given, const uint8_t *query, size_t qlen,
			   uint8_t *resp, size_t cap, unsigned flags);

static inline void xd_engine_leave(struct xd_engine *e, int slot)
{
	xd_epoch_leave(&e->epoch, slot);
}

/* What a worker reads once per batch, inside its epoch (so freed only
 * after it leaves): the cookie secrets, the resolver cache and, when any
 * policy needs it, the clock into ctx; one clock read a batch is enough,
 * as server cookies have one-second timestamps and rate limiting counts
 * whole seconds.  Returns the rate limiting to apply, with the worker's
 * table rrl_state brought in line with it; NULL: none (or no memory for
 * the table: answer unlimited). */
const struct xd_rrl *xd_engine_batch_begin(struct xd_engine *e, struct xd_rrl_state *rrl_state,
					   struct xd_answer_ctx *ctx);

#endif
