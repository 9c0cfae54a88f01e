/*
 * journal.c - the journal of changes kept with each image for IXFR out
 * (journal.h): when a new image is about to replace the one published,
 * each zone that may be transferred is compared with its previous
 * version, and what changed becomes one more changeset of the zone.
 *
 * The comparison walks the new zone's nodes and the old zone's in step
 * (the builder lays them out in the same order), looking a name up in the
 * other image's hash only where the two runs differ, and the old zone's
 * nodes in the new image only when some of its names are gone.  An RRset
 * whose bytes are the same in both images is the same RRset: the builder
 * renders equal data the same way, so the common case costs one memcmp.
 * Any other pair of RRsets is compared record by record in their expanded
 * form, which does not depend on how either image compressed them.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "image/image.h"
#include "image/journal.h"

/* A byte buffer that grows. */
struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

static int buf_reserve(struct buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;
	uint8_t *p;

	if (more <= b->cap - b->len)
		return 0;
	while (cap - b->len < more)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

/* Expanded records of one RRset, and where each starts. */
struct records {
	struct buf bytes;
	const uint8_t **at;
	size_t n;
	size_t cap;
};

/* What one zone's comparison found. */
struct diff {
	const uint8_t *origin;
	size_t origin_len;
	struct buf removed;
	struct buf added;
	uint32_t nremoved;
	uint32_t nadded;
	uint64_t zone_bytes; /* the new zone's records, expanded */
	struct records old; /* scratch for one pair of RRsets */
	struct records new;
};

/* Appends the RR of the RRset rs at offset off of its wire, owned by the
 * node whose relative name is owner, in expanded form (journal.h); *next:
 * the offset of the RR after it.  -E2BIG for RDATA that grows past 65535
 * bytes once its names are written out. */
static int put_expanded(struct buf *b, const struct diff *d, const uint8_t *owner,
			uint8_t owner_len, const uint8_t *rs, size_t off, size_t *next)
{
	const uint8_t *wire = xd_rrset_wire(rs), *relocs = xd_rrset_relocs(rs);
	size_t rdlen = xd_get16(wire + off + 10), rdata = off + 12, end = rdata + rdlen;
	size_t pointers = 0, expanded, pos = rdata;
	uint8_t *p;
	int rc;

	for (uint8_t k = 0; k < xd_rrset_nreloc(rs); k++) {
		size_t at = xd_ld16(relocs + 2 * k);

		pointers += at >= rdata && at + 2 <= end;
	}
	expanded = rdlen + pointers * d->origin_len - pointers * 2;
	if (expanded > UINT16_MAX)
		return -E2BIG;
	rc = buf_reserve(b, 1 + (size_t)owner_len + 10 + expanded);
	if (rc)
		return rc;
	p = b->data + b->len;
	*p++ = owner_len;
	memcpy(p, owner, owner_len);
	p += owner_len;
	memcpy(p, wire + off + 2, 8); /* type, class, TTL */
	xd_put16(p + 8, (uint16_t)expanded);
	p += 10;
	/* The builder writes an RRset's origin pointers in order (layout.c). */
	for (uint8_t k = 0; k < xd_rrset_nreloc(rs); k++) {
		size_t at = xd_ld16(relocs + 2 * k);

		if (at < rdata || at + 2 > end)
			continue;
		if (at < pos)
			return -EINVAL;
		memcpy(p, wire + pos, at - pos);
		p += at - pos;
		memcpy(p, d->origin, d->origin_len);
		p += d->origin_len;
		pos = at + 2;
	}
	memcpy(p, wire + pos, end - pos);
	b->len += 1 + (size_t)owner_len + 10 + expanded;
	*next = end;
	return 0;
}

/* Appends every RR of rs, expanded, to b; *count: how many. */
static int put_rrset(struct buf *b, const struct diff *d, const uint8_t *node, const uint8_t *rs,
		     uint32_t *count)
{
	size_t off = 0;

	for (uint16_t i = 0; i < xd_rrset_count(rs); i++) {
		int rc = put_expanded(b, d, xd_node_name(node), xd_node_name_len(node), rs, off,
				      &off);

		if (rc)
			return rc;
	}
	*count += xd_rrset_count(rs);
	return 0;
}

static int records_fill(struct records *r, const struct diff *d, const uint8_t *node,
			const uint8_t *rs)
{
	size_t n = xd_rrset_count(rs), off = 0;
	uint32_t unused = 0;
	int rc;

	r->bytes.len = 0;
	if (n > r->cap) {
		const uint8_t **at = realloc(r->at, n * sizeof(*at));

		if (!at)
			return -ENOMEM;
		r->at = at;
		r->cap = n;
	}
	rc = put_rrset(&r->bytes, d, node, rs, &unused);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		r->at[i] = r->bytes.data + off;
		off += xd_journal_record_size(r->at[i]);
	}
	r->n = n;
	return 0;
}

