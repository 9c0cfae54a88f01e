/*
 * zone_sign.c - signing a zone in the builder (what Knot does on load): its
 * DNSKEYs at the apex, an NSEC chain or an NSEC3 chain (RFC 9276: SHA-1, no
 * salt, no extra iterations, no opt-out), and an RRSIG for every RRset the
 * zone is authoritative for (RFC 4035 2.2: at a delegation only DS and
 * NSEC), made with dnssec_sign.c.  The records go into the builder like
 * the zone file's, so the image and its checks (dnssec_check.c) see a
 * zone signed elsewhere.
 *
 * Keys: the DNSKEY RRset is signed with the keys that have the SEP flag
 * (KSKs), everything else with those that do not (ZSKs); a key set of one
 * kind only (a CSK) signs everything.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zone/builder.h"
#include "zone/dnssec_sign.h"
#include "error.h"
#include "image/image.h"
#include "zone/sign_reuse.h"

#define XD_SEP_FLAG 1 /* DNSKEY flags: the Secure Entry Point bit */
#define XD_BITMAP_MAX (256 * (2 + 32))

struct signer {
	struct xd_builder *b;
	int zone;
	const struct xd_zone_sign_config *cfg;
	struct xd_error *err;
	int source;
	uint32_t negative_ttl; /* RFC 9077: min(SOA TTL, MINIMUM) */
	uint32_t soa_ttl;
	bool has_sep, has_other;
	struct xd_sign_key_info *info; /* per key */
	struct xd_sign_reuse reuse; /* the signatures a reload keeps */
	struct xd_zone_sign_report *report;
	uint32_t soa; /* the SOA record */
	bool follows_served; /* the serial policy applies (cfg->has_served) */
	/* The SOA's RRSIGs, one per key that signs it: their records and
	 * tasks, and whether each was kept from the previous image. */
	uint32_t *soa_sigs;
	size_t *soa_tasks;
	bool *soa_kept;
	int nsoa;
};

static const struct bnode *node_of(const struct signer *s, uint32_t i)
{
	return &s->b->nodes[i];
}

static int add(struct signer *s, uint32_t node, uint16_t type, uint32_t ttl, const uint8_t *rdata,
	       size_t len)
{
	uint8_t owner[XD_NAME_MAX];
	size_t owner_len = xd_builder_node_name(s->b, node, owner);
	int rc = xd_builder_add_record(s->b, s->zone, owner, owner_len, type, XD_CLASS_IN, ttl,
				       rdata, len, s->source, 0);

	return rc < 0 ? xd_errorf(s->err, rc, "cannot add a record while signing") : 0;
}

/* ---- what the zone holds ------------------------------------------------------ */

static int refuse_signed(struct signer *s)
{
	for (size_t i = 0; i < s->b->nnodes; i++) {
		const struct bnode *n = &s->b->nodes[i];

		if (n->zone != s->zone)
			continue;
		for (uint32_t r = n->first; r != XD_NONE; r = s->b->recs[r].next) {
			uint16_t t = s->b->recs[r].type;
			char text[1024];

			if (t != XD_TYPE_RRSIG && t != XD_TYPE_NSEC && t != XD_TYPE_NSEC3 &&
			    t != XD_TYPE_NSEC3PARAM)
				continue;
			xd_builder_node_text(s->b, (uint32_t)i, text, sizeof(text));
			return xd_errorf(s->err, -EEXIST,
					 "%s: the zone is signed already (it has "
					 "%s records): give it the unsigned zone to sign, or serve "
					 "it as it is without keys",
					 text,
					 t == XD_TYPE_RRSIG ? "RRSIG" :
					 t == XD_TYPE_NSEC  ? "NSEC" :
							      "NSEC3");
		}
	}
	return 0;
}

