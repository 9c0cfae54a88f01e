/*
 * layout.c - compiles the builder's nodes into the zone image (image.h):
 * groups records into RRsets, pre-renders them in wire form with origin
 * compression, resolves the targets used for additional-section processing,
 * and writes the zone table and the name hash; then the override rules,
 * their names, the override hash and the filter in front of it; last the
 * zones' ACLs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zone/builder.h"
#include "image/image.h"
#include "xdpdns_maps.h"

#define XD_IMAGE_MAX UINT32_MAX
#define XD_WIRE_MAX UINT16_MAX /* an RRset must fit one message */
#define XD_RELOC_MAX 255
#define XD_TARGETS_MAX 255

/* The growing output block. */
struct out {
	uint8_t *data;
	size_t len, cap;
};

/* Scratch space reused for every RRset. */
struct scratch {
	uint32_t *recs; /* record indices of one node */
	size_t cap;
	uint8_t *wire;
	size_t wire_cap;
	uint16_t relocs[XD_RELOC_MAX];
	struct target {
		uint16_t offset;
		uint16_t flags;
		uint32_t node; /* builder index until fix-up, then offset */
	} targets[XD_TARGETS_MAX];
	int nreloc, ntargets;
};

static int out_reserve(struct out *o, size_t more)
{
	if (o->len + more > XD_IMAGE_MAX)
		return -E2BIG;
	return xd_grow((void **)&o->data, &o->cap, o->len + more, 1);
}

/* node and zone are NULL for an override rule's answer: nothing in it is
 * relative to a zone, so it is neither compressed nor given targets. */
struct rr_ctx {
	struct xd_builder *b;
	const struct bnode *node;
	const struct bzone *zone;
	struct scratch *s;
	size_t wire_len;
	bool compress;
};

static int wire_reserve(struct scratch *s, size_t need)
{
	if (need > XD_WIRE_MAX)
		return -E2BIG;
	return xd_grow((void **)&s->wire, &s->wire_cap, need, 1);
}

/* Resolves a name to a node of the same zone (for targets). */
static uint32_t target_node(const struct rr_ctx *c, const uint8_t *name, int len)
{
	uint8_t lower[XD_NAME_MAX];

	xd_name_lower(lower, name, len);
	if (!xd_name_is_below(lower, len, c->zone->origin, c->zone->origin_len))
		return XD_NONE;
	return xd_builder_find_node(c->b, c->node->zone, lower, len - c->zone->origin_len);
}

/* Glue is required when the target lies below the cut itself (RFC 9471). */
static bool glue_required(const struct rr_ctx *c, const uint8_t *name, int len)
{
	uint8_t full[XD_NAME_MAX], lower[XD_NAME_MAX];
	size_t cut_len;

	if (!(c->node->flags & XD_NODE_CUT))
		return false;
	memcpy(full, c->b->names + c->node->name, c->node->name_len);
	memcpy(full + c->node->name_len, c->zone->origin, c->zone->origin_len);
	cut_len = c->node->name_len + c->zone->origin_len;
	xd_name_lower(lower, name, len);
	return xd_name_is_below(lower, len, full, cut_len);
}

/* Writes one name of RDATA, compressed against the origin when allowed. */
static int put_name(struct rr_ctx *c, const uint8_t *name, int len, bool compress, bool target)
{
	struct scratch *s = c->s;
	size_t start = c->wire_len;
	size_t prefix = len;
	int rc;

	if (compress && c->compress && c->zone && c->zone->origin_len > 1 &&
	    s->nreloc < XD_RELOC_MAX) {
		uint8_t lower[XD_NAME_MAX];

		xd_name_lower(lower, name, len);
		if (xd_name_is_below(lower, len, c->zone->origin, c->zone->origin_len))
			prefix = len - c->zone->origin_len;
	}
	rc = wire_reserve(s, start + prefix + 2);
	if (rc)
		return rc;
	memcpy(s->wire + start, name, prefix);
	c->wire_len += prefix;
	if (prefix != (size_t)len) {
		s->relocs[s->nreloc++] = c->wire_len;
		xd_put16(s->wire + c->wire_len, 0xc000);
		c->wire_len += 2;
	}
	if (target && c->node && s->ntargets < XD_TARGETS_MAX) {
		struct target *t = &s->targets[s->ntargets++];

		t->offset = start;
		t->flags = glue_required(c, name, len) ? XD_TARGET_GLUE_REQUIRED : 0;
		t->node = target_node(c, name, len);
	}
	return 0;
}