/* Any order that makes equal records neighbours: by size, then bytes. */
static int record_cmp(const void *a, const void *b)
{
	const uint8_t *x = *(const uint8_t *const *)a, *y = *(const uint8_t *const *)b;
	size_t lx = xd_journal_record_size(x), ly = xd_journal_record_size(y);

	if (lx != ly)
		return lx < ly ? -1 : 1;
	return memcmp(x, y, lx);
}

static int put_record(struct buf *b, const uint8_t *rec, uint32_t *count)
{
	size_t len = xd_journal_record_size(rec);
	int rc = buf_reserve(b, len);

	if (rc)
		return rc;
	memcpy(b->data + b->len, rec, len);
	b->len += len;
	(*count)++;
	return 0;
}

static bool rrset_same(const uint8_t *a, const uint8_t *b)
{
	return xd_rrset_count(a) == xd_rrset_count(b) &&
	       xd_rrset_wire_len(a) == xd_rrset_wire_len(b) &&
	       xd_rrset_nreloc(a) == xd_rrset_nreloc(b) &&
	       memcmp(xd_rrset_wire(a), xd_rrset_wire(b), xd_rrset_wire_len(a)) == 0 &&
	       memcmp(xd_rrset_relocs(a), xd_rrset_relocs(b), 2 * (size_t)xd_rrset_nreloc(a)) == 0;
}

/* The records of node's RRset that only one of before and after (either
 * may be NULL) holds: removed and added. */
static int diff_rrset(struct diff *d, const uint8_t *node, const uint8_t *before,
		      const uint8_t *after)
{
	size_t i = 0, j = 0;
	int rc;

	if (!before)
		return put_rrset(&d->added, d, node, after, &d->nadded);
	if (!after)
		return put_rrset(&d->removed, d, node, before, &d->nremoved);
	if (rrset_same(before, after))
		return 0;
	rc = records_fill(&d->old, d, node, before);
	if (!rc)
		rc = records_fill(&d->new, d, node, after);
	if (rc)
		return rc;
	qsort(d->old.at, d->old.n, sizeof(*d->old.at), record_cmp);
	qsort(d->new.at, d->new.n, sizeof(*d->new.at), record_cmp);
	while (!rc && (i < d->old.n || j < d->new.n)) {
		int c = i == d->old.n ? 1 :
			j == d->new.n ? -1 :
					record_cmp(&d->old.at[i], &d->new.at[j]);

		if (c < 0)
			rc = put_record(&d->removed, d->old.at[i++], &d->nremoved);
		else if (c > 0)
			rc = put_record(&d->added, d->new.at[j++], &d->nadded);
		else
			i++, j++;
	}
	return rc;
}

/* The apex SOA is not in a changeset's lists: it is the changeset's two
 * SOAs. */
static bool skipped(const uint8_t *node, const uint8_t *rs)
{
	return xd_node_name_len(node) == 0 && xd_rrset_type(rs) == XD_TYPE_SOA;
}

