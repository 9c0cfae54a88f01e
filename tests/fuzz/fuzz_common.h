/*
 * fuzz_common.h - what the libFuzzer targets share: an image of a zone
 * (the differential tests' example.com, with CNAME and DNAME chains,
 * wildcards and delegations, or a signed zone), built once per process.  Built and run by
 * tests/test_libfuzzer.py.
 */
#ifndef XDPDNS_FUZZ_COMMON_H
#define XDPDNS_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* "a.b." (or "a.b") as a wire name into out; its length, 0 if too long. */
static size_t fuzz_origin(const char *text, uint8_t *out, size_t cap)
{
	size_t len = 0;

	while (*text) {
		size_t n = strcspn(text, ".");

		if (n == 0 || n > 63 || len + 1 + n + 1 > cap)
			return 0;
		out[len] = (uint8_t)n;
		memcpy(out + len + 1, text, n);
		len += 1 + n;
		text += n + (text[n] == '.');
	}
	out[len] = 0;
	return len + 1;
}

/* The zone file XDPDNS_FUZZ_ZONE of origin XDPDNS_FUZZ_ORIGIN (default
 * example.com), set by the test that runs the target. */
static struct xd_image *fuzz_image(void)
{
	static struct xd_image *img;
	const char *path = getenv("XDPDNS_FUZZ_ZONE");
	const char *text = getenv("XDPDNS_FUZZ_ORIGIN");
	struct xd_error err = { "" };
	struct xd_builder *b;
	uint8_t origin[256];
	size_t origin_len;
	int zone;

	if (img)
		return img;
	if (!path) {
		fprintf(stderr, "XDPDNS_FUZZ_ZONE: the zone file to answer from\n");
		abort();
	}
	origin_len = fuzz_origin(text ? text : "example.com.", origin, sizeof(origin));
	if (!origin_len) {
		fprintf(stderr, "XDPDNS_FUZZ_ORIGIN: not a domain name: %s\n", text);
		abort();
	}
	b = xd_builder_new();
	zone = b ? xd_builder_add_zone(b, origin, origin_len, &err) : -1;
	if (zone < 0 || xd_builder_load_zonefile(b, zone, path, 3600) != 0 ||
	    xd_builder_check(b) != 0 || xd_builder_finish(b, &img, &err) != 0) {
		fprintf(stderr, "cannot build the image of %s: %s\n", path, err.message);
		abort();
	}
	xd_builder_free(b);
	return img;
}

#endif
