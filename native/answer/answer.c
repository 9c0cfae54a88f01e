/*
 * answer.c - the answering core: one query in, one response out, from the
 * zone image.  RFC 1034 4.3.2 in NSD's shape: find the zone, find the
 * closest encloser once, decide the outcome (answer, CNAME, DNAME, referral,
 * wildcard, NXDOMAIN, NODATA) in small functions named for it, then add the
 * additional section and the OPT record.
 *
 * Every read of the query is bounds-checked.  Nothing here allocates or
 * touches globals, but for a signed request's HMAC (wire/tsig.c): it runs
 * in every worker at once.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "answer/answer.h"
#include "answer/cookie.h"
#include "image/image.h"
#include "wire/query.h"
#include "wire/tsig.h"
#include "answer/rcache.h"

/* RFC 1034 4.3.2 says chains must be followed; a bound keeps loops and
 * long chains from costing more than they are worth (Knot also stops). */
#define XD_CHAIN_MAX 8
#define XD_ADDITIONAL_MAX 8 /* RRsets whose targets add additional data */
#define XD_UDP_PAYLOAD_MAX 1232 /* DNS flag day 2020 */
#define XD_UDP_PAYLOAD_MIN 512 /* RFC 1035 4.2.1, RFC 6891 6.2.5 */
#define XD_EDE_LEN 6 /* option code, length, info code */

struct additional {
	const uint8_t *rrset;
	uint16_t pos; /* where the RRset starts in the response */
};

struct response {
	uint8_t *buf;
	size_t limit; /* message size we may use */
	size_t len;
	size_t reserve; /* kept free for the OPT record */
	size_t question_end;
	uint16_t count[3]; /* answer, authority, additional */
	uint16_t flags;
	uint16_t rcode; /* 12-bit, RFC 6891 6.1.3 */
	uint16_t ede; /* an EDE info code (RFC 8914); 0: none */
	const struct xd_client *client; /* who asked; NULL: unknown */
	unsigned tsig_key; /* the key the request was signed with, its
					 * index + 1; 0: unsigned */
	struct additional extra[XD_ADDITIONAL_MAX];
	int nextra;
	/* Names claimed by the resolver hook: */
	const struct xd_rcache *cache; /* its answers; NULL: none */
	const struct xd_resolver_given *given; /* the hook's answer; NULL:
						 * look in the cache */
	uint32_t now;
	bool dnssec; /* DO: RRSIGs and proofs (RFC 4035 3.1) */
	bool deferrable; /* XD_ANSWER_DEFER */
	bool deferred; /* the caller hands the query over */
	uint8_t hook; /* ... to this resolver hook */
	/* The first authority RR written here, for rate limiting's key: */
	uint16_t authority_owner; /* its owner's position; 0: none */
	uint16_t authority_type;
};

enum {
	AN,
	NS,
	AR
};

struct name;

struct ctx {
	const struct xd_image *img;
	const struct xd_query *q;
	struct response *r;
	uint16_t zone;
	const struct xd_zone_entry *z;
	uint16_t origin_pos; /* the zone's origin inside the qname */
	/* The step being answered, for proofs of non-existence: */
	const struct name *name; /* the name looked up */
	int ce_label; /* its closest encloser: from this label */
	const uint8_t *wildcard; /* the "*" node answering; NULL: none */
};

/* A name being resolved: the qname or a CNAME/DNAME target. */
struct name {
	uint8_t wire[XD_NAME_MAX]; /* lower case */
	uint8_t len;
	uint8_t labels;
	uint8_t label_off[XD_LABELS_MAX + 1]; /* [labels] is the root */
	uint16_t pos; /* where it is written in the response */
};

/* ---- writing the response -------------------------------------------------- */

/*
 * Position in the response of the suffix of the name at pos that remains
 * after `skip` labels, following compression pointers (bounded: the
 * response is ours, but the guard costs nothing).
 */
static int suffix_pos(const struct response *r, size_t pos, int skip)
{
	for (int guard = 0; guard < XD_NAME_MAX; guard++) {
		uint8_t l;

		if (pos >= r->len)
			return -1;
		l = r->buf[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= r->len)
				return -1;
			pos = (size_t)(l & 0x3f) << 8 | r->buf[pos + 1];
			continue;
		}
		if (skip == 0)
			return pos <= XD_PTR_MAX ? (int)pos : -1;
		if (l == 0)
			return -1;
		pos += 1 + l;
		skip--;
	}
	return -1;
}

static bool fits(const struct response *r, size_t more)
{
	return r->len + more + r->reserve <= r->limit;
}

/* Copies a pre-rendered RRset, patching owner and origin pointers.  Returns
 * where it starts, or -ENOSPC. */
static int put_rrset(struct response *r, int section, const uint8_t *rs, uint16_t owner_pos,
		     uint16_t origin_pos)
{
	size_t wl = xd_rrset_wire_len(rs);
	const uint8_t *relocs = xd_rrset_relocs(rs);
	uint8_t *p = r->buf + r->len;
	size_t start = r->len;

	if (!fits(r, wl) || owner_pos > XD_PTR_MAX)
		return -ENOSPC;
	memcpy(p, xd_rrset_wire(rs), wl);
	for (size_t off = 0; off < wl; off += 12 + xd_get16(p + off + 10))
		xd_put16(p + off, 0xc000 | owner_pos);
	for (int i = 0; i < xd_rrset_nreloc(rs); i++)
		xd_put16(p + xd_ld16(relocs + 2 * i), 0xc000 | origin_pos);
	if (section == NS && !r->count[NS]) {
		r->authority_owner = owner_pos;
		r->authority_type = xd_rrset_type(rs);
	}
	r->len += wl;
	r->count[section] += xd_rrset_count(rs);
	return (int)start;
}

/*
 * The RRSIGs of node that cover its RRset rs, owned by owner_pos, after
 * it, when the query set DO (RFC 4035 3.1.1); with ttl (4 bytes, network
 * order) they take that TTL, as the negative SOA's do.  0 or -ENOSPC.
 */
static int put_sigs(struct response *r, int section, const uint8_t *node, const uint8_t *rs,
		    uint16_t owner_pos, const uint8_t *ttl)
{
	size_t len = xd_rrset_sig_len(rs);
	const uint8_t *rrsig;
	uint8_t *p;

	if (!r->dnssec || !len)
		return 0;
	rrsig = xd_node_rrset(node, XD_TYPE_RRSIG);
	if (!rrsig)
		return 0; /* unreachable: the image was checked */
	if (!fits(r, len))
		return -ENOSPC;
	p = r->buf + r->len;
	memcpy(p, xd_rrset_wire(rrsig) + xd_rrset_sig_off(rs), len);
	for (size_t off = 0; off < len; off += 12 + xd_get16(p + off + 10)) {
		xd_put16(p + off, 0xc000 | owner_pos);
		if (ttl)
			memcpy(p + off + 6, ttl, 4);
		r->count[section]++;
	}
	r->len += len;
	return 0;
}

/* An RRset of node with its RRSIGs (when DO asks for them): where the
 * RRset starts, or -ENOSPC. */
static int put_signed(struct response *r, int section, const uint8_t *node, const uint8_t *rs,
		      uint16_t owner_pos, uint16_t origin_pos)
{
	int pos = put_rrset(r, section, rs, owner_pos, origin_pos);

	if (pos < 0)
		return pos;
	return put_sigs(r, section, node, rs, owner_pos, NULL) < 0 ? -ENOSPC : pos;
}

static void note_additional(struct response *r, const uint8_t *rs, int pos)
{
	if (r->nextra < XD_ADDITIONAL_MAX && xd_rrset_ntargets(rs) > 0) {
		r->extra[r->nextra].rrset = rs;
		r->extra[r->nextra].pos = pos;
		r->nextra++;
	}
}

/* RFC 2181 9: when required data does not fit, say so with TC and send only
 * the question, so that the client retries over TCP. */
