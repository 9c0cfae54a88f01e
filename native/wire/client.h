/*
 * client.h - who asked: the address of a query's source as the engine keeps
 * it (struct xd_client, engine.h), for cookies, ACLs and rate limiting.
 */
#ifndef XDPDNS_CLIENT_H
#define XDPDNS_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine.h"

/* True when the client's address is known (cookies can be made for it:
 * their hash covers it). */
static inline bool xd_client_known(const struct xd_client *client)
{
	return client->family == AF_INET || client->family == AF_INET6;
}

/* Sets client from an address of `family` (4 or 16 bytes); an IPv4-mapped
 * IPv6 address (RFC 4291 2.5.5.2) becomes the IPv4 client it is, so that a
 * dual-stack socket and an IPv4 one make the same cookie.  Another family
 * leaves the client unknown. */
void xd_client_set(struct xd_client *client, int family, const uint8_t *addr);
void xd_client_from_sockaddr(struct xd_client *client, const struct sockaddr *sa);

#endif
