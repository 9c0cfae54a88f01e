/*
 * sign_reuse.h - the RRSIGs of the image being served that a new signing
 * of the same zone keeps (sign_reuse.c); used by zone_sign.c.
 */
#ifndef XDPDNS_SIGN_REUSE_H
#define XDPDNS_SIGN_REUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "engine.h"
#include "wire/wire.h"

struct xd_sign_reuse {
	const struct xd_image *img; /* NULL: nothing to keep */
	uint16_t zone; /* the zone's index in img */
	uint8_t origin[XD_NAME_MAX]; /* lower-case wire */
	size_t origin_len;
	bool *known; /* per key: img published its DNSKEY */
	uint32_t inception; /* keep none made after this */
	uint32_t keep_after; /* keep none that expires by then */
};

/* Prepares r for zone `origin` of img (NULL, or an image without that
 * zone: nothing is kept).  Only -ENOMEM fails; close r either way. */
int xd_sign_reuse_open(struct xd_sign_reuse *r, const struct xd_image *img, const uint8_t *origin,
		       size_t origin_len, struct xd_sign_key *const *keys, int nkeys,
		       uint32_t inception, uint32_t keep_after);
void xd_sign_reuse_close(struct xd_sign_reuse *r);

/* The RDATA of an RRSIG of img that key number `key` (described by info)
 * made over `set` and that can be kept, into out: its length, 0 when there
 * is none, or -ENOMEM.  Safe from several threads at once. */
int xd_sign_reuse_find(const struct xd_sign_reuse *r, int key, const struct xd_sign_key_info *info,
		       const struct xd_sign_rrset *set, uint8_t *out, size_t cap);

#endif
