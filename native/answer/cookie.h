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
#include "wire/client.h"
#include "wire/wire.h"

/* RFC 9018 4.2: version, three reserved bytes, a 32-bit timestamp and a
 * 64-bit hash. */
#define XD_COOKIE_SERVER_LEN 16
#define XD_COOKIE_VERSION 1
/* The option's data in our responses: the client's cookie and one of ours. */
#define XD_COOKIE_REPLY_LEN (XD_COOKIE_CLIENT_LEN + XD_COOKIE_SERVER_LEN)

/* The published secrets (xd_engine_set_cookie_secrets); immutable once
 * published, reclaimed like the image. */
struct xd_cookies {
	uint8_t current[XD_COOKIE_SECRET_LEN]; /* makes every new server cookie */
	uint8_t previous[XD_COOKIE_SECRET_LEN]; /* still accepted while rotating */
	bool has_previous;
	bool require_udp; /* XD_COOKIE_REQUIRE_UDP */
};

/* A cookie secret set: current (and previous, or NULL), flags
 * XD_COOKIE_REQUIRE_UDP; err says what is wrong. */
int xd_cookies_build(const uint8_t *current, const uint8_t *previous, unsigned flags,
		     struct xd_cookies **out, struct xd_error *err);
void xd_cookies_free(struct xd_cookies *c);

/*
 * The COOKIE option of the response to a query whose well-formed option
 * data is opt[0..len) (len 8, or 16 to 40): the client cookie and a server
 * cookie, XD_COOKIE_REPLY_LEN bytes into out.  The server cookie is the
 * query's own when it is valid and fresh, else a new one made at `now`
 * with the current secret.  Returns what the query showed:
 * XD_COOKIE_CLIENT_ONLY, XD_COOKIE_INVALID or XD_COOKIE_VALID.
 */
int xd_cookie_reply(const struct xd_cookies *c, const struct xd_client *client, uint32_t now,
		    const uint8_t *opt, size_t len, uint8_t *out);

#endif
