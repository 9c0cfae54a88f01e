/*
 * override.c - the builder's override rules (engine.h, "Overrides"): rules
 * that any number of names share, the names with their exact and subtree
 * rules, and the blocklist reader that applies one rule to every name of a
 * file (a million names in about half a second, docs/PERFORMANCE.md).
 * layout.c writes them into the image, image.c finds them for the
 * answering core.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MADV_SEQUENTIAL */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zone/builder.h"
#include "image/image.h"

/* Start size of the name hash: a handful of config rules never regrow it. */
#define XD_OVERRIDE_HASH_MIN 1024
/* Blocklists run about 20 bytes a line; reserving for one name per this
 * many bytes saves rehashing a million names while growing. */
#define XD_BLOCKLIST_BYTES_PER_NAME 24
/* How much of a bad line a problem quotes. */
#define XD_BLOCKLIST_QUOTE_MAX 64

enum {
	KIND_EXACT = 0,
	KIND_SUBTREE = 1
};

static int errorf(struct xd_error *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int errorf(struct xd_error *err, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- rules ----------------------------------------------------------------- */

int xd_builder_add_override_rule(struct xd_builder *b, int action, uint32_t value,
				 struct xd_error *err)
{
	bool resolver = action == XD_OVERRIDE_RESOLVER;
	struct brule *r;

	if (action < XD_OVERRIDE_NXDOMAIN || action > XD_OVERRIDE_RESOLVER)
		return errorf(err, -EINVAL, "unknown override action %d", action);
	if (resolver && value >= XD_RESOLVER_HOOKS_MAX)
		return errorf(err, -EINVAL, "resolver hook %u: at most %d hooks", value,
			      XD_RESOLVER_HOOKS_MAX);
	if (b->nrules >= INT32_MAX)
		return errorf(err, -E2BIG, "too many override rules");
	if (xd_grow((void **)&b->rules, &b->rules_cap, b->nrules + 1, sizeof(*r)))
		return errorf(err, -ENOMEM, "out of memory");
	r = &b->rules[b->nrules];
	memset(r, 0, sizeof(*r));
	r->first = XD_NONE;
	if (resolver)
		r->hook = (uint8_t)value;
	else
		r->ttl = value > INT32_MAX ? 0 : value; /* RFC 2181 8: the top bit means 0 */
	r->action = action;
	b->checked = false;
	return (int)b->nrules++;
}

static struct brule *rule_get(struct xd_builder *b, int rule)
{
	return rule >= 0 && (size_t)rule < b->nrules ? &b->rules[rule] : NULL;
}

int xd_builder_add_override_record(struct xd_builder *b, int rule, uint16_t rtype,
				   const uint8_t *rdata, size_t rdata_len, struct xd_error *err)
{
	struct brule *r = rule_get(b, rule);
	bool cname = rtype == XD_TYPE_CNAME;
	struct brec *rec;

	if (!r || r->action != XD_OVERRIDE_ANSWER)
		return errorf(err, -EINVAL, "override rule %d is not an answer rule", rule);
	if (xd_type_is_meta(rtype))
		return errorf(err, -EINVAL, "type %u cannot be data", rtype);
	if (rdata_len > UINT16_MAX)
		return errorf(err, -EINVAL, "rdata too long");
	/* RFC 1034 3.6.2, RFC 2181 10.1: a CNAME stands alone. */
	if (cname ? r->has_other || r->has_cname : r->has_cname)
		return errorf(err, -EINVAL,
			      "a CNAME stands alone: no other records "
			      "and no second CNAME beside it");
	if (b->nrecs >= XD_NONE - 1 || b->rdata_len + rdata_len >= UINT32_MAX)
		return errorf(err, -E2BIG, "too many records");
	if (xd_grow((void **)&b->recs, &b->recs_cap, b->nrecs + 1, sizeof(*rec)) ||
	    xd_grow((void **)&b->rdata, &b->rdata_cap, b->rdata_len + rdata_len, 1))
		return errorf(err, -ENOMEM, "out of memory");
	rec = &b->recs[b->nrecs];
	memset(rec, 0, sizeof(*rec));
	rec->rdata = b->rdata_len;
	rec->rdlen = rdata_len;
	rec->ttl = r->ttl;
	rec->type = rtype;
	rec->source = -1;
	rec->next = r->first;
	r->first = b->nrecs++;
	memcpy(b->rdata + b->rdata_len, rdata, rdata_len);
	b->rdata_len += rdata_len;
	r->has_cname |= cname;
	r->has_other |= !cname;
	b->checked = false;
	return 0;
}

/* ---- names ----------------------------------------------------------------- */

static void hash_put(uint64_t *hash, size_t size, uint64_t h, uint32_t index)
{
	size_t mask = size - 1;
	size_t i = h & mask;

	while (hash[i])
		i = (i + 1) & mask;
	hash[i] = (uint64_t)(uint32_t)h << 32 | (index + 1);
}

/* Keeps the hash at most half full for `names` names. */
static int hash_reserve(struct xd_builder *b, size_t names)
{
	size_t size = b->override_hash_size ? b->override_hash_size : XD_OVERRIDE_HASH_MIN;
	uint64_t *nh;

	while (names * 2 > size)
		size *= 2;
	if (size == b->override_hash_size)
		return 0;
	nh = calloc(size, sizeof(*nh));
	if (!nh)
		return -ENOMEM;
	for (size_t i = 0; i < b->noverrides; i++)
		hash_put(nh, size, b->overrides[i].hash, i);
	free(b->override_hash);
	b->override_hash = nh;
	b->override_hash_size = size;
	return 0;
}

static uint32_t name_find(const struct xd_builder *b, const uint8_t *name, size_t len, uint64_t h)
{
	size_t mask = b->override_hash_size - 1;

	if (!b->override_hash_size)
		return XD_NONE;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		uint64_t slot = b->override_hash[i];
		const struct boverride *o;

		if (slot == 0)
			return XD_NONE;
		if ((uint32_t)(slot >> 32) != (uint32_t)h)
			continue;
		o = &b->overrides[(uint32_t)slot - 1];
		if (o->name_len == len && memcmp(b->names + o->name, name, len) == 0)
			return (uint32_t)slot - 1;
	}
}

static int reserve_names(struct xd_builder *b, size_t names, size_t bytes)
{
	if (hash_reserve(b, b->noverrides + names) ||
	    xd_grow((void **)&b->overrides, &b->overrides_cap, b->noverrides + names,
		    sizeof(*b->overrides)) ||
	    xd_grow((void **)&b->names, &b->names_cap, b->names_len + bytes, 1))
		return -ENOMEM;
	return 0;
}

/* Gives `lower` (a valid lower-case wire name) rule `rule` of `kind`
 * unless it has one: 1 when given, 0 when it had one, or -errno. */
static int name_apply(struct xd_builder *b, const uint8_t *lower, size_t len, int kind,
		      uint32_t rule)
{
	uint64_t h = xd_override_hash(lower, len);
	uint32_t found = name_find(b, lower, len, h);
	struct boverride *o;
	int rc;

	if (found != XD_NONE) {
		o = &b->overrides[found];
		if (o->rule[kind] != XD_NONE)
			return 0;
		o->rule[kind] = rule;
		return 1;
	}
	if (b->noverrides >= XD_NONE - 1 || b->names_len + len >= UINT32_MAX)
		return -E2BIG;
	rc = reserve_names(b, 1, len);
	if (rc)
		return rc;
	o = &b->overrides[b->noverrides];
	o->hash = h;
	o->name = b->names_len;
	o->name_len = len;
	o->labels = xd_name_labels(lower);
	o->rule[KIND_EXACT] = o->rule[KIND_SUBTREE] = XD_NONE;
	o->rule[kind] = rule;
	memcpy(b->names + b->names_len, lower, len);
	b->names_len += len;
	hash_put(b->override_hash, b->override_hash_size, h, b->noverrides++);
	return 1;
}

int xd_builder_add_override(struct xd_builder *b, const uint8_t *name, size_t len, int subtree,
			    int rule, struct xd_error *err)
{
	uint8_t lower[XD_NAME_MAX];
	int n = xd_name_check(name, len);
	int rc;

	if (n < 0 || (size_t)n != len)
		return errorf(err, -EINVAL, "malformed override name");
	if (!rule_get(b, rule))
		return errorf(err, -EINVAL, "unknown override rule %d", rule);
	xd_name_lower(lower, name, len);
	rc = name_apply(b, lower, len, subtree ? KIND_SUBTREE : KIND_EXACT, rule);
	if (rc < 0)
		return errorf(err, rc, rc == -ENOMEM ? "out of memory" : "too many override names");
	return rc;
}

/* ---- blocklist files --------------------------------------------------------- */

struct blocklist {
	struct xd_builder *b;
	const char *path;
	struct xd_error *err;
	int source;
	uint32_t rule;
	bool subtree;
	uint32_t line;
	unsigned long errors;
};

/* One bad line: a problem, and the first one also in err. */
static int line_problem(struct blocklist *bl, const char *tok, size_t len, const char *why)
{
	char msg[sizeof(((struct xd_problem *)0)->message)];
	int quoted = len > XD_BLOCKLIST_QUOTE_MAX ? XD_BLOCKLIST_QUOTE_MAX : (int)len;

	snprintf(msg, sizeof(msg), "'%.*s%s': %s", quoted, tok, (size_t)quoted < len ? "..." : "",
		 why);
	if (bl->errors++ == 0)
		errorf(bl->err, -EINVAL, "%s:%u: %s", bl->path, bl->line, msg);
	return xd_builder_add_problem(bl->b, XD_PROBLEM_ERROR, bl->source, bl->line, msg);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static const char *skip_blank(const char *p, const char *end)
{
	while (p < end && is_blank(*p))
		p++;
	return p;
}

/* The end of the name at p: a blank or a '#' that no backslash escapes. */
static const char *token_end(const char *p, const char *end)
{
	while (p < end && !is_blank(*p) && *p != '#')
		p += (*p == '\\' && p + 1 < end) ? 2 : 1;
	return p;
}

/* RFC 1035 5.1: \X is X, \DDD the octet DDD.  Returns the octet and moves
 * *pp past the escape, or -1. */
static int unescape(const char **pp, const char *end)
{
	const char *p = *pp;
	int v;

	if (p >= end)
		return -1;
	if (*p < '0' || *p > '9') {
		*pp = p + 1;
		return (uint8_t)*p;
	}
	if (end - p < 3 || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
		return -1;
	v = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	*pp = p + 3;
	return v <= 255 ? v : -1;
}

/* Closes the label that starts at wire[label] (its length byte). */
static int close_label(uint8_t *wire, size_t label, size_t out, const char **why)
{
	if (out - label - 1 > XD_LABEL_MAX) {
		*why = "a label longer than 63 bytes";
		return -1;
	}
	wire[label] = out - label - 1;
	return 0;
}

/*
 * Master-file text of a name (RFC 1035 5.1, always absolute: a final dot is
 * optional) into lower-case wire form.  Returns the wire length or -1 with
 * *why.  Bytes outside printable ASCII are refused: an internationalized
 * name goes into a blocklist in its xn-- form (RFC 5891), as resolvers ask.
 */
static int parse_name(const char *p, const char *end, uint8_t *wire, const char **why)
{
	size_t out = 1, label = 0;

	if (end - p == 1 && *p == '.') {
		wire[0] = 0;
		return 1;
	}
	while (p < end) {
		int c = (uint8_t)*p++;
		bool escaped = c == '\\';

		if (c == '.') {
			if (out - label == 1) {
				*why = "an empty label";
				return -1;
			}
			if (close_label(wire, label, out, why))
				return -1;
			label = out++;
			continue;
		}
		if (escaped && (c = unescape(&p, end)) < 0) {
			*why = "a bad escape (\\X or \\DDD with DDD up to 255)";
			return -1;
		}
		if (!escaped && (c < 0x21 || c > 0x7e)) {
			*why = c > 0x7e ? "a byte outside ASCII (write the name in its xn-- form)" :
					  "a control character";
			return -1;
		}
		/* Room for this byte and the root label after it. */
		if (out + 2 > XD_NAME_MAX) {
			*why = "a name longer than 255 bytes";
			return -1;
		}
		wire[out++] = xd_lower(c);
	}
	if (out - label > 1) {
		if (close_label(wire, label, out, why))
			return -1;
		label = out++;
	}
	wire[label] = 0;
	return (int)out;
}

/* One line: blank, a comment, or one name with an optional comment. */
static int read_line(struct blocklist *bl, const char *p, const char *eol)
{
	uint8_t wire[XD_NAME_MAX];
	const char *tok, *tok_end, *rest, *why = NULL;
	bool subtree = bl->subtree;
	int len, rc;

	tok = skip_blank(p, eol);
	if (tok == eol || *tok == '#')
		return 0;
	tok_end = token_end(tok, eol);
	rest = skip_blank(tok_end, eol);
	if (rest < eol && *rest != '#')
		return line_problem(bl, tok, eol - tok,
				    "more than one name on the line "
				    "(one name per line; '#' starts a comment)");
	if (tok_end - tok >= 2 && tok[0] == '*' && tok[1] == '.') {
		subtree = true;
		p = tok + 2;
	} else {
		p = tok;
	}
	/* "*" or "*." alone would be the whole name space: surely a mistake in
	 * a list of names (a config rule can still say it). */
	if ((tok_end - tok == 1 && tok[0] == '*') || (subtree && p == tok_end))
		return line_problem(bl, tok, tok_end - tok,
				    "a subtree needs a name: "
				    "write *.NAME");
	len = parse_name(p, tok_end, wire, &why);
	if (len < 0)
		return line_problem(bl, tok, tok_end - tok, why);
	rc = name_apply(bl->b, wire, len, subtree ? KIND_SUBTREE : KIND_EXACT, bl->rule);
	return rc < 0 ? rc : 0;
}

static int read_lines(struct blocklist *bl, const char *p, const char *end)
{
	while (p < end) {
		const char *nl = memchr(p, '\n', end - p);
		const char *eol = nl ? nl : end;
		int rc;

		bl->line++;
		rc = read_line(bl, p, eol);
		if (rc < 0)
			return rc; /* out of memory or space, not a bad line */
		p = eol + 1;
	}
	return 0;
}

/* A problem for the whole file (line 0), also in err. */
static int file_problem(struct blocklist *bl, int rc, const char *what)
{
	errorf(bl->err, rc, "%s: %s", bl->path, what);
	xd_builder_add_problem(bl->b, XD_PROBLEM_ERROR, bl->source, 0, what);
	return rc;
}

static int read_file(struct blocklist *bl)
{
	struct stat st;
	char what[128];
	void *data;
	int fd, rc;

	fd = open(bl->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(what, sizeof(what), "cannot read the blocklist: %s", strerror(-rc));
		if (fd >= 0)
			close(fd);
		return file_problem(bl, rc, what);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return file_problem(bl, -EINVAL, "the blocklist is not a regular file");
	}
	if (st.st_size == 0) {
		close(fd);
		return 0;
	}
	data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (data == MAP_FAILED) {
		rc = -errno;
		snprintf(what, sizeof(what), "cannot map the blocklist: %s", strerror(-rc));
		return file_problem(bl, rc, what);
	}
	madvise(data, (size_t)st.st_size, MADV_SEQUENTIAL);
	rc = reserve_names(bl->b, (size_t)st.st_size / XD_BLOCKLIST_BYTES_PER_NAME,
			   (size_t)st.st_size);
	if (rc == 0)
		rc = read_lines(bl, data, (const char *)data + st.st_size);
	munmap(data, (size_t)st.st_size);
	if (rc < 0)
		errorf(bl->err, rc, "%s:%u: %s", bl->path, bl->line,
		       rc == -ENOMEM ? "out of memory" : "too many override names");
	return rc;
}

int xd_builder_load_blocklist(struct xd_builder *b, const char *path, int rule, int subtree,
			      struct xd_error *err)
{
	struct blocklist bl = { b, path, err, -1, rule, subtree != 0, 0, 0 };
	int rc;

	err->message[0] = 0;
	if (!rule_get(b, rule))
		return errorf(err, -EINVAL, "unknown override rule %d", rule);
	bl.source = xd_builder_add_source(b, path);
	if (bl.source < 0)
		return errorf(err, bl.source, "out of memory");
	rc = read_file(&bl);
	if (rc < 0)
		return rc;
	return bl.errors ? -EINVAL : 0;
}

/* ---- checks and clean-up ----------------------------------------------------- */

void xd_builder_check_overrides(struct xd_builder *b)
{
	for (size_t i = 0; i < b->nrules; i++)
		if (b->rules[i].action == XD_OVERRIDE_ANSWER && b->rules[i].first == XD_NONE)
			xd_builder_problemf(b, XD_PROBLEM_ERROR, -1, 0,
					    "override rule %zu: an answer without records", i);
}

void xd_builder_free_overrides(struct xd_builder *b)
{
	free(b->override_hash);
	free(b->overrides);
	free(b->rules);
}
