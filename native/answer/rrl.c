/*
 * rrl.c - response rate limiting (RRL), the defence against reflection and
 * amplification, with the semantics operators know from BIND and Knot.
 *
 * After a worker answers a UDP query it asks xd_rrl_filter what to do with
 * the response, of the kind the answering core noted (struct
 * xd_response_kind); xd_rrl_account reads the kind from the response
 * itself, for responses the core did not write.  Responses are counted in
 * buckets: one client prefix (/24, /56 by default) and one kind of
 * response; for answers also the name and type asked, for NODATA and
 * NXDOMAIN the zone (the owner of the SOA in the authority section), for
 * referrals the delegation (the owner of the NS set), as BIND keys them, so
 * that one busy resolver asking many names is not limited by another's
 * flood of one name.  Every bucket earns its kind's rate in credits a
 * second (at most one second's worth) and spends one per response; below
 * zero the response is limited, down to -window * rate, so the rate is
 * averaged over the window.  Every slip-th limited response of a bucket
 * goes out truncated, so that a real client behind a spoofed address
 * retries over TCP, which is never limited.
 *
 * Each worker owns its table: no locks and no atomics on the fast path.
 * The table has a fixed size, set-associative with least recently used
 * replacement, so a flood of source prefixes cannot grow memory; it can
 * only push out older buckets, which then start again with full credit.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "wire/prefixes.h"
#include "answer/answer.h"
#include "answer/cookie.h"
#include "error.h"
#include "answer/rrl.h"
#include "wire/wire.h"

/* Rates above this are no limit worth having; it keeps window * rate far
 * inside an int64_t. */
#define XD_RRL_RATE_MAX 1000000
/* Header counts (RFC 1035 4.1.1): QDCOUNT at 4, ANCOUNT 6, NSCOUNT 8,
 * ARCOUNT 10. */
#define XD_HDR_QDCOUNT 4
#define XD_HDR_ANCOUNT 6
#define XD_HDR_NSCOUNT 8
#define XD_HDR_ARCOUNT 10
/* TYPE, CLASS, TTL and RDLENGTH after an RR's owner. */
#define XD_RR_FIXED_LEN 10

_Static_assert(XD_RRL_CLASSES == XD_RRL_KINDS && XD_RRL_ANSWER == XD_RRL_KIND_ANSWER,
	       "the XDP program counts the kinds of engine.h");
_Static_assert(sizeof(struct xd_rrl_entry) == 32, "four buckets in two cache lines");

/* ---- reading a response ------------------------------------------------------ */

/* The offset after the RR at pos, or 0 when it is malformed. */
static size_t rr_skip(const uint8_t *msg, size_t len, size_t pos)
{
	uint8_t name[XD_NAME_MAX];
	size_t next;

	if (xd_name_read(msg, len, pos, name, false, &next) < 0 || next + XD_RR_FIXED_LEN > len)
		return 0;
	next += XD_RR_FIXED_LEN + xd_get16(msg + next + 8);
	return next <= len ? next : 0;
}

/* Reads the first authority RR's owner into r->name and returns its type,
 * or -1 when there is none; pos is the answer section's start. */
static int authority_first(const uint8_t *msg, size_t len, size_t pos, struct xd_response_kind *r)
{
	uint16_t an = xd_get16(msg + XD_HDR_ANCOUNT);
	size_t next;
	int n;

	if (!xd_get16(msg + XD_HDR_NSCOUNT))
		return -1;
	for (uint16_t i = 0; i < an && pos; i++)
		pos = rr_skip(msg, len, pos);
	if (!pos)
		return -1;
	n = xd_name_read(msg, len, pos, r->name, true, &next);
	if (n < 0 || next + 2 > len)
		return -1;
	r->name_len = (uint8_t)n;
	return xd_get16(msg + next);
}

/* The kind of a NOERROR response without answers: a referral has AA clear
 * and the delegation's NS set in authority (RFC 1034 4.3.2 step 3b). */
static int kind_of_empty(const uint8_t *msg, size_t len, size_t pos, struct xd_response_kind *r)
{
	int type = authority_first(msg, len, pos, r);

	if (type == XD_TYPE_NS && !(xd_get16(msg + 2) & XD_FLAG_AA))
		return XD_RRL_REFERRAL;
	return XD_RRL_NODATA;
}

