/*
 * image.c - reading the zone image: lookups for the answering core, and the
 * validation that makes loading an image from disk safe: every offset that
 * the core will follow is checked once here, so the core need not.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wire/prefixes.h"
#include "wire/client.h"
#include "wire/tsig.h"
#include "image/image.h"
#include "image/journal.h"
#include "xdpdns_maps.h"

int xd_image_adopt(uint8_t *base, size_t size, struct xd_image **out)
{
	struct xd_image *img = calloc(1, sizeof(*img));

	if (!img)
		return -ENOMEM;
	img->base = base;
	img->size = size;
	img->hdr = (const struct xd_image_header *)base;
	atomic_init(&img->refs, 1);
	*out = img;
	return 0;
}

void xd_image_free(struct xd_image *img)
{
	if (!img || atomic_fetch_sub_explicit(&img->refs, 1, memory_order_acq_rel) > 1)
		return;
	xd_journal_free(img->journal);
	free(img->base);
	free(img);
}

const uint8_t *xd_image_data(const struct xd_image *img, size_t *len)
{
	*len = img->size;
	return img->base;
}

void xd_image_info(const struct xd_image *img, struct xd_image_info *out)
{
	out->version = img->hdr->version;
	out->zones = img->hdr->zone_count;
	out->names = img->hdr->names;
	out->rrsets = img->hdr->rrsets;
	out->records = img->hdr->records;
	out->bytes = img->size;
	out->overrides = img->hdr->override_count;
	out->zone_acls = img->hdr->zone_acl_count;
}

const uint8_t *xd_image_find(const struct xd_image *img, uint16_t zone, const uint8_t *rel,
			     size_t rel_len)
{
	const uint32_t *table = (const uint32_t *)(img->base + img->hdr->name_hash);
	uint32_t mask = img->hdr->name_hash_size - 1;
	uint32_t i = (uint32_t)xd_node_hash(zone, rel, rel_len);

	for (;; i++) {
		uint32_t off = table[i & mask];
		const uint8_t *n;

		if (off == 0)
			return NULL;
		n = img->base + off;
		if (xd_node_name_len(n) == rel_len && xd_node_zone(n) == zone &&
		    memcmp(xd_node_name(n), rel, rel_len) == 0)
			return n;
	}
}

int xd_image_find_zone(const struct xd_image *img, const uint8_t *name, size_t len)
{
	const uint32_t *table = (const uint32_t *)(img->base + img->hdr->zone_hash);
	uint32_t mask = img->hdr->zone_hash_size - 1;
	uint32_t i = (uint32_t)xd_zone_hash(name, len);

	for (;; i++) {
		uint32_t z = table[i & mask];
		const struct xd_zone_entry *e;

		if (z == 0)
			return -1;
		e = xd_image_zone(img, z - 1);
		if (e->origin_len == len && memcmp(img->base + e->origin, name, len) == 0)
			return (int)(z - 1);
	}
}

/* Slot of the override entry of `name` (whose xd_override_hash is h), or
 * UINT32_MAX. */
static uint32_t override_slot(const struct xd_image *img, const uint8_t *name, size_t len,
			      uint64_t h)
{
	const struct xd_override_slot *table =
		(const struct xd_override_slot *)(img->base + img->hdr->override_hash);
	uint32_t mask = img->hdr->override_hash_size - 1;
	uint32_t tag = (uint32_t)(h >> 32);

	for (uint32_t i = (uint32_t)h;; i++) {
		const struct xd_override_slot *slot = &table[i & mask];
		const uint8_t *e;

		if (slot->entry == 0)
			return UINT32_MAX;
		if (slot->tag != tag)
			continue;
		e = img->base + slot->entry;
		if (xd_override_entry_name_len(e) == len &&
		    memcmp(xd_override_entry_name(e), name, len) == 0)
			return i & mask;
	}
}

static bool label_bit(const uint64_t *bits, int k)
{
	return (bits[k / 64] >> (k % 64)) & 1;
}

/* The rule index + 1 that the entry of a suffix (hash h) gives (0: none). */
static uint32_t override_rule_at(const struct xd_image *img, const uint8_t *suffix, size_t len,
				 uint64_t h, bool whole_name)
{
	const struct xd_image_header *hdr = img->hdr;
	uint32_t slot, rule = 0;
	const uint8_t *e;

	if (!xd_override_filter_has(img->base + hdr->override_filter,
				    xd_override_filter_size(hdr->override_hash_size), h))
		return 0;
	slot = override_slot(img, suffix, len, h);
	if (slot == UINT32_MAX)
		return 0;
	e = img->base +
	    ((const struct xd_override_slot *)(img->base + img->hdr->override_hash))[slot].entry;
	if (whole_name)
		rule = xd_override_entry_exact(e);
	return rule ? rule : xd_override_entry_subtree(e);
}

