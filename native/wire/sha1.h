/*
 * sha1.h - SHA-1 (FIPS 180-4), for the NSEC3 hashes of query names (RFC
 * 5155 5): a few short inputs per negative answer.  Not for anything that
 * needs collision resistance.
 */
#ifndef XDPDNS_SHA1_H
#define XDPDNS_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define XD_SHA1_LEN 20

/* SHA-1 of a || b (b may be NULL with blen 0) into out. */
void xd_sha1(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
	     uint8_t out[XD_SHA1_LEN]);

#endif
