/*
 * cookie.c - DNS cookies (RFC 7873) with the interoperable server cookies of
 * RFC 9018: SipHash-2-4, the server cookie made and checked, and the secrets
 * published to the workers with one atomic pointer swap, as the image and
 * the ACL are.
 *
 * A server cookie is version 1, three reserved bytes, a 32-bit timestamp
 * and SipHash-2-4(client cookie | version | reserved | timestamp | client
 * IP) under a 16-byte secret, so every server of a fleet that shares the
 * secret makes and accepts the same cookies (Knot, BIND, PowerDNS and
 * Unbound do the same).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer/cookie.h"
#include "wire/wire.h"

/* RFC 9018 4.3: a cookie is accepted for an hour after its timestamp and
 * up to five minutes before it (the clocks of a fleet differ), and a
 * client whose cookie is older than half an hour gets a fresh one. */
#define XD_COOKIE_LIFETIME 3600
#define XD_COOKIE_SKEW 300
#define XD_COOKIE_RENEW 1800
/* The hash input: client cookie, version/reserved/timestamp, an IPv6
 * address at most. */
#define XD_COOKIE_HASH_INPUT_MAX (XD_COOKIE_CLIENT_LEN + 8 + 16)
#define XD_SIPHASH_LEN 8

/* ---- SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input
 * PRF", 2012): two compression rounds per 8-byte word, four to finish. */

static uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void store_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t rotl64(uint64_t x, int b)
{
	return x << b | x >> (64 - b);
}

static void sip_rounds(uint64_t v[4], int rounds)
{
	for (int i = 0; i < rounds; i++) {
		v[0] += v[1];
		v[1] = rotl64(v[1], 13);
		v[1] ^= v[0];
		v[0] = rotl64(v[0], 32);
		v[2] += v[3];
		v[3] = rotl64(v[3], 16);
		v[3] ^= v[2];
		v[0] += v[3];
		v[3] = rotl64(v[3], 21);
		v[3] ^= v[0];
		v[2] += v[1];
		v[1] = rotl64(v[1], 17);
		v[1] ^= v[2];
		v[2] = rotl64(v[2], 32);
	}
}

static void sip_absorb(uint64_t v[4], uint64_t m)
{
	v[3] ^= m;
	sip_rounds(v, 2);
	v[0] ^= m;
}

void xd_siphash24(const uint8_t *key, const uint8_t *data, size_t len, uint8_t *out)
{
	uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
	/* "somepseudorandomlygeneratedbytes", the paper's initial state. */
	uint64_t v[4] = {
		k0 ^ 0x736f6d6570736575ULL,
		k1 ^ 0x646f72616e646f6dULL,
		k0 ^ 0x6c7967656e657261ULL,
		k1 ^ 0x7465646279746573ULL,
	};
	size_t whole = len - len % 8;
	uint64_t last = (uint64_t)(len & 0xff) << 56;

	for (size_t i = 0; i < whole; i += 8)
		sip_absorb(v, load_le64(data + i));
	/* The last word: the remaining bytes, little-endian, and the length
	 * modulo 256 in the top byte. */
	for (size_t i = whole; i < len; i++)
		last |= (uint64_t)data[i] << (8 * (i - whole));
	sip_absorb(v, last);
	v[2] ^= 0xff;
	sip_rounds(v, 4);
	store_le64(out, v[0] ^ v[1] ^ v[2] ^ v[3]);
}

/* ---- clients ----------------------------------------------------------------- */

/* ---- server cookies (RFC 9018 4) ---------------------------------------------- */

/* The hash of a server cookie whose first 8 bytes (version, reserved,
 * timestamp) are `head`, as received or as we write them. */
static void server_hash(const uint8_t *secret, const uint8_t *client_cookie, const uint8_t *head,
			const struct xd_client *client, uint8_t *out)
{
	uint8_t input[XD_COOKIE_HASH_INPUT_MAX];
	size_t alen = client->family == AF_INET ? 4 : 16;

	memcpy(input, client_cookie, XD_COOKIE_CLIENT_LEN);
	memcpy(input + XD_COOKIE_CLIENT_LEN, head, 8);
	memcpy(input + XD_COOKIE_CLIENT_LEN + 8, client->addr, alen);
	xd_siphash24(secret, input, XD_COOKIE_CLIENT_LEN + 8 + alen, out);
}

