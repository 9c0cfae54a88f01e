/*
 * axfr.c - outgoing zone transfers (AXFR, RFC 5936; IXFR, RFC 1995) from
 * the published image: the zone's records as a stream of TCP messages, the
 * apex SOA first and last.  An IXFR gets the changes the image's journal
 * (image/journal.h) holds from the client's serial on; the whole zone when
 * the journal does not reach back that far or when the changes would be
 * longer (RFC 1995 4); the SOA alone when the client is current.
 *
 * The image keeps each RRset pre-rendered for answers: every RR's owner is
 * a 2-byte pointer and names in RDATA under the zone's origin end in a
 * pointer to the origin (image.h).  In a transfer's messages the question
 * is the origin, at offset 12, so those pointers become 0xc00c, and a
 * node's owner is written once per message (its labels, then 0xc00c) and
 * pointed to by the node's other RRs.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "answer/answer.h"
#include "image/image.h"
#include "image/journal.h"
#include "wire/query.h"
#include "wire/wire.h"

/* Records per message up to about this size: what Knot and BIND send too,
 * well under the 65535 a TCP message may hold. */
#define XD_AXFR_MESSAGE_TARGET 16384

/* Writes into out up to cap, and counts past it: a first pass with too
 * small a buffer learns the size it needs. */
struct writer {
	uint8_t *out;
	size_t cap;
	size_t len;
	/* The message being written: */
	size_t msg; /* where its 2-byte length prefix is */
	uint16_t ancount;
	/* The owner name the message holds last (the labels in front of
	 * the origin), and where: */
	const uint8_t *owner;
	uint8_t owner_len;
	uint16_t owner_pos;
	/* From the query: */
	const struct xd_query *q;
	const uint8_t *question; /* header excluded */
	size_t question_len;
	size_t reserve; /* for the TSIG record that signs each message */
	bool too_big; /* a message outgrew 65535 bytes */
};

static void put(struct writer *w, const void *data, size_t len)
{
	if (w->len <= w->cap && len <= w->cap - w->len)
		memcpy(w->out + w->len, data, len);
	w->len += len;
}

static void put16_at(struct writer *w, size_t at, uint16_t v)
{
	if (at + 2 <= w->cap)
		xd_put16(w->out + at, v);
}

static void message_begin(struct writer *w)
{
	uint8_t header[XD_DNS_HEADER_LEN] = { 0 };
	const uint8_t *pkt = w->q->pkt;

	w->msg = w->len;
	put(w, "\0\0", 2); /* the length, at the end */
	memcpy(header, pkt, 2); /* ID */
	/* QR, AA, opcode QUERY, RD and CD as asked, NOERROR. */
	xd_put16(header + 2,
		 XD_FLAG_QR | XD_FLAG_AA | (xd_get16(pkt + 2) & (XD_FLAG_RD | XD_FLAG_CD)));
	xd_put16(header + 4, 1);
	put(w, header, sizeof(header));
	put(w, w->question, w->question_len); /* as the client wrote it */
	w->ancount = 0;
	w->owner = NULL;
}

static void message_end(struct writer *w)
{
	size_t start = w->msg + 2;

	put16_at(w, start + 6, w->ancount);
	if (w->q->edns) {
		uint8_t opt[XD_OPT_RR_LEN] = { 0 };

		/* RFC 6891: an OPT for a query with one; DO as asked. */
		xd_put16(opt + 1, XD_TYPE_OPT);
		xd_put16(opt + 3, XD_RESOLVER_ANSWER_MAX); /* the 1232 we advertise */
		xd_put16(opt + 7, w->q->edns_flags & XD_EDNS_DO);
		put(w, opt, sizeof(opt));
		put16_at(w, start + 10, 1);
	}
	if (w->len - start + w->reserve > UINT16_MAX)
		w->too_big = true; /* an RRset near 64 KiB with a long owner */
	put16_at(w, w->msg, (uint16_t)(w->len - start));
}

/* The bytes one RR of wire (at off) takes in a message: its owner (the
 * node's labels and a pointer, or a pointer) and the rest as it is. */
static size_t rr_size(const uint8_t *wire, size_t off, size_t owner)
{
	return owner + 10 + xd_get16(wire + off + 10);
}

/* Writes an owner name, the labels in front of the origin: the apex and
 * the owner of the record before it are pointers, any other is its
 * labels then a pointer to the origin, the question's. */
