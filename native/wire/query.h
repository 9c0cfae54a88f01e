/*
 * query.h - parsing a DNS query (RFC 1035 4.1, RFC 6891 6.1) into what the
 * answering core needs.  Every read is checked against the packet's end.
 */
#ifndef XDPDNS_QUERY_H
#define XDPDNS_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "wire/wire.h"

enum {
	XD_QUERY_OK = 0,
	XD_QUERY_DROP, /* a response, or too short to answer */
	XD_QUERY_FORMERR,
	XD_QUERY_NOTIMP, /* an opcode other than QUERY; question parsed */
};

struct xd_query {
	const uint8_t *pkt;
	size_t len;
	uint16_t flags;
	uint16_t qtype;
	uint16_t qclass;
	uint8_t qname[XD_NAME_MAX]; /* lower case, wire form */
	uint8_t qname_len;
	size_t question_end; /* offset just after the question */
	bool edns;
	uint8_t edns_version;
	uint16_t edns_flags;
	uint16_t udp_size;
	bool nsid; /* the OPT asks for the server's NSID (RFC 5001) */
	bool keepalive; /* it has an edns-tcp-keepalive option (RFC 7828) */
	/* The first COOKIE option (RFC 7873 5.2: later ones are ignored);
	 * NULL when there is none. */
	const uint8_t *cookie;
	uint16_t cookie_len;
	bool cookie_malformed; /* not 8 or 16 to 40 bytes long (RFC 7873 5.2.2) */
	/* Where the TSIG record starts (RFC 8945), the message's last; 0:
	 * none.  Read and checked by the answering core (wire/tsig.h). */
	size_t tsig;
};

int xd_query_parse(struct xd_query *q, const uint8_t *pkt, size_t len);

#endif
