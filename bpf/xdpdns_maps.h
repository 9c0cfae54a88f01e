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
	/* What the AF_XDP workers drop for a wrong checksum the program must
	 * not answer either ([xdp] verify_checksums). */
	__u32 verify_checksums;
	__u32 pad;
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

/*
 * The answer table: what the program answers itself with XDP_TX, compiled
 * from the published image by the engine (native/xdp_answers.c), for
 * queries whose answer depends only on (name, type): no EDNS options, no
 * DO bit, no zone ACL, no resolver hook, the UDP size limit met.
 *
 * Keys are the lower-cased wire name, zero-padded, after the type and
 * class; there is one hash map per key size class (XD_ANSWER_KEY_*), so
 * that a short name hashes 40 bytes, not 264.  qclass XD_ANSWER_CLASS_OTHER
 * (0, which no query is looked up with) keys the answer to every type
 * without an entry of its own at that name (NODATA, a referral, a CNAME
 * chain to a type nobody has): one entry instead of 65536.
 *
 * An entry's value points at the bytes that follow the question: the
 * answer, authority and additional sections, with compression pointers
 * relative to a question at offset 12 (the core writes them so for every
 * query of that name).  They lie in answer_pages, whose values are pages of
 * XD_ANSWER_PAGE_VALUE bytes: an answer starts in the page's first
 * XD_ANSWER_PAGE_STRIDE bytes and may run on into its tail, so the program
 * copies it with one bpf_xdp_store_bytes the verifier can bound.
 *
 * Generations: each of these maps is an ARRAY_OF_MAPS of one slot.  A new
 * image's table is written into new inner maps (sized from the image)
 * beside the ones in use, then each slot is switched in one store, and the
 * old maps are freed when their last reader is done (native/xdp_prog.c).
 */
#define XD_ANSWER_KEY_32 32
#define XD_ANSWER_KEY_64 64
#define XD_ANSWER_KEY_128 128
#define XD_ANSWER_KEY_256 256	/* names up to 255 bytes, RFC 1035 3.1 */
#define XD_ANSWER_CLASS_OTHER 0
/* The largest answer the program sends is one that fits the largest UDP
 * payload the core sends (1232, DNS flag day 2020) with the shortest
 * question and the OPT reserve. */
#define XD_ANSWER_BODY_MAX 1232
#define XD_ANSWER_PAGE_STRIDE 4096
#define XD_ANSWER_PAGE_VALUE (XD_ANSWER_PAGE_STRIDE + 1280)
/* The UDP payload sizes the core answers within (native/answer.c): 512
 * without EDNS, the client's size but at most 1232 with it, less 17 bytes
 * it keeps for an OPT with an EDE option. */
#define XD_ANSWER_UDP_MIN 512
#define XD_ANSWER_UDP_MAX 1232
#define XD_ANSWER_OPT_RESERVE 17

/* The key size, and so the table, of a name of name_len bytes (root
 * included): the one rule the program and the engine share. */
static inline __u32 xd_answer_key_size(__u32 name_len)
{
	if (name_len <= XD_ANSWER_KEY_32)
		return XD_ANSWER_KEY_32;
	if (name_len <= XD_ANSWER_KEY_64)
		return XD_ANSWER_KEY_64;
	if (name_len <= XD_ANSWER_KEY_128)
		return XD_ANSWER_KEY_128;
	return XD_ANSWER_KEY_256;
}

/* The name starts 8-byte aligned: the program reads it in words. */
struct xd_answer_key_32 {
	__u16 qtype;		/* host byte order */
	__u16 qclass;		/* host byte order; XD_ANSWER_CLASS_OTHER */
	__u32 pad;		/* zero */
	__u8 name[XD_ANSWER_KEY_32];
} __attribute__((aligned(8)));

struct xd_answer_key_64 {
	__u16 qtype;
	__u16 qclass;
	__u32 pad;
	__u8 name[XD_ANSWER_KEY_64];
} __attribute__((aligned(8)));

struct xd_answer_key_128 {
	__u16 qtype;
	__u16 qclass;
	__u32 pad;
	__u8 name[XD_ANSWER_KEY_128];
} __attribute__((aligned(8)));

struct xd_answer_key_256 {
	__u16 qtype;
	__u16 qclass;
	__u32 pad;
	__u8 name[XD_ANSWER_KEY_256];
} __attribute__((aligned(8)));

struct xd_answer {
	__u32 page;		/* index in answer_pages */
	__u16 offset;		/* < XD_ANSWER_PAGE_STRIDE */
	__u16 len;		/* bytes after the question, <= XD_ANSWER_BODY_MAX */
	__u16 flags;		/* the header's AA and RCODE bits; QR, RD and CD
				 * are the program's */
	__u16 ancount;
	__u16 nscount;
	__u16 arcount;		/* without the OPT record */
	__u16 csum;		/* ones' complement sum of the bytes, folded, as
				 * 16-bit words in memory order from an even
				 * offset (how the program sums) */
	__u16 action;		/* enum xd_answer_action */
	__u32 reserved;
};

/* What an entry tells the program. */
enum xd_answer_action {
	XD_ANSWER_SEND = 0,
	/* The worker answers this type: its answer differs from the name's
	 * "other types" entry but cannot be held (too long for UDP, or not
	 * the same for every query), so the program must not fall back. */
	XD_ANSWER_TO_WORKER = 1,
};

struct xd_answer_page {
	__u8 bytes[XD_ANSWER_PAGE_VALUE];
};

/* Answers the program sent itself, per RCODE (its low 4 bits). */
#define XD_ANSWER_RCODES 16

/* stats: BPF_MAP_TYPE_PERCPU_ARRAY with one entry per CPU. */
struct xd_prog_counters {
	__u64 seen;		/* every packet the program ran on */
	__u64 redirected;	/* handed to an AF_XDP socket */
	__u64 passed;		/* to the kernel: not ours, or no socket bound */
	__u64 dropped;		/* DROP action */
	__u64 malformed;	/* headers cut short: passed, counted */
	__u64 denied;		/* from a source the ACL denies: dropped, not in `dropped` */
	__u64 answered_in_xdp;	/* answered from the answer table (XDP_TX) */
	__u64 answered_in_xdp_rcode[XD_ANSWER_RCODES];
};

#endif
