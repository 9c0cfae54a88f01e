/*
 * xdp.c - XDP mode as a whole: the program on the interface, one AF_XDP
 * queue worker per NIC queue pinned to a CPU near the NIC, and their
 * counters.  Start-up either completes or leaves nothing behind.
 */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "wire/prefixes.h"
#include "io/dnstap.h"
#include "engine_internal.h"
#include "error.h"
#include "io/resolver.h"
#include "io/xdp_answers.h"
#include "io/xdp_dispatch.h"
#include "io/xdp_internal.h"
#include "io/xdp_loader.h"
#include "io/xdp_rrl.h"

#define XD_CPUS_MAX 4096

int xd_xdp_check_config(const struct xd_xdp_config *cfg, struct xd_error *err)
{
	const char *bad = NULL;

	if (cfg->frame_size != 2048 && cfg->frame_size != 4096)
		bad = "frame_size must be 2048 or 4096";
	else if (cfg->ring_size < 64 || (cfg->ring_size & (cfg->ring_size - 1)))
		bad = "ring_size must be a power of two of at least 64";
	else if (cfg->frames_per_queue < cfg->ring_size)
		bad = "frames_per_queue must be at least ring_size";
	else if (cfg->hugepage_mb != 2 && cfg->hugepage_mb != 1024)
		bad = "hugepage size must be 2 MiB or 1 GiB";
	else if (cfg->queues < 0 || cfg->first_queue < 0)
		bad = "queues must not be negative";
	else if (cfg->busy_poll_wait_us > XD_BUSY_POLL_WAIT_MAX_US)
		bad = "busy_poll_wait_us must be at most 1000000 (one second)";
	else if (cfg->attach != XD_ATTACH_LINK && cfg->attach != XD_ATTACH_DISPATCHER)
		bad = "attach must be XD_ATTACH_LINK or XD_ATTACH_DISPATCHER";
	if (bad) {
		snprintf(err->message, sizeof(err->message), "xdp: %s", bad);
		return -EINVAL;
	}
	return 0;
}

static void add_warning(struct xd_xdp_info *info, const char *w)
{
	size_t len = strlen(info->warnings);

	if (!*w || strstr(info->warnings, w))
		return; /* every queue says the same: once is enough */
	snprintf(info->warnings + len, sizeof(info->warnings) - len, "%s%s", len ? "\n" : "", w);
}

/* How many queues to serve, from the config and the NIC. */
int xd_xdp_queue_span(const struct xd_xdp_config *cfg, struct xd_error *err)
{
	int nic = xd_nic_queue_count(cfg->ifname, err);

	if (nic < 0)
		return nic;
	if (cfg->first_queue >= nic || cfg->first_queue + cfg->queues > nic) {
		snprintf(err->message, sizeof(err->message),
			 "%s has %d queue%s; queues %d..%d were asked for", cfg->ifname, nic,
			 nic == 1 ? "" : "s", cfg->first_queue,
			 cfg->first_queue + (cfg->queues ? cfg->queues : nic) - 1);
		return -EINVAL;
	}
	return cfg->queues ? cfg->queues : nic - cfg->first_queue;
}

static void xdp_free(struct xd_xdp *x)
{
	uint64_t one = 1;

	atomic_store(&x->stop, 1);
	if (x->stopfd >= 0 && write(x->stopfd, &one, sizeof(one)) < 0) {
		/* Fails only when the counter is full: it is set already. */
	}
	for (int i = 0; i < x->nworkers; i++)
		xd_xsk_worker_close(&x->workers[i]);
	xd_xdp_rrl_notes_close(x->rrl_notes);
	/* Detach last: until then, unanswered packets still PASS. */
	xd_prog_free(x->prog);
	xd_xdp_rrl_free(atomic_load(&x->rrl));
	if (x->stopfd >= 0)
		close(x->stopfd);
	free(x);
}

