/*
 * zonefile.c - RFC 1035 master files through Knot's libzscanner.
 *
 * libzscanner parses records, $ORIGIN, $TTL and $INCLUDE; this file feeds it
 * text, follows $INCLUDE itself (so that includes are bounded, loops are
 * caught and every file gets its own source index for problem reports), and
 * expands BIND's $GENERATE, which libzscanner does not know, into ordinary
 * record lines before the scanner sees them.
 *
 * A file is read into memory whole and given to the scanner as a string:
 * read, not mapped, so that a file truncated while it is read (a reload
 * racing an editor) is a short zone, never SIGBUS.  An $INCLUDE must be a
 * regular file in the directory of the zone's own file or below it (NSD's
 * zonesdir idea: a zone file cannot pull in /etc/shadow), and no file is
 * read past XD_ZONE_FILE_MAX bytes.  Only when a line starts with $GENERATE is the text cut into
 * segments at those lines; the scanner keeps its origin, $TTL and previous
 * owner across segments because zs_set_input_string resets none of them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* realpath */
#endif
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libzscanner/scanner.h>

#include "engine.h"
#include "wire/wire.h"

/* BIND and Knot allow about this much nesting; deeper is a mistake, and every
 * level holds a scanner of about 200 KiB. */
#define XD_INCLUDE_DEPTH_MAX 16
/* One $GENERATE line must not turn into an unbounded number of records. */
#define XD_GENERATE_MAX (1u << 20)
/* A field wider than this cannot fit a label or a name; BIND's limit is 127
 * characters too (its number buffer). */
#define XD_GENERATE_WIDTH_MAX 127
/* BIND reads the range, offsets and values as int. */
#define XD_GENERATE_VALUE_MAX INT32_MAX
/* A value $TTL never sets in practice: a record that comes back with it had
 * no TTL while no $TTL (or SOA) had set one, so it gets the caller's
 * default_ttl.  RFC 2181 section 8 makes TTLs above 2^31 - 1 meaningless. */
#define XD_TTL_UNSET UINT32_MAX
#define XD_CLASS_IN 1
#define XD_TYPE_SOA 6
/* \DDD for every octet of the longest name, plus dots: fits zs_init's 1 KiB. */
#define XD_ORIGIN_TEXT_MAX 1024
#define XD_CONTEXT_MAX 48
/* A zone file larger than this is refused rather than read: a million
 * records take about 40 MB. */
#define XD_ZONE_FILE_MAX (1ULL << 30)

/* One call of xd_builder_load_zonefile, shared by all files it reads. */
struct xd_zf_load {
	struct xd_builder *b;
	int zone;
	uint32_t default_ttl;
	/* Error problems recorded plus records the builder rejected. */
	unsigned long errors;
	/* Files being read, outermost first: an $INCLUDE of one of them loops. */
	int depth;
	struct {
		dev_t dev;
		ino_t ino;
	} chain[XD_INCLUDE_DEPTH_MAX + 1];
	/* The top file's directory (symbolic links resolved): where
	 * $INCLUDE files must lie. */
	char *root;
};

/* One file being read. */
struct xd_zf_file {
	struct xd_zf_load *load;
	zs_scanner_t *s;
	int source;
	/* A fatal scanner error (bad directive, parenthesis, DOS newline) ends
	 * the file, as it ends zs_parse_all. */
	bool stopped;
};

/* A file's bytes, read into memory. */
struct xd_zf_text {
	const char *data;
	size_t len;
};

/* A growable byte buffer, reused for every line one $GENERATE makes. */
struct xd_zf_buf {
	char *data;
	size_t len;
	size_t cap;
};

/* A parsed $GENERATE line: `$GENERATE range lhs [ttl] [class] type rhs`. */
struct xd_zf_gen {
	int64_t start;
	int64_t stop;
	int64_t step;
	const char *lhs, *lhs_end;
	const char *head, *head_end; /* "[ttl] [class] type", verbatim */
	const char *rhs, *rhs_end;
};

static int xd_zf_read(struct xd_zf_load *load, const char *path, const char *origin,
		      uint16_t rclass, uint32_t ttl, int from_source, uint32_t from_line);

