/*
 * udp.c - socket-mode UDP workers.  Each worker owns one SO_REUSEPORT socket
 * per listen address, so the kernel spreads flows over workers without a
 * shared queue; each batch is received with one recvmmsg, answered without
 * locks, and sent with one sendmmsg.  A datagram from a source the ACL
 * denies gets REFUSED or nothing, as the ACL says (native/acl.c); answers
 * pass rate limiting when it is on (native/rrl.c).  Queries for names a
 * resolver plugin claims, when its cache has no answer, are deferred
 * (native/resolver.c): the worker keeps them, the hook's thread answers,
 * and the worker sends those answers from the socket the query came to,
 * or SERVFAIL when none came in time.  A worker that holds as many as it
 * may answers SERVFAIL at once.
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

#include "acl.h"
#include "answer.h"
#include "cookie.h"
#include "dnstap.h"
#include "engine_internal.h"
#include "error.h"
#include "resolver.h"
#include "response_counts.h"
#include "rrl.h"
#include "wire.h"

/* 64 matches the AF_XDP batch: large enough to amortise the system call,
 * small enough that a batch's buffers stay in L2. */
#define XD_UDP_BATCH 64
/* Queries are small; anything longer than this is not one we answer. */
#define XD_UDP_QUERY_MAX 4096
/* Responses never exceed the 1232-byte payload we advertise. */
#define XD_UDP_RESPONSE_MAX 1232
#define XD_LISTEN_MAX 64
#define XD_CMSG_SPACE 64