static int response_parse(const uint8_t *msg, size_t len, struct xd_response_kind *r)
{
	uint16_t flags, rcode;
	size_t pos = XD_DNS_HEADER_LEN;
	int n;

	if (len < XD_DNS_HEADER_LEN || !(xd_get16(msg + 2) & XD_FLAG_QR))
		return -EINVAL;
	flags = xd_get16(msg + 2);
	rcode = flags & 0xf;
	r->qtype = 0;
	r->name_len = 0;
	if (rcode != XD_RCODE_NOERROR && rcode != XD_RCODE_NXDOMAIN) {
		r->kind = XD_RRL_ERROR; /* counted per prefix alone */
		return 0;
	}
	if (xd_get16(msg + XD_HDR_QDCOUNT) != 1)
		return -EINVAL;
	n = xd_name_read(msg, len, pos, r->name, true, &pos);
	if (n < 0 || pos + 4 > len)
		return -EINVAL;
	r->name_len = (uint8_t)n;
	pos += 4;
	if (rcode == XD_RCODE_NXDOMAIN) {
		r->kind = XD_RRL_NXDOMAIN;
		authority_first(msg, len, pos, r); /* the zone, else the qname */
		return 0;
	}
	if (xd_get16(msg + XD_HDR_ANCOUNT)) {
		r->kind = XD_RRL_ANSWER;
		r->qtype = xd_get16(msg + pos - 4);
		return 0;
	}
	r->kind = kind_of_empty(msg, len, pos, r);
	return 0;
}

int xd_rrl_classify(const uint8_t *resp, size_t len)
{
	struct xd_response_kind r;
	int rc = response_parse(resp, len, &r);

	return rc ? rc : r.kind;
}

int xd_rrl_slip(uint8_t *resp, size_t len)
{
	uint8_t name[XD_NAME_MAX];
	size_t end = XD_DNS_HEADER_LEN;

	if (len < XD_DNS_HEADER_LEN)
		return -EINVAL;
	/* Keep the question when it reads: the client matches on it. */
	if (xd_get16(resp + XD_HDR_QDCOUNT) == 1 &&
	    xd_name_read(resp, len, end, name, false, &end) >= 0 && end + 4 <= len) {
		end += 4;
	} else {
		end = XD_DNS_HEADER_LEN;
		xd_put16(resp + XD_HDR_QDCOUNT, 0);
	}
	xd_put16(resp + 2, xd_get16(resp + 2) | XD_FLAG_TC);
	xd_put16(resp + XD_HDR_ANCOUNT, 0);
	xd_put16(resp + XD_HDR_NSCOUNT, 0);
	xd_put16(resp + XD_HDR_ARCOUNT, 0);
	return (int)end;
}

/* ---- buckets ------------------------------------------------------------------ */

/* The client's prefix into ev (family, addr, prefix_len). */
static void client_prefix(const struct xd_rrl *rrl, const struct xd_client *client,
			  struct xd_rrl_event *ev)
{
	bool v4 = client->family == AF_INET;

	memset(ev->addr, 0, sizeof(ev->addr));
	memcpy(ev->addr, client->addr, v4 ? 4 : 16);
	ev->family = client->family;
	ev->prefix_len = v4 ? rrl->ipv4_prefix : rrl->ipv6_prefix;
	xd_mask_prefix(ev->addr, v4 ? 4 : 16, ev->prefix_len);
}

uint64_t xd_rrl_name_hash(const uint8_t *name, size_t len)
{
	/* Unkeyed: a name's hash only picks the bucket through the keyed
	 * xd_rrl_bucket_key, and the XDP answer table stores it. */
	return xd_hash(name, len, XD_RRL_NAME_SEED);
}

static uint64_t bucket_key(const struct xd_rrl *rrl, const struct xd_rrl_event *prefix,
			   const struct xd_response_kind *r)
{
	return xd_rrl_bucket_key(rrl->seed, prefix->addr, (uint32_t)prefix->family,
				 (uint32_t)r->kind, r->qtype,
				 xd_rrl_name_hash(r->name, (size_t)r->name_len));
}

static void ring_push(struct xd_rrl_ring *r, const struct xd_rrl_event *ev)
{
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);

	if (head - atomic_load_explicit(&r->tail, memory_order_acquire) >= XD_RRL_RING)
		return; /* the log is behind: lose the event, not memory */
	r->events[head % XD_RRL_RING] = *ev;
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

int xd_rrl_ring_take(struct xd_rrl_ring *r, struct xd_rrl_event *out, int max)
{
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	int n = 0;

	while (tail != head && n < max)
		out[n++] = r->events[tail++ % XD_RRL_RING];
	atomic_store_explicit(&r->tail, tail, memory_order_release);
	return n;
}