static int put_rdata(struct rr_ctx *c, const struct brec *r)
{
	const uint8_t *rd = c->b->rdata + r->rdata;
	const struct xd_name_field *f = xd_rdata_name_field(r->type);
	size_t pos = 0;
	int rc;

	if (f) {
		if (f->offset > r->rdlen)
			return -EBADMSG;
		rc = wire_reserve(c->s, c->wire_len + f->offset);
		if (rc)
			return rc;
		memcpy(c->s->wire + c->wire_len, rd, f->offset);
		c->wire_len += f->offset;
		pos = f->offset;
		for (int i = 0; i < f->names; i++) {
			int len = xd_name_check(rd + pos, r->rdlen - pos);

			if (len < 0)
				return -EBADMSG;
			rc = put_name(c, rd + pos, len, f->compress, f->target);
			if (rc)
				return rc;
			pos += len;
		}
	}
	rc = wire_reserve(c->s, c->wire_len + (r->rdlen - pos));
	if (rc)
		return rc;
	memcpy(c->s->wire + c->wire_len, rd + pos, r->rdlen - pos);
	c->wire_len += r->rdlen - pos;
	return 0;
}

/* ttl XD_NONE: the record's own (RRSIGs: each has its covered RRset's). */
static int put_rr(struct rr_ctx *c, const struct brec *r, uint32_t ttl)
{
	size_t start = c->wire_len;
	uint8_t *p;
	int rc = wire_reserve(c->s, start + 12);

	if (rc)
		return rc;
	p = c->s->wire + start;
	xd_put16(p, 0xc000 | XD_DNS_HEADER_LEN); /* owner, patched per answer */
	xd_put16(p + 2, r->type);
	xd_put16(p + 4, XD_CLASS_IN);
	xd_put32(p + 6, ttl == XD_NONE ? r->ttl : ttl);
	c->wire_len += 12;
	rc = put_rdata(c, r);
	if (rc)
		return rc;
	xd_put16(c->s->wire + start + 10, c->wire_len - start - 12);
	return 0;
}

/* Renders records recs[0..n) (one type) into the scratch wire. */
static int render_rrset(struct rr_ctx *c, const uint32_t *recs, size_t n, uint32_t ttl)
{
	c->compress = true;
	for (int attempt = 0; attempt < 2; attempt++) {
		int rc = 0;

		c->wire_len = 0;
		c->s->nreloc = 0;
		c->s->ntargets = 0;
		for (size_t i = 0; i < n && rc == 0; i++)
			rc = put_rr(c, &c->b->recs[recs[i]], ttl);
		/* Out of relocation slots: render it uncompressed instead. */
		if (rc == 0 && c->s->nreloc == XD_RELOC_MAX && c->compress) {
			c->compress = false;
			continue;
		}
		return rc;
	}
	return 0;
}

static int append_rrset(struct out *o, struct scratch *s, uint16_t type, size_t count,
			size_t wire_len)
{
	size_t size = XD_RRSET_HEADER + wire_len + 2 * s->nreloc + XD_TARGET_SIZE * s->ntargets;
	uint8_t *p;
	int rc = out_reserve(o, size);

	if (rc)
		return rc;
	p = o->data + o->len;
	xd_st16(p, type);
	xd_st16(p + 2, count);
	xd_st16(p + 4, wire_len);
	p[6] = s->nreloc;
	p[7] = s->ntargets;
	xd_st16(p + 8, 0); /* no RRSIGs; set by link_signatures */
	xd_st16(p + 10, 0);
	p += XD_RRSET_HEADER;
	memcpy(p, s->wire, wire_len);
	p += wire_len;
	for (int i = 0; i < s->nreloc; i++, p += 2)
		xd_st16(p, s->relocs[i]);
	for (int i = 0; i < s->ntargets; i++, p += XD_TARGET_SIZE) {
		xd_st16(p, s->targets[i].offset);
		xd_st16(p + 2, s->targets[i].flags);
		xd_st32(p + 4, s->targets[i].node); /* fixed up later */
	}
	o->len += size;
	return 0;
}

static int cmp_recs_ctx_qsort(const void *a, const void *b);
static const struct xd_builder *sort_ctx;

/* The type an RRSIG covers (its first two RDATA bytes); 0 for a record
 * too short to be one. */
static uint16_t covered_type(const struct xd_builder *b, const struct brec *r)
{
	return r->rdlen >= 2 ? xd_get16(b->rdata + r->rdata) : 0;
}

/* Order within a node: by type, then by RDATA, so that duplicates are
 * neighbours (RFC 2181 5: an RRset holds no duplicates); RRSIGs by the
 * type they cover first, so that each RRset's signatures are one slice
 * of the RRSIG RRset. */
