/*
 * image.h - the layout of the zone image, the one contract between the
 * builder (build.c) and its readers (image.c, answer.c).  Documented for
 * people in docs/IMAGE.md.
 *
 * The image is one position-independent byte block: every reference is a
 * 32-bit offset from its start, so it can be written to disk and mapped back.
 * Integers are in host byte order (the header records it), except inside the
 * pre-rendered wire data, which is in network order.  Nothing is aligned;
 * readers use xd_ld16/xd_ld32.
 *
 *   header | zone table | zone origins | nodes (with their RRsets) | name hash
 *          | identity | override rule table | override rules
 *          | override entries | override hash | override filter | zone ACLs
 *          | denial blocks | TSIG keys
 *
 * Identity (XD_IDENTITY_COUNT entries, in XD_IDENTITY_* order): u8 present,
 * u8 len, data[len].  What CHAOS TXT queries and the NSID option get.
 *
 * Overrides (all absent, and every override_* field 0, when there are none):
 *   rule table    u32[override_rule_count]: rule offsets
 *   rule (4 bytes + RRsets):
 *     u8 action   XD_OVERRIDE_*
 *     u8 reserved
 *     u16 nrrsets XD_OVERRIDE_ANSWER: at least one; otherwise 0
 *     RRsets in the format below, sorted by type, owner patched to the
 *     qname, never relocations or targets (nothing is relative to a zone)
 *   entry (10 bytes + name), one per name that has rules:
 *     u8  name_len   the lower-cased wire name, root included
 *     u8  labels
 *     u32 exact      rule index + 1 for the name alone, 0 for none
 *     u32 subtree    rule index + 1 for the name and all below it, 0: none
 *     name[name_len]
 *   override hash: struct xd_override_slot[override_hash_size], keyed by
 *     xd_override_hash of the entry's name, at most half full
 *   override filter: a blocked Bloom filter of the entries' names,
 *     xd_override_filter_size() bytes at a 64-byte aligned offset
 *
 * Zone ACLs (absent, and every zone_acl* field 0, when no zone has one):
 *   one per zone whose entry's acl names it, two lists each, query then
 *   transfer (XD_ZONE_ACL_*), each a list header then its prefixes:
 *     u16 v4        IPv4 prefixes (at most XD_ZONE_ACL_MAX)
 *     u16 v6        IPv6 prefixes (at most XD_ZONE_ACL_MAX)
 *     u8  default   XD_ACL_ALLOW or XD_ACL_DENY: a client no prefix holds
 *     u8  reserved
 *     prefix[v4 + v6], 20 bytes each: u8 prefix_len, u8 action (XD_ACL_*),
 *       addr[16] (IPv4: the first 4 bytes, the rest zero; host bits zero),
 *       u16 key (a TSIG key's index + 1: the prefix holds only requests
 *       signed with it; 0: any request);
 *       IPv4's first, each family's longest prefix first, and of one
 *       prefix its keyed entries first, so that the first entry holding a
 *       request is its longest match
 *
 * TSIG keys (RFC 8945; absent, and every tsig_key* field 0, when there are
 * none), one after the other, each named once:
 *   u8 name_len, u8 alg (XD_TSIG_HMAC_*, wire/tsig.h), u16 secret_len,
 *   name[name_len] (lower-case wire form), secret[secret_len]
 *
 * Node (10 bytes + name + RRsets):
 *   u32 link      OCCLUDED: the zone cut or DNAME node above this one;
 *                 otherwise the "*" child (wildcard) or 0
 *   u16 zone      index into the zone table
 *   u8  flags     XD_NODE_*
 *   u8  name_len  length of the name relative to the zone origin: the
 *                 lower-cased wire labels in front of the origin, no root
 *   u16 nrrsets
 *   name[name_len]
 *   RRsets, one after the other, sorted by type
 *
 * RRset (12 bytes + wire + relocations + targets):
 *   u16 type, u16 count, u16 wire_len, u8 nreloc, u8 ntargets,
 *   u16 sig_off, u16 sig_len: the RRSIGs that cover this RRset, a slice
 *                    of the wire of its node's RRSIG RRset (which is
 *                    sorted by type covered); sig_len 0: none (and always
 *                    0 outside a node: negative SOAs, override rules)
 *   wire[wire_len]   count RRs, each: owner (2 bytes, a compression pointer
 *                    patched per answer) type class ttl rdlength rdata;
 *                    names in rdata whose suffix is the zone origin end in a
 *                    2-byte pointer patched to the origin's place in the qname
 *   u16 reloc[nreloc]       offsets in wire of those origin pointers
 *   target[ntargets]: u16 offset in wire of a name in rdata (NS, MX, SRV,
 *                    CNAME, DNAME targets), u16 XD_TARGET_* flags, u32 node
 *                    (0 when the name has no node in this zone)
 */
