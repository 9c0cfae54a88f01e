/*
 * xdpdns_maps.h - the maps of the XDP program: keys, values, action codes
 * and counters, shared by bpf/xdpdns.bpf.c and the C engine (native/), so
 * that their meaning lives in one place.
 *
 * Per-CPU map values are 8-byte aligned: for BPF_MAP_TYPE_PERCPU_* the
 * kernel copies round_up(value_size, 8) bytes per possible CPU, and user
 * space passes one slot per possible CPU (native/xdp_prog.c is the only
 * place that does).
 */
#ifndef XDPDNS_MAPS_H
#define XDPDNS_MAPS_H

#include <linux/types.h>

#define XD_PORT_ACTIONS_MAX 64	/* UDP ports with an action */
#define XD_DEST_ADDRS_MAX 256	/* addresses we serve */
#define XD_XSKS_MAX 256		/* NIC queues */
/* Source ACL rules of one address family.  The LPM tries hold twice as
 * many entries plus the defaults: while a new rule set is written, the
 * old one still serves (see struct xd_acl_v4_key). */
#define XD_ACL_RULES_MAX 65536
#define XD_ACL_ENTRIES_MAX (2 * (XD_ACL_RULES_MAX + 1))

/* What the program does with a UDP packet to a port (port_actions). */
enum xd_action {
	XD_ACTION_PASS = 0,	/* to the kernel's stack */
	XD_ACTION_REDIRECT = 1,	/* to the AF_XDP socket of the rx queue */
	XD_ACTION_DROP = 2,
};

/* port_actions: BPF_MAP_TYPE_PERCPU_HASH, key the UDP destination port in
 * host byte order. */
struct xd_port_key {
	__u16 port;
	__u16 pad;
};

struct xd_port_value {
	__u32 action;		/* enum xd_action */
	__u32 pad;		/* keeps the value 8 bytes */
};

/* dest_addrs: BPF_MAP_TYPE_HASH of the destination addresses we take;
 * consulted only when config.check_dest is set.  IPv4 addresses fill the
 * first 4 bytes of addr, the rest is zero. */
struct xd_addr_key {
	__u32 family;		/* AF_INET or AF_INET6 */
	__u8 addr[16];
};

struct xd_addr_value {
	__u64 present;
};

/* config: BPF_MAP_TYPE_ARRAY with one entry. */
struct xd_config {
	__u32 check_dest;
	__u32 acl_generation;	/* the source ACL's rule set; 0: no ACL */
};

/* What the source ACL says about a sender (acl_v4, acl_v6). */
enum xd_acl_action {
	XD_ACL_ALLOW = 0,
	XD_ACL_DENY = 1,
};

/*
 * acl_v4 and acl_v6: BPF_MAP_TYPE_LPM_TRIE of source prefixes, consulted
 * for UDP to REDIRECT ports; the longest matching prefix decides.  Every
 * key starts with the 32-bit generation of its rule set, matched in full:
 * prefixlen is XD_ACL_GENERATION_BITS plus the prefix's own length, and a
 * key of prefixlen XD_ACL_GENERATION_BITS alone (the /0) carries the
 * default.  A new rule set is written under the next generation while the
 * program still looks up the current one, then config.acl_generation flips
 * to it in one store and the old entries are deleted: a packet sees one
 * rule set, never a mixture (native/xdp_prog.c).  generation is in host
 * byte order (it is only ever matched whole); addr in network order.
 */
#define XD_ACL_GENERATION_BITS 32

struct xd_acl_v4_key {
	__u32 prefixlen;
	__u32 generation;
	__u8 addr[4];
};

struct xd_acl_v6_key {
	__u32 prefixlen;
	__u32 generation;
	__u8 addr[16];
};

struct xd_acl_value {
	__u32 action;		/* enum xd_acl_action */
	__u32 pad;
};

/* stats: BPF_MAP_TYPE_PERCPU_ARRAY with one entry per CPU. */
struct xd_prog_counters {
	__u64 seen;		/* every packet the program ran on */
	__u64 redirected;	/* handed to an AF_XDP socket */
	__u64 passed;		/* to the kernel: not ours, or no socket bound */
	__u64 dropped;		/* DROP action */
	__u64 malformed;	/* headers cut short: passed, counted */
	__u64 denied;		/* from a source the ACL denies: dropped, not in `dropped` */
};

#endif
