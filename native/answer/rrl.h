/*
 * rrl.h - response rate limiting inside the engine: the published settings
 * (immutable, swapped like the image) and the per-worker state that the
 * socket-mode and AF_XDP workers keep (their own table of buckets and a
 * ring of "newly limited" events).  Not seen by cffi.
 */
#ifndef XDPDNS_RRL_H
#define XDPDNS_RRL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "xdpdns_maps.h"

struct xd_acl;
struct xd_udp;

/* Events waiting for the log per worker: one a second per limited bucket
 * at most; when Python falls behind, the newest are lost, never memory. */
#define XD_RRL_RING 64

/* The published settings (xd_engine_set_rrl). */
struct xd_rrl {
	uint64_t generation; /* a worker's table belongs to one */
	uint64_t seed; /* keys the bucket hash: a flood cannot
					 * aim at one set */
	uint32_t rate[XD_RRL_CLASSES];
	uint32_t window;
	uint32_t slip;
	uint32_t table_size; /* a power of two, >= XD_RRL_WAYS */
	uint8_t ipv4_prefix;
	uint8_t ipv6_prefix;
	struct xd_acl *exempt; /* NULL: nobody; DENY marks an exempt source */
};

/* Single producer (the worker), single consumer (xd_engine_rrl_events). */
struct xd_rrl_ring {
	_Atomic uint32_t head;
	_Atomic uint32_t tail;
	struct xd_rrl_event events[XD_RRL_RING];
};

/* The buckets of one generation of the settings, one table that every
 * worker (UDP and AF_XDP) and the XDP program count in, so that a client
 * has one rate wherever its queries land: in the XDP program's mapped
 * array (xdp_rrl.c) or on the heap (xd_rrl_shared_new). */
struct xd_rrl_shared {
	uint64_t generation;
	struct xd_rrl_set *sets;
	uint32_t nsets;
};

/* What a worker keeps; zeroed at the start. */
struct xd_rrl_state {
	uint64_t generation; /* of the settings the table is for */
	struct xd_rrl_set *sets;
	uint32_t mask; /* sets - 1 */
	bool owned; /* the table was allocated here */
	/* The shared buckets in force, set before each sync (NULL: none, a
	 * table of its own), and those the table came from. */
	const struct xd_rrl_shared *shared;
	const struct xd_rrl_shared *from;
	struct xd_rrl_ring ring;
};

/* Shared buckets on the heap for rrl's settings; NULL without memory. */
struct xd_rrl_shared *xd_rrl_shared_new(const struct xd_rrl *rrl);
void xd_rrl_shared_free(struct xd_rrl_shared *sh);

/* The settings of cfg checked and compiled; err names a bad one. */
int xd_rrl_build(const struct xd_rrl_config *cfg, struct xd_rrl **out, struct xd_error *err);
void xd_rrl_free(struct xd_rrl *rrl);

/* The clock of the buckets: seconds of CLOCK_MONOTONIC_COARSE, the XDP
 * program's bpf_ktime_get_coarse_ns(). */
uint32_t xd_rrl_clock(void);
/* The hash of a response's name that its bucket key takes. */
uint64_t xd_rrl_name_hash(const uint8_t *name, size_t len);
/* rrl's settings as the XDP program reads them. */
void xd_rrl_settings_get(const struct xd_rrl *rrl, struct xd_rrl_settings *out);

/* Makes s's table fit rrl: s->shared when those buckets are rrl's, else
 * a new, empty one of its own (the only allocation, once per change).
 * 0, or -ENOMEM: no limiting. */
int xd_rrl_state_sync(struct xd_rrl_state *s, const struct xd_rrl *rrl);
void xd_rrl_state_release(struct xd_rrl_state *s);

/* XD_RRL_SEND/DROP/SLIP for response resp[0..len) to client at now. */
int xd_rrl_account(struct xd_rrl_state *s, const struct xd_rrl *rrl, const struct xd_client *client,
		   const uint8_t *resp, size_t len, int cookie, uint32_t now);

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
int xd_rrl_filter(struct xd_rrl_state *s, const struct xd_rrl *rrl, const struct xd_answer_ctx *ctx,
		  uint8_t *resp, int len, struct xd_rrl_counts *counts);

int xd_rrl_ring_take(struct xd_rrl_ring *r, struct xd_rrl_event *out, int max);
/* The events of the socket-mode workers (native/io/udp.c). */
int xd_udp_rrl_events(struct xd_udp *u, struct xd_rrl_event *out, int max);

#endif
