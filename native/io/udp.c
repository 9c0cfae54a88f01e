/*
 * udp.c - socket-mode UDP workers: a transport of the worker core
 * (worker_core.c), which answers.  Each worker owns one SO_REUSEPORT socket
 * per listen address, so the kernel spreads flows over workers without a
 * shared queue; each batch is received with one recvmmsg, answered without
 * locks (the source ACL, rate limiting and the hand-off to resolver hooks
 * are the core's), and sent with one sendmmsg.  A deferred query's answer
 * leaves from the socket it came to, to the address it came from.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/dnstap.h"
#include "io/listen.h"
#include "engine_internal.h"
#include "error.h"
#include "io/resolver.h"
#include "answer/rrl.h"
#include "wire/wire.h"
#include "io/worker_core.h"

/* 64 matches the AF_XDP batch: large enough to amortise the system call,
 * small enough that a batch's buffers stay in L2. */
#define XD_UDP_BATCH 64
/* Queries are small; anything longer than this is not one we answer. */
#define XD_UDP_QUERY_MAX 4096
/* Responses never exceed the 1232-byte payload we advertise. */
#define XD_UDP_RESPONSE_MAX 1232
#define XD_CMSG_SPACE 64

struct xd_udp_worker {
	struct xd_worker_core core; /* its reader slot is the worker's index */
	struct xd_worker_stats stats; /* written by the worker only */
	pthread_t thread;
	bool started;
	int epfd;
	int fds[XD_LISTEN_MAX];
	int nfds;
	struct sockaddr_storage local[XD_LISTEN_MAX]; /* fds' own addresses */
};

struct xd_udp {
	int stopfd;
	int nlisten;
	int ports[XD_LISTEN_MAX];
	int nworkers;
	struct xd_udp_worker workers[];
};

struct batch {
	struct mmsghdr rx[XD_UDP_BATCH];
	struct mmsghdr tx[XD_UDP_BATCH];
	struct iovec rx_iov[XD_UDP_BATCH];
	struct iovec tx_iov[XD_UDP_BATCH];
	struct sockaddr_storage addr[XD_UDP_BATCH];
	uint8_t rx_cmsg[XD_UDP_BATCH][XD_CMSG_SPACE];
	uint8_t tx_cmsg[XD_UDP_BATCH][XD_CMSG_SPACE];
	uint8_t query[XD_UDP_BATCH][XD_UDP_QUERY_MAX];
	uint8_t response[XD_UDP_BATCH][XD_UDP_RESPONSE_MAX];
};

static void batch_prepare_rx(struct batch *b)
{
	for (int i = 0; i < XD_UDP_BATCH; i++) {
		struct msghdr *h = &b->rx[i].msg_hdr;

		b->rx_iov[i].iov_base = b->query[i];
		b->rx_iov[i].iov_len = XD_UDP_QUERY_MAX;
		memset(h, 0, sizeof(*h));
		h->msg_name = &b->addr[i];
		h->msg_namelen = sizeof(b->addr[i]);
		h->msg_iov = &b->rx_iov[i];
		h->msg_iovlen = 1;
		h->msg_control = b->rx_cmsg[i];
		h->msg_controllen = XD_CMSG_SPACE;
	}
}

/*
 * Replies leave from the address the query came to: for a socket bound to a
 * wildcard address the kernel would otherwise pick one, and the client would
 * drop an answer from an address it did not ask.
 */