const uint8_t *xd_image_override(const struct xd_image *img, const uint8_t *name, size_t len)
{
	const struct xd_image_header *h = img->hdr;
	const uint8_t *filter = img->base + h->override_filter;
	size_t filter_size = xd_override_filter_size(h->override_hash_size);
	int labels = xd_name_labels(name);
	uint64_t hash[XD_NAME_MAX / 2 + 1];
	uint8_t at[XD_NAME_MAX / 2 + 1];
	int n = 0;
	size_t pos = 0;

	/* Longest suffix first: the exact rule of the name, then the most
	 * specific subtree.  The bitmaps skip suffixes no rule could hold.
	 * The filter blocks of all the others are asked for before any is
	 * read, so that their cache misses (a million names make a 2 MiB
	 * filter) overlap instead of following one another. */
	for (int k = labels; k >= 0; pos += 1 + name[pos], k--) {
		if (!label_bit(h->override_subtree_labels, k) &&
		    !(k == labels && label_bit(h->override_exact_labels, k)))
			continue;
		hash[n] = xd_override_hash(name + pos, len - pos);
		at[n] = (uint8_t)pos;
		__builtin_prefetch(filter + xd_override_filter_block(hash[n], filter_size));
		n++;
	}
	for (int i = 0; i < n; i++) {
		uint32_t rule =
			override_rule_at(img, name + at[i], len - at[i], hash[i], at[i] == 0);

		if (rule)
			return img->base +
			       xd_ld32(img->base + h->override_rules + 4 * (size_t)(rule - 1));
	}
	return NULL;
}

const uint8_t *xd_node_rrset(const uint8_t *n, uint16_t type)
{
	const uint8_t *rs = xd_node_first_rrset(n);

	for (uint16_t i = xd_node_nrrsets(n); i > 0; i--, rs = xd_rrset_next(rs)) {
		uint16_t t = xd_rrset_type(rs);

		if (t == type)
			return rs;
		if (t > type)
			break; /* sorted by type */
	}
	return NULL;
}

/* ---- zone ACLs --------------------------------------------------------------- */

/* Whether the prefix p (image.h) holds addr: its whole bytes equal, then
 * the bits of a partial byte. */
static bool prefix_holds(const uint8_t *p, const uint8_t *addr)
{
	unsigned bits = p[0];
	const uint8_t *net = p + 2;
	size_t whole = bits / 8;

	if (memcmp(net, addr, whole) != 0)
		return false;
	return bits % 8 == 0 || ((net[whole] ^ addr[whole]) & (uint8_t)(0xff00 >> (bits % 8))) == 0;
}

static const uint8_t *acl_list(const struct xd_image *img, const struct xd_zone_entry *z, int list)
{
	const uint8_t *l = img->base + z->acl;

	if (list == XD_ZONE_ACL_TRANSFER)
		l += XD_ZONE_ACL_LIST_HEADER +
		     XD_ZONE_ACL_PREFIX * ((size_t)xd_ld16(l) + xd_ld16(l + 2));
	return l;
}

bool xd_zone_acl_allows(const struct xd_image *img, const struct xd_zone_entry *z, int list,
			const struct xd_client *client, unsigned key)
{
	const uint8_t *l, *p;
	int n = 0;

	if (!z->acl)
		return list == XD_ZONE_ACL_QUERY;
	l = acl_list(img, z, list);
	p = l + XD_ZONE_ACL_LIST_HEADER;
	if (client && client->family == AF_INET) {
		n = xd_ld16(l);
	} else if (client && client->family == AF_INET6) {
		p += XD_ZONE_ACL_PREFIX * (size_t)xd_ld16(l);
		n = xd_ld16(l + 2);
	}
	/* Longest prefix first: the first that holds the request decides. */
	for (; n > 0; n--, p += XD_ZONE_ACL_PREFIX) {
		unsigned needs = xd_ld16(p + 2 + 16);

		if ((needs == 0 || needs == key) && prefix_holds(p, client->addr))
			return p[1] == XD_ACL_ALLOW;
	}
	return l[4] == XD_ACL_ALLOW;
}

bool xd_zone_acl_open(const struct xd_image *img, const struct xd_zone_entry *z, int list)
{
	const uint8_t *l;

	if (!z->acl)
		return list == XD_ZONE_ACL_QUERY;
	l = acl_list(img, z, list);
	return xd_ld16(l) == 0 && xd_ld16(l + 2) == 0 && l[4] == XD_ACL_ALLOW;
}

bool xd_zone_acl_closed(const struct xd_image *img, const struct xd_zone_entry *z, int list)
{
	const uint8_t *l, *p;
	size_t n;

	if (!z->acl)
		return list == XD_ZONE_ACL_TRANSFER;
	l = acl_list(img, z, list);
	if (l[4] == XD_ACL_ALLOW)
		return false;
	n = (size_t)xd_ld16(l) + xd_ld16(l + 2);
	p = l + XD_ZONE_ACL_LIST_HEADER;
	for (; n > 0; n--, p += XD_ZONE_ACL_PREFIX)
		if (p[1] == XD_ACL_ALLOW)
			return false;
	return true;
}

int xd_image_zone_allows(const struct xd_image *img, const uint8_t *origin, size_t len, int list,
			 const struct xd_client *client)
{
	uint8_t lower[XD_NAME_MAX];
	struct xd_client judged = { 0 };
	int zone;

	if (list < 0 || list >= XD_ZONE_ACL_LISTS)
		return -EINVAL;
	if (len > XD_NAME_MAX || xd_name_check(origin, len) != (int)len)
		return -EINVAL;
	xd_name_lower(lower, origin, len);
	zone = xd_image_find_zone(img, lower, len);
	if (zone < 0)
		return -ENOENT;
	/* As the workers see clients: an IPv4-mapped address is IPv4. */
	if (client)
		xd_client_set(&judged, client->family, client->addr);
	return xd_zone_acl_allows(img, xd_image_zone(img, zone), list, &judged, 0);
}

