/*
 * xdp_answers.c - the answer table of the XDP program, compiled from a
 * zone image.
 *
 * The table holds only answers the answering core gave: for every name the
 * image holds (and every name an override rule names), the core is asked
 * for each type whose answer could differ from the name's answer to a type
 * nobody has, and for that one (the name's "other types" entry).  An answer
 * goes in only when it is the same bytes for every query the XDP program
 * answers with it:
 *
 *  - asked in upper case, the core writes the same bytes after the
 *    question (DNAME synthesis copies the query's case: left to the core);
 *  - asked with an OPT for 1232 bytes, it writes the same sections and a
 *    bare OPT (no EDE, no extended RCODE);
 *  - it is whole: nothing left out for room (asked over TCP, no limit),
 *    no TC; the program sends it only where it fits whole;
 *  - no zone ACL applies (those depend on the client) and no resolver hook
 *    claims the name (those depend on the hook).
 *
 * Each question is asked with DO=1 too (RFC 3225).  When every answer of
 * a name is the same as without (a name of an unsigned zone), its entries
 * say so (also_do); otherwise it gets a second set of entries, of variant
 * DO, compiled the same way from the answers with DO=1, but for the ones
 * with data or a referral only: a NODATA's proof is the name's own (the
 * NSEC or NSEC3 that matches it) and several hundred bytes, which for
 * every name would triple the table; those go to the workers.
 *
 * Sections are stored once per distinct byte string (a zone's NODATA for
 * names of one length is one string), packed into pages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer/answer.h"
#include "error.h"
#include "image/image.h"
#include "io/packet.h"
#include "io/resolver.h"
#include "answer/rrl.h"
#include "wire/wire.h"
#include "io/xdp_answers.h"

/* A type nobody has stands for "every type without an entry": the first
 * free one from the private-use range (RFC 6895 3.1). */
#define XD_PROBE_TYPE_FIRST 65280
/* The core's answer to one question, TCP-sized. */
#define XD_ANSWER_RESP_MAX 65535
/* A name with more types to ask about than this is left to the workers
 * whole: a bound on the work for a pathological node. */
#define XD_ANSWER_TYPES_MAX 256

/* ---- storage ---------------------------------------------------------------- */

/* Where each distinct section string lies: an open-addressing set keyed by
 * the bytes' hash. */
struct xd_answers_dedup {
	struct dedup_slot {
		uint64_t hash; /* 0: empty */
		uint32_t page;
		uint16_t offset;
		uint16_t len;
	} * slots;
	size_t mask, used;
};

static const size_t key_sizes[XD_ANSWER_CLASSES] = {
	sizeof(struct xd_answer_key_32),
	sizeof(struct xd_answer_key_64),
	sizeof(struct xd_answer_key_128),
	sizeof(struct xd_answer_key_256),
};