/* Compares the node of one name in the old image and in the new (either
 * may be NULL, not both). */
static int diff_node(struct diff *d, const uint8_t *before, const uint8_t *after)
{
	const uint8_t *node = after ? after : before, *rs;
	uint16_t i;
	int rc = 0;

	rs = after ? xd_node_first_rrset(after) : NULL;
	for (i = 0; after && i < xd_node_nrrsets(after) && !rc; i++, rs = xd_rrset_next(rs))
		if (!skipped(after, rs))
			rc = diff_rrset(d, node,
					before ? xd_node_rrset(before, xd_rrset_type(rs)) : NULL,
					rs);
	rs = before ? xd_node_first_rrset(before) : NULL;
	for (i = 0; before && i < xd_node_nrrsets(before) && !rc; i++, rs = xd_rrset_next(rs))
		if (!skipped(before, rs) && (!after || !xd_node_rrset(after, xd_rrset_type(rs))))
			rc = diff_rrset(d, node, rs, NULL);
	return rc;
}

/* The expanded size of node's records, without building them. */
static uint64_t node_bytes(const struct diff *d, const uint8_t *node)
{
	const uint8_t *rs = xd_node_first_rrset(node);
	uint64_t bytes = 0;

	/* Each RR's 2-byte owner becomes its length and labels, each origin
	 * pointer the origin. */
	for (uint16_t i = 0; i < xd_node_nrrsets(node); i++, rs = xd_rrset_next(rs)) {
		uint64_t rrs = xd_rrset_count(rs), pointers = xd_rrset_nreloc(rs);

		bytes += xd_rrset_wire_len(rs) + rrs * (1 + (uint64_t)xd_node_name_len(node)) +
			 pointers * d->origin_len - 2 * (rrs + pointers);
	}
	return bytes;
}

/* The node after n in its zone's run (layout.c), or NULL after the last. */
static const uint8_t *next_node(const struct xd_image *img, const uint8_t *n)
{
	size_t off = (size_t)(n - img->base) + xd_node_size(n);
	const uint8_t *next = img->base + off;

	if (off + XD_NODE_HEADER > img->hdr->zone_hash || xd_node_zone(next) != xd_node_zone(n))
		return NULL;
	return next;
}

static const uint8_t *apex_node(const struct xd_image *img, uint32_t zone)
{
	return img->base + xd_image_zone(img, zone)->apex;
}

static bool same_name(const uint8_t *a, const uint8_t *b)
{
	return xd_node_name_len(a) == xd_node_name_len(b) &&
	       memcmp(xd_node_name(a), xd_node_name(b), xd_node_name_len(a)) == 0;
}

/* Compares every node of zone in img with its namesake in zone
 * old_zone of old; *matched: how many had one.  The builder lays out a
 * zone's nodes in the same order each time, so the old node after the
 * last one matched is tried before the name hash. */
static int walk_new(struct diff *d, const struct xd_image *img, uint32_t zone,
		    const struct xd_image *old, uint32_t old_zone, size_t *matched)
{
	const uint8_t *o_next = apex_node(old, old_zone);

	*matched = 0;
	for (const uint8_t *n = apex_node(img, zone); n; n = next_node(img, n)) {
		const uint8_t *o = o_next;
		int rc;

		if (!o || !same_name(o, n))
			o = xd_image_find(old, (uint16_t)old_zone, xd_node_name(n),
					  xd_node_name_len(n));
		if (o) {
			(*matched)++;
			o_next = next_node(old, o);
		}
		rc = diff_node(d, o, n);
		if (rc)
			return rc;
		d->zone_bytes += node_bytes(d, n);
	}
	return 0;
}

/* Removes what the nodes of zone old_zone in old that img's zone lacks
 * held; matched: how many of old's nodes walk_new found. */