struct xd_udp_worker {
	struct xd_engine *engine;
	pthread_t thread;
	bool started;
	int index;
	int epfd;
	int fds[XD_LISTEN_MAX];
	int nfds;
	struct xd_worker_stats stats;	/* written by the worker only */
	struct xd_response_counts counts;	/* this batch's responses */
	struct xd_rrl_state rrl;	/* the worker's buckets and events */
	struct xd_resolver_endpoint *ep;	/* deferred queries; NULL: no resolver */
	struct xd_dnstap_ring *tap;		/* NULL: no dnstap */
	struct sockaddr_storage local[XD_LISTEN_MAX];	/* fds' own addresses */
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

static void count(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

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

/* What a batch reads once: the published objects and the time. */
struct batch_view {
	const struct xd_image *img;
	const struct xd_acl *acl;
	const struct xd_rrl *rrl;	/* NULL: no rate limiting */
	struct xd_rrl_counts rrl_counts;
	int fd;				/* the socket the batch came from */
	uint64_t now_ns;		/* the resolver's clock; 0: not read */
	uint64_t deferred;		/* handed to the resolver */
	uint64_t resolver_full;		/* SERVFAIL: the worker holds enough */
};

/* How a deferred query's answer leaves: as a fast-path answer would. */
struct udp_route {
	int fd;
	socklen_t addr_len;
	struct sockaddr_in6 addr;	/* or a sockaddr_in */
	uint32_t control_len;
	uint8_t control[XD_CMSG_SPACE] __attribute__((aligned(8)));
};
_Static_assert(sizeof(struct udp_route) <= XD_RESOLVER_ROUTE_MAX, "a UDP route fits");

/* Hands query i to the resolver hook that the core named in ctx; false
 * when the worker cannot hold it. */
static bool defer_query(struct xd_udp_worker *w, struct batch_view *v,
			const struct xd_answer_ctx *ctx, struct batch *b, int i)
{
	struct msghdr *rx = &b->rx[i].msg_hdr;
	const struct sockaddr_storage *ss = &b->addr[i];
	struct udp_route route = { .fd = v->fd, .addr_len = rx->msg_namelen };
	uint16_t port;

	if (rx->msg_namelen > sizeof(route.addr))
		return false;
	memcpy(&route.addr, ss, rx->msg_namelen);
	route.control_len = reply_control(rx, route.control);
	port = ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port :
		     ((const struct sockaddr_in6 *)ss)->sin6_port);
	if (!v->now_ns)
		v->now_ns = xd_resolver_clock();
	return xd_resolver_defer(w->ep, ctx->hook, &ctx->client, port, b->query[i],
				 b->rx[i].msg_len, &route, sizeof(route), v->now_ns) == 0;
}

/* A query the answering core deferred: handed over (nothing to send
 * now: 0), else SERVFAIL at once, for the fast path never waits. */
static int answer_deferred(struct xd_udp_worker *w, struct batch_view *v,
			   struct xd_answer_ctx *ctx, struct batch *b, int i, uint8_t *resp)
{
	if (defer_query(w, v, ctx, b, i)) {
		v->deferred++;
		return 0;
	}
	v->resolver_full++;
	return xd_answer_ctx(v->img, ctx, b->query[i], b->rx[i].msg_len, resp,
			     XD_UDP_RESPONSE_MAX, 0);
}

/* The response to query i (REFUSED for a denied source), its length, or 0
 * when nothing is sent; *denied counts the denied sources.  ctx holds the
 * batch's cookie secrets and time; the client is set here.  Answers pass
 * rate limiting, which may drop them or send them truncated. */
static int answer_one(struct xd_udp_worker *w, struct batch_view *v,
		      struct xd_answer_ctx *ctx, struct batch *b, int i, uint8_t *resp,
		      uint64_t *denied)
{
	const struct sockaddr *source = (const struct sockaddr *)&b->addr[i];
	int verdict = xd_acl_verdict(v->acl, source);

	if (verdict == XD_VERDICT_ANSWER) {
		int len;

		xd_client_from_sockaddr(&ctx->client, source);
		len = xd_answer_ctx(v->img, ctx, b->query[i], b->rx[i].msg_len, resp,
				    XD_UDP_RESPONSE_MAX, w->ep ? XD_ANSWER_DEFER : 0);
		if (len == -EAGAIN)
			return answer_deferred(w, v, ctx, b, i, resp);
		if (len > 0 && v->rrl)
			len = xd_rrl_filter(&w->rrl, v->rrl, ctx, resp, len, &v->rrl_counts);
		return len;
	}
	(*denied)++;
	if (verdict == XD_VERDICT_DROP)
		return 0;
	return xd_answer_refused(b->query[i], b->rx[i].msg_len, resp, XD_UDP_RESPONSE_MAX);
}

/* The address socket fd (one of the worker's) is bound to. */
static const struct sockaddr_storage *socket_local(const struct xd_udp_worker *w, int fd)
{
	for (int i = 0; i < w->nfds; i++)
		if (w->fds[i] == fd)
			return &w->local[i];
	return NULL;
}

/* The address (IPv4 in the first 4 bytes) and port of a socket address;
 * false for a family other than IPv4 and IPv6. */
static bool sockaddr_parts(const struct sockaddr_storage *ss, uint8_t *addr, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		memcpy(addr, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		memcpy(addr, &in6->sin6_addr, 16);
		*port = ntohs(in6->sin6_port);
		return true;
	}
	return false;
}

/* Copies query i and its response (len bytes; 0: none sent) into the
 * worker's dnstap ring: the client from the datagram's source, the server
 * from the socket's own address, or from IP_PKTINFO or IPV6_PKTINFO when
 * that is a wildcard. */
static void tap_query(struct xd_udp_worker *w, const struct batch_view *v, struct batch *b,
		      int i, const uint8_t *resp, int len)
{
	struct msghdr *rx = &b->rx[i].msg_hdr;
	const struct sockaddr_storage *local = socket_local(w, v->fd);
	struct xd_dnstap_event ev = {
		.family = (uint8_t)b->addr[i].ss_family,
		.query = b->query[i],
		.query_len = (uint16_t)b->rx[i].msg_len,
		.response = len > 0 ? resp : NULL,
		.response_len = len > 0 ? (uint16_t)len : 0,
	};

	if (!sockaddr_parts(&b->addr[i], ev.client, &ev.client_port))
		return;
	if (local)
		sockaddr_parts(local, ev.server, &ev.server_port);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(rx); c; c = CMSG_NXTHDR(rx, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO)
			memcpy(ev.server, &((struct in_pktinfo *)CMSG_DATA(c))->ipi_addr, 4);
		else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO)
			memcpy(ev.server, &((struct in6_pktinfo *)CMSG_DATA(c))->ipi6_addr, 16);
	}
	xd_dnstap_put(w->tap, &ev);
}

/* Makes tx[i] the response in response[i] (len bytes) to name, from the
 * address that control (controllen bytes; 0: none) names. */
