/*
 * worker_core.c - the answering of a batch of queries that every worker
 * shares (worker_core.h); its transports are udp.c and xdp_worker.c.
 */
#include <errno.h>
#include <stdatomic.h>

#include "wire/prefixes.h"
#include "wire/client.h"
#include "engine_internal.h"
#include "io/resolver.h"
#include "wire/wire.h"
#include "io/worker_core.h"

void xd_core_begin(struct xd_worker_core *w, struct xd_core_batch *b, bool with_acl)
{
	*b = (struct xd_core_batch){ 0 };
	b->img = xd_engine_enter(w->engine, w->reader);
	/* Under the same epoch as the image: freed only once we leave. */
	b->acl = with_acl ? atomic_load(&w->engine->acl) : NULL;
	b->rrl = xd_engine_batch_begin(w->engine, &w->rrl, &b->ctx);
	/* Rate limiting is for datagrams: a TCP client proved its address,
	 * and its answers cannot be reflected at anyone else. */
	if (w->answer_flags & XD_ANSWER_TCP)
		b->rrl = NULL;
}

/* The response that leaves: rate limiting may drop it or send it
 * truncated; what is left is counted. */
static int finish(struct xd_worker_core *w, struct xd_core_batch *b, uint8_t *resp, int len,
		  struct xd_rrl_counts *rrl_counts)
{
	if (len > 0 && b->rrl)
		len = xd_rrl_filter(&w->rrl, b->rrl, &b->ctx, resp, len, rrl_counts);
	if (len <= 0)
		return 0;
	if (xd_get16(resp + 2) & XD_FLAG_TC)
		xd_count(&w->stats->truncated, 1);
	xd_response_counts_add(&w->counts, resp, (size_t)len);
	return len;
}

/* Hands the query to the resolver hook the core named in b->ctx; false
 * when the worker cannot hold it or the transport has no way back. */
static bool defer(struct xd_worker_core *w, struct xd_core_batch *b, const uint8_t *query,
		  size_t qlen, const struct xd_core_way_back *back)
{
	uint8_t route[XD_RESOLVER_ROUTE_MAX] __attribute__((aligned(8)));
	uint16_t port = 0;
	size_t len = back ? back->make(back->arg, route, &port) : 0;

	if (!len)
		return false;
	if (!b->now_ns)
		b->now_ns = xd_resolver_clock();
	return xd_resolver_defer(w->ep, b->ctx.hook, &b->ctx.client, port, query, qlen, route, len,
				 b->now_ns) == 0;
}

int xd_core_answer(struct xd_worker_core *w, struct xd_core_batch *b, const struct sockaddr *source,
		   const uint8_t *query, size_t qlen, uint8_t *resp, size_t cap,
		   const struct xd_core_way_back *back)
{
	int len;

	if (!b->img)
		return 0;
	if (source) {
		int verdict = b->acl ? xd_acl_verdict(b->acl, source) : XD_VERDICT_ANSWER;

		if (verdict != XD_VERDICT_ANSWER) {
			b->denied++;
			return verdict == XD_VERDICT_DROP ?
				       0 :
				       xd_answer_refused(query, qlen, resp, cap);
		}
		xd_client_from_sockaddr(&b->ctx.client, source);
	}
	len = xd_answer_ctx(b->img, &b->ctx, query, qlen, resp, cap,
			    w->answer_flags | (w->ep ? XD_ANSWER_DEFER : 0));
	if (len == -EAGAIN) {
		if (defer(w, b, query, qlen, back)) {
			b->deferred++;
			return 0; /* the resolver's: answered later */
		}
		/* The fast path never waits: SERVFAIL at once. */
		b->resolver_full++;
		len = xd_answer_ctx(b->img, &b->ctx, query, qlen, resp, cap, w->answer_flags);
	}
	return finish(w, b, resp, len, &b->rrl_counts);
}

/* The counters every batch adds to, but for received, sent and dropped. */
static void count_tail(struct xd_worker_core *w, const struct xd_core_batch *b)
{
	struct xd_worker_stats *s = w->stats;

	xd_response_counts_flush(&w->counts, s->rcode, s->qtype);
	if (b->denied)
		xd_count(&s->denied, b->denied);
	if (b->rrl_counts.limited) {
		xd_count(&s->limited, b->rrl_counts.limited);
		xd_count(&s->slipped, b->rrl_counts.slipped);
	}
	if (b->deferred) {
		xd_count(&s->deferred, b->deferred);
		xd_resolver_defer_done(w->ep); /* wakes the hooks, once a batch */
	}
	if (b->resolver_full)
		xd_count(&s->resolver_full, b->resolver_full);
}

void xd_core_end(struct xd_worker_core *w, struct xd_core_batch *b, uint64_t received,
		 uint64_t sent)
{
	xd_engine_leave(w->engine, w->reader);
	count_tail(w, b);
	xd_count(&w->stats->received, received);
	xd_count(&w->stats->answered, sent);
	xd_count(&w->stats->dropped, received - sent - b->deferred);
	xd_count(&w->stats->batches, 1);
}

void xd_core_serve_resolver(struct xd_worker_core *w, const struct xd_core_sender *s, int max)
{
	struct xd_core_batch b;
	struct xd_resolver_work work;
	uint64_t now = xd_resolver_clock(), put = 0, lost = 0, expired = 0, sent;

	xd_core_begin(w, &b, false);
	for (int done = 0; done < max && s->room(s->arg) && xd_resolver_next(w->ep, now, &work);
	     done++) {
		const void *route = work.slot->route;
		size_t cap;
		uint8_t *buf = s->reserve(s->arg, route, &cap);
		int len;

		expired += !work.reply;
		len = b.img ? xd_resolver_respond(b.img, &b.ctx, &work, buf, cap, w->answer_flags) :
			      0;
		len = finish(w, &b, buf, len, &b.rrl_counts);
		s->put(s->arg, route, buf, len);
		if (len > 0)
			put++;
		else
			lost++;
	}
	xd_engine_leave(w->engine, w->reader);
	sent = s->flush(s->arg);
	count_tail(w, &b);
	if (sent)
		xd_count(&w->stats->answered, sent);
	if (lost + put - sent)
		xd_count(&w->stats->dropped, lost + put - sent);
	if (expired)
		xd_count(&w->stats->resolver_expired, expired);
}

int xd_core_sleep_ms(struct xd_worker_core *w, int longest)
{
	int64_t ns;

	if (!w->ep)
		return longest;
	ns = xd_resolver_next_deadline(w->ep, xd_resolver_clock());
	if (!xd_resolver_sleep(w->ep))
		return 0;
	if (ns >= 0 && (longest < 0 || ns / 1000000 < longest))
		return (int)((ns + 999999) / 1000000);
	return longest;
}

void xd_worker_stats_read(const struct xd_worker_stats *s, struct xd_worker_stats *out)
{
	const uint64_t *src = (const uint64_t *)s;
	uint64_t *dst = (uint64_t *)out;

	_Static_assert(sizeof(*s) % sizeof(uint64_t) == 0, "counters only");
	for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