static int walk_gone(struct diff *d, const struct xd_image *old, uint32_t old_zone,
		     const struct xd_image *img, uint32_t zone, size_t matched)
{
	size_t count = 0;
	const uint8_t *o;

	for (o = apex_node(old, old_zone); o; o = next_node(old, o))
		count++;
	if (count == matched)
		return 0; /* every old name is in the new zone */
	for (o = apex_node(old, old_zone); o; o = next_node(old, o)) {
		if (!xd_image_find(img, (uint16_t)zone, xd_node_name(o), xd_node_name_len(o))) {
			int rc = diff_node(d, o, NULL);

			if (rc)
				return rc;
		}
	}
	return 0;
}

static const uint8_t *apex_soa(const struct xd_image *img, uint32_t zone, const uint8_t **apex)
{
	const struct xd_zone_entry *z = xd_image_zone(img, zone);

	if (z->flags & XD_ZONE_EXPIRED)
		return NULL;
	*apex = img->base + z->apex;
	return xd_node_rrset(*apex, XD_TYPE_SOA);
}

/* Copies len bytes to p (an empty buffer's data may be NULL); returns
 * where they end. */
static uint8_t *append(uint8_t *p, const uint8_t *data, size_t len)
{
	if (len)
		memcpy(p, data, len);
	return p + len;
}

/* The changeset from the old apex SOA (serial from) to the new one (serial
 * to), with what d found. */
static int make_changeset(struct diff *d, const uint8_t *old_apex, const uint8_t *old_soa,
			  const uint8_t *new_apex, const uint8_t *new_soa, uint32_t from,
			  uint32_t to, struct xd_changeset **out)
{
	struct buf soas = { 0 };
	struct xd_changeset *cs;
	uint32_t unused = 0;
	size_t from_len;
	uint8_t *p;
	int rc = put_rrset(&soas, d, old_apex, old_soa, &unused);

	if (!rc)
		rc = put_rrset(&soas, d, new_apex, new_soa, &unused);
	if (rc) {
		free(soas.data);
		return rc;
	}
	from_len = xd_journal_record_size(soas.data);
	cs = malloc(sizeof(*cs) + soas.len + d->removed.len + d->added.len);
	if (!cs) {
		free(soas.data);
		return -ENOMEM;
	}
	atomic_init(&cs->refs, 1);
	cs->serial_from = from;
	cs->serial_to = to;
	cs->len = soas.len + d->removed.len + d->added.len;
	/* RFC 1995 4: old SOA, removed, new SOA, added. */
	p = cs->data;
	p = append(p, soas.data, from_len);
	p = append(p, d->removed.data, d->removed.len);
	p = append(p, soas.data + from_len, soas.len - from_len);
	append(p, d->added.data, d->added.len);
	free(soas.data);
	*out = cs;
	return 0;
}

static void changeset_put(struct xd_changeset *cs)
{
	if (cs && atomic_fetch_sub_explicit(&cs->refs, 1, memory_order_acq_rel) == 1)
		free(cs);
}

static void zone_journal_clear(struct xd_zone_journal *zj)
{
	for (uint32_t i = 0; i < zj->depth; i++)
		changeset_put(zj->sets[i]);
	free(zj->sets);
	zj->sets = NULL;
	zj->depth = 0;
	zj->bytes = 0;
}

void xd_journal_free(struct xd_journal *j)
{
	if (!j)
		return;
	for (uint32_t i = 0; i < j->zone_count; i++)
		zone_journal_clear(&j->zones[i]);
	free(j);
}

int xd_zone_journal_find(const struct xd_zone_journal *zj, uint32_t from, uint32_t to)
{
	if (!zj->depth || zj->sets[zj->depth - 1]->serial_to != to)
		return -1;
	for (uint32_t i = 0; i < zj->depth; i++)
		if (zj->sets[i]->serial_from == from)
			return (int)i;
	return -1;
}

int xd_zone_journal_info(const struct xd_image *img, const uint8_t *name, size_t len,
			 struct xd_journal_info *out)
{
	int zone = xd_image_find_zone(img, name, len);
	const struct xd_zone_journal *zj;