/* The key named name (lower-case wire form) for algorithm alg into *out:
 * its index, or -1 when the image has none such (one name, one key). */
static int tsig_key(const struct xd_image *img, const uint8_t *name, size_t len, int alg,
		    struct xd_tsig_key *out)
{
	const uint8_t *p = img->base + img->hdr->tsig_keys;

	for (uint32_t i = 0; i < img->hdr->tsig_key_count; i++) {
		uint16_t secret_len = xd_ld16(p + 2);

		if (p[0] == len && memcmp(p + 4, name, len) == 0) {
			if (p[1] != alg)
				return -1; /* one key per name */
			out->name = p + 4;
			out->name_len = p[0];
			out->alg = p[1];
			out->secret = p + 4 + p[0];
			out->secret_len = secret_len;
			return (int)i;
		}
		p += 4 + p[0] + secret_len;
	}
	return -1;
}

int xd_image_tsig_check(const struct xd_image *img, const uint8_t *msg, size_t len, size_t start,
			uint64_t now, struct xd_tsig *t, unsigned *key)
{
	struct xd_tsig_key k;
	int index, rc = xd_tsig_read(msg, len, start, t);

	*key = 0;
	if (rc)
		return rc;
	index = tsig_key(img, t->name, t->name_len,
			 xd_tsig_alg_from_name(t->alg_name, t->alg_name_len), &k);
	rc = xd_tsig_verify(t, index >= 0 ? &k : NULL, msg, now);
	if (rc == 0)
		*key = (unsigned)index + 1;
	return rc;
}

/* ---- validation ------------------------------------------------------------ */

struct check {
	const uint8_t *base;
	size_t size;
	struct xd_error *err;
	size_t identity_end; /* where the identity block ends */
	uint32_t tsig_keys; /* checked keys, which zone ACLs may name */
};

static int fail(struct check *c, const char *what, size_t where)
{
	snprintf(c->err->message, sizeof(c->err->message), "invalid zone image: %s (at offset %zu)",
		 what, where);
	return -EINVAL;
}

static bool in_bounds(const struct check *c, size_t off, size_t len)
{
	return off <= c->size && len <= c->size - off;
}

static int check_rrset_wire(struct check *c, const uint8_t *rs, size_t at)
{
	const uint8_t *wire = xd_rrset_wire(rs);
	size_t len = xd_rrset_wire_len(rs), pos = 0;
	uint16_t count = 0;

	while (pos < len) {
		if (len - pos < 12)
			return fail(c, "RR header cut short", at);
		pos += 12 + xd_get16(wire + pos + 10);
		count++;
	}
	if (pos != len || count != xd_rrset_count(rs) || count == 0)
		return fail(c, "RR lengths do not add up", at);
	for (int i = 0; i < xd_rrset_nreloc(rs); i++)
		if ((size_t)xd_ld16(xd_rrset_relocs(rs) + 2 * i) + 2 > len)
			return fail(c, "relocation outside its RRset", at);
	return 0;
}

/* Whether [off, off + len) of RRset rs's wire starts and ends on RR
 * boundaries (its wire already checked). */
static bool rr_slice(const uint8_t *rs, size_t off, size_t len)
{
	const uint8_t *wire = xd_rrset_wire(rs);
	size_t wl = xd_rrset_wire_len(rs), pos = 0;
	bool start = false;

	while (pos < wl && pos <= off + len) {
		start |= pos == off;
		if (pos == off + len)
			return start;
		pos += 12 + xd_get16(wire + pos + 10);
	}
	return start && pos == off + len;
}

/* An RRset's signatures are a slice of its node's RRSIG RRset whose RRSIGs
 * each cover its type; outside nodes there are none. */
static int check_signatures(struct check *c, const uint8_t *rs, const uint8_t *rrsig, size_t at)
{
	size_t off = xd_rrset_sig_off(rs), len = xd_rrset_sig_len(rs);
	const uint8_t *wire;

	if (len == 0)
		return off == 0 ? 0 : fail(c, "signature offset without signatures", at);
	if (!rrsig || xd_rrset_type(rs) == XD_TYPE_RRSIG || off + len > xd_rrset_wire_len(rrsig) ||
	    !rr_slice(rrsig, off, len))
		return fail(c, "signatures outside the RRSIG RRset", at);
	wire = xd_rrset_wire(rrsig);
	for (size_t pos = off; pos < off + len; pos += 12 + xd_get16(wire + pos + 10))
		if (xd_get16(wire + pos + 10) < 2 || xd_get16(wire + pos + 12) != xd_rrset_type(rs))
			return fail(c, "a signature that covers another type", at);
	return 0;
}

static int check_rrsets(struct check *c, const uint8_t *n, size_t end_limit, size_t at)
{
	const uint8_t *rrsig = NULL;
	const uint8_t *rs = xd_node_first_rrset(n);
	uint16_t prev = 0;

	for (uint16_t i = 0; i < xd_node_nrrsets(n); i++) {
		size_t off = rs - c->base;
		int rc;

		if (!in_bounds(c, off, XD_RRSET_HEADER) || off >= end_limit ||
		    !in_bounds(c, off, xd_rrset_size(rs)))
			return fail(c, "RRset outside the image", at);
		if (i > 0 && xd_rrset_type(rs) <= prev)
			return fail(c, "RRsets not sorted by type", off);
		prev = xd_rrset_type(rs);
		rc = check_rrset_wire(c, rs, off);
		if (rc)
			return rc;
		if (prev == XD_TYPE_RRSIG)
			rrsig = rs;
		rs = xd_rrset_next(rs);
	}
	/* Once every RRset is known to lie inside the image. */
	rs = xd_node_first_rrset(n);
	for (uint16_t i = 0; i < xd_node_nrrsets(n); i++, rs = xd_rrset_next(rs)) {
		int rc = check_signatures(c, rs, rrsig, rs - c->base);

		if (rc)
			return rc;
	}
	return 0;
}

