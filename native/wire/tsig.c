/*
 * tsig.c - TSIG (RFC 8945) for the server side: reading a request's
 * record, checking its MAC and time, and signing the responses.
 *
 * The MAC covers the message without its TSIG record (ARCOUNT one less,
 * the ID the original one) and then the TSIG variables (4.3.3); for a
 * response the request's MAC comes first, and in a stream of messages
 * each next one covers the MAC before it, itself and the timers alone
 * (4.3.1, 5.3.1).  Nothing is copied: the parts go to the HMAC in turn.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "wire/tsig.h"

struct tsig_alg {
	const char *digest; /* OpenSSL's name */
	const uint8_t *name; /* wire form, lower case */
	uint8_t name_len;
	uint8_t mac_len;
};

/* sizeof counts the literal's NUL: the root label. */
#define ALG(dg, wire, mac)                                   \
	{                                                    \
		dg, (const uint8_t *)wire, sizeof(wire), mac \
	}
static const struct tsig_alg algs[XD_TSIG_ALGS] = {
	[XD_TSIG_HMAC_SHA1] = ALG("SHA1", "\x09hmac-sha1", 20),
	[XD_TSIG_HMAC_SHA224] = ALG("SHA224", "\x0bhmac-sha224", 28),
	[XD_TSIG_HMAC_SHA256] = ALG("SHA256", "\x0bhmac-sha256", 32),
	[XD_TSIG_HMAC_SHA384] = ALG("SHA384", "\x0bhmac-sha384", 48),
	[XD_TSIG_HMAC_SHA512] = ALG("SHA512", "\x0bhmac-sha512", 64),
};
#undef ALG

int xd_tsig_alg_from_name(const uint8_t *name, size_t len)
{
	for (int a = XD_TSIG_HMAC_SHA1; a < XD_TSIG_ALGS; a++)
		if (algs[a].name_len == len && memcmp(algs[a].name, name, len) == 0)
			return a;
	return 0;
}

/* ---- HMAC ------------------------------------------------------------------ */

/* Fetched once: the lookup takes a lock and walks OpenSSL's providers. */
static EVP_MAC *hmac_method;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
	hmac_method = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
}