static int cmp_recs_ctx_qsort(const void *a, const void *b)
{
	const struct brec *ra = &sort_ctx->recs[*(const uint32_t *)a];
	const struct brec *rb = &sort_ctx->recs[*(const uint32_t *)b];
	int c;

	if (ra->type != rb->type)
		return ra->type < rb->type ? -1 : 1;
	if (ra->type == XD_TYPE_RRSIG && covered_type(sort_ctx, ra) != covered_type(sort_ctx, rb))
		return covered_type(sort_ctx, ra) < covered_type(sort_ctx, rb) ? -1 : 1;
	if (ra->rdlen != rb->rdlen)
		return ra->rdlen < rb->rdlen ? -1 : 1;
	c = memcmp(sort_ctx->rdata + ra->rdata, sort_ctx->rdata + rb->rdata, ra->rdlen);
	if (c)
		return c;
	return *(const uint32_t *)a < *(const uint32_t *)b ? -1 : 1;
}

/* Collects, sorts and de-duplicates the records of the chain that starts at
 * `first` (a node's or an override rule's) into s->recs. */
static int chain_records(struct xd_builder *b, uint32_t first, struct scratch *s, size_t *count)
{
	size_t k = 0, m = 0;

	for (uint32_t r = first; r != XD_NONE; r = b->recs[r].next) {
		if (xd_grow((void **)&s->recs, &s->cap, k + 1, sizeof(*s->recs)))
			return -ENOMEM;
		s->recs[k++] = r;
	}
	if (k > 1) {
		sort_ctx = b;
		qsort(s->recs, k, sizeof(*s->recs), cmp_recs_ctx_qsort);
	}
	for (size_t i = 0; i < k; i++) {
		const struct brec *cur = &b->recs[s->recs[i]];

		if (m > 0) {
			const struct brec *prev = &b->recs[s->recs[m - 1]];

			if (prev->type == cur->type && prev->rdlen == cur->rdlen &&
			    memcmp(b->rdata + prev->rdata, b->rdata + cur->rdata, cur->rdlen) == 0)
				continue;
		}
		s->recs[m++] = s->recs[i];
	}
	*count = m;
	return 0;
}

/* RFC 2181 5.2: one TTL per RRset; like BIND and Knot, the first record's
 * wins (xd_builder_check warns about the others). */
static uint32_t rrset_ttl(const struct xd_builder *b, const uint32_t *recs, size_t n)
{
	uint32_t first = recs[0];

	for (size_t i = 1; i < n; i++)
		if (recs[i] < first)
			first = recs[i];
	return b->recs[first].ttl;
}

static int rrset_problem(struct xd_builder *b, uint32_t node, const struct brec *r, int rc)
{
	char text[1024];

	xd_builder_node_text(b, node, text, sizeof(text));
	xd_builder_problemf(b, XD_PROBLEM_ERROR, r->source, r->line, "%s: %s", text,
			    rc == -E2BIG ? "RRset larger than 65535 bytes" : "malformed RDATA");
	return rc;
}

/*
 * Renders s->recs[0..count) (sorted by type, from chain_records) as RRsets
 * at the end of o, with TTL `ttl`, or each RRset's own (rrset_ttl) when ttl
 * is XD_NONE.  Counts them in *types and *nrecords; on failure *bad is the
 * first record of the RRset at fault.
 */
static int append_rrsets(struct rr_ctx *c, struct out *o, size_t count, uint32_t ttl,
			 uint16_t *types, uint64_t *nrecords, uint32_t *bad)
{
	struct xd_builder *b = c->b;
	struct scratch *s = c->s;

	for (size_t start = 0; start < count;) {
		uint16_t type = b->recs[s->recs[start]].type;
		size_t end = start;
		int rc;

		while (end < count && b->recs[s->recs[end]].type == type)
			end++;
		/* s->recs is reused by nothing inside render_rrset.  The
		 * RRSIGs of each covered RRset keep their own TTL, which
		 * RFC 4034 3 says is the covered RRset's. */
		rc = render_rrset(c, s->recs + start, end - start,
				  ttl != XD_NONE ? ttl :
				  type == XD_TYPE_RRSIG ?
						   XD_NONE :
						   rrset_ttl(b, s->recs + start, end - start));
		if (rc == 0)
			rc = append_rrset(o, s, type, end - start, c->wire_len);
		if (rc) {
			*bad = s->recs[start];
			return rc;
		}
		(*types)++;
		*nrecords += end - start;
		start = end;
	}
	return 0;
}

/* The slice of the RRSIG RRset's wire (rrsig; NULL: none) whose RRSIGs
 * cover `type`, as *off and *len (0: none).  RRSIGs are sorted by type
 * covered, so the slice is contiguous. */
static void signature_slice(const uint8_t *rrsig, uint16_t type, uint16_t *off, uint16_t *len)
{
	const uint8_t *wire;
	size_t wl, pos = 0, start = 0;
	bool in = false;

	*off = *len = 0;
	if (!rrsig)
		return;
	wire = xd_rrset_wire(rrsig);
	wl = xd_rrset_wire_len(rrsig);
	while (pos + 12 <= wl) {
		size_t next = pos + 12 + xd_get16(wire + pos + 10);
		bool covers = next - pos >= 14 && xd_get16(wire + pos + 12) == type;

		if (covers && !in)
			start = pos;
		if (!covers && in)
			break;
		in = covers;
		pos = next;
	}
	if (in || start < pos) {
		*off = (uint16_t)start;
		*len = (uint16_t)(in ? pos - start : 0);
	}
	if (!in)
		*off = *len = 0;
}