/* ---- Problems ------------------------------------------------------------ */

static int xd_zf_error(struct xd_zf_load *load, int source, uint64_t line, const char *message)
{
	load->errors++;
	return xd_builder_add_problem(load->b, XD_PROBLEM_ERROR, source, (uint32_t)line, message);
}

/* The scanner's error, with the rest of the offending line as context. */
static int xd_zf_scan_error(struct xd_zf_file *f)
{
	const zs_scanner_t *s = f->s;
	char context[XD_CONTEXT_MAX + 1];
	char message[256];
	size_t n = 0;

	for (uint32_t i = 0; i < s->buffer_length && n < XD_CONTEXT_MAX; i++) {
		uint8_t c = s->buffer[i];

		/* A comment after the error locates nothing. */
		if (c == '\0' || c == '\r' || c == ';')
			break;
		if (c == '\t')
			c = ' ';
		/* A problem message is one printable line, blanks squeezed. */
		if (c == ' ' && (n == 0 || context[n - 1] == ' '))
			continue;
		context[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	while (n > 0 && context[n - 1] == ' ')
		n--;
	context[n] = '\0';
	if (n > 0)
		snprintf(message, sizeof(message), "%s, near '%s'", zs_strerror(s->error.code),
			 context);
	else
		snprintf(message, sizeof(message), "%s", zs_strerror(s->error.code));
	return xd_zf_error(f->load, f->source, s->line_counter, message);
}

/* ---- Reading files -------------------------------------------------------- */

static void xd_zf_text_close(struct xd_zf_text *t)
{
	free((void *)t->data);
	t->data = NULL;
	t->len = 0;
}

/* Reads the file (or a pipe, /dev/stdin) to its end; size_hint, its size
 * when it was opened, saves the reallocations. */
static int xd_zf_text_slurp(int fd, size_t size_hint, struct xd_zf_text *t)
{
	size_t cap = 0, len = 0;
	char *data = NULL;

	for (;;) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : size_hint + 1 > 65536 ? size_hint + 1 : 65536;
			char *ndata;

			if (cap >= XD_ZONE_FILE_MAX) {
				free(data);
				return -EFBIG;
			}
			ndata = realloc(data, ncap);

			if (ndata == NULL) {
				free(data);
				return -ENOMEM;
			}
			data = ndata;
			cap = ncap;
		}
		ssize_t n = read(fd, data + len, cap - len);

		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			free(data);
			return -err;
		}
		len += (size_t)n;
	}
	t->data = data;
	t->len = len;
	return 0;
}

/* Reading a file failed for a reason errno has no words for. */
#define XD_ZF_NOT_REGULAR (-10000)

/* Opens and reads path; an $INCLUDE (include set) must be a regular file. */
static int xd_zf_text_open(const char *path, bool include, struct xd_zf_text *t, struct stat *st)
{
	int fd, ret = 0;

	/* O_NONBLOCK: opening a FIFO an $INCLUDE names must not hang the
	 * load; a regular file ignores it. */
	fd = open(path, O_RDONLY | O_CLOEXEC | (include ? O_NONBLOCK : 0));
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) != 0) {
		ret = -errno;
		goto out_fd;
	}
	if (S_ISDIR(st->st_mode)) {
		ret = -EISDIR;
		goto out_fd;
	}
	if (include && !S_ISREG(st->st_mode)) {
		ret = XD_ZF_NOT_REGULAR;
		goto out_fd;
	}
	if (S_ISREG(st->st_mode) && (uint64_t)st->st_size > XD_ZONE_FILE_MAX) {
		ret = -EFBIG;
		goto out_fd;
	}
	ret = xd_zf_text_slurp(fd, S_ISREG(st->st_mode) ? (size_t)st->st_size : 0, t);
out_fd:
	close(fd);
	return ret;
}

/* Why a file could not be read, in words. */
static const char *xd_zf_open_reason(int err)
{
	if (err == -XD_ZF_NOT_REGULAR)
		return "not a regular file";
	if (err == EFBIG)
		return "larger than 1 GiB";
	return strerror(err);
}