static EVP_MAC_CTX *hmac_begin(const struct xd_tsig_key *key)
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx;

	pthread_once(&hmac_once, hmac_fetch);
	if (!hmac_method)
		return NULL;
	ctx = EVP_MAC_CTX_new(hmac_method);
	if (!ctx)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						     (char *)algs[key->alg].digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, key->secret, key->secret_len, params)) {
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void hmac_put(EVP_MAC_CTX *ctx, const void *data, size_t len)
{
	if (len)
		EVP_MAC_update(ctx, data, len);
}

static void hmac_put16(EVP_MAC_CTX *ctx, uint16_t v)
{
	uint8_t b[2];

	xd_put16(b, v);
	hmac_put(ctx, b, 2);
}

static void put48(uint8_t *p, uint64_t v)
{
	xd_put16(p, (uint16_t)(v >> 32));
	xd_put32(p + 2, (uint32_t)v);
}

/* The MAC prefix of a response: the MAC it follows, with its length. */
static void hmac_put_mac(EVP_MAC_CTX *ctx, const uint8_t *mac, uint16_t len)
{
	hmac_put16(ctx, len);
	hmac_put(ctx, mac, len);
}

/* Everything of a message up to its TSIG record at `end`, with the
 * original ID and the ARCOUNT it had before that record was added. */
static void hmac_put_message(EVP_MAC_CTX *ctx, const uint8_t *msg, size_t end, uint16_t id,
			     uint16_t arcount)
{
	hmac_put16(ctx, id);
	hmac_put(ctx, msg + 2, 8);
	hmac_put16(ctx, arcount);
	hmac_put(ctx, msg + XD_DNS_HEADER_LEN, end - XD_DNS_HEADER_LEN);
}

/* The TSIG variables (RFC 8945 4.3.3); timers alone for a message that
 * continues a stream. */
static void hmac_put_variables(EVP_MAC_CTX *ctx, const struct xd_tsig *t, uint64_t time,
			       uint16_t error, const uint8_t *other, uint16_t other_len,
			       bool timers_only)
{
	uint8_t timers[8];

	put48(timers, time);
	xd_put16(timers + 6, t->fudge);
	if (timers_only) {
		hmac_put(ctx, timers, sizeof(timers));
		return;
	}
	hmac_put(ctx, t->name, t->name_len);
	hmac_put16(ctx, XD_CLASS_ANY);
	hmac_put(ctx, "\0\0\0\0", 4); /* TTL */
	hmac_put(ctx, t->alg_name, t->alg_name_len);
	hmac_put(ctx, timers, sizeof(timers));
	hmac_put16(ctx, error);
	hmac_put16(ctx, other_len);
	hmac_put(ctx, other, other_len);
}

static int hmac_end(EVP_MAC_CTX *ctx, uint8_t *mac, size_t cap)
{
	size_t len = 0;
	int ok = EVP_MAC_final(ctx, mac, &len, cap);

	EVP_MAC_CTX_free(ctx);
	return ok ? (int)len : -ENOMEM;
}

/* ---- requests -------------------------------------------------------------- */

int xd_tsig_read(const uint8_t *msg, size_t len, size_t start, struct xd_tsig *t)
{
	size_t pos, rdata_end, alg_next;
	int n;

	memset(t, 0, sizeof(*t));
	t->start = start;
	n = xd_name_read(msg, len, start, t->name, true, &pos);
	if (n < 0 || len - pos < 10)
		return -EINVAL;
	t->name_len = (uint8_t)n;
	/* RFC 8945 4.2: class ANY, TTL 0. */
	if (xd_get16(msg + pos) != XD_TYPE_TSIG || xd_get16(msg + pos + 2) != XD_CLASS_ANY ||
	    xd_get32(msg + pos + 4) != 0)
		return -EINVAL;
	rdata_end = pos + 10 + xd_get16(msg + pos + 8);
	if (rdata_end != len)
		return -EINVAL; /* the last record, and its RDATA whole */
	pos += 10;
	n = xd_name_read(msg, len, pos, t->alg_name, true, &alg_next);
	if (n < 0 || rdata_end - alg_next < 10)
		return -EINVAL;
	t->alg_name_len = (uint8_t)n;
	pos = alg_next;
	t->time_signed = ((uint64_t)xd_get16(msg + pos) << 32) | xd_get32(msg + pos + 2);
	t->fudge = xd_get16(msg + pos + 6);
	t->mac_len = xd_get16(msg + pos + 8);
	pos += 10;
	if (t->mac_len > XD_TSIG_MAC_MAX || rdata_end - pos < (size_t)t->mac_len + 6)
		return -EINVAL;
	memcpy(t->mac, msg + pos, t->mac_len);
	pos += t->mac_len;
	t->original_id = xd_get16(msg + pos);
	t->request_error = xd_get16(msg + pos + 2);
	t->other_len = xd_get16(msg + pos + 4);
	t->other = pos + 6;
	return rdata_end - t->other == t->other_len ? 0 : -EINVAL;
}

int xd_tsig_verify(struct xd_tsig *t, const struct xd_tsig_key *key, const uint8_t *msg,
		   uint64_t now)
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	EVP_MAC_CTX *ctx;
	size_t full;
	int n;

	if (!key) {
		t->error = XD_TSIG_BADKEY;
		return t->error;
	}
	full = algs[key->alg].mac_len;
	/* RFC 8945 5.2.2.1: we take no truncated MAC (our policy's minimum
	 * is the whole one); a longer one, or one under both 10 bytes and
	 * half the whole, is malformed. */
	if (t->mac_len > full || (t->mac_len < 10 && t->mac_len < full / 2))
		return -EINVAL;
	if (t->mac_len < full) {
		t->error = XD_TSIG_BADTRUNC;
		return t->error;
	}
	ctx = hmac_begin(key);
	if (!ctx)
		return -ENOMEM;
	hmac_put_message(ctx, msg, t->start, t->original_id, (uint16_t)(xd_get16(msg + 10) - 1));
	hmac_put_variables(ctx, t, t->time_signed, t->request_error, msg + t->other, t->other_len,
			   false);
	n = hmac_end(ctx, mac, sizeof(mac));
	if (n < 0)
		return n;
	if ((size_t)n != full || CRYPTO_memcmp(mac, t->mac, full) != 0) {
		t->error = XD_TSIG_BADSIG;
		return t->error;
	}
	t->key = *key;
	/* RFC 8945 5.2.3: the time only once the MAC is known good. */
	if (now + t->fudge < t->time_signed || t->time_signed + t->fudge < now) {
		t->error = XD_TSIG_BADTIME;
		return t->error;
	}
	return 0;
}

