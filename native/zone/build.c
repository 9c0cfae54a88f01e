/*
 * build.c - collecting zone data for an image: zones, records, the name tree
 * (with empty non-terminals), problems, and the checks real servers make.
 * Rendering the image is layout.c's job.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "wire/prefixes.h"
#include "wire/tsig.h"
#include "zone/builder.h"
#include "error.h"
#include "image/image.h"
#include "xdpdns_maps.h"

/* Start sizes: big enough that a small zone never regrows, small enough that
 * an empty builder costs nothing worth measuring. */
#define XD_BUILDER_HASH_MIN 1024
#define XD_PROBLEMS_MAX 10000 /* past this, only the count grows */

int xd_grow(void **data, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*data, ncap * elem);
	if (!p)
		return -ENOMEM;
	*data = p;
	*cap = ncap;
	return 0;
}

struct xd_builder *xd_builder_new(void)
{
	struct xd_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->hash = calloc(XD_BUILDER_HASH_MIN, sizeof(*b->hash));
	if (!b->hash) {
		free(b);
		return NULL;
	}
	b->hash_size = XD_BUILDER_HASH_MIN;
	b->last_parent = XD_NONE;
	return b;
}

void xd_builder_free(struct xd_builder *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nsources; i++)
		free(b->sources[i]);
	for (size_t i = 0; i < b->nzones; i++)
		for (int l = 0; l < XD_ZONE_ACL_LISTS; l++)
			free(b->zones[i].acl[l].prefixes);
	free(b->sources);
	for (size_t i = 0; i < b->ntsig_keys; i++) {
		OPENSSL_cleanse(b->tsig_keys[i].secret, b->tsig_keys[i].secret_len);
		free(b->tsig_keys[i].secret);
	}
	free(b->tsig_keys);
	xd_builder_free_overrides(b);
	free(b->problems);
	free(b->hash);
	free(b->rdata);
	free(b->names);
	free(b->recs);
	free(b->nodes);
	free(b->zones);
	free(b);
	/* The builder of a big zone leaves a heap the image never reuses:
	 * hand it back, or it counts as our resident memory for good. */
	malloc_trim(0);
}

int xd_builder_add_source(struct xd_builder *b, const char *path)
{
	char *copy;

	if (xd_grow((void **)&b->sources, &b->sources_cap, b->nsources + 1, sizeof(*b->sources)))
		return -ENOMEM;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	b->sources[b->nsources] = copy;
	return (int)b->nsources++;
}

const char *xd_builder_source(const struct xd_builder *b, int source)
{
	if (source < 0 || (size_t)source >= b->nsources)
		return NULL;
	return b->sources[source];
}

int xd_builder_add_problem(struct xd_builder *b, int severity, int source, uint32_t line,
			   const char *message)
{
	struct xd_problem *p;

	if (severity == XD_PROBLEM_ERROR)
		b->nerrors++;
	if (b->nproblems >= XD_PROBLEMS_MAX)
		return 0;
	if (xd_grow((void **)&b->problems, &b->problems_cap, b->nproblems + 1,
		    sizeof(*b->problems)))
		return -ENOMEM;
	p = &b->problems[b->nproblems++];
	p->severity = severity;
	p->source = source;
	p->line = line;
	snprintf(p->message, sizeof(p->message), "%s", message);
	return 0;
}

