/*
 * listen.c - opening the listening sockets of the UDP and TCP transports
 * (listen.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "io/listen.h"

/* Connections waiting for accept beyond this are refused by the kernel:
 * a burst of clients waits here, not in SYN retries. */
#define XD_TCP_BACKLOG 1024

static int parse_address(const struct xd_listen *l, uint16_t port, struct sockaddr_storage *ss,
			 socklen_t *len)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, l->host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, l->host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* The options a socket of type needs before bind. */
static int set_options(int fd, int type, const struct sockaddr_storage *ss)
{
	int one = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)))
		return -errno;
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)))
		return -errno;
	if (type == SOCK_STREAM)
		return 0;
	/* Only a wildcard bind needs to learn a datagram's destination (the
	 * reply leaves from it); elsewhere it costs about 1% for nothing. */
	if (is_wildcard(ss) &&
	    (ss->ss_family == AF_INET6 ?
		     setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) :
		     setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))))
		return -errno;
	return 0;
}

int xd_listen_open(const struct xd_listen *l, int type, uint16_t port, int *bound_port,
		   struct xd_error *err)
{
	const char *proto = type == SOCK_STREAM ? "tcp" : "udp";
	bool v6 = strchr(l->host, ':') != NULL;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, rc;

	if (parse_address(l, port, &ss, &len))
		return xd_errorf(err, -EINVAL,
				 "listen address %s is not a numeric IPv4 or "
				 "IPv6 address",
				 l->host);
	fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return xd_errorf(err, -errno, "cannot listen on %s%s%s:%u (%s): %s", v6 ? "[" : "",
				 l->host, v6 ? "]" : "", port, proto, strerror(errno));
	rc = set_options(fd, type, &ss);
	if (!rc && bind(fd, (struct sockaddr *)&ss, len))
		rc = -errno;
	if (!rc && type == SOCK_STREAM && listen(fd, XD_TCP_BACKLOG))
		rc = -errno;
	len = sizeof(ss);
	if (!rc && getsockname(fd, (struct sockaddr *)&ss, &len))
		rc = -errno;
	if (rc) {
		close(fd);
		return xd_errorf(err, rc, "cannot listen on %s%s%s:%u (%s): %s", v6 ? "[" : "",
				 l->host, v6 ? "]" : "", port, proto, strerror(-rc));
	}
	*bound_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
						      ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

bool xd_sockaddr_parts(const struct sockaddr_storage *ss, uint8_t *addr, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		memcpy(addr, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		memcpy(addr, &in6->sin6_addr, 16);
		*port = ntohs(in6->sin6_port);
		return true;
	}
	return false;
}
