/*
 * wire.h - DNS wire-format constants and small helpers shared by the image
 * builder and the answering core.  Everything here is bounds-safe and
 * allocation-free.
 */
#ifndef XDPDNS_WIRE_H
#define XDPDNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define XD_DNS_HEADER_LEN 12
#define XD_NAME_MAX 255 /* RFC 1035 3.1, wire form including the root */
#define XD_LABEL_MAX 63
#define XD_LABELS_MAX 128 /* 255 bytes hold at most 127 one-char labels + root */
#define XD_PTR_MAX 0x3fff /* a compression pointer has 14 bits */

enum {
	XD_TYPE_A = 1,
	XD_TYPE_NS = 2,
	XD_TYPE_MD = 3,
	XD_TYPE_MF = 4,
	XD_TYPE_CNAME = 5,
	XD_TYPE_SOA = 6,
	XD_TYPE_MB = 7,
	XD_TYPE_MG = 8,
	XD_TYPE_MR = 9,
	XD_TYPE_PTR = 12,
	XD_TYPE_MINFO = 14,
	XD_TYPE_MX = 15,
	XD_TYPE_TXT = 16,
	XD_TYPE_AAAA = 28,
	XD_TYPE_SRV = 33,
	XD_TYPE_DNAME = 39,
	XD_TYPE_OPT = 41,
	XD_TYPE_DS = 43,
	XD_TYPE_RRSIG = 46,
	XD_TYPE_NSEC = 47,
	XD_TYPE_DNSKEY = 48,
	XD_TYPE_NSEC3 = 50,
	XD_TYPE_NSEC3PARAM = 51,
	XD_TYPE_TKEY = 249,
	XD_TYPE_TSIG = 250,
	XD_TYPE_IXFR = 251,
	XD_TYPE_AXFR = 252,
	XD_TYPE_MAILB = 253,
	XD_TYPE_MAILA = 254,
	XD_TYPE_ANY = 255,
};

enum {
	XD_CLASS_IN = 1,
	XD_CLASS_CH = 3,
	XD_CLASS_NONE = 254,
	XD_CLASS_ANY = 255,
};

enum {
	XD_RCODE_NOERROR = 0,
	XD_RCODE_FORMERR = 1,
	XD_RCODE_SERVFAIL = 2,
	XD_RCODE_NXDOMAIN = 3,
	XD_RCODE_NOTIMP = 4,
	XD_RCODE_REFUSED = 5,
	XD_RCODE_NOTAUTH = 9, /* RFC 8945: a TSIG that fails */
	XD_RCODE_YXDOMAIN = 6,
	XD_RCODE_BADVERS = 16, /* extended: needs OPT (RFC 6891 6.1.3) */
	XD_RCODE_BADCOOKIE = 23, /* extended (RFC 7873 8) */
};

/* Header flag bits, in the 16-bit flags word. */
#define XD_FLAG_QR 0x8000
#define XD_FLAG_AA 0x0400
#define XD_FLAG_TC 0x0200
#define XD_FLAG_RD 0x0100
#define XD_FLAG_RA 0x0080
#define XD_FLAG_AD 0x0020
#define XD_FLAG_CD 0x0010
#define XD_OPCODE(flags) (((flags) >> 11) & 0xf)
#define XD_OPCODE_QUERY 0
#define XD_OPCODE_NOTIFY 4

#define XD_EDNS_DO 0x8000
#define XD_OPT_RR_LEN 11 /* an OPT record without options */
/* RFC 7873 4: an 8-byte client cookie, then 8 to 32 bytes of server
 * cookie; any other length is malformed (RFC 7873 5.2.2). */