static void put_owner(struct writer *w, const uint8_t *labels, uint8_t len)
{
	uint8_t pointer[2];

	if (len == 0) {
		xd_put16(pointer, 0xc000 | XD_DNS_HEADER_LEN);
	} else if (w->owner && w->owner_len == len &&
		   (w->owner == labels || memcmp(w->owner, labels, len) == 0)) {
		xd_put16(pointer, 0xc000 | w->owner_pos);
	} else {
		if (w->len - w->msg - 2 < 0x3fff) {
			w->owner = labels;
			w->owner_len = len;
			w->owner_pos = (uint16_t)(w->len - w->msg - 2);
		}
		put(w, labels, len);
		xd_put16(pointer, 0xc000 | XD_DNS_HEADER_LEN);
	}
	put(w, pointer, 2);
}

/* Copies rs, the RRset of node n, into the message: each RR's owner and the
 * RDATA pointers to the origin made right for this message. */
static void put_rrset(struct writer *w, const uint8_t *n, const uint8_t *rs)
{
	const uint8_t *wire = xd_rrset_wire(rs), *relocs = xd_rrset_relocs(rs);
	size_t off = 0;

	for (uint16_t i = 0; i < xd_rrset_count(rs); i++) {
		size_t rdlen = xd_get16(wire + off + 10), start;

		put_owner(w, xd_node_name(n), xd_node_name_len(n));
		start = w->len; /* type, class, TTL, RDLENGTH, RDATA */
		put(w, wire + off + 2, 10 + rdlen);
		for (uint8_t k = 0; k < xd_rrset_nreloc(rs); k++) {
			size_t at = xd_ld16(relocs + 2 * k); /* host order: outside the wire */

			/* The origin pointers of this RR's RDATA. */
			if (at >= off + 12 && at + 2 <= off + 12 + rdlen)
				put16_at(w, start + (at - off - 2), 0xc000 | XD_DNS_HEADER_LEN);
		}
		w->ancount++;
		off += 12 + rdlen;
	}
}

/* Copies a journal record (journal.h: its names written out in full). */
static void put_record(struct writer *w, const uint8_t *rec)
{
	size_t owner = 1 + (size_t)rec[0];

	put_owner(w, rec + 1, rec[0]);
	put(w, rec + owner, xd_journal_record_size(rec) - owner);
	w->ancount++;
}

/* Whether rs, of node n, goes into this message: the first RRset of a
 * message always does (an RRset never spans messages), the next ones while
 * the message stays under the target. */
static bool fits(const struct writer *w, const uint8_t *n, const uint8_t *rs)
{
	const uint8_t *wire = xd_rrset_wire(rs);
	size_t need = 0, off = 0;

	if (!w->ancount)
		return true;
	for (uint16_t i = 0; i < xd_rrset_count(rs); i++) {
		need += rr_size(wire, off, 2 + xd_node_name_len(n));
		off += 12 + xd_get16(wire + off + 10);
	}
	return w->len - w->msg + need <= XD_AXFR_MESSAGE_TARGET;
}

/* Whether the journal record rec goes into this message: the first item
 * of a message always does, the next ones while the message stays under
 * the target.  A changeset's records may span messages. */
static bool record_fits(const struct writer *w, const uint8_t *rec)
{
	/* Its owner labels and a pointer at most, then the rest. */
	return !w->ancount ||
	       w->len - w->msg + xd_journal_record_size(rec) + 1 <= XD_AXFR_MESSAGE_TARGET;
}

enum {
	PHASE_FIRST_SOA,
	PHASE_BODY, /* AXFR, or IXFR as the whole zone */
	PHASE_JOURNAL, /* IXFR from the journal */
	PHASE_LAST_SOA,
	PHASE_DONE
};

static const uint8_t *apex_soa(const struct xd_axfr *t, const uint8_t **node)
{
	*node = t->img->base + xd_image_zone(t->img, t->zone)->apex;
	return xd_node_rrset(*node, XD_TYPE_SOA);
}

/* The RRset the transfer is at, and its node; NULL once done.  The body
 * is every RRset of the zone but the apex SOA, in the image's order. */
static const uint8_t *current(struct xd_axfr *t, const uint8_t **node)
{
	size_t end = t->img->hdr->zone_hash;

	if (t->phase == PHASE_FIRST_SOA || t->phase == PHASE_LAST_SOA)
		return apex_soa(t, node);
	while (t->phase == PHASE_BODY) {
		const uint8_t *n = t->img->base + t->node, *rs;

		/* The zone's nodes are one run from its apex (layout.c). */
		if (t->node + XD_NODE_HEADER > end || xd_node_zone(n) != t->zone) {
			t->phase = PHASE_LAST_SOA;
			return apex_soa(t, node);
		}
		if (t->rrset >= xd_node_nrrsets(n)) {
			t->node += xd_node_size(n);
			t->rrset = 0;
			continue;
		}
		rs = xd_node_first_rrset(n);
		for (uint16_t i = 0; i < t->rrset; i++)
			rs = xd_rrset_next(rs);
		if (xd_node_name_len(n) == 0 && xd_rrset_type(rs) == XD_TYPE_SOA) {
			t->rrset++;
			continue;
		}
		*node = n;
		return rs;
	}
	return NULL;
}