/* The directory of path with symbolic links resolved; NULL when it cannot
 * be resolved (the file is missing: opening it says so). */
static char *xd_zf_dir_of(const char *path)
{
	char *real = realpath(path, NULL), *dir;

	if (real == NULL)
		return NULL;
	dir = strdup(dirname(real));
	free(real);
	return dir;
}

/* $INCLUDE names are relative to the including file's directory (as in Knot
 * and BIND), and the scanner makes them absolute against s->path. */
static int xd_zf_set_dir(zs_scanner_t *s, const char *path)
{
	char *copy = realpath(path, NULL);
	char *dir;

	if (copy == NULL)
		copy = strdup(path);
	if (copy == NULL)
		return -ENOMEM;
	dir = strdup(dirname(copy));
	free(copy);
	if (dir == NULL)
		return -ENOMEM;
	free(s->path);
	s->path = dir;
	return 0;
}

/* ---- Feeding the scanner -------------------------------------------------- */

static int xd_zf_record(struct xd_zf_file *f)
{
	zs_scanner_t *s = f->s;
	uint32_t ttl = s->r_ttl;
	int ret;

	if (ttl == XD_TTL_UNSET)
		ttl = f->load->default_ttl;
	/* Without $TTL, the SOA's TTL becomes the default, which is RFC 1035's
	 * "last explicitly stated" rule for the record that normally comes
	 * first. */
	if (s->r_type == XD_TYPE_SOA && s->default_ttl == XD_TTL_UNSET)
		s->default_ttl = ttl;
	ret = xd_builder_add_record(f->load->b, f->load->zone, s->r_owner, s->r_owner_length,
				    s->r_type, s->r_class, ttl, s->r_data, s->r_data_length,
				    f->source, (uint32_t)s->line_counter);
	if (ret == -EINVAL) {
		/* Rejected; the builder has said why. */
		f->load->errors++;
		return 0;
	}
	return ret;
}

static int xd_zf_include(struct xd_zf_file *f)
{
	zs_scanner_t *s = f->s;

	/* Handing an $INCLUDE to the caller, the scanner leaves its directive
	 * call pushed and error.fatal set (zs_parse_all's path pops them):
	 * reset both, or every later warning stops the file and the 17th
	 * $INCLUDE overflows the 16-entry call stack. */
	s->top = 0;
	s->error.code = ZS_OK;
	s->error.fatal = false;

	/* include_filename is absolute now; buffer holds the origin as text.
	 * The child inherits this file's class and current default TTL. */
	return xd_zf_read(f->load, s->include_filename, (const char *)s->buffer, s->default_class,
			  s->default_ttl, f->source, (uint32_t)s->line_counter);
}

/* Parses what was set as input to its end, handing on every result. */
static int xd_zf_drain(struct xd_zf_file *f)
{
	zs_scanner_t *s = f->s;
	int ret = 0;

	while (ret == 0 && !f->stopped) {
		if (zs_parse_record(s) != 0)
			return s->error.code == ZS_ENOMEM ? -ENOMEM : -EINVAL;
		switch (s->state) {
		case ZS_STATE_DATA:
			ret = xd_zf_record(f);
			break;
		case ZS_STATE_ERROR:
			ret = xd_zf_scan_error(f);
			f->stopped = s->error.fatal;
			break;
		case ZS_STATE_INCLUDE:
			ret = xd_zf_include(f);
			break;
		default: /* EOF */
			return 0;
		}
	}
	return ret;
}

/* Parses text whose first line is line `line` of the file. */
static int xd_zf_feed(struct xd_zf_file *f, const char *text, size_t len, uint64_t line)
{
	if (len == 0 || f->stopped)
		return 0;
	if (zs_set_input_string(f->s, text, len) != 0)
		return -EINVAL;
	f->s->line_counter = line;
	return xd_zf_drain(f);
}

/* ---- $GENERATE: parsing the line ------------------------------------------ */

static bool xd_zf_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static const char *xd_zf_skip_blank(const char *p, const char *end)
{
	while (p < end && xd_zf_blank(*p))
		p++;
	return p;
}

