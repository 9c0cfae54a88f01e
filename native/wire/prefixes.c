/*
 * prefixes.c - address prefix tables: ACL rules compiled into sorted
 * tables of prefixes, their longest match, and what it says about a
 * source (the source ACL, engine_acl.c; the zone ACLs, image.c; rate
 * limiting's exempt prefixes, rrl.c).
 *
 * A lookup tries each prefix length present, longest first: the address
 * masked to that length is binary-searched among the prefixes of that
 * length, and the first hit is the longest match.  Real ACLs use a handful
 * of lengths, so that is a few binary searches over one flat, read-only
 * array, with no pointers to chase and nothing to lock.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "wire/prefixes.h"
#include "xdpdns_maps.h" /* XD_ACL_ALLOW, XD_ACL_DENY: the program's too */

static int family_bits(int family)
{
	if (family == AF_INET)
		return XD_ACL_V4_BITS;
	if (family == AF_INET6)
		return XD_ACL_V6_BITS;
	return -1;
}

void xd_mask_prefix(uint8_t *addr, size_t bytes, unsigned bits)
{
	for (size_t i = 0; i < bytes; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		addr[i] &= (uint8_t)(0xff00 >> bits);
		bits = 0;
	}
}

/* ---- compiling ------------------------------------------------------------- */

/* A rule while sorting: its position keeps "the first rule wins" for a
 * prefix given twice, since qsort is not stable. */
struct acl_item {
	struct xd_acl_entry entry;
	int family;
	int index;
};

static int item_compare(const void *pa, const void *pb)
{
	const struct acl_item *a = pa, *b = pb;
	int c;

	if (a->family != b->family)
		return a->family == AF_INET ? -1 : 1;
	if (a->entry.prefix_len != b->entry.prefix_len)
		return a->entry.prefix_len > b->entry.prefix_len ? -1 : 1;
	c = memcmp(a->entry.addr, b->entry.addr, sizeof(a->entry.addr));
	if (c)
		return c;
	/* Of one prefix, the keyed rules first: they are the more specific. */
	if (a->entry.key != b->entry.key && (!a->entry.key || !b->entry.key))
		return a->entry.key ? -1 : 1;
	if (a->entry.key != b->entry.key)
		return a->entry.key < b->entry.key ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

static bool item_same_prefix(const struct acl_item *a, const struct acl_item *b)
{
	return a->family == b->family && a->entry.prefix_len == b->entry.prefix_len &&
	       a->entry.key == b->entry.key &&
	       !memcmp(a->entry.addr, b->entry.addr, sizeof(a->entry.addr));
}

/* Checks rule i and turns it into a sortable item with its host bits
 * cleared. */
static int item_from_rule(const struct xd_acl_rule *r, int i, struct acl_item *out,
			  struct xd_error *err)
{
	int bits = family_bits(r->family);

	if (bits < 0)
		return xd_errorf(err, -EAFNOSUPPORT,
				 "ACL rule %d: address family %d: "
				 "expected AF_INET or AF_INET6",
				 i, r->family);
	if (r->prefix_len > bits)
		return xd_errorf(err, -EINVAL,
				 "ACL rule %d: prefix length %u: at most %d "
				 "for IPv%d",
				 i, r->prefix_len, bits, bits == 32 ? 4 : 6);
	if (r->action != XD_ACL_ALLOW && r->action != XD_ACL_DENY)
		return xd_errorf(err, -EINVAL,
				 "ACL rule %d: action %u: expected "
				 "XD_ACL_ALLOW or XD_ACL_DENY",
				 i, r->action);
	memset(out, 0, sizeof(*out));
	memcpy(out->entry.addr, r->addr, (size_t)bits / 8);
	xd_mask_prefix(out->entry.addr, (size_t)bits / 8, r->prefix_len);
	out->entry.prefix_len = r->prefix_len;
	out->entry.action = r->action;
	out->entry.key = r->key;
	out->family = r->family;
	out->index = i;
	return 0;
}

/* Sorts items and drops the later duplicates of a prefix; returns how many
 * stay. */
static int items_unique(struct acl_item *items, int n)
{
	int kept = 0;

	qsort(items, (size_t)n, sizeof(items[0]), item_compare);
	for (int i = 0; i < n; i++) {
		if (kept && item_same_prefix(&items[kept - 1], &items[i]))
			continue; /* sorted after the first of its prefix */
		items[kept++] = items[i];
	}
	return kept;
}

/* Fills t with entries[0..n), already sorted longest prefix first. */
static void table_fill(struct xd_acl_table *t, const struct xd_acl_entry *entries, uint32_t n)
{
	t->entries = entries;
	t->n = n;
	t->ngroups = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (i == 0 || entries[i].prefix_len != entries[i - 1].prefix_len) {
			struct xd_acl_group *g = &t->groups[t->ngroups++];

			g->start = i;
			g->count = 0;
			g->prefix_len = entries[i].prefix_len;
		}
		t->groups[t->ngroups - 1].count++;
	}
}

