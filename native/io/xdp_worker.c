/*
 * xdp_worker.c - one AF_XDP queue: its UMEM, its socket, and the worker
 * thread that answers what arrives on it, in place, in the same frame.
 *
 * The ring discipline, written once: reserve, fill, submit on the producer
 * rings (fill, tx); peek, read, release on the consumer rings (rx,
 * completion).  need_wakeup is honoured on both producer rings: the driver
 * sets it on the fill ring only when it ran out of buffers, so the fill ring
 * is kept full and the flag is checked, never assumed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_xdp.h>

#include "io/dnstap.h"
#include "engine_internal.h"
#include "io/resolver.h"
#include "io/packet.h"
#include "wire/wire.h"
#include "io/xdp_internal.h"

/* 64 frames per batch: one rx peek and one tx submit amortised over a
 * batch that still fits the L1/L2 working set of the frames it touches. */
#define XD_XSK_BATCH 64
/* An idle worker sleeps in poll; this bounds how long a stop waits. */
#define XD_XSK_POLL_MS 1000
/* In copy mode one sendto transmits a bounded batch (32 frames in the
 * kernel's generic xmit) and says EAGAIN when more wait; this bounds how
 * often a kick repeats before the worker turns back to its rx ring. */
#define XD_XSK_KICKS_MAX 8
/* While answers wait on the TX ring, an idle worker polls this briefly. */
#define XD_XSK_TX_POLL_MS 1
/* The largest query we copy out of a frame before answering in place. */
#define XD_XSK_QUERY_MAX 1500

static void set(uint64_t *counter, uint64_t v)
{
	__atomic_store_n(counter, v, __ATOMIC_RELAXED);
}

/* ---- frames ---------------------------------------------------------------- */

static uint64_t frame_base(const struct xd_xsk_worker *w, uint64_t addr)
{
	/* Aligned mode: addr is base + headroom offset inside one frame. */
	return addr - addr % w->frame_size;
}

void xd_xsk_frame_free(struct xd_xsk_worker *w, uint64_t addr)
{
	w->free_frames[w->nfree++] = frame_base(w, addr);
}

/* How many of `want` slots a producer ring has free: reserve is
 * all-or-nothing, so ask only for what fits. */
uint32_t xd_xsk_ring_room(struct xsk_ring_prod *r, uint32_t want)
{
	uint32_t room = xsk_prod_nb_free(r, want);

	return room < want ? room : want;
}

/* Moves free frames to the fill ring, as many as it takes, but for the
 * frames kept back for answers that do not come from rx (fill_reserve). */
void xd_xsk_fill_refill(struct xd_xsk_worker *w)
{
	uint32_t spare = w->nfree > w->fill_reserve ? w->nfree - w->fill_reserve : 0;
	uint32_t idx = 0, n = xd_xsk_ring_room(&w->fill, spare);

	n = xsk_ring_prod__reserve(&w->fill, n, &idx);
	for (uint32_t i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&w->fill, idx + i) = w->free_frames[--w->nfree];
	xsk_ring_prod__submit(&w->fill, n);
	xd_count(&w->stats.frames_fill, n);
	set(&w->stats.frames_free, w->nfree);
}

/* Asks the kernel to transmit what the TX ring holds, when it wants to be
 * asked (need_wakeup), until it has taken everything or is busy. */