static void truncate_response(struct response *r)
{
	r->len = r->question_end;
	r->count[AN] = r->count[NS] = r->count[AR] = 0;
	r->nextra = 0;
	r->flags |= XD_FLAG_TC;
}

/* ---- proofs of non-existence (RFC 4035 3.1.3) ---------------------------- */

/* The zone's denial block when the query asked for DNSSEC; NULL: none. */
static const uint8_t *denial(const struct ctx *c)
{
	return c->r->dnssec && c->z->dnssec ? c->img->base + c->z->dnssec : NULL;
}

/* The RRs of wire (wl bytes), each owned by node's name spelled out (its
 * labels, then a pointer to the origin) in place of its 2-byte owner. */
static int put_spelled(struct ctx *c, const uint8_t *node, const uint8_t *wire, size_t wl)
{
	struct response *r = c->r;
	size_t len = xd_node_name_len(node);

	for (size_t off = 0; off < wl;) {
		size_t rr = 12 + xd_get16(wire + off + 10);
		uint8_t *p = r->buf + r->len;

		if (!fits(r, len + rr))
			return -ENOSPC;
		memcpy(p, xd_node_name(node), len);
		xd_put16(p + len, 0xc000 | c->origin_pos);
		memcpy(p + len + 2, wire + off + 2, rr - 2);
		r->len += len + rr;
		r->count[NS]++;
		off += rr;
	}
	return 0;
}

/* put_named where the name would lie beyond what a compression pointer
 * reaches (16 KiB into a long TCP answer): every RR, RRSIGs included,
 * spells the owner out. */
static int put_named_far(struct ctx *c, const uint8_t *node, const uint8_t *rs)
{
	struct response *r = c->r;
	const uint8_t *rrsig = xd_node_rrset(node, XD_TYPE_RRSIG);
	size_t len = r->len;
	uint16_t count = r->count[NS];
	int rc = put_spelled(c, node, xd_rrset_wire(rs), xd_rrset_wire_len(rs));

	if (rc == 0 && rrsig && xd_rrset_sig_len(rs))
		rc = put_spelled(c, node, xd_rrset_wire(rrsig) + xd_rrset_sig_off(rs),
				 xd_rrset_sig_len(rs));
	if (rc) {
		r->len = len;
		r->count[NS] = count;
	}
	return rc;
}

/* An RRset of node owned by node's own name, which the first RR spells
 * out (its labels, then a pointer to the origin) and the others point
 * at, with its RRSIGs.  0 or -ENOSPC. */
static int put_named(struct ctx *c, const uint8_t *node, const uint8_t *rs)
{
	struct response *r = c->r;
	size_t len = xd_node_name_len(node), start = r->len;
	uint8_t *p;
	int pos;

	if (len == 0)
		return put_signed(r, NS, node, rs, c->origin_pos, c->origin_pos) < 0 ? -ENOSPC : 0;
	if (start + len > XD_PTR_MAX)
		return put_named_far(c, node, rs);
	if (!fits(r, len))
		return -ENOSPC;
	memcpy(r->buf + start, xd_node_name(node), len);
	r->len += len;
	pos = put_rrset(r, NS, rs, c->origin_pos, c->origin_pos);
	if (pos < 0) {
		r->len = start;
		return -ENOSPC;
	}
	p = r->buf + pos;
	for (size_t off = 12 + xd_get16(p + 10); off < xd_rrset_wire_len(rs);
	     off += 12 + xd_get16(p + off + 10))
		xd_put16(p + off, 0xc000 | start);
	return put_sigs(r, NS, node, rs, (uint16_t)start, NULL);
}

/* The proofs a response carries, each once: an NXDOMAIN's two NSECs are
 * often the same. */
struct proofs {
	const uint8_t *done[4];
	int n;
};

/* node's NSEC or NSEC3 (a node of the denial block, so it has one) into
 * the authority section, unless it is there already. */
static int put_nsec(struct ctx *c, struct proofs *p, const uint8_t *node)
{
	const uint8_t *nsec = xd_node_rrset(
		node, xd_denial_kind(denial(c)) == XD_DENIAL_NSEC3 ? XD_TYPE_NSEC3 : XD_TYPE_NSEC);

	for (int i = 0; i < p->n; i++)
		if (p->done[i] == node)
			return 0;
	if (!nsec)
		return 0; /* unreachable: the image was checked */
	if (p->n < (int)(sizeof(p->done) / sizeof(p->done[0])))
		p->done[p->n++] = node;
	return put_named(c, node, nsec);
}

/* The node whose NSEC matches or covers the relative name rel: the last
 * one in canonical order at or before it; before the first, the last one,
 * whose NSEC wraps round to the apex. */
