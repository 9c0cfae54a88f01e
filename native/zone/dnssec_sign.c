/*
 * dnssec_sign.c - DNSSEC signing keys and RRSIGs (RFC 4034, RFC 6840) with
 * the system's libcrypto: keys read from the files BIND's dnssec-keygen and
 * Knot's keymgr write (K<zone>+<alg>+<tag>.key and .private), algorithms
 * 13 (ECDSA P-256 with SHA-256, RFC 6605) and 15 (Ed25519, RFC 8080).
 *
 * What is signed is RFC 4034 3.1.8.1's: the RRSIG RDATA without its
 * signature, then every RR of the RRset in canonical form (owner and the
 * names of RFC 4034 6.2's types lower-cased, the original TTL), sorted by
 * RDATA.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "zone/dnssec_sign.h"
#include "error.h"
#include "wire/wire.h"

#define XD_KEY_LINE_MAX 4096
#define XD_PUBKEY_MAX 64

struct xd_sign_key {
	EVP_PKEY *pkey;
	uint8_t algorithm;
	uint16_t flags;
	uint16_t tag;
	uint8_t dnskey[4 + XD_PUBKEY_MAX]; /* the DNSKEY RDATA */
	size_t dnskey_len;
};

/* ---- reading the files ---------------------------------------------------- */

static int b64_value(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Base64 text (spaces skipped, '=' ends it) into out; its length, or -1. */
static int b64_decode(const char *text, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	for (; *text && *text != '='; text++) {
		int v;

		if (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
			continue;
		v = b64_value((unsigned char)*text);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			if (n == cap)
				return -1;
			out[n++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	return (int)n;
}

/* The value of "Field: value" in a .private file, into out. */
static int private_field(FILE *f, const char *field, char *out, size_t cap)
{
	char line[XD_KEY_LINE_MAX];
	size_t flen = strlen(field);

	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			const char *v = line + flen + 1;

			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(out, cap, "%s", v);
			out[strcspn(out, "\r\n")] = '\0';
			return 0;
		}
	}
	return -ENOENT;
}

/* The DNSKEY of a .key file: "owner [ttl] [class] DNSKEY flags 3 alg key",
 * comments (;) skipped, the key's base64 possibly split by spaces. */
static int read_dnskey(const char *path, uint16_t *flags, uint8_t *alg, uint8_t *pub,
		       size_t *pub_len, struct xd_error *err)
{
	char line[XD_KEY_LINE_MAX], *p;
	unsigned f, proto, a;
	int n, rc = 1; /* 1: no DNSKEY line seen */
	FILE *fp = fopen(path, "r");

	if (!fp)
		return xd_errorf(err, -errno, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), fp)) {
		line[strcspn(line, ";\r\n")] = '\0';
		p = strstr(line, "DNSKEY");
		if (!p)
			continue;
		if (sscanf(p + 6, " %u %u %u %n", &f, &proto, &a, &n) != 3 || proto != 3 ||
		    f > UINT16_MAX || a > UINT8_MAX) {
			rc = xd_errorf(err, -EINVAL,
				       "%s: not a DNSKEY record (flags 3 algorithm "
				       "key)",
				       path);
			break;
		}
		n = b64_decode(p + 6 + n, pub, XD_PUBKEY_MAX);
		if (n <= 0) {
			rc = xd_errorf(err, -EINVAL,
				       "%s: the DNSKEY's public key is not base64 "
				       "of at most %d bytes",
				       path, XD_PUBKEY_MAX);
			break;
		}
		*flags = (uint16_t)f;
		*alg = (uint8_t)a;
		*pub_len = (size_t)n;
		rc = 0;
		break;
	}
	if (rc == 1)
		rc = xd_errorf(err, -EINVAL, "%s: no DNSKEY record", path);
	fclose(fp);
	return rc;
}

/* RFC 4034 Appendix B. */
static uint16_t key_tag(const uint8_t *rdata, size_t len)
{
	uint32_t ac = 0;

	for (size_t i = 0; i < len; i++)
		ac += (i & 1) ? rdata[i] : (uint32_t)rdata[i] << 8;
	ac += ac >> 16;
	return (uint16_t)ac;
}

/* ---- the private key into libcrypto -------------------------------------- */

