/*
 * response_counts.c - responses by RCODE and query type, for the stats.
 */
#include <string.h>

#include "engine.h"
#include "answer/response_counts.h"
#include "wire/wire.h"

int xd_qtype_bucket_of(uint16_t qtype)
{
	return (int)xd_qtype_bucket(qtype);
}

/* The type of the response's one question, or -1 (the core writes the
 * question uncompressed). */
static int question_type(const uint8_t *resp, size_t len)
{
	size_t pos = XD_DNS_HEADER_LEN;

	if (len < XD_DNS_HEADER_LEN || xd_get16(resp + 4) != 1)
		return -1;
	while (pos < len && resp[pos] != 0) {
		if (resp[pos] > 63)
			return -1;
		pos += resp[pos] + 1;
	}
	if (pos + 3 > len)
		return -1;
	return xd_get16(resp + pos + 1);
}

void xd_response_counts_add(struct xd_response_counts *c, const uint8_t *resp, size_t len)
{
	int qtype;

	if (len < XD_DNS_HEADER_LEN)
		return;
	c->rcode[resp[3] & 0xf]++;
	qtype = question_type(resp, len);
	if (qtype >= 0)
		c->qtype[xd_qtype_bucket((uint32_t)qtype)]++;
	c->n++;
}

static void add(uint64_t *counter, uint32_t n)
{
	if (n)
		__atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

void xd_response_counts_flush(struct xd_response_counts *c, uint64_t *rcode, uint64_t *qtype)
{
	if (!c->n)
		return;
	for (int i = 0; i < XD_RCODES; i++)
		add(&rcode[i], c->rcode[i]);
	for (int i = 0; i < XD_QTYPE_BUCKETS; i++)
		add(&qtype[i], c->qtype[i]);
	memset(c, 0, sizeof(*c));
}