/* A limited response: one event per bucket per window for the log, and
 * every slip-th goes out truncated. */
static int limited(struct xd_rrl_state *s, const struct xd_rrl *rrl, struct xd_rrl_entry *e,
		   struct xd_rrl_event *ev, uint32_t now)
{
	int note, slip = xd_rrl_bucket_limited(e, rrl->window, rrl->slip, now, &note);

	if (note) {
		ev->time = now;
		ring_push(&s->ring, ev);
	}
	return slip ? XD_RRL_SLIP : XD_RRL_DROP;
}

static bool exempt(const struct xd_rrl *rrl, const struct xd_client *client, int cookie)
{
	/* A valid server cookie proves the address received our earlier
	 * response: it is no spoofed victim (RFC 7873 5.3). */
	if (cookie == XD_COOKIE_VALID)
		return true;
	if (client->family != AF_INET && client->family != AF_INET6)
		return true; /* nobody to count against */
	return rrl->exempt &&
	       xd_acl_action(rrl->exempt, client->family, client->addr) == XD_ACL_DENY;
}

/* The verdict for a response of kind r to a client that is not exempt. */
static int account_kind(struct xd_rrl_state *s, const struct xd_rrl *rrl,
			const struct xd_client *client, const struct xd_response_kind *r,
			uint32_t now)
{
	struct xd_rrl_event ev;
	struct xd_rrl_entry *e;
	uint32_t rate = rrl->rate[r->kind];
	uint64_t key;

	if (!rate)
		return XD_RRL_SEND;
	client_prefix(rrl, client, &ev);
	ev.kind = r->kind;
	key = bucket_key(rrl, &ev, r);
	e = xd_rrl_bucket_find(&s->sets[key & s->mask], key, rate, now);
	if (xd_rrl_bucket_debit(e, rate, rrl->window, now))
		return XD_RRL_SEND;
	return limited(s, rrl, e, &ev, now);
}

int xd_rrl_account(struct xd_rrl_state *s, const struct xd_rrl *rrl, const struct xd_client *client,
		   const uint8_t *resp, size_t len, int cookie, uint32_t now)
{
	struct xd_response_kind r;

	if (exempt(rrl, client, cookie) || response_parse(resp, len, &r))
		return XD_RRL_SEND;
	return account_kind(s, rrl, client, &r, now);
}

/* The verdict for the response the answering core just gave: its kind
 * and name as the core noted them (no second parse), else as read back. */
static int account_answer(struct xd_rrl_state *s, const struct xd_rrl *rrl,
			  const struct xd_answer_ctx *ctx, const uint8_t *resp, size_t len)
{
	if (ctx->kind.kind < 0)
		return xd_rrl_account(s, rrl, &ctx->client, resp, len, ctx->cookie, ctx->rrl_now);
	if (exempt(rrl, &ctx->client, ctx->cookie))
		return XD_RRL_SEND;
	return account_kind(s, rrl, &ctx->client, &ctx->kind, ctx->rrl_now);
}

int xd_rrl_filter(struct xd_rrl_state *s, const struct xd_rrl *rrl, const struct xd_answer_ctx *ctx,
		  uint8_t *resp, int len, struct xd_rrl_counts *counts)
{
	int verdict = account_answer(s, rrl, ctx, resp, (size_t)len);

	if (verdict == XD_RRL_SEND)
		return len;
	counts->limited++;
	if (verdict == XD_RRL_DROP)
		return 0;
	counts->slipped++;
	return xd_rrl_slip(resp, (size_t)len);
}

/* ---- per-worker state --------------------------------------------------------- */

int xd_rrl_state_sync(struct xd_rrl_state *s, const struct xd_rrl *rrl)
{
	const struct xd_rrl_shared *sh = s->shared;

	if (s->generation == rrl->generation && s->from == sh)
		return s->sets ? 0 : -ENOMEM;
	/* New settings or new shared buckets (XDP mode started or stopped):
	 * start over in them, since rates and prefixes changed what the old
	 * buckets mean. */
	if (s->owned)
		free(s->sets);
	s->generation = rrl->generation;
	s->from = sh;
	s->mask = rrl->table_size / XD_RRL_WAYS - 1;
	if (sh && sh->generation == rrl->generation && sh->nsets == s->mask + 1) {
		s->sets = sh->sets;
		s->owned = false;
		return 0;
	}
	/* Buckets of other settings: the settings just changed, and the next
	 * batch finds the new buckets. */
	s->sets = calloc(s->mask + 1, sizeof(*s->sets));
	s->owned = s->sets != NULL;
	return s->sets ? 0 : -ENOMEM;
}

