/*
 * dnstap.h - sampled dnstap output of queries and responses (dnstap.proto's
 * AUTH_QUERY and AUTH_RESPONSE messages, in Frame Streams over a Unix
 * socket, as Knot, NSD, BIND and CoreDNS write them).
 *
 * A worker that samples a query copies it and its response into a ring of
 * its own (one producer, one consumer, no lock); one writer thread drains
 * the rings, encodes and writes.  Nothing on the answering path waits for
 * the collector: a full ring loses the event and counts it.
 */
#ifndef XDPDNS_DNSTAP_H
#define XDPDNS_DNSTAP_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

struct xd_dnstap;
struct xd_dnstap_ring;

/* One sampled query, as a worker saw it; borrowed for the call only. */
struct xd_dnstap_event {
	uint8_t family; /* AF_INET or AF_INET6 */
	bool tcp;
	uint16_t client_port; /* host byte order */
	uint16_t server_port;
	uint8_t client[16]; /* network order; IPv4 in the first 4 */
	uint8_t server[16]; /* all zero: not known */
	const uint8_t *query;
	uint16_t query_len;
	const uint8_t *response; /* NULL: nothing was sent */
	uint16_t response_len;
};

int xd_dnstap_new(const struct xd_dnstap_config *cfg, int nrings, struct xd_dnstap **out,
		  struct xd_error *err);
/* Stops the writer (what the rings hold is written first, if a collector
 * takes it within a second) and frees everything. */
void xd_dnstap_free(struct xd_dnstap *t);

/* Ring `index` (a reader slot of the engine), made on first use; NULL
 * without memory, which a worker takes as "no dnstap". */
struct xd_dnstap_ring *xd_dnstap_ring(struct xd_dnstap *t, int index);

/* Whether the producer of ring r logs this query: one in `sample`. */
static inline bool xd_dnstap_sampled(struct xd_dnstap_ring *r);

/* Copies ev into ring r; a full ring drops it (counted). */
void xd_dnstap_put(struct xd_dnstap_ring *r, const struct xd_dnstap_event *ev);

/* One query in how many is logged. */
uint32_t xd_dnstap_sample(const struct xd_dnstap *t);

void xd_dnstap_stats_get(struct xd_dnstap *t, struct xd_dnstap_stats *out);

/* ---- inline ---------------------------------------------------------------- */

/* The part of a ring its producer reads on every query. */
struct xd_dnstap_sampler {
	uint32_t countdown;
	uint32_t sample;
};

static inline bool xd_dnstap_sampled(struct xd_dnstap_ring *r)
{
	struct xd_dnstap_sampler *s = (struct xd_dnstap_sampler *)r;

	if (--s->countdown)
		return false;
	s->countdown = s->sample;
	return true;
}

#endif
