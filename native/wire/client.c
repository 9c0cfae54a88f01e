/*
 * client.c - a query's source as struct xd_client (client.h).
 */
#include <netinet/in.h>
#include <string.h>

#include "wire/client.h"

void xd_client_set(struct xd_client *client, int family, const uint8_t *addr)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(client, 0, sizeof(*client));
	if (family == AF_INET) {
		client->family = AF_INET;
		memcpy(client->addr, addr, 4);
	} else if (family == AF_INET6 && memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
		client->family = AF_INET;
		memcpy(client->addr, addr + 12, 4);
	} else if (family == AF_INET6) {
		client->family = AF_INET6;
		memcpy(client->addr, addr, 16);
	}
}

void xd_client_from_sockaddr(struct xd_client *client, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		xd_client_set(client, AF_INET,
			      (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
	else if (sa->sa_family == AF_INET6)
		xd_client_set(client, AF_INET6,
			      ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
	else
		xd_client_set(client, AF_UNSPEC, NULL);
}
