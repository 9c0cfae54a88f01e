/*
 * tcp.c - DNS over TCP (RFC 7766): a transport of the worker core
 * (worker_core.c), on threads of its own, each with an epoll set and one
 * SO_REUSEPORT listening socket per address.
 *
 * A connection's queries are answered as they arrive, many to a read
 * (pipelining); a query a resolver hook must answer is answered when its
 * answer comes back, after later ones (RFC 7766 7: out of order).  A zone
 * transfer is made one message at a time from the image it began with,
 * only as fast as the client reads, so a slow secondary holds neither the
 * worker nor a reload.  Limits, after Knot's and NSD's: connections in all
 * and per client, a deadline for a message begun and for an answer owed
 * (Knot's tcp-io-timeout), an idle timeout (announced by RFC 7828
 * keepalive to clients that ask), queries and lifetime per connection, and
 * transfers at once (BIND's transfers-out).  The source ACL is read for
 * every query, so a reload that denies a client takes effect on its open
 * connections too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "answer/answer.h"
#include "engine_internal.h"
#include "error.h"
#include "io/dnstap.h"
#include "io/listen.h"
#include "io/resolver.h"
#include "wire/client.h"
#include "wire/prefixes.h"
#include "wire/wire.h"
#include "io/worker_core.h"

#define XD_TCP_EVENTS 64
/* Per-client counts live in buckets of a keyed hash of the address: a
 * collision only makes two clients share a limit, and without the key no
 * one can aim for one. */
#define XD_TCP_CLIENT_BUCKETS 65536
/* A connection's first read buffer: room for dozens of pipelined queries;
 * it grows to the length a message says when one is longer. */
#define XD_TCP_IN_FIRST 4096
/* Answers owed beyond this stop the reading of more queries, and a
 * transfer's next message is made only below XD_TCP_XFR_LOW: the client's
 * reading paces both. */
#define XD_TCP_OUT_HIGH (256 * 1024)
#define XD_TCP_XFR_LOW (64 * 1024)
/* How long a worker that ran out of descriptors or memory leaves its
 * listening sockets alone before it accepts again. */
#define XD_TCP_ACCEPT_PAUSE_MS 100
/* How often deadlines are looked at; finer than any timeout allowed. */
#define XD_TCP_SWEEP_MS 50
/* A client that may keep a connection idle for longer than this is told
 * this (RFC 7828's field is 16 bits of 100 ms). */
#define XD_TCP_KEEPALIVE_MAX UINT16_MAX

/* epoll data: the kind in the high half, an index in the low. */
enum {
	EV_LISTEN = 1,
	EV_CONN,
	EV_STOP,
	EV_RESOLVER
};
#define EV(kind, index) (((uint64_t)(kind) << 32) | (uint32_t)(index))

struct tcp_conn {
	int fd; /* -1: the slot is free */
	uint32_t gen; /* makes a deferred answer's route stale */
	uint32_t next_free;
	uint32_t bucket; /* its client's count */
	uint32_t queries;
	uint32_t owed; /* deferred queries not answered yet */
	bool writing; /* EPOLLOUT is asked for */
	bool reading; /* EPOLLIN is asked for */
	bool last; /* no more queries: closed once nothing is owed */
	uint64_t born, active; /* ms: opened; last message or progress */
	uint64_t msg_start; /* ms: a message began arriving; 0: none */
	uint64_t stalled; /* ms: output waiting since; 0: none */
	uint32_t unsent; /* the socket's send queue when last looked at */
	struct sockaddr_storage peer;
	struct sockaddr_storage local; /* for dnstap only */
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	struct xd_axfr *xfr; /* the transfer being sent; NULL: none */
};

/* A worker's counters besides the core's; written by the worker only. */
struct tcp_counters {
	uint64_t connections, rejected, client_rejected, denied_closed, idle_closed, io_timeouts,
		limit_closed, transfers, transfers_refused, transfers_failed;
};

struct tcp_worker {
	struct xd_worker_core core; /* its reader slot: XD_READER_TCP_BASE + i */
	struct xd_worker_stats stats;
	struct tcp_counters c;
	struct xd_tcp *t;
	pthread_t thread;
	bool started;
	int epfd;
	int fds[XD_LISTEN_MAX];
	int nfds;
	struct tcp_conn *conns;
	uint32_t nconns, free_head;
	uint64_t now; /* ms, CLOCK_MONOTONIC: this round's */
	uint64_t accept_paused_until; /* ms; 0: accepting */
	uint64_t next_sweep;
	uint32_t open;
	/* This round's batch of the core, begun at its first query. */
	struct xd_core_batch batch;
	bool in_batch;
	uint64_t received, sent;
	uint8_t resp[2 + UINT16_MAX]; /* the length prefix, then the answer */
};