static void put_tx(struct xd_udp_worker *w, struct batch *b, int i, int len, void *name,
		   socklen_t namelen, void *control, size_t controllen)
{
	struct msghdr *tx = &b->tx[i].msg_hdr;

	if (xd_get16(b->response[i] + 2) & XD_FLAG_TC)
		count(&w->stats.truncated, 1);
	xd_response_counts_add(&w->counts, b->response[i], (size_t)len);
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
 * send, and in *deferred how many went to the resolver. */
static int batch_answer(struct xd_udp_worker *w, struct batch *b, int n, int fd,
			int *deferred)
{
	struct batch_view v = { .img = xd_engine_enter(w->engine, w->index), .fd = fd };
	struct xd_answer_ctx ctx = { 0 };
	uint64_t denied = 0, deferred_before = 0;
	int out = 0;

	/* Under the same epoch as the image: freed only once we leave. */
	v.acl = atomic_load(&w->engine->acl);
	v.rrl = xd_engine_batch_begin(w->engine, &w->rrl, &ctx);
	for (int i = 0; i < n && v.img; i++) {
		struct msghdr *rx = &b->rx[i].msg_hdr;
		int len;

		if (rx->msg_flags & MSG_TRUNC)
			continue;	/* longer than any query we answer */
		len = answer_one(w, &v, &ctx, b, i, b->response[out], &denied);
		/* Deferred queries (-EAGAIN inside answer_one: 0 here with
		 * deferred grown) are the resolver's, answered later. */
		if (w->tap && v.deferred == deferred_before && xd_dnstap_sampled(w->tap))
			tap_query(w, &v, b, i, b->response[out], len);
		deferred_before = v.deferred;
		if (len <= 0)
			continue;
		put_tx(w, b, out, len, rx->msg_name, rx->msg_namelen, b->tx_cmsg[out],
		       reply_control(rx, b->tx_cmsg[out]));
		out++;
	}
	xd_engine_leave(w->engine, w->index);
	xd_response_counts_flush(&w->counts, w->stats.rcode, w->stats.qtype);
	if (denied)
		count(&w->stats.denied, denied);
	if (v.rrl_counts.limited) {
		count(&w->stats.limited, v.rrl_counts.limited);
		count(&w->stats.slipped, v.rrl_counts.slipped);
	}
	if (v.deferred) {
		count(&w->stats.deferred, v.deferred);
		xd_resolver_defer_done(w->ep);	/* wakes the hooks, once a batch */
	}
	if (v.resolver_full)
		count(&w->stats.resolver_full, v.resolver_full);
	*deferred = (int)v.deferred;
	return out;
}

/* Sends tx[0..n) on fd; returns how many left. */
static int send_batch(int fd, struct batch *b, int n)
{
	int sent = 0;

	while (sent < n) {
		int k = sendmmsg(fd, b->tx + sent, n - sent, 0);

		if (k <= 0)
			break;	/* a full socket buffer: drop, like the NIC would */
		sent += k;
	}
	return sent;
}

/* Sends what the resolver has for this worker: the hooks' answers and
 * SERVFAIL for the queries whose time is up, each from the socket its
 * query came to, in batches of sendmmsg per socket. */
static void serve_resolver(struct xd_udp_worker *w, struct batch *b)
{
	struct xd_answer_ctx ctx = { 0 };
	struct xd_rrl_counts rrl_counts = { 0 };
	struct xd_resolver_work work;
	const struct xd_image *img = xd_engine_enter(w->engine, w->index);
	const struct xd_rrl *rrl = xd_engine_batch_begin(w->engine, &w->rrl, &ctx);
	uint64_t now = xd_resolver_clock(), sent = 0, lost = 0, expired = 0;
	int out = 0, fd = -1;

	/* Bounded, so that the sockets get their turn; what is left makes
	 * the next sleep a poll (sleep_ms). */
	for (int done = 0; done < 4 * XD_UDP_BATCH && xd_resolver_next(w->ep, now, &work);
	     done++) {
		const struct udp_route *route = (const struct udp_route *)work.slot->route;
		int len;

		if (out && (route->fd != fd || out == XD_UDP_BATCH)) {
			int k = send_batch(fd, b, out);

			sent += k;
			lost += out - k;
			out = 0;
		}
		fd = route->fd;
		expired += !work.reply;
		len = img ? xd_resolver_respond(img, &ctx, &work, b->response[out],
						XD_UDP_RESPONSE_MAX) : 0;
		if (len > 0 && rrl)
			len = xd_rrl_filter(&w->rrl, rrl, &ctx, b->response[out], len, &rrl_counts);
		if (len <= 0) {
			lost++;
			continue;
		}
		put_tx(w, b, out, len, (void *)&route->addr, route->addr_len,
		       (void *)route->control, route->control_len);
		out++;
	}
	xd_engine_leave(w->engine, w->index);
	xd_response_counts_flush(&w->counts, w->stats.rcode, w->stats.qtype);
	if (out) {
		int k = send_batch(fd, b, out);

		sent += k;
		lost += out - k;
	}
	if (sent)
		count(&w->stats.answered, sent);
	if (lost)
		count(&w->stats.dropped, lost);
	if (expired)
		count(&w->stats.resolver_expired, expired);
	if (rrl_counts.limited) {
		count(&w->stats.limited, rrl_counts.limited);
		count(&w->stats.slipped, rrl_counts.slipped);
	}
}

static void serve_socket(struct xd_udp_worker *w, struct batch *b, int fd)
{
	for (;;) {
		int n, out, sent = 0, deferred = 0;

		batch_prepare_rx(b);
		n = recvmmsg(fd, b->rx, XD_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		count(&w->stats.received, n);
		count(&w->stats.batches, 1);
		out = batch_answer(w, b, n, fd, &deferred);
		sent = send_batch(fd, b, out);
		count(&w->stats.answered, sent);
		count(&w->stats.dropped, n - sent - deferred);
		/* Between full batches too: a socket that never runs dry must
		 * not keep the hooks' answers (and the deadlines) waiting. */
		if (w->ep && xd_resolver_busy(w->ep))
			serve_resolver(w, b);
		if (n < XD_UDP_BATCH)
			return;
	}
}

/* How long the worker may sleep: until its oldest deferred query's
 * deadline (rounded up to a millisecond), 0 when answers already wait,
 * -1 (until a datagram comes) without deferred queries. */
static int sleep_ms(struct xd_udp_worker *w)
{
	int64_t ns;

	if (!w->ep)
		return -1;
	ns = xd_resolver_next_deadline(w->ep, xd_resolver_clock());
	if (!xd_resolver_sleep(w->ep))
		return 0;
	return ns < 0 ? -1 : (int)((ns + 999999) / 1000000);
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
		xd_engine_worker_failed(w->engine, "UDP worker %d: out of memory for its "
					"batch", w->index);
		return NULL;
	}
	for (;;) {
		int n;

		if (w->ep && xd_resolver_busy(w->ep))
			serve_resolver(w, b);
		n = epoll_wait(w->epfd, ev, XD_LISTEN_MAX + 2, sleep_ms(w));
		if (w->ep)
			xd_resolver_awake(w->ep);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			xd_engine_worker_failed(w->engine, "UDP worker %d: epoll_wait: %s",
						w->index, strerror(errno));
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

static int parse_address(const struct xd_listen *l, uint16_t port,
			 struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, l->host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, l->host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static int open_socket(const struct xd_listen *l, uint16_t port, int *bound_port,
		       struct xd_error *err)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd, rc;

	if (parse_address(l, port, &ss, &len)) {
		snprintf(err->message, sizeof(err->message),
			 "listen address %s is not a numeric IPv4 or IPv6 address",
			 l->host);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)))
		goto out_close;
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)))
		goto out_close;
	/* Only a wildcard bind needs to learn the query's destination (see
	 * reply_control); elsewhere it costs about 1% for nothing. */
	if (is_wildcard(&ss) && (ss.ss_family == AF_INET6 ?
	    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) :
	    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))))
		goto out_close;
	if (bind(fd, (struct sockaddr *)&ss, len))
		goto out_close;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		goto out_close;
	*bound_port = ntohs(ss.ss_family == AF_INET ?
			    ((struct sockaddr_in *)&ss)->sin_port :
			    ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;

out_close:
	rc = -errno;
	close(fd);
	errno = -rc;
out_errno:
	rc = -errno;
	snprintf(err->message, sizeof(err->message), "UDP %s port %u: %s",
		 l->host, port, strerror(-rc));
	return rc;
}

