/*
 * listen.h - the sockets the socket transports listen on (listen.c): one
 * per worker and address, SO_REUSEPORT, so that the kernel spreads flows
 * over the workers.  Not seen by cffi.
 */
#ifndef XDPDNS_LISTEN_H
#define XDPDNS_LISTEN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine.h"

/* Listen addresses a transport takes. */
#define XD_LISTEN_MAX 64

/* Opens a non-blocking socket of type (SOCK_DGRAM, or SOCK_STREAM, which
 * is also made to listen) bound to l's host and port (0: the kernel picks
 * one, which *bound_port says).  Returns the fd, or a negative errno with
 * err naming the address. */
int xd_listen_open(const struct xd_listen *l, int type, uint16_t port, int *bound_port,
		   struct xd_error *err);

/* The address (IPv4 in the first 4 bytes) and port of a socket address;
 * false for a family other than IPv4 and IPv6. */
bool xd_sockaddr_parts(const struct sockaddr_storage *ss, uint8_t *addr, uint16_t *port);

#endif