struct xd_tcp {
	struct xd_engine *e;
	struct xd_tcp_config cfg;
	int stopfd;
	int nlisten;
	int ports[XD_LISTEN_MAX];
	_Atomic uint32_t open;
	_Atomic uint32_t transfers;
	uint64_t key[2];
	_Atomic uint32_t *clients;
	int nworkers;
	struct tcp_worker *workers[];
};

#define NO_CONN UINT32_MAX

static uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* The bucket of a client: its IPv4 address, or the /64 of its IPv6 one
 * (what one subscriber is given). */
static uint32_t client_bucket(const struct xd_tcp *t, const struct sockaddr_storage *ss)
{
	uint64_t a = 0;

	if (ss->ss_family == AF_INET)
		memcpy(&a, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	else
		memcpy(&a, &((const struct sockaddr_in6 *)ss)->sin6_addr, 8);
	return (uint32_t)(mix(mix(a ^ t->key[0]) ^ t->key[1] ^ ss->ss_family) %
			  XD_TCP_CLIENT_BUCKETS);
}

/* ---- connections --------------------------------------------------------------- */

static void set_events(struct tcp_worker *w, struct tcp_conn *c, bool reading, bool writing)
{
	struct epoll_event ev = {
		.events = (reading ? EPOLLIN : 0) | (writing ? EPOLLOUT : 0),
		.data.u64 = EV(EV_CONN, c - w->conns),
	};

	if (reading == c->reading && writing == c->writing)
		return;
	/* Fails only for a socket already gone, which the next read or write
	 * finds out. */
	epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->reading = reading;
	c->writing = writing;
}

static void transfer_end(struct tcp_worker *w, struct tcp_conn *c)
{
	xd_axfr_end(c->xfr);
	free(c->xfr);
	c->xfr = NULL;
	atomic_fetch_sub(&w->t->transfers, 1);
}

static void conn_close(struct tcp_worker *w, struct tcp_conn *c)
{
	if (c->xfr) {
		xd_count(&w->c.transfers_failed, 1);
		transfer_end(w, c);
	}
	close(c->fd);
	atomic_fetch_sub(&w->t->clients[c->bucket], 1);
	atomic_fetch_sub(&w->t->open, 1);
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	c->fd = -1;
	c->gen++;
	c->next_free = w->free_head;
	w->free_head = (uint32_t)(c - w->conns);
	w->open--;
}

/* A free slot, the table grown when none is; NULL without memory. */
static struct tcp_conn *conn_slot(struct tcp_worker *w)
{
	struct tcp_conn *c;

	if (w->free_head == NO_CONN) {
		uint32_t n = w->nconns ? 2 * w->nconns : 64;
		struct tcp_conn *grown = realloc(w->conns, n * sizeof(*grown));

		if (!grown)
			return NULL;
		memset(grown + w->nconns, 0, (n - w->nconns) * sizeof(*grown));
		for (uint32_t i = n; i-- > w->nconns;) {
			grown[i].fd = -1;
			grown[i].next_free = w->free_head;
			w->free_head = i;
		}
		w->conns = grown;
		w->nconns = n;
	}
	c = &w->conns[w->free_head];
	w->free_head = c->next_free;
	return c;
}

static size_t owed_bytes(const struct tcp_conn *c)
{
	return c->out_len - c->out_off;
}

/* Room for n more bytes of output; false without memory. */
static bool out_room(struct tcp_conn *c, size_t n)
{
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_cap - c->out_len >= n)
		return true;
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, owed_bytes(c));
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_cap - c->out_len >= n)
			return true;
	}
	size_t cap = c->out_cap ? c->out_cap : 1024;

	while (cap - c->out_len < n)
		cap *= 2;
	uint8_t *grown = realloc(c->out, cap);

	if (!grown)
		return false;
	c->out = grown;
	c->out_cap = cap;
	return true;
}

/* Output is owed from now: the io deadline runs, and the next sweep takes
 * the send queue's mark. */
static void stall_begins(struct tcp_worker *w, struct tcp_conn *c)
{
	c->stalled = w->now;
	c->unsent = UINT32_MAX;
}

/* Queues one answer (resp: its 2-byte prefix room, then len bytes). */
static bool put_answer(struct tcp_worker *w, struct tcp_conn *c, uint8_t *resp, int len)
{
	if (!out_room(c, (size_t)len + 2))
		return false;
	xd_put16(resp, (uint16_t)len);
	memcpy(c->out + c->out_len, resp, (size_t)len + 2);
	if (!owed_bytes(c))
		stall_begins(w, c);
	c->out_len += (size_t)len + 2;
	return true;
}

