/*
 * tsig.h - transaction signatures (RFC 8945) as a server gives them: a
 * request's TSIG record read and checked against a shared key, and the
 * response, or each message of a transfer, signed in turn.  The keys
 * come from the image (image.h); the HMACs from the system's libcrypto.
 */
#ifndef XDPDNS_TSIG_H
#define XDPDNS_TSIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/wire.h"

/* The HMAC algorithms (RFC 8945 6), as the image stores them.  No MD5:
 * RFC 8945 6 lets it go, and so do current BIND builds in FIPS mode. */
enum {
	XD_TSIG_HMAC_SHA1 = 1,
	XD_TSIG_HMAC_SHA224,
	XD_TSIG_HMAC_SHA256,
	XD_TSIG_HMAC_SHA384,
	XD_TSIG_HMAC_SHA512,
	XD_TSIG_ALGS,
};

/* TSIG errors (RFC 8945 3, in the record's Error field). */
enum {
	XD_TSIG_BADSIG = 16,
	XD_TSIG_BADKEY = 17,
	XD_TSIG_BADTIME = 18,
	XD_TSIG_BADTRUNC = 22,
};

#define XD_TSIG_MAC_MAX 64 /* HMAC-SHA512 */
#define XD_TSIG_SECRET_MAX 512 /* bytes; longer keys only cost memory */
#define XD_TSIG_FUDGE 300 /* seconds, RFC 8945 10 */

/* A shared key: name lower-case wire form. */
struct xd_tsig_key {
	const uint8_t *name;
	uint8_t name_len;
	uint8_t alg; /* XD_TSIG_HMAC_* */
	const uint8_t *secret;
	uint16_t secret_len;
};

/* The algorithm whose name (lower-case wire form) is given: XD_TSIG_*, or
 * 0 for one this server does not know. */
int xd_tsig_alg_from_name(const uint8_t *name, size_t len);
/*
 * What signing a response needs from its request, and from one message
 * of a transfer to the next (RFC 8945 5.3.1).  Filled by xd_tsig_read
 * and xd_tsig_verify; the key's bytes must outlive it (the image's).
 */
struct xd_tsig {
	size_t start; /* offset of the request's TSIG record */
	uint16_t error; /* 0, or XD_TSIG_* for the response */
	struct xd_tsig_key key; /* verified; name and alg also for BADKEY */
	uint8_t name[XD_NAME_MAX]; /* the request's key name, lower-case */
	uint8_t name_len;
	uint8_t alg_name[XD_NAME_MAX]; /* and algorithm, as echoed */
	uint8_t alg_name_len;
	uint64_t time_signed;
	uint16_t fudge;
	uint16_t original_id;
	uint16_t request_error; /* what the request's MAC covers besides */
	uint16_t other_len;
	size_t other; /* offset of the request's other data */
	uint8_t mac[XD_TSIG_MAC_MAX]; /* the request's; then the last sent */
	uint16_t mac_len;
	bool signed_one; /* a response was signed: the next continues it */
};

/*
 * Reads the TSIG record that starts at msg[start], the last of the
 * message: 0, or -EINVAL when it is malformed (FORMERR: a bad name, a
 * wrong class or TTL, RDATA that does not parse or not end at the
 * message's end).
 */
int xd_tsig_read(const uint8_t *msg, size_t len, size_t start, struct xd_tsig *t);

/*
 * Checks the MAC of the request msg, read by xd_tsig_read, with key (NULL: no key of its name and
 * algorithm) at time now, and sets t->error: 0 when it verifies, else
 * BADKEY, BADSIG, BADTRUNC (a MAC shorter than ours) or BADTIME.
 * Returns t->error, or -ENOMEM.
 */
int xd_tsig_verify(struct xd_tsig *t, const struct xd_tsig_key *key, const uint8_t *msg,
		   uint64_t now);

/* The bytes the TSIG record of the next response message takes. */
size_t xd_tsig_rr_len(const struct xd_tsig *t);

/*
 * Appends the TSIG record to the finished response msg[0..len) (cap
 * bytes of room) and counts it in ARCOUNT: signed with the request's MAC
 * first, then each next message with the one before (RFC 8945 5.3.1);
 * unsigned for BADKEY and BADSIG (5.3.2).  Returns the new length, or
 * -ENOSPC, -ENOMEM.
 */
int xd_tsig_sign(struct xd_tsig *t, uint8_t *msg, size_t len, size_t cap, uint64_t now);

#endif