static EVP_PKEY *p256_key(const uint8_t *priv, size_t priv_len, const uint8_t *pub, size_t pub_len)
{
	uint8_t point[1 + XD_PUBKEY_MAX];
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *d = BN_bin2bn(priv, (int)priv_len, NULL);
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;

	/* The DNSKEY holds x || y (RFC 6605 4); libcrypto takes SEC1's
	 * uncompressed form. */
	point[0] = 0x04;
	memcpy(point + 1, pub, pub_len);
	if (bld && d &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, pub_len + 1))
		params = OSSL_PARAM_BLD_to_param(bld);
	if (params)
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (ctx && EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(d);
	return pkey;
}

/* Whether the private key is the one the DNSKEY publishes: a key pair
 * that does not match would sign what no validator accepts. */
static bool key_matches(EVP_PKEY *pkey, uint8_t alg, const uint8_t *pub, size_t pub_len)
{
	uint8_t raw[32];
	size_t raw_len = sizeof(raw);
	EVP_PKEY_CTX *ctx;
	bool ok;

	if (alg == XD_ALG_ED25519)
		return EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len) == 1 &&
		       raw_len == pub_len && memcmp(raw, pub, pub_len) == 0;
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	ok = ctx && EVP_PKEY_pairwise_check(ctx) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

int xd_sign_key_load(const char *base, struct xd_sign_key **out, struct xd_error *err)
{
	char path[4096], value[XD_KEY_LINE_MAX];
	uint8_t priv[64], pub[XD_PUBKEY_MAX];
	size_t pub_len = 0;
	struct xd_sign_key *k;
	uint16_t flags = 0;
	uint8_t alg = 0;
	int priv_len, rc;
	FILE *fp;

	*out = NULL;
	snprintf(path, sizeof(path), "%s.key", base);
	rc = read_dnskey(path, &flags, &alg, pub, &pub_len, err);
	if (rc < 0)
		return rc;
	if (alg != XD_ALG_ECDSAP256SHA256 && alg != XD_ALG_ED25519)
		return xd_errorf(err, -ENOTSUP,
				 "%s: algorithm %u: xdpdns signs with 13 "
				 "(ECDSAP256SHA256) and 15 (ED25519)",
				 path, alg);
	if (pub_len != (alg == XD_ALG_ED25519 ? 32u : 64u))
		return xd_errorf(err, -EINVAL, "%s: a public key of %zu bytes for algorithm %u",
				 path, pub_len, alg);
	snprintf(path, sizeof(path), "%s.private", base);
	fp = fopen(path, "r");
	if (!fp)
		return xd_errorf(err, -errno, "%s: %s", path, strerror(errno));
	rc = private_field(fp, "Algorithm", value, sizeof(value));
	if (rc == 0 && (unsigned)atoi(value) != alg)
		rc = xd_errorf(err, -EINVAL, "%s: algorithm %d, but the .key file says %u", path,
			       atoi(value), alg);
	else if (rc == 0)
		rc = private_field(fp, "PrivateKey", value, sizeof(value));
	fclose(fp);
	if (rc == -ENOENT)
		return xd_errorf(err, rc,
				 "%s: not a private key file (Algorithm and "
				 "PrivateKey expected)",
				 path);
	if (rc < 0)
		return rc;
	priv_len = b64_decode(value, priv, sizeof(priv));
	/* ECDSA's is a number: BIND writes it without its leading zero bytes
	 * (one key in 256 is 31 bytes long). */
	if (alg == XD_ALG_ECDSAP256SHA256 && priv_len > 0 && priv_len < 32) {
		memmove(priv + 32 - priv_len, priv, priv_len);
		memset(priv, 0, 32 - priv_len);
		priv_len = 32;
	}
	if (priv_len != 32)
		return xd_errorf(err, -EINVAL, "%s: PrivateKey is not base64 of 32 bytes", path);
	k = calloc(1, sizeof(*k));
	if (!k)
		return xd_errorf(err, -ENOMEM, "out of memory");
	k->pkey = alg == XD_ALG_ED25519 ?
			  EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32) :
			  p256_key(priv, 32, pub, pub_len);
	memset(priv, 0, sizeof(priv));
	if (!k->pkey || !key_matches(k->pkey, alg, pub, pub_len)) {
		EVP_PKEY_free(k->pkey);
		free(k);
		return xd_errorf(err, -EINVAL, "%s: not the private key of %s.key (algorithm %u)",
				 path, base, alg);
	}
	k->algorithm = alg;
	k->flags = flags;
	xd_put16(k->dnskey, flags);
	k->dnskey[2] = 3;
	k->dnskey[3] = alg;
	memcpy(k->dnskey + 4, pub, pub_len);
	k->dnskey_len = 4 + pub_len;
	k->tag = key_tag(k->dnskey, k->dnskey_len);
	*out = k;
	return 0;
}