static int soa_ttls(struct signer *s)
{
	const struct bnode *apex = node_of(s, s->b->zones[s->zone].apex);

	for (uint32_t r = apex->first; r != XD_NONE; r = s->b->recs[r].next) {
		const struct brec *rec = &s->b->recs[r];

		if (rec->type == XD_TYPE_SOA && rec->rdlen >= 20) {
			uint32_t minimum = xd_get32(s->b->rdata + rec->rdata + rec->rdlen - 4);

			s->soa = r;
			s->soa_ttl = rec->ttl;
			s->negative_ttl = rec->ttl < minimum ? rec->ttl : minimum;
			return 0;
		}
	}
	return xd_errorf(s->err, -EINVAL, "the zone has no SOA to sign with");
}

/* SERIAL, the first of the five numbers that end SOA RDATA. */
static uint8_t *soa_serial_at(const struct signer *s)
{
	const struct brec *rec = &s->b->recs[s->soa];

	return s->b->rdata + rec->rdata + rec->rdlen - 20;
}

/* The serial policy, before signing: a zone whose own serial is not newer
 * than the one served is signed with the served one (RFC 1982). */
static void serial_from_served(struct signer *s)
{
	uint32_t own = xd_get32(soa_serial_at(s));

	s->report->zone_serial = own;
	s->follows_served = s->cfg->has_served && (int32_t)(own - s->cfg->served_serial) <= 0;
	if (s->follows_served)
		xd_put32(soa_serial_at(s), s->cfg->served_serial);
}

/* Whether the node holds data the zone signs: none at an empty
 * non-terminal; at an unsigned delegation only what the child signs. */
static bool signs_something(const struct signer *s, const struct bnode *n)
{
	if (n->first == XD_NONE)
		return false;
	if (n->flags & XD_NODE_CUT)
		return xd_builder_node_has(s->b, n, XD_TYPE_DS);
	return true;
}

/* ---- type bitmaps (RFC 4034 4.1.2) ----------------------------------------- */

/* Cleared window by window: a chain of a million names would otherwise
 * clear and scan 8 KiB a name. */
struct types {
	uint8_t bits[8192]; /* one bit a type */
	uint64_t windows[4]; /* one bit a window with a type set */
};

static void types_set(struct types *t, uint16_t type)
{
	t->bits[type / 8] |= (uint8_t)(0x80 >> (type % 8));
	t->windows[type >> 14] |= 1ull << ((type >> 8) & 63);
}

static bool window_used(const struct types *t, int w)
{
	return t->windows[w >> 6] & (1ull << (w & 63));
}

/* The types of node n; t was zeroed once, before the first call. */
static void types_of(const struct signer *s, const struct bnode *n, struct types *t)
{
	for (int w = 0; w < 256; w++)
		if (window_used(t, w))
			memset(t->bits + w * 32, 0, 32);
	memset(t->windows, 0, sizeof(t->windows));
	for (uint32_t r = n->first; r != XD_NONE; r = s->b->recs[r].next)
		types_set(t, s->b->recs[r].type);
}

/* The windows of the bitmap into out; their length. */
static size_t types_encode(const struct types *t, uint8_t *out)
{
	size_t len = 0;

	for (int w = 0; w < 256; w++) {
		int last = -1;

		if (!window_used(t, w))
			continue;
		for (int i = 0; i < 32; i++)
			if (t->bits[w * 32 + i])
				last = i;
		out[len] = (uint8_t)w;
		out[len + 1] = (uint8_t)(last + 1);
		memcpy(out + len + 2, t->bits + w * 32, (size_t)last + 1);
		len += 2 + (size_t)last + 1;
	}
	return len;
}

/* ---- the chains ---------------------------------------------------------------- */

/* The names in the chain: every name with data not hidden by a cut or a
 * DNAME (RFC 4035 2.3); for NSEC3, empty non-terminals too (RFC 5155 7.1). */