/* The end of a token; a backslash keeps the next character in it. */
static const char *xd_zf_token_end(const char *p, const char *end)
{
	while (p < end && !xd_zf_blank(*p)) {
		if (*p == '\\' && p + 1 < end)
			p++;
		p++;
	}
	return p;
}

/* Where a comment starts: the first ';' outside quotes and escapes. */
static const char *xd_zf_comment(const char *p, const char *end)
{
	bool quoted = false;

	for (; p < end; p++) {
		if (*p == '\\' && p + 1 < end)
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (*p == ';' && !quoted)
			return p;
	}
	return end;
}

/* A non-negative decimal number no larger than XD_GENERATE_VALUE_MAX. */
static const char *xd_zf_number(const char *p, const char *end, int64_t *out)
{
	int64_t v = 0;
	const char *first = p;

	while (p < end && *p >= '0' && *p <= '9') {
		v = v * 10 + (*p - '0');
		if (v > XD_GENERATE_VALUE_MAX)
			return NULL;
		p++;
	}
	if (p == first)
		return NULL;
	*out = v;
	return p;
}

/* `start-stop[/step]`, with BIND's rules: 0 <= start <= stop, step >= 1. */
static int xd_zf_gen_range(const char *p, const char *end, struct xd_zf_gen *g)
{
	g->step = 1;
	p = xd_zf_number(p, end, &g->start);
	if (p == NULL || p == end || *p != '-')
		return -EINVAL;
	p = xd_zf_number(p + 1, end, &g->stop);
	if (p == NULL)
		return -EINVAL;
	if (p < end && *p == '/') {
		p = xd_zf_number(p + 1, end, &g->step);
		if (p == NULL || g->step < 1)
			return -EINVAL;
	}
	if (p != end || g->stop < g->start)
		return -EINVAL;
	return 0;
}

static bool xd_zf_is_class(const char *p, const char *end)
{
	static const char *const names[] = { "IN", "CH", "CS", "HS", "NONE", "ANY" };
	size_t len = (size_t)(end - p);

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && strncasecmp(p, names[i], len) == 0)
			return true;
	return len > 5 && strncasecmp(p, "CLASS", 5) == 0 && p[5] >= '0' && p[5] <= '9';
}

/* Splits "[ttl] [class] type rhs" (either order of ttl and class, as in
 * BIND); the scanner checks each field later. */
static int xd_zf_gen_fields(const char *p, const char *end, struct xd_zf_gen *g, const char **why)
{
	bool ttl = false, rclass = false;

	g->head = xd_zf_skip_blank(p, end);
	for (p = g->head;;) {
		const char *tok = xd_zf_skip_blank(p, end);

		p = xd_zf_token_end(tok, end);
		if (tok == end) {
			*why = "no type";
			return -EINVAL;
		}
		if (!ttl && *tok >= '0' && *tok <= '9') {
			ttl = true;
		} else if (!rclass && xd_zf_is_class(tok, p)) {
			rclass = true;
		} else {
			g->head_end = p;
			break;
		}
	}
	g->rhs = xd_zf_skip_blank(p, end);
	g->rhs_end = end;
	if (g->rhs == end) {
		*why = "no rhs";
		return -EINVAL;
	}
	return 0;
}

/* Parses a $GENERATE line (without its newline). */
static int xd_zf_gen_parse(const char *line, const char *end, struct xd_zf_gen *g, const char **why)
{
	const char *p = line + strlen("$GENERATE"), *tok;

	end = xd_zf_comment(p, end);
	while (end > p && xd_zf_blank(end[-1]))
		end--;
	tok = xd_zf_skip_blank(p, end);
	p = xd_zf_token_end(tok, end);
	if (tok == end) {
		*why = "no range";
		return -EINVAL;
	}
	if (xd_zf_gen_range(tok, p, g) != 0) {
		*why = "bad range (want start-stop[/step], 0 <= start <= stop)";
		return -EINVAL;
	}
	g->lhs = xd_zf_skip_blank(p, end);
	g->lhs_end = xd_zf_token_end(g->lhs, end);
	if (g->lhs == end) {
		*why = "no lhs";
		return -EINVAL;
	}
	return xd_zf_gen_fields(g->lhs_end, end, g, why);
}

