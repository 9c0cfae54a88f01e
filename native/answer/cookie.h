/*
 * cookie.h - DNS cookies inside the engine (RFC 7873, with the interoperable
 * server cookies of RFC 9018): the secrets the engine publishes to its
 * workers, and the COOKIE option of one response.  Not seen by cffi.
 */
#ifndef XDPDNS_COOKIE_H
#define XDPDNS_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "engine.h"

/* RFC 7873 4: an 8-byte client cookie, then 8 to 32 bytes of server
 * cookie; any other length is malformed (RFC 7873 5.2.2). */
#define XD_COOKIE_CLIENT_LEN 8
#define XD_COOKIE_SERVER_MIN 8
#define XD_COOKIE_SERVER_MAX 32
/* RFC 9018 4.2: version, three reserved bytes, a 32-bit timestamp and a
 * 64-bit hash. */
#define XD_COOKIE_SERVER_LEN 16
#define XD_COOKIE_VERSION 1
/* The option's data in our responses: the client's cookie and one of ours. */
#define XD_COOKIE_REPLY_LEN (XD_COOKIE_CLIENT_LEN + XD_COOKIE_SERVER_LEN)

/* The published secrets (xd_engine_set_cookie_secrets); immutable once
 * published, reclaimed like the image. */
struct xd_cookies {
	uint8_t current[XD_COOKIE_SECRET_LEN];	/* makes every new server cookie */
	uint8_t previous[XD_COOKIE_SECRET_LEN];	/* still accepted while rotating */
	bool has_previous;
	bool require_udp;			/* XD_COOKIE_REQUIRE_UDP */
};

void xd_cookies_free(struct xd_cookies *c);

/* True when cookies can be computed for this client: the hash covers its
 * address. */
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

/*
 * The COOKIE option of the response to a query whose well-formed option
 * data is opt[0..len) (len 8, or 16 to 40): the client cookie and a server
 * cookie, XD_COOKIE_REPLY_LEN bytes into out.  The server cookie is the
 * query's own when it is valid and fresh, else a new one made at `now`
 * with the current secret.  Returns what the query showed:
 * XD_COOKIE_CLIENT_ONLY, XD_COOKIE_INVALID or XD_COOKIE_VALID.
 */
int xd_cookie_reply(const struct xd_cookies *c, const struct xd_client *client,
		    uint32_t now, const uint8_t *opt, size_t len, uint8_t *out);

#endif