/* Points every RRset of the node at `hdr` (in o) at the RRSIGs that cover
 * it.  Set only when the slice is found: a signature without its RRset,
 * or an RRset without signatures, is what `xdpdns check` reports. */
static void link_signatures(struct out *o, size_t hdr)
{
	uint8_t *n = o->data + hdr;
	const uint8_t *rrsig = xd_node_rrset(n, XD_TYPE_RRSIG);
	uint8_t *rs = (uint8_t *)xd_node_first_rrset(n);

	if (!rrsig)
		return;
	for (uint16_t k = 0; k < xd_node_nrrsets(n); k++, rs = (uint8_t *)xd_rrset_next(rs)) {
		uint16_t off, len;

		if (xd_rrset_type(rs) == XD_TYPE_RRSIG)
			continue;
		signature_slice(rrsig, xd_rrset_type(rs), &off, &len);
		xd_st16(rs + 8, off);
		xd_st16(rs + 10, len);
	}
}

static int write_node(struct xd_builder *b, uint32_t i, struct out *o, struct scratch *s,
		      uint64_t *nrrsets, uint64_t *nrecords)
{
	struct bnode *n = &b->nodes[i];
	struct rr_ctx c = { b, n, &b->zones[n->zone], s, 0, true };
	size_t count, hdr;
	uint16_t types = 0;
	uint32_t bad;
	int rc = chain_records(b, n->first, s, &count);

	if (rc)
		return rc;
	rc = out_reserve(o, XD_NODE_HEADER + n->name_len);
	if (rc)
		return rc;
	hdr = o->len;
	n->offset = hdr;
	o->len += XD_NODE_HEADER + n->name_len;
	memcpy(o->data + hdr + XD_NODE_HEADER, b->names + n->name, n->name_len);

	rc = append_rrsets(&c, o, count, XD_NONE, &types, nrecords, &bad);
	if (rc)
		return rrset_problem(b, i, &b->recs[bad], rc);
	*nrrsets += types;
	/* o->data may have moved: write the header last. */
	xd_st32(o->data + hdr, n->link); /* node index until fix-up */
	xd_st16(o->data + hdr + 4, n->zone);
	o->data[hdr + 6] = n->flags;
	o->data[hdr + 7] = n->name_len;
	xd_st16(o->data + hdr + 8, types);
	link_signatures(o, hdr);
	return 0;
}

/* The SOA as negative answers use it: TTL min(SOA TTL, MINIMUM), RFC 2308 3. */
static int write_negative_soa(struct xd_builder *b, uint32_t zone, struct out *o, struct scratch *s,
			      uint32_t *offset)
{
	const struct bzone *z = &b->zones[zone];
	const struct bnode *apex = &b->nodes[z->apex];
	struct rr_ctx c = { b, apex, z, s, 0, true };
	uint32_t soa = XD_NONE;
	uint32_t ttl, minimum;
	int rc;

	for (uint32_t r = apex->first; r != XD_NONE; r = b->recs[r].next)
		if (b->recs[r].type == XD_TYPE_SOA)
			soa = r;
	if (soa == XD_NONE || b->recs[soa].rdlen < 20)
		return -EINVAL;
	minimum = xd_get32(b->rdata + b->recs[soa].rdata + b->recs[soa].rdlen - 4);
	ttl = b->recs[soa].ttl < minimum ? b->recs[soa].ttl : minimum;
	*offset = o->len;
	rc = render_rrset(&c, &soa, 1, ttl);
	if (rc == 0)
		rc = append_rrset(o, s, XD_TYPE_SOA, 1, c.wire_len);
	return rc;
}

/* The nodes zone by zone, each zone's in the order the builder made them,
 * so its apex (made with the zone) first: a zone's nodes are one run from
 * its apex, which is how a transfer or a copy of it walks them. */
static int write_nodes(struct xd_builder *b, struct out *o, struct scratch *s,
		       struct xd_image_header *h)
{
	size_t *start = calloc(b->nzones + 1, sizeof(*start));
	uint32_t *order = malloc((b->nnodes ? b->nnodes : 1) * sizeof(*order));
	int rc = 0;

	if (!start || !order) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < b->nnodes; i++)
		start[b->nodes[i].zone + 1]++;
	for (size_t z = 0; z < b->nzones; z++)
		start[z + 1] += start[z];
	for (size_t i = 0; i < b->nnodes; i++)
		order[start[b->nodes[i].zone]++] = (uint32_t)i;
	for (size_t i = 0; rc == 0 && i < b->nnodes; i++)
		rc = write_node(b, order[i], o, s, &h->rrsets, &h->records);
