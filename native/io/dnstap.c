/*
 * dnstap.c - sampled dnstap output (see dnstap.h): the producers' rings,
 * the writer thread, the protobuf encoding of dnstap.proto's Dnstap and
 * Message, and the Frame Streams bidirectional handshake over a Unix
 * socket (READY, ACCEPT, START ... STOP, FINISH), which is what
 * fstrm_capture, dnstap-receiver and the Go dnstap tool speak.
 *
 * A lost collector costs nothing but the events: the writer keeps draining
 * (counting them as lost) and connects again once a second.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "io/dnstap.h"
#include "error.h"
#include "wire/wire.h"

/* A worker's ring: 256 KiB holds about 800 events of a typical size,
 * well over what a 10 ms drain interval sees at any sensible sampling. */
#define XD_DNSTAP_RING_BYTES (256u * 1024)
/* The writer drains at least this often. */
#define XD_DNSTAP_DRAIN_MS 10
#define XD_DNSTAP_RECONNECT_NS 1000000000ull
/* A collector that takes nothing for this long is dropped (and tried
 * again later), so that the writer never hangs on it. */
#define XD_DNSTAP_IO_TIMEOUT_MS 1000
/* Room for the largest frame: two 64 KiB messages could not both come
 * from one UDP event, but a TCP event can carry a 64 KiB response. */
#define XD_DNSTAP_OUT_BYTES (256u * 1024)
#define XD_DNSTAP_TEXT_MAX 255

static const char content_type[] = "protobuf:dnstap.Dnstap";

enum {
	FSTRM_ACCEPT = 1,
	FSTRM_START = 2,
	FSTRM_STOP = 3,
	FSTRM_READY = 4,
	FSTRM_FINISH = 5,
	FSTRM_FIELD_CONTENT_TYPE = 1,
};

/* dnstap.proto's enum values. */
enum {
	DT_TYPE_MESSAGE = 1,
	DT_AUTH_QUERY = 1,
	DT_AUTH_RESPONSE = 2,
	DT_INET = 1,
	DT_INET6 = 2,
	DT_UDP = 1,
	DT_TCP = 2,
};

/* An event in a ring: this header, the query, then the response, padded
 * to 8 bytes.  size 0 marks the unused end of the ring before a wrap. */
struct record {
	uint32_t size;
	uint8_t family;
	uint8_t tcp;
	uint16_t client_port;
	uint16_t server_port;
	uint16_t query_len;
	uint16_t response_len;
	uint16_t has_response;
	uint64_t time_sec;
	uint32_t time_nsec;
	uint32_t pad;
	uint8_t client[16];
	uint8_t server[16];
};

struct xd_dnstap_ring {
	struct xd_dnstap_sampler sampler; /* first: dnstap.h reads it so */
	_Atomic uint64_t lost; /* ring full; written by the producer */
	_Atomic uint64_t events;
	_Alignas(64) _Atomic uint64_t head; /* bytes written, ever */
	_Alignas(64) _Atomic uint64_t tail; /* bytes read, ever */
	_Alignas(64) uint8_t data[XD_DNSTAP_RING_BYTES];
};

struct xd_dnstap {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char identity[XD_DNSTAP_TEXT_MAX + 1];
	char version[XD_DNSTAP_TEXT_MAX + 1];
	uint32_t sample;
	bool queries;
	bool responses;
	int nrings;
	_Atomic(struct xd_dnstap_ring *) *rings;
	pthread_mutex_t rings_lock; /* makers of rings */

	pthread_t thread;
	bool started;
	int stopfd;
	int fd; /* the collector; -1: none */
	uint64_t next_connect_ns;
	uint8_t *out;
	size_t out_len;

	pthread_mutex_t stats_lock; /* error and the counters below */
	char error[256];
	uint64_t written;
	uint64_t lost_unconnected;
	uint64_t connects;
	bool connected;
};

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the producers' side ------------------------------------------------------ */

static uint32_t record_size(const struct xd_dnstap_event *ev)
{
	size_t n = sizeof(struct record) + ev->query_len + (ev->response ? ev->response_len : 0);

	return (uint32_t)((n + 7) & ~(size_t)7);
}

