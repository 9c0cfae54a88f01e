/*
 * response_counts.h - a batch's responses counted by RCODE and query type,
 * added to a worker's counters once a batch (UDP and AF_XDP workers).
 * Not seen by cffi.
 */
#ifndef XDPDNS_RESPONSE_COUNTS_H
#define XDPDNS_RESPONSE_COUNTS_H

#include <stddef.h>
#include <stdint.h>

#include "xdpdns_maps.h"

#define XD_RCODES 16

struct xd_response_counts {
	uint32_t rcode[XD_RCODES];
	uint32_t qtype[XD_QTYPE_BUCKETS];
	uint32_t n;
};

/* Counts the response resp[0..len) (its RCODE, and its question's type
 * when it has one question). */
void xd_response_counts_add(struct xd_response_counts *c, const uint8_t *resp, size_t len);
/* Adds the counts to a worker's rcode[] and qtype[] (which only that worker
 * writes; readers load them relaxed) and starts again from zero. */
void xd_response_counts_flush(struct xd_response_counts *c, uint64_t *rcode, uint64_t *qtype);

#endif