/* Writes what is owed, and a transfer's next messages while the client
 * keeps up; false when the connection was closed. */
static bool conn_flush(struct tcp_worker *w, struct tcp_conn *c)
{
	for (;;) {
		while (owed_bytes(c)) {
			ssize_t n = send(c->fd, c->out + c->out_off, owed_bytes(c),
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				set_events(w, c, c->reading, true);
				return true;
			}
			if (n <= 0) {
				conn_close(w, c);
				return false;
			}
			c->out_off += (size_t)n;
			c->active = w->now;
			stall_begins(w, c); /* progress: the deadline starts again */
		}
		if (!c->xfr)
			break;
		while (c->xfr && owed_bytes(c) < XD_TCP_XFR_LOW) {
			size_t len;
			int rc;

			if (!out_room(c, XD_AXFR_MESSAGE_MAX)) {
				conn_close(w, c);
				return false;
			}
			rc = xd_axfr_next(c->xfr, c->out + c->out_len, c->out_cap - c->out_len,
					  &len);
			if (rc < 0) {
				/* An RRset too large for a message: the client
				 * must not take a part for the whole. */
				conn_close(w, c);
				return false;
			}
			if (!owed_bytes(c))
				stall_begins(w, c);
			c->out_len += len;
			if (rc == 0) {
				xd_count(&w->c.transfers, 1);
				transfer_end(w, c);
			}
		}
	}
	c->stalled = 0;
	if (c->out_cap > XD_TCP_OUT_HIGH) {
		/* What a transfer grew is given back. */
		free(c->out);
		c->out = NULL;
		c->out_cap = c->out_off = c->out_len = 0;
	}
	if (c->last && !c->owed) {
		conn_close(w, c);
		return false;
	}
	set_events(w, c, !c->last, false);
	return true;
}

/* ---- queries -------------------------------------------------------------------- */

static struct xd_core_batch *batch(struct tcp_worker *w)
{
	if (!w->in_batch) {
		uint32_t keepalive = w->t->cfg.idle_timeout_ms / 100;

		xd_core_begin(&w->core, &w->batch, true);
		w->batch.ctx.keepalive = (uint16_t)(keepalive < XD_TCP_KEEPALIVE_MAX ?
							    keepalive :
							    XD_TCP_KEEPALIVE_MAX);
		w->in_batch = true;
		w->received = w->sent = 0;
	}
	return &w->batch;
}

static void batch_end(struct tcp_worker *w)
{
	if (!w->in_batch)
		return;
	xd_core_end(&w->core, &w->batch, w->received, w->sent);
	w->in_batch = false;
}

/* How a deferred query's answer finds its connection. */
struct tcp_route {
	uint32_t index;
	uint32_t gen;
};

struct conn_ref {
	struct tcp_worker *w;
	struct tcp_conn *c;
};

static size_t make_route(const void *arg, void *out, uint16_t *port)
{
	const struct conn_ref *ref = arg;
	struct tcp_route route = { (uint32_t)(ref->c - ref->w->conns), ref->c->gen };
	const struct sockaddr_storage *ss = &ref->c->peer;

	memcpy(out, &route, sizeof(route));
	*port = ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port :
						 ((const struct sockaddr_in6 *)ss)->sin6_port);
	return sizeof(route);
}

/* The query's type when it is the one question of a standard query. */
static bool is_transfer(const uint8_t *msg, size_t len)
{
	size_t name;
	uint16_t qtype;

	if (len < XD_DNS_HEADER_LEN + 5 || (xd_get16(msg + 2) & (XD_FLAG_QR | 0x7800)) ||
	    xd_get16(msg + 4) != 1)
		return false;
	name = xd_name_skip(msg + XD_DNS_HEADER_LEN, len - XD_DNS_HEADER_LEN);
	if (!name || len - XD_DNS_HEADER_LEN - name < 4)
		return false;
	qtype = xd_get16(msg + XD_DNS_HEADER_LEN + name);
	return qtype == XD_TYPE_AXFR || qtype == XD_TYPE_IXFR;
}

enum {
	XFR_NONE,
	XFR_SENDING,
	XFR_BUSY
};

/* Begins the transfer a query asks for: XFR_SENDING when it goes out,
 * XFR_BUSY when max_transfers run (REFUSED, as BIND's transfers-out,
 * written into resp: *busy its length), or XFR_NONE when the query is
 * answered as any other (REFUSED: not allowed, or no such zone). */