/* Hugepages of hp_mb MiB still free on this machine, or -1 if unknown. */
static long free_hugepages(int hp_mb)
{
	char path[128];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%dkB/free_hugepages",
		 hp_mb * 1024);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/* The per-queue message of umem.c, restated for every queue together. */
static void hugepages_missing(const struct xd_xdp *x, const struct xd_xdp_config *cfg,
			      struct xd_error *err)
{
	size_t page = (size_t)cfg->hugepage_mb << 20;
	size_t per_queue = ((size_t)cfg->frames_per_queue * cfg->frame_size + page - 1) / page;
	long free = free_hugepages(cfg->hugepage_mb);

	snprintf(err->message, sizeof(err->message),
		 "hugepages required: %d queue%s need %zu pages of %d MiB (%zu each), "
		 "%ld free; reserve them with echo N > /sys/kernel/mm/hugepages/"
		 "hugepages-%dkB/nr_hugepages (or /proc/sys/vm/nr_hugepages for 2 MiB)",
		 x->nworkers, x->nworkers == 1 ? "" : "s", per_queue * x->nworkers,
		 cfg->hugepage_mb, per_queue, free, cfg->hugepage_mb * 1024);
}

static int open_workers(struct xd_engine *e, struct xd_xdp *x, const struct xd_xdp_config *cfg,
			struct xd_error *err)
{
	int cpus[XD_CPUS_MAX];
	int ncpus = xd_numa_cpus(x->info.numa_node, cpus, XD_CPUS_MAX);
	bool all_zc = true, all_busy = true;

	for (int i = 0; i < x->nworkers; i++) {
		struct xd_xsk_worker *w = &x->workers[i];
		char warning[256] = "";
		bool zc = false;
		int rc;

		w->core.engine = e;
		w->core.reader = XD_READER_XDP_BASE + i;
		w->core.stats = &w->stats.core;
		/* The XDP program picks the queries dnstap logs. */
		w->core.tap = xd_engine_dnstap_ring(e, w->core.reader);
		w->queue = cfg->first_queue + i;
		w->cpu = cpus[i % ncpus];
		w->stopfd = x->stopfd;
		w->stop = &x->stop;
		rc = xd_xsk_worker_open(w, cfg->ifname, cfg, x->info.numa_node, &zc, warning,
					sizeof(warning), err);
		add_warning(&x->info, warning);
		if (rc == -ENOMEM && strncmp(err->message, "hugepages required", 18) == 0)
			hugepages_missing(x, cfg, err);
		if (rc)
			return rc;
		all_zc &= zc;
		all_busy &= w->busy_poll;
		x->info.hugepages = w->area.hugepages;
		x->info.umem_bytes = w->area.size;
		rc = xd_prog_set_socket(x->prog, w->queue, xd_xsk_worker_fd(w));
		if (rc) {
			snprintf(err->message, sizeof(err->message),
				 "queue %d: cannot put its socket into the XSKMAP: %s", w->queue,
				 strerror(-rc));
			return rc;
		}
	}
	x->info.zerocopy = all_zc;
	x->info.busy_poll = all_busy && cfg->busy_poll;
	if (cfg->busy_poll && !all_busy)
		add_warning(&x->info, "busy polling refused by the kernel: workers sleep in poll");
	if (!all_zc && cfg->zerocopy == XD_ZEROCOPY_AUTO)
		add_warning(&x->info, "zero-copy not offered by the driver: copy mode");
	return 0;
}

/* The start of XDP mode from its workers on: with rrl_lock held.  With
 * rate limiting on, the program's buckets replace the engine's own, which
 * *old_heap gets, to be freed once no worker counts in them. */
static int start_limited(struct xd_engine *e, struct xd_xdp *x, const struct xd_xdp_config *cfg,
			 struct xd_rrl_shared **old_heap, struct xd_error *err)
{
	struct xd_xdp_rrl *none;
	int rc = xd_xdp_rrl_switch(x, atomic_load(&e->rrl), &none, err);

