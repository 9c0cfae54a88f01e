/*
 * answer.h - the answering core's entry for callers that know who asked:
 * the socket-mode and AF_XDP workers and xd_engine_answer_client.  What an
 * answer depends on besides the image and the query is the client and the
 * time (DNS cookies, RFC 7873 and RFC 9018).  Not seen by cffi.
 */
#ifndef XDPDNS_ANSWER_H
#define XDPDNS_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "wire/query.h"
#include "wire/tsig.h"
#include "wire/wire.h"

struct xd_cookies;
struct xd_rcache;
struct xd_zone_journal;
struct xd_resolver_given;

/* What a response is, as rate limiting counts it (native/answer/rrl.c): its kind
 * and the name its bucket is keyed on.  The answering core knows, so the
 * workers' limiter need not read the response back. */
struct xd_response_kind {
	int kind; /* XD_RRL_*; negative: unknown, read the
					 * response */
	uint16_t qtype; /* answers only */
	uint8_t name_len; /* 0: none (errors) */
	uint8_t name[XD_NAME_MAX]; /* lower-case wire form: the qname; for
					 * NODATA and NXDOMAIN the zone, for
					 * referrals the delegation */
};

struct xd_answer_ctx {
	/* Set once per batch: */
	const struct xd_cookies *cookies; /* the engine's secrets; NULL: off */
	bool want_kind; /* fill kind: rate limiting is on */
	uint32_t now; /* UNIX time in seconds */
	uint32_t rrl_now; /* xd_rrl_clock(), when want_kind */
	const struct xd_rcache *cache; /* the resolver's answers; NULL:
						 * none (needs now) */
	uint16_t keepalive; /* a TCP worker's idle timeout
						 * in 100 ms (RFC 7828); 0:
						 * not sent */
	/* Set per query: */
	struct xd_client client; /* unknown family: no cookies */
	const struct xd_resolver_given *given; /* a resolver hook's answer
						 * for a claimed name, used
						 * in place of the cache;
						 * NULL on the fast path */
	/* What the query showed, for the caller (rate limiting): */
	int cookie; /* XD_COOKIE_* */
	unsigned hook; /* -EAGAIN: the resolver hook
						 * that answers it */
	struct xd_response_kind kind; /* what the response is */
};

/* An outgoing transfer (AXFR, or IXFR from the image's journal or as the
 * whole zone: axfr.c), made
 * one message at a time from the image it began with, which it holds:
 * a reload meanwhile changes nothing it sends.  Not moved once begun (q
 * points into query). */
#define XD_AXFR_QUERY_MAX 512
/* Room for any one message with its 2-byte length prefix. */
#define XD_AXFR_MESSAGE_MAX (2 + 65535)
struct xd_axfr {
	const struct xd_image *img;
	uint8_t query[XD_AXFR_QUERY_MAX];
	struct xd_query q;
	uint32_t zone;
	uint8_t phase;
	bool soa_only; /* IXFR from a client that is current */
	size_t node; /* the body: the node it is at */
	uint16_t rrset; /* and which of its RRsets */
	/* IXFR from the journal: its changesets from `set` on, instead of
	 * the body; NULL: none. */
	const struct xd_zone_journal *journal;
	uint32_t set; /* the changeset it is at */
	size_t at; /* and where in its records */
	bool signing; /* the request was signed: so is every message */
	struct xd_tsig tsig; /* the MAC each message follows */
};

/* Begins the transfer a query asks for: 0, or as xd_engine_axfr (-EINVAL,
 * -ENOENT, -EPERM), or -EACCES for a TSIG that does not verify (the
 * answering core says why to the client).  img must stay valid during the call (inside the
 * caller's epoch); the transfer holds it from then on. */
int xd_axfr_begin(struct xd_axfr *t, const struct xd_image *img, const struct xd_client *client,
		  const uint8_t *query, size_t qlen);
/* Writes the next message (its length prefix first) into out: 1 when
 * more follow, 0 for the last, -EMSGSIZE for an RRset too large for a
 * message, -ENOSPC when cap (XD_AXFR_MESSAGE_MAX always suffices) was
 * too small; *len the bytes it took. */
int xd_axfr_next(struct xd_axfr *t, uint8_t *out, size_t cap, size_t *len);
/* REFUSED for the transfer's query, signed when the query was (a server
 * busy with max_transfers): its length, or 0 when it does not fit. */
int xd_axfr_refuse(struct xd_axfr *t, uint8_t *resp, size_t cap);
/* Lets go of the image. */
void xd_axfr_end(struct xd_axfr *t);

/* The whole transfer into out: as xd_engine_axfr, from img. */
int xd_axfr(const struct xd_image *img, const struct xd_client *client, const uint8_t *query,
	    size_t qlen, uint8_t *out, size_t cap, size_t *len);

/* The SOA serial of the zone whose origin is name (lower-case wire form):
 * 0, -ENOENT when no zone has that origin. */
int xd_zone_serial(const struct xd_image *img, const uint8_t *name, size_t len, uint32_t *serial);

/* The zone that answers a query of qtype for name (lower-case wire form):
 * its index, or -1 when none does. */
int xd_answer_zone(const struct xd_image *img, const uint8_t *name, size_t len, uint16_t qtype);

/* xd_answer with a context; ctx NULL is xd_answer itself.  With
 * XD_ANSWER_DEFER, -EAGAIN for a query the resolver hook must answer. */
int xd_answer_ctx(const struct xd_image *img, struct xd_answer_ctx *ctx, const uint8_t *query,
		  size_t qlen, uint8_t *resp, size_t cap, unsigned flags);

#endif
