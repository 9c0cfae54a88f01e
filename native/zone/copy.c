/*
 * copy.c - a zone out of an image into a builder: how a secondary applies
 * an incremental transfer (the served zone less the deleted records, then
 * the added ones), and how a zone kept on disk as an image is loaded.
 *
 * The image keeps each RR as it is answered (image.h): names in RDATA
 * under the origin end in a pointer to it, which is written back here as
 * the origin itself.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "zone/builder.h"

/* A record to leave out. */
struct skip_rr {
	const uint8_t *owner; /* as given */
	const uint8_t *rdata;
	uint16_t type;
	uint16_t rdlen;
	uint8_t owner_len;
	bool found;
};

struct skip_set {
	struct skip_rr *rr;
	size_t count;
	uint32_t *slot; /* index + 1, 0: empty */
	size_t size; /* power of two */
};

static uint64_t skip_hash(const uint8_t *owner, size_t len, uint16_t type)
{
	uint8_t lower[XD_NAME_MAX];

	xd_name_lower(lower, owner, len);
	return xd_hash(lower, len, type);
}

/* Parses skip[0..len) into s; -EINVAL for a malformed record. */
static int skip_parse(struct skip_set *s, const uint8_t *skip, size_t len)
{
	size_t pos = 0, cap = 0;

	while (pos < len) {
		struct skip_rr *r;
		int owner = xd_name_check(skip + pos, len - pos);
		size_t rdlen;

		if (owner < 0 || len - pos - owner < 10)
			return -EINVAL;
		rdlen = xd_get16(skip + pos + owner + 8);
		if (len - pos - owner - 10 < rdlen)
			return -EINVAL;
		if (xd_grow((void **)&s->rr, &cap, s->count + 1, sizeof(*s->rr)))
			return -ENOMEM;
		r = &s->rr[s->count++];
		r->owner = skip + pos;
		r->owner_len = (uint8_t)owner;
		r->type = xd_get16(skip + pos + owner);
		r->rdlen = (uint16_t)rdlen;
		r->rdata = skip + pos + owner + 10;
		r->found = false;
		pos += owner + 10 + rdlen;
	}
	if (!s->count)
		return 0;
	for (s->size = 16; s->size < 2 * s->count; s->size *= 2)
		;
	s->slot = calloc(s->size, sizeof(*s->slot));
	if (!s->slot)
		return -ENOMEM;
	for (size_t i = 0; i < s->count; i++) {
		size_t h = skip_hash(s->rr[i].owner, s->rr[i].owner_len, s->rr[i].type) &
			   (s->size - 1);

		while (s->slot[h])
			h = (h + 1) & (s->size - 1);
		s->slot[h] = (uint32_t)i + 1;
	}
	return 0;
}

/* Bytes equal, and names (where type has them) equal without regard to
 * case: the image keeps the origin in RDATA lower-cased. */
static bool rdata_equal(uint16_t type, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	const struct xd_name_field *f = xd_rdata_name_field(type);
	size_t pos = 0;

	if (alen != blen)
		return false;
	if (f && f->offset <= alen) {
		if (memcmp(a, b, f->offset))
			return false;
		pos = f->offset;
		for (int i = 0; i < f->names; i++) {
			int la = xd_name_check(a + pos, alen - pos);
			int lb = xd_name_check(b + pos, blen - pos);

			if (la < 0 || la != lb || !xd_name_equal(a + pos, la, b + pos, lb))
				return false;
			pos += la;
		}
	}
	return memcmp(a + pos, b + pos, alen - pos) == 0;
}

/* The skip record that (owner, type, rdata) is and that was not matched
 * yet, or NULL. */
static struct skip_rr *skip_find(struct skip_set *s, const uint8_t *owner, size_t owner_len,
				 uint16_t type, const uint8_t *rdata, size_t rdlen)
{
	size_t h;

	if (!s->count)
		return NULL;
	h = skip_hash(owner, owner_len, type) & (s->size - 1);
	for (; s->slot[h]; h = (h + 1) & (s->size - 1)) {
		struct skip_rr *r = &s->rr[s->slot[h] - 1];

		if (!r->found && r->type == type &&
		    xd_name_equal(r->owner, r->owner_len, owner, owner_len) &&
		    rdata_equal(type, r->rdata, r->rdlen, rdata, rdlen))
			return r;
	}
	return NULL;
}

