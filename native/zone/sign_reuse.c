/*
 * sign_reuse.c - the RRSIGs of the image being served that a new signing
 * of the same zone keeps: made over the same RRset (owner, type, TTL and
 * canonical RDATA) by a key the old zone published, and valid for long
 * enough.  A signature is nearly all of a signing's cost (about 27 us
 * here); keeping the ones that still hold makes a reload that changed a
 * few records re-sign those few, as Knot does, and the periodic re-signing
 * renew only what is due.
 *
 * The old RRset is read back from the image's wire form (image.h): names
 * in RDATA that end in the origin are spelled out again where the image
 * has a relocation.  Only types whose RDATA names are lower-cased in
 * canonical form are compressed there (layout.c), so the case the image
 * lost never matters to the comparison.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "zone/dnssec_sign.h"
#include "image/image.h"
#include "zone/sign_reuse.h"
#include "wire/wire.h"

#define XD_RR_FIXED 12 /* owner pointer, type, class, TTL, RDLENGTH */
#define XD_RRSIG_FIXED 18 /* RRSIG RDATA before the signer's name */

/* Whether the DNSKEY RRset at node apex holds exactly this DNSKEY RDATA. */
static bool published(const uint8_t *apex, const struct xd_sign_key_info *key)
{
	const uint8_t *set = apex ? xd_node_rrset(apex, XD_TYPE_DNSKEY) : NULL;
	const uint8_t *wire;
	size_t pos = 0;

	if (!set)
		return false;
	wire = xd_rrset_wire(set);
	for (int i = 0; i < xd_rrset_count(set); i++) {
		uint16_t rdlen = xd_get16(wire + pos + 10);

		if (rdlen == key->dnskey_len &&
		    memcmp(wire + pos + XD_RR_FIXED, key->dnskey, rdlen) == 0)
			return true;
		pos += XD_RR_FIXED + rdlen;
	}
	return false;
}

int xd_sign_reuse_open(struct xd_sign_reuse *r, const struct xd_image *img, const uint8_t *origin,
		       size_t origin_len, struct xd_sign_key *const *keys, int nkeys,
		       uint32_t inception, uint32_t keep_after)
{
	struct xd_sign_key_info info;
	const uint8_t *apex;
	int zone;

	memset(r, 0, sizeof(*r));
	if (!img || origin_len > sizeof(r->origin))
		return 0;
	xd_name_lower(r->origin, origin, origin_len);
	zone = xd_image_find_zone(img, r->origin, origin_len);
	if (zone < 0)
		return 0; /* a new zone: everything is signed */
	r->known = calloc((size_t)nkeys, sizeof(*r->known));
	if (!r->known)
		return -ENOMEM;
	apex = xd_image_find(img, (uint16_t)zone, r->origin, 0);
	for (int k = 0; k < nkeys; k++) {
		xd_sign_key_info(keys[k], &info);
		r->known[k] = published(apex, &info);
	}
	r->img = img;
	r->zone = (uint16_t)zone;
	r->origin_len = origin_len;
	r->inception = inception;
	r->keep_after = keep_after;
	return 0;
}

void xd_sign_reuse_close(struct xd_sign_reuse *r)
{
	free(r->known);
	memset(r, 0, sizeof(*r));
}

/* The RRSIG in the node's RRSIG RRset that covers `set` under key `info`
 * and holds past keep_after (the longest-lived one), or NULL; its RDATA
 * length in *len. */
static const uint8_t *find_rrsig(const struct xd_sign_reuse *r, const uint8_t *node,
				 const uint8_t *covered, const struct xd_sign_rrset *set,
				 const struct xd_sign_key_info *info, int labels, uint16_t *len)
{
	const uint8_t *sigs = xd_node_rrset(node, XD_TYPE_RRSIG);
	const uint8_t *best = NULL, *wire;
	size_t pos, end;

	if (!sigs || xd_rrset_sig_len(covered) == 0)
		return NULL;
	wire = xd_rrset_wire(sigs);
	pos = xd_rrset_sig_off(covered);
	end = pos + xd_rrset_sig_len(covered);
	for (uint16_t rdlen; pos + XD_RR_FIXED <= end; pos += XD_RR_FIXED + rdlen) {
		const uint8_t *rd = wire + pos + XD_RR_FIXED;

		rdlen = xd_get16(wire + pos + 10);
		if (rdlen < XD_RRSIG_FIXED + r->origin_len || xd_get16(rd) != set->type ||
		    rd[2] != info->algorithm || rd[3] != labels || xd_get32(rd + 4) != set->ttl ||
		    xd_get16(rd + 16) != info->tag ||
		    (int32_t)(xd_get32(rd + 8) - r->keep_after) <= 0 ||
		    (int32_t)(xd_get32(rd + 12) - r->inception) > 0 ||
		    !xd_name_equal(rd + XD_RRSIG_FIXED, r->origin_len, r->origin, r->origin_len))
			continue;
		if (!best || (int32_t)(xd_get32(rd + 8) - xd_get32(best + 8)) > 0) {
			best = rd;
			*len = rdlen;
		}
	}
	return best;
}