static size_t reply_control(struct msghdr *rx, uint8_t *out)
{
	struct cmsghdr *c;

	for (c = CMSG_FIRSTHDR(rx); c; c = CMSG_NXTHDR(rx, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo *in = (struct in_pktinfo *)CMSG_DATA(c);
			struct cmsghdr *o = (struct cmsghdr *)out;
			struct in_pktinfo pi = { 0 };

			pi.ipi_spec_dst = in->ipi_addr;
			o->cmsg_level = IPPROTO_IP;
			o->cmsg_type = IP_PKTINFO;
			o->cmsg_len = CMSG_LEN(sizeof(pi));
			memcpy(CMSG_DATA(o), &pi, sizeof(pi));
			return CMSG_SPACE(sizeof(pi));
		}
		if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct cmsghdr *o = (struct cmsghdr *)out;
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			pi.ipi6_ifindex = 0;
			o->cmsg_level = IPPROTO_IPV6;
			o->cmsg_type = IPV6_PKTINFO;
			o->cmsg_len = CMSG_LEN(sizeof(pi));
			memcpy(CMSG_DATA(o), &pi, sizeof(pi));
			return CMSG_SPACE(sizeof(pi));
		}
	}
	return 0;
}

/* How a deferred query's answer leaves: as a fast-path answer would. */
struct udp_route {
	int fd;
	socklen_t addr_len;
	struct sockaddr_in6 addr; /* or a sockaddr_in */
	uint32_t control_len;
	uint8_t control[XD_CMSG_SPACE] __attribute__((aligned(8)));
};
_Static_assert(sizeof(struct udp_route) <= XD_RESOLVER_ROUTE_MAX, "a UDP route fits");

/* A datagram of the batch: the socket it came from, and which. */
struct udp_query {
	struct batch *b;
	int i;
	int fd;
};

static uint16_t source_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port :
						((const struct sockaddr_in6 *)ss)->sin6_port);
}

static size_t make_route(const void *arg, void *out, uint16_t *port)
{
	const struct udp_query *q = arg;
	struct msghdr *rx = &q->b->rx[q->i].msg_hdr;
	struct udp_route *route = out;

	if (rx->msg_namelen > sizeof(route->addr))
		return 0;
	memset(route, 0, sizeof(*route));
	route->fd = q->fd;
	route->addr_len = rx->msg_namelen;
	memcpy(&route->addr, &q->b->addr[q->i], rx->msg_namelen);
	route->control_len = reply_control(rx, route->control);
	*port = source_port(&q->b->addr[q->i]);
	return sizeof(*route);
}

/* The address socket fd (one of the worker's) is bound to. */
static const struct sockaddr_storage *socket_local(const struct xd_udp_worker *w, int fd)
{
	for (int i = 0; i < w->nfds; i++)
		if (w->fds[i] == fd)
			return &w->local[i];
	return NULL;
}

/* Copies query i and its response (len bytes; 0: none sent) into the
 * worker's dnstap ring: the client from the datagram's source, the server
 * from the socket's own address, or from IP_PKTINFO or IPV6_PKTINFO when
 * that is a wildcard. */
static void tap_query(struct xd_udp_worker *w, int fd, struct batch *b, int i, const uint8_t *resp,
		      int len)
{
	struct msghdr *rx = &b->rx[i].msg_hdr;
	const struct sockaddr_storage *local = socket_local(w, fd);
	struct xd_dnstap_event ev = {
		.family = (uint8_t)b->addr[i].ss_family,
		.query = b->query[i],
		.query_len = (uint16_t)b->rx[i].msg_len,
		.response = len > 0 ? resp : NULL,
		.response_len = len > 0 ? (uint16_t)len : 0,
	};

	if (!xd_sockaddr_parts(&b->addr[i], ev.client, &ev.client_port))
		return;
	if (local)
		xd_sockaddr_parts(local, ev.server, &ev.server_port);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(rx); c; c = CMSG_NXTHDR(rx, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
			memcpy(ev.server, &((struct in_pktinfo *)CMSG_DATA(c))->ipi_addr, 4);
		else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO)
			memcpy(ev.server, &((struct in6_pktinfo *)CMSG_DATA(c))->ipi6_addr, 16);
	}
	xd_dnstap_put(w->core.tap, &ev);
}

/* Makes tx[i] the response in response[i] (len bytes) to name, from the
 * address that control (controllen bytes; 0: none) names. */