static int chain_nodes(struct signer *s, bool with_empty, uint32_t **list, size_t *count)
{
	size_t cap = 0, n = 0;

	for (size_t i = 0; i < s->b->nnodes; i++) {
		const struct bnode *node = &s->b->nodes[i];

		if (node->zone != s->zone || (node->flags & XD_NODE_OCCLUDED) ||
		    (node->first == XD_NONE && !with_empty))
			continue;
		if (xd_grow((void **)list, &cap, n + 1, sizeof(**list)))
			return xd_errorf(s->err, -ENOMEM, "out of memory");
		(*list)[n++] = (uint32_t)i;
	}
	*count = n;
	return 0;
}

/* RFC 4034 4: each name's NSEC names the next in canonical order, the last
 * the apex, and lists the name's types with RRSIG and NSEC. */
static int make_nsec_chain(struct signer *s)
{
	uint8_t rdata[XD_NAME_MAX + XD_BITMAP_MAX];
	uint32_t *list = NULL;
	size_t count = 0;
	struct types t = { 0 };
	int rc = chain_nodes(s, false, &list, &count);

	if (rc == 0)
		xd_builder_sort_canonical(s->b, list, count);
	for (size_t i = 0; rc == 0 && i < count; i++) {
		const struct bnode *n = node_of(s, list[i]);
		size_t len = xd_builder_node_name(s->b, list[(i + 1) % count], rdata);

		types_of(s, n, &t);
		types_set(&t, XD_TYPE_NSEC);
		types_set(&t, XD_TYPE_RRSIG);
		len += types_encode(&t, rdata + len);
		rc = add(s, list[i], XD_TYPE_NSEC, s->negative_ttl, rdata, len);
	}
	free(list);
	return rc;
}

struct hashed {
	uint8_t label[XD_NSEC3_LABEL_LEN];
	uint32_t node;
};

static int cmp_hashed(const void *a, const void *b)
{
	return memcmp(((const struct hashed *)a)->label, ((const struct hashed *)b)->label,
		      XD_NSEC3_LABEL_LEN);
}

