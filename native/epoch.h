/*
 * epoch.h - epoch-based reclamation of what the engine publishes (epoch.c):
 * a reader stores the global epoch in its slot before it loads a published
 * pointer and clears it when done; a publisher swaps the pointer, then
 * xd_epoch_synchronize bumps the epoch and returns once no slot holds an
 * epoch older than the bump, when the old object can be freed.  Readers
 * never wait and never write a shared cache line.  Not seen by cffi.
 */
#ifndef XDPDNS_EPOCH_H
#define XDPDNS_EPOCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* One reader slot per worker plus one for callers outside the workers
 * (the control socket, tests): socket-mode UDP workers take the first half
 * of XD_WORKERS_MAX, AF_XDP queue workers the second, then the TCP
 * workers theirs. */
#define XD_WORKERS_MAX 1024
#define XD_READER_XDP_BASE (XD_WORKERS_MAX / 2)
#define XD_TCP_WORKERS_MAX 64
#define XD_READER_TCP_BASE XD_WORKERS_MAX
#define XD_READERS (XD_WORKERS_MAX + XD_TCP_WORKERS_MAX)
#define XD_READER_EXTERNAL XD_READERS

struct xd_reader {
	_Atomic uint64_t epoch; /* 0: not reading */
} __attribute__((aligned(64)));

struct xd_epoch {
	_Atomic uint64_t epoch;
	pthread_mutex_t lock; /* one synchronization at a time */
	struct xd_reader readers[XD_READERS + 1];
};

void xd_epoch_init(struct xd_epoch *ep);
void xd_epoch_destroy(struct xd_epoch *ep);

static inline void xd_epoch_enter(struct xd_epoch *ep, int slot)
{
	atomic_store(&ep->readers[slot].epoch, atomic_load(&ep->epoch));
}

static inline void xd_epoch_leave(struct xd_epoch *ep, int slot)
{
	atomic_store_explicit(&ep->readers[slot].epoch, 0, memory_order_release);
}

/* Returns once every reader that could still hold a pointer published
 * before this call has left. */
void xd_epoch_synchronize(struct xd_epoch *ep);

#endif
