/*
 * builder.h - the builder's private state, shared by build.c (collecting
 * records, nodes and problems, zone checks) and layout.c (rendering RRsets
 * and laying out the image).  Not seen by cffi.
 */
#ifndef XDPDNS_BUILDER_H
#define XDPDNS_BUILDER_H

#include <stdbool.h>
#include <stdint.h>
#include "engine.h"
#include "wire/wire.h"

#define XD_NONE UINT32_MAX

/* One list of a zone's ACL, its prefixes already in the image's form
 * (image.h): IPv4's first, each family's longest first. */
struct bzone_acl {
	uint8_t *prefixes; /* XD_ZONE_ACL_PREFIX bytes each */
	uint16_t v4, v6;
	uint8_t default_action; /* XD_ACL_* */
	bool set;
};

struct bzone {
	uint8_t origin[XD_NAME_MAX]; /* lower-case wire */
	uint8_t origin_len;
	uint32_t apex; /* node index */
	int source; /* of its first record: where problems
					 * about the whole zone point */
	uint64_t records;
	bool expired; /* xd_builder_set_zone_expired */
	struct bzone_acl acl[XD_ZONE_ACL_LISTS];
};

/* A name in a zone; ancestors up to the apex always exist (empty
 * non-terminals are nodes without records). */
struct bnode {
	uint32_t parent; /* node index, XD_NONE at the apex */
	uint32_t first; /* first record index, XD_NONE when empty */
	uint32_t name; /* offset in the name arena (relative name) */
	uint32_t hash; /* low bits of xd_node_hash */
	uint32_t link; /* occluder or wildcard child (node index) */
	uint32_t offset; /* in the image, set by the layout */
	uint16_t zone;
	uint8_t name_len;
	uint8_t flags; /* XD_NODE_* */
};

struct brec {
	uint32_t next; /* next record of the same node */
	uint32_t rdata; /* offset in the rdata arena */
	uint32_t ttl;
	uint32_t line;
	int32_t source;
	uint16_t type;
	uint16_t rdlen;
};

/* An override rule: what the names that use it get. */
struct brule {
	uint32_t first; /* first record of its answer, XD_NONE */
	uint32_t ttl;
	uint32_t offset; /* in the image, set by the layout */
	uint8_t action; /* XD_OVERRIDE_* */
	uint8_t has_cname; /* its answer holds a CNAME ... */
	uint8_t has_other; /* ... or another type: never both */
	uint8_t hook; /* RESOLVER: the resolver hook's index */
};

/* A name with override rules. */
struct boverride {
	uint64_t hash; /* xd_override_hash of the name */
	uint32_t name; /* offset in the name arena: the full
				 * lower-cased wire name */
	uint32_t rule[2]; /* [0] the name alone, [1] its subtree:
				 * rule index, XD_NONE */
	uint8_t name_len;
	uint8_t labels;
};

/* A TSIG key, as the image will hold it. */
struct btsig_key {
	uint8_t name[XD_NAME_MAX]; /* lower-case wire */
	uint8_t name_len;
	uint8_t alg; /* XD_TSIG_HMAC_* */
	uint16_t secret_len;
	uint8_t *secret;
};

struct xd_builder {
	struct bzone *zones;
	size_t nzones, zones_cap;
	struct bnode *nodes;
	size_t nnodes, nodes_cap;
	struct brec *recs;
	size_t nrecs, recs_cap;
	uint8_t *names;
	size_t names_len, names_cap;
	uint8_t *rdata;
	size_t rdata_len, rdata_cap;
	uint64_t *hash; /* hash << 32 | node index + 1; 0 is empty */
	size_t hash_size;
	uint32_t last_parent; /* parent found by the last insertion */
	char **sources;
	size_t nsources, sources_cap;
	struct xd_problem *problems;
	size_t nproblems, problems_cap;
	size_t nerrors;
	bool checked; /* flags and occlusion are computed */
	struct {
		bool present;
		uint8_t len;
		uint8_t data[255];
	} identity[XD_IDENTITY_COUNT];
	struct brule *rules;
	size_t nrules, rules_cap;
	struct boverride *overrides;
	size_t noverrides, overrides_cap;
	uint64_t *override_hash; /* hash low half << 32 | index + 1 */
	size_t override_hash_size;
	uint32_t notify_hook; /* hook + 1, 0: none */
	struct btsig_key *tsig_keys;
	size_t ntsig_keys, tsig_keys_cap;
};

/* Types that carry no data and never appear as records (RFC 6895 3.1). */
static inline bool xd_type_is_meta(uint16_t type)
{
	return type == XD_TYPE_OPT || (type >= 128 && type <= 255) || type == 0;
}

/* Computes every node's flags (apex, cut, CNAME, ..., occluded, wildcard
 * child) from its records; xd_builder_check does it first. */
void xd_builder_mark(struct xd_builder *b);
/* RFC 4035 2.2: whether the RRset of `type` at node n (not hidden by a
 * cut) is signed: all but RRSIGs; at a zone cut only DS and NSEC (the NS
 * and glue are the child's). */
bool xd_builder_signed_type(const struct bnode *n, uint16_t type);
/* Whether node n has a record of `type`. */
bool xd_builder_node_has(const struct xd_builder *b, const struct bnode *n, uint16_t type);
/* The nodes of zone that own `type` (outside what a cut or DNAME hides),
 * into *list (grown; *cap its size) in canonical order (RFC 4034 6.1):
 * the NSEC or NSEC3 chain.  *count gets their number. */
int xd_builder_chain(struct xd_builder *b, uint32_t zone, uint16_t type, uint32_t **list,
		     size_t *cap, size_t *count);
/* Sorts list[0..n) (node indices of one zone) in canonical order of their
 * names (RFC 4034 6.1). */
void xd_builder_sort_canonical(const struct xd_builder *b, uint32_t *list, size_t n);
/* The zone's NSEC3PARAM (RFC 5155 4): a well-formed one at the apex, or
 * NULL. */
const struct brec *xd_builder_nsec3param(const struct xd_builder *b, uint32_t zone);
/* dnssec_check.c: what xd_builder_check reports of signed zones. */
void xd_builder_check_dnssec(struct xd_builder *b, uint32_t zone);

/* Grows *data (elements of `elem` bytes) so that `need` fit. */
int xd_grow(void **data, size_t *cap, size_t need, size_t elem);

uint32_t xd_builder_find_node(const struct xd_builder *b, uint16_t zone, const uint8_t *rel,
			      size_t len);
/* Full owner name (relative name + origin) of a node in wire form, lower
 * case, into out (XD_NAME_MAX bytes); its length. */
size_t xd_builder_node_name(const struct xd_builder *b, uint32_t node, uint8_t *out);
/* Full owner name (relative name + origin) of a node, as text. */
void xd_builder_node_text(const struct xd_builder *b, uint32_t node, char *out, size_t cap);
int xd_builder_problemf(struct xd_builder *b, int severity, int source, uint32_t line,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Makes room for about `records` more records (the zone file reader knows
 * roughly how many from the file's size); saves regrowing on big zones. */
int xd_builder_reserve(struct xd_builder *b, size_t records);

/* override.c: the override checks xd_builder_check runs; frees its part. */
void xd_builder_check_overrides(struct xd_builder *b);
void xd_builder_free_overrides(struct xd_builder *b);

/* layout.c: renders every node into an image. */
int xd_layout_image(struct xd_builder *b, uint8_t **out, size_t *out_len, struct xd_error *err);

#endif