/* A reference must point at a real node: one the name hash finds. */
static bool is_node(const struct xd_image *img, uint32_t off)
{
	const uint8_t *n = img->base + off;

	return xd_image_find(img, xd_node_zone(n), xd_node_name(n), xd_node_name_len(n)) == n;
}

/* The answering core trusts a node's flags to say which RRsets it holds: a
 * CNAME or DNAME flag without its RRset would be dereferenced as one. */
static int check_flags(struct check *c, const struct xd_image *img, const uint8_t *n, uint32_t off)
{
	uint8_t flags = xd_node_flags(n);
	bool cname = xd_node_rrset(n, XD_TYPE_CNAME) != NULL;
	bool dname = xd_node_rrset(n, XD_TYPE_DNAME) != NULL;

	if (!!(flags & XD_NODE_CNAME) != cname)
		return fail(c,
			    cname ? "CNAME RRset without the CNAME flag" :
				    "CNAME flag without a CNAME RRset",
			    off);
	if (!!(flags & XD_NODE_DNAME) != dname)
		return fail(c,
			    dname ? "DNAME RRset without the DNAME flag" :
				    "DNAME flag without a DNAME RRset",
			    off);
	if ((flags & XD_NODE_CUT) && !xd_node_rrset(n, XD_TYPE_NS))
		return fail(c, "zone cut flag without an NS RRset", off);
	if ((flags & XD_NODE_APEX) && !xd_node_rrset(n, XD_TYPE_SOA) &&
	    !(xd_image_zone(img, xd_node_zone(n))->flags & XD_ZONE_EXPIRED))
		return fail(c, "apex flag without an SOA RRset", off);
	if ((flags & XD_NODE_NSEC3) &&
	    (!xd_node_rrset(n, XD_TYPE_NSEC3) ||
	     xd_node_nrrsets(n) != 1 + !!xd_node_rrset(n, XD_TYPE_RRSIG)))
		return fail(c, "NSEC3 flag on a node with other data", off);
	return 0;
}

static int check_node(struct check *c, const struct xd_image *img, uint32_t off, uint32_t nodes_end)
{
	const uint8_t *n = c->base + off;
	int rc;

	if (off < sizeof(struct xd_image_header) || off >= nodes_end ||
	    !in_bounds(c, off, XD_NODE_HEADER) ||
	    !in_bounds(c, off + XD_NODE_HEADER, xd_node_name_len(n)))
		return fail(c, "node outside the image", off);
	if (xd_node_zone(n) >= img->hdr->zone_count)
		return fail(c, "node of an unknown zone", off);
	rc = check_rrsets(c, n, nodes_end, off);
	if (rc)
		return rc;
	return check_flags(c, img, n, off);
}

/* Second pass, once every node is known good: references between nodes. */
static int check_references(struct check *c, const struct xd_image *img, uint32_t off,
			    uint32_t nodes_end)
{
	const uint8_t *n = c->base + off;
	const uint8_t *rs = xd_node_first_rrset(n);
	uint32_t link = xd_node_link(n);

	if (link && (link >= nodes_end || !is_node(img, link)))
		return fail(c, "node link is not a node", off);
	if ((xd_node_flags(n) & (XD_NODE_OCCLUDED | XD_NODE_WILDCARD_CHILD)) && !link)
		return fail(c, "node flags need a link", off);
	for (uint16_t i = 0; i < xd_node_nrrsets(n); i++, rs = xd_rrset_next(rs)) {
		const uint8_t *t = xd_rrset_targets(rs);

		for (int j = 0; j < xd_rrset_ntargets(rs); j++, t += XD_TARGET_SIZE) {
			uint32_t target = xd_ld32(t + 4);

			if (xd_ld16(t) >= xd_rrset_wire_len(rs))
				return fail(c, "target name outside its RRset", off);
			if (target && (target >= nodes_end || !is_node(img, target)))
				return fail(c, "target is not a node", off);
		}
	}
	return 0;
}

static int check_identity(struct check *c, const struct xd_image_header *h);

static int check_header(struct check *c, const struct xd_image_header *h)
{
	if (c->size < sizeof(*h))
		return fail(c, "shorter than its header", 0);
	if (memcmp(h->magic, XD_IMAGE_MAGIC, sizeof(h->magic)) != 0)
		return fail(c, "not a zone image (bad magic)", 0);
	if (h->byte_order != XD_IMAGE_BYTE_ORDER)
		return fail(c, "written on a machine of another byte order", 0);
	if (h->version != XD_IMAGE_VERSION) {
		snprintf(c->err->message, sizeof(c->err->message),
			 "zone image version %u, this xdpdns reads version %u: "
			 "rebuild the image",
			 h->version, XD_IMAGE_VERSION);
		return -EINVAL;
	}
	if (h->size != c->size)
		return fail(c, "size in the header does not match", 0);
	if (h->checksum !=
	    xd_hash(c->base + XD_IMAGE_CHECKSUM_START, c->size - XD_IMAGE_CHECKSUM_START, 0))
		return fail(c, "checksum mismatch (corrupted)", 0);
	if ((h->zone_hash_size & (h->zone_hash_size - 1)) || !h->zone_hash_size ||
	    (h->name_hash_size & (h->name_hash_size - 1)) || !h->name_hash_size ||
	    h->zone_hash % 4 || h->name_hash % 4 || h->zone_table % 8 ||
	    !in_bounds(c, h->zone_hash, 4 * (size_t)h->zone_hash_size) ||
	    !in_bounds(c, h->name_hash, 4 * (size_t)h->name_hash_size) ||
	    !in_bounds(c, h->zone_table, h->zone_count * sizeof(struct xd_zone_entry)) ||
	    h->zone_count >= h->zone_hash_size || h->names >= h->name_hash_size)
		return fail(c, "tables outside the image", 0);
	return check_identity(c, h);
}

