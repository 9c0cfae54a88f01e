/*
 * udp.h - socket-mode workers: recvmmsg/sendmmsg on SO_REUSEPORT sockets,
 * one thread per worker, answering through the same core as XDP mode.
 */
#ifndef XDPDNS_UDP_H
#define XDPDNS_UDP_H

#include "engine.h"

/* Stops and frees the workers of e, if any (called by xd_engine_free). */
int xd_engine_udp_stop(struct xd_engine *e);

#endif