static bool acl_denies_nothing(const struct acl_item *items, int n, uint32_t default_action)
{
	if (default_action == XD_ACL_DENY)
		return false;
	for (int i = 0; i < n; i++)
		if (items[i].entry.action == XD_ACL_DENY)
			return false;
	return true;
}

/* The compiled ACL of the unique, sorted items (IPv4's first). */
static struct xd_acl *acl_assemble(const struct acl_item *items, int n, uint32_t default_action,
				   int socket_verdict)
{
	struct xd_acl *acl = calloc(1, sizeof(*acl) + (size_t)n * sizeof(acl->entries[0]));
	uint32_t n4 = 0;

	if (!acl)
		return NULL;
	for (int i = 0; i < n; i++) {
		acl->entries[i] = items[i].entry;
		n4 += items[i].family == AF_INET;
	}
	acl->default_action = default_action;
	acl->socket_verdict = socket_verdict;
	acl->rules = (uint32_t)n;
	table_fill(&acl->v4, acl->entries, n4);
	table_fill(&acl->v6, acl->entries + n4, (uint32_t)n - n4);
	return acl;
}

static int check_limits(const struct acl_item *items, int n, struct xd_error *err)
{
	int n4 = 0;

	for (int i = 0; i < n; i++)
		n4 += items[i].family == AF_INET;
	if (n4 > XD_ACL_RULES_MAX || n - n4 > XD_ACL_RULES_MAX)
		return xd_errorf(err, -E2BIG,
				 "ACL: %d IPv4 and %d IPv6 prefixes: at most %d "
				 "of each (XD_ACL_RULES_MAX)",
				 n4, n - n4, XD_ACL_RULES_MAX);
	return 0;
}

int xd_acl_build(const struct xd_acl_rule *rules, int n, uint32_t default_action,
		 int socket_verdict, struct xd_acl **out, struct xd_error *err)
{
	struct acl_item *items;
	int rc = 0;

	*out = NULL;
	if (n < 0 || (n > 0 && !rules))
		return xd_errorf(err, -EINVAL, "ACL: %d rules", n);
	if (default_action != XD_ACL_ALLOW && default_action != XD_ACL_DENY)
		return xd_errorf(err, -EINVAL,
				 "ACL default %u: expected XD_ACL_ALLOW or "
				 "XD_ACL_DENY",
				 default_action);
	if (socket_verdict != XD_VERDICT_REFUSE && socket_verdict != XD_VERDICT_DROP)
		return xd_errorf(err, -EINVAL,
				 "ACL socket verdict %d: expected "
				 "XD_VERDICT_REFUSE or XD_VERDICT_DROP",
				 socket_verdict);
	items = malloc((size_t)(n ? n : 1) * sizeof(*items));
	if (!items)
		return xd_errorf(err, -ENOMEM, "ACL: out of memory");
	for (int i = 0; i < n && rc == 0; i++)
		rc = rules[i].key ? xd_errorf(err, -EINVAL,
					      "ACL rule %d: a TSIG key (keys are for zone "
					      "transfer lists)",
					      i) :
				    item_from_rule(&rules[i], i, &items[i], err);
	if (rc)
		goto out_items;
	n = items_unique(items, n);
	rc = check_limits(items, n, err);
	if (rc || acl_denies_nothing(items, n, default_action))
		goto out_items;
	*out = acl_assemble(items, n, default_action, socket_verdict);
	if (!*out)
		rc = xd_errorf(err, -ENOMEM, "ACL: out of memory");
out_items:
	free(items);
	return rc;
}

