/*
 * engine.c - the engine object: the published zone image (and the source
 * ACL, native/wire/prefixes.c, the DNS cookie secrets, native/answer/cookie.c, and the rate
 * limiting settings, native/answer/rrl.c), swapped
 * atomically and reclaimed once every reader has moved on.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire/prefixes.h"
#include "answer/answer.h"
#include "answer/cookie.h"
#include "image/journal.h"
#include "engine_internal.h"
#include "io/resolver.h"
#include "answer/rrl.h"
#include "io/xdp_internal.h"
#include "io/xdp_loader.h"

int xd_engine_new(struct xd_engine **out, struct xd_error *err)
{
	struct xd_engine *e = aligned_alloc(64, sizeof(*e));

	if (!e) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -ENOMEM;
	}
	memset(e, 0, sizeof(*e));
	atomic_init(&e->image, NULL);
	atomic_init(&e->acl, NULL);
	atomic_init(&e->cookies, NULL);
	atomic_init(&e->rrl, NULL);
	xd_epoch_init(&e->epoch);
	pthread_mutex_init(&e->external_lock, NULL);
	pthread_mutex_init(&e->acl_lock, NULL);
	pthread_mutex_init(&e->rrl_lock, NULL);
	*out = e;
	return 0;
}

void xd_engine_worker_failed(struct xd_engine *e, const char *fmt, ...)
{
	int none = 0;
	va_list ap;

	if (!atomic_compare_exchange_strong(&e->failed, &none, 1))
		return; /* the first reason is the one to tell */
	va_start(ap, fmt);
	vsnprintf(e->failure, sizeof(e->failure), fmt, ap);
	va_end(ap);
	atomic_store(&e->failed, 2);
}

int xd_engine_failure(struct xd_engine *e, char *out, size_t cap)
{
	if (atomic_load(&e->failed) != 2)
		return 0;
	if (cap)
		snprintf(out, cap, "%s", e->failure);
	return 1;
}

void xd_engine_free(struct xd_engine *e)
{
	if (!e)
		return;
	xd_engine_xdp_stop(e);
	xd_engine_udp_stop(e);
	xd_engine_tcp_stop(e);
	xd_engine_dnstap_stop(e);
	xd_resolver_free(e->resolver);
	xd_image_free(atomic_load(&e->image));
	xd_acl_free(atomic_load(&e->acl));
	xd_cookies_free(atomic_load(&e->cookies));
	xd_rrl_free(atomic_load(&e->rrl));
	xd_rrl_shared_free(e->rrl_heap);
	pthread_mutex_destroy(&e->rrl_lock);
	pthread_mutex_destroy(&e->acl_lock);
	pthread_mutex_destroy(&e->external_lock);
	xd_epoch_destroy(&e->epoch);
	free(e);
}

void xd_engine_synchronize(struct xd_engine *e)
{
	xd_epoch_synchronize(&e->epoch);
}

/*
 * In XDP mode the program's answer table goes with the image: the new
 * table is compiled and written into new maps first (the old one still
 * answering), the old one is taken out (the program answers nothing itself
 * until the new one is in), the image is swapped and every worker waited
 * for, and only then the new maps go in.  So once this
 * returns, no answer of the old image leaves either path, and while it
 * runs no client sees the new image's answer and then the old one's.
 */
int xd_engine_set_image(struct xd_engine *e, struct xd_image *img)
{
	struct xd_prog_table table;
	struct xd_image *old;
	bool with_table = false;

	pthread_mutex_lock(&e->acl_lock);
	if (e->xdp) {
		with_table = xd_xdp_answers_prepare(e, img, &table) == 0;
		xd_prog_answers_clear(e->xdp->prog);
	}
	old = atomic_exchange(&e->image, img);
	xd_epoch_synchronize(&e->epoch);
	if (with_table)
		xd_xdp_answers_commit(e, &table);
	pthread_mutex_unlock(&e->acl_lock);
	xd_image_free(old);
	return 0;
}

const struct xd_image *xd_engine_image(struct xd_engine *e)
{
	return atomic_load(&e->image);
}

/* Answers a query from outside the workers (the TCP listener, the
 * resolver thread, tests), under the external reader's slot. */
static int answer_external(struct xd_engine *e, const struct xd_client *client, uint32_t now,
			   const struct xd_resolver_given *given, const uint8_t *query, size_t qlen,
			   uint8_t *resp, size_t cap, unsigned flags, int *cookie)
{
	struct xd_answer_ctx ctx;
	const struct xd_image *img;
	int len = 0;

	memset(&ctx, 0, sizeof(ctx));
	ctx.given = given;
	if (client)
		xd_client_set(&ctx.client, client->family, client->addr);
	ctx.now = now ? now : (uint32_t)time(NULL);
	pthread_mutex_lock(&e->external_lock);
	img = xd_engine_enter(e, XD_READER_EXTERNAL);
	/* Under the same epoch as the image: freed only once we leave. */
	ctx.cookies = atomic_load(&e->cookies);
	ctx.cache = xd_resolver_cache(e->resolver);
	if (img)
		len = xd_answer_ctx(img, &ctx, query, qlen, resp, cap, flags);
	xd_engine_leave(e, XD_READER_EXTERNAL);
	pthread_mutex_unlock(&e->external_lock);
	if (cookie)
		*cookie = ctx.cookie;
	return img ? len : -ENODATA;
}