static int transfer_begin(struct tcp_worker *w, struct tcp_conn *c, struct xd_core_batch *b,
			  const uint8_t *msg, size_t len, uint8_t *resp, int *busy)
{
	struct xd_client client;
	struct xd_tcp *t = w->t;

	if (!b->img || (b->acl && xd_acl_verdict(b->acl, (const struct sockaddr *)&c->peer) !=
					  XD_VERDICT_ANSWER))
		return XFR_NONE;
	c->xfr = malloc(sizeof(*c->xfr));
	if (!c->xfr)
		return XFR_NONE;
	xd_client_from_sockaddr(&client, (const struct sockaddr *)&c->peer);
	if (xd_axfr_begin(c->xfr, b->img, &client, msg, len)) {
		free(c->xfr);
		c->xfr = NULL;
		return XFR_NONE;
	}
	if (atomic_fetch_add(&t->transfers, 1) >= t->cfg.max_transfers) {
		xd_count(&w->c.transfers_refused, 1);
		*busy = xd_axfr_refuse(c->xfr, resp, UINT16_MAX);
		transfer_end(w, c);
		return XFR_BUSY;
	}
	return XFR_SENDING;
}

static void tap(struct tcp_worker *w, struct tcp_conn *c, const uint8_t *query, size_t qlen,
		const uint8_t *resp, int len)
{
	struct xd_dnstap_event ev = {
		.family = (uint8_t)c->peer.ss_family,
		.tcp = true,
		.query = query,
		.query_len = (uint16_t)qlen,
		.response = len > 0 ? resp : NULL,
		.response_len = len > 0 ? (uint16_t)len : 0,
	};

	if (!xd_sockaddr_parts(&c->peer, ev.client, &ev.client_port))
		return;
	xd_sockaddr_parts(&c->local, ev.server, &ev.server_port);
	xd_dnstap_put(w->core.tap, &ev);
}

/* Answers one message; false when the connection was closed. */
static bool handle_message(struct tcp_worker *w, struct tcp_conn *c, const uint8_t *msg, size_t len)
{
	struct xd_core_batch *b = batch(w);
	struct conn_ref ref = { w, c };
	struct xd_core_way_back back = { make_route, &ref };
	uint64_t deferred = b->deferred, denied = b->denied;
	uint8_t *resp = w->resp + 2;
	int n = 0,
	    xfr = is_transfer(msg, len) ? transfer_begin(w, c, b, msg, len, resp, &n) : XFR_NONE;

	w->received++;
	c->queries++;
	c->active = w->now;
	if (w->t->cfg.max_queries && c->queries >= w->t->cfg.max_queries)
		c->last = true;
	if (xfr == XFR_SENDING) {
		w->sent++;
		return true;
	}
	if (xfr != XFR_BUSY)
		n = xd_core_answer(&w->core, b, (const struct sockaddr *)&c->peer, msg, len, resp,
				   UINT16_MAX, &back);
	if (w->core.tap && b->deferred == deferred && xd_dnstap_sampled(w->core.tap))
		tap(w, c, msg, len, resp, n);
	if (b->deferred != deferred) {
		c->owed++;
		return true;
	}
	if (n <= 0 && b->denied != denied) {
		/* The ACL drops this client now (a reload changed it). */
		xd_count(&w->c.denied_closed, 1);
		conn_close(w, c);
		return false;
	}
	if (n <= 0)
		return true; /* e.g. the message was itself a response */
	if (!put_answer(w, c, w->resp, n)) {
		conn_close(w, c);
		return false;
	}
	w->sent++;
	return true;
}

/* Answers every whole message the client sent, while it may ask. */
/* Whether the input begins with a whole message. */
static bool whole_message(const struct tcp_conn *c)
{
	return c->in_len >= 2 && c->in_len >= 2 + (size_t)xd_get16(c->in);
}

/* Whether the connection's next query may be answered now: not while a
 * transfer goes out or answers pile up (the client's reading paces its
 * asking), nor after its last. */
static bool may_ask(const struct tcp_conn *c)
{
	return !c->xfr && !c->last && owed_bytes(c) < XD_TCP_OUT_HIGH;
}

