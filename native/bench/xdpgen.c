/*
 * xdpgen.c - xdpdns's load generator: DNS queries over AF_XDP, one socket
 * and one pinned thread per queue of the client's interface.
 *
 * It exists because the generators at hand cannot load a multi-queue veth:
 * dnsperf goes through the kernel's UDP stack (a few hundred thousand
 * queries a second), and kxdpgun counts only "combined" channels, which a
 * veth does not have, so it sends on one queue.  An AF_XDP socket transmits
 * on its own queue and a veth delivers to the peer's queue of the same
 * number, so N sockets here load N server queues.
 *
 * Each thread sends query frames copied from prebuilt templates (only the
 * source port, the DNS ID and the UDP checksum change per query), at its
 * share of the rate, and counts what comes back on its queue: the answers,
 * by RCODE, and their latency, matched to the query by DNS ID.  The rings
 * are driven with the answering worker's discipline (xdp_worker.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <arpa/inet.h>
#include <linux/if_xdp.h>

#include "error.h"
#include "io/packet.h"
#include "wire/wire.h"
#include "io/xdp_internal.h"
#include "io/xdp_loader.h"
#include "xdpdns_maps.h"
#include "bench/xdpgen.h"

#define XD_GEN_BATCH 64
#define XD_GEN_BURST 16
#define XD_GEN_QUERY_MAX 1232 /* a DNS message in one frame */
#define XD_GEN_IDS 65536 /* in-flight queries, by DNS ID */
#define XD_GEN_PORT_FIRST 1024 /* source ports rotate above this */
#define XD_GEN_PORTS 4096 /* ... over this many per queue */
#define XD_GEN_IDLE_POLL_MS 1
#define XD_GEN_CPUS_MAX 4096

/* One query as a whole frame, and the UDP checksum's sum over everything
 * that does not change per query (source port, DNS ID and checksum zero). */
struct gen_template {
	uint32_t offset; /* into xd_gen.frames */
	uint32_t len;
	uint64_t udp_sum;
};

struct gen_queue {
	struct xd_xsk_worker w;
	struct xd_gen *gen;
	uint64_t *sent_ns; /* send time by DNS ID, 0: none in flight */
	uint32_t seq;
	double credit; /* queries the rate allows now */
	uint64_t last_ns;
	struct xd_gen_stats stats; /* written by the queue's thread only */
};

struct xd_gen {
	struct xd_prog *prog;
	atomic_int stop; /* end sending (the drain still runs) */
	atomic_int quit; /* end everything */
	uint64_t duration_ns;
	uint64_t drain_ns;
	double rate_per_queue; /* queries/ns; 0: unlimited */
	uint16_t dst_port;
	uint16_t l4; /* UDP header's offset in every frame */
	struct gen_template *templates;
	uint32_t ntemplates;
	uint8_t *frames;
	int nqueues;
	struct gen_queue queues[];
};