static void put_tx(struct batch *b, int i, int len, void *name, socklen_t namelen, void *control,
		   size_t controllen)
{
	struct msghdr *tx = &b->tx[i].msg_hdr;

	b->tx_iov[i].iov_base = b->response[i];
	b->tx_iov[i].iov_len = len;
	memset(tx, 0, sizeof(*tx));
	tx->msg_name = name;
	tx->msg_namelen = namelen;
	tx->msg_iov = &b->tx_iov[i];
	tx->msg_iovlen = 1;
	tx->msg_control = controllen ? control : NULL;
	tx->msg_controllen = controllen;
}

/* Answers rx[0..n) from socket fd into tx; returns how many responses to
 * send.  The batch is ended (counted) by the caller, once they left. */
static int batch_answer(struct xd_udp_worker *w, struct xd_core_batch *cb, struct batch *b, int n,
			int fd)
{
	int out = 0;

	for (int i = 0; i < n; i++) {
		struct msghdr *rx = &b->rx[i].msg_hdr;
		struct udp_query q = { b, i, fd };
		struct xd_core_way_back back = { make_route, &q };
		uint64_t deferred = cb->deferred;
		int len;

		if (rx->msg_flags & MSG_TRUNC)
			continue; /* longer than any query we answer */
		len = xd_core_answer(&w->core, cb, (const struct sockaddr *)&b->addr[i],
				     b->query[i], b->rx[i].msg_len, b->response[out],
				     XD_UDP_RESPONSE_MAX, &back);
		/* Deferred queries are the resolver's, logged with its answer. */
		if (w->core.tap && cb->deferred == deferred && xd_dnstap_sampled(w->core.tap))
			tap_query(w, fd, b, i, b->response[out], len);
		if (len <= 0)
			continue;
		put_tx(b, out, len, rx->msg_name, rx->msg_namelen, b->tx_cmsg[out],
		       reply_control(rx, b->tx_cmsg[out]));
		out++;
	}
	return out;
}

/* Sends tx[0..n) on fd; returns how many left. */
static int send_batch(int fd, struct batch *b, int n)
{
	int sent = 0;

	while (sent < n) {
		int k = sendmmsg(fd, b->tx + sent, n - sent, 0);

		if (k <= 0)
			break; /* a full socket buffer: drop, like the NIC would */
		sent += k;
	}
	return sent;
}

/* The resolver hooks' answers leave from the socket each query came to,
 * in batches of sendmmsg per socket. */
struct udp_sender {
	struct batch *b;
	int out;
	int fd;
	uint64_t sent;
};

static bool sender_room(void *arg)
{
	(void)arg;
	return true; /* a full batch is sent before the next answer */
}

static uint8_t *sender_reserve(void *arg, const void *route_arg, size_t *cap)
{
	struct udp_sender *s = arg;
	const struct udp_route *route = route_arg;

	if (s->out && (route->fd != s->fd || s->out == XD_UDP_BATCH)) {
		s->sent += (uint64_t)send_batch(s->fd, s->b, s->out);
		s->out = 0;
	}
	s->fd = route->fd;
	*cap = XD_UDP_RESPONSE_MAX;
	return s->b->response[s->out];
}

static void sender_put(void *arg, const void *route_arg, uint8_t *buf, int len)
{
	struct udp_sender *s = arg;
	const struct udp_route *route = route_arg;

	(void)buf;
	if (len <= 0)
		return;
	put_tx(s->b, s->out, len, (void *)&route->addr, route->addr_len, (void *)route->control,
	       route->control_len);
	s->out++;
}

static uint64_t sender_flush(void *arg)
{
	struct udp_sender *s = arg;
	uint64_t sent;

	if (s->out)
		s->sent += (uint64_t)send_batch(s->fd, s->b, s->out);
	sent = s->sent;
	s->out = 0;
	s->sent = 0;
	return sent;
}