/* The identity block: after the tables, every entry inside the image. */
static int check_identity(struct check *c, const struct xd_image_header *h)
{
	size_t pos = h->identity;

	if (pos < h->name_hash + 4 * (size_t)h->name_hash_size)
		return fail(c, "identity block inside the tables", pos);
	for (int i = 0; i < XD_IDENTITY_COUNT; i++) {
		if (!in_bounds(c, pos, 2) || c->base[pos] > 1 ||
		    (!c->base[pos] && c->base[pos + 1]) || !in_bounds(c, pos + 2, c->base[pos + 1]))
			return fail(c, "bad identity block", pos);
		pos += 2 + c->base[pos + 1];
	}
	c->identity_end = pos;
	return 0;
}

const uint8_t *xd_image_identity(const struct xd_image *img, int which, size_t *len)
{
	const uint8_t *p = img->base + img->hdr->identity;

	if (which < 0 || which >= XD_IDENTITY_COUNT)
		return NULL;
	for (int i = 0; i < which; i++)
		p += 2 + p[1];
	*len = p[1];
	return p[0] ? p + 2 : NULL;
}

static int check_zones(struct check *c, const struct xd_image *img)
{
	const struct xd_image_header *h = img->hdr;
	const uint32_t *zh = (const uint32_t *)(c->base + h->zone_hash);
	uint32_t used = 0;

	/* Lookups probe until an empty slot: one must exist. */
	for (uint32_t i = 0; i < h->zone_hash_size; i++) {
		if (zh[i] > h->zone_count)
			return fail(c, "zone hash names an unknown zone", h->zone_hash);
		used += zh[i] != 0;
	}
	if (used != h->zone_count)
		return fail(c, "zone count does not match the hash", h->zone_hash);

	for (uint32_t z = 0; z < h->zone_count; z++) {
		const struct xd_zone_entry *e = xd_image_zone(img, z);
		const uint8_t *origin = c->base + e->origin;

		if (!in_bounds(c, e->origin, e->origin_len) ||
		    xd_name_check(origin, e->origin_len) != e->origin_len ||
		    xd_name_labels(origin) != e->origin_labels ||
		    !xd_image_has_origin_labels(img, e->origin_labels) ||
		    xd_image_find_zone(img, origin, e->origin_len) != (int)z)
			return fail(c, "bad zone origin", e->origin);
		if (e->flags & ~XD_ZONE_EXPIRED)
			return fail(c, "unknown zone flags", h->zone_table);
		if (e->flags & XD_ZONE_EXPIRED) {
			if (e->soa)
				return fail(c, "expired zone with a negative-answer SOA", e->soa);
			continue;
		}
		if (!in_bounds(c, e->soa, XD_RRSET_HEADER) ||
		    !in_bounds(c, e->soa, xd_rrset_size(c->base + e->soa)) ||
		    check_rrset_wire(c, c->base + e->soa, e->soa) ||
		    check_signatures(c, c->base + e->soa, NULL, e->soa))
			return fail(c, "bad negative-answer SOA", e->soa);
	}
	return 0;
}

