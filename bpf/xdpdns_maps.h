/*
 * xdpdns_maps.h - the maps of the XDP program: keys, values, action codes
 * and counters, shared by bpf/xdpdns.bpf.c and the C engine (native/), so
 * that their meaning lives in one place.
 *
 * Per-CPU map values are 8-byte aligned: for BPF_MAP_TYPE_PERCPU_* the
 * kernel copies round_up(value_size, 8) bytes per possible CPU, and user
 * space passes one slot per possible CPU (native/io/xdp_loader.c is the only
 * place that does).
 */
#ifndef XDPDNS_MAPS_H
#define XDPDNS_MAPS_H

#include <linux/types.h>

#define XD_PORT_ACTIONS_MAX 64 /* UDP ports with an action */
#define XD_DEST_ADDRS_MAX 256 /* addresses we serve */
#define XD_XSKS_MAX 256 /* NIC queues */
/* Source ACL rules of one address family.  The LPM tries hold twice as
 * many entries plus the defaults: while a new rule set is written, the
 * old one still serves (see struct xd_acl_v4_key). */
#define XD_ACL_RULES_MAX 65536
#define XD_ACL_ENTRIES_MAX (2 * (XD_ACL_RULES_MAX + 1))

/* What the program does with a UDP packet to a port (port_actions). */
enum xd_action {
	XD_ACTION_PASS = 0, /* to the kernel's stack */
	XD_ACTION_REDIRECT = 1, /* to the AF_XDP socket of the rx queue */
	XD_ACTION_DROP = 2,
};

/* port_actions: BPF_MAP_TYPE_PERCPU_HASH, key the UDP destination port in
 * host byte order. */
struct xd_port_key {
	__u16 port;
	__u16 pad;
};

struct xd_port_value {
	__u32 action; /* enum xd_action */
	__u32 pad; /* keeps the value 8 bytes */
};

/* dest_addrs: BPF_MAP_TYPE_HASH of the destination addresses we take;
 * consulted only when config.check_dest is set.  IPv4 addresses fill the
 * first 4 bytes of addr, the rest is zero. */
struct xd_addr_key {
	__u32 family; /* AF_INET or AF_INET6 */
	__u8 addr[16];
};

struct xd_addr_value {
	__u64 present;
};

/* config: BPF_MAP_TYPE_ARRAY with one entry. */
struct xd_config {
	__u32 check_dest;
	__u32 acl_generation; /* the source ACL's rule set; 0: no ACL */
	/* What the AF_XDP workers drop for a wrong checksum the program must
	 * not answer either ([xdp] verify_checksums). */
	__u32 verify_checksums;
	/* dnstap: one DNS query in tap_sample (0: none) goes to its worker,
	 * never the answer table, with XD_TAP_MARK in its metadata; only
	 * such queries are logged in XDP mode (native/io/dnstap.h). */
	__u32 tap_sample;
};

/* The 4 bytes of metadata before a query picked for dnstap. */
#define XD_TAP_MARK 0x78647470u /* "xdtp" */

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
 * rule set, never a mixture (native/io/xdp_loader.c).  generation is in host
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
	__u32 action; /* enum xd_acl_action */
	__u32 pad;
};

/*
 * The answer table: what the program answers itself with XDP_TX, compiled
 * from the published image by the engine (native/io/xdp_answers.c), for
 * queries whose answer depends only on (name, type, DO): no EDNS options,
 * no zone ACL, no resolver hook, the UDP size limit met.
 *
 * Keys are the lower-cased wire name, zero-padded, after the type and
 * class; there is one hash map per key size class (XD_ANSWER_KEY_*), so
 * that a short name hashes 40 bytes, not 264.  qclass XD_ANSWER_CLASS_OTHER
 * (0, which no query is looked up with) keys the answer to every type
 * without an entry of its own at that name (NODATA, a referral, a CNAME
 * chain to a type nobody has): one entry instead of 65536.
 *
 * DO=1 (RFC 3225): a name whose answers with DO are its answers without
 * (every name of an unsigned zone) has no entries of its own for it: its
 * entries say XD_ANSWER_ALSO_DO.  A name of a signed zone has a second set
 * of entries, keyed with variant XD_ANSWER_VARIANT_DO, holding the answers
 * with their RRSIGs and proofs.
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
 * old maps are freed when their last reader is done (native/io/xdp_loader.c).
 */