int xd_builder_problemf(struct xd_builder *b, int severity, int source, uint32_t line,
			const char *fmt, ...)
{
	char msg[sizeof(((struct xd_problem *)0)->message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return xd_builder_add_problem(b, severity, source, line, msg);
}

size_t xd_builder_problem_count(const struct xd_builder *b)
{
	return b->nproblems;
}

int xd_builder_problem(const struct xd_builder *b, size_t index, struct xd_problem *out)
{
	if (index >= b->nproblems)
		return -ERANGE;
	*out = b->problems[index];
	return 0;
}

size_t xd_builder_node_name(const struct xd_builder *b, uint32_t node, uint8_t *out)
{
	const struct bnode *n = &b->nodes[node];
	const struct bzone *z = &b->zones[n->zone];

	memcpy(out, b->names + n->name, n->name_len);
	memcpy(out + n->name_len, z->origin, z->origin_len);
	return n->name_len + z->origin_len;
}

void xd_builder_node_text(const struct xd_builder *b, uint32_t node, char *out, size_t cap)
{
	uint8_t full[XD_NAME_MAX];

	xd_builder_node_name(b, node, full);
	xd_name_to_text(full, out, cap);
}

const uint8_t *xd_builder_zone_origin(const struct xd_builder *b, int zone, size_t *len)
{
	if (zone < 0 || (size_t)zone >= b->nzones)
		return NULL;
	*len = b->zones[zone].origin_len;
	return b->zones[zone].origin;
}

/* Slots hold the hash's low half beside the node index, so that a probe
 * touches the node only when the hashes agree. */
static inline uint64_t slot_make(uint32_t h, uint32_t node)
{
	return (uint64_t)h << 32 | (node + 1);
}

static bool node_is(const struct xd_builder *b, uint32_t i, uint16_t zone, const uint8_t *rel,
		    size_t len)
{
	const struct bnode *n = &b->nodes[i];

	return n->zone == zone && n->name_len == len && memcmp(b->names + n->name, rel, len) == 0;
}

static uint32_t find_hashed(const struct xd_builder *b, uint16_t zone, const uint8_t *rel,
			    size_t len, uint32_t h)
{
	size_t mask = b->hash_size - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		uint64_t slot = b->hash[i];
		if (slot == 0)
			return XD_NONE;
		if ((uint32_t)(slot >> 32) != h)
			continue;
		if (node_is(b, (uint32_t)slot - 1, zone, rel, len))
			return (uint32_t)slot - 1;
	}
}

uint32_t xd_builder_find_node(const struct xd_builder *b, uint16_t zone, const uint8_t *rel,
			      size_t len)
{
	return find_hashed(b, zone, rel, len, (uint32_t)xd_node_hash(zone, rel, len));
}

static void hash_insert(uint64_t *hash, size_t size, uint32_t h, uint32_t node)
{
	size_t mask = size - 1;
	size_t i = h & mask;

	while (hash[i])
		i = (i + 1) & mask;
	hash[i] = slot_make(h, node);
}

static int hash_resize(struct xd_builder *b, size_t nsize)
{
	uint64_t *nh = calloc(nsize, sizeof(*nh));

	if (!nh)
		return -ENOMEM;
	for (size_t i = 0; i < b->nnodes; i++)
		hash_insert(nh, nsize, b->nodes[i].hash, i);
	free(b->hash);
	b->hash = nh;
	b->hash_size = nsize;
	return 0;
}

static int hash_reserve(struct xd_builder *b, size_t nodes)
{
	size_t nsize = b->hash_size;

	/* Linear probing stays short below half full. */
	while (nodes * 2 > nsize)
		nsize *= 2;
	return nsize == b->hash_size ? 0 : hash_resize(b, nsize);
}

int xd_builder_reserve(struct xd_builder *b, size_t records)
{
	/* Most records of a large zone own a name: size for one name each. */
	if (hash_reserve(b, b->nnodes + records) ||
	    xd_grow((void **)&b->nodes, &b->nodes_cap, b->nnodes + records, sizeof(*b->nodes)) ||
	    xd_grow((void **)&b->recs, &b->recs_cap, b->nrecs + records, sizeof(*b->recs)))
		return -ENOMEM;
	return 0;
}

/* Adds a node whose name is at `name_off` in the arena; no lookup. */
static int node_insert(struct xd_builder *b, uint16_t zone, uint32_t name_off, uint8_t len,
		       uint32_t h, uint32_t *out)
{
	struct bnode *n;

	if (b->nnodes >= XD_NONE - 1)
		return -E2BIG;
	if (hash_reserve(b, b->nnodes + 1) ||
	    xd_grow((void **)&b->nodes, &b->nodes_cap, b->nnodes + 1, sizeof(*n)))
		return -ENOMEM;
	n = &b->nodes[b->nnodes];
	memset(n, 0, sizeof(*n));
	n->parent = XD_NONE;
	n->first = XD_NONE;
	n->link = XD_NONE;
	n->name = name_off;
	n->name_len = len;
	n->zone = zone;
	n->hash = h;
	hash_insert(b->hash, b->hash_size, n->hash, b->nnodes);
	*out = b->nnodes++;
	return 0;
}

/*
 * Finds or creates the node of `rel` in `zone`, and every missing ancestor up
 * to the apex.  Ancestors' names are suffixes of the child's, so they share
 * the child's bytes in the arena.
 */
static int node_get(struct xd_builder *b, uint16_t zone, const uint8_t *rel, uint8_t len,
		    uint32_t *out)
{
	uint32_t h = (uint32_t)xd_node_hash(zone, rel, len);
	uint32_t found = find_hashed(b, zone, rel, len, h);
	uint32_t name_off, child = XD_NONE;
	int rc;

	if (found != XD_NONE) {
		*out = found;
		return 0;
	}
	if (xd_grow((void **)&b->names, &b->names_cap, b->names_len + len + 1, 1))
		return -ENOMEM;
	name_off = b->names_len;
	memcpy(b->names + name_off, rel, len);
	b->names_len += len;

	for (uint8_t skip = 0;;) {
		uint32_t idx;

		rc = node_insert(b, zone, name_off + skip, len - skip, h, &idx);
		if (rc)
			return rc;
		if (child == XD_NONE)
			*out = idx;
		else
			b->nodes[child].parent = idx;
		if (len == skip)
			return 0; /* the apex has no parent */
		child = idx;
		skip += 1 + b->names[name_off + skip];
		/* Zone files list siblings together: the parent is usually the
		 * last one seen, which spares a cache miss in the hash. */
		found = b->last_parent;
		if (found != XD_NONE &&
		    !node_is(b, found, zone, b->names + name_off + skip, len - skip)) {
			h = (uint32_t)xd_node_hash(zone, b->names + name_off + skip, len - skip);
			found = find_hashed(b, zone, b->names + name_off + skip, len - skip, h);
		} else if (found == XD_NONE) {
			h = (uint32_t)xd_node_hash(zone, b->names + name_off + skip, len - skip);
			found = find_hashed(b, zone, b->names + name_off + skip, len - skip, h);
		}
		if (found != XD_NONE) {
			b->nodes[child].parent = found;
			b->last_parent = found;
			return 0;
		}
	}
}

int xd_builder_add_zone(struct xd_builder *b, const uint8_t *origin, size_t origin_len,
			struct xd_error *err)
{
	uint8_t lower[XD_NAME_MAX];
	char text[256];
	struct bzone *z;
	int len = xd_name_check(origin, origin_len);
	int rc;

	if (len < 0 || (size_t)len != origin_len) {
		snprintf(err->message, sizeof(err->message), "malformed zone origin");
		return -EINVAL;
	}
	if (b->nzones >= UINT16_MAX) {
		snprintf(err->message, sizeof(err->message), "too many zones");
		return -E2BIG;
	}
	xd_name_lower(lower, origin, len);
	xd_name_to_text(lower, text, sizeof(text));
	for (size_t i = 0; i < b->nzones; i++) {
		if (b->zones[i].origin_len == len && memcmp(b->zones[i].origin, lower, len) == 0) {
			snprintf(err->message, sizeof(err->message), "zone %s is defined twice",
				 text);
			xd_builder_add_problem(b, XD_PROBLEM_ERROR, -1, 0, err->message);
			return -EEXIST;
		}
	}
	if (xd_grow((void **)&b->zones, &b->zones_cap, b->nzones + 1, sizeof(*z)))
		return -ENOMEM;
	z = &b->zones[b->nzones];
	memcpy(z->origin, lower, len);
	z->origin_len = len;
	z->source = -1;
	z->records = 0;
	z->expired = false;
	memset(z->acl, 0, sizeof(z->acl));
	rc = node_get(b, b->nzones, lower, 0, &z->apex);
	if (rc)
		return rc;
	b->checked = false;
	return (int)b->nzones++;
}

int xd_builder_set_zone_expired(struct xd_builder *b, int zone)
{
	if (zone < 0 || (size_t)zone >= b->nzones)
		return -EINVAL;
	b->zones[zone].expired = true;
	b->checked = false;
	return 0;
}

int xd_builder_set_notify_hook(struct xd_builder *b, int hook)
{
	if (hook < 0 || hook >= XD_RESOLVER_HOOKS_MAX)
		return -EINVAL;
	b->notify_hook = (uint32_t)hook + 1;
	return 0;
}

int xd_builder_add_tsig_key(struct xd_builder *b, const uint8_t *name, size_t name_len,
			    const char *algorithm, const uint8_t *secret, size_t secret_len,
			    struct xd_error *err)
{
	uint8_t lower[XD_NAME_MAX], alg_wire[XD_NAME_MAX];
	size_t alg_len = algorithm ? strlen(algorithm) : 0;
	struct btsig_key *k;
	int alg = 0;

	if (name_len > XD_NAME_MAX || xd_name_check(name, name_len) != (int)name_len)
		return xd_errorf(err, -EINVAL, "TSIG key: not a wire-form name");
	/* The algorithm's name as one label and the root. */
	if (alg_len > 0 && alg_len < 64) {
		alg_wire[0] = (uint8_t)alg_len;
		for (size_t i = 0; i < alg_len; i++)
			alg_wire[1 + i] = xd_lower((uint8_t)algorithm[i]);
		alg_wire[1 + alg_len] = 0;
		alg = xd_tsig_alg_from_name(alg_wire, alg_len + 2);
	}
	if (!alg)
		return xd_errorf(err, -EINVAL,
				 "TSIG key algorithm %s: expected hmac-sha1, hmac-sha224, "
				 "hmac-sha256, hmac-sha384 or hmac-sha512",
				 algorithm ? algorithm : "(none)");
	if (secret_len == 0 || secret_len > XD_TSIG_SECRET_MAX)
		return xd_errorf(err, -EINVAL, "TSIG key secret of %zu bytes: expected 1 to %d",
				 secret_len, XD_TSIG_SECRET_MAX);
	xd_name_lower(lower, name, name_len);
	for (size_t i = 0; i < b->ntsig_keys; i++)
		if (b->tsig_keys[i].name_len == name_len &&
		    memcmp(b->tsig_keys[i].name, lower, name_len) == 0)
			return xd_errorf(err, -EINVAL, "TSIG key named twice");
	if (b->ntsig_keys >= UINT16_MAX - 1)
		return xd_errorf(err, -EINVAL, "TSIG key: too many keys");
	if (xd_grow((void **)&b->tsig_keys, &b->tsig_keys_cap, b->ntsig_keys + 1,
		    sizeof(*b->tsig_keys)))
		return xd_errorf(err, -ENOMEM, "TSIG key: out of memory");
	k = &b->tsig_keys[b->ntsig_keys];
	k->secret = malloc(secret_len);
	if (!k->secret)
		return xd_errorf(err, -ENOMEM, "TSIG key: out of memory");
	memcpy(k->secret, secret, secret_len);
	memcpy(k->name, lower, name_len);
	k->name_len = (uint8_t)name_len;
	k->alg = (uint8_t)alg;
	k->secret_len = (uint16_t)secret_len;
	return (int)b->ntsig_keys++;
}

static int record_problem(struct xd_builder *b, int source, uint32_t line, const uint8_t *owner,
			  const char *what)
{
	char text[1024];

	xd_name_to_text(owner, text, sizeof(text));
	xd_builder_problemf(b, XD_PROBLEM_ERROR, source, line, "%s: %s", text, what);
	return -EINVAL;
}

/* ---- zone ACLs ------------------------------------------------------------- */

static void zone_acl_render(struct bzone_acl *l, const struct xd_acl_entry *e, int n)
{
	for (int i = 0; i < n; i++) {
		uint8_t *p = l->prefixes + (size_t)i * XD_ZONE_ACL_PREFIX;

		p[0] = e[i].prefix_len;
		p[1] = e[i].action;
		memcpy(p + 2, e[i].addr, sizeof(e[i].addr));
		xd_st16(p + 2 + sizeof(e[i].addr), e[i].key);
	}
}

int xd_builder_set_zone_acl(struct xd_builder *b, int zone, int list,
			    const struct xd_acl_rule *rules, int n, uint32_t default_action,
			    struct xd_error *err)
{
	struct xd_acl_entry *entries;
	struct bzone_acl *l;
	uint32_t n4;
	uint8_t *prefixes;
	int rc;

	if (zone < 0 || (size_t)zone >= b->nzones)
		return xd_errorf(err, -EINVAL, "zone ACL: no zone %d", zone);
	if (list < 0 || list >= XD_ZONE_ACL_LISTS)
		return xd_errorf(err, -EINVAL,
				 "zone ACL: list %d: expected "
				 "XD_ZONE_ACL_QUERY or XD_ZONE_ACL_TRANSFER",
				 list);
	if (default_action != XD_ACL_ALLOW && default_action != XD_ACL_DENY)
		return xd_errorf(err, -EINVAL,
				 "zone ACL default %u: expected "
				 "XD_ACL_ALLOW or XD_ACL_DENY",
				 default_action);
	for (int i = 0; i < n; i++) {
		if (rules[i].key > b->ntsig_keys)
			return xd_errorf(err, -EINVAL, "zone ACL rule %d: no TSIG key %u", i,
					 rules[i].key - 1);
		if (rules[i].key && list != XD_ZONE_ACL_TRANSFER)
			return xd_errorf(err, -EINVAL,
					 "zone ACL rule %d: a TSIG key in a query list "
					 "(keys are for transfers)",
					 i);
	}
	entries = malloc((size_t)(n > 0 ? n : 1) * sizeof(*entries));
	if (!entries)
		return xd_errorf(err, -ENOMEM, "zone ACL: out of memory");
	rc = xd_acl_sort(rules, n, entries, &n4, err);
	if (rc < 0)
		goto out_entries;
	if (n4 > XD_ZONE_ACL_MAX || rc - n4 > XD_ZONE_ACL_MAX) {
		rc = xd_errorf(err, -E2BIG,
			       "zone ACL: %u IPv4 and %u IPv6 prefixes: at "
			       "most %d of each (XD_ZONE_ACL_MAX)",
			       n4, rc - n4, XD_ZONE_ACL_MAX);
		goto out_entries;
	}
	prefixes = malloc((size_t)(rc > 0 ? rc : 1) * XD_ZONE_ACL_PREFIX);
	if (!prefixes) {
		rc = xd_errorf(err, -ENOMEM, "zone ACL: out of memory");
		goto out_entries;
	}
	l = &b->zones[zone].acl[list];
	free(l->prefixes);
	l->prefixes = prefixes;
	l->v4 = n4;
	l->v6 = rc - n4;
	l->default_action = default_action;
	l->set = true;
	zone_acl_render(l, entries, rc);
	rc = 0;
out_entries:
	free(entries);
	return rc;
}

int xd_builder_add_record(struct xd_builder *b, int zone, const uint8_t *owner, size_t owner_len,
			  uint16_t rtype, uint16_t rclass, uint32_t ttl, const uint8_t *rdata,
			  size_t rdata_len, int source, uint32_t line)
{
	uint8_t lower[XD_NAME_MAX];
	struct bzone *z;
	struct brec *r;
	uint32_t node;
	int len, rc;

	if (zone < 0 || (size_t)zone >= b->nzones)
		return -EINVAL;
	z = &b->zones[zone];
	if (z->source < 0)
		z->source = source;
	len = xd_name_check(owner, owner_len);
	if (len < 0 || (size_t)len != owner_len)
		return record_problem(b, source, line, (const uint8_t *)"", "malformed owner name");
	xd_name_lower(lower, owner, len);
	if (!xd_name_is_below(lower, len, z->origin, z->origin_len))
		return record_problem(b, source, line, lower, "record outside the zone");
	if (rclass != XD_CLASS_IN)
		return record_problem(b, source, line, lower, "class is not IN");
	if (xd_type_is_meta(rtype))
		return record_problem(b, source, line, lower, "type cannot be zone data");
	if (rdata_len > UINT16_MAX)
		return record_problem(b, source, line, lower, "rdata too long");
	if (rtype == XD_TYPE_SOA && (size_t)len != z->origin_len)
		return record_problem(b, source, line, lower, "SOA record not at the zone apex");
	if (ttl > INT32_MAX)
		ttl = 0; /* RFC 2181 8: values with the top bit set mean 0 */

	rc = node_get(b, zone, lower, len - z->origin_len, &node);
	if (rc)
		return rc;
	if (b->nrecs >= XD_NONE - 1 || b->rdata_len + rdata_len >= UINT32_MAX)
		return -E2BIG;
	if (xd_grow((void **)&b->recs, &b->recs_cap, b->nrecs + 1, sizeof(*r)) ||
	    xd_grow((void **)&b->rdata, &b->rdata_cap, b->rdata_len + rdata_len, 1))
		return -ENOMEM;
	r = &b->recs[b->nrecs];
	r->rdata = b->rdata_len;
	r->rdlen = rdata_len;
	r->ttl = ttl;
	r->type = rtype;
	r->line = line;
	r->source = source;
	r->next = b->nodes[node].first;
	b->nodes[node].first = b->nrecs++;
	memcpy(b->rdata + b->rdata_len, rdata, rdata_len);
	b->rdata_len += rdata_len;
	b->checked = false;
	b->zones[zone].records++;
	return 0;
}

/* ---- checks ---------------------------------------------------------------- */

static void node_flags(struct xd_builder *b, uint32_t i)
{
	struct bnode *n = &b->nodes[i];
	uint8_t flags = n->name_len == 0 ? XD_NODE_APEX : 0;
	bool nsec3 = false, other = false;

	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next) {
		nsec3 |= b->recs[r].type == XD_TYPE_NSEC3;
		other |= b->recs[r].type != XD_TYPE_NSEC3 && b->recs[r].type != XD_TYPE_RRSIG;
		switch (b->recs[r].type) {
		case XD_TYPE_NS:
			if (n->name_len)
				flags |= XD_NODE_CUT;
			break;
		case XD_TYPE_DNAME:
			flags |= XD_NODE_DNAME;
			break;
		case XD_TYPE_CNAME:
			flags |= XD_NODE_CNAME;
			break;
		}
	}
	if (nsec3 && !other && n->name_len)
		flags |= XD_NODE_NSEC3;
	n->flags = flags;
	n->link = XD_NONE;
}