/* ---- $GENERATE: expanding ------------------------------------------------- */

static int xd_zf_buf_put(struct xd_zf_buf *buf, const char *data, size_t len)
{
	if (len == 0)
		return 0;
	if (buf->cap - buf->len < len) {
		size_t cap = buf->cap ? buf->cap : 256;
		char *ndata;

		while (cap - buf->len < len)
			cap *= 2;
		ndata = realloc(buf->data, cap);
		if (ndata == NULL)
			return -ENOMEM;
		buf->data = ndata;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	return 0;
}

/* BIND's nibble form: hex digits least significant first, each its own
 * label; width counts the dots too and pads with zero nibbles. */
static int xd_zf_nibbles(struct xd_zf_buf *out, uint64_t v, unsigned width, bool upper)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	int ret;

	do {
		ret = xd_zf_buf_put(out, &digits[v & 0xf], 1);
		v >>= 4;
		width = width ? width - 1 : 0;
		if (ret == 0 && (width > 0 || v != 0)) {
			ret = xd_zf_buf_put(out, ".", 1);
			width = width ? width - 1 : 0;
		}
	} while (ret == 0 && (v != 0 || width > 0));
	return ret;
}

static int xd_zf_gen_number(struct xd_zf_buf *out, int64_t v, unsigned width, char base,
			    const char **why)
{
	char num[XD_GENERATE_WIDTH_MAX + 32];
	int n;

	if (v < 0 && base != 'd') {
		*why = "negative value in a non-decimal field";
		return -EINVAL;
	}
	switch (base) {
	case 'n':
	case 'N':
		return xd_zf_nibbles(out, (uint64_t)v, width, base == 'N');
	case 'o':
		n = snprintf(num, sizeof(num), "%0*llo", (int)width, (unsigned long long)v);
		break;
	case 'x':
		n = snprintf(num, sizeof(num), "%0*llx", (int)width, (unsigned long long)v);
		break;
	case 'X':
		n = snprintf(num, sizeof(num), "%0*llX", (int)width, (unsigned long long)v);
		break;
	default:
		n = snprintf(num, sizeof(num), "%0*lld", (int)width, (long long)v);
		break;
	}
	return xd_zf_buf_put(out, num, (size_t)n);
}

/* `{offset[,width[,base]]}` after a '$'; *pp points at the '{'. */
static int xd_zf_gen_modifier(const char **pp, const char *end, int64_t *offset, unsigned *width,
			      char *base)
{
	const char *p = *pp + 1;
	bool negative = false;
	int64_t v;

	if (p < end && (*p == '-' || *p == '+'))
		negative = *p++ == '-';
	p = xd_zf_number(p, end, &v);
	if (p == NULL)
		return -EINVAL;
	*offset = negative ? -v : v;
	if (p < end && *p == ',') {
		p = xd_zf_number(p + 1, end, &v);
		if (p == NULL || v > XD_GENERATE_WIDTH_MAX)
			return -EINVAL;
		*width = (unsigned)v;
		if (p < end && *p == ',') {
			if (++p == end || strchr("doxXnN", *p) == NULL)
				return -EINVAL;
			*base = *p++;
		}
	}
	if (p == end || *p != '}')
		return -EINVAL;
	*pp = p + 1;
	return 0;
}

/* One '$' and what follows it; *pp points just past the '$'. */
static int xd_zf_gen_dollar(struct xd_zf_buf *out, const char **pp, const char *end, int64_t it,
			    const char **why)
{
	int64_t offset = 0;
	unsigned width = 0;
	char base = 'd';

	if (*pp < end && **pp == '$') {
		/* "$$" is a literal '$'; the scanner takes it only escaped. */
		(*pp)++;
		return xd_zf_buf_put(out, "\\$", 2);
	}
	if (*pp < end && **pp == '{' && xd_zf_gen_modifier(pp, end, &offset, &width, &base) != 0) {
		*why = "bad modifier (want ${offset[,width[,base]]}, "
		       "base one of d o x X n N)";
		return -EINVAL;
	}
	return xd_zf_gen_number(out, it + offset, width, base, why);
}