void xd_xsk_tx_kick(struct xd_xsk_worker *w)
{
	if (!xsk_ring_prod__needs_wakeup(&w->tx))
		return;
	for (int i = 0; i < XD_XSK_KICKS_MAX; i++) {
		xd_count(&w->stats.kicks, 1);
		if (sendto(xsk_socket__fd(w->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0 ||
		    errno != EAGAIN)
			break;
	}
}

void xd_xsk_completions_reap(struct xd_xsk_worker *w)
{
	uint32_t idx, n = xsk_ring_cons__peek(&w->comp, w->ring_size, &idx);

	for (uint32_t i = 0; i < n; i++)
		xd_xsk_frame_free(w, *xsk_ring_cons__comp_addr(&w->comp, idx + i));
	xsk_ring_cons__release(&w->comp, n);
	__atomic_store_n(&w->stats.frames_tx, w->stats.frames_tx - n, __ATOMIC_RELAXED);
}

/* ---- answering -------------------------------------------------------------- */

/* How a deferred query's answer leaves: a frame with the query's headers,
 * made into the reply as an answer in place is. */
struct xdp_route {
	struct xd_frame f;
	uint8_t headers[XD_RESOLVER_ROUTE_MAX - sizeof(struct xd_frame)];
};
_Static_assert(sizeof(struct xdp_route) <= XD_RESOLVER_ROUTE_MAX, "an XDP route fits");

/* A query in a frame: its data, headers parsed into f, still the query's. */
struct xdp_query {
	const uint8_t *data;
	const struct xd_frame *f;
};

static size_t make_route(const void *arg, void *out, uint16_t *port)
{
	const struct xdp_query *q = arg;
	struct xdp_route *route = out;

	/* IPv4 options: the core's question already overwrote them (answers
	 * go after 20 bytes); such a query gets SERVFAIL. */
	if (q->f->payload > sizeof(route->headers) ||
	    (!q->f->ipv6 && q->f->payload != q->f->l3 + 20 + 8))
		return 0;
	route->f = *q->f;
	memcpy(route->headers, q->data, q->f->payload);
	*port = xd_get16(q->data + q->f->l4);
	return offsetof(struct xdp_route, headers) + q->f->payload;
}

/* Whether the XDP program picked this frame for dnstap: its mark sits in
 * the metadata just before the frame's data.  The mark is cleared, for a
 * later frame in the same buffer may come without metadata. */
static bool take_tap_mark(uint8_t *data)
{
	uint32_t mark;

	memcpy(&mark, data - sizeof(mark), sizeof(mark));
	if (mark != XD_TAP_MARK)
		return false;
	memset(data - sizeof(mark), 0, sizeof(mark));
	return true;
}

/* Copies the query in frame data (headers parsed into f, still the
 * query's) and its response (resp_len bytes at resp; 0: none sent) into
 * the worker's dnstap ring. */
static void tap_frame(struct xd_xsk_worker *w, const uint8_t *data, const struct xd_frame *f,
		      const uint8_t *query, const uint8_t *resp, int resp_len)
{
	struct xd_dnstap_event ev = {
		.family = f->ipv6 ? AF_INET6 : AF_INET,
		.client_port = xd_get16(data + f->l4),
		.server_port = xd_get16(data + f->l4 + 2),
		.query = query,
		.query_len = f->payload_len,
		.response = resp_len > 0 ? resp : NULL,
		.response_len = resp_len > 0 ? (uint16_t)resp_len : 0,
	};

	if (f->ipv6) {
		memcpy(ev.client, data + f->l3 + 8, 16);
		memcpy(ev.server, data + f->l3 + 24, 16);
	} else {
		memcpy(ev.client, data + f->l3 + 12, 4);
		memcpy(ev.server, data + f->l3 + 16, 4);
	}
	xd_dnstap_put(w->core.tap, &ev);
}

/* Answers the frame at addr in place; returns the response frame's length
 * or 0 when it gets no answer. */
static size_t answer_frame(struct xd_xsk_worker *w, struct xd_core_batch *b, uint64_t addr,
			   uint32_t len)
{
	uint8_t *data = xsk_umem__get_data(w->area.mem, addr);
	uint8_t query[XD_XSK_QUERY_MAX];
	struct xd_frame f;
	struct xdp_query q = { data, &f };
	struct xd_core_way_back back = { make_route, &q };
	size_t room, header;
	bool tapped = w->core.tap && take_tap_mark(data);
	int rc = xd_frame_parse(data, len, w->verify_checksums, &f);
	int resp;

	if (rc == XD_FRAME_BAD_CHECKSUM) {
		xd_count(&w->stats.bad_checksum, 1);
		return 0;
	}
	if (rc || f.payload_len > sizeof(query)) {
		xd_count(&w->stats.malformed, 1);
		return 0;
	}
	memcpy(query, data + f.payload, f.payload_len);
	/* Before the response overwrites anything. */
	xd_frame_source(data, &f, &b->ctx.client);
	/* IPv4 options are not echoed: the response goes after 20 bytes. */
	header = f.ipv6 ? f.payload : (size_t)f.l3 + 20 + 8;
	room = w->frame_size - (addr - frame_base(w, addr)) - header;
	resp = xd_core_answer(&w->core, b, NULL, query, f.payload_len, data + header, room, &back);
	if (tapped)
		tap_frame(w, data, &f, query, data + header, resp);
	return resp > 0 ? xd_frame_reply(data, &f, resp) : 0;
}

/* Puts the answered frames on the TX ring; those that find no room go
 * back to free.  A ring without room for them is first handed to the
 * kernel (a kick) and its completions taken back: in copy mode nothing
 * leaves the ring but through a kick, and a worker that kicked only after
 * it had put something on the ring would, once the ring filled under
 * load, never kick again while queries kept coming, and drop every
 * answer (measured: 800k queries/s offered, 3.7M of 4M answers lost as
 * tx_full, none before the worker). */
static uint32_t tx_submit(struct xd_xsk_worker *w, const struct xdp_desc *out, uint32_t n)
{
	uint32_t idx = 0, room;

	if (xsk_prod_nb_free(&w->tx, n) < n) {
		xd_xsk_tx_kick(w);
		xd_xsk_completions_reap(w);
	}
	room = xsk_ring_prod__reserve(&w->tx, xd_xsk_ring_room(&w->tx, n), &idx);

	for (uint32_t i = 0; i < room; i++)
		*xsk_ring_prod__tx_desc(&w->tx, idx + i) = out[i];
	xsk_ring_prod__submit(&w->tx, room);
	for (uint32_t i = room; i < n; i++)
		xd_xsk_frame_free(w, out[i].addr);
	xd_count(&w->stats.tx_full, n - room);
	xd_count(&w->stats.frames_tx, room);
	if (room)
		xd_xsk_tx_kick(w);
	return room;
}

/* One batch: rx -> answer -> tx; returns how many frames arrived. */
static uint32_t worker_batch(struct xd_xsk_worker *w)
{
	struct xdp_desc out[XD_XSK_BATCH];
	uint32_t idx = 0, n, answers = 0;
	struct xd_core_batch b;

	n = xsk_ring_cons__peek(&w->rx, XD_XSK_BATCH, &idx);
	if (n == 0)
		return 0;
	__atomic_store_n(&w->stats.frames_fill, w->stats.frames_fill - n, __ATOMIC_RELAXED);
	set(&w->stats.frames_rx, n);
	xd_core_begin(&w->core, &b, false); /* the XDP program judged sources */
	for (uint32_t i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&w->rx, idx + i);
		size_t len = b.img ? answer_frame(w, &b, d->addr, d->len) : 0;

		if (len) {
			out[answers].addr = d->addr;
			out[answers].len = len;
			out[answers].options = 0;
			answers++;
		} else {
			xd_xsk_frame_free(w, d->addr);
		}
	}
	xsk_ring_cons__release(&w->rx, n);
	xd_core_end(&w->core, &b, n, tx_submit(w, out, answers));
	set(&w->stats.frames_rx, 0);
	return n;
}

/* The resolver hooks' answers leave in free frames with their queries'
 * headers, turned into replies as answers in place are, as many as the
 * TX ring takes: the rest wait in their ring for the next round. */
struct xdp_sender {
	struct xd_xsk_worker *w;
	struct xdp_desc out[XD_XSK_BATCH];
	uint32_t n, room;
};

static bool sender_room(void *arg)
{
	struct xdp_sender *s = arg;

	return s->n < s->room && s->w->nfree;
}

static uint8_t *sender_reserve(void *arg, const void *route_arg, size_t *cap)
{
	struct xdp_sender *s = arg;
	const struct xdp_route *route = route_arg;
	uint64_t addr = s->w->free_frames[--s->w->nfree];
	uint8_t *data = xsk_umem__get_data(s->w->area.mem, addr);

	memcpy(data, route->headers, route->f.payload);
	s->out[s->n].addr = addr;
	*cap = s->w->frame_size - route->f.payload;
	return data + route->f.payload;
}

static void sender_put(void *arg, const void *route_arg, uint8_t *buf, int len)
{
	struct xdp_sender *s = arg;
	const struct xdp_route *route = route_arg;

	if (len <= 0) {
		xd_xsk_frame_free(s->w, s->out[s->n].addr);
		return;
	}
	s->out[s->n].len = xd_frame_reply(buf - route->f.payload, &route->f, len);
	s->out[s->n].options = 0;
	s->n++;
}

static uint64_t sender_flush(void *arg)
{
	struct xdp_sender *s = arg;
	uint32_t sent = s->n ? tx_submit(s->w, s->out, s->n) : 0;

	set(&s->w->stats.frames_free, s->w->nfree);
	return sent;
}

static void serve_resolver(struct xd_xsk_worker *w)
{
	struct xdp_sender sender = { .w = w, .room = xd_xsk_ring_room(&w->tx, XD_XSK_BATCH) };
	const struct xd_core_sender ops = { sender_room, sender_reserve, sender_put, sender_flush,
					    &sender };

	xd_core_serve_resolver(&w->core, &ops, XD_XSK_BATCH);
}

/* ---- spinning only while there is work -------------------------------------- */

/*
 * A worker whose rx ring ran dry busy polls it for at most a window of time
 * before it sleeps in poll(), and the window follows what the idle gaps
 * turn out to be, as KVM's halt polling does (halt_poll_ns): after a sleep,
 * a packet that came within the longest window (busy_poll_wait_us) of the
 * ring running dry says polling through the gap would have been cheaper
 * than the sleep and its wake-up, and the window grows; one that came later
 * says the polling before the sleep was wasted, and it shrinks.  A count of
 * empty polls cannot do this: at 150k queries/s on one veth queue packets
 * came every few microseconds, 1,000 empty polls never ran out, and the
 * worker spun at 100 % of its CPU where Knot, sleeping, used 40 %.
 */

/* The window grows from here and, shrunk below it, closes: a shorter one
 * holds only a few busy polls (one of an empty veth queue, with its clock
 * read, took about 0.3 us here), too few to be worth keeping. */
#define XD_SPIN_GROW_START_NS 2000u

/* After a sleep, how long the ring stayed dry tells whether the window
 * should have covered the gap. */
static void spin_adapt(struct xd_xsk_worker *w, uint64_t gap_ns)
{
	if (gap_ns <= w->spin_max_ns) {
		w->spin_ns = w->spin_ns ? w->spin_ns * 2 : XD_SPIN_GROW_START_NS;
		if (w->spin_ns > w->spin_max_ns)
			w->spin_ns = w->spin_max_ns;
	} else {
		w->spin_ns /= 2;
		if (w->spin_ns < XD_SPIN_GROW_START_NS)
			w->spin_ns = 0;
	}
}

/* The rx ring gave frames: the idle gap, if any, is over. */
static void idle_end(struct xd_xsk_worker *w)
{
	if (!w->idle_since_ns)
		return;
	if (w->slept)
		spin_adapt(w, xd_resolver_clock() - w->idle_since_ns);
	w->idle_since_ns = 0;
	w->slept = false;
}

/* The rx ring is empty: true after one more busy poll while the window
 * lasts, false when the worker should sleep. */
static bool idle_spin(struct xd_xsk_worker *w)
{
	uint64_t now;

	if (!w->spin_max_ns)
		return false;
	now = xd_resolver_clock();
	if (!w->idle_since_ns)
		w->idle_since_ns = now;
	if (w->slept || now - w->idle_since_ns >= w->spin_ns)
		return false;
	/* Drives NAPI in this thread: rx and completions. */
	recvfrom(xsk_socket__fd(w->xsk), NULL, 0, MSG_DONTWAIT, NULL, NULL);
	xd_count(&w->stats.busy_polls, 1);
	return true;
}

/* Answers on the TX ring that the kernel has not taken yet. */
static bool tx_unsent(struct xd_xsk_worker *w)
{
	return xsk_prod_nb_free(&w->tx, w->ring_size) < w->ring_size;
}

/* Nothing arrived: sleep until something does (poll also wakes the driver
 * when the fill ring asked for it), but only briefly while answers still
 * wait to be sent or completed.  Only answers still on the TX ring need a
 * kick: those the kernel took come back through the completion ring (in
 * copy mode when the peer frees the skb), and kicking for them cost one
 * empty sendto per sleep, as many as the batches at 150k queries/s.
 * Returns poll's result. */
static int idle_sleep(struct xd_xsk_worker *w, struct pollfd *fds, nfds_t nfds)
{
	int rc;

	if (tx_unsent(w))
		xd_xsk_tx_kick(w);
	w->slept = true;
	xd_count(&w->stats.sleeps, 1);
	rc = poll(fds, nfds,
		  xd_core_sleep_ms(&w->core,
				   w->stats.frames_tx ? XD_XSK_TX_POLL_MS : XD_XSK_POLL_MS));
	if (w->core.ep)
		xd_resolver_awake(w->core.ep);
	return rc;
}

static void *worker_main(void *arg)
{
	struct xd_xsk_worker *w = arg;
	struct pollfd fds[3] = {
		{ .fd = xsk_socket__fd(w->xsk), .events = POLLIN },
		{ .fd = w->stopfd, .events = POLLIN },
		{ .fd = w->core.ep ? xd_resolver_endpoint_fd(w->core.ep) : -1, .events = POLLIN },
	};

	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		xd_xsk_completions_reap(w);
		if (w->core.ep && xd_resolver_busy(w->core.ep))
			serve_resolver(w);
		xd_xsk_fill_refill(w);
		if (worker_batch(w)) {
			idle_end(w);
			continue;
		}
		if (idle_spin(w))
			continue;
		if (idle_sleep(w, fds, 3) < 0 && errno != EINTR) {
			xd_engine_worker_failed(w->core.engine,
						"AF_XDP worker of queue %d: poll: %s", w->queue,
						strerror(errno));
			break;
		}
	}
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------ */

static int create_umem(struct xd_xsk_worker *w, struct xd_error *err)
{
	struct xsk_umem_config ucfg = {
		.fill_size = w->ring_size,
		.comp_size = w->ring_size,
		.frame_size = w->frame_size,
		.frame_headroom = 0,
		.flags = 0,
	};
	int rc = xsk_umem__create(&w->umem, w->area.mem, (uint64_t)w->nframes * w->frame_size,
				  &w->fill, &w->comp, &ucfg);

	if (rc) {
		w->umem = NULL;
		snprintf(err->message, sizeof(err->message),
			 "queue %d: cannot register the UMEM: %s", w->queue, strerror(-rc));
	}
	return rc;
}

static int create_socket(struct xd_xsk_worker *w, const char *ifname, bool zc,
			 const struct xd_xdp_config *cfg)
{
	struct xsk_socket_config scfg = {
		.rx_size = w->ring_size,
		.tx_size = w->ring_size,
		/* The program is ours, loaded by xdp_loader.c; libxdp must not
		 * load its default one. */
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.xdp_flags = 0,
		.bind_flags = XDP_USE_NEED_WAKEUP | (zc ? XDP_ZEROCOPY : XDP_COPY),
	};

	(void)cfg;
	return xsk_socket__create(&w->xsk, ifname, w->queue, w->umem, &w->rx, &w->tx, &scfg);
}

/* Zero-copy first where allowed; a driver without it refuses the bind,
 * and the UMEM is registered again for the copy-mode socket. */
static int open_socket(struct xd_xsk_worker *w, const char *ifname, const struct xd_xdp_config *cfg,
		       bool *zc, struct xd_error *err)
{
	int rc = -EOPNOTSUPP;

	if (cfg->zerocopy != XD_ZEROCOPY_OFF) {
		rc = create_socket(w, ifname, true, cfg);
		if (rc && cfg->zerocopy == XD_ZEROCOPY_REQUIRED) {
			snprintf(err->message, sizeof(err->message),
				 "%s queue %d: zero-copy required but refused: %s", ifname,
				 w->queue, strerror(-rc));
			return rc;
		}
		if (rc) {
			xsk_umem__delete(w->umem);
			w->umem = NULL;
			rc = create_umem(w, err);
			if (rc)
				return rc;
			rc = -EOPNOTSUPP;
		}
	}
	*zc = rc == 0;
	if (rc)
		rc = create_socket(w, ifname, false, cfg);
	if (rc) {
		w->xsk = NULL;
		snprintf(err->message, sizeof(err->message),
			 "%s queue %d: cannot create the AF_XDP socket: %s", ifname, w->queue,
			 strerror(-rc));
	}
	return rc;
}

/*
 * Busy polling (SO_PREFER_BUSY_POLL): the worker runs the NIC's NAPI itself
 * when it asks for packets, instead of a softirq or a NAPI thread doing it
 * and then waking the worker, so the two never take turns on one CPU.
 * Where the kernel or the driver does not offer it, nothing changes.
 */
#define XD_BUSY_POLL_US 20
static bool busy_poll_enable(struct xd_xsk_worker *w)
{
	int fd = xsk_socket__fd(w->xsk), one = 1, us = XD_BUSY_POLL_US;
	int budget = XD_XSK_BATCH;

	return setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one)) == 0 &&
	       setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &us, sizeof(us)) == 0 &&
	       setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof(budget)) == 0;
}