out:
	free(start);
	free(order);
	return rc;
}

/* Turns builder node indices stored in links and targets into offsets. */
static void fix_up_references(struct xd_builder *b, uint8_t *data)
{
	for (size_t i = 0; i < b->nnodes; i++) {
		uint8_t *n = data + b->nodes[i].offset;
		uint32_t link = xd_node_link(n);
		const uint8_t *rs = xd_node_first_rrset(n);

		xd_st32(n, link == XD_NONE ? 0 : b->nodes[link].offset);
		for (uint16_t k = 0; k < xd_node_nrrsets(n); k++, rs = xd_rrset_next(rs)) {
			uint8_t *t = (uint8_t *)xd_rrset_targets(rs);

			for (int j = 0; j < xd_rrset_ntargets(rs); j++, t += XD_TARGET_SIZE) {
				uint32_t node = xd_ld32(t + 4);

				xd_st32(t + 4, node == XD_NONE ? 0 : b->nodes[node].offset);
			}
		}
	}
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;

	while (p < n)
		p *= 2;
	return p;
}

static int write_tables(struct xd_builder *b, struct out *o, struct xd_image_header *h)
{
	uint32_t *zh, *nh;
	int rc;

	o->len = (o->len + 3) & ~(size_t)3;
	h->zone_hash_size = pow2_at_least(2 * b->nzones);
	/* At most half full: short probes for names that do not exist. */
	h->name_hash_size = pow2_at_least(2 * b->nnodes);
	rc = out_reserve(o, 4 * ((size_t)h->zone_hash_size + h->name_hash_size) + 4);
	if (rc)
		return rc;
	h->zone_hash = o->len;
	h->name_hash = o->len + 4 * h->zone_hash_size;
	zh = (uint32_t *)(o->data + h->zone_hash);
	nh = (uint32_t *)(o->data + h->name_hash);
	memset(zh, 0, 4 * ((size_t)h->zone_hash_size + h->name_hash_size));
	o->len = h->name_hash + 4 * (size_t)h->name_hash_size;

	for (size_t z = 0; z < b->nzones; z++) {
		uint32_t slot = xd_zone_hash(b->zones[z].origin, b->zones[z].origin_len);

		while (zh[slot & (h->zone_hash_size - 1)])
			slot++;
		zh[slot & (h->zone_hash_size - 1)] = z + 1;
	}
	for (size_t i = 0; i < b->nnodes; i++) {
		uint32_t slot = b->nodes[i].hash;

		while (nh[slot & (h->name_hash_size - 1)])
			slot++;
		nh[slot & (h->name_hash_size - 1)] = b->nodes[i].offset;
	}
	return 0;
}

static int write_zones(struct xd_builder *b, struct out *o, struct scratch *s,
		       struct xd_image_header *h)
{
	struct xd_zone_entry *zt;
	int rc;

	h->zone_table = sizeof(*h);
	h->zone_count = b->nzones;
	rc = out_reserve(o, sizeof(*h) + b->nzones * (sizeof(*zt) + XD_NAME_MAX));
	if (rc)
		return rc;
	o->len = sizeof(*h) + b->nzones * sizeof(*zt);
	for (size_t z = 0; z < b->nzones; z++) {
		zt = (struct xd_zone_entry *)(o->data + h->zone_table) + z;
		memset(zt, 0, sizeof(*zt));
		zt->origin = o->len;
		zt->origin_len = b->zones[z].origin_len;
		zt->origin_labels = xd_name_labels(b->zones[z].origin);
		h->origin_labels[zt->origin_labels / 64] |= 1ULL << (zt->origin_labels % 64);
		memcpy(o->data + o->len, b->zones[z].origin, zt->origin_len);
		o->len += zt->origin_len;
	}
	for (size_t z = 0; z < b->nzones; z++) {
		uint32_t soa = 0;

		if (!b->zones[z].expired) {
			rc = write_negative_soa(b, z, o, s, &soa);
			if (rc)
				return rc;
		}
		zt = (struct xd_zone_entry *)(o->data + h->zone_table) + z;
		zt->soa = soa;
		zt->flags = b->zones[z].expired ? XD_ZONE_EXPIRED : 0;
	}
	return 0;
}

static int write_identity(struct xd_builder *b, struct out *o, struct xd_image_header *h)
{
	int rc = out_reserve(o, XD_IDENTITY_COUNT * (2 + sizeof(b->identity[0].data)));

	if (rc)
		return rc;
	h->identity = o->len;
	for (int i = 0; i < XD_IDENTITY_COUNT; i++) {
		uint8_t *p = o->data + o->len;

		p[0] = b->identity[i].present;
		p[1] = b->identity[i].present ? b->identity[i].len : 0;
		memcpy(p + 2, b->identity[i].data, p[1]);
		o->len += 2 + p[1];
	}
	return 0;
}