#define XD_ANSWER_KEY_32 32
#define XD_ANSWER_KEY_64 64
#define XD_ANSWER_KEY_128 128
#define XD_ANSWER_KEY_256 256 /* names up to 255 bytes, RFC 1035 3.1 */
#define XD_ANSWER_CLASS_OTHER 0
#define XD_ANSWER_VARIANT_PLAIN 0
#define XD_ANSWER_VARIANT_DO 1
/* The largest answer the program sends is one that fits the largest UDP
 * payload the core sends (1232, DNS flag day 2020) with the shortest
 * question and the OPT reserve. */
#define XD_ANSWER_BODY_MAX 1232
#define XD_ANSWER_PAGE_STRIDE 4096
#define XD_ANSWER_PAGE_VALUE (XD_ANSWER_PAGE_STRIDE + 1280)
/* The UDP payload sizes the core answers within (native/answer/answer.c): 512
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

/* Whether the table may hold answers to queries of this type.  Not AXFR
 * and IXFR, which the core refuses over UDP; not ANY (RFC 8482: one RRset
 * of the name, the workers' choice); not RRSIG, NSEC and NSEC3, rarely
 * asked and a few hundred bytes of their own at every name of a signed
 * zone.  The program does not fall back to a name's other-types entry for
 * them either: the workers answer them. */
static inline int xd_answer_type_held(__u32 qtype)
{
	switch (qtype) {
	case 251: /* IXFR */
	case 252: /* AXFR */
	case 255: /* ANY */
	case 46: /* RRSIG */
	case 47: /* NSEC */
	case 50: /* NSEC3 */
		return 0;
	default:
		return 1;
	}
}

/* The name starts 8-byte aligned: the program reads it in words. */
struct xd_answer_key_32 {
	__u16 qtype; /* host byte order */
	__u16 qclass; /* host byte order; XD_ANSWER_CLASS_OTHER */
	__u32 variant; /* XD_ANSWER_VARIANT_* */
	__u8 name[XD_ANSWER_KEY_32];
} __attribute__((aligned(8)));

struct xd_answer_key_64 {
	__u16 qtype;
	__u16 qclass;
	__u32 variant;
	__u8 name[XD_ANSWER_KEY_64];
} __attribute__((aligned(8)));

struct xd_answer_key_128 {
	__u16 qtype;
	__u16 qclass;
	__u32 variant;
	__u8 name[XD_ANSWER_KEY_128];
} __attribute__((aligned(8)));

struct xd_answer_key_256 {
	__u16 qtype;
	__u16 qclass;
	__u32 variant;
	__u8 name[XD_ANSWER_KEY_256];
} __attribute__((aligned(8)));

struct xd_answer {
	__u32 page; /* index in answer_pages */
	__u16 offset; /* < XD_ANSWER_PAGE_STRIDE */
	__u16 len; /* bytes after the question, <= XD_ANSWER_BODY_MAX */
	__u16 flags; /* the header's AA and RCODE bits; QR, RD and CD
				 * are the program's */
	__u16 ancount;
	__u16 nscount;
	__u16 arcount; /* without the OPT record */
	__u16 csum; /* ones' complement sum of the bytes, folded, as
				 * 16-bit words in memory order from an even
				 * offset (how the program sums) */
	__u8 action; /* enum xd_answer_action */
	__u8 also_do; /* XD_ANSWER_ALSO_DO: the same with DO=1 */
	/* What rate limiting counts the answer as (native/answer/rrl.c keys its
	 * buckets so): its XD_RRL_KIND_*, and the hash of the name the kind
	 * is counted by, the qname or the zone or delegation above it. */
	__u32 rrl_kind;
	__u64 rrl_name;
};

/* What an entry tells the program. */
enum xd_answer_action {
	XD_ANSWER_SEND = 0,
	/* The worker answers this type: its answer differs from the name's
	 * "other types" entry but cannot be held (too long for UDP, or not
	 * the same for every query), so the program must not fall back. */
	XD_ANSWER_TO_WORKER = 1,
};

/* An entry whose verdict (the answer, or the worker) is also the one for
 * a query with DO=1: sent with DO set in its OPT. */
#define XD_ANSWER_ALSO_DO 1

struct xd_answer_page {
	__u8 bytes[XD_ANSWER_PAGE_VALUE];
};

/*
 * Response rate limiting (native/answer/rrl.c) of the program's answers: the
 * same buckets as the workers', in memory they share, so that a client
 * gets one rate per bucket whichever queue, worker or program answers it.
 * The buckets are nsets sets of XD_RRL_WAYS, one table for every queue,
 * worker and the program: one view of every client.  The bucket logic
 * below is the one both sides run.  Concurrent updates may race; a race
 * costs at most a response counted or not, never memory safety.
 *
 * rrl_settings, rrl_buckets, rrl_exempt_v4 and rrl_exempt_v6 are
 * ARRAY_OF_MAPS of one slot, refilled with new inner maps whenever the
 * settings change (rrl_settings last, emptied first: no settings, no
 * limiting).  rrl_buckets' inner map is a mmapable ARRAY of struct
 * xd_rrl_set, the workers' tables; the exempt prefixes are LPM tries.
 * Limited buckets are reported through rrl_events, a BPF ring buffer.
 */