#ifndef XDPDNS_IMAGE_H
#define XDPDNS_IMAGE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include "engine.h"
#include "wire/wire.h"

#define XD_IMAGE_MAGIC "XDPDNSIM"
#define XD_IMAGE_VERSION 7
#define XD_IMAGE_BYTE_ORDER 0x01020304u

struct xd_image_header {
	char magic[8];
	uint32_t version;
	uint32_t byte_order; /* XD_IMAGE_BYTE_ORDER as written by the builder */
	uint64_t size; /* of the whole image */
	uint64_t checksum; /* xd_hash of everything after this field */
	uint32_t zone_count;
	uint32_t zone_table; /* offset of struct xd_zone_entry[zone_count] */
	uint32_t zone_hash; /* offset of u32[zone_hash_size]: zone index + 1 */
	uint32_t zone_hash_size; /* power of two */
	uint32_t name_hash; /* offset of u32[name_hash_size]: node offsets */
	uint32_t name_hash_size; /* power of two */
	uint64_t names;
	uint64_t rrsets;
	uint64_t records;
	/* Bit k set: some zone's origin has k labels.  Zone lookup hashes
	 * only the qname suffixes that could be an origin. */
	uint64_t origin_labels[2];
	uint32_t identity; /* offset of the identity block */
	/* Overrides: names with rules, 0 when there are none.  The answering
	 * core tests this field alone before it looks for a rule. */
	uint32_t override_count;
	uint32_t override_hash; /* offset of struct xd_override_slot[] */
	uint32_t override_hash_size; /* power of two */
	uint32_t override_rules; /* offset of u32[override_rule_count] */
	uint32_t override_rule_count;
	uint32_t override_entries; /* where the entries start; they end at
					 * override_hash */
	uint32_t override_filter; /* offset of the filter */
	/* Bit k set: some name with an exact (a subtree) rule has k labels.
	 * A lookup probes only the qname's suffixes that could hold a rule. */
	uint64_t override_exact_labels[2];
	uint64_t override_subtree_labels[2];
	/* Zone ACLs: zones that have one, 0 when none.  They lie in
	 * [zone_acls, zone_acls_end), after everything else. */
	uint32_t zone_acl_count;
	uint32_t zone_acls;
	uint32_t zone_acls_end;
	/* The resolver hook that NOTIFY messages go to, plus one; 0: none
	 * (NOTIFY gets NOTIMP). */
	uint32_t notify_hook;
	/* TSIG keys, in [tsig_keys, tsig_keys_end); 0 when none. */
	uint32_t tsig_key_count;
	uint32_t tsig_keys;
	uint32_t tsig_keys_end;
};

struct xd_zone_entry {
	uint32_t origin; /* offset of the lower-cased origin, wire form */
	uint8_t origin_len;
	uint8_t origin_labels;
	uint16_t flags; /* XD_ZONE_* */
	uint32_t apex; /* node offset */
	uint32_t soa; /* RRset used in negative answers: the SOA with
				 * TTL min(SOA TTL, MINIMUM) (RFC 2308 3);
				 * 0 for an expired zone */
	uint32_t acl; /* the zone's ACL; 0: none (every client may
				 * query, none may transfer).  The one field
				 * the answering core tests for a zone. */
	uint32_t dnssec; /* the zone's denial block; 0: unsigned */
};

enum {
	/* A secondary zone with no data to serve, not yet transferred or past
	 * its SOA expire: every query in it gets SERVFAIL.  Its apex is an
	 * empty node. */
	XD_ZONE_EXPIRED = 1 << 0,
};

/*
 * A signed zone's denial block: how its proofs of non-existence are found
 * (4-byte aligned).
 *   u8  kind        XD_DENIAL_NSEC or XD_DENIAL_NSEC3
 *   u8  hash        NSEC3: the hash algorithm (1, SHA-1); else 0
 *   u8  salt_len    NSEC3: the salt's length; else 0
 *   u8  reserved
 *   u16 iterations  NSEC3: extra hash iterations; else 0
 *   u16 reserved
 *   u32 count
 *   salt[salt_len], then zero bytes to a multiple of 4
 *   u32 nodes[count]  the nodes that own the zone's NSEC (NSEC3) RRsets,
 *                   in canonical order of their names (RFC 4034 6.1;
 *                   for NSEC3, the order of the hashes)
 */