static void advance(struct xd_axfr *t)
{
	switch (t->phase) {
	case PHASE_FIRST_SOA:
		t->phase = t->soa_only ? PHASE_DONE : t->journal ? PHASE_JOURNAL : PHASE_BODY;
		t->node = xd_image_zone(t->img, t->zone)->apex;
		t->rrset = 0;
		break;
	case PHASE_BODY:
		t->rrset++;
		break;
	default:
		t->phase = PHASE_DONE;
	}
}

/* The journal record the transfer is at; NULL after the last. */
static const uint8_t *journal_record(struct xd_axfr *t)
{
	while (t->set < t->journal->depth) {
		const struct xd_changeset *cs = t->journal->sets[t->set];

		if (t->at < cs->len)
			return cs->data + t->at;
		t->set++;
		t->at = 0;
	}
	return NULL;
}

/* Writes the transfer's next item, an RRset of the image or a record of
 * the journal, when the message has room for it: false when it has none
 * or the transfer is done. */
static bool put_next(struct xd_axfr *t, struct writer *w)
{
	const uint8_t *n, *rs;

	if (t->phase == PHASE_JOURNAL) {
		const uint8_t *rec = journal_record(t);

		if (rec) {
			if (!record_fits(w, rec))
				return false;
			put_record(w, rec);
			t->at += xd_journal_record_size(rec);
			return true;
		}
		t->phase = PHASE_LAST_SOA;
	}
	rs = current(t, &n);
	if (!rs || !fits(w, n, rs))
		return false;
	put_rrset(w, n, rs);
	advance(t);
	return true;
}

/* The SERIAL of SOA RDATA (RFC 1035 3.3.13: after MNAME and RNAME). */
static bool rdata_serial(const uint8_t *rdata, size_t rdlen, uint32_t *serial)
{
	size_t mname = xd_name_skip(rdata, rdlen), rname;

	if (!mname)
		return false;
	rname = xd_name_skip(rdata + mname, rdlen - mname);
	if (!rname || rdlen - mname - rname < 4)
		return false;
	*serial = xd_get32(rdata + mname + rname);
	return true;
}

/* The serial of the SOA in an IXFR query's authority section (RFC 1995
 * 3: the client's version), when it has one that parses. */
static bool client_serial(const struct xd_query *q, uint32_t *serial)
{
	const uint8_t *pkt = q->pkt;
	size_t len = q->len, off = q->question_end, owner, rdlen;

	if (xd_get16(pkt + 6) != 0 || xd_get16(pkt + 8) < 1 || off >= len)
		return false;
	owner = xd_name_skip(pkt + off, len - off);
	if (!owner || len - off - owner < 10 || xd_get16(pkt + off + owner) != XD_TYPE_SOA)
		return false;
	rdlen = xd_get16(pkt + off + owner + 8);
	off += owner + 10;
	return len - off >= rdlen && rdata_serial(pkt + off, rdlen, serial);
}

/* The zone's journal when it takes a client from serial `from` to `to`,
 * ours, in fewer bytes than the whole zone (RFC 1995 4 lets a server send
 * either), with t set to its first changeset; else NULL. */
static const struct xd_zone_journal *journal_from(struct xd_axfr *t, const struct xd_image *img,
						  uint32_t from, uint32_t to)
{
	const struct xd_zone_journal *zj;
	uint64_t bytes = 0;
	int first;

	if (!img->journal || t->zone >= img->journal->zone_count)
		return NULL;
	zj = &img->journal->zones[t->zone];
	first = xd_zone_journal_find(zj, from, to);
	if (first < 0)
		return NULL;
	for (uint32_t i = (uint32_t)first; i < zj->depth; i++)
		bytes += zj->sets[i]->len;
	if (bytes > zj->zone_bytes)
		return NULL;
	t->set = (uint32_t)first;
	t->at = 0;
	return zj;
}