/* One RR of an image RRset's wire back in uncompressed form: its RDATA
 * into out (the origin written where the image points to it); returns
 * the RDATA's length, or -EINVAL when it would not fit. */
static int rdata_expand(const uint8_t *rs, size_t off, const uint8_t *origin, size_t origin_len,
			uint8_t *out, size_t cap)
{
	const uint8_t *wire = xd_rrset_wire(rs), *relocs = xd_rrset_relocs(rs);
	size_t rdlen = xd_get16(wire + off + 10), from = off + 12, len = 0;

	for (uint8_t k = 0; k < xd_rrset_nreloc(rs); k++) {
		size_t at = xd_ld16(relocs + 2 * k);

		if (at < off + 12 || at + 2 > off + 12 + rdlen)
			continue; /* another RR's */
		if (len + (at - from) + origin_len > cap)
			return -EINVAL;
		memcpy(out + len, wire + from, at - from);
		len += at - from;
		memcpy(out + len, origin, origin_len);
		len += origin_len;
		from = at + 2;
	}
	if (len + (off + 12 + rdlen - from) > cap)
		return -EINVAL;
	memcpy(out + len, wire + from, off + 12 + rdlen - from);
	return (int)(len + off + 12 + rdlen - from);
}

static int copy_rrset(struct xd_builder *b, int zone, const uint8_t *owner, size_t owner_len,
		      const uint8_t *rs, const struct xd_zone_entry *z, const uint8_t *origin,
		      struct skip_set *skip)
{
	const uint8_t *wire = xd_rrset_wire(rs);
	uint8_t rdata[UINT16_MAX];
	size_t off = 0;

	for (uint16_t i = 0; i < xd_rrset_count(rs); i++) {
		uint16_t type = xd_get16(wire + off + 2);
		uint32_t ttl = xd_get32(wire + off + 6);
		int len = rdata_expand(rs, off, origin, z->origin_len, rdata, sizeof(rdata));
		struct skip_rr *r;
		int rc;

		if (len < 0)
			return len;
		off += 12 + xd_get16(wire + off + 10);
		r = skip_find(skip, owner, owner_len, type, rdata, (size_t)len);
		if (r) {
			r->found = true;
			continue;
		}
		rc = xd_builder_add_record(b, zone, owner, owner_len, type, XD_CLASS_IN, ttl, rdata,
					   (size_t)len, -1, 0);
		if (rc && rc != -EINVAL)
			return rc;
	}
	return 0;
}

int xd_builder_copy_zone(struct xd_builder *b, int zone, const struct xd_image *img,
			 const uint8_t *skip, size_t skip_len, int *missing)
{
	struct skip_set set = { 0 };
	const struct xd_zone_entry *z;
	const uint8_t *origin, *n;
	size_t nodes_end = img->hdr->zone_hash;
	int found, rc;

	*missing = -1;
	if (zone < 0 || (size_t)zone >= b->nzones)
		return -EINVAL;
	found = xd_image_find_zone(img, b->zones[zone].origin, b->zones[zone].origin_len);
	if (found < 0)
		return -ENOENT;
	z = xd_image_zone(img, (uint32_t)found);
	origin = img->base + z->origin;
	rc = skip_parse(&set, skip, skip_len);
	/* The zone's nodes are one run from its apex (layout.c). */
	for (n = img->base + z->apex; rc == 0 &&
				      (size_t)(n - img->base) + XD_NODE_HEADER <= nodes_end &&
				      xd_node_zone(n) == (uint16_t)found;) {
		uint8_t owner[XD_NAME_MAX];
		size_t owner_len = xd_node_name_len(n) + z->origin_len;
		const uint8_t *rs = xd_node_first_rrset(n);

		memcpy(owner, xd_node_name(n), xd_node_name_len(n));
		memcpy(owner + xd_node_name_len(n), origin, z->origin_len);
		for (uint16_t i = 0; rc == 0 && i < xd_node_nrrsets(n); i++) {
			rc = copy_rrset(b, zone, owner, owner_len, rs, z, origin, &set);
			rs = xd_rrset_next(rs);
		}
		n = rs; /* the next node starts after the last RRset */
	}
	for (size_t i = 0; rc == 0 && i < set.count; i++) {
		if (!set.rr[i].found) {
			*missing = (int)i;
			break;
		}
	}
	free(set.rr);
	free(set.slot);
	return rc;
}