enum {
	XD_DENIAL_NSEC = 1,
	XD_DENIAL_NSEC3 = 3,
};

#define XD_DENIAL_HEADER 12

static inline uint8_t xd_denial_kind(const uint8_t *d)
{
	return d[0];
}
static inline uint8_t xd_denial_hash(const uint8_t *d)
{
	return d[1];
}
static inline uint8_t xd_denial_salt_len(const uint8_t *d)
{
	return d[2];
}
static inline uint16_t xd_denial_iterations(const uint8_t *d)
{
	return xd_ld16(d + 4);
}
static inline uint32_t xd_denial_count(const uint8_t *d)
{
	return xd_ld32(d + 8);
}
static inline const uint8_t *xd_denial_salt(const uint8_t *d)
{
	return d + XD_DENIAL_HEADER;
}
static inline const uint8_t *xd_denial_nodes(const uint8_t *d)
{
	return d + XD_DENIAL_HEADER + ((d[2] + 3u) & ~3u);
}

#define XD_NODE_HEADER 10
#define XD_RRSET_HEADER 12
#define XD_TARGET_SIZE 8

enum {
	XD_NODE_APEX = 1 << 0,
	XD_NODE_CUT = 1 << 1, /* NS below the apex: a delegation */
	XD_NODE_DNAME = 1 << 2,
	XD_NODE_CNAME = 1 << 3,
	XD_NODE_OCCLUDED = 1 << 4, /* below a cut or a DNAME; link says which */
	XD_NODE_WILDCARD_CHILD = 1 << 5, /* link is the "*" child */
	/* Only an NSEC3 record (and its RRSIGs): its name is a hash, which
	 * lookups treat as absent (RFC 5155 7.2.8). */
	XD_NODE_NSEC3 = 1 << 6,
};

enum {
	XD_TARGET_GLUE_REQUIRED = 1 << 0, /* in-domain glue of a cut (RFC 9471) */
};

#define XD_ZONE_ACL_LIST_HEADER 6
#define XD_ZONE_ACL_PREFIX 20

#define XD_OVERRIDE_RULE_HEADER 4
#define XD_OVERRIDE_ENTRY_HEADER 10

/* A slot of the override hash: the hash's upper half beside the entry, so
 * that a probe reads an entry only when the hashes agree (a query for a
 * name with no rule costs one cache line per probe, not two). */
struct xd_override_slot {
	uint32_t tag; /* xd_override_hash(name) >> 32 */
	uint32_t entry; /* offset of the entry, 0: empty */
};

struct xd_image {
	uint8_t *base;
	size_t size;
	const struct xd_image_header *hdr;
	/* Whoever holds it: the engine while it is published, and each
	 * outgoing transfer that reads it after its reader left the epoch
	 * (xd_image_hold).  xd_image_free drops one. */
	_Atomic unsigned refs;
	/* What the publications before it changed, for IXFR out
	 * (journal.h); NULL: none.  Set before it is published. */
	struct xd_journal *journal;
};

/* One more holder of img, taken while img cannot be freed (inside the
 * epoch it was read in); let go of with xd_image_free. */
static inline void xd_image_hold(const struct xd_image *img)
{
	/* refs is the one field holders write: not the image's contents. */
	atomic_fetch_add_explicit(&((struct xd_image *)img)->refs, 1, memory_order_relaxed);
}

/* Node accessors: n points at a node inside the image. */
static inline uint32_t xd_node_link(const uint8_t *n)
{
	return xd_ld32(n);
}
static inline uint16_t xd_node_zone(const uint8_t *n)
{
	return xd_ld16(n + 4);
}
static inline uint8_t xd_node_flags(const uint8_t *n)
{
	return n[6];
}
static inline uint8_t xd_node_name_len(const uint8_t *n)
{
	return n[7];
}
static inline uint16_t xd_node_nrrsets(const uint8_t *n)
{
	return xd_ld16(n + 8);
}
static inline const uint8_t *xd_node_name(const uint8_t *n)
{
	return n + XD_NODE_HEADER;
}
static inline const uint8_t *xd_node_first_rrset(const uint8_t *n)
{
	return n + XD_NODE_HEADER + n[7];
}