	for (int i = 0; rc == 0 && i < x->nworkers; i++)
		rc = xd_xsk_worker_start(&x->workers[i], err);
	if (rc)
		return rc;
	x->answers_mode = cfg->answers;
	rc = xd_prog_set_checksums(x->prog, cfg->verify_checksums, err);
	if (rc == 0)
		rc = xd_prog_set_tap_sample(x->prog, e->dnstap ? xd_dnstap_sample(e->dnstap) : 0,
					    err);
	if (rc)
		return rc;
	/* The ACL set so far and the answer table go in before any port is
	 * redirected (the caller sets the ports after this returns); under
	 * acl_lock, so that an xd_engine_acl_set or a new image meanwhile
	 * reaches these maps too. */
	pthread_mutex_lock(&e->acl_lock);
	rc = xd_prog_acl_set(x->prog, atomic_load(&e->acl), err);
	if (rc == 0) {
		struct xd_xdp_rrl *maps = atomic_load(&x->rrl);

		e->xdp = x;
		if (maps) {
			*old_heap = e->rrl_heap;
			e->rrl_heap = NULL;
			atomic_store(&e->rrl_buckets, &maps->shared);
		}
		xd_xdp_answers_refresh(e, NULL);
	}
	pthread_mutex_unlock(&e->acl_lock);
	return rc;
}

int xd_xdp_rrl_switch(struct xd_xdp *x, const struct xd_rrl *rrl, struct xd_xdp_rrl **old,
		      struct xd_error *err)
{
	struct xd_xdp_rrl *maps = NULL, *prev = atomic_load(&x->rrl);
	int rc;

	*old = NULL;
	/* A program without the maps: the workers keep tables of their own
	 * and the answer table pauses (xd_xdp_answers_prepare). */
	if (!x->rrl_in_program)
		return 0;
	if (!rrl) {
		xd_xdp_rrl_clear(x->prog);
	} else {
		rc = xd_xdp_rrl_build(x->prog, rrl, &maps, err);
		if (rc)
			return rc;
		rc = xd_xdp_rrl_put(x->prog, maps, err);
		if (rc) {
			/* The old maps back, or none: never the new half put. */
			struct xd_error ignored;

			if (prev)
				xd_xdp_rrl_put(x->prog, prev, &ignored);
			xd_xdp_rrl_free(maps);
			return rc;
		}
	}
	*old = atomic_exchange(&x->rrl, maps);
	return 0;
}

int xd_engine_xdp_start(struct xd_engine *e, const struct xd_xdp_config *cfg,
			struct xd_xdp_info *info, struct xd_error *err)
{
	struct xd_rrl_shared *old_heap = NULL;
	struct xd_prog_place place = {
		.generic = cfg->generic,
		.attach = cfg->attach,
	};
	struct xd_prog_attached how;
	struct xd_xdp *x;
	int ifindex, nq, rc;