/* The old RRset's RDATA spelled out (relocations replaced by the origin),
 * in canonical form and order. */
static int old_rdata(const struct xd_sign_reuse *r, uint16_t type, const uint8_t *rrset,
		     struct xd_rdata_set *out)
{
	const uint8_t *wire = xd_rrset_wire(rrset), *relocs = xd_rrset_relocs(rrset);
	int count = xd_rrset_count(rrset), nreloc = xd_rrset_nreloc(rrset), k = 0, rc;
	size_t cap = xd_rrset_wire_len(rrset) + (size_t)nreloc * r->origin_len, at = 0, pos = 0;
	const uint8_t **rdatas = calloc(count ? (size_t)count : 1, sizeof(*rdatas));
	uint16_t *rdlens = calloc(count ? (size_t)count : 1, sizeof(*rdlens));
	uint8_t *buf = malloc(cap ? cap : 1);

	if (!rdatas || !rdlens || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < count; i++) {
		size_t start = pos + XD_RR_FIXED, end = start + xd_get16(wire + pos + 10);
		size_t from = start, first = at;

		for (; k < nreloc && xd_ld16(relocs + 2 * k) < end; k++) {
			size_t reloc = xd_ld16(relocs + 2 * k);

			memcpy(buf + at, wire + from, reloc - from);
			at += reloc - from;
			memcpy(buf + at, r->origin, r->origin_len);
			at += r->origin_len;
			from = reloc + 2;
		}
		memcpy(buf + at, wire + from, end - from);
		at += end - from;
		if (at - first > UINT16_MAX) {
			rc = -EINVAL;
			goto out;
		}
		rdatas[i] = buf + first;
		rdlens[i] = (uint16_t)(at - first);
		pos = end;
	}
	rc = xd_sign_canonical_set(type, rdatas, rdlens, count, out);
out:
	free(rdatas);
	free(rdlens);
	free(buf);
	return rc;
}

int xd_sign_reuse_find(const struct xd_sign_reuse *r, int key, const struct xd_sign_key_info *info,
		       const struct xd_sign_rrset *set, uint8_t *out, size_t cap)
{
	uint8_t owner[XD_NAME_MAX];
	struct xd_rdata_set now = { 0 }, before = { 0 };
	const uint8_t *node, *covered, *sig;
	uint16_t sig_len = 0;
	size_t rel_len;
	int rc;

	if (!r->img || !r->known[key] || set->owner_len < r->origin_len ||
	    set->owner_len > sizeof(owner))
		return 0;
	xd_name_lower(owner, set->owner, set->owner_len);
	rel_len = set->owner_len - r->origin_len;
	if (memcmp(owner + rel_len, r->origin, r->origin_len) != 0)
		return 0;
	node = xd_image_find(r->img, r->zone, owner, rel_len);
	covered = node ? xd_node_rrset(node, set->type) : NULL;
	sig = covered ? find_rrsig(r, node, covered, set, info, xd_sign_labels(owner), &sig_len) :
			NULL;
	if (!sig || sig_len > cap)
		return 0;
	rc = xd_sign_canonical_set(set->type, set->rdatas, set->rdlens, set->count, &now);
	if (rc == 0)
		rc = old_rdata(r, set->type, covered, &before);
	if (rc == 0 && xd_rdata_set_equal(&now, &before)) {
		memcpy(out, sig, sig_len);
		rc = sig_len;
	}
	xd_rdata_set_free(&now);
	xd_rdata_set_free(&before);
	return rc == -EINVAL ? 0 : rc; /* RDATA it cannot read: signed anew */
}
