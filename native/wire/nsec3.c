/*
 * nsec3.c - the NSEC3 hash of a name (RFC 5155 5), as the owner label of
 * the NSEC3 record that matches or covers it.
 */
#include <errno.h>
#include <string.h>

#include "engine.h"
#include "wire/sha1.h"
#include "wire/wire.h"

#define XD_NSEC3_SHA1 1

/* RFC 4648 7: base32 with the extended hex alphabet, which keeps the
 * order of the hashes; in lower case, as owner names are compared. */
static void base32hex(const uint8_t *in, size_t len, uint8_t *out)
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuv";
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < len; i++) {
		acc = acc << 8 | in[i];
		bits += 8;
		while (bits >= 5) {
			*out++ = (uint8_t)digits[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits)
		*out = (uint8_t)digits[(acc << (5 - bits)) & 31];
}

int xd_nsec3_encode(const uint8_t *hash, size_t len, uint8_t *out)
{
	if (len != XD_SHA1_LEN)
		return -EINVAL;
	out[0] = XD_NSEC3_LABEL_LEN - 1;
	base32hex(hash, len, out + 1);
	return 0;
}

int xd_nsec3_label(const uint8_t *name, size_t len, uint8_t alg, const uint8_t *salt,
		   size_t salt_len, unsigned iterations, uint8_t *out)
{
	uint8_t lower[XD_NAME_MAX], digest[XD_SHA1_LEN];

	if (alg != XD_NSEC3_SHA1)
		return -ENOTSUP;
	if (len > XD_NAME_MAX)
		return -EINVAL;
	xd_name_lower(lower, name, len);
	xd_sha1(lower, len, salt, salt_len, digest);
	for (unsigned i = 0; i < iterations; i++)
		xd_sha1(digest, sizeof(digest), salt, salt_len, digest);
	return xd_nsec3_encode(digest, sizeof(digest), out);
}