static void conn_answer(struct tcp_worker *w, struct tcp_conn *c)
{
	bool answered = false;

	/* Again after the flush: a transfer it finished, or answers it sent,
	 * let the queries pipelined behind them go on. */
	do {
		size_t pos = 0;

		while (c->in_len - pos >= 2 && may_ask(c)) {
			size_t len = xd_get16(c->in + pos);

			if (len == 0) {
				conn_close(w, c); /* no DNS message is empty */
				return;
			}
			if (c->in_len - pos < 2 + len)
				break;
			if (!handle_message(w, c, c->in + pos + 2, len))
				return;
			pos += 2 + len;
		}
		if (pos) {
			memmove(c->in, c->in + pos, c->in_len - pos);
			c->in_len -= pos;
			answered = true;
		}
		if (!conn_flush(w, c))
			return;
	} while (whole_message(c) && may_ask(c));
	/* A message begun is on the io deadline from its first byte; whole
	 * ones waiting their turn are not. */
	if (!c->in_len || whole_message(c) || answered)
		c->msg_start = 0;
	if (c->in_len && !whole_message(c) && !c->msg_start)
		c->msg_start = w->now;
	if (c->in_len >= 2 && c->in_cap < 2 + (size_t)xd_get16(c->in)) {
		uint8_t *grown = realloc(c->in, 2 + (size_t)UINT16_MAX);

		if (!grown) {
			conn_close(w, c);
			return;
		}
		c->in = grown;
		c->in_cap = 2 + (size_t)UINT16_MAX;
	}
	set_events(w, c, may_ask(c), c->writing);
}

/* Reads what the client sent, and answers it. */
static void conn_read(struct tcp_worker *w, struct tcp_conn *c)
{
	ssize_t n;

	if (!c->in) {
		c->in = malloc(XD_TCP_IN_FIRST);
		if (!c->in) {
			conn_close(w, c);
			return;
		}
		c->in_cap = XD_TCP_IN_FIRST;
	}
	if (c->in_len == c->in_cap)
		return; /* whole messages wait for their turn */
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* The client is done asking (or gone): what is owed still goes. */
		c->last = true;
		if (n < 0 || (!owed_bytes(c) && !c->owed && !c->xfr)) {
			conn_close(w, c);
			return;
		}
		set_events(w, c, false, c->writing);
		return;
	}
	c->in_len += (size_t)n;
	conn_answer(w, c);
}

static void conn_event(struct tcp_worker *w, uint32_t index, uint32_t events)
{
	struct tcp_conn *c = index < w->nconns ? &w->conns[index] : NULL;

	if (!c || c->fd < 0)
		return;
	if (events & EPOLLOUT) {
		if (!conn_flush(w, c))
			return;
		/* What waited for the transfer or the client's reading. */
		if (whole_message(c) && may_ask(c)) {
			conn_answer(w, c);
			if (c->fd < 0)
				return;
		}
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		conn_read(w, c);
}

/* ---- accepting ------------------------------------------------------------------- */

/* Takes a new connection, or closes it at once over a limit. */
static void conn_open(struct tcp_worker *w, int fd, const struct sockaddr_storage *peer)
{
	struct xd_tcp *t = w->t;
	struct xd_core_batch *b = batch(w);
	uint32_t bucket = client_bucket(t, peer);
	struct epoll_event ev = { .events = EPOLLIN };
	struct tcp_conn *c;
	int one = 1;

	if (atomic_fetch_add(&t->open, 1) >= t->cfg.max_connections) {
		atomic_fetch_sub(&t->open, 1);
		xd_count(&w->c.rejected, 1);
		close(fd);
		return;
	}
	if (atomic_fetch_add(&t->clients[bucket], 1) >= t->cfg.max_client_connections) {
		atomic_fetch_sub(&t->clients[bucket], 1);
		atomic_fetch_sub(&t->open, 1);
		xd_count(&w->c.client_rejected, 1);
		close(fd);
		return;
	}
	c = conn_slot(w);
	if (!c ||
	    (b->acl && xd_acl_verdict(b->acl, (const struct sockaddr *)peer) == XD_VERDICT_DROP)) {
		if (c) {
			xd_count(&w->c.denied_closed, 1);
			c->next_free = w->free_head;
			w->free_head = (uint32_t)(c - w->conns);
		}
		atomic_fetch_sub(&t->clients[bucket], 1);
		atomic_fetch_sub(&t->open, 1);
		close(fd);
		return;
	}
	memset(&c->peer, 0, sizeof(*c) - offsetof(struct tcp_conn, peer));
	c->fd = fd;
	c->bucket = bucket;
	c->queries = c->owed = 0;
	c->writing = c->last = false;
	c->reading = true;
	c->born = c->active = w->now;
	c->msg_start = c->stalled = 0;
	c->peer = *peer;
	if (w->core.tap) {
		socklen_t len = sizeof(c->local);

		getsockname(fd, (struct sockaddr *)&c->local, &len);
	}
	/* Answers go out whole, and a deferred one alone: nothing to wait for. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.data.u64 = EV(EV_CONN, c - w->conns);
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		w->open++;
		conn_close(w, c);
		return;
	}
	w->open++;
	xd_count(&w->c.connections, 1);
}

/* Takes the worker's listening sockets out of its epoll set, or puts
 * them back. */
static void listen_watch(struct tcp_worker *w, bool on)
{
	for (int i = 0; i < w->nfds; i++) {
		struct epoll_event ev = { .events = on ? EPOLLIN : 0,
					  .data.u64 = EV(EV_LISTEN, i) };

		epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->fds[i], &ev);
	}
	w->accept_paused_until = on ? 0 : w->now + XD_TCP_ACCEPT_PAUSE_MS;
}

static void accept_some(struct tcp_worker *w, int lfd)
{
	for (int i = 0; i < XD_TCP_EVENTS; i++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* The connection waits in the backlog, and the socket
				 * stays readable: accepting again at once would spin
				 * until a descriptor or memory is free. */
				xd_count(&w->c.rejected, 1);
				listen_watch(w, false);
			}
			return;
		}
		if (peer.ss_family != AF_INET && peer.ss_family != AF_INET6) {
			close(fd);
			continue;
		}
		conn_open(w, fd, &peer);
	}
}