static inline uint16_t xd_rrset_type(const uint8_t *r)
{
	return xd_ld16(r);
}
static inline uint16_t xd_rrset_count(const uint8_t *r)
{
	return xd_ld16(r + 2);
}
static inline uint16_t xd_rrset_wire_len(const uint8_t *r)
{
	return xd_ld16(r + 4);
}
static inline uint8_t xd_rrset_nreloc(const uint8_t *r)
{
	return r[6];
}
static inline uint8_t xd_rrset_ntargets(const uint8_t *r)
{
	return r[7];
}
static inline uint16_t xd_rrset_sig_off(const uint8_t *r)
{
	return xd_ld16(r + 8);
}
static inline uint16_t xd_rrset_sig_len(const uint8_t *r)
{
	return xd_ld16(r + 10);
}
static inline const uint8_t *xd_rrset_wire(const uint8_t *r)
{
	return r + XD_RRSET_HEADER;
}
static inline const uint8_t *xd_rrset_relocs(const uint8_t *r)
{
	return r + XD_RRSET_HEADER + xd_rrset_wire_len(r);
}
static inline const uint8_t *xd_rrset_targets(const uint8_t *r)
{
	return xd_rrset_relocs(r) + 2 * (size_t)xd_rrset_nreloc(r);
}
static inline size_t xd_rrset_size(const uint8_t *r)
{
	return XD_RRSET_HEADER + xd_rrset_wire_len(r) + 2 * (size_t)xd_rrset_nreloc(r) +
	       XD_TARGET_SIZE * (size_t)xd_rrset_ntargets(r);
}
static inline const uint8_t *xd_rrset_next(const uint8_t *r)
{
	return r + xd_rrset_size(r);
}

/* SERIAL of an SOA RRset's one record: its RDATA ends in SERIAL, REFRESH,
 * RETRY, EXPIRE and MINIMUM (RFC 1035 3.3.13); 0 for RDATA too short to
 * hold them (the image's checks make that impossible). */
static inline uint32_t xd_soa_rrset_serial(const uint8_t *soa)
{
	const uint8_t *wire = xd_rrset_wire(soa);
	size_t rdlen = xd_get16(wire + 10);

	return rdlen >= 20 ? xd_get32(wire + 12 + rdlen - 20) : 0;
}

/* Bytes of node n with its RRsets: the next node of its zone's run
 * follows (layout.c). */
static inline size_t xd_node_size(const uint8_t *n)
{
	const uint8_t *rs = xd_node_first_rrset(n);

	for (uint16_t i = 0; i < xd_node_nrrsets(n); i++)
		rs = xd_rrset_next(rs);
	return (size_t)(rs - n);
}

/* Override rules and entries: r points at a rule, e at an entry. */
static inline uint8_t xd_override_action(const uint8_t *r)
{
	return r[0];
}
static inline uint16_t xd_override_nrrsets(const uint8_t *r)
{
	return xd_ld16(r + 2);
}
/* RESOLVER rules: which resolver hook answers the names (0 for the rest). */
static inline uint8_t xd_override_hook(const uint8_t *r)
{
	return r[1];
}
static inline const uint8_t *xd_override_first_rrset(const uint8_t *r)
{
	return r + XD_OVERRIDE_RULE_HEADER;
}
static inline uint8_t xd_override_entry_name_len(const uint8_t *e)
{
	return e[0];
}
static inline uint8_t xd_override_entry_labels(const uint8_t *e)
{
	return e[1];
}
static inline uint32_t xd_override_entry_exact(const uint8_t *e)
{
	return xd_ld32(e + 2);
}
static inline uint32_t xd_override_entry_subtree(const uint8_t *e)
{
	return xd_ld32(e + 6);
}
static inline const uint8_t *xd_override_entry_name(const uint8_t *e)
{
	return e + XD_OVERRIDE_ENTRY_HEADER;
}

static inline uint64_t xd_override_hash(const uint8_t *name, size_t len)
{
	return xd_hash(name, len, 0x3c6ef372u);
}

/*
 * The override filter, asked before the hash: a blocked Bloom filter of one
 * byte per hash slot (16 bits a name), XD_OVERRIDE_FILTER_BITS bits per name
 * in one 64-byte block.  A query whose suffixes have no rule (nearly all)
 * then reads a block of a filter small enough to stay near the CPU (2 MiB
 * for a million names) instead of a slot of a hash of 16 MiB: measured,
 * the hash alone added up to 290 ns a query.  About 0.5% false positives.
 */
#define XD_OVERRIDE_FILTER_BLOCK 64
#define XD_OVERRIDE_FILTER_BITS 3

static inline size_t xd_override_filter_size(uint32_t hash_size)
{
	return hash_size > XD_OVERRIDE_FILTER_BLOCK ? hash_size : XD_OVERRIDE_FILTER_BLOCK;
}

/* Block from the hash's top bits (the table's index and tag use others),
 * bit positions inside it from the low 27. */
