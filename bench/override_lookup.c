/*
 * override_lookup.c - what a blocklist costs the answering core per query:
 * xd_answer on the same queries with and without a blocklist in the image,
 * the override lookup alone, and the filter's false positives.
 *
 * Calls the engine's C API directly, without Python in the loop (whose call
 * overhead is larger and noisier than what is measured).  Not part of the
 * test run; build and run from the repository root:
 *
 *   gcc -O2 -std=gnu11 -Inative -Ibpf -o /tmp/override_lookup \
 *       bench/override_lookup.c $(find native -name "*.c") -lzscanner -lxdp -lbpf -lnuma -lcrypto -lpthread
 *   .venv/bin/python bench/blocklist.py --write /tmp/blocklist.txt
 *   /tmp/override_lookup zones/example.com.zone /tmp/blocklist.txt
 *
 * The queries are A queries for hostN.example.com (in the zone, NXDOMAIN
 * there, and in no rule of the list): the fast path's common case, where
 * the lookup must say "no rule" for the name and for example.com.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "image/image.h"

#define QUERIES_MAX 65536
#define ROUNDS 50 /* best of: the machine may be shared */
#define NAME_TEXT_MAX 64

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

struct query {
	uint8_t wire[12 + NAME_TEXT_MAX + 20];
	size_t len;
	size_t name_len; /* the qname, at wire + 12 */
};

static void make_query(struct query *q, int i)
{
	char label[NAME_TEXT_MAX];
	int l = snprintf(label, sizeof(label), "host%d", i * 7919);
	uint8_t *p = q->wire;

	memset(p, 0, 12);
	p[5] = 1; /* QDCOUNT */
	p[12] = l;
	memcpy(p + 13, label, l);
	memcpy(p + 13 + l, "\7example\3com", 13);
	q->name_len = 1 + l + 13;
	memcpy(p + 12 + q->name_len, "\0\1\0\1", 4);
	q->len = 12 + q->name_len + 4;
}

static struct xd_image *build(const char *zone, const char *list)
{
	static const uint8_t origin[] = "\7example\3com";
	struct xd_builder *b = xd_builder_new();
	struct xd_image *img;
	struct xd_error err;
	int z, rule;

	z = xd_builder_add_zone(b, origin, sizeof(origin), &err);
	if (z < 0 || xd_builder_load_zonefile(b, z, zone, 3600))
		goto fail;
	if (list) {
		rule = xd_builder_add_override_rule(b, XD_OVERRIDE_NXDOMAIN, 0, &err);
		if (rule < 0 || xd_builder_load_blocklist(b, list, rule, 0, &err))
			goto fail;
	}
	if (xd_builder_finish(b, &img, &err))
		goto fail;
	xd_builder_free(b);
	return img;
fail:
	fprintf(stderr, "building the image failed: %s\n", err.message);
	exit(1);
}

static double answer_ns(const struct xd_image *img, const struct query *qs, int n)
{
	uint8_t resp[4096];
	double best = 1e9;

	for (int r = 0; r < ROUNDS; r++) {
		double t = now();

		for (int i = 0; i < n; i++)
			xd_answer(img, qs[i].wire, qs[i].len, resp, sizeof(resp), 0);
		t = (now() - t) / n * 1e9;
		best = t < best ? t : best;
	}
	return best;
}

static double lookup_ns(const struct xd_image *img, const struct query *qs, int n)
{
	double best = 1e9;
	int hits = 0;

	for (int r = 0; r < ROUNDS; r++) {
		double t = now();

		for (int i = 0; i < n; i++)
			hits += xd_image_override(img, qs[i].wire + 12, qs[i].name_len) != NULL;
		t = (now() - t) / n * 1e9;
		best = t < best ? t : best;
	}
	if (hits)
		fprintf(stderr, "%d queries found a rule: not the case measured\n", hits);
	return best;
}

static int false_positives(const struct xd_image *img, const struct query *qs, int n)
{
	const struct xd_image_header *h = img->hdr;
	int fp = 0;

	for (int i = 0; i < n; i++)
		fp += xd_override_filter_has(img->base + h->override_filter,
					     xd_override_filter_size(h->override_hash_size),
					     xd_override_hash(qs[i].wire + 12, qs[i].name_len));
	return fp;
}

int main(int argc, char **argv)
{
	static struct query qs[QUERIES_MAX];
	struct xd_image *plain, *blocked;

	if (argc != 3) {
		fprintf(stderr, "usage: %s ZONEFILE(example.com) BLOCKLIST\n", argv[0]);
		return 2;
	}
	for (int i = 0; i < QUERIES_MAX; i++)
		make_query(&qs[i], i);
	plain = build(argv[1], NULL);
	blocked = build(argv[1], argv[2]);
	printf("names with rules: %u, image %zu bytes\n", blocked->hdr->override_count,
	       blocked->size);
	printf("filter false positives: %d of %d\n", false_positives(blocked, qs, QUERIES_MAX),
	       QUERIES_MAX);
	for (int n = 1024; n <= QUERIES_MAX; n *= 8) {
		printf("%5d distinct names: xd_answer %.1f ns without, %.1f ns with the list; "
		       "lookup alone %.1f ns\n",
		       n, answer_ns(plain, qs, n), answer_ns(blocked, qs, n),
		       lookup_ns(blocked, qs, n));
	}
	xd_image_free(blocked);
	xd_image_free(plain);
	return 0;
}
