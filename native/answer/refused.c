/*
 * refused.c - what a query from a source the ACL denies gets when the
 * socket action is "refuse": its header and question, REFUSED, and a bare
 * OPT when it had one (RFC 6891 7), whatever it asked.
 */
#include <string.h>

#include "answer/answer.h"
#include "wire/query.h"
#include "wire/wire.h"

/* The payload size we advertise, as the answering core does (DNS flag day
 * 2020). */
#define XD_REFUSED_UDP_PAYLOAD 1232
/* The opcode's four bits in the header's flags word (RFC 1035 4.1.1). */
#define XD_REFUSED_OPCODE_BITS 0x7800

static void put_bare_opt(uint8_t *p, const struct xd_query *q)
{
	p[0] = 0; /* the root */
	xd_put16(p + 1, XD_TYPE_OPT);
	xd_put16(p + 3, XD_REFUSED_UDP_PAYLOAD);
	p[5] = 0; /* extended RCODE: REFUSED fits in 4 bits */
	p[6] = 0; /* version */
	xd_put16(p + 7, q->edns_flags & XD_EDNS_DO); /* RFC 3225 3 */
	xd_put16(p + 9, 0);
}

int xd_answer_refused(const uint8_t *query, size_t qlen, uint8_t *resp, size_t cap)
{
	struct xd_query q;
	uint16_t flags;
	size_t len;

	if (qlen < XD_DNS_HEADER_LEN || cap < 512)
		return 0;
	if (xd_query_parse(&q, query, qlen) == XD_QUERY_DROP)
		return 0; /* a response, or too short: never answer it */
	/* Header and question: at most 12 + 255 + 4 bytes, within the 512
	 * that cap has. */
	len = q.question_end;
	memcpy(resp, query, len);
	flags = XD_FLAG_QR | (q.flags & (XD_REFUSED_OPCODE_BITS | XD_FLAG_RD | XD_FLAG_CD)) |
		XD_RCODE_REFUSED;
	xd_put16(resp + 2, flags);
	xd_put16(resp + 4, len > XD_DNS_HEADER_LEN ? 1 : 0);
	xd_put16(resp + 6, 0);
	xd_put16(resp + 8, 0);
	xd_put16(resp + 10, q.edns ? 1 : 0);
	if (q.edns) {
		/* RFC 6891 7: a query with OPT gets OPT back. */
		put_bare_opt(resp + len, &q);
		len += XD_OPT_RR_LEN;
	}
	return (int)len;
}
