/*
 * dnssec_sign.h - signing keys and RRSIGs (dnssec_sign.c); the API the
 * builder and the tests use is in engine.h (struct xd_sign_key ...).
 */
#ifndef XDPDNS_DNSSEC_SIGN_H
#define XDPDNS_DNSSEC_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* The signature of data (RFC 6605's r || s for ECDSA, RFC 8080's for
 * Ed25519) into sig; its length, or a negative errno. */
int xd_sign(const struct xd_sign_key *k, const uint8_t *data, size_t len, uint8_t *sig, size_t cap);

/* An RRset's RDATA in canonical form and order (RFC 4034 6.2, 6.3), each
 * distinct RDATA once: what its signature covers, besides owner and TTL. */
struct xd_rdata_view {
	const uint8_t *rdata;
	uint16_t len;
};

struct xd_rdata_set {
	struct xd_rdata_view *rr; /* into buf */
	uint8_t *buf;
	int count;
};

/* -EINVAL for malformed RDATA, -ENOMEM; out is empty then. */
int xd_sign_canonical_set(uint16_t type, const uint8_t *const *rdatas, const uint16_t *rdlens,
			  int count, struct xd_rdata_set *out);
bool xd_rdata_set_equal(const struct xd_rdata_set *a, const struct xd_rdata_set *b);
void xd_rdata_set_free(struct xd_rdata_set *s);

/* An RRSIG's labels field for a lower-case owner (RFC 4034 3.1.3). */
int xd_sign_labels(const uint8_t *lower_owner);

#endif