/* ---- deadlines ------------------------------------------------------------------ */

/* What the socket's send queue holds (0 when it cannot be read: then it
 * never seems to shrink). */
static uint32_t send_queue(const struct tcp_conn *c)
{
	int unsent;

	return ioctl(c->fd, SIOCOUTQ, &unsent) < 0 || unsent < 0 ? 0 : (uint32_t)unsent;
}

/*
 * Whether the client took bytes since the last look, though the worker
 * could write none: the kernel signals a socket writable again only once
 * half its send queue has gone, which at a secondary's pace can take
 * longer than the io timeout.  The queue shrinking is progress too.
 */
static bool still_moving(struct tcp_conn *c)
{
	uint32_t unsent = send_queue(c);

	if (unsent >= c->unsent)
		return false;
	c->unsent = unsent;
	return true;
}

static void sweep(struct tcp_worker *w)
{
	const struct xd_tcp_config *cfg = &w->t->cfg;

	for (uint32_t i = 0; i < w->nconns; i++) {
		struct tcp_conn *c = &w->conns[i];

		if (c->fd < 0)
			continue;
		/* The first look after output got stuck is the mark that
		 * progress is measured from. */
		if (c->stalled && c->unsent == UINT32_MAX)
			c->unsent = send_queue(c);
		if (c->stalled && w->now - c->stalled >= cfg->io_timeout_ms && still_moving(c))
			c->stalled = w->now;
		if ((c->stalled && w->now - c->stalled >= cfg->io_timeout_ms) ||
		    (c->msg_start && w->now - c->msg_start >= cfg->io_timeout_ms)) {
			xd_count(&w->c.io_timeouts, 1);
			conn_close(w, c);
		} else if (cfg->lifetime_ms && w->now - c->born >= cfg->lifetime_ms && !c->last) {
			xd_count(&w->c.limit_closed, 1);
			c->last = true;
			if (!owed_bytes(c) && !c->owed && !c->xfr)
				conn_close(w, c);
			else
				set_events(w, c, false, c->writing);
		} else if (!owed_bytes(c) && !c->owed && !c->xfr && !c->msg_start &&
			   w->now - c->active >= cfg->idle_timeout_ms) {
			xd_count(&w->c.idle_closed, 1);
			conn_close(w, c);
		}
	}
	w->next_sweep = w->now + XD_TCP_SWEEP_MS;
}

/* ---- the resolver hooks' answers -------------------------------------------------- */

struct tcp_sender {
	struct tcp_worker *w;
	uint64_t sent;
};

static bool sender_room(void *arg)
{
	(void)arg;
	return true; /* every answer goes to its connection's own buffer */
}

static uint8_t *sender_reserve(void *arg, const void *route, size_t *cap)
{
	struct tcp_sender *s = arg;

	(void)route;
	*cap = UINT16_MAX;
	return s->w->resp + 2;
}

static void sender_put(void *arg, const void *route_arg, uint8_t *buf, int len)
{
	struct tcp_sender *s = arg;
	struct tcp_worker *w = s->w;
	struct tcp_route route;
	struct tcp_conn *c;

	(void)buf;
	memcpy(&route, route_arg, sizeof(route));
	c = route.index < w->nconns ? &w->conns[route.index] : NULL;
	if (!c || c->fd < 0 || c->gen != route.gen)
		return; /* the client left meanwhile */
	c->owed--;
	if (len > 0 && put_answer(w, c, w->resp, len))
		s->sent++;
	conn_flush(w, c);
}

