/*
 * xdp_internal.h - XDP mode inside the engine: per-queue UMEM, AF_XDP
 * socket and worker (xdp_worker.c), their memory (umem.c), topology
 * (numa.c), and the whole (xdp.c).  Not seen by cffi.
 *
 * The life of a frame, counted in struct xd_queue_stats so that a leak
 * shows: free -> fill ring -> (kernel) -> rx ring -> worker -> tx ring ->
 * (kernel) -> completion ring -> free.  A frame the worker does not answer
 * goes straight back to free.  At every moment
 *   frames_free + frames_fill + frames_rx + frames_tx == frames_total.
 */
#ifndef XDPDNS_XDP_INTERNAL_H
#define XDPDNS_XDP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <xdp/xsk.h>

#include "engine.h"
#include "io/worker_core.h"

struct xd_prog;
struct xd_resolver_endpoint;
struct xd_xdp_rrl;
struct xd_xdp_rrl_notes;

/* UMEM memory of one queue. */
struct xd_umem_area {
	void *mem;
	size_t size;
	bool hugepages;
};

/* Allocates size bytes (rounded up to the page size in use) on NUMA node
 * `node` (-1: anywhere), in hugepages of hugepage_mb when mode allows.
 * *warning gets a sentence when AUTO fell back to normal pages. */
int xd_umem_area_alloc(struct xd_umem_area *a, size_t size, int node, int mode, int hugepage_mb,
		       char *warning, size_t wcap, struct xd_error *err);
void xd_umem_area_free(struct xd_umem_area *a);

/* The NIC's NUMA node (-1 when it has none) and CPUs to pin workers to:
 * the node's CPUs that this process may run on, else every online CPU it
 * may run on; returns how many. */
int xd_numa_nic_node(const char *ifname);
int xd_numa_cpus(int node, int *cpus, int max);
/* Checks the sizes of an XDP config; err names the wrong one. */
int xd_xdp_check_config(const struct xd_xdp_config *cfg, struct xd_error *err);
/* How many queues cfg asks for on its NIC (0 in cfg: all from first_queue). */
int xd_xdp_queue_span(const struct xd_xdp_config *cfg, struct xd_error *err);
/* Queues of the NIC: the larger of its combined and rx channels (veth
 * reports rx channels only). */
int xd_nic_queue_count(const char *ifname, struct xd_error *err);

struct xd_dnstap_ring;

struct xd_xsk_worker {
	struct xd_worker_core core; /* its stats are stats.core */
	int queue;
	int cpu;
	int stopfd; /* readable when stopping: ends poll */
	const atomic_int *stop; /* checked once per batch */
	pthread_t thread;
	bool started;
	bool verify_checksums;
	bool busy_poll;
	/* Spinning only while there is work (xdp_worker.c): how long an idle
	 * worker busy polls at most, how long now, since when its rx ring has
	 * been dry (0: it has work), and whether it slept since. */
	uint32_t spin_max_ns;
	uint32_t spin_ns;
	uint64_t idle_since_ns;
	bool slept;

	struct xd_umem_area area;
	struct xsk_umem *umem;
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp;
	struct xsk_socket *xsk;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	uint32_t frame_size;
	uint32_t nframes;
	uint32_t ring_size;

	uint64_t *free_frames; /* a stack of frame addresses */
	uint32_t nfree;
	uint32_t fill_reserve; /* free frames kept off the fill ring */
	struct xd_queue_stats stats; /* written by the worker only */
};

/* Creates the UMEM and socket of w->queue (zero-copy per `zerocopy`);
 * *zc tells what was granted. */
int xd_xsk_worker_open(struct xd_xsk_worker *w, const char *ifname, const struct xd_xdp_config *cfg,
		       int node, bool *zc, char *warning, size_t wcap, struct xd_error *err);
int xd_xsk_worker_start(struct xd_xsk_worker *w, struct xd_error *err);
/* Starts main(arg) as the queue's thread, pinned to w->cpu; the worker's
 * close joins it. */
int xd_xsk_thread_start(struct xd_xsk_worker *w, void *(*main)(void *), void *arg,
			struct xd_error *err);
/* Stops the thread (if started) and frees everything; safe on a worker
 * that failed half-way through opening. */
void xd_xsk_worker_close(struct xd_xsk_worker *w);
int xd_xsk_worker_fd(const struct xd_xsk_worker *w);

/* The ring discipline of a queue, shared by the answering worker and the
 * load generator (native/bench/xdpgen.c); each keeps the frame counters of
 * w->stats. */
void xd_xsk_frame_free(struct xd_xsk_worker *w, uint64_t addr);
uint32_t xd_xsk_ring_room(struct xsk_ring_prod *r, uint32_t want);
void xd_xsk_fill_refill(struct xd_xsk_worker *w);
void xd_xsk_tx_kick(struct xd_xsk_worker *w);
void xd_xsk_completions_reap(struct xd_xsk_worker *w);
void xd_xsk_worker_stats(const struct xd_xsk_worker *w, struct xd_queue_stats *out);

struct xd_xdp {
	struct xd_prog *prog;
	struct xd_xdp_info info;
	int answers_mode; /* XD_ANSWERS_* of the config */
	struct xd_answers_info answers; /* under the engine's acl_lock */
	/* Rate limiting of the program's answers (xdp_rrl.c), written under
	 * the engine's rrl_lock: whether the program has the maps, the maps
	 * in force (NULL: RRL off), and its notes of limited buckets. */
	bool rrl_in_program;
	_Atomic(struct xd_xdp_rrl *) rrl;
	struct xd_xdp_rrl_notes *rrl_notes;
	int stopfd;
	atomic_int stop;
	int nworkers;
	struct xd_xsk_worker workers[];
};

/* Makes the program count its answers under rrl's settings (NULL: not
 * at all) in new buckets shared with the workers; *old gets the maps
 * replaced, to be freed once the workers are past them.  With the
 * engine's rrl_lock held. */
int xd_xdp_rrl_switch(struct xd_xdp *x, const struct xd_rrl *rrl, struct xd_xdp_rrl **old,
		      struct xd_error *err);

struct xd_image;
struct xd_prog_table;
/* The answer table of img compiled and written into new maps (0), or not
 * to be installed (-1, the reason in the state); call with acl_lock held
 * and XDP mode running.  The program answers from the old table
 * meanwhile. */
int xd_xdp_answers_prepare(struct xd_engine *e, const struct xd_image *img,
			   struct xd_prog_table *out);
/* Puts the maps prepare built into the program's slots. */
void xd_xdp_answers_commit(struct xd_engine *e, struct xd_prog_table *maps);
/* Brings the XDP program's answer table in line with the image img (NULL:
 * the one published), the config and rate limiting.  Call with the
 * engine's acl_lock held. */
void xd_xdp_answers_refresh(struct xd_engine *e, const struct xd_image *img);

#endif
