/*
 * query.c - parsing the query: header, the one question, and the records
 * after it (only OPT is used; the rest must merely be well-formed).
 */
#include <string.h>

#include "wire/query.h"

/* The question's name: no compression, since nothing precedes it. */
static int parse_qname(struct xd_query *q, size_t *pos)
{
	size_t p = *pos;
	size_t out = 0;

	for (;;) {
		uint8_t l;

		if (p >= q->len)
			return -1;
		l = q->pkt[p];
		if (l > XD_LABEL_MAX || p + 1 + l > q->len || out + 1 + l > XD_NAME_MAX)
			return -1;
		q->qname[out] = l;
		xd_name_lower(q->qname + out + 1, q->pkt + p + 1, l);
		out += 1 + l;
		p += 1 + l;
		if (l == 0)
			break;
	}
	q->qname_len = out;
	*pos = p;
	return 0;
}

/* RFC 7873 5.2.2: a client cookie alone, or with a server cookie of 8 to
 * 32 bytes. */
static bool cookie_length_ok(uint16_t len)
{
	return len == XD_COOKIE_CLIENT_LEN || (len >= XD_COOKIE_CLIENT_LEN + XD_COOKIE_SERVER_MIN &&
					       len <= XD_COOKIE_CLIENT_LEN + XD_COOKIE_SERVER_MAX);
}

/* RFC 7873 5.2: the first COOKIE option counts and later ones are
 * ignored.  Whether a malformed one is an error is the answer's business:
 * with cookies off it is ignored, as by any server without them. */
static void note_cookie(struct xd_query *q, const uint8_t *data, uint16_t len)
{
	if (q->cookie)
		return;
	q->cookie = data;
	q->cookie_len = len;
	q->cookie_malformed = !cookie_length_ok(len);
}

/* RFC 6891 6.1.2: the OPT's options must be well-formed TLVs; notes the
 * ones the answer depends on. */
static int parse_options(struct xd_query *q, const uint8_t *rdata, size_t len)
{
	size_t p = 0;

	while (p < len) {
		uint16_t code, olen;

		if (len - p < 4)
			return -1;
		code = xd_get16(rdata + p);
		olen = xd_get16(rdata + p + 2);
		if (olen > len - p - 4)
			return -1;
		if (code == XD_EDNS_OPTION_NSID)
			q->nsid = true; /* RFC 5001 2.1: its payload is empty */
		else if (code == XD_EDNS_OPTION_COOKIE)
			note_cookie(q, rdata + p + 4, olen);
		else if (code == XD_EDNS_OPTION_KEEPALIVE)
			q->keepalive = true;
		p += 4 + olen;
	}
	return 0;
}

static int parse_opt(struct xd_query *q, size_t name_pos, size_t rr)
{
	const uint8_t *p = q->pkt + rr;

	/* RFC 6891 6.1.1: one OPT, owned by the root. */
	if (q->edns || q->pkt[name_pos] != 0 || rr != name_pos + 1)
		return -1;
	if (parse_options(q, p + 10, xd_get16(p + 8)))
		return -1;
	q->edns = true;
	q->udp_size = xd_get16(p + 2);
	q->edns_version = p[5];
	q->edns_flags = xd_get16(p + 6);
	return 0;
}

static int parse_records(struct xd_query *q, size_t *pos, unsigned count, bool additional)
{
	for (unsigned i = 0; i < count; i++) {
		size_t name_pos = *pos, name_len = xd_name_skip(q->pkt + *pos, q->len - *pos);
		uint16_t rdlen;

		if (!name_len || q->len - *pos - name_len < 10)
			return -1;
		*pos += name_len;
		rdlen = xd_get16(q->pkt + *pos + 8);
		if (q->len - *pos - 10 < rdlen)
			return -1;
		/* Records in a query are ignored, as Knot does; only the
		 * additional section's OPT and TSIG mean something.  A TSIG
		 * anywhere but last is malformed (RFC 8945 5.1). */
		if (additional && xd_get16(q->pkt + *pos) == XD_TYPE_OPT &&
		    parse_opt(q, name_pos, *pos))
			return -1;
		if (xd_get16(q->pkt + *pos) == XD_TYPE_TSIG) {
			if (!additional || i + 1 != count)
				return -1;
			q->tsig = name_pos;
		}
		*pos += 10 + rdlen;
	}
	return 0;
}

/* Answer, authority and additional sections; the packet must end there. */
static int parse_sections(struct xd_query *q, size_t pos)
{
	if (parse_records(q, &pos, xd_get16(q->pkt + 6) + xd_get16(q->pkt + 8), false) ||
	    parse_records(q, &pos, xd_get16(q->pkt + 10), true))
		return -1;
	return pos == q->len ? 0 : -1; /* trailing bytes */
}

static int parse_question(struct xd_query *q)
{
	size_t pos = XD_DNS_HEADER_LEN;

	if (xd_get16(q->pkt + 4) != 1 || parse_qname(q, &pos) || q->len - pos < 4)
		return -1;
	q->qtype = xd_get16(q->pkt + pos);
	q->qclass = xd_get16(q->pkt + pos + 2);
	q->question_end = pos + 4;
	return 0;
}

int xd_query_parse(struct xd_query *q, const uint8_t *pkt, size_t len)
{
	/* Not a whole memset: qname is 255 bytes that parse_qname writes. */
	memset(q, 0, offsetof(struct xd_query, qname));
	q->qname_len = 0;
	q->question_end = XD_DNS_HEADER_LEN;
	q->edns = false;
	q->edns_version = 0;
	q->edns_flags = 0;
	q->udp_size = 0;
	q->nsid = false;
	q->cookie = NULL;
	q->keepalive = false;
	q->cookie_len = 0;
	q->cookie_malformed = false;
	q->tsig = 0;
	q->pkt = pkt;
	q->len = len;
	if (len < XD_DNS_HEADER_LEN)
		return XD_QUERY_DROP;
	q->flags = xd_get16(pkt + 2);
	if (q->flags & XD_FLAG_QR)
		return XD_QUERY_DROP; /* never answer an answer: no loops */
	if (XD_OPCODE(q->flags) != XD_OPCODE_QUERY) {
		/* RFC 6891 6.1.1: echo OPT even here, when the rest parses. */
		if (parse_question(q) == 0 && parse_sections(q, q->question_end))
			q->edns = false;
		return XD_QUERY_NOTIMP;
	}
	if (parse_question(q))
		return XD_QUERY_FORMERR;
	if (parse_sections(q, q->question_end)) {
		q->edns = false; /* FORMERR goes without OPT, as Knot's */
		return XD_QUERY_FORMERR;
	}
	return XD_QUERY_OK;
}
