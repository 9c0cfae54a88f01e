/*
 * wire.c - DNS name helpers and the hash used for name lookups and image
 * checksums.
 */
#include <stdio.h>

#include "wire/wire.h"

int xd_name_check(const uint8_t *buf, size_t len)
{
	size_t pos = 0;

	while (pos < len) {
		uint8_t l = buf[pos];

		if (l == 0)
			return pos + 1 <= XD_NAME_MAX ? (int)(pos + 1) : -1;
		if (l > XD_LABEL_MAX)
			return -1; /* pointers and extended labels */
		pos += 1 + l;
	}
	return -1;
}

size_t xd_name_skip(const uint8_t *p, size_t len)
{
	size_t off = 0;

	for (int labels = 0; labels <= XD_LABELS_MAX; labels++) {
		uint8_t l;

		if (off >= len)
			return 0;
		l = p[off];
		if ((l & 0xc0) == 0xc0)
			return len - off >= 2 ? off + 2 : 0;
		if (l > XD_LABEL_MAX || len - off - 1 < l)
			return 0; /* extended label types, or cut short */
		off += 1u + l;
		if (l == 0)
			return off;
	}
	return 0;
}

void xd_name_lower(uint8_t *out, const uint8_t *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		out[i] = xd_lower(name[i]);
	/* Label lengths are <= 63, below 'A', so lower-casing them is a no-op. */
}

int xd_name_labels(const uint8_t *name)
{
	int n = 0;

	while (*name) {
		name += 1 + *name;
		n++;
	}
	return n;
}

bool xd_name_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (xd_lower(a[i]) != xd_lower(b[i]))
			return false;
	return true;
}

/* Offsets of the labels of a label sequence; their number, or -1 when
 * the sequence is malformed or has too many. */
static int label_offsets(const uint8_t *name, size_t len, uint8_t *off)
{
	size_t pos = 0;
	int n = 0;

	while (pos < len) {
		if (n == XD_LABELS_MAX || name[pos] == 0 || pos + 1 + name[pos] > len)
			return -1;
		off[n++] = (uint8_t)pos;
		pos += 1 + name[pos];
	}
	return n;
}

int xd_name_canonical_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	uint8_t aoff[XD_LABELS_MAX], boff[XD_LABELS_MAX];
	int an = label_offsets(a, alen, aoff), bn = label_offsets(b, blen, boff);

	if (an < 0 || bn < 0)
		return an < 0 ? (bn < 0 ? 0 : -1) : 1; /* never for checked names */
	while (an > 0 && bn > 0) {
		const uint8_t *la = a + aoff[--an], *lb = b + boff[--bn];
		size_t n = la[0] < lb[0] ? la[0] : lb[0];
		int c = memcmp(la + 1, lb + 1, n);

		if (c)
			return c;
		if (la[0] != lb[0])
			return la[0] < lb[0] ? -1 : 1;
	}
	return an - bn;
}

bool xd_name_is_below(const uint8_t *name, size_t name_len, const uint8_t *suffix,
		      size_t suffix_len)
{
	size_t pos = 0;

	if (name_len < suffix_len)
		return false;
	/* Walk label boundaries so that "xexample.com" is not below
	 * "example.com". */
	while (name_len - pos > suffix_len)
		pos += 1 + name[pos];
	return name_len - pos == suffix_len &&
	       xd_name_equal(name + pos, suffix_len, suffix, suffix_len);
}

int xd_name_read(const uint8_t *msg, size_t msg_len, size_t pos, uint8_t *out, bool lower,
		 size_t *next)
{
	size_t out_len = 0;
	size_t end = 0;
	int jumps = 0;

	for (;;) {
		if (pos >= msg_len)
			return -1;
		uint8_t l = msg[pos];

		if ((l & 0xc0) == 0xc0) {
			if (pos + 2 > msg_len || ++jumps > XD_LABELS_MAX)
				return -1;
			size_t target = (size_t)(l & 0x3f) << 8 | msg[pos + 1];

			if (end == 0)
				end = pos + 2;
			/* Only backwards pointers: forward ones allow loops. */
			if (target >= pos)
				return -1;
			pos = target;
			continue;
		}
		if (l > XD_LABEL_MAX)
			return -1;
		if (pos + 1 + l > msg_len || out_len + 1 + l > XD_NAME_MAX)
			return -1;
		out[out_len++] = l;
		if (l == 0)
			break;
		if (lower)
			xd_name_lower(out + out_len, msg + pos + 1, l);
		else
			memcpy(out + out_len, msg + pos + 1, l);
		out_len += l;
		pos += 1 + l;
	}
	if (next)
		*next = end ? end : pos + 1;
	return (int)out_len;
}

