/*
 * engine_dnstap.c - the engine's dnstap writer (native/io/dnstap.c): started
 * before the workers, which each take a ring of their own, and stopped
 * after them; TCP answers come in through one shared ring.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "io/dnstap.h"
#include "engine_internal.h"
#include "error.h"

int xd_engine_dnstap_start(struct xd_engine *e, const struct xd_dnstap_config *cfg,
			   struct xd_error *err)
{
	int rc;

	if (e->dnstap)
		return xd_errorf(err, -EALREADY, "dnstap is already on");
	if (e->udp || e->tcp || e->xdp)
		return xd_errorf(err, -EBUSY, "dnstap starts before the workers");
	rc = xd_dnstap_new(cfg, XD_READERS, &e->dnstap, err);
	if (rc < 0)
		return rc;
	return 0;
}

void xd_engine_dnstap_stop(struct xd_engine *e)
{
	if (!e->dnstap)
		return;
	xd_dnstap_free(e->dnstap);
	e->dnstap = NULL;
}

int xd_engine_dnstap_stats(struct xd_engine *e, struct xd_dnstap_stats *out)
{
	if (!e->dnstap)
		return 0;
	xd_dnstap_stats_get(e->dnstap, out);
	return 1;
}

struct xd_dnstap_ring *xd_engine_dnstap_ring(struct xd_engine *e, int slot)
{
	return e->dnstap ? xd_dnstap_ring(e->dnstap, slot) : NULL;
}
