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
	if (e->udp || e->xdp)
		return xd_errorf(err, -EBUSY, "dnstap starts before the workers");
	rc = xd_dnstap_new(cfg, XD_READERS + 1, &e->dnstap, err);
	if (rc < 0)
		return rc;
	e->dnstap_external = xd_dnstap_ring(e->dnstap, XD_READER_EXTERNAL);
	pthread_mutex_init(&e->dnstap_lock, NULL);
	return 0;
}

void xd_engine_dnstap_stop(struct xd_engine *e)
{
	if (!e->dnstap)
		return;
	xd_dnstap_free(e->dnstap);
	e->dnstap = NULL;
	e->dnstap_external = NULL;
	pthread_mutex_destroy(&e->dnstap_lock);
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

int xd_engine_dnstap_log(struct xd_engine *e, int family, int tcp,
			 const uint8_t *client, uint16_t client_port,
			 const uint8_t *server, uint16_t server_port,
			 const uint8_t *query, size_t qlen,
			 const uint8_t *response, size_t rlen)
{
	size_t alen = family == AF_INET ? 4 : 16;
	struct xd_dnstap_event ev = {
		.family = (uint8_t)family,
		.tcp = tcp != 0,
		.client_port = client_port,
		.server_port = server_port,
		.query = query,
		.query_len = (uint16_t)qlen,
		.response = response,
		.response_len = (uint16_t)rlen,
	};
	int sampled = 0;

	if (!e->dnstap_external || (family != AF_INET && family != AF_INET6) ||
	    qlen > UINT16_MAX || rlen > UINT16_MAX)
		return 0;
	memcpy(ev.client, client, alen);
	if (server)
		memcpy(ev.server, server, alen);
	pthread_mutex_lock(&e->dnstap_lock);
	if (xd_dnstap_sampled(e->dnstap_external)) {
		xd_dnstap_put(e->dnstap_external, &ev);
		sampled = 1;
	}
	pthread_mutex_unlock(&e->dnstap_lock);
	return sampled;
}