static inline size_t xd_override_filter_block(uint64_t h, size_t size)
{
	return ((h >> 40) & (size / XD_OVERRIDE_FILTER_BLOCK - 1)) * XD_OVERRIDE_FILTER_BLOCK;
}

static inline unsigned xd_override_filter_bit(uint64_t h, int i)
{
	return (h >> (9 * i)) & (8 * XD_OVERRIDE_FILTER_BLOCK - 1);
}

static inline bool xd_override_filter_has(const uint8_t *filter, size_t size, uint64_t h)
{
	const uint8_t *block = filter + xd_override_filter_block(h, size);

	for (int i = 0; i < XD_OVERRIDE_FILTER_BITS; i++) {
		unsigned bit = xd_override_filter_bit(h, i);

		if (!(block[bit / 8] & (1u << (bit % 8))))
			return false;
	}
	return true;
}

/* Where the checksum starts: the fields before it are checked one by one. */
#define XD_IMAGE_CHECKSUM_START (offsetof(struct xd_image_header, checksum) + sizeof(uint64_t))

static inline bool xd_image_has_origin_labels(const struct xd_image *img, int k)
{
	return k < XD_LABELS_MAX && (img->hdr->origin_labels[k / 64] >> (k % 64)) & 1;
}

/* Hash of a relative name inside a zone: what the name hash is keyed by. */
static inline uint64_t xd_node_hash(uint16_t zone, const uint8_t *rel, size_t len)
{
	return xd_hash(rel, len, 0x5bd1e995u + zone);
}

static inline uint64_t xd_zone_hash(const uint8_t *origin, size_t len)
{
	return xd_hash(origin, len, 0x2545f491u);
}

static inline const struct xd_zone_entry *xd_image_zone(const struct xd_image *img, uint32_t i)
{
	return (const struct xd_zone_entry *)(img->base + img->hdr->zone_table) + i;
}

/* Finds the node of relative name rel (lower-case) in zone; NULL if none. */
const uint8_t *xd_image_find(const struct xd_image *img, uint16_t zone, const uint8_t *rel,
			     size_t rel_len);
/* Finds the zone whose origin is exactly `name` (lower-case); -1 if none. */
int xd_image_find_zone(const struct xd_image *img, const uint8_t *name, size_t len);
/* Finds the RRset of `type` at node n; NULL if none. */
const uint8_t *xd_node_rrset(const uint8_t *n, uint16_t type);

/*
 * The override rule that holds `name` (lower-case wire, root included), or
 * NULL.  Call it only when hdr->override_count is not 0.  Precedence: the
 * exact rule of the name itself, else the subtree rule of the longest
 * suffix (the name included) that has one.
 */
const uint8_t *xd_image_override(const struct xd_image *img, const uint8_t *name, size_t len);

/* Whether list `list` (XD_ZONE_ACL_*) of zone z lets client in, with a
 * request signed with TSIG key `key` (its index + 1; 0: unsigned): the
 * longest prefix holding it decides, else the list's default; a client of
 * unknown family (only callers inside the process: every network path sets
 * it from the packet) is held by no prefix and gets the default. */
bool xd_zone_acl_allows(const struct xd_image *img, const struct xd_zone_entry *z, int list,
			const struct xd_client *client, unsigned key);

struct xd_tsig;
/* Reads the TSIG record at msg[start] (the message's last) into *t and
 * checks it against the image's key of its name and algorithm, at time
 * now: 0 when it verifies (*key: the key's index + 1), a TSIG error
 * (XD_TSIG_BADKEY, ...) for the response, -EINVAL for a malformed record
 * (FORMERR), -ENOMEM.  t keeps what signing the response needs. */
int xd_image_tsig_check(const struct xd_image *img, const uint8_t *msg, size_t len, size_t start,
			uint64_t now, struct xd_tsig *t, unsigned *key);

/* Whether list `list` of zone z lets every client in alike (no prefix,
 * default allow): what it answers does not depend on who asks. */
bool xd_zone_acl_open(const struct xd_image *img, const struct xd_zone_entry *z, int list);

/* Whether list `list` of zone z lets no client in at all: no prefix
 * allows and the default denies. */
bool xd_zone_acl_closed(const struct xd_image *img, const struct xd_zone_entry *z, int list);

/* Identity item `which` (XD_IDENTITY_*): its bytes and *len, or NULL when
 * it is hidden. */
const uint8_t *xd_image_identity(const struct xd_image *img, int which, size_t *len);

/* Wraps a block the builder made (trusted: no validation); takes ownership. */
int xd_image_adopt(uint8_t *base, size_t size, struct xd_image **out);

#endif