/* ---- overrides ----------------------------------------------------------- */

/* One rule: action, RRset count, and its answer's RRsets, all with the
 * rule's TTL. */
static int write_rule(struct xd_builder *b, uint32_t i, struct out *o, struct scratch *s)
{
	struct brule *r = &b->rules[i];
	struct rr_ctx c = { b, NULL, NULL, s, 0, false };
	uint64_t records = 0;
	uint16_t types = 0;
	size_t count, hdr;
	uint32_t bad;
	int rc = chain_records(b, r->first, s, &count);

	if (rc == 0)
		rc = out_reserve(o, XD_OVERRIDE_RULE_HEADER);
	if (rc)
		return rc;
	hdr = o->len;
	r->offset = hdr;
	o->len += XD_OVERRIDE_RULE_HEADER;
	rc = append_rrsets(&c, o, count, r->ttl, &types, &records, &bad);
	if (rc) {
		xd_builder_problemf(b, XD_PROBLEM_ERROR, -1, 0, "override rule %u: %s", i,
				    rc == -E2BIG ? "RRset larger than 65535 bytes" :
						   "malformed RDATA");
		return rc;
	}
	o->data[hdr] = r->action;
	o->data[hdr + 1] = r->hook;
	xd_st16(o->data + hdr + 2, types);
	return 0;
}

/* The rule table (offsets), then the rules. */
static int write_rules(struct xd_builder *b, struct out *o, struct scratch *s,
		       struct xd_image_header *h)
{
	int rc;

	o->len = (o->len + 3) & ~(size_t)3;
	rc = out_reserve(o, 4 * b->nrules);
	if (rc)
		return rc;
	h->override_rules = o->len;
	h->override_rule_count = b->nrules;
	o->len += 4 * b->nrules;
	for (size_t i = 0; i < b->nrules; i++) {
		rc = write_rule(b, i, o, s);
		if (rc)
			return rc;
		xd_st32(o->data + h->override_rules + 4 * i, b->rules[i].offset);
	}
	return 0;
}

static void set_label_bit(uint64_t *bits, int k)
{
	bits[k / 64] |= 1ULL << (k % 64);
}

/* One entry, and its slot in the override hash. */
static void write_entry(struct xd_builder *b, const struct boverride *v, uint8_t *p,
			uint32_t offset, struct xd_override_slot *table, uint32_t mask,
			struct xd_image_header *h)
{
	uint32_t slot = (uint32_t)v->hash;

	p[0] = v->name_len;
	p[1] = v->labels;
	xd_st32(p + 2, v->rule[0] == XD_NONE ? 0 : v->rule[0] + 1);
	xd_st32(p + 6, v->rule[1] == XD_NONE ? 0 : v->rule[1] + 1);
	memcpy(p + XD_OVERRIDE_ENTRY_HEADER, b->names + v->name, v->name_len);
	if (v->rule[0] != XD_NONE)
		set_label_bit(h->override_exact_labels, v->labels);
	if (v->rule[1] != XD_NONE)
		set_label_bit(h->override_subtree_labels, v->labels);
	while (table[slot & mask].entry)
		slot++;
	table[slot & mask].tag = (uint32_t)(v->hash >> 32);
	table[slot & mask].entry = offset;
}

/* The filter in front of the hash (image.h), 64-byte aligned in the image. */
static int write_filter(struct xd_builder *b, struct out *o, struct xd_image_header *h)
{
	size_t size = xd_override_filter_size(h->override_hash_size);
	size_t start = (o->len + XD_OVERRIDE_FILTER_BLOCK - 1) &
		       ~(size_t)(XD_OVERRIDE_FILTER_BLOCK - 1);
	uint8_t *filter;
	int rc = out_reserve(o, start - o->len + size);

	if (rc)
		return rc;
	memset(o->data + o->len, 0, start - o->len + size);
	h->override_filter = start;
	filter = o->data + start;
	for (size_t i = 0; i < b->noverrides; i++) {
		uint64_t hash = b->overrides[i].hash;
		uint8_t *block = filter + xd_override_filter_block(hash, size);

		for (int k = 0; k < XD_OVERRIDE_FILTER_BITS; k++) {
			unsigned bit = xd_override_filter_bit(hash, k);

			block[bit / 8] |= 1u << (bit % 8);
		}
	}
	o->len = start + size;
	return 0;
}