int xd_xsk_worker_open(struct xd_xsk_worker *w, const char *ifname, const struct xd_xdp_config *cfg,
		       int node, bool *zc, char *warning, size_t wcap, struct xd_error *err)
{
	int rc;

	w->frame_size = cfg->frame_size;
	w->nframes = cfg->frames_per_queue;
	w->ring_size = cfg->ring_size;
	w->verify_checksums = cfg->verify_checksums;
	w->stats.frames_total = w->nframes;
	w->stats.cpu = w->cpu;
	w->free_frames = calloc(w->nframes, sizeof(*w->free_frames));
	if (!w->free_frames) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < w->nframes; i++)
		w->free_frames[i] = (uint64_t)(w->nframes - 1 - i) * w->frame_size;
	w->nfree = w->nframes;
	w->stats.frames_free = w->nframes;
	rc = xd_umem_area_alloc(&w->area, (size_t)w->nframes * w->frame_size, node, cfg->hugepages,
				cfg->hugepage_mb, warning, wcap, err);
	if (rc)
		return rc;
	rc = create_umem(w, err);
	if (rc)
		return rc;
	rc = open_socket(w, ifname, cfg, zc, err);
	if (rc)
		return rc;
	/* Frames for the resolver hooks' answers, which do not arrive in an
	 * rx frame: with every free frame on the fill ring, an idle queue
	 * would have none to send them in. */
	if (w->core.engine && w->core.engine->resolver)
		w->fill_reserve = w->nframes / 4 < XD_XSK_BATCH ? w->nframes / 4 : XD_XSK_BATCH;
	/* The kernel needs buffers before the first packet. */
	xd_xsk_fill_refill(w);
	w->busy_poll = cfg->busy_poll && busy_poll_enable(w);
	/* Without busy polling an idle worker never spins: it sleeps. */
	w->spin_max_ns = w->busy_poll ? cfg->busy_poll_wait_us * 1000u : 0;
	w->spin_ns = w->spin_max_ns;
	return 0;
}

