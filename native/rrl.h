/*
 * rrl.h - response rate limiting inside the engine: the published settings
 * (immutable, swapped like the image) and the per-worker state that the
 * socket-mode and AF_XDP workers keep (their own table of buckets and a
 * ring of "newly limited" events).  Not seen by cffi.
 */
#ifndef XDPDNS_RRL_H
#define XDPDNS_RRL_H

#include <stdatomic.h>
#include <stdint.h>

#include "engine.h"

struct xd_acl;
struct xd_udp;

/* Four ways per set: a bucket survives three newer neighbours in its set,
 * and a lookup reads two cache lines (four 32-byte entries). */
#define XD_RRL_WAYS 4
/* Events waiting for the log per worker: one a second per limited bucket
 * at most; when Python falls behind, the newest are lost, never memory. */
#define XD_RRL_RING 64

/* The published settings (xd_engine_set_rrl). */
struct xd_rrl {
	uint64_t generation;		/* a worker's table belongs to one */
	uint64_t seed;			/* keys the bucket hash: a flood cannot
					 * aim at one set */
	uint32_t rate[XD_RRL_CLASSES];
	uint32_t window;
	uint32_t slip;
	uint32_t table_size;		/* a power of two, >= XD_RRL_WAYS */
	uint8_t ipv4_prefix;
	uint8_t ipv6_prefix;
	struct xd_acl *exempt;		/* NULL: nobody; DENY marks an exempt source */
};

/* One bucket: BIND's credit scheme.  balance is at most one second of
 * `rate` and at least -window * rate, so that a client must stay under
 * the rate for up to a window before it is answered again. */
struct xd_rrl_entry {
	uint64_t key;			/* 0: free */
	int64_t balance;
	uint32_t last;			/* last response (credit, and the LRU) */
	uint32_t logged;		/* when its event was last pushed */
	uint32_t slips;			/* limited responses, for slip */
	uint32_t has_logged;
};

/* Single producer (the worker), single consumer (xd_engine_rrl_events). */
struct xd_rrl_ring {
	_Atomic uint32_t head;
	_Atomic uint32_t tail;
	struct xd_rrl_event events[XD_RRL_RING];
};

/* What a worker keeps; zeroed at the start. */
struct xd_rrl_state {
	uint64_t generation;		/* of the settings the table is for */
	struct xd_rrl_entry *table;
	uint32_t mask;			/* sets - 1 */
	struct xd_rrl_ring ring;
};

void xd_rrl_free(struct xd_rrl *rrl);

/* Makes s's table fit rrl (a new, empty one when the settings changed:
 * the only allocation, once per change).  0, or -ENOMEM: no limiting. */
int xd_rrl_state_sync(struct xd_rrl_state *s, const struct xd_rrl *rrl);
void xd_rrl_state_release(struct xd_rrl_state *s);

/* XD_RRL_SEND/DROP/SLIP for response resp[0..len) to client at now. */
int xd_rrl_account(struct xd_rrl_state *s, const struct xd_rrl *rrl,
		   const struct xd_client *client, const uint8_t *resp, size_t len,
		   int cookie, uint32_t now);

/* Counters of a batch's limited responses. */
struct xd_rrl_counts {
	uint64_t limited;
	uint64_t slipped;
};

/* What a worker sends of response resp[0..len) to the query of ctx (its
 * client, cookie result, time and the kind of response the answering core
 * noted): len, 0 when it is dropped, or the length of its truncated form
 * (rewritten in place). */
struct xd_answer_ctx;
int xd_rrl_filter(struct xd_rrl_state *s, const struct xd_rrl *rrl,
		  const struct xd_answer_ctx *ctx, uint8_t *resp, int len,
		  struct xd_rrl_counts *counts);

int xd_rrl_ring_take(struct xd_rrl_ring *r, struct xd_rrl_event *out, int max);
/* The events of the socket-mode workers (native/udp.c). */
int xd_udp_rrl_events(struct xd_udp *u, struct xd_rrl_event *out, int max);

#endif