/*
 * Sets OCCLUDED and link for every node below a zone cut or a DNAME
 * (RFC 1034 4.2.1, RFC 6672 2.3).  Walks up once per node with a small
 * explicit path, then fills the path top-down, so every node is visited a
 * bounded number of times.
 */
static void mark_occluded(struct xd_builder *b)
{
	uint8_t *done = calloc(b->nnodes, 1);
	uint32_t path[XD_LABELS_MAX + 1];

	if (!done) {
		/* Fall back to a walk per node: slower, same result. */
		for (size_t i = 0; i < b->nnodes; i++) {
			for (uint32_t p = b->nodes[i].parent; p != XD_NONE;
			     p = b->nodes[p].parent) {
				if (b->nodes[p].flags & (XD_NODE_CUT | XD_NODE_DNAME)) {
					b->nodes[i].flags |= XD_NODE_OCCLUDED;
					b->nodes[i].link = p;
				}
			}
		}
		return;
	}
	for (size_t i = 0; i < b->nnodes; i++) {
		int depth = 0;
		uint32_t p = i;

		while (p != XD_NONE && !done[p] && depth <= XD_LABELS_MAX) {
			path[depth++] = p;
			p = b->nodes[p].parent;
		}
		while (depth-- > 0) {
			uint32_t c = path[depth];
			struct bnode *n = &b->nodes[c];
			uint32_t par = n->parent;

			if (par != XD_NONE) {
				const struct bnode *pn = &b->nodes[par];

				if (pn->flags & XD_NODE_OCCLUDED) {
					n->flags |= XD_NODE_OCCLUDED;
					n->link = pn->link;
				} else if (pn->flags & (XD_NODE_CUT | XD_NODE_DNAME)) {
					n->flags |= XD_NODE_OCCLUDED;
					n->link = par;
				}
			}
			done[c] = 1;
		}
	}
	free(done);
}