static int worker_open(struct xd_udp *u, struct xd_udp_worker *w,
		       const struct xd_listen *listen, int nlisten,
		       struct xd_error *err)
{
	struct epoll_event ev = { .events = EPOLLIN };

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		snprintf(err->message, sizeof(err->message), "epoll: %s",
			 strerror(errno));
		return -errno;
	}
	ev.data.fd = EV_STOP;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, u->stopfd, &ev))
		return -errno;
	for (int i = 0; i < nlisten; i++) {
		/* Port 0: the first socket picks one, the rest share it. */
		uint16_t port = listen[i].port ? listen[i].port : u->ports[i];
		int bound = 0;
		int fd = open_socket(&listen[i], port, &bound, err);
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
	int rc = xd_resolver_attach(w->engine->resolver, w->index, &w->ep, err);

	if (rc)
		return rc;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, xd_resolver_endpoint_fd(w->ep), &ev))
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
		xd_rrl_state_release(&w->rrl);
	}
	close(u->stopfd);
	free(u);
}

int xd_engine_udp_start(struct xd_engine *e, const struct xd_listen *listen,
			int nlisten, int workers, struct xd_error *err)
{
	struct xd_udp *u;
	int rc = 0;

	if (e->udp) {
		snprintf(err->message, sizeof(err->message), "UDP workers already run");
		return -EBUSY;
	}
	if (workers < 1 || workers > XD_READER_XDP_BASE || nlisten < 1 ||
	    nlisten > XD_LISTEN_MAX) {
		snprintf(err->message, sizeof(err->message),
			 "need 1 to %d workers and 1 to %d listen addresses",
			 XD_READER_XDP_BASE, XD_LISTEN_MAX);
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

		w->engine = e;
		w->index = i;
		w->epfd = -1;
		w->tap = xd_engine_dnstap_ring(e, i);
		u->nworkers = i + 1;
		rc = worker_open(u, w, listen, nlisten, err);
		if (rc == 0 && e->resolver)
			rc = watch_resolver(w, err);
	}
	for (int i = 0; i < workers && rc == 0; i++) {
		rc = -pthread_create(&u->workers[i].thread, NULL, worker_main,
				     &u->workers[i]);
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

int xd_engine_worker_stats(const struct xd_engine *e, int worker,
			   struct xd_worker_stats *out)
{
	const struct xd_worker_stats *s;

	if (!e->udp || worker < 0 || worker >= e->udp->nworkers)
		return -EINVAL;
	s = &e->udp->workers[worker].stats;
	out->received = __atomic_load_n(&s->received, __ATOMIC_RELAXED);
	out->answered = __atomic_load_n(&s->answered, __ATOMIC_RELAXED);
	out->dropped = __atomic_load_n(&s->dropped, __ATOMIC_RELAXED);
	out->truncated = __atomic_load_n(&s->truncated, __ATOMIC_RELAXED);
	out->batches = __atomic_load_n(&s->batches, __ATOMIC_RELAXED);
	out->denied = __atomic_load_n(&s->denied, __ATOMIC_RELAXED);
	out->limited = __atomic_load_n(&s->limited, __ATOMIC_RELAXED);
	out->slipped = __atomic_load_n(&s->slipped, __ATOMIC_RELAXED);
	out->deferred = __atomic_load_n(&s->deferred, __ATOMIC_RELAXED);
	out->resolver_full = __atomic_load_n(&s->resolver_full, __ATOMIC_RELAXED);
	out->resolver_expired = __atomic_load_n(&s->resolver_expired, __ATOMIC_RELAXED);
	for (int i = 0; i < XD_RCODES; i++)
		out->rcode[i] = __atomic_load_n(&s->rcode[i], __ATOMIC_RELAXED);
	for (int i = 0; i < XD_QTYPE_BUCKETS; i++)
		out->qtype[i] = __atomic_load_n(&s->qtype[i], __ATOMIC_RELAXED);
	return 0;
}

int xd_udp_rrl_events(struct xd_udp *u, struct xd_rrl_event *out, int max)
{
	int n = 0;

	for (int i = 0; i < u->nworkers && n < max; i++)
		n += xd_rrl_ring_take(&u->workers[i].rrl.ring, out + n, max - n);
	return n;
}