static void count(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- templates -------------------------------------------------------------- */

static size_t l3_len(const struct xd_gen_config *cfg)
{
	return cfg->family == AF_INET6 ? 40 : 20;
}

/* Writes Ethernet, IP and UDP headers and the query into frame. */
static size_t template_build(const struct xd_gen_config *cfg, const uint8_t *query, uint32_t qlen,
			     uint8_t *frame, uint64_t *udp_sum)
{
	size_t l3 = 14, l4 = l3 + l3_len(cfg), udp_len = 8 + qlen;
	uint64_t sum;

	memcpy(frame, cfg->dst_mac, 6);
	memcpy(frame + 6, cfg->src_mac, 6);
	if (cfg->family == AF_INET6) {
		xd_put16(frame + 12, 0x86dd);
		frame[l3] = 0x60;
		memset(frame + l3 + 1, 0, 3);
		xd_put16(frame + l3 + 4, (uint16_t)udp_len);
		frame[l3 + 6] = 17; /* UDP */
		frame[l3 + 7] = 64;
		memcpy(frame + l3 + 8, cfg->src_addr, 16);
		memcpy(frame + l3 + 24, cfg->dst_addr, 16);
		sum = xd_csum_add(0, frame + l3 + 8, 32);
	} else {
		xd_put16(frame + 12, 0x0800);
		frame[l3] = 0x45;
		frame[l3 + 1] = 0;
		xd_put16(frame + l3 + 2, (uint16_t)(20 + udp_len));
		xd_put16(frame + l3 + 4, 0); /* ID */
		xd_put16(frame + l3 + 6, 0x4000); /* DF */
		frame[l3 + 8] = 64;
		frame[l3 + 9] = 17;
		xd_put16(frame + l3 + 10, 0);
		memcpy(frame + l3 + 12, cfg->src_addr, 4);
		memcpy(frame + l3 + 16, cfg->dst_addr, 4);
		/* xd_csum_fold complements; the field holds that in the
		 * frame's byte order, as the sum was taken. */
		{
			uint16_t c = xd_csum_fold(xd_csum_add(0, frame + l3, 20));

			memcpy(frame + l3 + 10, &c, 2);
		}
		sum = xd_csum_add(0, frame + l3 + 12, 8);
	}
	sum += htons(17);
	sum += htons((uint16_t)udp_len);
	xd_put16(frame + l4, 0); /* source port: per query */
	xd_put16(frame + l4 + 2, cfg->dst_port);
	xd_put16(frame + l4 + 4, (uint16_t)udp_len);
	xd_put16(frame + l4 + 6, 0);
	memcpy(frame + l4 + 8, query, qlen);
	xd_put16(frame + l4 + 8, 0); /* DNS ID: per query */
	*udp_sum = xd_csum_add(sum, frame + l4, udp_len);
	return l4 + udp_len;
}

static int templates_build(struct xd_gen *g, const struct xd_gen_config *cfg,
			   const uint8_t *queries, const uint32_t *lens, uint32_t n,
			   struct xd_error *err)
{
	size_t headers = 14 + l3_len(cfg) + 8, total = 0, pos = 0, off = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (lens[i] < XD_DNS_HEADER_LEN || lens[i] > XD_GEN_QUERY_MAX ||
		    headers + lens[i] > cfg->frame_size)
			return xd_errorf(err, -EINVAL,
					 "query %u: %u bytes; a query is 12 to %d bytes", i + 1,
					 lens[i], XD_GEN_QUERY_MAX);
		total += headers + lens[i];
	}
	g->templates = calloc(n, sizeof(*g->templates));
	g->frames = malloc(total);
	if (!g->templates || !g->frames)
		return xd_errorf(err, -ENOMEM, "out of memory for %u queries", n);
	for (uint32_t i = 0; i < n; i++) {
		struct gen_template *t = &g->templates[i];

		t->offset = (uint32_t)pos;
		t->len = (uint32_t)template_build(cfg, queries + off, lens[i], g->frames + pos,
						  &t->udp_sum);
		pos += t->len;
		off += lens[i];
	}
	g->ntemplates = n;
	g->l4 = (uint16_t)(14 + l3_len(cfg));
	return 0;
}

/* ---- sending ---------------------------------------------------------------- */

/* Copies the next query into the frame at addr; returns its length. */
static uint32_t query_write(struct gen_queue *q, uint64_t addr, uint64_t now)
{
	const struct xd_gen *g = q->gen;
	const struct gen_template *t = &g->templates[q->seq % g->ntemplates];
	uint8_t *data = xsk_umem__get_data(q->w.area.mem, addr);
	uint16_t port = htons(
		(uint16_t)(XD_GEN_PORT_FIRST + (q->w.queue * XD_GEN_PORTS + q->seq % XD_GEN_PORTS) %
						       (65536 - XD_GEN_PORT_FIRST)));
	uint16_t id = htons((uint16_t)(q->seq & 0xffff));
	uint16_t csum;

	memcpy(data, g->frames + t->offset, t->len);
	memcpy(data + g->l4, &port, 2);
	memcpy(data + g->l4 + 8, &id, 2);
	csum = xd_csum_fold(t->udp_sum + port + id);
	if (csum == 0)
		csum = 0xffff; /* 0 means "no checksum" */
	memcpy(data + g->l4 + 6, &csum, 2);
	q->sent_ns[q->seq & 0xffff] = now;
	q->seq++;
	return t->len;
}

/* How many queries the rate allows now. */
static uint32_t send_due(struct gen_queue *q, uint64_t now)
{
	const struct xd_gen *g = q->gen;
	double cap;

	if (g->rate_per_queue == 0)
		return XD_GEN_BATCH;
	q->credit += (double)(now - q->last_ns) * g->rate_per_queue;
	q->last_ns = now;
	/* A stall (preemption, a full ring) is not made up with a burst: the
	 * offered rate drops, and `sent` says by how much. */
	cap = g->rate_per_queue * 1e6 > 2 * XD_GEN_BATCH ? g->rate_per_queue * 1e6 :
							   2 * XD_GEN_BATCH;
	if (q->credit > cap)
		q->credit = cap;
	/* Queries leave in bursts of at least XD_GEN_BURST, as from a NIC
	 * that coalesces: one at a time, each would wake the receiver's
	 * NAPI on its own, and the server would be measured on per-packet
	 * wakeups no real network causes. */
	if (q->credit < XD_GEN_BURST)
		return 0;
	return q->credit >= XD_GEN_BATCH ? XD_GEN_BATCH : (uint32_t)q->credit;
}

