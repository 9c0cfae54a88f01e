/*
 * rrl_cost.c - what response rate limiting costs the answering path per
 * response, on the same queries: xd_answer alone; xd_answer followed by
 * the limiter reading the kind of response back from it
 * (xd_rrl_table_check); and the workers' path, the answering core noting
 * the kind for the limiter (xd_rrl_table_answer: xd_answer_ctx, then
 * xd_rrl_filter).
 *
 * Calls the engine's C API directly, without Python in the loop.  Not part
 * of the test run; build and run from the repository root:
 *
 *   gcc -O2 -std=gnu11 -Inative -Ibpf -o /tmp/rrl_cost \
 *       bench/rrl_cost.c $(find native -name "*.c") -lzscanner -lxdp -lbpf -lnuma -lcrypto -lpthread
 *   /tmp/rrl_cost zones/example.com.zone
 *
 * The queries are A queries for www.example.com (an answer: the bucket is
 * keyed on the name) and for hostN.example.com (NXDOMAIN: the key needs the
 * SOA owner from the authority section, the longer parse), from CLIENTS
 * different /24s, so that the table (the default 32768 buckets) sees misses
 * and replacements as it would under a spoofed flood.  The rate is high
 * enough that every response is sent: the cost measured is the accounting,
 * not the savings of dropping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "engine.h"

#define QUERIES 4096
#define CLIENTS 65536 /* twice the table: misses and replacements */
#define ROUNDS 50 /* best of: the machine may be shared */
#define NAME_TEXT_MAX 64

struct query {
	uint8_t wire[12 + NAME_TEXT_MAX + 20];
	size_t len;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void make_query(struct query *q, const char *label)
{
	int l = (int)strlen(label);
	uint8_t *p = q->wire;

	memset(p, 0, 12);
	p[5] = 1; /* QDCOUNT */
	p[12] = (uint8_t)l;
	memcpy(p + 13, label, l);
	memcpy(p + 13 + l, "\7example\3com", 13);
	memcpy(p + 13 + l + 13, "\0\1\0\1", 4);
	q->len = 12 + 1 + l + 13 + 4;
}

static struct xd_image *build(const char *zone)
{
	static const uint8_t origin[] = "\7example\3com";
	struct xd_builder *b = xd_builder_new();
	struct xd_image *img;
	struct xd_error err;
	int z = xd_builder_add_zone(b, origin, sizeof(origin), &err);

	if (z < 0 || xd_builder_load_zonefile(b, z, zone, 3600) ||
	    xd_builder_finish(b, &img, &err)) {
		fprintf(stderr, "building the image failed: %s\n", err.message);
		exit(1);
	}
	xd_builder_free(b);
	return img;
}

enum path {
	ANSWER_ONLY,
	READ_BACK,
	NOTED
};

/* ns per response: answer each query, and account it on `path`. */
static double run(const struct xd_image *img, struct xd_rrl_table *table, enum path path,
		  const struct query *qs, int *verdicts)
{
	uint8_t resp[4096];
	struct xd_client client = { .family = AF_INET };
	double best = 1e9;
	uint32_t seq = 0;

	for (int r = 0; r < ROUNDS; r++) {
		double t = now();

		for (int i = 0; i < QUERIES; i++, seq++) {
			uint32_t c = seq % CLIENTS;
			int len;

			client.addr[0] = 10;
			client.addr[1] = (uint8_t)(c >> 8);
			client.addr[2] = (uint8_t)c;
			if (path == NOTED) {
				len = xd_rrl_table_answer(table, img, &client, 1000 + (uint32_t)r,
							  qs[i].wire, qs[i].len, resp,
							  sizeof(resp));
				verdicts[len > 0 ? XD_RRL_SEND : XD_RRL_DROP]++;
				continue;
			}
			len = xd_answer(img, qs[i].wire, qs[i].len, resp, sizeof(resp), 0);
			if (path == READ_BACK)
				verdicts[xd_rrl_table_check(table, &client, resp, (size_t)len,
							    XD_COOKIE_NONE, 1000 + (uint32_t)r)]++;
		}
		t = (now() - t) / QUERIES * 1e9;
		best = t < best ? t : best;
	}
	return best;
}

static struct xd_rrl_table *table_new(const struct xd_rrl_config *cfg)
{
	struct xd_rrl_table *table;
	struct xd_error err;

	if (xd_rrl_table_new(cfg, &table, &err)) {
		fprintf(stderr, "rrl: %s\n", err.message);
		exit(1);
	}
	return table;
}

static void measure(const char *what, const struct xd_image *img, const struct xd_rrl_config *cfg,
		    const struct query *qs)
{
	struct xd_rrl_table *read_back = table_new(cfg), *noted = table_new(cfg);
	int verdicts[3] = { 0 };
	double plain, limited, workers;

	plain = run(img, NULL, ANSWER_ONLY, qs, verdicts);
	limited = run(img, read_back, READ_BACK, qs, verdicts);
	workers = run(img, noted, NOTED, qs, verdicts);
	printf("%-10s answer %6.1f ns; + rrl read back %6.1f ns (%5.1f), + rrl noted %6.1f ns "
	       "(%5.1f) (%d sent, %d dropped, %d slipped)\n",
	       what, plain, limited, limited - plain, workers, workers - plain,
	       verdicts[XD_RRL_SEND], verdicts[XD_RRL_DROP], verdicts[XD_RRL_SLIP]);
	xd_rrl_table_free(noted);
	xd_rrl_table_free(read_back);
}

int main(int argc, char **argv)
{
	static struct query answers[QUERIES], nxdomains[QUERIES];
	struct xd_rrl_config cfg = {
		.rate = 1000000,
		.nxdomain_rate = 1000000,
		.errors_rate = 1000000,
		.nodata_rate = 1000000,
		.referrals_rate = 1000000,
		.window = 15,
		.slip = 2,
		.ipv4_prefix = 24,
		.ipv6_prefix = 56,
		.table_size = 32768,
	};
	struct xd_image *img;
	char label[NAME_TEXT_MAX];

	if (argc != 2) {
		fprintf(stderr, "usage: %s ZONEFILE\n", argv[0]);
		return 2;
	}
	img = build(argv[1]);
	for (int i = 0; i < QUERIES; i++) {
		make_query(&answers[i], "www");
		snprintf(label, sizeof(label), "host%d", i);
		make_query(&nxdomains[i], label);
	}
	measure("answer", img, &cfg, answers);
	measure("nxdomain", img, &cfg, nxdomains);
	xd_image_free(img);
	return 0;
}