static uint64_t sender_flush(void *arg)
{
	struct tcp_sender *s = arg;
	uint64_t sent = s->sent;

	s->sent = 0;
	return sent;
}

static void serve_resolver(struct tcp_worker *w)
{
	struct tcp_sender sender = { .w = w };
	const struct xd_core_sender ops = { sender_room, sender_reserve, sender_put, sender_flush,
					    &sender };

	xd_core_serve_resolver(&w->core, &ops, 256);
}

/* ---- the worker ----------------------------------------------------------------- */

static void *worker_main(void *arg)
{
	struct tcp_worker *w = arg;
	struct epoll_event ev[XD_TCP_EVENTS];

	for (;;) {
		int n, timeout;

		if (w->core.ep && xd_resolver_busy(w->core.ep))
			serve_resolver(w);
		timeout = xd_core_sleep_ms(
			&w->core, w->open || w->accept_paused_until ? XD_TCP_SWEEP_MS : -1);
		n = epoll_wait(w->epfd, ev, XD_TCP_EVENTS, timeout);
		if (w->core.ep)
			xd_resolver_awake(w->core.ep);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			xd_engine_worker_failed(w->core.engine, "TCP worker %d: epoll_wait: %s",
						w->core.reader - XD_READER_TCP_BASE,
						strerror(errno));
			break;
		}
		w->now = clock_ms();
		for (int i = 0; i < n; i++) {
			uint32_t kind = (uint32_t)(ev[i].data.u64 >> 32);
			uint32_t index = (uint32_t)ev[i].data.u64;

			if (kind == EV_STOP) {
				batch_end(w);
				return NULL;
			}
			if (kind == EV_LISTEN)
				accept_some(w, w->fds[index]);
			else if (kind == EV_CONN)
				conn_event(w, index, ev[i].events);
		}
		batch_end(w);
		if (w->accept_paused_until && w->now >= w->accept_paused_until)
			listen_watch(w, true);
		if (w->open && w->now >= w->next_sweep)
			sweep(w);
	}
	return NULL;
}

static int worker_open(struct xd_tcp *t, struct tcp_worker *w, const struct xd_listen *listen,
		       struct xd_error *err)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV(EV_STOP, 0) };

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return xd_errorf(err, -errno, "epoll: %s", strerror(errno));
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, t->stopfd, &ev))
		return xd_errorf(err, -errno, "epoll: %s", strerror(errno));
	for (int i = 0; i < t->nlisten; i++) {
		/* Port 0: the first socket picks one, the rest share it. */
		uint16_t port = listen[i].port ? listen[i].port : (uint16_t)t->ports[i];
		int bound = 0, fd = xd_listen_open(&listen[i], SOCK_STREAM, port, &bound, err);

		if (fd < 0)
			return fd;
		w->fds[w->nfds++] = fd;
		t->ports[i] = bound;
		ev.data.u64 = EV(EV_LISTEN, i);
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev))
			return xd_errorf(err, -errno, "epoll: %s", strerror(errno));
	}
	if (t->e->resolver) {
		int rc = xd_resolver_attach(t->e->resolver, w->core.reader, true, &w->core.ep, err);

		if (rc)
			return rc;
		ev.data.u64 = EV(EV_RESOLVER, 0);
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, xd_resolver_endpoint_fd(w->core.ep), &ev))
			return xd_errorf(err, -errno, "epoll: %s", strerror(errno));
	}
	return 0;
}