static uint32_t gen_send(struct gen_queue *q, uint64_t now)
{
	struct xd_xsk_worker *w = &q->w;
	uint32_t due = send_due(q, now), idx = 0, n;

	if (due == 0)
		return 0;
	n = due < w->nfree ? due : w->nfree;
	n = xsk_ring_prod__reserve(&w->tx, xd_xsk_ring_room(&w->tx, n), &idx);
	if (n < due)
		count(&q->stats.tx_full, 1);
	for (uint32_t i = 0; i < n; i++) {
		struct xdp_desc *d = xsk_ring_prod__tx_desc(&w->tx, idx + i);

		d->addr = w->free_frames[--w->nfree];
		d->len = query_write(q, d->addr, now);
		d->options = 0;
	}
	if (n == 0)
		return 0;
	xsk_ring_prod__submit(&w->tx, n);
	__atomic_store_n(&w->stats.frames_free, w->nfree, __ATOMIC_RELAXED);
	count(&w->stats.frames_tx, n);
	count(&q->stats.sent, n);
	if (q->gen->rate_per_queue)
		q->credit -= n;
	xd_xsk_tx_kick(w);
	return n;
}

/* ---- receiving -------------------------------------------------------------- */

static int latency_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	int b = 0;

	while (us > 1 && b < XD_GEN_LATENCY_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	return b;
}

/* Counts one frame from the rx ring: an answer to a query in flight, or
 * what else it is. */
static void answer_count(struct gen_queue *q, const uint8_t *data, uint32_t len, uint64_t now)
{
	struct xd_frame f;
	const uint8_t *dns;
	uint16_t id;
	uint64_t sent;
	int rc;

	/* Every answer's checksums are checked: the server computes them
	 * itself on two paths (the workers, and its XDP program), and a wrong
	 * one is an answer the client's stack would have dropped. */
	rc = xd_frame_parse(data, len, true, &f);
	if (rc == XD_FRAME_BAD_CHECKSUM) {
		count(&q->stats.bad_checksum, 1);
		return;
	}
	if (rc || f.payload_len < XD_DNS_HEADER_LEN) {
		count(&q->stats.malformed, 1);
		return;
	}
	dns = data + f.payload;
	id = xd_get16(dns);
	sent = q->sent_ns[id];
	if (!(dns[2] & 0x80) || sent == 0) {
		count(&q->stats.unexpected, 1);
		return;
	}
	q->sent_ns[id] = 0;
	count(&q->stats.answered, 1);
	count(&q->stats.rcodes[dns[3] & 0x0f], 1);
	if (dns[2] & 0x02)
		count(&q->stats.truncated, 1);
	count(&q->stats.latency[latency_bucket(now - sent)], 1);
	count(&q->stats.latency_sum_ns, now - sent);
}

static uint32_t gen_receive(struct gen_queue *q, uint64_t now)
{
	struct xd_xsk_worker *w = &q->w;
	uint32_t idx = 0, n = xsk_ring_cons__peek(&w->rx, XD_GEN_BATCH, &idx);

	if (n == 0)
		return 0;
	__atomic_store_n(&w->stats.frames_fill, w->stats.frames_fill - n, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&w->rx, idx + i);

		answer_count(q, xsk_umem__get_data(w->area.mem, d->addr), d->len, now);
		xd_xsk_frame_free(w, d->addr);
	}
	xsk_ring_cons__release(&w->rx, n);
	return n;
}

/* ---- the queue's thread ------------------------------------------------------- */

