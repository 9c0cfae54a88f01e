/*
 * epoch.c - the publisher's side of epoch-based reclamation (epoch.h).
 */
#include <time.h>

#include "epoch.h"

void xd_epoch_init(struct xd_epoch *ep)
{
	atomic_init(&ep->epoch, 1);
	pthread_mutex_init(&ep->lock, NULL);
	for (int i = 0; i <= XD_READERS; i++)
		atomic_init(&ep->readers[i].epoch, 0);
}

void xd_epoch_destroy(struct xd_epoch *ep)
{
	pthread_mutex_destroy(&ep->lock);
}

void xd_epoch_synchronize(struct xd_epoch *ep)
{
	const struct timespec pause = { 0, 100 * 1000 };
	uint64_t epoch;

	pthread_mutex_lock(&ep->lock);
	epoch = atomic_fetch_add(&ep->epoch, 1) + 1;
	for (int i = 0; i <= XD_READERS; i++) {
		for (;;) {
			uint64_t seen = atomic_load(&ep->readers[i].epoch);

			if (seen == 0 || seen >= epoch)
				break;
			/* A reader holds the old object for one batch:
			 * microseconds.  Sleep rather than spin. */
			nanosleep(&pause, NULL);
		}
	}
	pthread_mutex_unlock(&ep->lock);
}