int xd_xsk_worker_fd(const struct xd_xsk_worker *w)
{
	return xsk_socket__fd(w->xsk);
}

int xd_xsk_thread_start(struct xd_xsk_worker *w, void *(*main)(void *), void *arg,
			struct xd_error *err)
{
	cpu_set_t set;
	pthread_attr_t attr;
	int rc;

	pthread_attr_init(&attr);
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	rc = -pthread_create(&w->thread, &attr, main, arg);
	pthread_attr_destroy(&attr);
	if (rc) {
		snprintf(err->message, sizeof(err->message),
			 "queue %d: cannot start its thread on CPU %d: %s", w->queue, w->cpu,
			 strerror(-rc));
		return rc;
	}
	w->started = true;
	return 0;
}

int xd_xsk_worker_start(struct xd_xsk_worker *w, struct xd_error *err)
{
	if (w->core.engine->resolver) {
		int rc = xd_resolver_attach(w->core.engine->resolver, w->core.reader, false,
					    &w->core.ep, err);

		if (rc)
			return rc;
	}
	return xd_xsk_thread_start(w, worker_main, w, err);
}

void xd_xsk_worker_close(struct xd_xsk_worker *w)
{
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	if (w->xsk)
		xsk_socket__delete(w->xsk);
	if (w->umem)
		xsk_umem__delete(w->umem);
	xd_umem_area_free(&w->area);
	free(w->free_frames);
	xd_rrl_state_release(&w->core.rrl);
	w->xsk = NULL;
	w->umem = NULL;
	w->free_frames = NULL;
	w->core.ep = NULL; /* the resolver's: kept for the next worker */
}

static void kernel_stats(const struct xd_xsk_worker *w, struct xd_queue_stats *out)
{
	struct xdp_statistics st;
	socklen_t len = sizeof(st);

	memset(&st, 0, sizeof(st));
	if (w->xsk)
		getsockopt(xsk_socket__fd(w->xsk), SOL_XDP, XDP_STATISTICS, &st, &len);
	out->kernel_rx_dropped = st.rx_dropped;
	out->kernel_rx_ring_full = st.rx_ring_full;
	out->kernel_fill_empty = st.rx_fill_ring_empty_descs;
}

void xd_xsk_worker_stats(const struct xd_xsk_worker *w, struct xd_queue_stats *out)
{
	const uint64_t *src = (const uint64_t *)&w->stats;
	uint64_t *dst = (uint64_t *)out;

	/* The fields up to the kernel's are u64 counters the worker writes,
	 * its core's (by RCODE and type too) first. */
	for (size_t i = 0;
	     i < offsetof(struct xd_queue_stats, kernel_rx_dropped) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	kernel_stats(w, out);
	out->cpu = w->cpu;
}