#define XD_RRL_WAYS 4
#define XD_RRL_KINDS 5 /* engine.h's XD_RRL_CLASSES */
#define XD_RRL_KIND_ANSWER 0 /* counted by name and type; the others by name */
#define XD_RRL_NAME_SEED 0x6a09e667f3bcc908ULL
#define XD_RRL_EVENTS_BYTES (64 * 1024)

/* BIND's credit scheme: balance is at most one second of the kind's rate
 * and at least -window * rate. */
struct xd_rrl_entry {
	__u64 key; /* 0: free */
	__s64 balance;
	__u32 last; /* seconds, CLOCK_MONOTONIC_COARSE: the last
				 * response (credit, and the LRU) */
	__u32 logged; /* when its event was last reported */
	__u32 slips; /* limited responses, for slip */
	__u32 has_logged;
};

struct xd_rrl_set {
	struct xd_rrl_entry way[XD_RRL_WAYS];
};

struct xd_rrl_settings {
	__u64 seed; /* keys xd_rrl_bucket_key */
	__u32 rate[XD_RRL_KINDS]; /* per second; 0: that kind is not limited */
	__u32 window;
	__u32 slip;
	__u32 nsets; /* a power of two */
	__u32 pad2;
	__u8 ipv4_prefix;
	__u8 ipv6_prefix;
	/* Whether any prefix of the family is exempt: no lookup when none. */
	__u8 exempt_v4;
	__u8 exempt_v6;
};

struct xd_rrl_exempt_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct xd_rrl_exempt_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* A bucket the program began to limit (one per bucket per window). */
struct xd_rrl_note {
	__u32 family; /* AF_INET or AF_INET6 */
	__u8 addr[16]; /* the client prefix, host bits clear */
	__u8 prefix_len;
	__u8 kind;
	__u16 pad;
	__u32 time; /* seconds, CLOCK_MONOTONIC_COARSE */
};

#define XD_ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define XD_SIPROUND(v0, v1, v2, v3)     \
	do {                            \
		v0 += v1;               \
		v1 = XD_ROTL64(v1, 13); \
		v1 ^= v0;               \
		v0 = XD_ROTL64(v0, 32); \
		v2 += v3;               \
		v3 = XD_ROTL64(v3, 16); \
		v3 ^= v2;               \
		v0 += v3;               \
		v3 = XD_ROTL64(v3, 21); \
		v3 ^= v0;               \
		v2 += v1;               \
		v1 = XD_ROTL64(v1, 17); \
		v1 ^= v2;               \
		v2 = XD_ROTL64(v2, 32); \
	} while (0)

/* The bucket of key in its set, else the free or least recently used one
 * of the set, made into it with a second of credit. */
static inline __attribute__((always_inline)) struct xd_rrl_entry *
xd_rrl_bucket_find(struct xd_rrl_set *set, __u64 key, __u32 rate, __u32 now)
{
	struct xd_rrl_entry *victim = &set->way[0];
	int i;

	for (i = 0; i < XD_RRL_WAYS; i++)
		if (set->way[i].key == key)
			return &set->way[i];
	/* A free entry first, else the one answered longest ago. */
	for (i = 1; i < XD_RRL_WAYS; i++)
		if (victim->key && (!set->way[i].key || set->way[i].last < victim->last))
			victim = &set->way[i];
	victim->key = key;
	victim->balance = rate;
	victim->last = now;
	victim->logged = 0;
	victim->slips = 0;
	victim->has_logged = 0;
	return victim;
}

/* Credits the time since the bucket's last response and spends one; true
 * when the response may go. */
static inline __attribute__((always_inline)) int
xd_rrl_bucket_debit(struct xd_rrl_entry *e, __u32 rate, __u32 window, __u32 now)
{
	__s64 floor = -(__s64)window * rate;

	if (now > e->last) {
		__s64 balance = e->balance + (__s64)(now - e->last) * rate;

		e->balance = balance < rate ? balance : rate;
		e->last = now;
	}
	if (e->balance > 0) {
		e->balance--;
		return 1;
	}
	if (e->balance > floor)
		e->balance--;
	return 0;
}

/* A limited response of bucket e: *note says whether the log hears of it
 * (once a window per bucket); true when it goes out truncated (every
 * slip-th; slip 0: never). */