/* Decodes base32hex (lower case) of the label into the 20-byte hash. */
static void label_hash(const uint8_t *label, uint8_t *hash)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	for (int i = 1; i < XD_NSEC3_LABEL_LEN; i++) {
		uint8_t c = label[i];

		acc = acc << 5 | (uint32_t)(c <= '9' ? c - '0' : c - 'a' + 10);
		bits += 5;
		if (bits >= 8) {
			hash[n++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
}

/* RFC 5155 7.1: an NSEC3 for every name and empty non-terminal, at its
 * hash under the origin, naming the next hash; NSEC3PARAM at the apex. */
static int make_nsec3_chain(struct signer *s)
{
	uint8_t rdata[6 + 1 + 20 + XD_BITMAP_MAX];
	const struct bzone *z = &s->b->zones[s->zone];
	struct hashed *h = NULL;
	uint32_t *list = NULL;
	size_t count = 0;
	struct types t = { 0 };
	uint8_t param[5] = { 1, 0, 0, 0, 0 }; /* SHA-1, flags 0, 0 iterations, no salt */
	int rc = chain_nodes(s, true, &list, &count);

	if (rc == 0 && count)
		h = calloc(count, sizeof(*h));
	if (rc == 0 && count && !h)
		rc = xd_errorf(s->err, -ENOMEM, "out of memory");
	for (size_t i = 0; rc == 0 && i < count; i++) {
		uint8_t owner[XD_NAME_MAX];
		size_t len = xd_builder_node_name(s->b, list[i], owner);

		h[i].node = list[i];
		rc = xd_nsec3_label(owner, len, 1, NULL, 0, 0, h[i].label);
	}
	if (rc == 0 && count > 1)
		qsort(h, count, sizeof(*h), cmp_hashed);
	for (size_t i = 0; rc == 0 && i < count; i++) {
		const struct bnode *n = node_of(s, h[i].node);
		uint8_t owner[XD_NAME_MAX];
		size_t len;

		rdata[0] = 1; /* SHA-1 */
		rdata[1] = 0; /* no opt-out */
		xd_put16(rdata + 2, 0); /* iterations */
		rdata[4] = 0; /* salt length */
		rdata[5] = 20;
		label_hash(h[(i + 1) % count].label, rdata + 6);
		types_of(s, n, &t);
		if (signs_something(s, n))
			types_set(&t, XD_TYPE_RRSIG);
		if (n->name_len == 0)
			types_set(&t, XD_TYPE_NSEC3PARAM);
		len = 26 + types_encode(&t, rdata + 26);
		memcpy(owner, h[i].label, XD_NSEC3_LABEL_LEN);
		memcpy(owner + XD_NSEC3_LABEL_LEN, z->origin, z->origin_len);
		rc = xd_builder_add_record(s->b, s->zone, owner, XD_NSEC3_LABEL_LEN + z->origin_len,
					   XD_TYPE_NSEC3, XD_CLASS_IN, s->negative_ttl, rdata, len,
					   s->source, 0);
		if (rc < 0)
			rc = xd_errorf(s->err, rc, "cannot add an NSEC3 record");
	}
	if (rc == 0)
		rc = add(s, z->apex, XD_TYPE_NSEC3PARAM, 0, param, sizeof(param));
	free(h);
	free(list);
	return rc;
}

/* ---- signatures ------------------------------------------------------------- */

/* Whether key number k signs RRsets of `type`. */
static bool key_signs(const struct signer *s, int k, uint16_t type)
{
	bool sep = s->info[k].flags & XD_SEP_FLAG;

	if (!s->has_sep || !s->has_other)
		return true; /* one kind of key: it signs everything */
	return type == XD_TYPE_DNSKEY ? sep : !sep;
}

/*
 * The signatures are made in parallel, in chunks: the RRsets to sign are
 * listed first (tasks: an RRset and a key), a chunk of tasks is signed by
 * as many threads as there are CPUs (ECDSA and Ed25519 signing is nearly
 * all of the time: about 27 us a signature here), and only then are its
 * RRSIGs added, one thread, to the builder, whose arenas move as they grow.
 */
#define XD_SIGN_CHUNK 16384
#define XD_SIGN_THREADS_MAX 64
#define XD_SIG_SLOT 352 /* RRSIG RDATA: 18 + a 255-byte signer + 64 */

struct sign_task {
	uint32_t node;
	uint32_t recs; /* first index in struct tasks.recs */
	uint32_t nrecs;
	uint16_t type;
	uint16_t key;
	uint32_t ttl; /* the RRset's, as the layout gives it */
};

struct tasks {
	struct sign_task *task;
	size_t n, cap;
	uint32_t *recs; /* record indices, the RRsets' one after another */
	size_t nrecs, recs_cap;
};

struct chunk {
	struct signer *s;
	const struct tasks *t;
	size_t first, count; /* the chunk's tasks */
	uint8_t *sigs; /* XD_SIG_SLOT bytes a task */
	int *lens; /* each one's length, or a negative errno */
	bool *kept; /* each one: the previous image's, not made */
	_Atomic size_t next; /* the next task a thread takes */
};

/* The tasks of one RRset (its records recs[0..n)): one per key that
 * signs it, with the TTL the layout gives the RRset (its first record's). */
static int add_tasks(struct signer *s, struct tasks *t, uint32_t node, uint16_t type,
		     const uint32_t *recs, size_t n)
{
	uint32_t first = recs[0];

	for (size_t k = 1; k < n; k++)
		if (recs[k] < first)
			first = recs[k];
	if (xd_grow((void **)&t->recs, &t->recs_cap, t->nrecs + n, sizeof(*t->recs)))
		return xd_errorf(s->err, -ENOMEM, "out of memory");
	memcpy(t->recs + t->nrecs, recs, n * sizeof(*recs));
	for (int k = 0; k < s->cfg->nkeys; k++) {
		struct sign_task *task;

		if (!key_signs(s, k, type))
			continue;
		if (xd_grow((void **)&t->task, &t->cap, t->n + 1, sizeof(*t->task)))
			return xd_errorf(s->err, -ENOMEM, "out of memory");
		task = &t->task[t->n++];
		task->node = node;
		task->recs = (uint32_t)t->nrecs;
		task->nrecs = (uint32_t)n;
		task->type = type;
		task->key = (uint16_t)k;
		task->ttl = s->b->recs[first].ttl;
	}
	t->nrecs += n;
	return 0;
}

static const struct xd_builder *type_ctx;

static int cmp_type(const void *a, const void *b)
{
	uint16_t x = type_ctx->recs[*(const uint32_t *)a].type;
	uint16_t y = type_ctx->recs[*(const uint32_t *)b].type;

	return x < y ? -1 : x > y;
}

/* The tasks of node i: its RRsets that need an RRSIG, grouped by type. */
static int list_node(struct signer *s, struct tasks *t, uint32_t i, uint32_t **recs, size_t *cap)
{
	const struct bnode *n = node_of(s, i);
	size_t count = 0;
	int rc = 0;

	for (uint32_t r = n->first; r != XD_NONE; r = s->b->recs[r].next) {
		if (xd_grow((void **)recs, cap, count + 1, sizeof(**recs)))
			return xd_errorf(s->err, -ENOMEM, "out of memory");
		(*recs)[count++] = r;
	}
	type_ctx = s->b;
	qsort(*recs, count, sizeof(**recs), cmp_type);
	for (size_t start = 0, end; rc == 0 && start < count; start = end) {
		uint16_t type = s->b->recs[(*recs)[start]].type;

		for (end = start; end < count && s->b->recs[(*recs)[end]].type == type; end++)
			;
		if (xd_builder_signed_type(n, type))
			rc = add_tasks(s, t, i, type, *recs + start, end - start);
	}
	return rc;
}

/* One task's RRSIG into its slot, kept from the previous image or made
 * (the builder and that image are only read meanwhile). */
static int sign_task(struct signer *s, const struct tasks *t, const struct sign_task *task,
		     uint8_t *out, bool *kept)
{
	const uint8_t *rdatas[256], **many = NULL, **ptrs = rdatas;
	uint16_t lens[256], *many_lens = NULL, *lp = lens;
	uint8_t owner[XD_NAME_MAX];
	const struct bzone *z = &s->b->zones[s->zone];
	struct xd_sign_rrset rrset = { 0 };
	struct xd_error err = { "" };
	int rc;

	if (task->nrecs > 256) {
		many = malloc(task->nrecs * sizeof(*many));
		many_lens = malloc(task->nrecs * sizeof(*many_lens));
		if (!many || !many_lens) {
			free(many);
			free(many_lens);
			return -ENOMEM;
		}
		ptrs = many;
		lp = many_lens;
	}
	for (uint32_t k = 0; k < task->nrecs; k++) {
		const struct brec *r = &s->b->recs[t->recs[task->recs + k]];

		ptrs[k] = s->b->rdata + r->rdata;
		lp[k] = r->rdlen;
	}
	rrset.owner = owner;
	rrset.owner_len = xd_builder_node_name(s->b, task->node, owner);
	rrset.signer = z->origin;
	rrset.signer_len = z->origin_len;
	rrset.type = task->type;
	rrset.ttl = task->ttl;
	rrset.inception = s->cfg->inception;
	rrset.expiration = s->cfg->expiration;
	rrset.rdatas = ptrs;
	rrset.rdlens = lp;
	rrset.count = (int)task->nrecs;
	rc = xd_sign_reuse_find(&s->reuse, task->key, &s->info[task->key], &rrset, out,
				XD_SIG_SLOT);
	*kept = rc > 0;
	if (rc == 0)
		rc = xd_sign_rrset(s->cfg->keys[task->key], &rrset, out, XD_SIG_SLOT, &err);
	free(many);
	free(many_lens);
	return rc;
}

static void *sign_worker(void *arg)
{
	struct chunk *c = arg;

	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);

		if (i >= c->count)
			return NULL;
		c->lens[i] = sign_task(c->s, c->t, &c->t->task[c->first + i],
				       c->sigs + i * XD_SIG_SLOT, &c->kept[i]);
	}
}