static void tcp_free(struct xd_tcp *t)
{
	uint64_t one = 1;

	if (write(t->stopfd, &one, sizeof(one)) < 0) {
		/* eventfd writes fail only on overflow: it is already set. */
	}
	for (int i = 0; i < t->nworkers; i++) {
		struct tcp_worker *w = t->workers[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		for (uint32_t k = 0; k < w->nconns; k++)
			if (w->conns[k].fd >= 0)
				conn_close(w, &w->conns[k]);
		free(w->conns);
		for (int k = 0; k < w->nfds; k++)
			close(w->fds[k]);
		if (w->epfd >= 0)
			close(w->epfd);
		xd_rrl_state_release(&w->core.rrl);
		free(w);
	}
	free(t->clients);
	close(t->stopfd);
	free(t);
}

static int check_config(const struct xd_tcp_config *cfg, int nlisten, struct xd_error *err)
{
	if (cfg->workers < 1 || cfg->workers > XD_TCP_WORKERS_MAX)
		return xd_errorf(err, -EINVAL, "%d TCP workers: 1 to %d", cfg->workers,
				 XD_TCP_WORKERS_MAX);
	if (nlisten < 1 || nlisten > XD_LISTEN_MAX)
		return xd_errorf(err, -EINVAL, "need 1 to %d listen addresses", XD_LISTEN_MAX);
	if (!cfg->max_connections || !cfg->max_client_connections || !cfg->max_transfers ||
	    !cfg->idle_timeout_ms || !cfg->io_timeout_ms)
		return xd_errorf(err, -EINVAL,
				 "TCP connection, transfer and time limits "
				 "must be above 0");
	return 0;
}

int xd_engine_tcp_start(struct xd_engine *e, const struct xd_listen *listen, int nlisten,
			const struct xd_tcp_config *cfg, struct xd_error *err)
{
	struct xd_tcp *t;
	int rc;

	if (e->tcp)
		return xd_errorf(err, -EBUSY, "TCP workers already run");
	rc = check_config(cfg, nlisten, err);
	if (rc)
		return rc;
	t = calloc(1, sizeof(*t) + cfg->workers * sizeof(t->workers[0]));
	if (!t)
		return xd_errorf(err, -ENOMEM, "out of memory for the TCP workers");
	t->e = e;
	t->cfg = *cfg;
	t->nlisten = nlisten;
	t->clients = calloc(XD_TCP_CLIENT_BUCKETS, sizeof(*t->clients));
	t->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!t->clients || t->stopfd < 0 ||
	    getrandom(t->key, sizeof(t->key), 0) != sizeof(t->key)) {
		rc = xd_errorf(err, -ENOMEM, "cannot set the TCP workers up: %s", strerror(errno));
		free(t->clients);
		if (t->stopfd >= 0)
			close(t->stopfd);
		free(t);
		return rc;
	}
	for (int i = 0; i < cfg->workers && rc == 0; i++) {
		struct tcp_worker *w = calloc(1, sizeof(*w));

		if (!w) {
			rc = xd_errorf(err, -ENOMEM, "out of memory for a TCP worker");
			break;
		}
		t->workers[t->nworkers++] = w;
		w->t = t;
		w->epfd = -1;
		w->free_head = NO_CONN;
		w->core.engine = e;
		w->core.reader = XD_READER_TCP_BASE + i;
		w->core.stats = &w->stats;
		w->core.tap = xd_engine_dnstap_ring(e, w->core.reader);
		w->core.answer_flags = XD_ANSWER_TCP;
		rc = worker_open(t, w, listen, err);
	}
	for (int i = 0; i < t->nworkers && rc == 0; i++) {
		rc = -pthread_create(&t->workers[i]->thread, NULL, worker_main, t->workers[i]);
		t->workers[i]->started = rc == 0;
		if (rc)
			xd_errorf(err, rc, "cannot start a TCP worker thread: %s", strerror(-rc));
	}
	if (rc) {
		tcp_free(t);
		return rc;
	}
	e->tcp = t;
	return 0;
}

int xd_engine_tcp_stop(struct xd_engine *e)
{
	if (!e->tcp)
		return 0;
	tcp_free(e->tcp);
	e->tcp = NULL;
	return 0;
}

int xd_engine_tcp_port(const struct xd_engine *e, int listen_index)
{
	if (!e->tcp || listen_index < 0 || listen_index >= e->tcp->nlisten)
		return -EINVAL;
	return e->tcp->ports[listen_index];
}

void xd_engine_tcp_stats(const struct xd_engine *e, struct xd_tcp_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!e->tcp)
		return;
	for (int i = 0; i < e->tcp->nworkers; i++) {
		const struct tcp_worker *w = e->tcp->workers[i];
		struct xd_worker_stats core;
		const uint64_t *src = (const uint64_t *)&core;
		uint64_t *dst = (uint64_t *)&out->core;

		xd_worker_stats_read(&w->stats, &core);
		for (size_t k = 0; k < sizeof(core) / sizeof(uint64_t); k++)
			dst[k] += src[k];
#define ADD(name) (out->name += __atomic_load_n(&w->c.name, __ATOMIC_RELAXED))
		ADD(connections);
		ADD(rejected);
		ADD(client_rejected);
		ADD(denied_closed);
		ADD(idle_closed);
		ADD(io_timeouts);
		ADD(limit_closed);
		ADD(transfers);
		ADD(transfers_refused);
		ADD(transfers_failed);
#undef ADD
	}
	out->open = atomic_load(&e->tcp->open);
}