/* The entries, one per name, and the hash that finds them. */
static int write_entries(struct xd_builder *b, struct out *o, struct xd_image_header *h)
{
	size_t size = 0, table_off;
	struct xd_override_slot *table;
	int rc;

	for (size_t i = 0; i < b->noverrides; i++)
		size += XD_OVERRIDE_ENTRY_HEADER + b->overrides[i].name_len;
	/* At most half full: short probes for the names with no rule. */
	h->override_hash_size = pow2_at_least(2 * b->noverrides);
	rc = out_reserve(o, size + 3 + sizeof(*table) * (size_t)h->override_hash_size);
	if (rc)
		return rc;
	h->override_entries = o->len;
	h->override_count = b->noverrides;
	table_off = (o->len + size + 3) & ~(size_t)3;
	h->override_hash = table_off;
	table = (struct xd_override_slot *)(o->data + table_off);
	memset(o->data + o->len + size, 0, table_off - o->len - size);
	memset(table, 0, sizeof(*table) * (size_t)h->override_hash_size);
	for (size_t i = 0; i < b->noverrides; i++) {
		const struct boverride *v = &b->overrides[i];

		write_entry(b, v, o->data + o->len, o->len, table, h->override_hash_size - 1, h);
		o->len += XD_OVERRIDE_ENTRY_HEADER + v->name_len;
	}
	o->len = table_off + sizeof(*table) * (size_t)h->override_hash_size;
	return 0;
}

static int write_overrides(struct xd_builder *b, struct out *o, struct scratch *s,
			   struct xd_image_header *h)
{
	int rc;

	/* Without names, the header's override fields stay 0: the one field
	 * the answering core tests says there is nothing to look for. */
	if (b->noverrides == 0)
		return 0;
	rc = write_rules(b, o, s, h);
	if (rc == 0)
		rc = write_entries(b, o, h);
	return rc ? rc : write_filter(b, o, h);
}

/* ---- zone ACLs ------------------------------------------------------------- */

static bool zone_has_acl(const struct bzone *z)
{
	for (int l = 0; l < XD_ZONE_ACL_LISTS; l++)
		if (z->acl[l].set)
			return true;
	return false;
}

/* A list never set is written as what its absence means (image.h): every
 * client may query, none may transfer. */
static int write_acl_list(const struct bzone_acl *l, int list, struct out *o)
{
	size_t size = XD_ZONE_ACL_PREFIX * ((size_t)l->v4 + l->v6);
	uint8_t *p;
	int rc = out_reserve(o, XD_ZONE_ACL_LIST_HEADER + size);

	if (rc)
		return rc;
	p = o->data + o->len;
	xd_st16(p, l->v4);
	xd_st16(p + 2, l->v6);
	p[4] = l->set ? l->default_action : list == XD_ZONE_ACL_QUERY ? XD_ACL_ALLOW : XD_ACL_DENY;
	p[5] = 0;
	if (size)
		memcpy(p + XD_ZONE_ACL_LIST_HEADER, l->prefixes, size);
	o->len += XD_ZONE_ACL_LIST_HEADER + size;
	return 0;
}

/* Without ACLs the header's zone_acl fields and every zone's acl stay 0:
 * the answering core tests the zone's field alone. */
static int write_zone_acls(struct xd_builder *b, struct out *o, struct xd_image_header *h)
{
	for (size_t z = 0; z < b->nzones; z++) {
		struct xd_zone_entry *zt;
		uint32_t start = o->len;
		int rc = 0;

		if (!zone_has_acl(&b->zones[z]))
			continue;
		for (int l = 0; l < XD_ZONE_ACL_LISTS && rc == 0; l++)
			rc = write_acl_list(&b->zones[z].acl[l], l, o);
		if (rc)
			return rc;
		zt = (struct xd_zone_entry *)(o->data + h->zone_table) + z;
		zt->acl = start;
		if (h->zone_acl_count++ == 0)
			h->zone_acls = start;
		h->zone_acls_end = o->len;
	}
	return 0;
}

/* ---- denial blocks (image.h): the NSEC or NSEC3 chain of signed zones ---- */