static int sign_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > XD_SIGN_THREADS_MAX ? XD_SIGN_THREADS_MAX : (int)n;
}

static void note(struct xd_zone_sign_report *report, bool kept, uint32_t expiration)
{
	if (kept)
		report->kept++;
	else
		report->made++;
	if ((int32_t)(expiration - report->earliest_expiration) < 0)
		report->earliest_expiration = expiration;
}

/* Signs tasks [first, first + count) in parallel, then adds the RRSIGs. */
static int sign_chunk(struct signer *s, const struct tasks *t, struct chunk *c, size_t first,
		      size_t count)
{
	pthread_t threads[XD_SIGN_THREADS_MAX];
	int nthreads = sign_threads(), started = 0, rc = 0;

	c->first = first;
	c->count = count;
	atomic_store(&c->next, 0);
	for (; started < nthreads - 1; started++)
		if (pthread_create(&threads[started], NULL, sign_worker, c) != 0)
			break; /* fewer threads: the caller's does the rest */
	sign_worker(c);
	for (int k = 0; k < started; k++)
		pthread_join(threads[k], NULL);
	for (size_t i = 0; rc == 0 && i < count; i++) {
		const struct sign_task *task = &t->task[first + i];
		const uint8_t *sig = c->sigs + i * XD_SIG_SLOT;

		if (c->lens[i] < 0) {
			rc = xd_errorf(s->err, c->lens[i], "libcrypto could not sign with key %d",
				       task->key + 1);
			break;
		}
		rc = add(s, task->node, XD_TYPE_RRSIG, task->ttl, sig, (size_t)c->lens[i]);
		note(s->report, c->kept[i], xd_get32(sig + 8));
		if (rc == 0 && task->type == XD_TYPE_SOA && s->nsoa < s->cfg->nkeys) {
			s->soa_sigs[s->nsoa] = (uint32_t)(s->b->nrecs - 1); /* add() appends */
			s->soa_tasks[s->nsoa] = first + i;
			s->soa_kept[s->nsoa++] = c->kept[i];
		}
	}
	return rc;
}