int xd_engine_answer_client(struct xd_engine *e, const struct xd_client *client, uint32_t now,
			    const uint8_t *query, size_t qlen, uint8_t *resp, size_t cap,
			    unsigned flags, int *cookie)
{
	return answer_external(e, client, now, NULL, query, qlen, resp, cap, flags, cookie);
}

int xd_engine_answer_given(struct xd_engine *e, const struct xd_client *client,
			   const struct xd_resolver_given *given, const uint8_t *query, size_t qlen,
			   uint8_t *resp, size_t cap, unsigned flags)
{
	return answer_external(e, client, 0, given, query, qlen, resp, cap, flags, NULL);
}

int xd_engine_axfr(struct xd_engine *e, const struct xd_client *client, const uint8_t *query,
		   size_t qlen, uint8_t *out, size_t cap, size_t *len)
{
	struct xd_client c = { 0 };
	const struct xd_image *img;
	int rc = -ENODATA;

	*len = 0;
	if (client)
		xd_client_set(&c, client->family, client->addr);
	pthread_mutex_lock(&e->external_lock);
	img = xd_engine_enter(e, XD_READER_EXTERNAL);
	if (img)
		rc = xd_axfr(img, &c, query, qlen, out, cap, len);
	xd_engine_leave(e, XD_READER_EXTERNAL);
	pthread_mutex_unlock(&e->external_lock);
	return rc;
}

/* Calls read(image, lower-case name, len, out) with the published image,
 * as the external reader: its result, or -ENODATA without an image. */
static int read_zone(struct xd_engine *e, const uint8_t *name, size_t len,
		     int (*read)(const struct xd_image *, const uint8_t *, size_t, void *),
		     void *out)
{
	uint8_t lower[XD_NAME_MAX];
	const struct xd_image *img;
	int rc = -ENODATA;

	if (len > sizeof(lower))
		return -EINVAL;
	xd_name_lower(lower, name, len);
	pthread_mutex_lock(&e->external_lock);
	img = xd_engine_enter(e, XD_READER_EXTERNAL);
	if (img)
		rc = read(img, lower, len, out);
	xd_engine_leave(e, XD_READER_EXTERNAL);
	pthread_mutex_unlock(&e->external_lock);
	return rc;
}

static int read_serial(const struct xd_image *img, const uint8_t *name, size_t len, void *out)
{
	return xd_zone_serial(img, name, len, out);
}

static int read_journal(const struct xd_image *img, const uint8_t *name, size_t len, void *out)
{
	return xd_zone_journal_info(img, name, len, out);
}

int xd_engine_zone_serial(struct xd_engine *e, const uint8_t *name, size_t len, uint32_t *serial)
{
	return read_zone(e, name, len, read_serial, serial);
}

int xd_engine_zone_journal(struct xd_engine *e, const uint8_t *name, size_t len,
			   struct xd_journal_info *out)
{
	return read_zone(e, name, len, read_journal, out);
}

int xd_image_zone_serial(const struct xd_image *img, const uint8_t *name, size_t len,
			 uint32_t *serial)
{
	uint8_t lower[XD_NAME_MAX];

	if (len > sizeof(lower))
		return -EINVAL;
	xd_name_lower(lower, name, len);
	return xd_zone_serial(img, lower, len, serial);
}

int xd_engine_answer(struct xd_engine *e, const uint8_t *query, size_t qlen, uint8_t *resp,
		     size_t cap, unsigned flags)
{
	return xd_engine_answer_client(e, NULL, 0, query, qlen, resp, cap, flags, NULL);
}

const struct xd_rrl *xd_engine_batch_begin(struct xd_engine *e, struct xd_rrl_state *rrl_state,
					   struct xd_answer_ctx *ctx)
{
	const struct xd_rrl *rrl = atomic_load(&e->rrl);

	ctx->cookies = atomic_load(&e->cookies);
	rrl_state->shared = atomic_load(&e->rrl_buckets);
	if (rrl && xd_rrl_state_sync(rrl_state, rrl))
		rrl = NULL;
	ctx->cache = xd_resolver_cache(e->resolver);
	ctx->want_kind = rrl != NULL;
	if (ctx->cookies || rrl || ctx->cache)
		ctx->now = (uint32_t)time(NULL);
	if (rrl)
		ctx->rrl_now = xd_rrl_clock();
	return rrl;
}