/* Appends text with every '$' replaced for iterator value it.  Escapes
 * ("\$", "\;", "\DDD") are copied whole for the scanner to read. */
static int xd_zf_gen_expand(struct xd_zf_buf *out, const char *p, const char *end, int64_t it,
			    const char **why)
{
	int ret = 0;

	while (ret == 0 && p < end) {
		const char *run = p;

		while (p < end && *p != '$') {
			if (*p == '\\' && p + 1 < end)
				p++;
			p++;
		}
		ret = xd_zf_buf_put(out, run, (size_t)(p - run));
		if (ret == 0 && p < end) {
			p++;
			ret = xd_zf_gen_dollar(out, &p, end, it, why);
		}
	}
	return ret;
}

/* The record line for iterator value it: "lhs head rhs\n". */
static int xd_zf_gen_line(struct xd_zf_buf *out, const struct xd_zf_gen *g, int64_t it,
			  const char **why)
{
	int ret;

	out->len = 0;
	ret = xd_zf_gen_expand(out, g->lhs, g->lhs_end, it, why);
	if (ret == 0)
		ret = xd_zf_buf_put(out, " ", 1);
	if (ret == 0)
		ret = xd_zf_buf_put(out, g->head, (size_t)(g->head_end - g->head));
	if (ret == 0)
		ret = xd_zf_buf_put(out, " ", 1);
	if (ret == 0)
		ret = xd_zf_gen_expand(out, g->rhs, g->rhs_end, it, why);
	if (ret == 0)
		ret = xd_zf_buf_put(out, "\n", 1);
	return ret;
}

static int xd_zf_gen_problem(struct xd_zf_file *f, uint64_t line, const char *why)
{
	char message[256];

	snprintf(message, sizeof(message), "bad $GENERATE: %s", why);
	return xd_zf_error(f->load, f->source, line, message);
}

/* Expands one $GENERATE line (without its newline) into records, fed to the
 * scanner one at a time so that it applies origin, $TTL and class. */
static int xd_zf_generate(struct xd_zf_file *f, const char *text, size_t len, uint64_t line)
{
	struct xd_zf_buf buf = { 0 };
	struct xd_zf_gen g;
	const char *why = NULL;
	unsigned long errors;
	uint64_t count;
	int ret;

	if (f->stopped)
		return 0;
	if (xd_zf_gen_parse(text, text + len, &g, &why) != 0)
		return xd_zf_gen_problem(f, line, why);
	count = (uint64_t)(g.stop - g.start) / (uint64_t)g.step + 1;
	if (count > XD_GENERATE_MAX) {
		char too_many[64];

		snprintf(too_many, sizeof(too_many), "too many records (%llu, at most %u)",
			 (unsigned long long)count, XD_GENERATE_MAX);
		return xd_zf_gen_problem(f, line, too_many);
	}
	/* Values only grow, so a bad value shows at one end or the other:
	 * check both before feeding anything. */
	ret = xd_zf_gen_line(&buf, &g, g.start, &why);
	if (ret == 0)
		ret = xd_zf_gen_line(&buf, &g, g.start + (int64_t)(count - 1) * g.step, &why);
	if (ret == -EINVAL) {
		ret = xd_zf_gen_problem(f, line, why);
		goto out_buf;
	}
	/* The first bad record ends the $GENERATE: its siblings would fail the
	 * same way, and a million copies of one problem help nobody. */
	errors = f->load->errors;
	for (uint64_t i = 0; ret == 0 && i < count && !f->stopped && f->load->errors == errors;
	     i++) {
		ret = xd_zf_gen_line(&buf, &g, g.start + (int64_t)i * g.step, &why);
		if (ret == 0)
			ret = xd_zf_feed(f, buf.data, buf.len, line);
	}
out_buf:
	free(buf.data);
	return ret;
}

/* ---- Splitting a file at $GENERATE lines ---------------------------------- */