/* Sends what the resolver has for this worker; bounded, so that the
 * sockets get their turn: what is left makes the next sleep a poll. */
static void serve_resolver(struct xd_udp_worker *w, struct batch *b)
{
	struct udp_sender sender = { .b = b, .fd = -1 };
	const struct xd_core_sender ops = { sender_room, sender_reserve, sender_put, sender_flush,
					    &sender };

	xd_core_serve_resolver(&w->core, &ops, 4 * XD_UDP_BATCH);
}

static void serve_socket(struct xd_udp_worker *w, struct batch *b, int fd)
{
	for (;;) {
		struct xd_core_batch cb;
		int n, out;

		batch_prepare_rx(b);
		n = recvmmsg(fd, b->rx, XD_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		xd_core_begin(&w->core, &cb, true);
		out = batch_answer(w, &cb, b, n, fd);
		xd_core_end(&w->core, &cb, (uint64_t)n, (uint64_t)send_batch(fd, b, out));
		/* Between full batches too: a socket that never runs dry must
		 * not keep the hooks' answers (and the deadlines) waiting. */
		if (w->core.ep && xd_resolver_busy(w->core.ep))
			serve_resolver(w, b);
		if (n < XD_UDP_BATCH)
			return;
	}
}

/* epoll data of the two eventfds; sockets are their own fd. */
#define EV_STOP (-1)
#define EV_RESOLVER (-2)

static void *worker_main(void *arg)
{
	struct xd_udp_worker *w = arg;
	struct batch *b = malloc(sizeof(*b));
	struct epoll_event ev[XD_LISTEN_MAX + 2];

	if (!b) {
		xd_engine_worker_failed(w->core.engine,
					"UDP worker %d: out of memory for its "
					"batch",
					w->core.reader);
		return NULL;
	}
	for (;;) {
		int n;

		if (w->core.ep && xd_resolver_busy(w->core.ep))
			serve_resolver(w, b);
		n = epoll_wait(w->epfd, ev, XD_LISTEN_MAX + 2, xd_core_sleep_ms(&w->core, -1));
		if (w->core.ep)
			xd_resolver_awake(w->core.ep);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			xd_engine_worker_failed(w->core.engine, "UDP worker %d: epoll_wait: %s",
						w->core.reader, strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.fd == EV_STOP)
				goto out;
			if (ev[i].data.fd >= 0)
				serve_socket(w, b, ev[i].data.fd);
		}
	}
out:
	free(b);
	return NULL;
}

static int worker_open(struct xd_udp *u, struct xd_udp_worker *w, const struct xd_listen *listen,
		       int nlisten, struct xd_error *err)
{
	struct epoll_event ev = { .events = EPOLLIN };

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		snprintf(err->message, sizeof(err->message), "epoll: %s", strerror(errno));
		return -errno;
	}
	ev.data.fd = EV_STOP;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, u->stopfd, &ev))
		return -errno;
	for (int i = 0; i < nlisten; i++) {
		/* Port 0: the first socket picks one, the rest share it. */
		uint16_t port = listen[i].port ? listen[i].port : u->ports[i];
		int bound = 0;
		int fd = xd_listen_open(&listen[i], SOCK_DGRAM, port, &bound, err);
		socklen_t len = sizeof(w->local[0]);

		if (fd < 0)
			return fd;
		if (getsockname(fd, (struct sockaddr *)&w->local[w->nfds], &len) < 0)
			memset(&w->local[w->nfds], 0, sizeof(w->local[w->nfds]));
		w->fds[w->nfds++] = fd;
		u->ports[i] = bound;
		ev.data.fd = fd;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev))
			return -errno;
	}
	return 0;
}

/* The worker's deferred queries, and its eventfd in its epoll set. */
static int watch_resolver(struct xd_udp_worker *w, struct xd_error *err)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = EV_RESOLVER };
	int rc = xd_resolver_attach(w->core.engine->resolver, w->core.reader, false, &w->core.ep,
				    err);

	if (rc)
		return rc;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, xd_resolver_endpoint_fd(w->core.ep), &ev))
		return xd_errorf(err, -errno, "epoll: %s", strerror(errno));
	return 0;
}