static void mark_wildcards(struct xd_builder *b)
{
	for (size_t i = 0; i < b->nnodes; i++) {
		const struct bnode *n = &b->nodes[i];
		struct bnode *p;

		if (n->name_len < 2 || b->names[n->name] != 1 || b->names[n->name + 1] != '*' ||
		    n->parent == XD_NONE)
			continue;
		p = &b->nodes[n->parent];
		if (!(p->flags & XD_NODE_OCCLUDED)) {
			p->flags |= XD_NODE_WILDCARD_CHILD;
			p->link = i;
		}
	}
}

static const struct brec *first_of_type(const struct xd_builder *b, const struct bnode *n,
					uint16_t type)
{
	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next)
		if (b->recs[r].type == type)
			return &b->recs[r];
	return NULL;
}

static void check_apex(struct xd_builder *b, uint32_t zone)
{
	const struct bzone *z = &b->zones[zone];
	const struct bnode *apex = &b->nodes[z->apex];
	char text[1024];
	int soa = 0;

	xd_name_to_text(z->origin, text, sizeof(text));
	if (z->expired) {
		if (z->records)
			xd_builder_problemf(b, XD_PROBLEM_ERROR, z->source, 0,
					    "zone %s: records in a zone with no data to serve",
					    text);
		return;
	}
	if (z->records == 0) {
		/* One line, not a missing SOA and NS: the file is empty or
		 * unreadable, and that has been said already if so. */
		xd_builder_problemf(b, XD_PROBLEM_ERROR, z->source, 0, "zone %s has no records",
				    text);
		return;
	}
	for (uint32_t r = apex->first; r != XD_NONE; r = b->recs[r].next)
		soa += b->recs[r].type == XD_TYPE_SOA;
	if (soa == 0)
		xd_builder_problemf(b, XD_PROBLEM_ERROR, z->source, 0,
				    "zone %s: no SOA record at the apex", text);
	else if (soa > 1) {
		const struct brec *r = first_of_type(b, apex, XD_TYPE_SOA);

		xd_builder_problemf(b, XD_PROBLEM_ERROR, r->source, r->line,
				    "zone %s: more than one SOA record", text);
	}
	if (!first_of_type(b, apex, XD_TYPE_NS))
		xd_builder_problemf(b, XD_PROBLEM_ERROR, z->source, 0,
				    "zone %s: no NS records at the apex", text);
}

