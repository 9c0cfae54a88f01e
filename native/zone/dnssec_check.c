/*
 * dnssec_check.c - what `xdpdns check` (and every load) reports of a zone
 * signed elsewhere: RRsets without RRSIGs, signatures expired or not yet
 * valid, an NSEC or NSEC3 chain that skips names or does not close, an
 * NSEC3PARAM without its chain.  Warnings: the zone is served as it is, but
 * the answers these touch will not validate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "zone/builder.h"
#include "image/image.h"

#define XD_TYPES_MAX 64 /* distinct types a node is checked for */

/* The problem's anchor: the record's file and line. */
static void warn(struct xd_builder *b, uint32_t node, const struct brec *r, const char *fmt,
		 const char *what)
{
	char text[1024];

	xd_builder_node_text(b, node, text, sizeof(text));
	xd_builder_problemf(b, XD_PROBLEM_WARNING, r->source, r->line, fmt, text, what);
}

static uint16_t covered(const struct xd_builder *b, const struct brec *r)
{
	return r->rdlen >= 18 ? xd_get16(b->rdata + r->rdata) : 0;
}

static bool has_signature(const struct xd_builder *b, const struct bnode *n, uint16_t type)
{
	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next)
		if (b->recs[r].type == XD_TYPE_RRSIG && covered(b, &b->recs[r]) == type)
			return true;
	return false;
}

static void check_node_signatures(struct xd_builder *b, uint32_t i)
{
	const struct bnode *n = &b->nodes[i];
	uint16_t seen[XD_TYPES_MAX];
	int nseen = 0;

	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next) {
		const struct brec *rec = &b->recs[r];
		char type[32];
		int k = 0;

		if (rec->type == XD_TYPE_RRSIG) {
			if (!xd_builder_node_has(b, n, covered(b, rec))) {
				xd_type_to_text(covered(b, rec), type, sizeof(type));
				warn(b, i, rec,
				     "%s: an RRSIG covers %s, which the name does not have", type);
			}
			continue;
		}
		while (k < nseen && seen[k] != rec->type)
			k++;
		if (k < nseen || nseen == XD_TYPES_MAX)
			continue;
		seen[nseen++] = rec->type;
		if (!xd_builder_signed_type(n, rec->type) || has_signature(b, n, rec->type))
			continue;
		xd_type_to_text(rec->type, type, sizeof(type));
		warn(b, i, rec,
		     "%s: %s has no RRSIG (RFC 4035 2.2): answers with it will not "
		     "validate",
		     type);
	}
}

/* RFC 4034 3.1.5: inception and expiration in serial number arithmetic
 * (RFC 1982) against now. */
static void check_validity(struct xd_builder *b, uint32_t i, uint32_t now)
{
	const struct bnode *n = &b->nodes[i];

	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next) {
		const struct brec *rec = &b->recs[r];
		const uint8_t *rd = b->rdata + rec->rdata;
		char type[32], what[96];
		uint32_t expiration, inception;
		time_t when;
		struct tm tm;

		if (rec->type != XD_TYPE_RRSIG || rec->rdlen < 18)
			continue;
		expiration = xd_get32(rd + 8);
		inception = xd_get32(rd + 12);
		xd_type_to_text(covered(b, rec), type, sizeof(type));
		if ((int32_t)(expiration - now) < 0) {
			when = (time_t)now + (int32_t)(expiration - now);
			gmtime_r(&when, &tm);
			snprintf(what, sizeof(what), "%s expired at %04d-%02d-%02dT%02d:%02d:%02dZ",
				 type, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				 tm.tm_min, tm.tm_sec);
			warn(b, i, rec, "%s: the RRSIG of %s: answers with it will not validate",
			     what);
		} else if ((int32_t)(inception - now) > 0) {
			when = (time_t)now + (int32_t)(inception - now);
			gmtime_r(&when, &tm);
			snprintf(what, sizeof(what),
				 "%s is not valid before "
				 "%04d-%02d-%02dT%02d:%02d:%02dZ",
				 type, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				 tm.tm_min, tm.tm_sec);
			warn(b, i, rec, "%s: the RRSIG of %s", what);
		}
	}
}