/* The serial policy, after signing: when any signature was made under the
 * served serial, the SOA takes the next one and its RRSIGs are made again
 * over it, in place (a key's signatures are all one size). */
static int serial_next(struct signer *s, const struct tasks *t)
{
	if (!s->follows_served || s->report->made == 0)
		return 0;
	xd_put32(soa_serial_at(s), s->cfg->served_serial + 1);
	for (int k = 0; k < s->nsoa; k++) {
		struct brec *rec = &s->b->recs[s->soa_sigs[k]];
		uint8_t sig[XD_SIG_SLOT];
		bool kept;
		int len = sign_task(s, t, &t->task[s->soa_tasks[k]], sig, &kept);

		if (len < 0)
			return xd_errorf(s->err, len, "libcrypto could not sign the SOA");
		if ((size_t)len != rec->rdlen)
			return xd_errorf(s->err, -EINVAL,
					 "the SOA's new signature is %d bytes, the old one %u", len,
					 rec->rdlen);
		memcpy(s->b->rdata + rec->rdata, sig, (size_t)len);
		if (s->soa_kept[k]) {
			s->report->kept--;
			s->report->made++;
		}
	}
	return 0;
}

static int sign_all(struct signer *s)
{
	struct tasks t = { 0 };
	struct chunk c = { .s = s, .t = &t };
	uint32_t *recs = NULL;
	size_t cap = 0;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < s->b->nnodes; i++) {
		const struct bnode *n = &s->b->nodes[i];

		if (n->zone == s->zone && !(n->flags & XD_NODE_OCCLUDED) && n->first != XD_NONE)
			rc = list_node(s, &t, (uint32_t)i, &recs, &cap);
	}
	free(recs);
	c.sigs = malloc((size_t)XD_SIGN_CHUNK * XD_SIG_SLOT);
	c.lens = malloc(XD_SIGN_CHUNK * sizeof(*c.lens));
	c.kept = malloc(XD_SIGN_CHUNK * sizeof(*c.kept));
	if (rc == 0 && (!c.sigs || !c.lens || !c.kept))
		rc = xd_errorf(s->err, -ENOMEM, "out of memory");
	for (size_t first = 0; rc == 0 && first < t.n; first += XD_SIGN_CHUNK)
		rc = sign_chunk(s, &t, &c, first,
				t.n - first < XD_SIGN_CHUNK ? t.n - first : XD_SIGN_CHUNK);
	if (rc == 0)
		rc = serial_next(s, &t);
	free(c.sigs);
	free(c.lens);
	free(c.kept);
	free(t.task);
	free(t.recs);
	return rc;
}