/* RFC 1034 3.6.2, RFC 2181 10.1: a CNAME stands alone (DNSSEC's RRSIG and
 * NSEC excepted, RFC 4035 2.5). */
static void check_cname(struct xd_builder *b, uint32_t i)
{
	const struct bnode *n = &b->nodes[i];
	const struct brec *cname = NULL, *other = NULL;
	int ncname = 0;
	char text[1024];

	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next) {
		const struct brec *rec = &b->recs[r];

		if (rec->type == XD_TYPE_CNAME) {
			cname = rec;
			ncname++;
		} else if (rec->type != XD_TYPE_RRSIG && rec->type != XD_TYPE_NSEC) {
			other = rec;
		}
	}
	if (!cname)
		return;
	xd_builder_node_text(b, i, text, sizeof(text));
	if (other)
		xd_builder_problemf(b, XD_PROBLEM_ERROR, cname->source, cname->line,
				    "%s: CNAME beside other data", text);
	if (ncname > 1)
		xd_builder_problemf(b, XD_PROBLEM_ERROR, cname->source, cname->line,
				    "%s: more than one CNAME record", text);
}

static void check_dname(struct xd_builder *b, uint32_t i)
{
	const struct bnode *n = &b->nodes[i];
	const struct bnode *occluder;
	const struct brec *r;
	char text[1024];

	if (!(n->flags & XD_NODE_OCCLUDED) || n->first == XD_NONE)
		return;
	occluder = &b->nodes[n->link];
	if (!(occluder->flags & XD_NODE_DNAME))
		return;
	r = &b->recs[n->first];
	xd_builder_node_text(b, i, text, sizeof(text));
	xd_builder_problemf(b, XD_PROBLEM_WARNING, r->source, r->line,
			    "%s: data below a DNAME is never answered "
			    "(RFC 6672 2.3)",
			    text);
}

