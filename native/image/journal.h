/*
 * journal.h - what each publication changed in the zones served, kept with
 * the image for IXFR out (RFC 1995).  journal.c derives it when an image
 * replaces another; the transfer writer (answer/axfr.c) reads it.
 *
 * A changeset holds its records in the order an IXFR response carries
 * them (RFC 1995 4): the old SOA, the records removed, the new SOA, the
 * records added.  Each record is kept expanded, so that it is the same
 * bytes whatever image it came from:
 *   u8 owner_len, owner[owner_len]  the labels in front of the zone's
 *                                   origin (0: the apex), lower case
 *   type, class, TTL, RDLENGTH, RDATA  as on the wire, names in RDATA
 *                                   written out in full (no pointers)
 *
 * Changesets never change once made and are shared, by reference count,
 * by the journals of every image that keeps them: a new image's journal
 * is the previous image's changesets plus its own, so a transfer that
 * holds its image holds the changesets it sends.
 */
#ifndef XDPDNS_JOURNAL_H
#define XDPDNS_JOURNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "wire/wire.h"

struct xd_changeset {
	_Atomic unsigned refs;
	uint32_t serial_from;
	uint32_t serial_to;
	size_t len; /* of data */
	uint8_t data[];
};

/* One zone's changesets, oldest first: each one's serial_to is the next
 * one's serial_from, and the last one's is the zone's serial in the image
 * that holds the journal. */
struct xd_zone_journal {
	uint32_t depth;
	struct xd_changeset **sets;
	uint64_t bytes; /* of the changesets' data */
	uint64_t zone_bytes; /* the zone's own records, expanded: an IXFR
			      * that would be longer is sent as the zone */
};

/* By zone index of the image that holds it. */
struct xd_journal {
	uint32_t zone_count;
	struct xd_zone_journal zones[];
};

/* Drops the journal's hold on its changesets and frees it; NULL is fine. */
void xd_journal_free(struct xd_journal *j);

/* The index of the changeset that starts at serial `from`, or -1: with
 * the ones after it, it takes a client from `from` to serial `to`, the
 * zone's. */
int xd_zone_journal_find(const struct xd_zone_journal *zj, uint32_t from, uint32_t to);

/* The journal of the zone whose origin is name (lower case) in img: 0,
 * or -ENOENT for no such zone. */
int xd_zone_journal_info(const struct xd_image *img, const uint8_t *name, size_t len,
			 struct xd_journal_info *out);

/* Bytes of the expanded record at rec (format above). */
static inline size_t xd_journal_record_size(const uint8_t *rec)
{
	size_t owner = 1 + (size_t)rec[0];

	return owner + 10 + xd_get16(rec + owner + 8);
}

#endif