static const uint8_t *nsec_for(const struct ctx *c, const uint8_t *d, const uint8_t *rel,
			       size_t len)
{
	const uint8_t *nodes = xd_denial_nodes(d);
	uint32_t lo = 0, hi = xd_denial_count(d);

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const uint8_t *n = c->img->base + xd_ld32(nodes + 4 * mid);
		/* One label each, of one length (NSEC3 hashes): byte order is
		 * the canonical order, without walking labels. */
		int cmp = xd_node_name_len(n) == len && len == XD_NSEC3_LABEL_LEN ?
				  memcmp(xd_node_name(n), rel, len) :
				  xd_name_canonical_cmp(xd_node_name(n), xd_node_name_len(n), rel,
							len);

		if (cmp <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return c->img->base + xd_ld32(nodes + 4 * (lo ? lo - 1 : xd_denial_count(d) - 1));
}

/* The name being answered relative to the zone, from label `from`. */
static const uint8_t *relative(const struct ctx *c, int from, size_t *len);

/* The NSEC that covers the name looked up (RFC 4035 3.1.3.2). */
static int cover_name(struct ctx *c, struct proofs *p, const uint8_t *d)
{
	size_t len;
	const uint8_t *rel = relative(c, 0, &len);

	return put_nsec(c, p, nsec_for(c, d, rel, len));
}

/* ---- NSEC3 (RFC 5155 7.2) ---- */

/* The NSEC3 node that matches (*match) or covers the name rel (relative
 * to the zone, len bytes); NULL when the zone's hash is not one we know. */
static const uint8_t *nsec3_for(const struct ctx *c, const uint8_t *d, const uint8_t *rel,
				size_t len, bool *match)
{
	uint8_t full[XD_NAME_MAX], label[XD_NSEC3_LABEL_LEN];
	const uint8_t *node;

	*match = false;
	if (len + c->z->origin_len > XD_NAME_MAX)
		return NULL;
	memcpy(full, rel, len);
	memcpy(full + len, c->img->base + c->z->origin, c->z->origin_len);
	if (xd_nsec3_label(full, len + c->z->origin_len, xd_denial_hash(d), xd_denial_salt(d),
			   xd_denial_salt_len(d), xd_denial_iterations(d), label) < 0)
		return NULL;
	node = nsec_for(c, d, label, sizeof(label));
	*match = xd_node_name_len(node) == sizeof(label) &&
		 memcmp(xd_node_name(node), label, sizeof(label)) == 0;
	return node;
}

/* The NSEC3 that covers rel; -ENOSPC, or 0 (also when the hash is not
 * one we know, or the chain has the name itself). */
static int nsec3_cover(struct ctx *c, struct proofs *p, const uint8_t *d, const uint8_t *rel,
		       size_t len)
{
	bool match;
	const uint8_t *node = nsec3_for(c, d, rel, len, &match);

	return node && !match ? put_nsec(c, p, node) : 0;
}

/* The NSEC3 that matches rel, when there is one (*found). */
static int nsec3_match(struct ctx *c, struct proofs *p, const uint8_t *d, const uint8_t *rel,
		       size_t len, bool *found)
{
	const uint8_t *node = nsec3_for(c, d, rel, len, found);

	return node && *found ? put_nsec(c, p, node) : 0;
}

/*
 * RFC 5155 7.2.1: the closest provable encloser proof of the name being
 * answered: the NSEC3 that matches its first ancestor from label `from` up
 * that has one, and the NSEC3 that covers the next closer name below it.
 * *ce gets that ancestor's label (-1: none, a broken chain).
 */
static int nsec3_closest_encloser(struct ctx *c, struct proofs *p, const uint8_t *d, int from,
				  int *ce)
{
	int top = c->name->labels - c->z->origin_labels;

	*ce = -1;
	for (int j = from < 1 ? 1 : from; j <= top; j++) {
		size_t len, next_len;
		const uint8_t *rel = relative(c, j, &len);
		const uint8_t *next = relative(c, j - 1, &next_len);
		bool found;
		int rc = nsec3_match(c, p, d, rel, len, &found);

		if (rc)
			return rc;
		if (found) {
			*ce = j;
			return nsec3_cover(c, p, d, next, next_len);
		}
	}
	return 0;
}

/* "*." in front of the name from label j: the wildcard at it. */
static size_t wildcard_at(const struct ctx *c, int j, uint8_t *out)
{
	size_t len;
	const uint8_t *rel = relative(c, j, &len);

	out[0] = 1;
	out[1] = '*';
	memcpy(out + 2, rel, len);
	return len + 2;
}

/* RFC 5155 7.2.2: NXDOMAIN. */
static int nsec3_deny_name(struct ctx *c, const uint8_t *d)
{
	struct proofs p = { .n = 0 };
	uint8_t star[XD_NAME_MAX];
	int ce, rc = nsec3_closest_encloser(c, &p, d, c->ce_label, &ce);

	if (rc || ce < 0)
		return rc;
	return nsec3_cover(c, &p, d, star, wildcard_at(c, ce, star));
}

/* RFC 5155 7.2.3 to 7.2.5: NODATA at node: the NSEC3 that matches the
 * name; without one (an opt-out span), the closest provable encloser
 * proof; at a wildcard, the closest encloser proof and the wildcard's
 * NSEC3. */
static int nsec3_deny_nodata(struct ctx *c, const uint8_t *d, const uint8_t *node)
{
	struct proofs p = { .n = 0 };
	const uint8_t *rel;
	bool found;
	size_t len;
	int ce, rc;

	if (c->wildcard) {
		rc = nsec3_closest_encloser(c, &p, d, c->ce_label, &ce);
		if (rc == 0)
			rc = nsec3_match(c, &p, d, xd_node_name(node), xd_node_name_len(node),
					 &found);
		return rc;
	}
	rel = relative(c, c->ce_label, &len);
	rc = nsec3_match(c, &p, d, rel, len, &found);
	if (rc || found)
		return rc;
	return nsec3_closest_encloser(c, &p, d, c->ce_label + 1, &ce);
}

/* RFC 5155 7.2.6: a wildcard's answer: the next closer name is covered. */
static int nsec3_deny_expansion(struct ctx *c, const uint8_t *d)
{
	struct proofs p = { .n = 0 };
	size_t len;
	const uint8_t *next = relative(c, c->ce_label - 1, &len);

	return nsec3_cover(c, &p, d, next, len);
}

/* RFC 5155 7.2.7: a referral to an unsigned child: the cut's NSEC3, or
 * in an opt-out span the closest provable encloser proof. */
static int nsec3_deny_ds(struct ctx *c, const uint8_t *d)
{
	struct proofs p = { .n = 0 };
	bool found;
	size_t len;
	const uint8_t *rel = relative(c, c->ce_label, &len);
	int ce, rc = nsec3_match(c, &p, d, rel, len, &found);

	if (rc || found)
		return rc;
	return nsec3_closest_encloser(c, &p, d, c->ce_label + 1, &ce);
}

/* ---- the proofs each outcome needs ---- */

/* NXDOMAIN: no such name, and no wildcard at its closest encloser that
 * could have made one (RFC 4035 3.1.3.2). */
static int deny_name(struct ctx *c)
{
	const uint8_t *d = denial(c);
	struct proofs p = { .n = 0 };
	uint8_t star[XD_NAME_MAX];
	int rc;

	if (d && xd_denial_kind(d) == XD_DENIAL_NSEC3)
		return nsec3_deny_name(c, d);
	if (!d)
		return 0;
	rc = cover_name(c, &p, d);
	if (rc)
		return rc;
	return put_nsec(c, &p, nsec_for(c, d, star, wildcard_at(c, c->ce_label, star)));
}

/* NODATA at node: its NSEC shows the type absent; an empty non-terminal
 * has none, and the NSEC that covers its name shows it empty; at a
 * wildcard, also the NSEC that shows no closer match (RFC 4035 3.1.3.1,
 * 3.1.3.4). */
static int deny_nodata(struct ctx *c, const uint8_t *node)
{
	const uint8_t *d = denial(c);
	struct proofs p = { .n = 0 };
	int rc = 0;

	if (d && xd_denial_kind(d) == XD_DENIAL_NSEC3)
		return nsec3_deny_nodata(c, d, node);
	if (!d)
		return 0;
	if (c->wildcard)
		rc = cover_name(c, &p, d);
	if (rc == 0 && xd_node_rrset(node, XD_TYPE_NSEC))
		rc = put_nsec(c, &p, node);
	else if (rc == 0 && !c->wildcard)
		rc = cover_name(c, &p, d);
	return rc;
}

/* A wildcard's answer: the NSEC that shows no closer match (RFC 4035
 * 3.1.3.3). */
static int deny_expansion(struct ctx *c)
{
	const uint8_t *d = c->wildcard ? denial(c) : NULL;
	struct proofs p = { .n = 0 };

	if (d && xd_denial_kind(d) == XD_DENIAL_NSEC3)
		return nsec3_deny_expansion(c, d);
	return d ? cover_name(c, &p, d) : 0;
}

/* A referral to an unsigned child: the cut's NSEC, which shows NS and no
 * DS (RFC 4035 3.1.4). */
static int deny_ds(struct ctx *c, const uint8_t *cut)
{
	const uint8_t *d = denial(c);
	struct proofs p = { .n = 0 };

	if (d && xd_denial_kind(d) == XD_DENIAL_NSEC3)
		return nsec3_deny_ds(c, d);
	if (!d || !xd_node_rrset(cut, XD_TYPE_NSEC))
		return 0;
	return put_nsec(c, &p, cut);
}

/* ---- outcomes ------------------------------------------------------------- */

/* The zone's SOA with the negative TTL (RFC 2308 3), and its RRSIGs at
 * that TTL too. */
static int put_negative_soa(struct ctx *c)
{
	const uint8_t *soa = c->img->base + c->z->soa;
	const uint8_t *apex = c->img->base + c->z->apex;
	const uint8_t *signed_soa = xd_node_rrset(apex, XD_TYPE_SOA);

	if (put_rrset(c->r, NS, soa, c->origin_pos, c->origin_pos) < 0)
		return -ENOSPC;
	if (!signed_soa)
		return 0; /* unreachable: the apex has its SOA */
	return put_sigs(c->r, NS, apex, signed_soa, c->origin_pos, xd_rrset_wire(soa) + 6);
}

/* NODATA at node (the wildcard's when one answers), with its proof when
 * the query asked for DNSSEC. */
static int answer_nodata(struct ctx *c, const uint8_t *node)
{
	int rc = put_negative_soa(c);

	return rc ? rc : deny_nodata(c, node);
}

static int answer_nxdomain(struct ctx *c)
{
	int rc;

	c->r->rcode = XD_RCODE_NXDOMAIN;
	rc = put_negative_soa(c);
	return rc ? rc : deny_name(c);
}

/* RFC 4035 3.1.4: a referral asked with DO carries the child's DS and its
 * RRSIGs (the parent signs them), when the zone is signed: an unsigned
 * zone's DS would prove nothing (Knot and NSD leave it out too). */
static int answer_ds(struct ctx *c, const uint8_t *cut, uint16_t cut_pos)
{
	const uint8_t *ds = denial(c) ? xd_node_rrset(cut, XD_TYPE_DS) : NULL;

	if (!ds)
		return deny_ds(c, cut); /* an unsigned child: the proof */
	return put_signed(c->r, NS, cut, ds, cut_pos, c->origin_pos) < 0 ? -ENOSPC : 0;
}

/* RFC 1034 4.3.2 step 3b: a referral, AA clear, glue in additional. */
static int answer_delegation(struct ctx *c, const uint8_t *cut, uint16_t cut_pos, bool first)
{
	const uint8_t *ns = xd_node_rrset(cut, XD_TYPE_NS);
	int pos;

	if (!ns)
		return -EBADMSG; /* unreachable: the image was checked */
	if (first)
		c->r->flags &= ~XD_FLAG_AA;
	pos = put_rrset(c->r, NS, ns, cut_pos, c->origin_pos);
	if (pos < 0)
		return pos;
	note_additional(c->r, ns, pos);
	return answer_ds(c, cut, cut_pos);
}

static bool wants_additional(uint16_t type)
{
	return type == XD_TYPE_NS || type == XD_TYPE_MX || type == XD_TYPE_SRV;
}

/* RFC 8482 4.1: answer ANY with one RRset rather than all of them. */
static const uint8_t *rrset_for_any(const uint8_t *node)
{
	return xd_node_nrrsets(node) ? xd_node_first_rrset(node) : NULL;
}

/* The RRsets of node n for the query type, or -EAGAIN with *cname set when
 * the node is a CNAME to follow. */
static int answer_node(struct ctx *c, const uint8_t *n, uint16_t owner_pos, const uint8_t **cname,
		       int *cname_pos)
{
	uint16_t qtype = c->q->qtype;
	const uint8_t *rs = qtype == XD_TYPE_ANY ? rrset_for_any(n) : xd_node_rrset(n, qtype);
	int pos;

	if (!rs && (xd_node_flags(n) & XD_NODE_CNAME)) {
		rs = xd_node_rrset(n, XD_TYPE_CNAME);
		pos = put_signed(c->r, AN, n, rs, owner_pos, c->origin_pos);
		if (pos < 0 || deny_expansion(c) < 0)
			return -ENOSPC;
		*cname = rs;
		*cname_pos = pos;
		return -EAGAIN;
	}
	if (!rs)
		return answer_nodata(c, n);
	pos = put_signed(c->r, AN, n, rs, owner_pos, c->origin_pos);
	if (pos < 0 || deny_expansion(c) < 0)
		return -ENOSPC;
	if (wants_additional(xd_rrset_type(rs)))
		note_additional(c->r, rs, pos);
	return 0;
}

/* ---- names ----------------------------------------------------------------- */

static void name_index(struct name *n)
{
	uint8_t off = 0;

	n->labels = 0;
	while (n->wire[off]) {
		n->label_off[n->labels++] = off;
		off += 1 + n->wire[off];
	}
	n->label_off[n->labels] = off;
}

static const uint8_t *relative(const struct ctx *c, int from, size_t *len)
{
	const struct name *n = c->name;
	size_t origin_off = n->label_off[n->labels - c->z->origin_labels];

	*len = origin_off - n->label_off[from];
	return n->wire + n->label_off[from];
}

/* Reads the name written at pos in the response (a CNAME target). */
static int name_from_response(const struct response *r, size_t pos, struct name *n)
{
	int len = xd_name_read(r->buf, r->len, pos, n->wire, true, NULL);

	if (len < 0 || pos > XD_PTR_MAX)
		return -EBADMSG;
	n->len = len;
	n->pos = pos;
	name_index(n);
	return 0;
}

/* Position in the response of the target name of an RRset's first RR. */
static int target_pos(const uint8_t *rs, int rrset_pos)
{
	if (xd_rrset_ntargets(rs) == 0)
		return -1;
	return rrset_pos + xd_ld16(xd_rrset_targets(rs));
}

static bool in_zone(const struct ctx *c, const struct name *n)
{
	return xd_name_is_below(n->wire, n->len, c->img->base + c->z->origin, c->z->origin_len);
}

/* RFC 6672 2.2: the CNAME a DNAME implies, written after the DNAME: owner
 * the current name, target its labels below the DNAME owner (in the query's
 * case) followed by a pointer to the DNAME's target. */
static int synthesize_cname(struct ctx *c, struct name *n, int labels, const uint8_t *dname,
			    int dname_pos)
{
	struct response *r = c->r;
	int tpos = target_pos(dname, dname_pos);
	uint8_t target[XD_NAME_MAX], current[XD_NAME_MAX];
	size_t prefix = n->label_off[labels];
	uint8_t *p;

	if (tpos < 0 || xd_name_read(r->buf, r->len, tpos, target, false, NULL) < 0 ||
	    xd_name_read(r->buf, r->len, n->pos, current, false, NULL) < 0)
		return -EBADMSG;
	if (prefix + xd_name_length(target) > XD_NAME_MAX) {
		r->rcode = XD_RCODE_YXDOMAIN;
		return 0;
	}
	if (!fits(r, 12 + prefix + 2))
		return -ENOSPC;
	p = r->buf + r->len;
	xd_put16(p, 0xc000 | n->pos);
	xd_put16(p + 2, XD_TYPE_CNAME);
	xd_put16(p + 4, XD_CLASS_IN);
	memcpy(p + 6, xd_rrset_wire(dname) + 6, 4); /* the DNAME's TTL */
	xd_put16(p + 10, prefix + 2);
	memcpy(p + 12, current, prefix);
	xd_put16(p + 12 + prefix, 0xc000 | tpos);
	r->len += 12 + prefix + 2;
	r->count[AN]++;
	return name_from_response(r, r->len - prefix - 2, n) == 0 ? -EAGAIN : -EBADMSG;
}

static int answer_dname(struct ctx *c, struct name *n, const uint8_t *node, int labels)
{
	const uint8_t *dname = xd_node_rrset(node, XD_TYPE_DNAME);
	int owner = suffix_pos(c->r, n->pos, labels);
	int pos;

	if (!dname || owner < 0)
		return -EBADMSG;
	/* The CNAME synthesized after it is not signed (RFC 6672 5.3.1). */
	pos = put_signed(c->r, AN, node, dname, owner, c->origin_pos);
	if (pos < 0)
		return pos;
	return synthesize_cname(c, n, labels, dname, pos);
}

/* Label index (in n) at which the node's name starts. */
static int node_label(const struct ctx *c, const struct name *n, const uint8_t *node)
{
	int zone_label = n->labels - c->z->origin_labels;
	size_t origin_off = n->label_off[zone_label];

	for (int j = zone_label; j >= 0; j--)
		if (origin_off - n->label_off[j] == xd_node_name_len(node))
			return j;
	return -1;
}

/* Closest encloser of n in the zone: the longest existing suffix. */
static const uint8_t *closest_encloser(const struct ctx *c, const struct name *n, int *label)
{
	int zone_label = n->labels - c->z->origin_labels;
	size_t origin_off = n->label_off[zone_label];

	for (int j = 0; j <= zone_label; j++) {
		const uint8_t *node = xd_image_find(c->img, c->zone, n->wire + n->label_off[j],
						    origin_off - n->label_off[j]);
		if (node && !(xd_node_flags(node) & XD_NODE_NSEC3)) {
			*label = j;
			return node;
		}
	}
	return NULL; /* unreachable: the apex exists */
}

/*
 * One step of resolution for name n: answers, or returns -EAGAIN with n
 * replaced by the next name of a CNAME/DNAME chain.
 */
static int resolve_step(struct ctx *c, struct name *n, bool first)
{
	const uint8_t *cname = NULL;
	int cname_pos = 0, label;
	const uint8_t *node = closest_encloser(c, n, &label);
	uint8_t flags;
	int rc;

	if (!node)
		return -EBADMSG;
	flags = xd_node_flags(node);
	if (flags & XD_NODE_OCCLUDED) {
		node = c->img->base + xd_node_link(node);
		label = node_label(c, n, node);
		if (label < 0)
			return -EBADMSG;
		flags = xd_node_flags(node);
	}
	c->name = n;
	c->ce_label = label;
	c->wildcard = NULL;
	if ((flags & XD_NODE_CUT) && (label > 0 || c->q->qtype != XD_TYPE_DS)) {
		int pos = suffix_pos(c->r, n->pos, label);

		return pos < 0 ? -EBADMSG : answer_delegation(c, node, pos, first);
	}
	if ((flags & XD_NODE_DNAME) && label > 0) {
		rc = answer_dname(c, n, node, label);
		/* A CNAME query is answered by the CNAME the DNAME implies,
		 * as by a CNAME in the zone: nothing to chase, no SOA (RFC
		 * 6672 3.2; Knot and NSD). */
		return rc == -EAGAIN && c->q->qtype == XD_TYPE_CNAME ? 0 : rc;
	}
	if (label > 0) {
		if (!(flags & XD_NODE_WILDCARD_CHILD))
			return answer_nxdomain(c);
		node = c->img->base + xd_node_link(node); /* RFC 4592 3.3.3 */
		c->wildcard = node;
	}
	rc = answer_node(c, node, n->pos, &cname, &cname_pos);
	if (rc != -EAGAIN)
		return rc;
	rc = name_from_response(c->r, target_pos(cname, cname_pos), n);
	return rc ? rc : -EAGAIN;
}

/* Follows CNAME and DNAME chains inside the zone (RFC 1034 4.3.2 3a),
 * stopping where a name repeats, as Knot does. */
static int answer_zone(struct ctx *c, struct name *n)
{
	struct {
		uint8_t len;
		uint8_t wire[XD_NAME_MAX];
	} seen[XD_CHAIN_MAX + 1];

	seen[0].len = n->len;
	memcpy(seen[0].wire, n->wire, n->len);
	for (int step = 0; step < XD_CHAIN_MAX; step++) {
		int rc = resolve_step(c, n, step == 0);

		if (rc != -EAGAIN)
			return rc;
		if (!in_zone(c, n))
			return 0; /* out of zone: the client follows */
		for (int i = 0; i <= step; i++)
			if (seen[i].len == n->len && memcmp(seen[i].wire, n->wire, n->len) == 0)
				return 0; /* a loop: stop where it closes */
		seen[step + 1].len = n->len;
		memcpy(seen[step + 1].wire, n->wire, n->len);
	}
	return 0;
}

/* ---- the query ---------------------------------------------------------------- */

/* Most specific zone for the qname (a DS query at a zone apex belongs to
 * the parent zone, RFC 4035 3.1.4.1). */
static int find_zone(const struct xd_image *img, const struct name *n, uint16_t qtype)
{
	int first = 0;

	if (qtype == XD_TYPE_DS && n->labels > 0)
		first = 1;
	for (int pass = 0; pass < 2; pass++) {
		for (int j = first; j <= n->labels; j++) {
			if (!xd_image_has_origin_labels(img, n->labels - j))
				continue;
			const uint8_t *suffix = n->wire + n->label_off[j];
			int z = xd_image_find_zone(img, suffix, n->len - n->label_off[j]);

			if (z >= 0)
				return z;
		}
		if (first == 0)
			break;
		first = 0; /* no parent zone here: the child answers */
	}
	return -1;
}

int xd_answer_zone(const struct xd_image *img, const uint8_t *name, size_t len, uint16_t qtype)
{
	struct name n;

	if (len > XD_NAME_MAX)
		return -1;
	memcpy(n.wire, name, len);
	n.len = len;
	name_index(&n);
	return find_zone(img, &n, qtype);
}

/* An additional RRset with its RRSIGs, or neither (RFC 4035 3.1.1 makes
 * the signatures of additional data optional; unsigned data from a signed
 * zone would only mislead a validator). */
static int put_additional(struct response *r, const uint8_t *node, const uint8_t *rs,
			  uint16_t owner_pos, uint16_t origin_pos)
{
	size_t len = r->len;
	uint16_t count = r->count[AR];
	int pos = put_signed(r, AR, node, rs, owner_pos, origin_pos);

	if (pos < 0) {
		r->len = len;
		r->count[AR] = count;
	}
	return pos;
}

static void answer_additional(struct ctx *c)
{
	struct response *r = c->r;
	const uint8_t *done[XD_ADDITIONAL_MAX * 4];
	int ndone = 0;

	for (int i = 0; i < r->nextra; i++) {
		const uint8_t *rs = r->extra[i].rrset;
		const uint8_t *t = xd_rrset_targets(rs);
		bool glue = xd_rrset_type(rs) == XD_TYPE_NS;

		for (int k = 0; k < xd_rrset_ntargets(rs); k++, t += XD_TARGET_SIZE) {
			uint32_t off = xd_ld32(t + 4);
			const uint8_t *node = c->img->base + off;
			int pos = r->extra[i].pos + xd_ld16(t);
			bool required = xd_ld16(t + 2) & XD_TARGET_GLUE_REQUIRED;
			bool dup = false;

			if (!off || (!glue && (xd_node_flags(node) & XD_NODE_OCCLUDED)))
				continue;
			for (int d = 0; d < ndone; d++)
				dup |= done[d] == node;
			if (dup)
				continue;
			if (ndone < (int)(sizeof(done) / sizeof(done[0])))
				done[ndone++] = node;
			for (int a = 0; a < 2; a++) {
				const uint8_t *addr =
					xd_node_rrset(node, a ? XD_TYPE_AAAA : XD_TYPE_A);

				if (!addr)
					continue;
				if (put_additional(r, node, addr, pos, c->origin_pos) < 0) {
					/* RFC 9471: in-domain glue must fit. */
					if (required)
						truncate_response(r);
					return;
				}
			}
		}
	}
}

/* ---- overrides: per-name rules before any zone data ----------------------- */

/* An override's negative answer carries the SOA of the zone that holds the
 * qname when we serve one, so that caches keep it for that zone's negative
 * TTL (RFC 2308 5); outside our zones there is no SOA to give. */
static int override_negative(const struct xd_image *img, const struct xd_query *q,
			     const struct name *n, struct response *r)
{
	int zone = find_zone(img, n, q->qtype);
	const struct xd_zone_entry *z;
	uint16_t origin_pos;

	if (zone < 0)
		return 0;
	z = xd_image_zone(img, zone);
	if (z->flags & XD_ZONE_EXPIRED)
		return 0; /* no SOA to give */
	origin_pos = XD_DNS_HEADER_LEN + n->len - z->origin_len;
	return put_rrset(r, NS, img->base + z->soa, origin_pos, origin_pos) < 0 ? -ENOSPC : 0;
}

/* The RRset of a fixed answer for qtype: RFC 8482 4.1's one RRset for ANY,
 * else the type asked for, else a CNAME (the client follows it). */
static const uint8_t *override_rrset(const uint8_t *rule, uint16_t qtype)
{
	const uint8_t *rs = xd_override_first_rrset(rule);
	const uint8_t *cname = NULL;

	for (uint16_t i = xd_override_nrrsets(rule); i > 0; i--, rs = xd_rrset_next(rs)) {
		if (qtype == XD_TYPE_ANY || xd_rrset_type(rs) == qtype)
			return rs;
		if (xd_rrset_type(rs) == XD_TYPE_CNAME)
			cname = rs;
	}
	return cname;
}

/* A name the resolver hook claims: the hook's own answer when the
 * resolver thread hands one in (xd_engine_resolver_build), else its cached
 * answer, patched to this query by keeping our header and question (the
 * client's ID and case; the cached sections' pointers into the qname stay
 * valid, the name being as long).  Without one, the caller defers the
 * query when it can; else SERVFAIL, as a server says when it cannot answer
 * now (RFC 2308 7.1). */
static void answer_resolver(const struct xd_query *q, const uint8_t *rule, struct response *r)
{
	struct xd_rcache_hit hit;
	size_t room = r->limit - r->len - r->reserve;
	int rc = 0;

	if (r->given)
		rc = xd_resolver_given_get(r->given, r->buf + r->len, room, &hit);
	else if (r->cache)
		rc = xd_rcache_get(r->cache, q->qname, q->qname_len, q->qtype, q->qclass, r->now,
				   r->buf + r->len, room, &hit);
	if (rc == -ENOSPC) {
		r->flags |= hit.flags & XD_FLAG_AA;
		truncate_response(r);
		return;
	}
	if (rc == 1) {
		r->flags |= hit.flags & XD_FLAG_AA;
		r->rcode = hit.flags & 0xf;
		memcpy(r->count, hit.count, sizeof(r->count));
		r->len += hit.len;
		return;
	}
	if (r->deferrable) {
		r->deferred = true;
		r->hook = xd_override_hook(rule);
	} else
		r->rcode = XD_RCODE_SERVFAIL;
}

/* ---- zone ACLs: who may query a zone, who may transfer it ----------------- */

/* A client the zone's ACL denies gets REFUSED, AA clear, as BIND's
 * allow-query answers, with the reason where EDNS can carry it (RFC 8914
 * 4.19: Prohibited). */
static void answer_prohibited(struct response *r)
{
	r->rcode = XD_RCODE_REFUSED;
	r->ede = XD_EDE_PROHIBITED;
}

/* Whether the zone that holds the qname (if we serve one) refuses this
 * client.  For override rules, which are looked up before any zone: a
 * client denied the zone learns nothing of its names from them either. */
static bool override_prohibited(const struct xd_image *img, const struct xd_query *q,
				const struct name *n, const struct response *r)
{
	int zone = find_zone(img, n, q->qtype);

	return zone >= 0 &&
	       !xd_zone_acl_allows(img, xd_image_zone(img, zone), XD_ZONE_ACL_QUERY, r->client, 0);
}

/* AXFR and IXFR (RFC 5936, RFC 1995) that reach the core: over TCP the
 * listener first asks for the transfer itself (xd_engine_axfr, axfr.c),
 * which comes here only for a client the zone's transfer list does not
 * allow, a name that is not a zone, or a zone with no data (SERVFAIL, as
 * for its queries); over UDP (AXFR is NOTIMP before this) an IXFR from a
 * client the list allows gets the zone's SOA alone, which RFC 1995 2 makes
 * the answer when the changes do not fit one message: the client is
 * current, or asks again over TCP.  Everything else is REFUSED; a zone
 * that has an ACL says why to a client its transfer list denies
 * (Prohibited). */
static void answer_transfer(const struct xd_image *img, const struct xd_query *q, bool tcp,
			    struct response *r)
{
	const struct xd_zone_entry *z;
	const uint8_t *soa;
	struct name n;
	bool apex;
	int zone;

	r->rcode = XD_RCODE_REFUSED;
	memcpy(n.wire, q->qname, q->qname_len);
	n.len = q->qname_len;
	name_index(&n);
	zone = find_zone(img, &n, q->qtype);
	if (zone < 0)
		return;
	z = xd_image_zone(img, zone);
	apex = xd_image_find_zone(img, n.wire, n.len) == zone;
	if (apex && (z->flags & XD_ZONE_EXPIRED)) {
		r->rcode = XD_RCODE_SERVFAIL;
		return;
	}
	if (!xd_zone_acl_allows(img, z, XD_ZONE_ACL_TRANSFER, r->client, r->tsig_key)) {
		if (z->acl)
			r->ede = XD_EDE_PROHIBITED;
		return;
	}
	soa = xd_node_rrset(img->base + z->apex, XD_TYPE_SOA);
	if (tcp || q->qtype != XD_TYPE_IXFR || !apex || !soa)
		return;
	r->rcode = XD_RCODE_NOERROR;
	r->flags |= XD_FLAG_AA;
	if (put_rrset(r, AN, soa, XD_DNS_HEADER_LEN, XD_DNS_HEADER_LEN) < 0)
		r->flags |= XD_FLAG_TC;
}

/* Answers from the override rule that holds the qname, if one does (true):
 * overrides win over zone data, that is what they are for. */
static bool answer_override(const struct xd_image *img, const struct xd_query *q,
			    const struct name *n, struct response *r)
{
	const uint8_t *rule = xd_image_override(img, n->wire, n->len);
	const uint8_t *rs = NULL;
	int rc;

	if (!rule)
		return false;
	if (img->hdr->zone_acl_count && override_prohibited(img, q, n, r)) {
		answer_prohibited(r);
		return true;
	}
	switch (xd_override_action(rule)) {
	case XD_OVERRIDE_REFUSED:
		r->rcode = XD_RCODE_REFUSED; /* AA clear, as outside our zones */
		return true;
	case XD_OVERRIDE_NXDOMAIN:
		r->rcode = XD_RCODE_NXDOMAIN;
		break;
	case XD_OVERRIDE_ANSWER:
		rs = override_rrset(rule, q->qtype);
		break;
	case XD_OVERRIDE_RESOLVER:
		answer_resolver(q, rule, r);
		return true;
	}
	r->flags |= XD_FLAG_AA;
	rc = rs ? put_rrset(r, AN, rs, XD_DNS_HEADER_LEN, XD_DNS_HEADER_LEN) :
		  override_negative(img, q, n, r);
	if (rc < 0)
		truncate_response(r);
	return true;
}

static int answer_query(const struct xd_image *img, const struct xd_query *q, struct response *r)
{
	struct name n;
	struct ctx c = { .img = img, .q = q, .r = r };
	int zone, rc;

	memcpy(n.wire, q->qname, q->qname_len);
	n.len = q->qname_len;
	n.pos = XD_DNS_HEADER_LEN;
	name_index(&n);
	if (img->hdr->override_count && answer_override(img, q, &n, r))
		return 0;
	zone = find_zone(img, &n, q->qtype);
	if (zone < 0) {
		r->rcode = XD_RCODE_REFUSED;
		r->ede = XD_EDE_NOT_AUTHORITATIVE;
		return 0;
	}
	c.zone = zone;
	c.z = xd_image_zone(img, zone);
	/* One test for a zone without an ACL. */
	if (c.z->acl && !xd_zone_acl_allows(img, c.z, XD_ZONE_ACL_QUERY, r->client, 0)) {
		answer_prohibited(r);
		return 0;
	}
	if (c.z->flags & XD_ZONE_EXPIRED) {
		r->rcode = XD_RCODE_SERVFAIL; /* no data to answer from */
		return 0;
	}
	c.origin_pos = XD_DNS_HEADER_LEN + n.len - c.z->origin_len;
	r->flags |= XD_FLAG_AA;
	rc = answer_zone(&c, &n);
	if (rc == -ENOSPC) {
		truncate_response(r);
		return 0;
	}
	if (rc < 0) {
		r->rcode = XD_RCODE_SERVFAIL;
		r->len = r->question_end;
		r->count[AN] = r->count[NS] = r->count[AR] = 0;
		return 0;
	}
	answer_additional(&c);
	return 0;
}

/* ---- CHAOS: what the server says about itself ----------------------------- */

/* The CHAOS names answered (RFC 4892 and the BIND names that everyone
 * asks), lower-case wire form, and the identity item each one shows. */
static const struct {
	const char *wire;
	uint8_t len;
	int which;
} chaos_names[] = {
	{ "\7version\4bind", 14, XD_IDENTITY_VERSION },
	{ "\7version\6server", 16, XD_IDENTITY_VERSION },
	{ "\10hostname\4bind", 15, XD_IDENTITY_HOSTNAME },
	{ "\2id\6server", 11, XD_IDENTITY_ID },
};

static int chaos_item(const struct xd_query *q)
{
	for (size_t i = 0; i < sizeof(chaos_names) / sizeof(chaos_names[0]); i++)
		if (q->qname_len == chaos_names[i].len &&
		    memcmp(q->qname, chaos_names[i].wire, chaos_names[i].len) == 0)
			return chaos_names[i].which;
	return -1;
}

/* A CHAOS-class query: one TXT record (TTL 0) for a TXT query of an
 * identity name that is not hidden; REFUSED for anything else. */
static void answer_chaos(const struct xd_image *img, const struct xd_query *q, struct response *r)
{
	int which = chaos_item(q);
	const uint8_t *text;
	size_t len = 0;
	uint8_t *p;

	text = which < 0 ? NULL : xd_image_identity(img, which, &len);
	/* Only TXT is answered, as Knot does; AA stays clear: no zone holds
	 * these names. */
	if (!text || q->qtype != XD_TYPE_TXT) {
		r->rcode = XD_RCODE_REFUSED;
		return;
	}
	if (!fits(r, 13 + len)) {
		truncate_response(r); /* beside a long NSID and a cookie */
		return;
	}
	p = r->buf + r->len;
	xd_put16(p, 0xc000 | XD_DNS_HEADER_LEN); /* the qname */
	xd_put16(p + 2, XD_TYPE_TXT);
	xd_put16(p + 4, XD_CLASS_CH);
	memset(p + 6, 0, 4); /* TTL 0 */
	xd_put16(p + 10, (uint16_t)(1 + len));
	p[12] = (uint8_t)len;
	memcpy(p + 13, text, len);
	r->len += 13 + len;
	r->count[AN] = 1;
}

/* ---- header, question and OPT --------------------------------------------- */

static size_t udp_limit(const struct xd_query *q)
{
	size_t size = XD_UDP_PAYLOAD_MIN;

	if (q->edns && q->udp_size > size)
		size = q->udp_size < XD_UDP_PAYLOAD_MAX ? q->udp_size : XD_UDP_PAYLOAD_MAX;
	return size;
}

/* What the OPT record carries besides the EDE of a REFUSED. */
struct opt_options {
	const uint8_t *nsid; /* RFC 5001; NULL: none */
	size_t nsid_len;
	uint8_t cookie[XD_COOKIE_REPLY_LEN]; /* RFC 7873 */
	size_t cookie_len; /* 0: no COOKIE */
	uint16_t keepalive; /* RFC 7828, in 100 ms; 0: none */
};

/* The NSID to send (RFC 5001): only to a query that asked for it. */
static const uint8_t *nsid_for(const struct xd_image *img, const struct xd_query *q, size_t *len)
{
	*len = 0;
	return q->edns && q->nsid ? xd_image_identity(img, XD_IDENTITY_NSID, len) : NULL;
}

/* The COOKIE to send (RFC 7873 5.2.3-5.2.5): to every query with a
 * well-formed one, when cookies are on and the client is known (its
 * address is hashed); what the query showed goes to ctx->cookie.  The
 * options of an EDNS version we do not speak mean nothing to us: BADVERS
 * goes without (RFC 6891 6.1.3; Knot does the same). */
static void cookie_for(struct xd_answer_ctx *ctx, const struct xd_query *q, struct opt_options *o)
{
	o->cookie_len = 0;
	if (!ctx || !ctx->cookies || !q->edns || q->edns_version > 0 || !q->cookie ||
	    !xd_client_known(&ctx->client))
		return;
	if (q->cookie_malformed) {
		ctx->cookie = XD_COOKIE_MALFORMED;
		return;
	}
	ctx->cookie = xd_cookie_reply(ctx->cookies, &ctx->client, ctx->now, q->cookie,
				      q->cookie_len, o->cookie);
	o->cookie_len = XD_COOKIE_REPLY_LEN;
}

/* RFC 7873 5.2.3 and 5.2.4 leave it to the server: with `require`, a UDP
 * client that sent a cookie but no valid server cookie gets BADCOOKIE
 * (and a fresh cookie) instead of an answer, as BIND's
 * require-server-cookie does.  TCP has proved the address already. */
static bool cookie_refused(const struct xd_answer_ctx *ctx, bool tcp)
{
	return ctx && ctx->cookies && ctx->cookies->require_udp && !tcp &&
	       (ctx->cookie == XD_COOKIE_CLIENT_ONLY || ctx->cookie == XD_COOKIE_INVALID);
}

static size_t opt_options_len(const struct opt_options *o)
{
	return (o->nsid ? 4 + o->nsid_len : 0) + (o->cookie_len ? 4 + o->cookie_len : 0) +
	       (o->keepalive ? 6 : 0);
}

static uint8_t *put_option(uint8_t *o, uint16_t code, const uint8_t *data, size_t len)
{
	xd_put16(o, code);
	xd_put16(o + 2, (uint16_t)len);
	memcpy(o + 4, data, len);
	return o + 4 + len;
}

static void put_opt(struct response *r, const struct xd_query *q, const struct opt_options *opts)
{
	uint8_t *p = r->buf + r->len;
	uint8_t *o = p + XD_OPT_RR_LEN;
	size_t rdlen;

	p[0] = 0;
	xd_put16(p + 1, XD_TYPE_OPT);
	xd_put16(p + 3, XD_UDP_PAYLOAD_MAX);
	p[5] = r->rcode >> 4;
	p[6] = 0; /* version */
	xd_put16(p + 7, q->edns_flags & XD_EDNS_DO); /* RFC 3225 3 */
	if (r->ede) {
		xd_put16(o, XD_EDNS_OPTION_EDE);
		xd_put16(o + 2, 2);
		xd_put16(o + 4, r->ede);
		o += XD_EDE_LEN;
	}
	if (opts->nsid)
		o = put_option(o, XD_EDNS_OPTION_NSID, opts->nsid, opts->nsid_len);
	if (opts->cookie_len)
		o = put_option(o, XD_EDNS_OPTION_COOKIE, opts->cookie, opts->cookie_len);
	if (opts->keepalive) {
		uint8_t timeout[2];

		xd_put16(timeout, opts->keepalive);
		o = put_option(o, XD_EDNS_OPTION_KEEPALIVE, timeout, sizeof(timeout));
	}
	rdlen = (size_t)(o - (p + XD_OPT_RR_LEN));
	xd_put16(p + 9, (uint16_t)rdlen);
	r->len += XD_OPT_RR_LEN + rdlen;
	r->count[AR]++;
}

static void put_header(struct response *r, const struct xd_query *q, bool question)
{
	uint8_t *p = r->buf;

	memcpy(p, q->pkt, 2); /* ID */
	r->flags |= XD_FLAG_QR | (q->flags & (0x7800 | XD_FLAG_RD | XD_FLAG_CD));
	xd_put16(p + 2, r->flags | (r->rcode & 0xf));
	xd_put16(p + 4, question ? 1 : 0);
	xd_put16(p + 6, r->count[AN]);
	xd_put16(p + 8, r->count[NS]);
	xd_put16(p + 10, r->count[AR]);
}

/*
 * What the response is for rate limiting: the kind and name that rrl.c
 * would read back from it (the header's RCODE, counts and AA, the qname,
 * the first authority RR's owner and type), from what was decided here.
 * Unknown where a section was not written here (a resolver hook's answer)
 * and the limiter must read the response itself.
 */
static void note_kind(struct xd_response_kind *k, const struct xd_query *q,
		      const struct response *r)
{
	uint16_t rcode = r->rcode & 0xf; /* what the header shows */
	size_t skip = 0;

	k->kind = -1;
	k->qtype = 0;
	k->name_len = 0;
	if (rcode != XD_RCODE_NOERROR && rcode != XD_RCODE_NXDOMAIN) {
		k->kind = XD_RRL_ERROR; /* counted per prefix alone */
		return;
	}
	if (r->question_end == XD_DNS_HEADER_LEN)
		return;
	if (rcode == XD_RCODE_NOERROR && r->count[AN]) {
		k->kind = XD_RRL_ANSWER;
		k->qtype = q->qtype;
	} else if (r->count[NS]) {
		/* The zone's SOA or the delegation's NS: owned by a suffix of
		 * the qname whenever we wrote it. */
		if (!r->authority_owner || r->authority_owner - XD_DNS_HEADER_LEN >= q->qname_len)
			return;
		skip = r->authority_owner - XD_DNS_HEADER_LEN;
		if (rcode == XD_RCODE_NXDOMAIN)
			k->kind = XD_RRL_NXDOMAIN;
		else if (r->authority_type == XD_TYPE_NS && !(r->flags & XD_FLAG_AA))
			k->kind = XD_RRL_REFERRAL;
		else
			k->kind = XD_RRL_NODATA;
	} else {
		k->kind = rcode == XD_RCODE_NXDOMAIN ? XD_RRL_NXDOMAIN : XD_RRL_NODATA;
	}
	k->name_len = q->qname_len - skip;
	memcpy(k->name, q->qname + skip, k->name_len);
}

/* NOTIFY (RFC 1996) goes to the server's hook, which knows the zones'
 * primaries and what a NOTIFY starts; one with no question, or with
 * nobody to hand it to, gets NOTIMP. */
static bool notify_deferred(const struct xd_image *img, const struct xd_query *q,
			    struct response *r)
{
	if (XD_OPCODE(q->flags) != XD_OPCODE_NOTIFY || !img->hdr->notify_hook || !r->deferrable ||
	    q->question_end == XD_DNS_HEADER_LEN)
		return false;
	r->deferred = true;
	r->hook = (uint8_t)(img->hdr->notify_hook - 1);
	return true;
}

/* A signed request (RFC 8945 5.2): its record read and its MAC and time
 * checked against the image's key of that name.  False when it verifies
 * (r->tsig_key names the key); true when the response is NOTAUTH with the
 * TSIG error, or FORMERR for a record that does not parse.  *signing
 * says whether the response gets a TSIG record, whose room is kept. */
static bool tsig_failed(const struct xd_image *img, const struct xd_query *q, uint64_t now,
			struct xd_tsig *t, struct response *r, bool *signing)
{
	int rc = xd_image_tsig_check(img, q->pkt, q->len, q->tsig, now, t, &r->tsig_key);

	/* RFC 8945 5.3.2: a TSIG record goes back for any error it names. */
	*signing = rc >= 0;
	if (*signing)
		r->reserve += xd_tsig_rr_len(t);
	if (rc > 0)
		r->rcode = XD_RCODE_NOTAUTH;
	else if (rc == -ENOMEM)
		r->rcode = XD_RCODE_SERVFAIL;
	else if (rc < 0)
		r->rcode = XD_RCODE_FORMERR;
	return rc != 0;
}

int xd_answer_ctx(const struct xd_image *img, struct xd_answer_ctx *ctx, const uint8_t *query,
		  size_t qlen, uint8_t *resp, size_t cap, unsigned flags)
{
	struct xd_tsig tsig;
	bool signing = false;
	uint64_t now;
	struct xd_query q;
	struct response r;
	struct opt_options opts;
	bool tcp = flags & XD_ANSWER_TCP;
	int rc;

	if (ctx) {
		ctx->cookie = XD_COOKIE_NONE;
		ctx->kind.kind = -1;
	}
	if (qlen < XD_DNS_HEADER_LEN || cap < XD_UDP_PAYLOAD_MIN)
		return 0;
	rc = xd_query_parse(&q, query, qlen);
	if (rc == XD_QUERY_DROP)
		return 0;

	memset(&r, 0, sizeof(r));
	r.buf = resp;
	r.limit = tcp ? (cap < UINT16_MAX ? cap : UINT16_MAX) :
			(udp_limit(&q) < cap ? udp_limit(&q) : cap);
	r.len = XD_DNS_HEADER_LEN;
	r.deferrable = ctx && (flags & XD_ANSWER_DEFER);
	r.dnssec = q.edns && (q.edns_flags & XD_EDNS_DO);
	if (ctx) {
		r.client = &ctx->client;
		r.cache = ctx->cache;
		r.given = ctx->given;
		r.now = ctx->now;
	}
	/* Echo the question whenever it parsed, even in errors. */
	memcpy(resp + r.len, query + XD_DNS_HEADER_LEN, q.question_end - XD_DNS_HEADER_LEN);
	r.len = r.question_end = q.question_end;
	opts.nsid = nsid_for(img, &q, &opts.nsid_len);
	cookie_for(ctx, &q, &opts);
	/* RFC 7828 3.3.2: over TCP, to a client that asked, the idle timeout
	 * it may count on; over UDP the option means nothing (3.2.1). */
	opts.keepalive =
		tcp && ctx && q.edns && q.edns_version == 0 && q.keepalive ? ctx->keepalive : 0;
	r.reserve = q.edns ? XD_OPT_RR_LEN + XD_EDE_LEN + opt_options_len(&opts) : 0;
	/* A long NSID beside a long question could outgrow the limit (at least
	 * 512): the NSID is advisory and goes first.  Without it the question
	 * (at most 271 bytes) and the OPT (at most 61) always fit. */
	if (r.question_end + r.reserve > r.limit) {
		opts.nsid = NULL;
		r.reserve = XD_OPT_RR_LEN + XD_EDE_LEN + opt_options_len(&opts);
	}

	/* Not ctx->now: the workers set it only for cookies, rate limiting
	 * and the resolver's cache.  A signed request is rare enough to read
	 * the clock itself. */
	now = q.tsig ? (uint64_t)time(NULL) : 0;
	if (rc == XD_QUERY_FORMERR || (ctx && ctx->cookie == XD_COOKIE_MALFORMED))
		r.rcode = XD_RCODE_FORMERR; /* RFC 7873 5.2.2 for the COOKIE */
	else if (q.tsig && tsig_failed(img, &q, now, &tsig, &r, &signing))
		; /* NOTAUTH with the TSIG error, or FORMERR */
	else if (rc == XD_QUERY_NOTIMP && notify_deferred(img, &q, &r))
		; /* the server's NOTIFY hook answers (and signs: its TSIG is good) */
	else if (rc == XD_QUERY_NOTIMP)
		r.rcode = XD_RCODE_NOTIMP;
	else if (q.edns && q.edns_version > 0)
		r.rcode = XD_RCODE_BADVERS; /* RFC 6891 6.1.3 */
	else if (cookie_refused(ctx, tcp))
		r.rcode = XD_RCODE_BADCOOKIE;
	else if (q.qclass == XD_CLASS_CH)
		answer_chaos(img, &q, &r);
	else if (q.qclass != XD_CLASS_IN && q.qclass != XD_CLASS_ANY)
		r.rcode = XD_RCODE_REFUSED;
	else if (q.qtype == XD_TYPE_AXFR && !tcp)
		r.rcode = XD_RCODE_NOTIMP; /* RFC 5936 4.2: TCP only; as Knot and NSD */
	else if (q.qtype == XD_TYPE_AXFR || q.qtype == XD_TYPE_IXFR)
		answer_transfer(img, &q, tcp, &r);
	else
		answer_query(img, &q, &r);
	if (r.deferred) {
		ctx->hook = r.hook; /* deferrable only with a ctx */
		return -EAGAIN;
	}

	if (q.edns)
		put_opt(&r, &q, &opts);
	put_header(&r, &q, r.question_end > XD_DNS_HEADER_LEN);
	if (ctx && ctx->want_kind)
		note_kind(&ctx->kind, &q, &r);
	if (signing) {
		/* The room was kept (reserve), unless the question and key
		 * name alone outgrew a 512-byte limit: cap still holds it. */
		rc = xd_tsig_sign(&tsig, resp, r.len, cap, now);
		return rc < 0 ? 0 : rc;
	}
	return (int)r.len;
}

int xd_answer(const struct xd_image *img, const uint8_t *query, size_t qlen, uint8_t *resp,
	      size_t cap, unsigned flags)
{
	return xd_answer_ctx(img, NULL, query, qlen, resp, cap, flags);
}