static inline uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

uint64_t xd_hash(const uint8_t *data, size_t len, uint64_t seed)
{
	const uint64_t k = 0x9e3779b97f4a7c15ULL;
	uint64_t h = seed ^ (len * k);
	size_t i = 0;

	/* One multiply per word and one full mix at the end: names are short,
	 * and this runs once per label of every query. */
	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, data + i, 8);
		h = (h ^ w) * k;
		h ^= h >> 29;
	}
	if (i < len) {
		uint64_t w = 0;

		memcpy(&w, data + i, len - i);
		h = (h ^ w) * k;
		h ^= h >> 29;
	}
	return mix64(h);
}

void xd_name_to_text(const uint8_t *wire, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return;
	if (*wire == 0 && cap > 1)
		out[o++] = '.';
	while (*wire) {
		uint8_t l = *wire++;

		for (uint8_t i = 0; i < l; i++, wire++) {
			uint8_t c = *wire;
			char tmp[5];
			int n;

			if (c <= ' ' || c >= 0x7f)
				n = snprintf(tmp, sizeof(tmp), "\\%03u", c);
			else if (c == '.' || c == '\\' || c == '"' || c == ';' || c == '(' ||
				 c == ')' || c == '$' || c == '@')
				n = snprintf(tmp, sizeof(tmp), "\\%c", c);
			else
				n = snprintf(tmp, sizeof(tmp), "%c", c);
			if (o + n + 2 > cap)
				goto out;
			memcpy(out + o, tmp, n);
			o += n;
		}
		if (o + 2 > cap)
			goto out;
		out[o++] = '.';
	}
out:
	out[o] = 0;
}

void xd_type_to_text(uint16_t type, char *out, size_t cap)
{
	static const struct {
		uint16_t type;
		const char *name;
	} names[] = {
		{ 1, "A" },	  { 2, "NS" },	     { 5, "CNAME" },	   { 6, "SOA" },
		{ 12, "PTR" },	  { 13, "HINFO" },   { 15, "MX" },	   { 16, "TXT" },
		{ 28, "AAAA" },	  { 33, "SRV" },     { 35, "NAPTR" },	   { 39, "DNAME" },
		{ 43, "DS" },	  { 44, "SSHFP" },   { 46, "RRSIG" },	   { 47, "NSEC" },
		{ 48, "DNSKEY" }, { 50, "NSEC3" },   { 51, "NSEC3PARAM" }, { 52, "TLSA" },
		{ 59, "CDS" },	  { 60, "CDNSKEY" }, { 64, "SVCB" },	   { 65, "HTTPS" },
		{ 99, "SPF" },	  { 257, "CAA" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (names[i].type == type) {
			snprintf(out, cap, "%s", names[i].name);
			return;
		}
	}
	snprintf(out, cap, "TYPE%u", type); /* RFC 3597 5 */
}

static const struct xd_name_field name_fields[] = {
	{ XD_TYPE_NS, 0, 1, 1, 1 },    { XD_TYPE_MD, 0, 1, 1, 0 },  { XD_TYPE_MF, 0, 1, 1, 0 },
	{ XD_TYPE_CNAME, 0, 1, 1, 1 }, { XD_TYPE_SOA, 0, 2, 1, 0 }, { XD_TYPE_MB, 0, 1, 1, 0 },
	{ XD_TYPE_MG, 0, 1, 1, 0 },    { XD_TYPE_MR, 0, 1, 1, 0 },  { XD_TYPE_PTR, 0, 1, 1, 0 },
	{ XD_TYPE_MINFO, 0, 2, 1, 0 }, { XD_TYPE_MX, 2, 1, 1, 1 },  { XD_TYPE_SRV, 6, 1, 0, 1 },
	{ XD_TYPE_DNAME, 0, 1, 0, 1 },
};

const struct xd_name_field *xd_rdata_name_field(uint16_t type)
{
	for (size_t i = 0; i < sizeof(name_fields) / sizeof(name_fields[0]); i++)
		if (name_fields[i].type == type)
			return &name_fields[i];
	return NULL;
}