/* The start of the next line at or after p that begins with "$GENERATE"
 * and a blank (case-insensitive, as directives are), or end. */
static const char *xd_zf_find_generate(const char *base, const char *p, const char *end)
{
	static const char word[] = "$GENERATE";
	const size_t n = sizeof(word) - 1;

	while ((p = memchr(p, '$', (size_t)(end - p))) != NULL) {
		if ((p == base || p[-1] == '\n') && (size_t)(end - p) > n &&
		    strncasecmp(p, word, n) == 0 && (xd_zf_blank(p[n]) || p[n] == '\n'))
			return p;
		p++;
	}
	return end;
}

static uint64_t xd_zf_count_lines(const char *p, const char *end)
{
	uint64_t n = 0;

	while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		n++;
		p++;
	}
	return n;
}

/* Feeds the text between $GENERATE lines to the scanner and expands those
 * lines, keeping line numbers right in both. */
static int xd_zf_parse_text(struct xd_zf_file *f, const char *text, size_t len)
{
	const char *end = text + len, *p = text;
	uint64_t line = 1;
	int ret = 0;

	while (ret == 0 && p < end && !f->stopped) {
		const char *gen = xd_zf_find_generate(text, p, end);
		const char *eol;

		ret = xd_zf_feed(f, p, (size_t)(gen - p), line);
		if (ret != 0 || gen == end)
			break;
		line += xd_zf_count_lines(p, gen);
		eol = memchr(gen, '\n', (size_t)(end - gen));
		if (eol == NULL)
			eol = end;
		ret = xd_zf_generate(f, gen, (size_t)(eol - gen), line);
		line++;
		p = eol < end ? eol + 1 : end;
	}
	return ret;
}

/* ---- One file ------------------------------------------------------------- */

/* Whether the file may be read at this depth: 0 if so, 1 if not (a problem
 * says why, at the $INCLUDE), or a negative errno. */
static int xd_zf_check_chain(struct xd_zf_load *load, const char *path, const struct stat *st,
			     int from_source, uint32_t from_line)
{
	char message[256];
	int ret;

	for (int i = 0; i < load->depth; i++) {
		if (load->chain[i].dev == st->st_dev && load->chain[i].ino == st->st_ino) {
			snprintf(message, sizeof(message),
				 "$INCLUDE loop: %s is already being read", path);
			ret = xd_zf_error(load, from_source, from_line, message);
			return ret < 0 ? ret : 1;
		}
	}
	if (load->depth > XD_INCLUDE_DEPTH_MAX) {
		snprintf(message, sizeof(message), "$INCLUDE nested deeper than %d: %s",
			 XD_INCLUDE_DEPTH_MAX, path);
		ret = xd_zf_error(load, from_source, from_line, message);
		return ret < 0 ? ret : 1;
	}
	return 0;
}

/* An $INCLUDE file must lie under the top file's directory: 1 (a problem
 * recorded) when it does not. */
static int xd_zf_check_inside(struct xd_zf_load *load, const char *path, int from_source,
			      uint32_t from_line)
{
	char message[512];
	char *real = realpath(path, NULL);
	size_t n = load->root ? strlen(load->root) : 0;
	bool inside;
	int ret;

	if (real == NULL)
		return 0; /* opening it says why it is not there */
	inside = load->root && strncmp(real, load->root, n) == 0 &&
		 (real[n] == '/' || (n == 1 && load->root[0] == '/'));
	free(real);
	if (inside)
		return 0;
	snprintf(message, sizeof(message),
		 "$INCLUDE file %s is outside %s, the directory "
		 "of the zone's file",
		 path, load->root ? load->root : "(unknown)");
	ret = xd_zf_error(load, from_source, from_line, message);
	return ret < 0 ? ret : 1;
}