struct xd_rrl_shared *xd_rrl_shared_new(const struct xd_rrl *rrl)
{
	struct xd_rrl_shared *sh = calloc(1, sizeof(*sh));

	if (!sh)
		return NULL;
	sh->generation = rrl->generation;
	sh->nsets = rrl->table_size / XD_RRL_WAYS;
	sh->sets = calloc(sh->nsets, sizeof(*sh->sets));
	if (!sh->sets) {
		free(sh);
		return NULL;
	}
	return sh;
}

void xd_rrl_shared_free(struct xd_rrl_shared *sh)
{
	if (!sh)
		return;
	free(sh->sets);
	free(sh);
}

void xd_rrl_state_release(struct xd_rrl_state *s)
{
	if (s->owned)
		free(s->sets);
	s->sets = NULL;
	s->owned = false;
	s->generation = 0;
}

uint32_t xd_rrl_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}

void xd_rrl_settings_get(const struct xd_rrl *rrl, struct xd_rrl_settings *out)
{
	memset(out, 0, sizeof(*out));
	out->seed = rrl->seed;
	for (int i = 0; i < XD_RRL_KINDS; i++)
		out->rate[i] = rrl->rate[i];
	out->window = rrl->window;
	out->slip = rrl->slip;
	out->nsets = rrl->table_size / XD_RRL_WAYS;
	out->ipv4_prefix = rrl->ipv4_prefix;
	out->ipv6_prefix = rrl->ipv6_prefix;
	out->exempt_v4 = rrl->exempt && rrl->exempt->v4.n > 0;
	out->exempt_v6 = rrl->exempt && rrl->exempt->v6.n > 0;
}

/* ---- settings ------------------------------------------------------------------ */

void xd_rrl_free(struct xd_rrl *rrl)
{
	if (!rrl)
		return;
	xd_acl_free(rrl->exempt);
	free(rrl);
}

static uint32_t round_up_pow2(uint32_t n)
{
	uint32_t p = XD_RRL_WAYS;

	while (p < n)
		p <<= 1;
	return p;
}

static int check_config(const struct xd_rrl_config *cfg, struct xd_error *err)
{
	const uint32_t rates[] = { cfg->rate, cfg->nxdomain_rate, cfg->errors_rate,
				   cfg->nodata_rate, cfg->referrals_rate };
	const char *names[] = { "rate", "nxdomain_rate", "errors_rate", "nodata_rate",
				"referrals_rate" };

	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
		if (rates[i] > XD_RRL_RATE_MAX)
			return xd_errorf(err, -EINVAL, "RRL %s %u: at most %d", names[i], rates[i],
					 XD_RRL_RATE_MAX);
	if (cfg->window < 1 || cfg->window > XD_RRL_WINDOW_MAX)
		return xd_errorf(err, -EINVAL, "RRL window %u: expected 1 to %d seconds",
				 cfg->window, XD_RRL_WINDOW_MAX);
	if (cfg->slip > XD_RRL_SLIP_MAX)
		return xd_errorf(err, -EINVAL, "RRL slip %u: expected 0 to %d", cfg->slip,
				 XD_RRL_SLIP_MAX);
	if (cfg->ipv4_prefix > 32 || cfg->ipv6_prefix > 128)
		return xd_errorf(err, -EINVAL,
				 "RRL prefix lengths %u and %u: at most 32 "
				 "and 128",
				 cfg->ipv4_prefix, cfg->ipv6_prefix);
	if (cfg->table_size < 1 || cfg->table_size > XD_RRL_TABLE_MAX)
		return xd_errorf(err, -EINVAL, "RRL table_size %u: expected 1 to %d",
				 cfg->table_size, XD_RRL_TABLE_MAX);
	if (cfg->nexempt < 0 || (cfg->nexempt > 0 && !cfg->exempt))
		return xd_errorf(err, -EINVAL, "RRL: %d exempt prefixes", cfg->nexempt);
	return 0;
}

/* The exempt prefixes as an ACL whose DENY means "exempt": the ACL's
 * longest-prefix lookup is what the check needs. */