void xd_dnstap_put(struct xd_dnstap_ring *r, const struct xd_dnstap_event *ev)
{
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint32_t size = record_size(ev);
	size_t pos = head % XD_DNSTAP_RING_BYTES;
	size_t skip = XD_DNSTAP_RING_BYTES - pos < size ? XD_DNSTAP_RING_BYTES - pos : 0;
	struct record rec = { 0 };
	struct timespec now;

	atomic_store_explicit(&r->events,
			      atomic_load_explicit(&r->events, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (size > XD_DNSTAP_RING_BYTES / 2 || head + skip + size - tail > XD_DNSTAP_RING_BYTES) {
		atomic_store_explicit(&r->lost,
				      atomic_load_explicit(&r->lost, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		return;
	}
	if (skip) {
		/* A record never wraps: the end is marked unused. */
		memset(r->data + pos, 0, sizeof(uint32_t));
		head += skip;
		pos = 0;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	rec.size = size;
	rec.family = ev->family;
	rec.tcp = ev->tcp;
	rec.client_port = ev->client_port;
	rec.server_port = ev->server_port;
	rec.query_len = ev->query_len;
	rec.has_response = ev->response != NULL;
	rec.response_len = ev->response ? ev->response_len : 0;
	rec.time_sec = (uint64_t)now.tv_sec;
	rec.time_nsec = (uint32_t)now.tv_nsec;
	memcpy(rec.client, ev->client, sizeof(rec.client));
	memcpy(rec.server, ev->server, sizeof(rec.server));
	memcpy(r->data + pos, &rec, sizeof(rec));
	memcpy(r->data + pos + sizeof(rec), ev->query, ev->query_len);
	if (ev->response)
		memcpy(r->data + pos + sizeof(rec) + ev->query_len, ev->response, ev->response_len);
	atomic_store_explicit(&r->head, head + size, memory_order_release);
}

struct xd_dnstap_ring *xd_dnstap_ring(struct xd_dnstap *t, int index)
{
	struct xd_dnstap_ring *r;

	if (!t || index < 0 || index >= t->nrings)
		return NULL;
	pthread_mutex_lock(&t->rings_lock);
	r = atomic_load(&t->rings[index]);
	if (!r) {
		r = aligned_alloc(64, sizeof(*r));
		if (r) {
			memset(r, 0, offsetof(struct xd_dnstap_ring, data));
			r->sampler.sample = t->sample;
			r->sampler.countdown = t->sample;
			atomic_store(&t->rings[index], r);
		}
	}
	pthread_mutex_unlock(&t->rings_lock);
	return r;
}

/* ---- protobuf ------------------------------------------------------------------- */

struct pb {
	uint8_t *p;
};

static void pb_varint(struct pb *b, uint64_t v)
{
	while (v >= 0x80) {
		*b->p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*b->p++ = (uint8_t)v;
}

static void pb_uint(struct pb *b, unsigned field, uint64_t v)
{
	pb_varint(b, field << 3);
	pb_varint(b, v);
}

static void pb_fixed32(struct pb *b, unsigned field, uint32_t v)
{
	pb_varint(b, field << 3 | 5);
	for (int i = 0; i < 4; i++)
		*b->p++ = (uint8_t)(v >> (8 * i));
}

static void pb_bytes(struct pb *b, unsigned field, const void *data, size_t len)
{
	pb_varint(b, field << 3 | 2);
	pb_varint(b, len);
	memcpy(b->p, data, len);
	b->p += len;
}

/* dnstap.proto's Message for rec (its query and response follow it). */
static size_t encode_message(uint8_t *out, const struct record *rec, bool response)
{
	const uint8_t *query = (const uint8_t *)(rec + 1);
	size_t alen = rec->family == AF_INET ? 4 : 16;
	struct pb b = { out };
	bool server_known = false;

	for (size_t i = 0; i < alen; i++)
		server_known |= rec->server[i] != 0;
	pb_uint(&b, 1, response ? DT_AUTH_RESPONSE : DT_AUTH_QUERY);
	pb_uint(&b, 2, rec->family == AF_INET ? DT_INET : DT_INET6);
	pb_uint(&b, 3, rec->tcp ? DT_TCP : DT_UDP);
	pb_bytes(&b, 4, rec->client, alen);
	if (server_known)
		pb_bytes(&b, 5, rec->server, alen);
	pb_uint(&b, 6, rec->client_port);
	if (rec->server_port)
		pb_uint(&b, 7, rec->server_port);
	pb_uint(&b, 8, rec->time_sec);
	pb_fixed32(&b, 9, rec->time_nsec);
	if (!response) {
		pb_bytes(&b, 10, query, rec->query_len);
	} else {
		pb_uint(&b, 12, rec->time_sec);
		pb_fixed32(&b, 13, rec->time_nsec);
		pb_bytes(&b, 14, query + rec->query_len, rec->response_len);
	}
	return (size_t)(b.p - out);
}

/* The largest encode_message can write for rec. */
static size_t message_bound(const struct record *rec)
{
	return 96 + (size_t)rec->query_len + rec->response_len;
}

/* One Frame Streams data frame: a 32-bit length, then the Dnstap message. */
static size_t encode_frame(const struct xd_dnstap *t, uint8_t *out, const struct record *rec,
			   bool response)
{
	uint8_t msg[96 + 65536 + 8];
	size_t mlen = encode_message(msg, rec, response);
	struct pb b = { out + 4 };
	uint32_t len;

	if (t->identity[0])
		pb_bytes(&b, 1, t->identity, strlen(t->identity));
	if (t->version[0])
		pb_bytes(&b, 2, t->version, strlen(t->version));
	pb_bytes(&b, 14, msg, mlen);
	pb_uint(&b, 15, DT_TYPE_MESSAGE);
	len = (uint32_t)(b.p - out - 4);
	xd_put32(out, len);
	return len + 4;
}

/* ---- the collector -------------------------------------------------------------- */

static void set_error(struct xd_dnstap *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error(struct xd_dnstap *t, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&t->stats_lock);
	va_start(ap, fmt);
	vsnprintf(t->error, sizeof(t->error), fmt, ap);
	va_end(ap);
	t->connected = false;
	pthread_mutex_unlock(&t->stats_lock);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = recv(fd, p, n, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ECONNRESET;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* A control frame of type `type`, with our content type unless bare. */
static int send_control(int fd, uint32_t type, bool with_type)
{
	uint8_t buf[64];
	size_t clen = 4 + (with_type ? 8 + sizeof(content_type) - 1 : 0);

	xd_put32(buf, 0); /* the escape: a control frame follows */
	xd_put32(buf + 4, (uint32_t)clen);
	xd_put32(buf + 8, type);
	if (with_type) {
		xd_put32(buf + 12, FSTRM_FIELD_CONTENT_TYPE);
		xd_put32(buf + 16, sizeof(content_type) - 1);
		memcpy(buf + 20, content_type, sizeof(content_type) - 1);
	}
	return write_all(fd, buf, 8 + clen);
}

/* Reads one control frame and checks its type; an ACCEPT must name our
 * content type when it names any. */
static int expect_control(int fd, uint32_t type)
{
	uint8_t head[8], body[512];
	uint32_t clen;
	int rc = read_all(fd, head, sizeof(head));

	if (rc < 0)
		return rc;
	clen = xd_get32(head + 4);
	if (xd_get32(head) != 0 || clen < 4 || clen > sizeof(body))
		return -EPROTO;
	rc = read_all(fd, body, clen);
	if (rc < 0)
		return rc;
	if (xd_get32(body) != type)
		return -EPROTO;
	for (size_t off = 4; type == FSTRM_ACCEPT && off + 8 <= clen;) {
		uint32_t flen = xd_get32(body + off + 4);

		if (off + 8 + flen > clen)
			return -EPROTO;
		if (xd_get32(body + off) == FSTRM_FIELD_CONTENT_TYPE &&
		    flen == sizeof(content_type) - 1 &&
		    memcmp(body + off + 8, content_type, flen) == 0)
			return 0;
		off += 8 + flen;
		if (off + 8 > clen)
			return -EPROTONOSUPPORT;
	}
	return 0;
}

static void collector_close(struct xd_dnstap *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	t->out_len = 0;
	t->next_connect_ns = monotonic_ns() + XD_DNSTAP_RECONNECT_NS;
}

static void collector_connect(struct xd_dnstap *t)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = XD_DNSTAP_IO_TIMEOUT_MS / 1000 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0) {
		set_error(t, "cannot make a socket for %s: %s", t->path, strerror(errno));
		t->next_connect_ns = monotonic_ns() + XD_DNSTAP_RECONNECT_NS;
		return;
	}
	t->fd = fd;
	memcpy(sa.sun_path, t->path, sizeof(t->path));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		set_error(t, "cannot connect to %s: %s", t->path, strerror(errno));
		collector_close(t);
		return;
	}
	rc = send_control(fd, FSTRM_READY, true);
	if (rc == 0)
		rc = expect_control(fd, FSTRM_ACCEPT);
	if (rc == 0)
		rc = send_control(fd, FSTRM_START, true);
	if (rc < 0) {
		set_error(t, "%s: no Frame Streams handshake for %s: %s", t->path, content_type,
			  rc == -EPROTONOSUPPORT ? "the collector takes another "
						   "content type" :
						   strerror(-rc));
		collector_close(t);
		return;
	}
	pthread_mutex_lock(&t->stats_lock);
	t->error[0] = '\0';
	t->connected = true;
	t->connects++;
	pthread_mutex_unlock(&t->stats_lock);
}

static void flush_out(struct xd_dnstap *t)
{
	int rc;

	if (t->fd < 0 || !t->out_len)
		return;
	rc = write_all(t->fd, t->out, t->out_len);
	if (rc < 0) {
		set_error(t, "writing to %s: %s", t->path, strerror(-rc));
		collector_close(t);
	}
	t->out_len = 0;
}

/* ---- the writer ----------------------------------------------------------------- */

static void emit(struct xd_dnstap *t, const struct record *rec, bool response)
{
	size_t bound = 4 + 2 * (XD_DNSTAP_TEXT_MAX + 3) + 8 + message_bound(rec) + 4;

	if (t->fd >= 0 && t->out_len + bound > XD_DNSTAP_OUT_BYTES)
		flush_out(t); /* may lose the collector */
	if (t->fd < 0) {
		pthread_mutex_lock(&t->stats_lock);
		t->lost_unconnected++;
		pthread_mutex_unlock(&t->stats_lock);
		return;
	}
	t->out_len += encode_frame(t, t->out + t->out_len, rec, response);
	pthread_mutex_lock(&t->stats_lock);
	t->written++;
	pthread_mutex_unlock(&t->stats_lock);
}

/* Writes what ring r holds; returns how many events it had. */
static unsigned drain_ring(struct xd_dnstap *t, struct xd_dnstap_ring *r)
{
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	unsigned n = 0;

	while (tail < head) {
		size_t pos = tail % XD_DNSTAP_RING_BYTES;
		struct record rec;

		memcpy(&rec.size, r->data + pos, sizeof(rec.size));
		if (rec.size == 0) {
			tail += XD_DNSTAP_RING_BYTES - pos;
			continue;
		}
		memcpy(&rec, r->data + pos, sizeof(rec));
		if (t->queries)
			emit(t, (const struct record *)(r->data + pos), false);
		if (t->responses && rec.has_response)
			emit(t, (const struct record *)(r->data + pos), true);
		tail += rec.size;
		n++;
	}
	atomic_store_explicit(&r->tail, tail, memory_order_release);
	return n;
}

static unsigned drain(struct xd_dnstap *t)
{
	unsigned n = 0;

	for (int i = 0; i < t->nrings; i++) {
		struct xd_dnstap_ring *r = atomic_load_explicit(&t->rings[i], memory_order_acquire);

		if (r)
			n += drain_ring(t, r);
	}
	flush_out(t);
	return n;
}

static bool stopping(struct xd_dnstap *t, int timeout_ms)
{
	struct pollfd p = { .fd = t->stopfd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) > 0;
}

/* The last of the rings, then STOP; a collector gets a second to FINISH. */
static void writer_finish(struct xd_dnstap *t)
{
	drain(t);
	if (t->fd < 0)
		return;
	if (send_control(t->fd, FSTRM_STOP, false) == 0)
		expect_control(t->fd, FSTRM_FINISH);
	close(t->fd);
	t->fd = -1;
}

static void *writer_main(void *arg)
{
	struct xd_dnstap *t = arg;

	for (;;) {
		if (t->fd < 0 && monotonic_ns() >= t->next_connect_ns)
			collector_connect(t);
		if (drain(t) == 0 && stopping(t, XD_DNSTAP_DRAIN_MS))
			break;
	}
	writer_finish(t);
	return NULL;
}

/* ---- life ------------------------------------------------------------------------ */

static int copy_text(char *dst, size_t cap, const char *src, const char *what, struct xd_error *err)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= cap)
		return xd_errorf(err, -ENAMETOOLONG, "dnstap %s is %zu bytes long: at most %zu",
				 what, n, cap - 1);
	memcpy(dst, src ? src : "", n + 1);
	return 0;
}

int xd_dnstap_new(const struct xd_dnstap_config *cfg, int nrings, struct xd_dnstap **out,
		  struct xd_error *err)
{
	struct xd_dnstap *t;
	int rc;

	*out = NULL;
	if (cfg->sample < 1)
		return xd_errorf(err, -EINVAL, "dnstap sample %u: expected 1 or more", cfg->sample);
	t = calloc(1, sizeof(*t));
	if (!t)
		return xd_errorf(err, -ENOMEM, "out of memory");
	rc = copy_text(t->path, sizeof(t->path), cfg->socket_path, "socket path", err);
	if (rc == 0 && !t->path[0])
		rc = xd_errorf(err, -EINVAL, "dnstap needs a socket path");
	if (rc == 0)
		rc = copy_text(t->identity, sizeof(t->identity), cfg->identity, "identity", err);
	if (rc == 0)
		rc = copy_text(t->version, sizeof(t->version), cfg->version, "version", err);
	if (rc < 0) {
		free(t);
		return rc;
	}
	t->sample = cfg->sample;
	t->queries = cfg->queries;
	t->responses = cfg->responses;
	t->nrings = nrings;
	t->fd = -1;
	t->stopfd = eventfd(0, EFD_CLOEXEC);
	t->rings = calloc((size_t)nrings, sizeof(*t->rings));
	t->out = malloc(XD_DNSTAP_OUT_BYTES);
	pthread_mutex_init(&t->rings_lock, NULL);
	pthread_mutex_init(&t->stats_lock, NULL);
	if (t->stopfd < 0 || !t->rings || !t->out) {
		xd_dnstap_free(t);
		return xd_errorf(err, -ENOMEM, "out of memory for dnstap");
	}
	rc = pthread_create(&t->thread, NULL, writer_main, t);
	if (rc) {
		xd_dnstap_free(t);
		return xd_errorf(err, -rc, "cannot start the dnstap writer: %s", strerror(rc));
	}
	t->started = true;
	*out = t;
	return 0;
}

void xd_dnstap_free(struct xd_dnstap *t)
{
	if (!t)
		return;
	if (t->started) {
		uint64_t one = 1;

		if (write(t->stopfd, &one, sizeof(one)) != sizeof(one))
			abort(); /* an eventfd write of 1 cannot fail */
		pthread_join(t->thread, NULL);
	}
	if (t->stopfd >= 0)
		close(t->stopfd);
	for (int i = 0; t->rings && i < t->nrings; i++)
		free(atomic_load(&t->rings[i]));
	free(t->rings);
	free(t->out);
	pthread_mutex_destroy(&t->rings_lock);
	pthread_mutex_destroy(&t->stats_lock);
	free(t);
}

uint32_t xd_dnstap_sample(const struct xd_dnstap *t)
{
	return t->sample;
}

void xd_dnstap_stats_get(struct xd_dnstap *t, struct xd_dnstap_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < t->nrings; i++) {
		struct xd_dnstap_ring *r = atomic_load(&t->rings[i]);

		if (r) {
			out->events += atomic_load_explicit(&r->events, memory_order_relaxed);
			out->lost_full += atomic_load_explicit(&r->lost, memory_order_relaxed);
		}
	}
	pthread_mutex_lock(&t->stats_lock);
	out->written = t->written;
	out->lost_unconnected = t->lost_unconnected;
	out->connects = t->connects;
	out->connected = t->connected;
	snprintf(out->error, sizeof(out->error), "%s", t->error);
	pthread_mutex_unlock(&t->stats_lock);
}