	if (zone < 0)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	if (!img->journal || (uint32_t)zone >= img->journal->zone_count)
		return 0;
	zj = &img->journal->zones[zone];
	out->depth = zj->depth;
	out->bytes = zj->bytes;
	if (zj->depth)
		out->oldest_serial = zj->sets[0]->serial_from;
	return 0;
}

/* zj: the newest of old's changesets (NULL: none) that fit the limits
 * with cs, then cs (which zj takes).  Old changesets are kept only when
 * they end where cs starts. */
static int zone_journal_extend(struct xd_zone_journal *zj, const struct xd_zone_journal *old,
			       struct xd_changeset *cs, const struct xd_journal_limits *limits)
{
	uint32_t keep = 0, first;
	uint64_t bytes = cs->len;

	if (old && old->depth && old->sets[old->depth - 1]->serial_to == cs->serial_from)
		keep = old->depth;
	first = old ? old->depth - keep : 0;
	for (uint32_t i = first; i < first + keep; i++)
		bytes += old->sets[i]->len;
	/* Oldest first out. */
	while (keep && (keep + 1 > limits->depth || bytes > limits->bytes)) {
		bytes -= old->sets[first]->len;
		first++;
		keep--;
	}
	zj->sets = malloc((keep + 1) * sizeof(*zj->sets));
	if (!zj->sets)
		return -ENOMEM;
	for (uint32_t i = 0; i < keep; i++) {
		zj->sets[i] = old->sets[first + i];
		atomic_fetch_add_explicit(&zj->sets[i]->refs, 1, memory_order_relaxed);
	}
	zj->sets[keep] = cs;
	zj->depth = keep + 1;
	zj->bytes = bytes;
	return 0;
}

/* zj: the same changesets as old. */
static int zone_journal_carry(struct xd_zone_journal *zj, const struct xd_zone_journal *old)
{
	if (!old || !old->depth)
		return 0;
	zj->sets = malloc(old->depth * sizeof(*zj->sets));
	if (!zj->sets)
		return -ENOMEM;
	for (uint32_t i = 0; i < old->depth; i++) {
		zj->sets[i] = old->sets[i];
		atomic_fetch_add_explicit(&zj->sets[i]->refs, 1, memory_order_relaxed);
	}
	zj->depth = old->depth;
	zj->bytes = old->bytes;
	return 0;
}

static void diff_reset(struct diff *d, const struct xd_image *img, const struct xd_zone_entry *z)
{
	d->origin = img->base + z->origin;
	d->origin_len = z->origin_len;
	d->removed.len = 0;
	d->added.len = 0;
	d->nremoved = 0;
	d->nadded = 0;
	d->zone_bytes = 0;
}

static void diff_free(struct diff *d)
{
	free(d->removed.data);
	free(d->added.data);
	free(d->old.bytes.data);
	free(d->old.at);
	free(d->new.bytes.data);
	free(d->new.at);
}

struct derive {
	struct xd_image *img;
	const struct xd_image *prev;
	const struct xd_journal_limits *limits;
	struct xd_journal *journal;
	struct diff diff;
	struct xd_journal_event *events;
	size_t cap;
	size_t n;
};

static void report(struct derive *v, uint32_t zone, int kind, uint32_t from, uint32_t to)
{
	const struct xd_zone_entry *z = xd_image_zone(v->img, zone);
	const struct xd_zone_journal *zj = &v->journal->zones[zone];
	struct xd_journal_event *e;

	if (v->n >= v->cap)
		return;
	e = &v->events[v->n++];
	memset(e, 0, sizeof(*e));
	memcpy(e->origin, v->img->base + z->origin, z->origin_len);
	e->origin_len = z->origin_len;
	e->kind = kind;
	e->serial_from = from;
	e->serial_to = to;
	e->removed = v->diff.nremoved;
	e->added = v->diff.nadded;
	e->depth = zj->depth;
	e->bytes = zj->bytes;
}