void xd_sign_key_free(struct xd_sign_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

int xd_sign_key_info(const struct xd_sign_key *k, struct xd_sign_key_info *out)
{
	out->algorithm = k->algorithm;
	out->flags = k->flags;
	out->tag = k->tag;
	out->dnskey_len = k->dnskey_len;
	memcpy(out->dnskey, k->dnskey, k->dnskey_len);
	return 0;
}

/* ---- signing ------------------------------------------------------------------ */

/* RFC 6605 4: r || s, each 32 bytes, from libcrypto's DER. */
static int ecdsa_raw(const uint8_t *der, size_t der_len, uint8_t *out)
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	const BIGNUM *r, *s;
	int ok;

	if (!sig)
		return -EINVAL;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
	ECDSA_SIG_free(sig);
	return ok ? 64 : -EINVAL;
}

int xd_sign(const struct xd_sign_key *k, const uint8_t *data, size_t len, uint8_t *sig, size_t cap)
{
	uint8_t der[80];
	size_t der_len = sizeof(der), sig_len = cap;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ecdsa = k->algorithm == XD_ALG_ECDSAP256SHA256;
	int ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_DigestSignInit(ctx, NULL, ecdsa ? EVP_sha256() : NULL, NULL, k->pkey) == 1 &&
	     EVP_DigestSign(ctx, ecdsa ? der : sig, ecdsa ? &der_len : &sig_len, data, len) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -EIO;
	if (ecdsa)
		return cap < 64 ? -ENOSPC : ecdsa_raw(der, der_len, sig);
	return (int)sig_len;
}

/* RFC 4034 6.2 with RFC 6840 5.1: the types whose RDATA names are
 * lower-cased in canonical form, and where those names are. */
static int canonical_rdata(uint16_t type, const uint8_t *rd, size_t len, uint8_t *out)
{
	size_t at = 0, names = 0;

	memcpy(out, rd, len);
	switch (type) {
	case XD_TYPE_NS:
	case XD_TYPE_MD:
	case XD_TYPE_MF:
	case XD_TYPE_CNAME:
	case XD_TYPE_MB:
	case XD_TYPE_MG:
	case XD_TYPE_MR:
	case XD_TYPE_PTR:
	case XD_TYPE_DNAME:
		names = 1;
		break;
	case XD_TYPE_SOA:
	case XD_TYPE_MINFO:
	case 17: /* RP */
		names = 2;
		break;
	case 35: /* NAPTR: order, preference, three strings, then the name */
		at = 4;
		for (int k = 0; k < 3; k++) {
			if (at >= len)
				return -EINVAL;
			at += 1 + (size_t)out[at];
		}
		names = 1;
		break;
	case XD_TYPE_MX:
	case 18: /* AFSDB */
	case 21: /* RT */
	case 36: /* KX */
		at = 2, names = 1;
		break;
	case XD_TYPE_SRV:
		at = 6, names = 1;
		break;
	case 26: /* PX */
		at = 2, names = 2;
		break;
	}
	for (size_t i = 0; i < names; i++) {
		int n = xd_name_check(out + at, len - at);

		if (n <= 0 || at >= len)
			return -EINVAL;
		xd_name_lower(out + at, out + at, (size_t)n);
		at += (size_t)n;
	}
	return 0;
}

static int cmp_rdata(const void *a, const void *b)
{
	const struct xd_rdata_view *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->rdata, y->rdata, n);

	return c ? c : (int)x->len - (int)y->len;
}