static int check_names(struct check *c, const struct xd_image *img)
{
	const struct xd_image_header *h = img->hdr;
	const uint32_t *table = (const uint32_t *)(c->base + h->name_hash);
	uint64_t count = 0;
	uint32_t nodes_end = h->zone_hash;
	int rc;

	for (uint32_t i = 0; i < h->name_hash_size; i++) {
		if (!table[i])
			continue;
		rc = check_node(c, img, table[i], nodes_end);
		if (rc)
			return rc;
		count++;
	}
	if (count != h->names)
		return fail(c, "name count does not match the hash", h->name_hash);
	for (uint32_t z = 0; z < h->zone_count; z++)
		if (!is_node(img, xd_image_zone(img, z)->apex))
			return fail(c, "zone apex is not a node", h->zone_table);
	for (uint32_t i = 0; i < h->name_hash_size; i++) {
		if (!table[i])
			continue;
		rc = check_references(c, img, table[i], nodes_end);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- validating the overrides ----------------------------------------------- */

static bool overrides_absent(const struct xd_image_header *h)
{
	return !h->override_hash && !h->override_hash_size && !h->override_rules &&
	       !h->override_rule_count && !h->override_entries && !h->override_filter &&
	       !h->override_exact_labels[0] && !h->override_exact_labels[1] &&
	       !h->override_subtree_labels[0] && !h->override_subtree_labels[1];
}

/* After the identity block, in order: rule table, rules, entries, hash,
 * filter. */
static int check_override_tables(struct check *c, const struct xd_image_header *h)
{
	size_t rules_end = h->override_rules + 4 * (size_t)h->override_rule_count;
	size_t hash_end =
		h->override_hash + sizeof(struct xd_override_slot) * (size_t)h->override_hash_size;

	if (h->override_count == 0)
		return overrides_absent(h) ? 0 :
					     fail(c, "override fields set without overrides", 0);
	if (h->override_rules % 4 || h->override_hash % 4 || h->override_rules < c->identity_end ||
	    rules_end > h->override_entries || h->override_entries > h->override_hash ||
	    !h->override_hash_size || (h->override_hash_size & (h->override_hash_size - 1)) ||
	    h->override_count >= h->override_hash_size ||
	    !in_bounds(c, h->override_hash,
		       sizeof(struct xd_override_slot) * (size_t)h->override_hash_size) ||
	    h->override_filter % XD_OVERRIDE_FILTER_BLOCK || h->override_filter < hash_end ||
	    !in_bounds(c, h->override_filter, xd_override_filter_size(h->override_hash_size)))
		return fail(c, "override tables outside the image", h->override_rules);
	return 0;
}

/* A rule lies between the rule table and the entries, and so do its RRsets:
 * pre-rendered answers with nothing to patch but the owner. */
static int check_override_rule(struct check *c, const struct xd_image_header *h, uint32_t off)
{
	size_t start = h->override_rules + 4 * (size_t)h->override_rule_count;
	size_t end = h->override_entries;
	const uint8_t *r = c->base + off, *rs;
	uint8_t action;
	uint16_t prev = 0;

	if (off < start || off >= end || end - off < XD_OVERRIDE_RULE_HEADER)
		return fail(c, "override rule outside its block", off);
	action = xd_override_action(r);
	if (action < XD_OVERRIDE_NXDOMAIN || action > XD_OVERRIDE_RESOLVER ||
	    (r[1] && action != XD_OVERRIDE_RESOLVER) ||
	    (action == XD_OVERRIDE_ANSWER) != (xd_override_nrrsets(r) > 0))
		return fail(c, "bad override rule", off);
	rs = xd_override_first_rrset(r);
	for (uint16_t i = 0; i < xd_override_nrrsets(r); i++, rs = xd_rrset_next(rs)) {
		size_t at = rs - c->base;
		int rc;

		if (end - at < XD_RRSET_HEADER || end - at < xd_rrset_size(rs))
			return fail(c, "override RRset outside its block", at);
		if ((i > 0 && xd_rrset_type(rs) <= prev) || xd_rrset_nreloc(rs) ||
		    xd_rrset_ntargets(rs) || xd_rrset_sig_off(rs) || xd_rrset_sig_len(rs))
			return fail(c, "bad override RRset", at);
		prev = xd_rrset_type(rs);
		rc = check_rrset_wire(c, rs, at);
		if (rc)
			return rc;
	}
	return 0;
}

/* First pass over the hash: every entry lies in the entry block, so that
 * the lookups of the second pass read only checked bytes. */
static int check_override_bounds(struct check *c, const struct xd_image_header *h,
				 const struct xd_override_slot *table)
{
	uint32_t used = 0;

	for (uint32_t i = 0; i < h->override_hash_size; i++) {
		uint32_t off = table[i].entry;
		const uint8_t *e = c->base + off;

		if (!off)
			continue;
		if (off < h->override_entries || off >= h->override_hash ||
		    h->override_hash - off < XD_OVERRIDE_ENTRY_HEADER ||
		    h->override_hash - off - XD_OVERRIDE_ENTRY_HEADER <
			    xd_override_entry_name_len(e))
			return fail(c, "override entry outside its block", off);
		used++;
	}
	/* Lookups probe until an empty slot: one must exist. */
	if (used != h->override_count)
		return fail(c, "override count does not match the hash", h->override_hash);
	return 0;
}

static bool name_is_lower(const uint8_t *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (xd_lower(name[i]) != name[i])
			return false;
	return true;
}

/* Second pass: each entry's name, rules and place in the hash; collects
 * the label bitmaps the header must carry. */
static int check_override_entry(struct check *c, const struct xd_image *img, uint32_t slot,
				uint64_t bits[4])
{
	const struct xd_image_header *h = img->hdr;
	const struct xd_override_slot *table =
		(const struct xd_override_slot *)(c->base + h->override_hash);
	const uint8_t *e = c->base + table[slot].entry;
	const uint8_t *name = xd_override_entry_name(e);
	size_t len = xd_override_entry_name_len(e);
	uint32_t exact = xd_override_entry_exact(e), subtree = xd_override_entry_subtree(e);
	int labels = xd_override_entry_labels(e);
	uint64_t hash;

	if (xd_name_check(name, len) != (int)len || !name_is_lower(name, len) ||
	    xd_name_labels(name) != labels)
		return fail(c, "bad override name", table[slot].entry);
	if ((!exact && !subtree) || exact > h->override_rule_count ||
	    subtree > h->override_rule_count)
		return fail(c, "override entry without a valid rule", table[slot].entry);
	hash = xd_override_hash(name, len);
	if (table[slot].tag != (uint32_t)(hash >> 32) ||
	    override_slot(img, name, len, hash) != slot)
		return fail(c, "override hash does not find its entry", table[slot].entry);
	if (!xd_override_filter_has(c->base + h->override_filter,
				    xd_override_filter_size(h->override_hash_size), hash))
		return fail(c, "override filter misses an entry", table[slot].entry);
	if (exact)
		bits[labels / 64] |= 1ULL << (labels % 64);
	if (subtree)
		bits[2 + labels / 64] |= 1ULL << (labels % 64);
	return 0;
}

static int check_overrides(struct check *c, const struct xd_image *img)
{
	const struct xd_image_header *h = img->hdr;
	const struct xd_override_slot *table;
	uint64_t bits[4] = { 0, 0, 0, 0 };
	int rc = check_override_tables(c, h);

	if (rc || h->override_count == 0)
		return rc;
	for (uint32_t i = 0; i < h->override_rule_count; i++) {
		rc = check_override_rule(c, h,
					 xd_ld32(c->base + h->override_rules + 4 * (size_t)i));
		if (rc)
			return rc;
	}
	table = (const struct xd_override_slot *)(c->base + h->override_hash);
	rc = check_override_bounds(c, h, table);
	for (uint32_t i = 0; rc == 0 && i < h->override_hash_size; i++)
		if (table[i].entry)
			rc = check_override_entry(c, img, i, bits);
	if (rc)
		return rc;
	if (bits[0] != h->override_exact_labels[0] || bits[1] != h->override_exact_labels[1] ||
	    bits[2] != h->override_subtree_labels[0] || bits[3] != h->override_subtree_labels[1])
		return fail(c, "override label bitmaps do not match the entries", 0);
	return 0;
}

/* ---- validating the zone ACLs -------------------------------------------------- */

/* The TSIG key block (image.h), after everything else: each key
 * well-formed, inside [tsig_keys, tsig_keys_end), named once.  Run before
 * the zone ACLs, whose entries may name a key. */
static int check_tsig_keys(struct check *c, const struct xd_image_header *h)
{
	size_t pos = h->tsig_keys;

	if (h->tsig_key_count == 0 && (h->tsig_keys || h->tsig_keys_end))
		return fail(c, "TSIG key fields set without keys", 0);
	if (h->tsig_key_count == 0)
		return 0;
	if (h->tsig_keys < sizeof(*h) || h->tsig_keys > h->tsig_keys_end ||
	    h->tsig_keys_end != c->size)
		return fail(c, "TSIG key block outside the image", h->tsig_keys);
	for (uint32_t i = 0; i < h->tsig_key_count; i++) {
		const uint8_t *k = c->base + pos;
		size_t secret_len;

		if (h->tsig_keys_end - pos < 4)
			return fail(c, "TSIG key outside its block", pos);
		secret_len = xd_ld16(k + 2);
		if (h->tsig_keys_end - pos - 4 < (size_t)k[0] + secret_len)
			return fail(c, "TSIG key outside its block", pos);
		if (xd_name_check(k + 4, k[0]) != k[0] || k[1] < XD_TSIG_HMAC_SHA1 ||
		    k[1] >= XD_TSIG_ALGS || secret_len == 0 || secret_len > XD_TSIG_SECRET_MAX)
			return fail(c, "bad TSIG key", pos);
		for (size_t j = 0; j < k[0]; j++)
			if (k[4 + j] != xd_lower(k[4 + j])) /* length bytes are < 64 */
				return fail(c, "TSIG key name not in lower case", pos);
		pos += 4 + k[0] + secret_len;
	}
	if (pos != h->tsig_keys_end)
		return fail(c, "TSIG key block longer than its keys", pos);
	c->tsig_keys = h->tsig_key_count;
	return 0;
}

static int check_acl_prefixes(struct check *c, const uint8_t *p, uint16_t v4, uint16_t v6,
			      size_t at)
{
	for (int i = 0; i < v4 + v6; i++, p += XD_ZONE_ACL_PREFIX) {
		unsigned bits = i < v4 ? 32 : 128;
		uint8_t masked[16];

		memcpy(masked, p + 2, sizeof(masked));
		xd_mask_prefix(masked, sizeof(masked), p[0]);
		if (p[0] > bits || (p[1] != XD_ACL_ALLOW && p[1] != XD_ACL_DENY) ||
		    memcmp(masked, p + 2, sizeof(masked)) != 0 ||
		    xd_ld16(p + 2 + 16) > c->tsig_keys)
			return fail(c, "bad zone ACL prefix", at);
		if (i != 0 && i != v4 && p[0] > p[-XD_ZONE_ACL_PREFIX])
			return fail(c, "zone ACL prefixes not longest first", at);
	}
	return 0;
}

/* One list at *pos, inside [*pos, end); *pos moves past it. */
static int check_acl_list(struct check *c, size_t *pos, size_t end)
{
	const uint8_t *l = c->base + *pos;
	uint16_t v4, v6;
	size_t size;

	if (*pos + XD_ZONE_ACL_LIST_HEADER > end)
		return fail(c, "zone ACL outside its block", *pos);
	v4 = xd_ld16(l);
	v6 = xd_ld16(l + 2);
	size = XD_ZONE_ACL_PREFIX * ((size_t)v4 + v6);
	if (v4 > XD_ZONE_ACL_MAX || v6 > XD_ZONE_ACL_MAX ||
	    *pos + XD_ZONE_ACL_LIST_HEADER + size > end)
		return fail(c, "zone ACL outside its block", *pos);
	if ((l[4] != XD_ACL_ALLOW && l[4] != XD_ACL_DENY) || l[5])
		return fail(c, "bad zone ACL default", *pos);
	*pos += XD_ZONE_ACL_LIST_HEADER + size;
	return check_acl_prefixes(c, l + XD_ZONE_ACL_LIST_HEADER, v4, v6, *pos - size);
}

/* After every other block: each zone's ACL inside [zone_acls, zone_acls_end),
 * and as many as the header counts. */
static int check_zone_acls(struct check *c, const struct xd_image *img)
{
	const struct xd_image_header *h = img->hdr;
	size_t floor = h->override_count ?
			       h->override_filter + xd_override_filter_size(h->override_hash_size) :
			       c->identity_end;
	uint32_t count = 0;

	if (h->notify_hook > XD_RESOLVER_HOOKS_MAX)
		return fail(c, "bad NOTIFY hook", 0);
	if (h->zone_acl_count == 0 && (h->zone_acls || h->zone_acls_end))
		return fail(c, "zone ACL fields set without zone ACLs", 0);
	if ((h->zone_acl_count && (h->zone_acls < floor || h->zone_acls > h->zone_acls_end ||
				   h->zone_acls_end > c->size)))
		return fail(c, "zone ACL block outside the image", h->zone_acls);
	for (uint32_t z = 0; z < h->zone_count; z++) {
		const struct xd_zone_entry *e = xd_image_zone(img, z);
		size_t pos = e->acl;
		int rc = 0;

		if (!e->acl)
			continue;
		if (pos < h->zone_acls || pos >= h->zone_acls_end)
			return fail(c, "zone ACL outside its block", pos);
		for (int l = 0; l < XD_ZONE_ACL_LISTS && rc == 0; l++)
			rc = check_acl_list(c, &pos, h->zone_acls_end);
		if (rc)
			return rc;
		count++;
	}
	if (count != h->zone_acl_count)
		return fail(c, "zone ACL count does not match the zones", 0);
	return 0;
}

/* A signed zone's denial block (image.h): inside the image, a kind we
 * know, and nodes of the zone that own the chain's records, strictly in
 * canonical order, which the answering core's searches rely on. */
static int check_denial(struct check *c, const struct xd_image *img, uint32_t zone, uint32_t at)
{
	const uint8_t *d = c->base + at;
	const uint8_t *nodes, *prev = NULL;
	uint16_t type;
	uint32_t count;

	if (at % 4 || !in_bounds(c, at, XD_DENIAL_HEADER))
		return fail(c, "denial block outside the image", at);
	if (xd_denial_kind(d) == XD_DENIAL_NSEC3 && xd_denial_hash(d) != 0)
		type = XD_TYPE_NSEC3;
	else if (xd_denial_kind(d) == XD_DENIAL_NSEC && !xd_denial_hash(d) &&
		 !xd_denial_salt_len(d) && !xd_denial_iterations(d))
		type = XD_TYPE_NSEC;
	else
		return fail(c, "bad denial block", at);
	count = xd_denial_count(d);
	nodes = xd_denial_nodes(d);
	if (d[3] || xd_ld16(d + 6) || count == 0 ||
	    !in_bounds(c, at, (size_t)(nodes - d) + 4 * (size_t)count))
		return fail(c, "denial block outside the image", at);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t off = xd_ld32(nodes + 4 * i);
		const uint8_t *n = c->base + off;

		if (off >= img->hdr->name_hash || !in_bounds(c, off, XD_NODE_HEADER) ||
		    !in_bounds(c, off + XD_NODE_HEADER, xd_node_name_len(n)) ||
		    !is_node(img, off) || xd_node_zone(n) != zone || !xd_node_rrset(n, type))
			return fail(c, "denial block names a node without its record", at);
		if (prev && xd_name_canonical_cmp(xd_node_name(prev), xd_node_name_len(prev),
						  xd_node_name(n), xd_node_name_len(n)) >= 0)
			return fail(c, "denial block out of canonical order", at);
		prev = n;
	}
	return 0;
}

static int check_denials(struct check *c, const struct xd_image *img)
{
	for (uint32_t z = 0; z < img->hdr->zone_count; z++) {
		uint32_t at = xd_image_zone(img, z)->dnssec;
		int rc = at ? check_denial(c, img, z, at) : 0;

		if (rc)
			return rc;
	}
	return 0;
}

int xd_image_load(const uint8_t *data, size_t len, struct xd_image **out, struct xd_error *err)
{
	struct check c = { .size = len, .err = err };
	struct xd_image *img;
	uint8_t *copy;
	int rc;

	/* Copy first: aligned, ours, and not changed under our feet. */
	copy = malloc(len ? len : 1);
	if (!copy) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -ENOMEM;
	}
	memcpy(copy, data, len);
	c.base = copy;
	rc = check_header(&c, (const struct xd_image_header *)copy);
	if (rc)
		goto out_copy;
	rc = xd_image_adopt(copy, len, &img);
	if (rc) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		goto out_copy;
	}
	rc = check_zones(&c, img);
	if (rc == 0)
		rc = check_names(&c, img);
	if (rc == 0)
		rc = check_overrides(&c, img);
	if (rc == 0)
		rc = check_tsig_keys(&c, img->hdr);
	if (rc == 0)
		rc = check_zone_acls(&c, img);
	if (rc == 0)
		rc = check_denials(&c, img);
	if (rc) {
		xd_image_free(img);
		return rc;
	}
	*out = img;
	return 0;

out_copy:
	free(copy);
	return rc;
}