int xd_axfr_begin(struct xd_axfr *t, const struct xd_image *img, const struct xd_client *client,
		  const uint8_t *query, size_t qlen)
{
	const struct xd_zone_entry *z;
	const uint8_t *apex, *soa;
	uint32_t theirs;
	unsigned key = 0;
	int zone;

	if (qlen > sizeof(t->query))
		return -EINVAL;
	memcpy(t->query, query, qlen);
	if (xd_query_parse(&t->q, t->query, qlen) != XD_QUERY_OK ||
	    (t->q.qtype != XD_TYPE_AXFR && t->q.qtype != XD_TYPE_IXFR) ||
	    (t->q.qclass != XD_CLASS_IN))
		return -EINVAL;
	zone = xd_image_find_zone(img, t->q.qname, t->q.qname_len);
	if (zone < 0)
		return -ENOENT; /* not the apex of a zone we serve */
	z = xd_image_zone(img, (uint32_t)zone);
	t->signing = t->q.tsig != 0;
	if (t->signing && xd_image_tsig_check(img, t->query, qlen, t->q.tsig, (uint64_t)time(NULL),
					      &t->tsig, &key))
		return -EACCES;
	if (!xd_zone_acl_allows(img, z, XD_ZONE_ACL_TRANSFER, client, key))
		return -EPERM;
	apex = img->base + z->apex;
	soa = xd_node_rrset(apex, XD_TYPE_SOA);
	if (!soa)
		return -ENOENT;
	t->zone = (uint32_t)zone;
	t->phase = PHASE_FIRST_SOA;
	t->soa_only = false;
	t->journal = NULL;
	if (t->q.qtype == XD_TYPE_IXFR && client_serial(&t->q, &theirs)) {
		uint32_t ours = xd_soa_rrset_serial(soa);

		/* RFC 1995 2, 4: a client that has this version (or, by
		 * serial arithmetic, RFC 1982, a newer one) gets our SOA
		 * alone; an older one what changed since, when we know. */
		t->soa_only = (int32_t)(theirs - ours) >= 0;
		if (!t->soa_only)
			t->journal = journal_from(t, img, theirs, ours);
	}
	xd_image_hold(img);
	t->img = img;
	return 0;
}

int xd_axfr_next(struct xd_axfr *t, uint8_t *out, size_t cap, size_t *len)
{
	struct writer w = { .out = out, .cap = cap, .q = &t->q };

	*len = 0;
	if (t->phase == PHASE_DONE)
		return 0;
	w.question = t->query + XD_DNS_HEADER_LEN;
	w.question_len = t->q.question_end - XD_DNS_HEADER_LEN;
	w.reserve = t->signing ? xd_tsig_rr_len(&t->tsig) : 0;
	message_begin(&w);
	while (put_next(t, &w))
		;
	message_end(&w);
	*len = w.len + w.reserve;
	if (w.too_big)
		return -EMSGSIZE;
	if (*len > cap)
		return -ENOSPC;
	if (t->signing) {
		/* RFC 8945 5.3.1: every message signed, each after the one
		 * before. */
		int signed_len =
			xd_tsig_sign(&t->tsig, out + 2, w.len - 2, cap - 2, (uint64_t)time(NULL));

		if (signed_len < 0)
			return signed_len;
		xd_put16(out, (uint16_t)signed_len);
	}
	return t->phase != PHASE_DONE;
}

int xd_axfr_refuse(struct xd_axfr *t, uint8_t *resp, size_t cap)
{
	int n = xd_answer_refused(t->query, t->q.len, resp, cap);

	if (n <= 0 || !t->signing)
		return n;
	n = xd_tsig_sign(&t->tsig, resp, (size_t)n, cap, (uint64_t)time(NULL));
	return n < 0 ? 0 : n;
}

void xd_axfr_end(struct xd_axfr *t)
{
	xd_image_free((struct xd_image *)t->img);
	t->img = NULL;
}

int xd_axfr(const struct xd_image *img, const struct xd_client *client, const uint8_t *query,
	    size_t qlen, uint8_t *out, size_t cap, size_t *len)
{
	struct xd_axfr *t = malloc(sizeof(*t));
	size_t total = 0, n;
	int rc;

	*len = 0;
	if (!t)
		return -ENOMEM;
	rc = xd_axfr_begin(t, img, client, query, qlen);
	if (rc) {
		free(t);
		return rc;
	}
	/* Past cap the messages are only counted: the caller learns the
	 * room it needs. */
	do {
		rc = xd_axfr_next(t, total < cap ? out + total : NULL,
				  total < cap ? cap - total : 0, &n);
		total += n;
	} while (rc > 0 || rc == -ENOSPC);
	xd_axfr_end(t);
	free(t);
	*len = total;
	if (rc < 0)
		return rc;
	return total > cap ? -ENOSPC : 0;
}

int xd_zone_serial(const struct xd_image *img, const uint8_t *name, size_t len, uint32_t *serial)
{
	int zone = xd_image_find_zone(img, name, len);
	const uint8_t *soa;

	if (zone < 0)
		return -ENOENT;
	soa = xd_node_rrset(img->base + xd_image_zone(img, (uint32_t)zone)->apex, XD_TYPE_SOA);
	if (!soa)
		return -ENOENT;
	*serial = xd_soa_rrset_serial(soa);
	return 0;
}