static int class_of(size_t name_len)
{
	switch (xd_answer_key_size((__u32)name_len)) {
	case XD_ANSWER_KEY_32:
		return XD_ANSWER_CLASS_32;
	case XD_ANSWER_KEY_64:
		return XD_ANSWER_CLASS_64;
	case XD_ANSWER_KEY_128:
		return XD_ANSWER_CLASS_128;
	default:
		return XD_ANSWER_CLASS_256;
	}
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	size_t want = *cap ? *cap : 1024;
	void *q;

	if (n < *cap)
		return 0;
	while (want <= n)
		want *= 2;
	q = realloc(*p, want * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = want;
	return 0;
}

static int class_add(struct xd_answer_class *c, const uint8_t *name, size_t name_len,
		     uint16_t qtype, uint16_t qclass, uint32_t variant,
		     const struct xd_answer *value)
{
	size_t cap = c->cap;
	uint8_t *key;
	int rc;

	rc = grow((void **)&c->keys, &cap, c->n, c->key_size);
	if (rc == 0)
		rc = grow((void **)&c->values, &c->cap, c->n, sizeof(*c->values));
	if (rc)
		return rc;
	key = c->keys + c->n * c->key_size;
	memset(key, 0, c->key_size);
	/* struct xd_answer_key_N: qtype, qclass, variant, name */
	memcpy(key, &qtype, sizeof(qtype));
	memcpy(key + 2, &qclass, sizeof(qclass));
	memcpy(key + 4, &variant, sizeof(variant));
	memcpy(key + 8, name, name_len);
	c->values[c->n++] = *value;
	return 0;
}

static int dedup_grow(struct xd_answers_dedup *d)
{
	size_t size = d->mask ? 2 * (d->mask + 1) : 4096;
	struct dedup_slot *slots = calloc(size, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; d->mask && i <= d->mask; i++) {
		size_t j = d->slots[i].hash & (size - 1);

		if (!d->slots[i].hash)
			continue;
		while (slots[j].hash)
			j = (j + 1) & (size - 1);
		slots[j] = d->slots[i];
	}
	free(d->slots);
	d->slots = slots;
	d->mask = size - 1;
	return 0;
}

static const uint8_t *page_bytes(const struct xd_answers *t, uint32_t page, uint16_t off)
{
	return t->pages[page].bytes + off;
}

/* Puts len bytes into the pages, where a section may start in a page's
 * first XD_ANSWER_PAGE_STRIDE bytes and run on into its tail. */
static int pages_put(struct xd_answers *t, const uint8_t *bytes, size_t len, uint32_t *page,
		     uint16_t *off)
{
	size_t cap = t->pages_cap;
	int rc;

	if (!t->npages || t->fill >= XD_ANSWER_PAGE_STRIDE ||
	    t->fill + len > XD_ANSWER_PAGE_VALUE) {
		rc = grow((void **)&t->pages, &cap, t->npages, sizeof(*t->pages));
		if (rc)
			return rc;
		t->pages_cap = cap;
		memset(&t->pages[t->npages], 0, sizeof(t->pages[0]));
		t->npages++;
		t->fill = 0;
	}
	*page = t->npages - 1;
	*off = t->fill;
	memcpy(t->pages[*page].bytes + t->fill, bytes, len);
	t->fill += len;
	return 0;
}

/* The page and offset of these bytes, stored once. */
static int sections_put(struct xd_answers *t, const uint8_t *bytes, size_t len, uint32_t *page,
			uint16_t *off)
{
	struct xd_answers_dedup *d = t->dedup;
	uint64_t h = xd_hash(bytes, len, 0x9e3779b9u) | 1;
	size_t j;
	int rc;

	if (2 * (d->used + 1) > d->mask + 1 && (rc = dedup_grow(d)))
		return rc;
	for (j = h & d->mask; d->slots[j].hash; j = (j + 1) & d->mask) {
		const struct dedup_slot *s = &d->slots[j];

		if (s->hash == h && s->len == len &&
		    memcmp(page_bytes(t, s->page, s->offset), bytes, len) == 0) {
			*page = s->page;
			*off = s->offset;
			return 0;
		}
	}
	rc = pages_put(t, bytes, len, page, off);
	if (rc)
		return rc;
	d->slots[j] = (struct dedup_slot){ h, *page, *off, (uint16_t)len };
	d->used++;
	return 0;
}

/* ---- asking the core ------------------------------------------------------ */

/* One name being compiled: its lower-case wire form and a query buffer. */
struct asking {
	const struct xd_image *img;
	uint8_t name[XD_NAME_MAX];
	size_t name_len;
	uint8_t query[XD_DNS_HEADER_LEN + XD_NAME_MAX + 4 + 11];
	uint8_t resp[XD_ANSWER_RESP_MAX];
	uint8_t check[XD_ANSWER_RESP_MAX];
	uint8_t with_do[XD_ANSWER_RESP_MAX]; /* the same question with DO=1 */
	/* The name's "other types" answer, kept while its types are asked
	 * about (each ask overwrites resp). */
	uint8_t other[XD_ANSWER_BODY_MAX];
};

/* What the core answered, as the table would hold it. */
struct answered {
	bool ok; /* the table may hold it */
	uint16_t flags; /* AA and RCODE */
	uint16_t count[3];
	const uint8_t *sections; /* into asking.resp */
	size_t len;
	uint32_t rrl_kind; /* what rate limiting counts it as */
	uint64_t rrl_name;
};

/* The OPT the core puts on answers to the table's queries, and so the
 * program on its own: 1232 bytes, version 0, DO as asked, no options. */
static void bare_opt(uint8_t *opt, bool dnssec)
{
	memset(opt, 0, XD_OPT_RR_LEN);
	xd_put16(opt + 1, XD_TYPE_OPT);
	xd_put16(opt + 3, XD_ANSWER_UDP_MAX);
	opt[7] = dnssec ? XD_EDNS_DO >> 8 : 0;
}

static size_t make_query(struct asking *a, uint16_t qtype, bool upper, bool edns, bool dnssec)
{
	uint8_t *q = a->query, *p;

	memset(q, 0, XD_DNS_HEADER_LEN);
	q[5] = 1; /* QDCOUNT */
	q[11] = edns || dnssec; /* ARCOUNT */
	p = q + XD_DNS_HEADER_LEN;
	for (size_t i = 0; i < a->name_len; i++) {
		uint8_t c = a->name[i];

		p[i] = upper && c >= 'a' && c <= 'z' ? c - 32 : c;
	}
	p += a->name_len;
	xd_put16(p, qtype);
	xd_put16(p + 2, XD_CLASS_IN);
	p += 4;
	if (edns || dnssec) {
		bare_opt(p, dnssec);
		p += XD_OPT_RR_LEN;
	}
	return (size_t)(p - q);
}

/* The core's answer over TCP (whole), or not ok when it cannot be held:
 * deferred to a resolver hook, truncated, or flags the table does not
 * carry.  With DO (asked with an OPT), the sections before the OPT, which
 * must be the bare one. */
static int ask(struct asking *a, uint16_t qtype, bool dnssec, uint8_t *resp, struct answered *out)
{
	struct xd_answer_ctx ctx;
	uint8_t opt[XD_OPT_RR_LEN];
	size_t qlen = make_query(a, qtype, false, false, dnssec);
	size_t qend = XD_DNS_HEADER_LEN + a->name_len + 4;
	uint16_t flags;
	int len;

	memset(&ctx, 0, sizeof(ctx));
	memset(out, 0, sizeof(*out));
	ctx.want_kind = true;
	len = xd_answer_ctx(a->img, &ctx, a->query, qlen, resp, XD_ANSWER_RESP_MAX,
			    XD_ANSWER_TCP | XD_ANSWER_DEFER);
	if (len == -EAGAIN)
		return 0; /* a resolver hook's */
	if (len < 0)
		return len;
	if ((size_t)len < qend)
		return 0;
	flags = xd_get16(resp + 2);
	/* QR and the query's (zero) opcode, RD and CD aside: only AA and
	 * RCODE may be set, RCODE without an extended part. */
	if (flags & ~(XD_FLAG_QR | XD_FLAG_AA | 0xf))
		return 0;
	out->flags = flags & (XD_FLAG_AA | 0xf);
	out->count[0] = xd_get16(resp + 6);
	out->count[1] = xd_get16(resp + 8);
	out->count[2] = xd_get16(resp + 10);
	out->sections = resp + qend;
	out->len = (size_t)len - qend;
	if (dnssec) {
		bare_opt(opt, true);
		if (out->len < sizeof(opt) || out->count[2] == 0 ||
		    memcmp(resp + len - sizeof(opt), opt, sizeof(opt)) != 0)
			return 0;
		out->len -= sizeof(opt);
		out->count[2]--;
	}
	/* The program counts it in the bucket a worker would (rrl.c): a
	 * kind the core did not note would need the response read back. */
	out->rrl_kind = (uint32_t)ctx.kind.kind;
	out->rrl_name = xd_rrl_name_hash(ctx.kind.name, ctx.kind.name_len);
	out->ok = ctx.kind.kind >= 0 && out->len <= XD_ANSWER_BODY_MAX &&
		  qend + out->len + XD_ANSWER_OPT_RESERVE <= XD_ANSWER_UDP_MAX;
	return 0;
}

static bool same(const struct answered *x, const struct answered *y)
{
	return x->flags == y->flags && memcmp(x->count, y->count, sizeof(x->count)) == 0 &&
	       x->len == y->len && memcmp(x->sections, y->sections, x->len) == 0;
}

/* Whether the core gives the same sections to the query in upper case
 * with an OPT for 1232 bytes (DO as asked), and a bare OPT after them. */
static int confirm(struct asking *a, uint16_t qtype, bool dnssec, const struct answered *x,
		   bool *ok)
{
	uint8_t opt[XD_OPT_RR_LEN];
	struct xd_answer_ctx ctx;
	size_t qlen = make_query(a, qtype, true, true, dnssec);
	size_t qend = XD_DNS_HEADER_LEN + a->name_len + 4;
	int len;

	memset(&ctx, 0, sizeof(ctx));
	len = xd_answer_ctx(a->img, &ctx, a->query, qlen, a->check, sizeof(a->check),
			    XD_ANSWER_DEFER);
	*ok = false;
	if (len == -EAGAIN)
		return 0;
	if (len < 0)
		return len;
	if ((size_t)len != qend + x->len + sizeof(opt))
		return 0;
	bare_opt(opt, dnssec);
	*ok = (xd_get16(a->check + 2) & ~(XD_FLAG_QR)) == x->flags &&
	      xd_get16(a->check + 6) == x->count[0] && xd_get16(a->check + 8) == x->count[1] &&
	      xd_get16(a->check + 10) == x->count[2] + 1 &&
	      memcmp(a->check + qend, x->sections, x->len) == 0 &&
	      memcmp(a->check + qend + x->len, opt, sizeof(opt)) == 0;
	return 0;
}

/* ---- compiling ------------------------------------------------------------------ */

/* A type list without repeats. */
struct type_list {
	uint16_t t[XD_ANSWER_TYPES_MAX];
	int n;
};

/* The keys entered so far, by a 64-bit hash: a name may be a node of two
 * zones (a cut and the child's apex) and name override rules too; each
 * asks the core, which gives the name one answer, and the first entry of
 * a key stays.  A collision would leave a key out: its queries would go to
 * the workers, still answered right. */
struct key_set {
	uint64_t *slots; /* 0: empty */
	size_t mask, used;
};

static int key_set_add(struct key_set *set, const uint8_t *name, size_t len, uint16_t qtype,
		       uint16_t qclass, uint32_t variant, bool *added)
{
	uint8_t key[5 + XD_NAME_MAX];
	uint64_t h;
	size_t j;

	/* The type and class hashed with the name, not into the seed: xd_hash
	 * mixes its seed with the first word linearly. */
	xd_put16(key, qtype);
	xd_put16(key + 2, qclass);
	key[4] = (uint8_t)variant;
	memcpy(key + 5, name, len);
	h = xd_hash(key, 5 + len, 0x7f4a7c15u) | 1;

	if (2 * (set->used + 1) > set->mask + 1) {
		size_t size = set->mask ? 2 * (set->mask + 1) : 4096;
		uint64_t *slots = calloc(size, sizeof(*slots));

		if (!slots)
			return -ENOMEM;
		for (size_t i = 0; set->mask && i <= set->mask; i++) {
			if (!set->slots[i])
				continue;
			for (j = set->slots[i] & (size - 1); slots[j]; j = (j + 1) & (size - 1))
				;
			slots[j] = set->slots[i];
		}
		free(set->slots);
		set->slots = slots;
		set->mask = size - 1;
	}
	for (j = h & set->mask; set->slots[j]; j = (j + 1) & set->mask) {
		if (set->slots[j] == h) {
			*added = false;
			return 0;
		}
	}
	set->slots[j] = h;
	set->used++;
	*added = true;
	return 0;
}

struct compiling {
	struct xd_answers *t;
	struct asking *a;
	uint16_t probe; /* the type nobody has */
	struct type_list image_types; /* every type in the image, ascending */
	struct type_list override_types; /* of every override rule */
	struct key_set keys;
	bool dnssec; /* compiling the DO entries */
	bool same_with_do; /* the name's answers so far are the
					 * same with DO=1 */
};

/* Enters value v for (the name, qtype, qclass) unless the key has one
 * already; sections, when not NULL, go into the pages first. */
static int enter(struct compiling *c, uint16_t qtype, uint16_t qclass, struct xd_answer *v,
		 const struct answered *sections)
{
	uint32_t variant = c->dnssec ? XD_ANSWER_VARIANT_DO : XD_ANSWER_VARIANT_PLAIN;
	struct asking *a = c->a;
	bool added;
	int rc;

	rc = key_set_add(&c->keys, a->name, a->name_len, qtype, qclass, variant, &added);
	if (rc || !added)
		return rc;
	if (sections) {
		rc = sections_put(c->t, sections->sections, sections->len, &v->page, &v->offset);
		if (rc)
			return rc;
	}
	c->t->info.entries++;
	c->t->info.do_entries += c->dnssec;
	return class_add(&c->t->classes[class_of(a->name_len)], a->name, a->name_len, qtype, qclass,
			 variant, v);
}

static int emit(struct compiling *c, uint16_t qtype, uint16_t qclass, const struct answered *x)
{
	struct xd_answer v;

	memset(&v, 0, sizeof(v));
	v.flags = x->flags;
	v.ancount = x->count[0];
	v.nscount = x->count[1];
	v.arcount = x->count[2];
	v.len = (uint16_t)x->len;
	v.csum = (uint16_t)~xd_csum_fold(xd_csum_add(0, x->sections, x->len));
	v.rrl_kind = x->rrl_kind;
	v.rrl_name = x->rrl_name;
	return enter(c, qtype, qclass, &v, x);
}

/* An entry that sends the query of this type on to the worker. */
static int emit_to_worker(struct compiling *c, uint16_t qtype)
{
	struct xd_answer v;

	memset(&v, 0, sizeof(v));
	v.action = XD_ANSWER_TO_WORKER;
	return enter(c, qtype, XD_CLASS_IN, &v, NULL);
}

/* Asks for (name, qtype) and enters the answer when the name's "other
 * types" entry (other; NULL: this is that entry) does not say it already.
 * An answer the table cannot hold is left to the worker, and where the
 * other-types entry would stand in for it, an entry says so. */
static int consider(struct compiling *c, uint16_t qtype, const struct answered *other,
		    struct answered *x)
{
	struct asking *a = c->a;
	struct answered with;
	bool ok = false;
	int rc = ask(a, qtype, c->dnssec, a->resp, x);

	if (rc == 0 && !c->dnssec && c->same_with_do) {
		rc = ask(a, qtype, true, a->with_do, &with);
		c->same_with_do = x->ok == with.ok && (!x->ok || same(x, &with));
	}
	if (rc)
		return rc;
	if (c->dnssec && x->ok && x->count[0] == 0 && (x->flags & XD_FLAG_AA))
		x->ok = false; /* a proof of absence: the worker's */
	if (other && other->ok && x->ok && same(x, other))
		return 0;
	if (other && !other->ok && !x->ok)
		return 0; /* the worker answers both */
	if (x->ok && (rc = confirm(c->a, qtype, c->dnssec, x, &ok)))
		return rc;
	x->ok = ok;
	if (!ok) {
		c->t->info.skipped++;
		return other && other->ok ? emit_to_worker(c, qtype) : 0;
	}
	return emit(c, other ? qtype : 0, other ? XD_CLASS_IN : XD_ANSWER_CLASS_OTHER, x);
}

/* Whether a query for the name could meet a zone's query ACL: of the zone
 * that holds it, or for DS the parent's.  A zone that restricts transfers
 * alone answers queries alike for every client. */
static bool acl_applies(const struct xd_image *img, const uint8_t *name, size_t len)
{
	int z;

	if (!img->hdr->zone_acl_count)
		return false;
	z = xd_answer_zone(img, name, len, XD_TYPE_A);
	if (z >= 0 && !xd_zone_acl_open(img, xd_image_zone(img, z), XD_ZONE_ACL_QUERY))
		return true;
	z = xd_answer_zone(img, name, len, XD_TYPE_DS);
	return z >= 0 && !xd_zone_acl_open(img, xd_image_zone(img, z), XD_ZONE_ACL_QUERY);
}

static void types_add(struct type_list *l, uint16_t t)
{
	if (!xd_answer_type_held(t))
		return; /* no entry, and the program does not fall back */
	for (int i = 0; i < l->n; i++)
		if (l->t[i] == t)
			return;
	if (l->n < XD_ANSWER_TYPES_MAX)
		l->t[l->n++] = t;
}

/* The entries of one name for one variant (c->dnssec): its "other types"
 * answer first, then each type of the list whose answer differs. */
static int compile_variant(struct compiling *c, const struct type_list *types)
{
	struct answered other, x;
	struct asking *a = c->a;
	int rc = consider(c, c->probe, NULL, &other);

	if (rc == 0 && other.ok) {
		memcpy(a->other, other.sections, other.len);
		other.sections = a->other;
	}
	for (int i = 0; rc == 0 && i < types->n; i++)
		rc = consider(c, types->t[i], &other, &x);
	return rc;
}

/* Every entry of one name: the types whose answer may differ from its
 * answer to a type nobody has are the types it has, the types of every
 * override rule (a subtree rule above it answers them) and DS; with a
 * CNAME or DNAME, every type of the image, as the chain's end decides.
 * Not ANY, which the program leaves to the workers: an entry for it at
 * every name would add a third to the table for a type rarely asked.
 * Then DO: the entries just made say they hold for it too, or the name
 * gets its DO entries. */
static int compile_name(struct compiling *c, struct type_list *types, bool chain)
{
	struct asking *a = c->a;
	struct xd_answer_class *class = &c->t->classes[class_of(a->name_len)];
	size_t first = class->n;
	int rc;

	c->t->info.names++;
	if (acl_applies(a->img, a->name, a->name_len)) {
		c->t->info.skipped++;
		return 0;
	}
	types_add(types, XD_TYPE_DS);
	for (int i = 0; i < c->override_types.n; i++)
		types_add(types, c->override_types.t[i]);
	for (int i = 0; chain && i < c->image_types.n; i++)
		types_add(types, c->image_types.t[i]);
	if (types->n == XD_ANSWER_TYPES_MAX) {
		c->t->info.skipped++; /* past the bound: all to the worker */
		return 0;
	}
	c->same_with_do = true;
	rc = compile_variant(c, types);
	if (rc == 0 && !c->same_with_do) {
		c->dnssec = true;
		rc = compile_variant(c, types);
		c->dnssec = false;
		return rc;
	}
	for (size_t i = first; rc == 0 && i < class->n; i++)
		class->values[i].also_do = XD_ANSWER_ALSO_DO;
	return rc;
}

static void rrset_types(const uint8_t *rs, uint16_t n, struct type_list *l)
{
	for (uint16_t i = 0; i < n; i++, rs = xd_rrset_next(rs))
		types_add(l, xd_rrset_type(rs));
}

static int compile_nodes(struct compiling *c)
{
	const struct xd_image *img = c->a->img;
	const uint32_t *hash = (const uint32_t *)(img->base + img->hdr->name_hash);
	struct type_list types;
	int rc;

	for (uint32_t i = 0; i < img->hdr->name_hash_size; i++) {
		uint32_t off = xd_ld32((const uint8_t *)(hash + i));
		const uint8_t *n = img->base + off;
		const struct xd_zone_entry *z;

		/* An NSEC3 record's hashed name does not exist (RFC 5155
		 * 7.2.8): NXDOMAIN, the workers'. */
		if (!off || (xd_node_flags(img->base + off) & XD_NODE_NSEC3))
			continue;
		z = xd_image_zone(img, xd_node_zone(n));
		c->a->name_len = xd_node_name_len(n) + z->origin_len;
		if (c->a->name_len > XD_NAME_MAX)
			continue;
		memcpy(c->a->name, xd_node_name(n), xd_node_name_len(n));
		memcpy(c->a->name + xd_node_name_len(n), img->base + z->origin, z->origin_len);
		types.n = 0;
		rrset_types(xd_node_first_rrset(n), xd_node_nrrsets(n), &types);
		rc = compile_name(c, &types, xd_node_flags(n) & (XD_NODE_CNAME | XD_NODE_DNAME));
		if (rc)
			return rc;
	}
	return 0;
}

static const uint8_t *override_rule(const struct xd_image *img, uint32_t index)
{
	const uint8_t *rules = img->base + img->hdr->override_rules;

	return img->base + xd_ld32(rules + 4 * (size_t)index);
}

/* The names override rules name, and the types any rule answers. */
static int compile_overrides(struct compiling *c)
{
	const struct xd_image *img = c->a->img;
	const uint8_t *e = img->base + img->hdr->override_entries;
	const uint8_t *end = img->base + img->hdr->override_hash;
	struct type_list types;
	int rc;

	if (!img->hdr->override_count)
		return 0;
	for (; e < end; e += XD_OVERRIDE_ENTRY_HEADER + xd_override_entry_name_len(e)) {
		c->a->name_len = xd_override_entry_name_len(e);
		memcpy(c->a->name, xd_override_entry_name(e), c->a->name_len);
		types.n = 0;
		rc = compile_name(c, &types, false);
		if (rc)
			return rc;
	}
	return 0;
}

static void override_types(const struct xd_image *img, struct type_list *l)
{
	l->n = 0;
	for (uint32_t i = 0; img->hdr->override_count && i < img->hdr->override_rule_count; i++) {
		const uint8_t *rule = override_rule(img, i);

		rrset_types(xd_override_first_rrset(rule), xd_override_nrrsets(rule), l);
	}
}

/* Every type the image holds but those the table holds no answers to, as
 * a list for the names whose answer a chain's end decides, and a type it
 * does not hold.  Past XD_ANSWER_TYPES_MAX types the list is
 * full, and such names go to the workers whole (compile_name). */
static int image_types(const struct xd_image *img, struct type_list *out, uint16_t *probe)
{
	const uint32_t *hash = (const uint32_t *)(img->base + img->hdr->name_hash);
	uint8_t *bitmap = calloc(65536 / 8, 1);
	int rc = -ENOSPC;

	if (!bitmap)
		return -ENOMEM;
	for (uint32_t i = 0; i < img->hdr->name_hash_size; i++) {
		uint32_t off = xd_ld32((const uint8_t *)(hash + i));
		const uint8_t *n = img->base + off, *rs;

		if (!off)
			continue;
		rs = xd_node_first_rrset(n);
		for (uint16_t k = 0; k < xd_node_nrrsets(n); k++, rs = xd_rrset_next(rs))
			bitmap[xd_rrset_type(rs) / 8] |= (uint8_t)(1u << (xd_rrset_type(rs) % 8));
	}
	out->n = 0;
	for (uint32_t t = 1; t < 65536; t++)
		if (bitmap[t / 8] & (1u << (t % 8)))
			types_add(out, (uint16_t)t);
	for (uint32_t t = XD_PROBE_TYPE_FIRST; t < 65535; t++) {
		if (!(bitmap[t / 8] & (1u << (t % 8)))) {
			*probe = (uint16_t)t;
			rc = 0;
			break;
		}
	}
	free(bitmap);
	return rc;
}

void xd_answers_free(struct xd_answers *t)
{
	if (!t)
		return;
	for (int i = 0; i < XD_ANSWER_CLASSES; i++) {
		free(t->classes[i].keys);
		free(t->classes[i].values);
	}
	if (t->dedup)
		free(t->dedup->slots);
	free(t->dedup);
	free(t->pages);
	free(t);
}

int xd_answers_compile(const struct xd_image *img, struct xd_answers **out, struct xd_error *err)
{
	struct compiling c = { 0 };
	uint64_t start = xd_resolver_clock();
	int rc = -ENOMEM;

	*out = NULL;
	c.t = calloc(1, sizeof(*c.t));
	c.a = malloc(sizeof(*c.a));
	if (!c.t || !c.a || !(c.t->dedup = calloc(1, sizeof(*c.t->dedup))) ||
	    dedup_grow(c.t->dedup))
		goto out_free;
	for (int i = 0; i < XD_ANSWER_CLASSES; i++)
		c.t->classes[i].key_size = key_sizes[i];
	c.a->img = img;
	rc = image_types(img, &c.image_types, &c.probe);
	override_types(img, &c.override_types);
	if (rc == 0)
		rc = compile_nodes(&c);
	if (rc == 0)
		rc = compile_overrides(&c);
	if (rc)
		goto out_free;
	c.t->info.pages = c.t->npages;
	c.t->info.compile_us = (xd_resolver_clock() - start) / 1000;
	free(c.t->dedup->slots);
	free(c.t->dedup);
	c.t->dedup = NULL;
	*out = c.t;
	c.t = NULL;
	rc = 0;
out_free:
	if (rc)
		xd_errorf(err, rc, "cannot compile the XDP answer table: %s",
			  rc == -ENOSPC ? "every private-use type is in the zones" : strerror(-rc));
	xd_answers_free(c.t);
	free(c.keys.slots);
	free(c.a);
	return rc;
}

void xd_answers_info_get(const struct xd_answers *t, struct xd_answers_info *out)
{
	*out = t->info;
}

int xd_answers_entry_get(const struct xd_answers *t, uint64_t index, struct xd_answers_entry *out)
{
	for (int i = 0; i < XD_ANSWER_CLASSES; i++) {
		const struct xd_answer_class *c = &t->classes[i];
		const uint8_t *key;
		const struct xd_answer *v;

		if (index >= c->n) {
			index -= c->n;
			continue;
		}
		key = c->keys + index * c->key_size;
		v = &c->values[index];
		memset(out, 0, sizeof(*out));
		memcpy(&out->qtype, key, 2);
		memcpy(&out->qclass, key + 2, 2);
		memcpy(out->name, key + 8, c->key_size - 8);
		out->name_len = (uint8_t)xd_name_length(out->name);
		out->action = v->action;
		out->also_do = v->also_do;
		memcpy(&out->variant, key + 4, 4);
		out->flags = v->flags;
		out->count[0] = v->ancount;
		out->count[1] = v->nscount;
		out->count[2] = v->arcount;
		out->csum = v->csum;
		out->len = v->len;
		out->sections = v->action == XD_ANSWER_SEND ? page_bytes(t, v->page, v->offset) :
							      NULL;
		return 0;
	}
	return -ENOENT;
}