/* An NS target inside the zone needs an address, or nobody can reach it. */
static void check_glue(struct xd_builder *b, uint32_t i)
{
	const struct bnode *n = &b->nodes[i];
	const struct bzone *z = &b->zones[n->zone];

	if (n->flags & XD_NODE_OCCLUDED)
		return;
	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next) {
		const struct brec *rec = &b->recs[r];
		const uint8_t *target = b->rdata + rec->rdata;
		uint8_t lower[XD_NAME_MAX];
		int len = xd_name_check(target, rec->rdlen);
		uint32_t t;
		char text[1024];

		if (rec->type != XD_TYPE_NS || len < 0)
			continue;
		xd_name_lower(lower, target, len);
		if (!xd_name_is_below(lower, len, z->origin, z->origin_len))
			continue;
		t = xd_builder_find_node(b, n->zone, lower, len - z->origin_len);
		if (t != XD_NONE && (first_of_type(b, &b->nodes[t], XD_TYPE_A) ||
				     first_of_type(b, &b->nodes[t], XD_TYPE_AAAA)))
			continue;
		xd_name_to_text(lower, text, sizeof(text));
		xd_builder_problemf(b, XD_PROBLEM_WARNING, rec->source, rec->line,
				    "NS target %s has no A or AAAA record in "
				    "the zone (missing glue)",
				    text);
	}
}