static int write_denial(struct xd_builder *b, uint32_t zone, struct out *o, uint32_t *offset)
{
	const struct brec *param = xd_builder_nsec3param(b, zone);
	uint32_t *list = NULL;
	size_t cap = 0, count = 0, salt_len = 0, start;
	uint8_t *p;
	int rc = 0;

	*offset = 0;
	if (param)
		rc = xd_builder_chain(b, zone, XD_TYPE_NSEC3, &list, &cap, &count);
	if (rc == 0 && count == 0) {
		param = NULL;
		rc = xd_builder_chain(b, zone, XD_TYPE_NSEC, &list, &cap, &count);
	}
	if (rc || count == 0) {
		free(list);
		return rc;
	}
	if (param)
		salt_len = b->rdata[param->rdata + 4];
	start = (o->len + 3) & ~(size_t)3;
	rc = out_reserve(o, start - o->len + XD_DENIAL_HEADER + ((salt_len + 3) & ~(size_t)3) +
				    4 * count);
	if (rc) {
		free(list);
		return rc;
	}
	memset(o->data + o->len, 0,
	       start - o->len + XD_DENIAL_HEADER + ((salt_len + 3) & ~(size_t)3));
	p = o->data + start;
	p[0] = param ? XD_DENIAL_NSEC3 : XD_DENIAL_NSEC;
	if (param) {
		p[1] = b->rdata[param->rdata];
		p[2] = (uint8_t)salt_len;
		xd_st16(p + 4, xd_get16(b->rdata + param->rdata + 2));
		memcpy(p + XD_DENIAL_HEADER, b->rdata + param->rdata + 5, salt_len);
	}
	xd_st32(p + 8, (uint32_t)count);
	p = (uint8_t *)xd_denial_nodes(p);
	for (size_t i = 0; i < count; i++)
		xd_st32(p + 4 * i, b->nodes[list[i]].offset);
	o->len = (size_t)(p - o->data) + 4 * count;
	*offset = (uint32_t)start;
	free(list);
	return 0;
}

static int write_denials(struct xd_builder *b, struct out *o, struct xd_image_header *h)
{
	for (size_t z = 0; z < b->nzones; z++) {
		uint32_t offset;
		int rc = write_denial(b, (uint32_t)z, o, &offset);

		if (rc)
			return rc;
		((struct xd_zone_entry *)(o->data + h->zone_table))[z].dnssec = offset;
	}
	return 0;
}

/* ---- TSIG keys: the image's last block ------------------------------------ */

static int write_tsig_keys(struct xd_builder *b, struct out *o, struct xd_image_header *h)
{
	if (!b->ntsig_keys)
		return 0;
	h->tsig_keys = o->len;
	for (size_t i = 0; i < b->ntsig_keys; i++) {
		const struct btsig_key *k = &b->tsig_keys[i];
		int rc = out_reserve(o, 4 + (size_t)k->name_len + k->secret_len);
		uint8_t *p;

		if (rc)
			return rc;
		p = o->data + o->len;
		p[0] = k->name_len;
		p[1] = k->alg;
		xd_st16(p + 2, k->secret_len);
		memcpy(p + 4, k->name, k->name_len);
		memcpy(p + 4 + k->name_len, k->secret, k->secret_len);
		o->len += 4 + (size_t)k->name_len + k->secret_len;
	}
	h->tsig_key_count = (uint32_t)b->ntsig_keys;
	h->tsig_keys_end = o->len;
	return 0;
}

int xd_layout_image(struct xd_builder *b, uint8_t **image, size_t *image_len, struct xd_error *err)
{
	struct xd_image_header h;
	struct scratch s;
	struct out o = { 0 };
	int rc;

	memset(&h, 0, sizeof(h));
	memset(&s, 0, sizeof(s));
	rc = write_zones(b, &o, &s, &h);
	if (rc == 0)
		rc = write_nodes(b, &o, &s, &h);
	if (rc)
		goto out_free;
	for (size_t z = 0; z < b->nzones; z++) {
		struct xd_zone_entry *zt = (struct xd_zone_entry *)(o.data + h.zone_table) + z;

		zt->apex = b->nodes[b->zones[z].apex].offset;
	}
	fix_up_references(b, o.data);
	rc = write_tables(b, &o, &h);
	if (rc == 0)
		rc = write_identity(b, &o, &h);
	if (rc == 0)
		rc = write_overrides(b, &o, &s, &h);
	if (rc == 0)
		rc = write_zone_acls(b, &o, &h);
	if (rc == 0)
		rc = write_denials(b, &o, &h);
	if (rc == 0)
		rc = write_tsig_keys(b, &o, &h);
	if (rc)
		goto out_free;

	memcpy(h.magic, XD_IMAGE_MAGIC, sizeof(h.magic));
	h.version = XD_IMAGE_VERSION;
	h.notify_hook = b->notify_hook;
	h.byte_order = XD_IMAGE_BYTE_ORDER;
	h.size = o.len;
	h.names = b->nnodes;
	memcpy(o.data, &h, sizeof(h));
	h.checksum = xd_hash(o.data + XD_IMAGE_CHECKSUM_START, o.len - XD_IMAGE_CHECKSUM_START, 0);
	memcpy(o.data, &h, sizeof(h));
	free(s.recs);
	free(s.wire);
	*image = o.data;
	*image_len = o.len;
	return 0;

out_free:
	free(s.recs);
	free(s.wire);
	free(o.data);
	snprintf(err->message, sizeof(err->message), "%s",
		 rc == -E2BIG  ? "zone data too large for one image (4 GiB)" :
		 rc == -ENOMEM ? "out of memory while building the image" :
				 "zone data could not be compiled (see the problems listed)");
	return rc == -ENOMEM || rc == -E2BIG ? rc : -EINVAL;
}