static const struct brec *first_of(const struct xd_builder *b, const struct bnode *n, uint16_t type)
{
	for (uint32_t r = n->first; r != XD_NONE; r = b->recs[r].next)
		if (b->recs[r].type == type)
			return &b->recs[r];
	return NULL;
}

/* Names that must be in the chain: those with data, not hidden, not an
 * NSEC3 record's own. */
static bool authoritative(const struct bnode *n)
{
	return n->first != XD_NONE && !(n->flags & (XD_NODE_OCCLUDED | XD_NODE_NSEC3));
}

/* RFC 4034 4.1.1: each NSEC names the next owner of the chain in canonical
 * order, the last the apex; every name with data has one. */
static void check_nsec_chain(struct xd_builder *b, uint32_t zone, const uint32_t *list,
			     size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const struct bnode *n = &b->nodes[list[i]];
		const struct brec *nsec = first_of(b, n, XD_TYPE_NSEC);
		uint8_t want[XD_NAME_MAX], next[XD_NAME_MAX];
		size_t want_len = xd_builder_node_name(b, list[(i + 1) % count], want);
		size_t next_len = xd_name_check(b->rdata + nsec->rdata, nsec->rdlen);
		char text[1024];

		if (next_len == 0 || next_len > nsec->rdlen)
			continue; /* the zone reader checked the RDATA */
		xd_name_lower(next, b->rdata + nsec->rdata, next_len);
		if (next_len == want_len && memcmp(next, want, want_len) == 0)
			continue;
		xd_name_to_text(want, text, sizeof(text));
		warn(b, list[i], nsec,
		     "%s: the NSEC chain is broken: the next name is not %s, "
		     "which follows in canonical order",
		     text);
	}
	for (size_t i = 0; i < b->nnodes; i++) {
		const struct bnode *n = &b->nodes[i];

		if (n->zone == zone && authoritative(n) && !xd_builder_node_has(b, n, XD_TYPE_NSEC))
			warn(b, (uint32_t)i, &b->recs[n->first], "%s: %s",
			     "no NSEC: negative "
			     "answers near this name will not validate");
	}
}

/* Whether label (a length byte and base32hex) is the name of an NSEC3 of
 * list (sorted by label). */
