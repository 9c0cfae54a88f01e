/*
 * sha1.c - SHA-1 (FIPS 180-4 6.1) over the concatenation of two buffers,
 * which is what the NSEC3 hash iterates: H(x || salt).
 */
#include <string.h>

#include "sha1.h"

static uint32_t rol(uint32_t x, int n)
{
	return x << n | x >> (32 - n);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

	for (int t = 0; t < 16; t++)
		w[t] = be32(p + 4 * t);
	for (int t = 16; t < 80; t++)
		w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
	for (int t = 0; t < 80; t++) {
		uint32_t f, k, tmp;

		if (t < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (t < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (t < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		tmp = rol(a, 5) + f + e + k + w[t];
		e = d;
		d = c;
		c = rol(b, 30);
		b = a;
		a = tmp;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void xd_sha1(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
	     uint8_t out[XD_SHA1_LEN])
{
	uint32_t h[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
	uint64_t bits = (uint64_t)(alen + blen) * 8;
	uint8_t buf[64];
	size_t fill = 0;

	for (int part = 0; part < 2; part++) {
		const uint8_t *p = part ? b : a;
		size_t n = part ? blen : alen;

		while (n) {
			size_t take = n < 64 - fill ? n : 64 - fill;

			memcpy(buf + fill, p, take);
			fill += take;
			p += take;
			n -= take;
			if (fill == 64) {
				block(h, buf);
				fill = 0;
			}
		}
	}
	/* The padding: a 1 bit, zeros, and the length in bits. */
	buf[fill++] = 0x80;
	if (fill > 56) {
		memset(buf + fill, 0, 64 - fill);
		block(h, buf);
		fill = 0;
	}
	memset(buf + fill, 0, 56 - fill);
	for (int i = 0; i < 8; i++)
		buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
	block(h, buf);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}