/* Zone `zone` of the new image against its previous version: its journal
 * and what it reports.  0, or -ENOMEM. */
static int derive_zone(struct derive *v, uint32_t zone)
{
	const struct xd_zone_entry *z = xd_image_zone(v->img, zone);
	struct xd_zone_journal *zj = &v->journal->zones[zone];
	const struct xd_zone_journal *old = NULL;
	const uint8_t *apex, *soa, *old_apex, *old_soa;
	struct xd_changeset *cs;
	uint32_t from, to;
	size_t matched;
	int pz, rc;

	if (xd_zone_acl_closed(v->img, z, XD_ZONE_ACL_TRANSFER) ||
	    !(soa = apex_soa(v->img, zone, &apex)))
		return 0;
	pz = xd_image_find_zone(v->prev, v->img->base + z->origin, z->origin_len);
	if (pz < 0 || !(old_soa = apex_soa(v->prev, (uint32_t)pz, &old_apex)))
		return 0; /* a new zone: no version to come from */
	if (v->prev->journal && (uint32_t)pz < v->prev->journal->zone_count)
		old = &v->prev->journal->zones[pz];
	from = xd_soa_rrset_serial(old_soa);
	to = xd_soa_rrset_serial(soa);
	diff_reset(&v->diff, v->img, z);
	rc = walk_new(&v->diff, v->img, zone, v->prev, (uint32_t)pz, &matched);
	if (!rc)
		rc = walk_gone(&v->diff, v->prev, (uint32_t)pz, v->img, zone, matched);
	if (rc == -E2BIG) {
		report(v, zone, XD_JOURNAL_TOO_LARGE, from, to);
		return 0;
	}
	if (rc)
		return rc;
	zj->zone_bytes = v->diff.zone_bytes;
	if (from == to) {
		if (!v->diff.nremoved && !v->diff.nadded)
			return zone_journal_carry(zj, old);
		/* Secondaries at this serial cannot learn of the change. */
		report(v, zone, XD_JOURNAL_SAME_SERIAL, from, to);
		return 0;
	}
	if ((int32_t)(to - from) < 0) {
		report(v, zone, XD_JOURNAL_OLDER_SERIAL, from, to); /* RFC 1982 */
		return 0;
	}
	rc = make_changeset(&v->diff, old_apex, old_soa, apex, soa, from, to, &cs);
	if (rc == -E2BIG) {
		report(v, zone, XD_JOURNAL_TOO_LARGE, from, to);
		return 0;
	}
	if (rc)
		return rc;
	if (cs->len > v->limits->bytes) {
		changeset_put(cs);
		report(v, zone, XD_JOURNAL_TOO_LARGE, from, to);
		return 0;
	}
	rc = zone_journal_extend(zj, old, cs, v->limits);
	if (rc) {
		changeset_put(cs);
		return rc;
	}
	report(v, zone, XD_JOURNAL_RECORDED, from, to);
	return 0;
}

int xd_image_journal_derive(struct xd_image *img, const struct xd_image *prev,
			    const struct xd_journal_limits *limits, struct xd_journal_event *events,
			    size_t cap, size_t *nevents)
{
	struct derive v = {
		.img = img, .prev = prev, .limits = limits, .events = events, .cap = cap
	};
	uint32_t zones = img->hdr->zone_count;
	int rc = 0;

	*nevents = 0;
	xd_journal_free(img->journal);
	img->journal = NULL;
	if (!prev || !limits->depth)
		return 0;
	v.journal = calloc(1, sizeof(*v.journal) + zones * sizeof(v.journal->zones[0]));
	if (!v.journal)
		return -ENOMEM;
	v.journal->zone_count = zones;
	for (uint32_t i = 0; i < zones && !rc; i++)
		rc = derive_zone(&v, i);
	diff_free(&v.diff);
	if (rc) {
		xd_journal_free(v.journal);
		return rc;
	}
	img->journal = v.journal;
	*nevents = v.n;
	return 0;
}