static bool in_chain(const struct xd_builder *b, const uint32_t *list, size_t count,
		     const uint8_t *label)
{
	size_t lo = 0, hi = count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct bnode *n = &b->nodes[list[mid]];
		int c = xd_name_canonical_cmp(b->names + n->name, n->name_len, label,
					      XD_NSEC3_LABEL_LEN);

		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* RFC 5155 7.1: each NSEC3 names the next hash, the last wraps; every name
 * with data and every empty non-terminal has one, but an unsigned
 * delegation in an opt-out span. */
static void check_nsec3_chain(struct xd_builder *b, uint32_t zone, const struct brec *param,
			      const uint32_t *list, size_t count)
{
	const uint8_t *pd = b->rdata + param->rdata;

	for (size_t i = 0; i < count; i++) {
		const struct bnode *n = &b->nodes[list[i]];
		const struct bnode *next = &b->nodes[list[(i + 1) % count]];
		const struct brec *rec = first_of(b, n, XD_TYPE_NSEC3);
		const uint8_t *rd = b->rdata + rec->rdata;
		uint8_t label[XD_NSEC3_LABEL_LEN];
		size_t salt = rec->rdlen >= 5 ? rd[4] : 0;

		if (rec->rdlen < 5 + salt + 1 || rd[0] != pd[0] ||
		    xd_get16(rd + 2) != xd_get16(pd + 2) || salt != pd[4] ||
		    memcmp(rd + 5, pd + 5, salt) != 0) {
			warn(b, list[i], rec, "%s: %s",
			     "NSEC3 parameters differ from the "
			     "NSEC3PARAM's: validators cannot use it");
			continue;
		}
		if (xd_nsec3_encode(rd + 6 + salt, rd[5 + salt], label) < 0 ||
		    next->name_len != XD_NSEC3_LABEL_LEN ||
		    memcmp(b->names + next->name, label, XD_NSEC3_LABEL_LEN) != 0)
			warn(b, list[i], rec, "%s: %s",
			     "the NSEC3 chain is broken: the next "
			     "hash is not the next NSEC3's");
	}
	/* Opt-out (RFC 5155 6): unsigned delegations, and the empty
	 * non-terminals that only they make, may have no NSEC3. */
	bool optout = false;

	for (size_t i = 0; i < count; i++) {
		const struct brec *rec = first_of(b, &b->nodes[list[i]], XD_TYPE_NSEC3);

		optout |= rec->rdlen >= 2 && (b->rdata[rec->rdata + 1] & 1);
	}
	for (size_t i = 0; i < b->nnodes; i++) {
		const struct bnode *n = &b->nodes[i];
		uint8_t name[XD_NAME_MAX], label[XD_NSEC3_LABEL_LEN];
		bool unsigned_cut = (n->flags & XD_NODE_CUT) &&
				    !xd_builder_node_has(b, n, XD_TYPE_DS);

		if (n->zone != zone || (n->flags & (XD_NODE_OCCLUDED | XD_NODE_NSEC3)) ||
		    (optout && (unsigned_cut || n->first == XD_NONE)))
			continue;
		if (xd_nsec3_label(name, xd_builder_node_name(b, (uint32_t)i, name), pd[0], pd + 5,
				   pd[4], xd_get16(pd + 2), label) < 0 ||
		    in_chain(b, list, count, label))
			continue;
		warn(b, (uint32_t)i, n->first != XD_NONE ? &b->recs[n->first] : param, "%s: %s",
		     "no NSEC3 matches this name: answers for it will not validate");
	}
}

void xd_builder_check_dnssec(struct xd_builder *b, uint32_t zone)
{
	const struct bnode *apex = &b->nodes[b->zones[zone].apex];
	const struct brec *param;
	uint32_t *list = NULL;
	size_t cap = 0, count = 0;
	uint32_t now = (uint32_t)time(NULL);

	if (!xd_builder_node_has(b, apex, XD_TYPE_DNSKEY) &&
	    !xd_builder_node_has(b, apex, XD_TYPE_RRSIG))
		return; /* not signed: nothing to say */
	for (size_t i = 0; i < b->nnodes; i++) {
		if (b->nodes[i].zone != zone || (b->nodes[i].flags & XD_NODE_OCCLUDED))
			continue;
		check_node_signatures(b, (uint32_t)i);
		check_validity(b, (uint32_t)i, now);
	}
	param = xd_builder_nsec3param(b, zone);
	if (xd_builder_chain(b, zone, param ? XD_TYPE_NSEC3 : XD_TYPE_NSEC, &list, &cap, &count) <
	    0)
		return; /* out of memory: the layout will say so */
	if (count == 0 && param) {
		warn(b, b->zones[zone].apex, param, "%s: %s",
		     "NSEC3PARAM without NSEC3 records: "
		     "negative answers cannot be proven");
	} else if (count == 0) {
		const struct brec *first = apex->first != XD_NONE ? &b->recs[apex->first] : NULL;

		if (first)
			warn(b, b->zones[zone].apex, first, "%s: %s",
			     "signed, but without NSEC "
			     "or NSEC3 records: negative answers cannot be proven");
	} else if (param) {
		check_nsec3_chain(b, zone, param, list, count);
	} else {
		check_nsec_chain(b, zone, list, count);
	}
	free(list);
}
