/*
 * xdp_rrl.h - rate limiting inside the XDP program: the maps of one
 * generation of the settings (bpf/xdpdns_maps.h), whose buckets the
 * AF_XDP workers map and count in too, and the program's notes of newly
 * limited buckets.  Internal to the engine; not seen by cffi.
 */
#ifndef XDPDNS_XDP_RRL_H
#define XDPDNS_XDP_RRL_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "answer/rrl.h"

struct xd_prog;

enum {
	XD_XDP_RRL_SETTINGS,
	XD_XDP_RRL_BUCKETS,
	XD_XDP_RRL_EXEMPT_V4,
	XD_XDP_RRL_EXEMPT_V6,
	XD_XDP_RRL_MAPS,
};

/* The maps of one generation of the settings. */
struct xd_xdp_rrl {
	struct xd_rrl_shared shared; /* the buckets, mapped: the workers' */
	int fds[XD_XDP_RRL_MAPS];
	size_t mapped; /* bytes of shared.sets */
};

/* Whether the program has the rate limiting maps. */
bool xd_xdp_rrl_supported(struct xd_prog *p);
/* New maps for rrl's settings, the buckets mapped here; the program still
 * uses the old ones.  On failure nothing is left. */
int xd_xdp_rrl_build(struct xd_prog *p, const struct xd_rrl *rrl, struct xd_xdp_rrl **out,
		     struct xd_error *err);
/* Puts built maps into the program's slots, the settings last: from then
 * on its answers are counted in them. */
int xd_xdp_rrl_put(struct xd_prog *p, const struct xd_xdp_rrl *r, struct xd_error *err);
/* Empties the slots, the settings first: the program limits nothing. */
void xd_xdp_rrl_clear(struct xd_prog *p);
/* Unmaps and closes (accepts NULL); the program may still hold the maps,
 * which the kernel frees after it. */
void xd_xdp_rrl_free(struct xd_xdp_rrl *r);

/* The program's notes of buckets it began to limit. */
struct xd_xdp_rrl_notes;
int xd_xdp_rrl_notes_open(struct xd_prog *p, struct xd_xdp_rrl_notes **out);
void xd_xdp_rrl_notes_close(struct xd_xdp_rrl_notes *n);
/* Takes up to max notes as events, their time moved to UNIX seconds;
 * what does not fit is lost, as a worker's ring loses it. */
int xd_xdp_rrl_notes_take(struct xd_xdp_rrl_notes *n, struct xd_rrl_event *out, int max);

#endif