static int build_exempt(const struct xd_rrl_config *cfg, struct xd_acl **out, struct xd_error *err)
{
	struct xd_acl_rule *rules;
	int rc;

	*out = NULL;
	if (!cfg->nexempt)
		return 0;
	rules = malloc((size_t)cfg->nexempt * sizeof(*rules));
	if (!rules)
		return xd_errorf(err, -ENOMEM, "RRL: out of memory");
	for (int i = 0; i < cfg->nexempt; i++) {
		rules[i] = cfg->exempt[i];
		rules[i].action = XD_ACL_DENY;
	}
	rc = xd_acl_build(rules, cfg->nexempt, XD_ACL_ALLOW, XD_VERDICT_DROP, out, err);
	free(rules);
	return rc;
}

static uint64_t random_seed(void)
{
	uint64_t seed;

	if (getrandom(&seed, sizeof(seed), 0) == sizeof(seed))
		return seed;
	/* Without the kernel's randomness the hash is still correct, only
	 * easier to aim at one set. */
	return (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
}

int xd_rrl_build(const struct xd_rrl_config *cfg, struct xd_rrl **out, struct xd_error *err)
{
	struct xd_rrl *rrl;
	int rc = check_config(cfg, err);

	*out = NULL;
	if (rc)
		return rc;
	rrl = calloc(1, sizeof(*rrl));
	if (!rrl)
		return xd_errorf(err, -ENOMEM, "RRL: out of memory");
	rc = build_exempt(cfg, &rrl->exempt, err);
	if (rc) {
		free(rrl);
		return rc;
	}
	rrl->seed = random_seed();
	rrl->rate[XD_RRL_ANSWER] = cfg->rate;
	rrl->rate[XD_RRL_NODATA] = cfg->nodata_rate;
	rrl->rate[XD_RRL_REFERRAL] = cfg->referrals_rate;
	rrl->rate[XD_RRL_NXDOMAIN] = cfg->nxdomain_rate;
	rrl->rate[XD_RRL_ERROR] = cfg->errors_rate;
	rrl->window = cfg->window;
	rrl->slip = cfg->slip;
	rrl->table_size = round_up_pow2(cfg->table_size);
	rrl->ipv4_prefix = (uint8_t)cfg->ipv4_prefix;
	rrl->ipv6_prefix = (uint8_t)cfg->ipv6_prefix;
	rrl->generation = 1;
	*out = rrl;
	return 0;
}

/* ---- a table of its own, for tests --------------------------------------------- */

struct xd_rrl_table {
	struct xd_rrl *rrl;
	struct xd_rrl_state state;
	struct xd_answer_ctx ctx; /* zeroed once, as a worker's per batch */
};

int xd_rrl_table_new(const struct xd_rrl_config *cfg, struct xd_rrl_table **out,
		     struct xd_error *err)
{
	struct xd_rrl_table *t = calloc(1, sizeof(*t));
	int rc;

	*out = NULL;
	if (!t)
		return xd_errorf(err, -ENOMEM, "RRL: out of memory");
	rc = xd_rrl_build(cfg, &t->rrl, err);
	if (rc)
		goto out_table;
	rc = xd_rrl_state_sync(&t->state, t->rrl);
	if (rc) {
		xd_errorf(err, rc, "RRL: out of memory for %u buckets", t->rrl->table_size);
		goto out_rrl;
	}
	*out = t;
	return 0;

out_rrl:
	xd_rrl_free(t->rrl);
out_table:
	free(t);
	return rc;
}

void xd_rrl_table_free(struct xd_rrl_table *t)
{
	if (!t)
		return;
	xd_rrl_state_release(&t->state);
	xd_rrl_free(t->rrl);
	free(t);
}

int xd_rrl_table_check(struct xd_rrl_table *t, const struct xd_client *client, const uint8_t *resp,
		       size_t len, int cookie, uint32_t now)
{
	return xd_rrl_account(&t->state, t->rrl, client, resp, len, cookie, now);
}

int xd_rrl_table_answer(struct xd_rrl_table *t, const struct xd_image *img,
			const struct xd_client *client, uint32_t now, const uint8_t *query,
			size_t qlen, uint8_t *resp, size_t cap)
{
	struct xd_rrl_counts counts = { 0 };
	int len;

	xd_client_set(&t->ctx.client, client->family, client->addr);
	t->ctx.now = now;
	t->ctx.rrl_now = now;
	t->ctx.want_kind = true;
	len = xd_answer_ctx(img, &t->ctx, query, qlen, resp, cap, 0);
	if (len <= 0)
		return len;
	return xd_rrl_filter(&t->state, t->rrl, &t->ctx, resp, len, &counts);
}

int xd_rrl_table_events(struct xd_rrl_table *t, struct xd_rrl_event *out, int max)
{
	return max < 0 ? -EINVAL : xd_rrl_ring_take(&t->state.ring, out, max);
}