/* ---- responses ------------------------------------------------------------- */

/* Whether the response is signed (RFC 8945 5.3.2: not when the key or
 * the request's MAC was not good). */
static bool signs(const struct xd_tsig *t)
{
	return t->error == 0 || t->error == XD_TSIG_BADTIME;
}

size_t xd_tsig_rr_len(const struct xd_tsig *t)
{
	size_t mac = signs(t) ? algs[t->key.alg].mac_len : 0;
	size_t other = t->error == XD_TSIG_BADTIME ? 6 : 0;

	return t->name_len + 10 + t->alg_name_len + 16 + mac + other;
}

int xd_tsig_sign(struct xd_tsig *t, uint8_t *msg, size_t len, size_t cap, uint64_t now)
{
	uint8_t mac[EVP_MAX_MD_SIZE], other[6];
	size_t need = xd_tsig_rr_len(t), rdata;
	uint16_t other_len = 0, arcount = xd_get16(msg + 10);
	/* 5.2.3: a BADTIME response keeps the request's time and tells the
	 * client ours in the other data. */
	uint64_t time = t->error == XD_TSIG_BADTIME || !signs(t) ? t->time_signed : now;
	int mac_len = 0;
	uint8_t *p;

	if (len > cap || cap - len < need)
		return -ENOSPC;
	if (t->error == XD_TSIG_BADTIME) {
		put48(other, now);
		other_len = sizeof(other);
	}
	t->fudge = XD_TSIG_FUDGE;
	if (signs(t)) {
		EVP_MAC_CTX *ctx = hmac_begin(&t->key);

		if (!ctx)
			return -ENOMEM;
		hmac_put_mac(ctx, t->mac, t->mac_len);
		hmac_put_message(ctx, msg, len, t->original_id, arcount);
		hmac_put_variables(ctx, t, time, t->error, other, other_len, t->signed_one);
		mac_len = hmac_end(ctx, mac, sizeof(mac));
		if (mac_len < 0)
			return mac_len;
		memcpy(t->mac, mac, (size_t)mac_len);
		t->mac_len = (uint16_t)mac_len;
		t->signed_one = true;
	}
	p = msg + len;
	memcpy(p, t->name, t->name_len);
	p += t->name_len;
	xd_put16(p, XD_TYPE_TSIG);
	xd_put16(p + 2, XD_CLASS_ANY);
	xd_put32(p + 4, 0);
	rdata = need - t->name_len - 10;
	xd_put16(p + 8, (uint16_t)rdata);
	p += 10;
	memcpy(p, t->alg_name, t->alg_name_len);
	p += t->alg_name_len;
	put48(p, time);
	xd_put16(p + 6, t->fudge);
	xd_put16(p + 8, (uint16_t)mac_len);
	memcpy(p + 10, mac, (size_t)mac_len);
	p += 10 + mac_len;
	xd_put16(p, t->original_id);
	xd_put16(p + 2, t->error);
	xd_put16(p + 4, other_len);
	memcpy(p + 6, other, other_len);
	xd_put16(msg + 10, (uint16_t)(arcount + 1));
	return (int)(len + need);
}
