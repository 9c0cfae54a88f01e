/*
 * xdp_answers.h - the answer table of the XDP program (bpf/xdpdns_maps.h),
 * compiled from a zone image by asking the answering core itself: every
 * answer in it is one the core gave.  Not seen by cffi.
 */
#ifndef XDPDNS_XDP_ANSWERS_H
#define XDPDNS_XDP_ANSWERS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "xdpdns_maps.h"

struct xd_image;

/* The entries of one key size class, keys and values side by side (as
 * bpf_map_update_batch takes them). */
struct xd_answer_class {
	uint8_t *keys; /* key_size bytes each */
	struct xd_answer *values;
	size_t key_size; /* sizeof(struct xd_answer_key_N) */
	size_t n, cap;
};

enum {
	XD_ANSWER_CLASS_32,
	XD_ANSWER_CLASS_64,
	XD_ANSWER_CLASS_128,
	XD_ANSWER_CLASS_256,
	XD_ANSWER_CLASSES,
};

struct xd_answers {
	struct xd_answer_class classes[XD_ANSWER_CLASSES];
	struct xd_answer_page *pages;
	uint32_t npages, pages_cap;
	uint32_t fill; /* bytes used of the last page */
	struct xd_answers_dedup *dedup; /* while compiling */
	struct xd_answers_info info;
};

/* xd_answers_compile, xd_answers_free: engine.h. */

#endif