static inline __attribute__((always_inline)) int
xd_rrl_bucket_limited(struct xd_rrl_entry *e, __u32 window, __u32 slip, __u32 now, int *note)
{
	*note = !e->has_logged || now - e->logged >= window;
	if (*note) {
		e->has_logged = 1;
		e->logged = now;
	}
	e->slips++;
	return slip && e->slips % slip == 0;
}

/* One 8-byte word of SipHash-1-3's input. */
#define XD_SIPWORD(v0, v1, v2, v3, m)        \
	do {                                 \
		v3 ^= (m);                   \
		XD_SIPROUND(v0, v1, v2, v3); \
		v0 ^= (m);                   \
	} while (0)

/* The bucket of a response: SipHash-1-3 keyed with the settings' seed
 * over the client prefix (addr, 16 bytes, host bits clear), the family,
 * kind and type, and the name's hash, so that a flood cannot aim at one
 * set.  The program and the workers compute it with this one function;
 * never 0 (a free entry). */
static inline __attribute__((always_inline)) __u64 xd_rrl_bucket_key(__u64 seed, const __u8 *addr,
								     __u32 family, __u32 kind,
								     __u32 qtype, __u64 name_hash)
{
	__u64 k0 = seed, k1 = seed ^ 0x9e3779b97f4a7c15ULL;
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	__u64 a0 = 0, a1 = 0, w;
	int i, j;

	for (i = 0; i < 8; i++) {
		a0 |= (__u64)addr[i] << (8 * i);
		a1 |= (__u64)addr[8 + i] << (8 * i);
	}
	w = (__u64)(family & 0xff) | (__u64)(kind & 0xff) << 8 | (__u64)(qtype & 0xffff) << 16;
	XD_SIPWORD(v0, v1, v2, v3, a0);
	XD_SIPWORD(v0, v1, v2, v3, a1);
	XD_SIPWORD(v0, v1, v2, v3, w);
	XD_SIPWORD(v0, v1, v2, v3, name_hash);
	v3 ^= 32ULL << 56; /* the length, SipHash's last block */
	XD_SIPROUND(v0, v1, v2, v3);
	v0 ^= 32ULL << 56;
	v2 ^= 0xff;
	for (j = 0; j < 3; j++)
		XD_SIPROUND(v0, v1, v2, v3);
	v0 = v0 ^ v1 ^ v2 ^ v3;
	return v0 ? v0 : 1;
}

/* Answers the program sent itself, per RCODE (its low 4 bits). */
#define XD_ANSWER_RCODES 16

/* Responses are counted by query type in XD_QTYPE_BUCKETS buckets: the
 * types below, each its own, and every other type in bucket 0.  The
 * workers and the program share this one list (types below 512: the
 * engine finds the buckets' names by asking for those). */
#define XD_QTYPE_BUCKETS 16

static inline __attribute__((always_inline)) __u32 xd_qtype_bucket(__u32 qtype)
{
	switch (qtype) {
	case 1:
		return 1; /* A */
	case 2:
		return 2; /* NS */
	case 5:
		return 3; /* CNAME */
	case 6:
		return 4; /* SOA */
	case 12:
		return 5; /* PTR */
	case 15:
		return 6; /* MX */
	case 16:
		return 7; /* TXT */
	case 28:
		return 8; /* AAAA */
	case 33:
		return 9; /* SRV */
	case 43:
		return 10; /* DS */
	case 48:
		return 11; /* DNSKEY */
	case 64:
		return 12; /* SVCB */
	case 65:
		return 13; /* HTTPS */
	case 257:
		return 14; /* CAA */
	case 255:
		return 15; /* ANY */
	default:
		return 0;
	}
}

/* stats: BPF_MAP_TYPE_PERCPU_ARRAY with one entry per CPU. */
struct xd_prog_counters {
	__u64 seen; /* every packet the program ran on */
	__u64 redirected; /* handed to an AF_XDP socket */
	__u64 passed; /* to the kernel: not ours, or no socket bound */
	__u64 dropped; /* DROP action */
	__u64 malformed; /* headers cut short: passed, counted */
	__u64 denied; /* from a source the ACL denies: dropped, not in `dropped` */
	__u64 answered_in_xdp; /* answered from the answer table (XDP_TX) */
	__u64 answered_in_xdp_rcode[XD_ANSWER_RCODES];
	__u64 rate_limited; /* table answers limited: dropped or slipped */
	__u64 slipped; /* of those, sent truncated (TC) */
	__u64 answered_in_xdp_qtype[XD_QTYPE_BUCKETS]; /* by xd_qtype_bucket */
};

#endif