	if (e->xdp) {
		snprintf(err->message, sizeof(err->message), "XDP mode already runs");
		return -EBUSY;
	}
	rc = xd_xdp_check_config(cfg, err);
	if (rc)
		return rc;
	ifindex = if_nametoindex(cfg->ifname);
	if (!ifindex) {
		snprintf(err->message, sizeof(err->message), "no such interface: %s", cfg->ifname);
		return -ENODEV;
	}
	nq = xd_xdp_queue_span(cfg, err);
	if (nq < 0)
		return nq;
	if (nq > XD_WORKERS_MAX - XD_READER_XDP_BASE) {
		snprintf(err->message, sizeof(err->message), "too many queues: %d", nq);
		return -E2BIG;
	}
	x = calloc(1, sizeof(*x) + nq * sizeof(x->workers[0]));
	if (!x)
		return -ENOMEM;
	x->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	x->info.queues = nq;
	x->info.first_queue = cfg->first_queue;
	x->info.numa_node = xd_numa_nic_node(cfg->ifname);
	if (x->stopfd < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = xd_prog_load(cfg->bpf_object, ifindex, cfg->first_queue + nq, &place, &x->prog, &how,
			  err);
	if (rc)
		goto out_free;
	x->info.native = how.native;
	x->info.prog_id = how.prog_id;
	if (!how.native && !cfg->generic)
		add_warning(&x->info, "native XDP refused by the driver: generic mode");
	if (how.stale_removed)
		add_warning(&x->info, "took out of the dispatcher an xdpdns program that a "
				      "server which died had left there");
	x->nworkers = nq;
	x->rrl_in_program = xd_xdp_rrl_supported(x->prog);
	rc = xd_xdp_rrl_notes_open(x->prog, &x->rrl_notes);
	if (rc) {
		snprintf(err->message, sizeof(err->message),
			 "cannot read the XDP program's "
			 "rate limiting notes: %s",
			 strerror(-rc));
		goto out_free;
	}
	rc = open_workers(e, x, cfg, err);
	if (rc)
		goto out_free;
	/* The rate limiting in force has the program's buckets before the
	 * workers start (they take their tables from them), and a change
	 * meanwhile waits for e->xdp: rrl_lock is held until it is set. */
	pthread_mutex_lock(&e->rrl_lock);
	rc = start_limited(e, x, cfg, &old_heap, err);
	pthread_mutex_unlock(&e->rrl_lock);
	if (rc)
		goto out_free;
	if (old_heap) {
		xd_engine_synchronize(e);
		xd_rrl_shared_free(old_heap);
	}
	*info = x->info;
	return 0;

out_free:
	xdp_free(x);
	return rc;
}

int xd_engine_xdp_stop(struct xd_engine *e)
{
	struct xd_xdp *x;

	/* rrl_lock too: a change of the rate limiting settings works on the
	 * program's maps through e->xdp, and the workers left (socket mode)
	 * move to buckets of the engine's own before the maps go. */
	pthread_mutex_lock(&e->rrl_lock);
	pthread_mutex_lock(&e->acl_lock);
	x = e->xdp;
	e->xdp = NULL;
	pthread_mutex_unlock(&e->acl_lock);
	if (x && atomic_load(&x->rrl)) {
		const struct xd_rrl *rrl = atomic_load(&e->rrl);

		/* Without memory for them: each worker's own table
		 * (xd_rrl_state_sync). */
		e->rrl_heap = rrl ? xd_rrl_shared_new(rrl) : NULL;
		atomic_store(&e->rrl_buckets, e->rrl_heap);
	}
	pthread_mutex_unlock(&e->rrl_lock);
	if (x) {
		xd_engine_synchronize(e);
		xdp_free(x);
	}
	return 0;
}

static int need_xdp(const struct xd_engine *e, struct xd_error *err)
{
	if (e->xdp)
		return 0;
	if (err)
		snprintf(err->message, sizeof(err->message), "XDP mode is not running");
	return -ENOTCONN;
}

int xd_engine_xdp_set_port(struct xd_engine *e, uint16_t port, uint32_t action,
			   struct xd_error *err)
{
	int rc = need_xdp(e, err);

	return rc ? rc : xd_prog_set_port(e->xdp->prog, port, action, err);
}

int xd_engine_xdp_port_actions(struct xd_engine *e, uint16_t port, uint32_t *actions, int max)
{
	int rc = need_xdp(e, NULL);

	return rc ? rc : xd_prog_port_actions(e->xdp->prog, port, actions, max);
}

int xd_engine_xdp_add_address(struct xd_engine *e, int family, const uint8_t *addr,
			      struct xd_error *err)
{
	int rc;