static void server_make(const uint8_t *secret, const uint8_t *client_cookie,
			const struct xd_client *client, uint32_t now, uint8_t *out)
{
	out[0] = XD_COOKIE_VERSION;
	out[1] = out[2] = out[3] = 0; /* reserved: zero when made */
	xd_put32(out + 4, now);
	server_hash(secret, client_cookie, out, client, out + 8);
}

/* Compares without an early exit, so that the time taken tells an
 * attacker nothing about how much of a forged hash was right. */
static bool hash_equal(const uint8_t *a, const uint8_t *b)
{
	uint8_t diff = 0;

	for (int i = 0; i < XD_SIPHASH_LEN; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static bool server_matches(const uint8_t *secret, const uint8_t *client_cookie,
			   const uint8_t *server, const struct xd_client *client)
{
	uint8_t hash[XD_SIPHASH_LEN];

	server_hash(secret, client_cookie, server, client, hash);
	return hash_equal(hash, server + 8);
}

/* Whether the server cookie sc[0..len) is one we made for this client and
 * still accept; *fresh tells whether it may be sent back as it is (young
 * enough, made with the current secret). */
static bool server_valid(const struct xd_cookies *c, const struct xd_client *client, uint32_t now,
			 const uint8_t *cc, const uint8_t *sc, size_t len, bool *fresh)
{
	int32_t age;

	*fresh = false;
	if (len != XD_COOKIE_SERVER_LEN || sc[0] != XD_COOKIE_VERSION)
		return false; /* another server's construction: not ours */
	/* RFC 9018 4.3: timestamps compare in serial number arithmetic
	 * (RFC 1982), so the 2106 wrap changes nothing. */
	age = (int32_t)(now - xd_get32(sc + 4));
	if (age > XD_COOKIE_LIFETIME || age < -XD_COOKIE_SKEW)
		return false;
	if (server_matches(c->current, cc, sc, client)) {
		*fresh = age <= XD_COOKIE_RENEW;
		return true;
	}
	/* RFC 9018 A.4: a cookie of the previous secret is valid during a
	 * rotation, and answered with one of the current secret. */
	return c->has_previous && server_matches(c->previous, cc, sc, client);
}

int xd_cookie_reply(const struct xd_cookies *c, const struct xd_client *client, uint32_t now,
		    const uint8_t *opt, size_t len, uint8_t *out)
{
	const uint8_t *sc = opt + XD_COOKIE_CLIENT_LEN;
	size_t sc_len = len - XD_COOKIE_CLIENT_LEN;
	bool fresh = false;
	int verdict;

	memcpy(out, opt, XD_COOKIE_CLIENT_LEN);
	if (sc_len == 0)
		verdict = XD_COOKIE_CLIENT_ONLY;
	else if (server_valid(c, client, now, opt, sc, sc_len, &fresh))
		verdict = XD_COOKIE_VALID;
	else
		verdict = XD_COOKIE_INVALID;
	/* RFC 7873 5.2.3-5.2.5: every answer carries a server cookie: the
	 * client's own when it is still good, else a new one. */
	if (fresh)
		memcpy(out + XD_COOKIE_CLIENT_LEN, sc, XD_COOKIE_SERVER_LEN);
	else
		server_make(c->current, opt, client, now, out + XD_COOKIE_CLIENT_LEN);
	return verdict;
}

/* ---- publishing ------------------------------------------------------------------ */

void xd_cookies_free(struct xd_cookies *c)
{
	if (!c)
		return;
	/* Secrets do not linger in freed memory. */
	explicit_bzero(c, sizeof(*c));
	free(c);
}

int xd_cookies_build(const uint8_t *current, const uint8_t *previous, unsigned flags,
		     struct xd_cookies **out, struct xd_error *err)
{
	struct xd_cookies *c;

	*out = NULL;
	if (flags & ~(unsigned)XD_COOKIE_REQUIRE_UDP) {
		snprintf(err->message, sizeof(err->message),
			 "cookie flags %#x: only XD_COOKIE_REQUIRE_UDP is known", flags);
		return -EINVAL;
	}
	if (!current) {
		if (!previous && !flags)
			return 0; /* cookies off */
		snprintf(err->message, sizeof(err->message),
			 "a previous cookie secret or flags need a current secret");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -ENOMEM;
	}
	memcpy(c->current, current, XD_COOKIE_SECRET_LEN);
	if (previous)
		memcpy(c->previous, previous, XD_COOKIE_SECRET_LEN);
	c->has_previous = previous != NULL;
	c->require_udp = flags & XD_COOKIE_REQUIRE_UDP;
	*out = c;
	return 0;
}