static void workers_close(struct xd_udp *u)
{
	uint64_t one = 1;

	if (write(u->stopfd, &one, sizeof(one)) < 0) {
		/* eventfd writes fail only on overflow: it is already set. */
	}
	for (int i = 0; i < u->nworkers; i++) {
		struct xd_udp_worker *w = &u->workers[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		for (int k = 0; k < w->nfds; k++)
			close(w->fds[k]);
		if (w->epfd >= 0)
			close(w->epfd);
		xd_rrl_state_release(&w->core.rrl);
	}
	close(u->stopfd);
	free(u);
}

int xd_engine_udp_start(struct xd_engine *e, const struct xd_listen *listen, int nlisten,
			int workers, struct xd_error *err)
{
	struct xd_udp *u;
	int rc = 0;

	if (e->udp) {
		snprintf(err->message, sizeof(err->message), "UDP workers already run");
		return -EBUSY;
	}
	if (workers < 1 || workers > XD_READER_XDP_BASE || nlisten < 1 || nlisten > XD_LISTEN_MAX) {
		snprintf(err->message, sizeof(err->message),
			 "need 1 to %d workers and 1 to %d listen addresses", XD_READER_XDP_BASE,
			 XD_LISTEN_MAX);
		return -EINVAL;
	}
	u = calloc(1, sizeof(*u) + workers * sizeof(u->workers[0]));
	if (!u)
		return -ENOMEM;
	u->nlisten = nlisten;
	u->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->stopfd < 0) {
		free(u);
		return -errno;
	}
	for (int i = 0; i < workers && rc == 0; i++) {
		struct xd_udp_worker *w = &u->workers[i];

		w->core.engine = e;
		w->core.reader = i; /* UDP workers' slots come first */
		w->core.stats = &w->stats;
		w->core.tap = xd_engine_dnstap_ring(e, i);
		w->epfd = -1;
		u->nworkers = i + 1;
		rc = worker_open(u, w, listen, nlisten, err);
		if (rc == 0 && e->resolver)
			rc = watch_resolver(w, err);
	}
	for (int i = 0; i < workers && rc == 0; i++) {
		rc = -pthread_create(&u->workers[i].thread, NULL, worker_main, &u->workers[i]);
		u->workers[i].started = rc == 0;
		if (rc)
			snprintf(err->message, sizeof(err->message),
				 "cannot start a worker thread: %s", strerror(-rc));
	}
	if (rc) {
		workers_close(u);
		return rc;
	}
	e->udp = u;
	return 0;
}

int xd_engine_udp_stop(struct xd_engine *e)
{
	if (!e->udp)
		return 0;
	workers_close(e->udp);
	e->udp = NULL;
	return 0;
}

int xd_engine_udp_port(const struct xd_engine *e, int listen_index)
{
	if (!e->udp || listen_index < 0 || listen_index >= e->udp->nlisten)
		return -EINVAL;
	return e->udp->ports[listen_index];
}

int xd_engine_worker_count(const struct xd_engine *e)
{
	return e->udp ? e->udp->nworkers : 0;
}

int xd_engine_worker_stats(const struct xd_engine *e, int worker, struct xd_worker_stats *out)
{
	if (!e->udp || worker < 0 || worker >= e->udp->nworkers)
		return -EINVAL;
	xd_worker_stats_read(&e->udp->workers[worker].stats, out);
	return 0;
}

int xd_udp_rrl_events(struct xd_udp *u, struct xd_rrl_event *out, int max)
{
	int n = 0;

	for (int i = 0; i < u->nworkers && n < max; i++)
		n += xd_rrl_ring_take(&u->workers[i].core.rrl.ring, out + n, max - n);
	return n;
}