/* RFC 2181 5.2: the records of an RRset share one TTL; the first one added
 * is used (layout.c), and each RRset that disagrees is reported once. */
#define XD_TTL_CHECK_TYPES 32

/* What shares one TTL: an RRset, and the RRSIGs that cover one RRset,
 * whose TTL is that RRset's (RFC 4034 3). */
static uint32_t ttl_key(const struct xd_builder *b, const struct brec *rec)
{
	uint16_t covered =
		rec->type == XD_TYPE_RRSIG && rec->rdlen >= 2 ? xd_get16(b->rdata + rec->rdata) : 0;

	return (uint32_t)rec->type << 16 | covered;
}

static void check_ttls(struct xd_builder *b, uint32_t i)
{
	const struct bnode *n = &b->nodes[i];
	struct {
		uint32_t key;
		bool reported;
		uint32_t first;
	} seen[XD_TTL_CHECK_TYPES];
	int nseen = 0;

	/* The chain runs newest first: the last record of a type seen is the
	 * first one added. */
	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next) {
		uint32_t key = ttl_key(b, &b->recs[r]);
		int k = 0;

		while (k < nseen && seen[k].key != key)
			k++;
		if (k == nseen) {
			if (nseen == XD_TTL_CHECK_TYPES)
				continue;
			seen[nseen].key = key;
			seen[nseen].reported = false;
			nseen++;
		}
		seen[k].first = r;
	}
	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next) {
		const struct brec *rec = &b->recs[r];
		uint32_t key = ttl_key(b, rec);
		char text[1024];
		int k = 0;

		while (k < nseen && seen[k].key != key)
			k++;
		if (k == nseen || seen[k].reported || rec->ttl == b->recs[seen[k].first].ttl)
			continue;
		seen[k].reported = true;
		xd_builder_node_text(b, i, text, sizeof(text));
		xd_builder_problemf(b, XD_PROBLEM_WARNING, rec->source, rec->line,
				    "%s: TTL %u differs from the RRset's TTL %u "
				    "(RFC 2181 5.2); using %u",
				    text, rec->ttl, b->recs[seen[k].first].ttl,
				    b->recs[seen[k].first].ttl);
	}
}