/* ---- the whole zone --------------------------------------------------------- */

int xd_builder_sign_zone(struct xd_builder *b, int zone, const struct xd_zone_sign_config *cfg,
			 struct xd_zone_sign_report *report, struct xd_error *err)
{
	struct signer s = { .b = b, .zone = zone, .cfg = cfg, .err = err, .report = report };
	const struct bzone *z;
	int rc;

	if (zone < 0 || (size_t)zone >= b->nzones)
		return xd_errorf(err, -EINVAL, "no zone %d", zone);
	if (cfg->nkeys < 1)
		return xd_errorf(err, -EINVAL, "signing needs at least one key");
	if ((int32_t)(cfg->expiration - cfg->inception) <= 0)
		return xd_errorf(err, -EINVAL, "signatures would expire before they are valid");
	z = &b->zones[zone];
	*report = (struct xd_zone_sign_report){ .earliest_expiration = cfg->expiration };
	s.source = z->source;
	s.info = calloc((size_t)cfg->nkeys, sizeof(*s.info));
	s.soa_sigs = calloc((size_t)cfg->nkeys, sizeof(*s.soa_sigs));
	s.soa_tasks = calloc((size_t)cfg->nkeys, sizeof(*s.soa_tasks));
	s.soa_kept = calloc((size_t)cfg->nkeys, sizeof(*s.soa_kept));
	if (!s.info || !s.soa_sigs || !s.soa_tasks || !s.soa_kept) {
		rc = xd_errorf(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (int k = 0; k < cfg->nkeys; k++) {
		xd_sign_key_info(cfg->keys[k], &s.info[k]);
		s.has_sep |= (s.info[k].flags & XD_SEP_FLAG) != 0;
		s.has_other |= !(s.info[k].flags & XD_SEP_FLAG);
	}
	xd_builder_mark(b);
	rc = refuse_signed(&s);
	if (rc == 0)
		rc = soa_ttls(&s);
	if (rc == 0)
		serial_from_served(&s);
	for (int k = 0; rc == 0 && k < cfg->nkeys; k++)
		rc = add(&s, z->apex, XD_TYPE_DNSKEY, s.soa_ttl, s.info[k].dnskey,
			 s.info[k].dnskey_len);
	if (rc == 0)
		rc = cfg->nsec3 ? make_nsec3_chain(&s) : make_nsec_chain(&s);
	if (rc == 0)
		xd_builder_mark(b); /* the NSEC3 names are nodes now */
	if (rc == 0 &&
	    xd_sign_reuse_open(&s.reuse, cfg->previous, z->origin, z->origin_len, cfg->keys,
			       cfg->nkeys, cfg->inception, cfg->keep_after) < 0)
		rc = xd_errorf(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = sign_all(&s);
	if (rc == 0)
		report->serial = xd_get32(soa_serial_at(&s));
	xd_sign_reuse_close(&s.reuse);
out:
	free(s.soa_kept);
	free(s.soa_tasks);
	free(s.soa_sigs);
	free(s.info);
	return rc;
}