	/* The address check and the ACL share the program's config entry:
	 * one writer at a time. */
	pthread_mutex_lock(&e->acl_lock);
	rc = need_xdp(e, err);
	if (rc == 0)
		rc = xd_prog_add_address(e->xdp->prog, family, addr, err);
	pthread_mutex_unlock(&e->acl_lock);
	return rc;
}

int xd_engine_xdp_queue_count(const struct xd_engine *e)
{
	return e->xdp ? e->xdp->nworkers : 0;
}

int xd_engine_xdp_queue_stats(const struct xd_engine *e, int queue, struct xd_queue_stats *out)
{
	if (!e->xdp || queue < 0 || queue >= e->xdp->nworkers)
		return -EINVAL;
	xd_xsk_worker_stats(&e->xdp->workers[queue], out);
	return 0;
}

int xd_engine_xdp_prog_stats(const struct xd_engine *e, int cpu, struct xd_prog_stats *out)
{
	int rc = need_xdp(e, NULL);

	return rc ? rc : xd_prog_counters(e->xdp->prog, cpu, out);
}

/* ---- the answer table ---------------------------------------------------------- */

static void answers_state(struct xd_answers_info *info, int state, const char *why)
{
	info->state = state;
	snprintf(info->message, sizeof(info->message), "%s", why);
}

int xd_xdp_answers_prepare(struct xd_engine *e, const struct xd_image *img,
			   struct xd_prog_table *out)
{
	struct xd_xdp *x = e->xdp;
	struct xd_answers_info *info = &x->answers;
	struct xd_answers *t = NULL;
	struct xd_error err = { "" };
	uint64_t start;
	int rc;

	memset(info, 0, sizeof(*info));
	if (x->answers_mode == XD_ANSWERS_OFF) {
		answers_state(info, XD_ANSWERS_STATE_OFF, "[xdp] answers = \"off\"");
		return -1;
	}
	/* A program without the rate limiting maps cannot count its answers
	 * in the workers' buckets: while RRL is on, the workers answer all. */
	if (atomic_load(&e->rrl) && !x->rrl_in_program) {
		answers_state(info, XD_ANSWERS_STATE_PAUSED,
			      "rate limiting is on and the "
			      "XDP program has no rate limiting maps: the workers answer "
			      "every query, so that each response is counted");
		return -1;
	}
	if (!img) {
		answers_state(info, XD_ANSWERS_STATE_OFF, "no zones loaded");
		return -1;
	}
	if (xd_answers_compile(img, &t, &err)) {
		answers_state(info, XD_ANSWERS_STATE_FAILED, err.message);
		return -1;
	}
	*info = t->info;
	start = xd_resolver_clock();
	rc = xd_prog_answers_build(x->prog, t, out, &err);
	info->install_us = (xd_resolver_clock() - start) / 1000;
	xd_answers_free(t);
	if (rc) {
		answers_state(info, XD_ANSWERS_STATE_FAILED, err.message);
		return -1;
	}
	info->bytes = out->bytes;
	return 0;
}

void xd_xdp_answers_commit(struct xd_engine *e, struct xd_prog_table *maps)
{
	struct xd_xdp *x = e->xdp;
	struct xd_error err = { "" };

	if (xd_prog_answers_put(x->prog, maps, &err))
		answers_state(&x->answers, XD_ANSWERS_STATE_FAILED, err.message);
	else
		answers_state(&x->answers, XD_ANSWERS_STATE_ON, "");
}

void xd_xdp_answers_refresh(struct xd_engine *e, const struct xd_image *img)
{
	struct xd_prog_table maps;
	int rc;

	if (!e->xdp)
		return;
	/* Under acl_lock no image is published (xd_engine_set_image takes
	 * it first): the one in force stays while it is read. */
	rc = xd_xdp_answers_prepare(e, img ? img : atomic_load(&e->image), &maps);
	xd_prog_answers_clear(e->xdp->prog);
	if (rc == 0)
		xd_xdp_answers_commit(e, &maps);
}

int xd_engine_xdp_answers_info(struct xd_engine *e, struct xd_answers_info *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&e->acl_lock);
	if (e->xdp)
		*out = e->xdp->answers;
	pthread_mutex_unlock(&e->acl_lock);
	return 0;
}

int xd_dispatch_remove(const char *ifname, uint32_t prog_id, struct xd_error *err)
{
	int ifindex = (int)if_nametoindex(ifname);

	if (!ifindex)
		return xd_errorf(err, -ENODEV, "no such interface: %s", ifname);
	return xd_dispatch_detach(ifindex, prog_id, err);
}
