/*
 * engine_policy.c - the engine's policy objects besides the image: the
 * source ACL (wire/prefixes.c), the DNS cookie secrets (answer/cookie.c)
 * and rate limiting (answer/rrl.c).  Each is built, put into the XDP
 * program where it has a copy (before anything else changes, so that a
 * refusal changes nothing), then published to the workers with one atomic
 * pointer swap, like the image, and the old one freed once no worker can
 * hold it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "answer/cookie.h"
#include "answer/rrl.h"
#include "engine_internal.h"
#include "error.h"
#include "io/xdp_internal.h"
#include "io/xdp_loader.h"
#include "io/xdp_rrl.h"
#include "wire/prefixes.h"

/* ---- the source ACL ------------------------------------------------------------ */

/* Puts acl into the XDP program's maps when XDP mode runs.  Called with
 * acl_lock held. */
static int acl_install_xdp(struct xd_engine *e, const struct xd_acl *acl, struct xd_error *err)
{
	if (!e->xdp)
		return 0;
	return xd_prog_acl_set(e->xdp->prog, acl, err);
}

int xd_engine_acl_set(struct xd_engine *e, const struct xd_acl_rule *rules, int n,
		      uint32_t default_action, int socket_verdict, struct xd_error *err)
{
	struct xd_acl *acl, *old;
	int rc;

	rc = xd_acl_build(rules, n, default_action, socket_verdict, &acl, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&e->acl_lock);
	/* The kernel's copy first: when it cannot take the rules, nothing
	 * changes anywhere. */
	rc = acl_install_xdp(e, acl, err);
	if (rc) {
		pthread_mutex_unlock(&e->acl_lock);
		xd_acl_free(acl);
		return rc;
	}
	old = atomic_exchange(&e->acl, acl);
	pthread_mutex_unlock(&e->acl_lock);
	xd_engine_synchronize(e);
	xd_acl_free(old);
	return 0;
}

int xd_engine_acl_check(struct xd_engine *e, int family, const uint8_t *addr)
{
	struct sockaddr_storage ss;
	int verdict;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET)
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, addr, 4);
	else if (family == AF_INET6)
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, addr, 16);
	else
		return -EAFNOSUPPORT;
	pthread_mutex_lock(&e->external_lock);
	xd_engine_enter(e, XD_READER_EXTERNAL);
	verdict = xd_acl_verdict(atomic_load(&e->acl), (const struct sockaddr *)&ss);
	xd_engine_leave(e, XD_READER_EXTERNAL);
	pthread_mutex_unlock(&e->external_lock);
	return verdict;
}

/* ---- DNS cookies ----------------------------------------------------------------- */

int xd_engine_set_cookie_secrets(struct xd_engine *e, const uint8_t *current,
				 const uint8_t *previous, unsigned flags, struct xd_error *err)
{
	struct xd_cookies *c, *old;
	int rc = xd_cookies_build(current, previous, flags, &c, err);

	if (rc)
		return rc;
	old = atomic_exchange(&e->cookies, c);
	/* Whoever swapped a set out frees it, once no worker can hold it. */
	xd_engine_synchronize(e);
	xd_cookies_free(old);
	return 0;
}

/* ---- rate limiting ------------------------------------------------------------------ */

int xd_engine_set_rrl(struct xd_engine *e, const struct xd_rrl_config *cfg, struct xd_error *err)
{
	struct xd_rrl *rrl = NULL, *old;
	struct xd_xdp_rrl *old_maps = NULL, *maps;
	struct xd_rrl_shared *heap = NULL, *old_heap;
	bool was_on;
	int rc;

	if (cfg) {
		rc = xd_rrl_build(cfg, &rrl, err);
		if (rc)
			return rc;
	}
	pthread_mutex_lock(&e->rrl_lock);
	if (rrl) {
		rrl->generation = ++e->rrl_generation;
		/* Outside XDP mode (or with a program without the maps) the
		 * buckets are the engine's own. */
		if (!e->xdp || !e->xdp->rrl_in_program) {
			heap = xd_rrl_shared_new(rrl);
			if (!heap) {
				pthread_mutex_unlock(&e->rrl_lock);
				rc = xd_errorf(err, -ENOMEM, "RRL: out of memory for %u buckets",
					       rrl->table_size);
				xd_rrl_free(rrl);
				return rc;
			}
		}
	}
	rc = e->xdp ? xd_xdp_rrl_switch(e->xdp, rrl, &old_maps, err) : 0;
	if (rc) {
		pthread_mutex_unlock(&e->rrl_lock);
		xd_rrl_shared_free(heap);
		xd_rrl_free(rrl);
		return rc;
	}
	/* The buckets first: a worker that sees the new settings finds them. */
	maps = e->xdp ? atomic_load(&e->xdp->rrl) : NULL;
	old_heap = e->rrl_heap;
	e->rrl_heap = heap;
	atomic_store(&e->rrl_buckets, maps ? &maps->shared : heap);
	old = atomic_exchange(&e->rrl, rrl);
	pthread_mutex_unlock(&e->rrl_lock);
	was_on = old != NULL;
	xd_engine_synchronize(e);
	xd_rrl_free(old);
	xd_xdp_rrl_free(old_maps);
	xd_rrl_shared_free(old_heap);
	/* A program without rate limiting maps pauses its answer table while
	 * rate limiting is on (xd_xdp_answers_prepare). */
	if ((rrl != NULL) != was_on) {
		pthread_mutex_lock(&e->acl_lock);
		if (e->xdp && !e->xdp->rrl_in_program)
			xd_xdp_answers_refresh(e, NULL);
		pthread_mutex_unlock(&e->acl_lock);
	}
	return 0;
}

int xd_engine_rrl_events(struct xd_engine *e, struct xd_rrl_event *out, int max)
{
	/* The workers note the buckets' clock; the log wants UNIX time. */
	int64_t to_unix = (int64_t)time(NULL) - (int64_t)xd_rrl_clock();
	int n = 0;

	if (max < 0)
		return -EINVAL;
	pthread_mutex_lock(&e->rrl_lock);
	if (e->udp)
		n += xd_udp_rrl_events(e->udp, out, max);
	for (int i = 0; e->xdp && i < e->xdp->nworkers && n < max; i++)
		n += xd_rrl_ring_take(&e->xdp->workers[i].core.rrl.ring, out + n, max - n);
	for (int i = 0; i < n; i++)
		out[i].time = (uint32_t)((int64_t)out[i].time + to_unix);
	if (e->xdp)
		n += xd_xdp_rrl_notes_take(e->xdp->rrl_notes, out + n, max - n);
	pthread_mutex_unlock(&e->rrl_lock);
	return n;
}
