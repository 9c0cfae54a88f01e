/*
 * prefixes.h - address prefix tables (prefixes.c): ACL rules compiled into
 * an immutable set that the workers consult per datagram (the source ACL,
 * published by engine_acl.c), that XDP mode copies into the program's LPM
 * tries (native/io/xdp_loader.c), and the order of the zone ACLs' prefixes
 * in the image.  Not seen by cffi.
 */
#ifndef XDPDNS_PREFIXES_H
#define XDPDNS_PREFIXES_H

#include <stdint.h>
#include <sys/socket.h>

#include "engine.h"

#define XD_ACL_V4_BITS 32
#define XD_ACL_V6_BITS 128

/* One prefix of a family: IPv4 uses addr[0..4), the rest is zero; host
 * bits are zero too. */
struct xd_acl_entry {
	uint8_t addr[16];
	uint8_t prefix_len;
	uint8_t action; /* XD_ACL_ALLOW or XD_ACL_DENY */
	uint16_t key; /* zone transfer lists: struct xd_acl_rule's */
};

/* The entries of one prefix length: entries[start, start + count),
 * sorted by address. */
struct xd_acl_group {
	uint32_t start;
	uint32_t count;
	uint8_t prefix_len;
};

/* One family's prefixes, each once, grouped by length, longest first: the
 * first group that holds an address has its longest match. */
struct xd_acl_table {
	const struct xd_acl_entry *entries;
	uint32_t n;
	int ngroups;
	struct xd_acl_group groups[XD_ACL_V6_BITS + 1];
};

struct xd_acl {
	uint32_t default_action; /* for sources no prefix holds */
	int socket_verdict; /* XD_VERDICT_REFUSE or XD_VERDICT_DROP */
	uint32_t rules; /* prefixes after duplicates went */
	struct xd_acl_table v4;
	struct xd_acl_table v6;
	struct xd_acl_entry entries[]; /* v4's, then v6's */
};

/* Compiles rules[0..n) into *out: a duplicate prefix keeps its first
 * rule's action.  A rule set that denies nothing (no deny rule, an allow
 * default) compiles to NULL: no check at all.  err names a bad rule. */
int xd_acl_build(const struct xd_acl_rule *rules, int n, uint32_t default_action,
		 int socket_verdict, struct xd_acl **out, struct xd_error *err);
void xd_acl_free(struct xd_acl *acl);

/* Checks rules[0..n) and writes each prefix once into out (room for n),
 * host bits cleared, a duplicate keeping its first rule's action: IPv4's
 * first (*n4 of them), each family's longest prefix first.  Returns how
 * many, or a negative errno (err names the bad rule).  The order the
 * zone ACLs of the image keep (image.h). */
int xd_acl_sort(const struct xd_acl_rule *rules, int n, struct xd_acl_entry *out, uint32_t *n4,
		struct xd_error *err);

/* Zeroes every bit of addr (bytes long) past the first `bits`: an address
 * as its prefix (the ACL's and rate limiting's keys). */
void xd_mask_prefix(uint8_t *addr, size_t bytes, unsigned bits);

/* XD_ACL_ALLOW or XD_ACL_DENY for addr (4 or 16 bytes by family). */
uint32_t xd_acl_action(const struct xd_acl *acl, int family, const uint8_t *addr);
/* XD_VERDICT_* for a datagram or connection from sa; NULL acl: answer.
 * IPv4-mapped IPv6 sources are judged by the IPv4 rules. */
int xd_acl_verdict(const struct xd_acl *acl, const struct sockaddr *sa);

#endif
