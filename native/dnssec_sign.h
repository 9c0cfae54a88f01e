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
int xd_sign(const struct xd_sign_key *k, const uint8_t *data, size_t len, uint8_t *sig,
	    size_t cap);

#endif