int xd_builder_set_identity(struct xd_builder *b, int which, const uint8_t *data, size_t len)
{
	if (which < 0 || which >= XD_IDENTITY_COUNT || len > sizeof(b->identity[0].data))
		return -EINVAL;
	b->identity[which].present = true;
	b->identity[which].len = (uint8_t)len;
	memcpy(b->identity[which].data, data, len);
	return 0;
}

bool xd_builder_node_has(const struct xd_builder *b, const struct bnode *n, uint16_t type)
{
	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next)
		if (b->recs[r].type == type)
			return true;
	return false;
}

bool xd_builder_signed_type(const struct bnode *n, uint16_t type)
{
	if (type == XD_TYPE_RRSIG)
		return false;
	if (n->flags & XD_NODE_CUT)
		return type == XD_TYPE_DS || type == XD_TYPE_NSEC;
	return true;
}

static const struct xd_builder *chain_ctx;

static int cmp_canonical_qsort(const void *a, const void *b)
{
	const struct bnode *na = &chain_ctx->nodes[*(const uint32_t *)a];
	const struct bnode *nb = &chain_ctx->nodes[*(const uint32_t *)b];

	return xd_name_canonical_cmp(chain_ctx->names + na->name, na->name_len,
				     chain_ctx->names + nb->name, nb->name_len);
}

int xd_builder_chain(struct xd_builder *b, uint32_t zone, uint16_t type, uint32_t **list,
		     size_t *cap, size_t *count)
{
	size_t n = 0;

	for (size_t i = 0; i < b->nnodes; i++) {
		const struct bnode *node = &b->nodes[i];

		if (node->zone != zone || (node->flags & XD_NODE_OCCLUDED) ||
		    !xd_builder_node_has(b, node, type))
			continue;
		if (xd_grow((void **)list, cap, n + 1, sizeof(**list)))
			return -ENOMEM;
		(*list)[n++] = (uint32_t)i;
	}
	xd_builder_sort_canonical(b, *list, n);
	*count = n;
	return 0;
}

void xd_builder_sort_canonical(const struct xd_builder *b, uint32_t *list, size_t n)
{
	chain_ctx = b;
	if (n > 1)
		qsort(list, n, sizeof(*list), cmp_canonical_qsort);
}

const struct brec *xd_builder_nsec3param(const struct xd_builder *b, uint32_t zone)
{
	const struct bnode *apex = &b->nodes[b->zones[zone].apex];

	for (uint32_t r = apex->first; r != XD_NONE; r = b->recs[r].next)
		if (b->recs[r].type == XD_TYPE_NSEC3PARAM && b->recs[r].rdlen >= 5 &&
		    b->recs[r].rdlen == 5 + b->rdata[b->recs[r].rdata + 4])
			return &b->recs[r];
	return NULL;
}

void xd_builder_mark(struct xd_builder *b)
{
	for (size_t i = 0; i < b->nnodes; i++)
		node_flags(b, i);
	mark_occluded(b);
	mark_wildcards(b);
}

int xd_builder_check(struct xd_builder *b)
{
	size_t errors_before = b->nerrors;

	xd_builder_mark(b);
	for (size_t z = 0; z < b->nzones; z++)
		check_apex(b, z);
	for (size_t i = 0; i < b->nnodes; i++) {
		check_cname(b, i);
		check_dname(b, i);
		check_glue(b, i);
		check_ttls(b, i);
	}
	for (size_t z = 0; z < b->nzones; z++)
		xd_builder_check_dnssec(b, (uint32_t)z);
	xd_builder_check_overrides(b);
	b->checked = true;
	return (int)(b->nerrors - errors_before);
}

int xd_builder_finish(struct xd_builder *b, struct xd_image **out, struct xd_error *err)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	if (!b->checked)
		xd_builder_check(b);
	if (b->nerrors) {
		snprintf(err->message, sizeof(err->message), "%zu error%s in the zone data",
			 b->nerrors, b->nerrors == 1 ? "" : "s");
		return -EINVAL;
	}
	rc = xd_layout_image(b, &data, &len, err);
	if (rc)
		return rc;
	rc = xd_image_adopt(data, len, out);
	if (rc) {
		free(data);
		snprintf(err->message, sizeof(err->message), "out of memory");
	}
	return rc;
}