static void gen_idle(struct gen_queue *q)
{
	struct xd_xsk_worker *w = &q->w;
	struct pollfd pfd = { .fd = xsk_socket__fd(w->xsk), .events = POLLIN };

	if (w->stats.frames_tx)
		xd_xsk_tx_kick(w);
	if (w->busy_poll) {
		/* Drives the NIC's NAPI from this thread. */
		recvfrom(pfd.fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
		return;
	}
	poll(&pfd, 1, XD_GEN_IDLE_POLL_MS);
}

static void *gen_main(void *arg)
{
	struct gen_queue *q = arg;
	struct xd_gen *g = q->gen;
	uint64_t start = now_ns(), send_end = start + g->duration_ns, drain_end = 0;

	q->last_ns = start;
	while (!atomic_load_explicit(&g->quit, memory_order_relaxed)) {
		uint64_t now = now_ns();
		bool sending = now < send_end &&
			       !atomic_load_explicit(&g->stop, memory_order_relaxed);
		uint32_t got, sent;

		if (!sending && drain_end == 0)
			drain_end = now + g->drain_ns;
		if (!sending && now >= drain_end)
			break;
		xd_xsk_completions_reap(&q->w);
		got = gen_receive(q, now);
		xd_xsk_fill_refill(&q->w);
		sent = sending ? gen_send(q, now) : 0;
		if (got + sent == 0)
			gen_idle(q);
		else if (got < XD_GEN_BATCH && q->w.busy_poll)
			/* A sender that never idles must still run its NAPI
			 * (answers in, completions back), or the NAPI thread
			 * on this CPU gets only what the scheduler leaves it
			 * and the veth's ring overflows. */
			recvfrom(xsk_socket__fd(q->w.xsk), NULL, 0, MSG_DONTWAIT, NULL, NULL);
	}
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------- */

static int check_config(const struct xd_gen_config *cfg, uint32_t nqueries, struct xd_error *err)
{
	if (cfg->family != AF_INET && cfg->family != AF_INET6)
		return xd_errorf(err, -EINVAL, "generator: family must be AF_INET or AF_INET6");
	if (nqueries == 0)
		return xd_errorf(err, -EINVAL, "generator: no queries to send");
	if (cfg->duration_ms == 0)
		return xd_errorf(err, -EINVAL, "generator: the duration must be positive");
	if (cfg->ncpus < 0 || cfg->ncpus > (int)(sizeof(cfg->cpus) / sizeof(cfg->cpus[0])))
		return xd_errorf(err, -EINVAL, "generator: ncpus out of range");
	if (cfg->dst_port == 0)
		return xd_errorf(err, -EINVAL, "generator: the destination port must not be 0");
	return 0;
}

/* The socket side of the config, in the answering engine's terms. */
static void xsk_config(const struct xd_gen_config *cfg, struct xd_xdp_config *xc)
{
	memset(xc, 0, sizeof(*xc));
	memcpy(xc->ifname, cfg->ifname, sizeof(xc->ifname));
	memcpy(xc->bpf_object, cfg->bpf_object, sizeof(xc->bpf_object));
	xc->queues = cfg->queues;
	xc->first_queue = cfg->first_queue;
	xc->frames_per_queue = cfg->frames_per_queue;
	xc->frame_size = cfg->frame_size;
	xc->ring_size = cfg->ring_size;
	xc->hugepages = XD_HUGEPAGES_AUTO;
	xc->hugepage_mb = 2;
	xc->zerocopy = cfg->zerocopy;
	xc->generic = cfg->generic;
	xc->busy_poll = cfg->busy_poll;
}

static int open_queues(struct xd_gen *g, const struct xd_gen_config *cfg,
		       const struct xd_xdp_config *xc, struct xd_error *err)
{
	int node = xd_numa_nic_node(cfg->ifname);
	int ncpus = cfg->ncpus;
	const int *pick = cfg->cpus;
	int *allowed = NULL;

	if (ncpus == 0) {
		allowed = calloc(XD_GEN_CPUS_MAX, sizeof(*allowed));
		if (!allowed)
			return xd_errorf(err, -ENOMEM, "out of memory");
		ncpus = xd_numa_cpus(node, allowed, XD_GEN_CPUS_MAX);
		pick = allowed;
	}
	for (int i = 0; i < g->nqueues; i++) {
		struct gen_queue *q = &g->queues[i];

		q->gen = g;
		q->w.queue = cfg->first_queue + i;
		q->w.cpu = pick[i % ncpus];
		q->stats.cpu = q->w.cpu;
	}
	free(allowed);
	for (int i = 0; i < g->nqueues; i++) {
		struct gen_queue *q = &g->queues[i];
		char warning[256];
		bool zc = false;
		int rc;

		q->sent_ns = calloc(XD_GEN_IDS, sizeof(*q->sent_ns));
		if (!q->sent_ns)
			return xd_errorf(err, -ENOMEM, "out of memory");
		rc = xd_xsk_worker_open(&q->w, cfg->ifname, xc, node, &zc, warning, sizeof(warning),
					err);
		if (rc)
			return rc;
		rc = xd_prog_set_socket(g->prog, q->w.queue, xd_xsk_worker_fd(&q->w));
		if (rc)
			return xd_errorf(err, rc,
					 "queue %d: cannot put its socket into the XSKMAP: %s",
					 q->w.queue, strerror(-rc));
	}
	return 0;
}

static int program_setup(struct xd_gen *g, const struct xd_gen_config *cfg, int ifindex, int nq,
			 struct xd_error *err)
{
	struct xd_prog_place place = { .generic = cfg->generic, .attach = XD_ATTACH_LINK };
	struct xd_prog_attached how;
	int rc = xd_prog_load(cfg->bpf_object, ifindex, cfg->first_queue + nq, &place, &g->prog,
			      &how, err);

	if (rc)
		return rc;
	/* Answers from the server's port to our address come to us. */
	rc = xd_prog_set_port(g->prog, cfg->dst_port, XD_ACTION_REDIRECT, err);
	if (rc == 0)
		rc = xd_prog_add_address(g->prog, cfg->family, cfg->src_addr, err);
	return rc;
}

int xd_gen_start(const struct xd_gen_config *cfg, const uint8_t *queries, const uint32_t *lens,
		 uint32_t nqueries, struct xd_gen **out, struct xd_error *err)
{
	struct xd_xdp_config xc;
	struct xd_gen *g;
	int ifindex, nq, rc;

	*out = NULL;
	rc = check_config(cfg, nqueries, err);
	if (rc)
		return rc;
	xsk_config(cfg, &xc);
	rc = xd_xdp_check_config(&xc, err);
	if (rc)
		return rc;
	ifindex = (int)if_nametoindex(cfg->ifname);
	if (!ifindex)
		return xd_errorf(err, -ENODEV, "no such interface: %s", cfg->ifname);
	nq = xd_xdp_queue_span(&xc, err);
	if (nq < 0)
		return nq;
	g = calloc(1, sizeof(*g) + (size_t)nq * sizeof(g->queues[0]));
	if (!g)
		return xd_errorf(err, -ENOMEM, "out of memory");
	g->nqueues = nq;
	g->duration_ns = (uint64_t)cfg->duration_ms * 1000000u;
	g->drain_ns = (uint64_t)cfg->drain_ms * 1000000u;
	g->rate_per_queue = (double)cfg->rate / nq / 1e9;
	g->dst_port = cfg->dst_port;
	rc = templates_build(g, cfg, queries, lens, nqueries, err);
	if (rc == 0)
		rc = program_setup(g, cfg, ifindex, nq, err);
	if (rc == 0)
		rc = open_queues(g, cfg, &xc, err);
	for (int i = 0; rc == 0 && i < nq; i++)
		rc = xd_xsk_thread_start(&g->queues[i].w, gen_main, &g->queues[i], err);
	if (rc) {
		atomic_store(&g->quit, 1);
		xd_gen_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int xd_gen_wait(struct xd_gen *g)
{
	for (int i = 0; i < g->nqueues; i++) {
		struct xd_xsk_worker *w = &g->queues[i].w;

		if (w->started) {
			pthread_join(w->thread, NULL);
			w->started = false;
		}
	}
	return 0;
}

void xd_gen_stop(struct xd_gen *g)
{
	atomic_store(&g->stop, 1);
}

int xd_gen_queue_count(const struct xd_gen *g)
{
	return g->nqueues;
}

int xd_gen_queue_stats(const struct xd_gen *g, int queue, struct xd_gen_stats *out)
{
	const uint64_t *src;
	uint64_t *dst = (uint64_t *)out;
	struct xdp_statistics st;
	socklen_t len = sizeof(st);

	if (queue < 0 || queue >= g->nqueues)
		return -EINVAL;
	src = (const uint64_t *)&g->queues[queue].stats;
	for (size_t i = 0; i < offsetof(struct xd_gen_stats, kernel_rx_dropped) / sizeof(uint64_t);
	     i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	memset(&st, 0, sizeof(st));
	if (g->queues[queue].w.xsk)
		getsockopt(xsk_socket__fd(g->queues[queue].w.xsk), SOL_XDP, XDP_STATISTICS, &st,
			   &len);
	out->kernel_rx_dropped = st.rx_dropped;
	out->kernel_rx_ring_full = st.rx_ring_full;
	out->cpu = g->queues[queue].stats.cpu;
	return 0;
}

void xd_gen_free(struct xd_gen *g)
{
	if (!g)
		return;
	atomic_store(&g->stop, 1);
	atomic_store(&g->quit, 1);
	for (int i = 0; i < g->nqueues; i++) {
		xd_xsk_worker_close(&g->queues[i].w); /* joins the thread */
		free(g->queues[i].sent_ns);
	}
	xd_prog_free(g->prog);
	free(g->templates);
	free(g->frames);
	free(g);
}
