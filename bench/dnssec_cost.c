/*
 * dnssec_cost.c - what DO=1 costs the answering core per answer, on the
 * same questions: an answer, NODATA and NXDOMAIN, each asked with EDNS
 * and DO clear, then set; with NSEC3 the NXDOMAIN hashes three names
 * (closest encloser, next closer, wildcard) with SHA-1.
 *
 * Calls the engine's C API directly, without Python in the loop.  Not part
 * of the test run; build and run from the repository root:
 *
 *   gcc -O2 -std=gnu11 -Inative -Ibpf -o /tmp/dnssec_cost \
 *       bench/dnssec_cost.c $(find native -name "*.c") -lzscanner -lxdp -lbpf -lnuma -lcrypto -lpthread
 *   /tmp/dnssec_cost example.com. signed.zone
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

#define NAMES 1024 /* distinct names a kind: NXDOMAIN misses caches */
#define ROUNDS 30 /* best of: the machine may be shared */

struct query {
	uint8_t wire[300];
	size_t len;
};

/* "a.b.c." as a wire name at p; its length. */
static size_t put_name(uint8_t *p, const char *text)
{
	size_t len = 0;

	while (*text) {
		size_t n = strcspn(text, ".");

		p[len] = (uint8_t)n;
		memcpy(p + len + 1, text, n);
		len += 1 + n;
		text += n + (text[n] == '.');
	}
	p[len] = 0;
	return len + 1;
}

static void make_query(struct query *q, const char *name, uint16_t qtype, int dnssec)
{
	uint8_t *p = q->wire;
	size_t n;

	memset(p, 0, 12);
	p[2] = 0x01; /* RD */
	p[5] = 1; /* QDCOUNT */
	p[11] = 1; /* ARCOUNT: the OPT */
	n = 12 + put_name(p + 12, name);
	p[n] = qtype >> 8;
	p[n + 1] = qtype & 0xff;
	p[n + 2] = 0;
	p[n + 3] = 1; /* IN */
	n += 4;
	/* OPT: root owner, type 41, 1232 bytes, DO as asked. */
	memcpy(p + n, "\0\0\x29\x04\xd0\0\0", 7);
	p[n + 7] = dnssec ? 0x80 : 0;
	p[n + 8] = 0;
	p[n + 9] = 0;
	p[n + 10] = 0;
	q->len = n + 11;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Best-of-ROUNDS nanoseconds per answer over qs[0..n), and the mean size. */
static double measure(const struct xd_image *img, const struct query *qs, int n, double *size)
{
	static uint8_t resp[1232];
	double best = 1e18;
	long bytes = 0;

	for (int r = 0; r < ROUNDS; r++) {
		double t0 = now_ns();

		bytes = 0;
		for (int i = 0; i < n; i++)
			bytes += xd_answer(img, qs[i].wire, qs[i].len, resp, sizeof(resp), 0);
		double t = (now_ns() - t0) / n;

		if (t < best)
			best = t;
	}
	*size = (double)bytes / n;
	return best;
}

int main(int argc, char **argv)
{
	static struct query qs[NAMES];
	struct xd_error err = { "" };
	struct xd_builder *b;
	struct xd_image *img;
	uint8_t origin[256];
	char name[256];
	int zone;
	const struct {
		const char *kind, *fmt;
		uint16_t qtype;
	} kinds[] = {
		{ "answer", "www.%s", 1 },
		{ "nodata", "www.%s", 99 }, /* SPF: none in the zone */
		{ "nxdomain", "host%d.%s", 1 },
	};

	if (argc != 3) {
		fprintf(stderr, "usage: %s ORIGIN ZONEFILE\n", argv[0]);
		return 2;
	}
	b = xd_builder_new();
	zone = xd_builder_add_zone(b, origin, put_name(origin, argv[1]), &err);
	if (zone < 0 || xd_builder_load_zonefile(b, zone, argv[2], 3600) || xd_builder_check(b) ||
	    xd_builder_finish(b, &img, &err)) {
		fprintf(stderr, "cannot build the image: %s\n", err.message);
		return 1;
	}
	printf("%-9s %12s %12s %8s %10s %10s\n", "kind", "DO=0 ns", "DO=1 ns", "ratio",
	       "DO=0 bytes", "DO=1 bytes");
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		double ns[2], size[2];

		for (int d = 0; d < 2; d++) {
			for (int i = 0; i < NAMES; i++) {
				if (kinds[k].fmt[0] == 'h')
					snprintf(name, sizeof(name), kinds[k].fmt, i, argv[1]);
				else
					snprintf(name, sizeof(name), kinds[k].fmt, argv[1]);
				make_query(&qs[i], name, kinds[k].qtype, d);
			}
			ns[d] = measure(img, qs, NAMES, &size[d]);
		}
		printf("%-9s %12.0f %12.0f %8.2f %10.0f %10.0f\n", kinds[k].kind, ns[0], ns[1],
		       ns[0] / ns[1], size[0], size[1]);
	}
	xd_image_free(img);
	xd_builder_free(b);
	return 0;
}