/* Reads a file that opened, through a scanner of its own. */
static int xd_zf_scan(struct xd_zf_load *load, const char *path, const struct xd_zf_text *t,
		      const char *origin, uint16_t rclass, uint32_t ttl)
{
	struct xd_zf_file f = { .load = load };
	int ret;

	f.source = xd_builder_add_source(load->b, path);
	if (f.source < 0)
		return f.source;
	f.s = malloc(sizeof(*f.s));
	if (f.s == NULL)
		return -ENOMEM;
	if (zs_init(f.s, origin, rclass, ttl) != 0) {
		/* The origin came from the builder or the scanner itself, so
		 * only memory can be short here. */
		ret = -ENOMEM;
		goto out_scanner;
	}
	ret = xd_zf_set_dir(f.s, path);
	if (ret == 0)
		ret = xd_zf_parse_text(&f, t->data, t->len);
out_scanner:
	zs_deinit(f.s);
	free(f.s);
	return ret;
}

/* An unreadable file: reported at the $INCLUDE that named it, or at the file
 * itself when it is the top one (from_source < 0). */
static int xd_zf_open_failed(struct xd_zf_load *load, const char *path, int err, int from_source,
			     uint32_t from_line)
{
	char message[256];
	int ret;

	if (from_source >= 0) {
		snprintf(message, sizeof(message), "cannot open $INCLUDE file %s: %s", path,
			 xd_zf_open_reason(err));
		return xd_zf_error(load, from_source, from_line, message);
	}
	from_source = xd_builder_add_source(load->b, path);
	if (from_source < 0)
		return from_source;
	snprintf(message, sizeof(message), "cannot open: %s", xd_zf_open_reason(err));
	ret = xd_zf_error(load, from_source, 0, message);
	return ret < 0 ? ret : -err;
}

/* Reads one file; from_source/from_line name the $INCLUDE that asked for
 * it (from_source < 0 for the top file).  For an included file every
 * failure but lack of memory is a problem, not a return value. */
static int xd_zf_read(struct xd_zf_load *load, const char *path, const char *origin,
		      uint16_t rclass, uint32_t ttl, int from_source, uint32_t from_line)
{
	struct xd_zf_text t = { 0 };
	struct stat st;
	int ret;

	if (from_source >= 0) {
		ret = xd_zf_check_inside(load, path, from_source, from_line);
		if (ret != 0)
			return ret < 0 ? ret : 0;
	}
	ret = xd_zf_text_open(path, from_source >= 0, &t, &st);
	if (ret == -ENOMEM)
		return ret;
	if (ret < 0)
		return xd_zf_open_failed(load, path, -ret, from_source, from_line);
	ret = xd_zf_check_chain(load, path, &st, from_source, from_line);
	if (ret != 0)
		goto out_text;
	load->chain[load->depth].dev = st.st_dev;
	load->chain[load->depth].ino = st.st_ino;
	load->depth++;
	ret = xd_zf_scan(load, path, &t, origin, rclass, ttl);
	load->depth--;
out_text:
	xd_zf_text_close(&t);
	return ret < 0 ? ret : 0;
}

/* ---- The origin ------------------------------------------------------------ */

/* Wire form to master-file text for zs_init.  Everything but letters,
 * digits and the scanner's plain label characters is written \DDD, which the
 * scanner reads back to the same octet (RFC 1035 section 5.1). */
/* ---- The public function --------------------------------------------------- */

int xd_builder_load_zonefile(struct xd_builder *b, int zone, const char *path, uint32_t default_ttl)
{
	struct xd_zf_load load = {
		.b = b,
		.zone = zone,
		.default_ttl = default_ttl,
	};
	char origin[XD_ORIGIN_TEXT_MAX];
	const uint8_t *wire;
	size_t wire_len = 0;
	int ret;

	if (b == NULL || path == NULL)
		return -EINVAL;
	wire = xd_builder_zone_origin(b, zone, &wire_len);
	if (wire == NULL)
		return -EINVAL;
	/* The builder validated the origin; 1024 bytes hold any name's text. */
	xd_name_to_text(wire, origin, sizeof(origin));
	load.root = xd_zf_dir_of(path);
	ret = xd_zf_read(&load, path, origin, XD_CLASS_IN, XD_TTL_UNSET, -1, 0);
	free(load.root);
	if (ret == 0 && load.errors > 0)
		ret = -EINVAL;
	return ret;
}
