/*
 * fuzz_zonefile.c - any bytes as a zone file: libzscanner through our
 * reader ($GENERATE expansion, $INCLUDE handling, record checks), then the
 * image built from whatever loaded is answered from.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t origin[] = "\7example\3com";
	static const uint8_t query[] = {
		0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
		0, 1, 0, 1,
	};
	struct xd_error err = { "" };
	struct xd_builder *b = xd_builder_new();
	struct xd_image *img = NULL;
	char path[64];
	uint8_t resp[512];
	int fd, zone;

	if (!b)
		abort();
	fd = memfd_create("zone", 0);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	zone = xd_builder_add_zone(b, origin, sizeof(origin), &err);
	if (zone < 0)
		abort();
	xd_builder_load_zonefile(b, zone, path, 3600);
	if (xd_builder_check(b) == 0 && xd_builder_finish(b, &img, &err) == 0) {
		if (xd_answer(img, query, sizeof(query), resp, sizeof(resp), 0) < 0)
			abort();
		xd_image_free(img);
	}
	xd_builder_free(b);
	close(fd);
	return 0;
}