int xd_sign_canonical_set(uint16_t type, const uint8_t *const *rdatas, const uint16_t *rdlens,
			  int count, struct xd_rdata_set *out)
{
	size_t total = 0;
	int n = 0;

	for (int i = 0; i < count; i++)
		total += rdlens[i];
	out->rr = calloc(count ? (size_t)count : 1, sizeof(*out->rr));
	out->buf = malloc(total ? total : 1);
	out->count = 0;
	if (!out->rr || !out->buf) {
		xd_rdata_set_free(out);
		return -ENOMEM;
	}
	for (int i = 0, at = 0; i < count; at += rdlens[i], i++) {
		if (canonical_rdata(type, rdatas[i], rdlens[i], out->buf + at) < 0) {
			xd_rdata_set_free(out);
			return -EINVAL;
		}
		out->rr[i].rdata = out->buf + at;
		out->rr[i].len = rdlens[i];
	}
	qsort(out->rr, (size_t)count, sizeof(*out->rr), cmp_rdata);
	for (int i = 0; i < count; i++) /* RFC 4034 6.3: duplicates count once */
		if (n == 0 || cmp_rdata(&out->rr[n - 1], &out->rr[i]) != 0)
			out->rr[n++] = out->rr[i];
	out->count = n;
	return 0;
}

bool xd_rdata_set_equal(const struct xd_rdata_set *a, const struct xd_rdata_set *b)
{
	if (a->count != b->count)
		return false;
	for (int i = 0; i < a->count; i++)
		if (cmp_rdata(&a->rr[i], &b->rr[i]) != 0)
			return false;
	return true;
}

void xd_rdata_set_free(struct xd_rdata_set *s)
{
	free(s->rr);
	free(s->buf);
	s->rr = NULL;
	s->buf = NULL;
	s->count = 0;
}

int xd_sign_labels(const uint8_t *lower_owner)
{
	/* RFC 4034 3.1.3: the labels of the owner, a leading "*" not counted. */
	return xd_name_labels(lower_owner) - (lower_owner[0] == 1 && lower_owner[1] == '*');
}

int xd_sign_rrset(const struct xd_sign_key *k, const struct xd_sign_rrset *s, uint8_t *out,
		  size_t cap, struct xd_error *err)
{
	uint8_t owner[XD_NAME_MAX], signer[XD_NAME_MAX];
	int owner_len = xd_name_check(s->owner, s->owner_len);
	int signer_len = xd_name_check(s->signer, s->signer_len);
	struct xd_rdata_set set = { 0 };
	size_t total = 0, pos, head;
	uint8_t *data = NULL, *p;
	int rc;

	if (owner_len <= 0 || signer_len <= 0 || s->count == 0)
		return xd_errorf(err, -EINVAL,
				 "an RRset to sign needs an owner, a signer and "
				 "records");
	xd_name_lower(owner, s->owner, (size_t)owner_len);
	xd_name_lower(signer, s->signer, (size_t)signer_len);
	rc = xd_sign_canonical_set(s->type, s->rdatas, s->rdlens, s->count, &set);
	if (rc == -EINVAL)
		return xd_errorf(err, rc, "malformed RDATA of type %u", s->type);
	if (rc < 0)
		return xd_errorf(err, rc, "out of memory");
	for (int i = 0; i < s->count; i++)
		total += s->rdlens[i];
	head = 18 + (size_t)signer_len;
	data = malloc(head + (size_t)s->count * ((size_t)owner_len + 10) + total);
	if (!data) {
		rc = xd_errorf(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* The RRSIG RDATA without its signature (RFC 4034 3.1). */
	xd_put16(data, s->type);
	data[2] = k->algorithm;
	data[3] = (uint8_t)xd_sign_labels(owner);
	xd_put32(data + 4, s->ttl);
	xd_put32(data + 8, s->expiration);
	xd_put32(data + 12, s->inception);
	xd_put16(data + 16, k->tag);
	memcpy(data + 18, signer, (size_t)signer_len);
	pos = head;
	for (int i = 0; i < set.count; i++) {
		memcpy(data + pos, owner, (size_t)owner_len);
		p = data + pos + owner_len;
		xd_put16(p, s->type);
		xd_put16(p + 2, XD_CLASS_IN);
		xd_put32(p + 4, s->ttl);
		xd_put16(p + 8, set.rr[i].len);
		memcpy(p + 10, set.rr[i].rdata, set.rr[i].len);
		pos += (size_t)owner_len + 10 + set.rr[i].len;
	}
	if (cap < head + 64) {
		rc = xd_errorf(err, -ENOSPC, "no room for the RRSIG");
		goto out;
	}
	memcpy(out, data, head);
	rc = xd_sign(k, data, pos, out + head, cap - head);
	if (rc < 0)
		rc = xd_errorf(err, rc, "libcrypto could not sign (algorithm %u)", k->algorithm);
	else
		rc = (int)head + rc;
out:
	xd_rdata_set_free(&set);
	free(data);
	return rc;
}
