/*
 * fuzz_common.h - what the libFuzzer targets share: an image of the
 * differential tests' example.com zone (CNAME and DNAME chains, wildcards,
 * delegations), built once per process.  Built and run by
 * tests/test_libfuzzer.py.
 */
#ifndef XDPDNS_FUZZ_COMMON_H
#define XDPDNS_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* The zone file: XDPDNS_FUZZ_ZONE, set by the test that runs the target. */
static struct xd_image *fuzz_image(void)
{
	static struct xd_image *img;
	static const uint8_t origin[] = "\7example\3com";
	const char *path = getenv("XDPDNS_FUZZ_ZONE");
	struct xd_error err = { "" };
	struct xd_builder *b;
	int zone;

	if (img)
		return img;
	if (!path) {
		fprintf(stderr, "XDPDNS_FUZZ_ZONE: the zone file to answer from\n");
		abort();
	}
	b = xd_builder_new();
	zone = b ? xd_builder_add_zone(b, origin, sizeof(origin), &err) : -1;
	if (zone < 0 || xd_builder_load_zonefile(b, zone, path, 3600) != 0 ||
	    xd_builder_check(b) != 0 || xd_builder_finish(b, &img, &err) != 0) {
		fprintf(stderr, "cannot build the image of %s: %s\n", path, err.message);
		abort();
	}
	xd_builder_free(b);
	return img;
}

#endif