#define XD_COOKIE_CLIENT_LEN 8
#define XD_COOKIE_SERVER_MIN 8
#define XD_COOKIE_SERVER_MAX 32
#define XD_EDNS_OPTION_EDE 15 /* RFC 8914 */
#define XD_EDNS_OPTION_NSID 3 /* RFC 5001 */
#define XD_EDNS_OPTION_COOKIE 10 /* RFC 7873 */
#define XD_EDNS_OPTION_KEEPALIVE 11 /* RFC 7828 */
#define XD_EDE_PROHIBITED 18
#define XD_EDE_NOT_AUTHORITATIVE 20

static inline uint16_t xd_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t xd_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void xd_put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static inline void xd_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

/* Native-endian unaligned loads for the image, which is host-order. */
static inline uint16_t xd_ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t xd_ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void xd_st16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void xd_st32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline uint8_t xd_lower(uint8_t c)
{
	/* Branch-free, so that the loops over names vectorize. */
	return c | (((uint8_t)(c - 'A') < 26) << 5);
}

/*
 * Validates an uncompressed wire name in buf[0..len) and returns its length
 * (including the root label), or -1.  Label bytes are not interpreted.
 */
int xd_name_check(const uint8_t *buf, size_t len);

/*
 * The bytes a possibly compressed name takes at p[0..len): its labels,
 * then the root's byte or a 2-byte pointer (not followed); 0 when no
 * well-formed name starts there.
 */
size_t xd_name_skip(const uint8_t *p, size_t len);

/* Lower-cases a wire name of known length into out. */
void xd_name_lower(uint8_t *out, const uint8_t *name, size_t len);

/* Length of a valid wire name, including the root label. */
static inline size_t xd_name_length(const uint8_t *name)
{
	size_t len = 0;

	while (name[len])
		len += 1 + name[len];
	return len + 1;
}

/* Number of labels of a wire name, not counting the root. */
int xd_name_labels(const uint8_t *name);

/* True when `name` (wire, lower-case) equals `suffix` or lies below it. */
bool xd_name_is_below(const uint8_t *name, size_t name_len, const uint8_t *suffix,
		      size_t suffix_len);

/*
 * RFC 4034 6.1 canonical order of two lower-case label sequences of
 * lengths alen and blen (wire labels, no root: names relative to one
 * origin, or whole names without their root byte): negative, 0 or
 * positive.  Labels compare from the rightmost, as unsigned octets, a
 * shorter label first when it is a prefix; fewer labels first when all
 * of those compared are equal.
 */
int xd_name_canonical_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* Case-insensitive equality of two uncompressed wire names. */
bool xd_name_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/*
 * Reads a possibly compressed name at msg[pos] into out (uncompressed,
 * lower-cased when `lower`), following at most XD_LABELS_MAX pointers, each
 * pointing strictly backwards.  Returns the name's wire length written to
 * out, or -1 when malformed; *next gets the offset after the name at pos.
 */
int xd_name_read(const uint8_t *msg, size_t msg_len, size_t pos, uint8_t *out, bool lower,
		 size_t *next);

/* Master-file text of a valid wire name ("www.example.com."), with \X
 * and \DDD escapes where needed; truncated to cap, always NUL-terminated. */
void xd_name_to_text(const uint8_t *wire, char *out, size_t cap);

/* A type's mnemonic ("AAAA"), or TYPEnnn (RFC 3597 5) for one without. */
void xd_type_to_text(uint16_t type, char *out, size_t cap);

/* 64-bit hash of a byte string (names, checksums). */
uint64_t xd_hash(const uint8_t *data, size_t len, uint64_t seed);

/* Where names sit in the RDATA of the types that have them (RFC 1035 3.3,
 * RFC 2782, RFC 6672): `names` consecutive names from `offset`.
 * compress: RFC 3597 4 lets only the RFC 1035 types be compressed;
 * target: the name is looked up for additional data or chasing. */
struct xd_name_field {
	uint16_t type;
	uint8_t offset;
	uint8_t names;
	uint8_t compress;
	uint8_t target;
};

/* The name field of type, NULL for a type without names in its RDATA
 * (as far as compression and answers are concerned). */
const struct xd_name_field *xd_rdata_name_field(uint16_t type);

#endif