int xd_acl_sort(const struct xd_acl_rule *rules, int n, struct xd_acl_entry *out, uint32_t *n4,
		struct xd_error *err)
{
	struct acl_item *items;
	int rc = 0;

	*n4 = 0;
	if (n < 0 || (n > 0 && !rules))
		return xd_errorf(err, -EINVAL, "ACL: %d rules", n);
	items = malloc((size_t)(n ? n : 1) * sizeof(*items));
	if (!items)
		return xd_errorf(err, -ENOMEM, "ACL: out of memory");
	for (int i = 0; i < n && rc == 0; i++)
		rc = item_from_rule(&rules[i], i, &items[i], err);
	if (rc == 0) {
		rc = items_unique(items, n);
		for (int i = 0; i < rc; i++) {
			out[i] = items[i].entry;
			*n4 += items[i].family == AF_INET;
		}
	}
	free(items);
	return rc;
}

void xd_acl_free(struct xd_acl *acl)
{
	free(acl);
}

/* ---- looking up -------------------------------------------------------------- */

/* Binary search of the group's prefixes for key (already masked). */
static const struct xd_acl_entry *group_find(const struct xd_acl_table *t,
					     const struct xd_acl_group *g, const uint8_t *key,
					     size_t bytes)
{
	uint32_t low = g->start, high = g->start + g->count;

	while (low < high) {
		uint32_t mid = low + (high - low) / 2;
		int c = memcmp(t->entries[mid].addr, key, bytes);

		if (c == 0)
			return &t->entries[mid];
		if (c < 0)
			low = mid + 1;
		else
			high = mid;
	}
	return NULL;
}

uint32_t xd_acl_action(const struct xd_acl *acl, int family, const uint8_t *addr)
{
	const struct xd_acl_table *t = family == AF_INET ? &acl->v4 : &acl->v6;
	size_t bytes = family == AF_INET ? 4 : 16;
	uint8_t key[16];

	for (int i = 0; i < t->ngroups; i++) {
		const struct xd_acl_group *g = &t->groups[i];
		const struct xd_acl_entry *hit;

		memcpy(key, addr, bytes);
		xd_mask_prefix(key, bytes, g->prefix_len);
		hit = group_find(t, g, key, bytes);
		if (hit)
			return hit->action; /* the longest length first: the longest match */
	}
	return acl->default_action;
}

static int verdict_of(const struct xd_acl *acl, uint32_t action)
{
	return action == XD_ACL_DENY ? acl->socket_verdict : XD_VERDICT_ANSWER;
}

int xd_acl_verdict(const struct xd_acl *acl, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	const uint8_t *a6 = in6->sin6_addr.s6_addr;

	if (!acl)
		return XD_VERDICT_ANSWER;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		return verdict_of(acl, xd_acl_action(acl, AF_INET, (const uint8_t *)&in->sin_addr));
	}
	if (sa->sa_family != AF_INET6)
		return XD_VERDICT_ANSWER; /* no address to judge (never on UDP/IP) */
	/* A dual-stack socket sees IPv4 clients as ::ffff:a.b.c.d (RFC 4291
	 * 2.5.5.2): they are IPv4 sources. */
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return verdict_of(acl, xd_acl_action(acl, AF_INET, a6 + 12));
	return verdict_of(acl, xd_acl_action(acl, AF_INET6, a6));
}
