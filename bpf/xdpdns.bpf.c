// SPDX-License-Identifier: GPL-2.0
/*
 * xdpdns.bpf.c - the XDP program: which packets go to an AF_XDP worker.
 *
 * UDP DNS queries to a port whose action is REDIRECT (and, when configured,
 * to one of our addresses) go to the AF_XDP socket of the rx queue they
 * arrived on, unless the source ACL (acl_v4, acl_v6) denies their sender:
 * those are dropped here, before any copy.  DROP ports are dropped;
 * everything else, and everything the
 * engine could not answer (fragments, IPv6 extension headers, responses,
 * NOTIFY, UPDATE), goes on to the kernel's stack.  A queue with no socket
 * bound falls back to the kernel too: DNS is never black-holed.
 *
 * Before the redirect, a plain query whose answer the published image fixes
 * (the answer table, see xdpdns_maps.h) is answered here: the frame becomes
 * the response the AF_XDP worker would have sent, byte for byte, and goes
 * back out with XDP_TX.  Everything the table does not hold goes on to the
 * worker as before.
 *
 * Maps and counters are defined in xdpdns_maps.h, shared with native/.
 *
 * The parsing and the maps it shares with the load generator's program
 * (xdpgen.bpf.c) are in xdp_frame.h.
 */
#include "xdp_frame.h"

/* ---- the server's own maps ------------------------------------------------ */

/* LPM tries are allocated per entry: the kernel requires BPF_F_NO_PREALLOC. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct xd_acl_v4_key);
	__type(value, struct xd_acl_value);
	__uint(max_entries, XD_ACL_ENTRIES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} acl_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct xd_acl_v6_key);
	__type(value, struct xd_acl_value);
	__uint(max_entries, XD_ACL_ENTRIES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} acl_v6 SEC(".maps");

/* The answer table (xdpdns_maps.h): one slot each, holding the inner maps
 * of the table in force, or empty (no table: everything goes on to the
 * workers).  The inner maps declared here are templates; the engine
 * creates the real ones, sized from the image.  Their key and value are
 * given by size: clang 14 leaves a struct that only an inner map names as
 * a forward declaration in BTF, which libbpf cannot size. */
#define XD_ANSWER_OUTER(size)                                                          \
	struct {                                                                       \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                              \
		__type(key, __u32);                                                    \
		__uint(max_entries, 1);                                                \
		__array(                                                               \
			values, struct {                                               \
				__uint(type, BPF_MAP_TYPE_HASH);                       \
				__uint(key_size, sizeof(struct xd_answer_key_##size)); \
				__uint(value_size, sizeof(struct xd_answer));          \
				__uint(max_entries, 1);                                \
			});                                                            \
	} answers_##size SEC(".maps")

XD_ANSWER_OUTER(32);
XD_ANSWER_OUTER(64);
XD_ANSWER_OUTER(128);
XD_ANSWER_OUTER(256);

/* The headers and question of a query being moved to make room at the
 * frame's head (xd_grow_head): one per CPU, as XDP runs with migration off. */
#define XD_SCRATCH_SIZE 512

struct xd_scratch {
	__u8 bytes[XD_SCRATCH_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct xd_scratch);
	__uint(max_entries, 1);
} answer_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(
		values, struct {
			__uint(type, BPF_MAP_TYPE_ARRAY);
			__uint(key_size, sizeof(__u32));
			__uint(value_size, sizeof(struct xd_answer_page));
			__uint(max_entries, 1);
			/* Inner arrays of another size may take the slot. */
			__uint(map_flags, BPF_F_INNER_MAP);
		});
} answer_pages SEC(".maps");

/* Rate limiting of the table's answers (xdpdns_maps.h): the slots hold
 * the maps of the settings in force; an empty rrl_settings is no limit. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(
		values, struct {
			__uint(type, BPF_MAP_TYPE_ARRAY);
			__uint(key_size, sizeof(__u32));
			__uint(value_size, sizeof(struct xd_rrl_settings));
			__uint(max_entries, 1);
		});
} rrl_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__array(
		values, struct {
			__uint(type, BPF_MAP_TYPE_ARRAY);
			__uint(key_size, sizeof(__u32));
			__uint(value_size, sizeof(struct xd_rrl_set));
			__uint(max_entries, 1);
			/* Mapped by the workers; sized by the settings. */
			__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
		});
} rrl_buckets SEC(".maps");

/* The exempt prefixes of one address family: an LPM trie in one slot. */
#define XD_RRL_EXEMPT_OUTER(family)                                                            \
	struct {                                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                                      \
		__type(key, __u32);                                                            \
		__uint(max_entries, 1);                                                        \
		__array(                                                                       \
			values, struct {                                                       \
				__uint(type, BPF_MAP_TYPE_LPM_TRIE);                           \
				__uint(key_size, sizeof(struct xd_rrl_exempt_##family##_key)); \
				__uint(value_size, sizeof(__u32));                             \
				__uint(max_entries, 1);                                        \
				__uint(map_flags, BPF_F_NO_PREALLOC);                          \
			});                                                                    \
	} rrl_exempt_##family SEC(".maps")

XD_RRL_EXEMPT_OUTER(v4);
XD_RRL_EXEMPT_OUTER(v6);

/* What xd_rrl_judge builds, off the stack that the question fills. */
struct xd_rrl_scratch {
	struct xd_rrl_note note;
	struct xd_rrl_exempt_v4_key k4;
	struct xd_rrl_exempt_v6_key k6;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct xd_rrl_scratch);
	__uint(max_entries, 1);
} rrl_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XD_RRL_EVENTS_BYTES);
} rrl_events SEC(".maps");

/* ---- what to do with the packet ------------------------------------------ */

/* The longest prefix of the current generation that holds src decides;
 * with none (no rule and an allow default), the sender is allowed. */
static __always_inline int xd_source_denied(__u32 generation, const struct xd_addr_key *src)
{
	struct xd_acl_value *value;

	if (src->family == XD_AF_INET) {
		struct xd_acl_v4_key key = {
			.prefixlen = XD_ACL_GENERATION_BITS + 32,
			.generation = generation,
		};

		__builtin_memcpy(key.addr, src->addr, sizeof(key.addr));
		value = bpf_map_lookup_elem(&acl_v4, &key);
	} else {
		struct xd_acl_v6_key key = {
			.prefixlen = XD_ACL_GENERATION_BITS + 128,
			.generation = generation,
		};

		__builtin_memcpy(key.addr, src->addr, sizeof(key.addr));
		value = bpf_map_lookup_elem(&acl_v6, &key);
	}
	return value && value->action == XD_ACL_DENY;
}

/* ---- answers from the table ------------------------------------------------
 *
 * Checksums are ones' complement sums of 16-bit words as they lie in memory
 * (host-order loads, as native/io/packet.c sums them); a run of bytes that
 * starts at an odd offset adds its even-aligned sum byte-swapped (RFC 1071
 * 2(B)), which is how the table's precomputed sums are used.
 */

#define XD_DNS_FLAG_RD 0x0100
#define XD_DNS_FLAG_TC 0x0200
#define XD_DNS_FLAG_CD 0x0010
#define XD_DNS_FLAG_QR 0x8000
#define XD_TYPE_OPT 41
#define XD_CLASS_IN 1
#define XD_EDNS_DO 0x80 /* in the OPT TTL's third byte */
#define XD_OPT_LEN 11
#define XD_LABEL_MAX 63
#define XD_LABELS_MAX 128 /* 255 bytes hold at most 127 labels and the root */
#define XD_IPV4_HLEN 20
#define XD_UDP_HLEN 8
#define XD_REPLY_TTL 64 /* what native/io/packet.c sends */
#define XD_IP_DF 0x4000
#define XD_KEY_WORDS (XD_ANSWER_KEY_256 / 8)
/* Offsets into the frame are masked with these for the verifier: the
 * headers end within the first 512 bytes, a DNS message within 2048. */
#define XD_HDR_MASK 0x1ff
#define XD_MSG_MASK 0x7ff

/* Where a query's parts are, as offsets from the frame's start: the
 * frame's pointers do not survive bpf_xdp_adjust_tail. */
struct xd_layout {
	__u32 l3;
	__u32 l4;
	__u32 dns;
	__u32 dns_len; /* the UDP length's, not the frame's */
	int ipv6;
};

/* What the question and the OPT say, once read. */
struct xd_question {
	struct xd_answer_key_256 key;
	__u32 name_len; /* wire length, root included */
	__u32 key_size; /* XD_ANSWER_KEY_*: which table holds it */
	__u32 sum; /* of the question as it came (the client's case) */
	__u16 flags; /* the header's flags word, host order */
	__u16 udp_size;
	int edns;
	int dnssec; /* the OPT's DO bit (RFC 3225) */
	__u32 opt_sum; /* of the query's OPT as it came; 0 without */
};

/* The question being answered: per CPU, off the 512-byte stack, which
 * the program's own frames fill. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct xd_question);
	__uint(max_entries, 1);
} question_scratch SEC(".maps");

static __always_inline __u32 xd_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u32)sum;
}

/* The sum of a run of bytes summed as if from an even offset, placed at
 * an odd one when odd is set. */
static __always_inline __u32 xd_sum_at(__u64 sum, __u32 odd)
{
	__u32 s = xd_fold(sum);

	return odd & 1 ? ((s & 0xff) << 8) | (s >> 8) : s;
}

/* The sum of the four 16-bit words of x as they lie in memory. */
static __always_inline __u64 xd_sum64(__u64 x)
{
	return (x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48);
}

/* Lower-cases the ASCII letters of eight bytes at once, as xd_lower does
 * one at a time (label lengths are below 'A': unchanged). */
static __always_inline __u64 xd_lower64(__u64 x)
{
	__u64 low7 = x & 0x7f7f7f7f7f7f7f7fULL;
	__u64 ge_a = low7 + 0x3f3f3f3f3f3f3f3fULL; /* bit 7: at least 'A' */
	__u64 gt_z = low7 + 0x2525252525252525ULL; /* bit 7: above 'Z' */

	return x | ((ge_a & ~gt_z & ~x & 0x8080808080808080ULL) >> 2);
}

/* The question's name: loaded into the key, its labels walked there, then
 * made canonical a word at a time (the name lower-cased, the rest of the
 * key zero) while the bytes as they came are summed.  Compressed, extended
 * or over-long names are not the table's: -1.
 *
 * A function of its own (global, so verified once): inlined, each name
 * length the verifier can tell apart would take the rest of the program
 * through the verifier again. */
__attribute__((noinline)) int xd_read_qname(struct xdp_md *ctx, struct xd_question *q, __u32 dns,
					    __u32 dns_len)
{
	__u64 *words;
	__u32 off = 0, i, name_len, key_size;
	/* 64 bits: clang would compare a 32-bit copy and pass the other */
	__u64 n = dns_len, sum = 0;

	if (!q || n < XD_DNS_HEADER_LEN + 1 || n > 0xffff)
		return -1;
	words = (__u64 *)(void *)q->key.name;
	n -= XD_DNS_HEADER_LEN;
	if (n > XD_ANSWER_KEY_256)
		n = XD_ANSWER_KEY_256;
	/* The verifier must see both bounds on the register passed, which
	 * clang would otherwise prove redundant and drop. */
	asm volatile("" : "+r"(n));
	if (n < 1 || n > XD_ANSWER_KEY_256)
		return -1;
	if (bpf_xdp_load_bytes(ctx, dns + XD_DNS_HEADER_LEN, q->key.name, n) < 0)
		return -1;
	for (i = 0; i < XD_LABELS_MAX; i++) {
		__u8 len;

		if (off >= n)
			return -1; /* runs past the packet, or past 255 */
		len = q->key.name[off & (XD_ANSWER_KEY_256 - 1)];
		if (len == 0)
			break;
		if (len > XD_LABEL_MAX)
			return -1; /* a compression pointer or an extended label */
		off += len + 1;
	}
	if (i == XD_LABELS_MAX || off + 1 > XD_ANSWER_KEY_256 - 1)
		return -1;
	name_len = off + 1;
	key_size = xd_answer_key_size(name_len);
#pragma unroll
	for (i = 0; i < XD_KEY_WORDS; i++) {
		__u64 w = words[i];

		if (i * 8 >= key_size)
			break; /* past the part of the key its table reads */
		if (i * 8 >= name_len) {
			words[i] = 0;
			continue;
		}
		if (i * 8 + 8 > name_len)
			w &= (1ULL << ((name_len - i * 8) * 8)) - 1;
		sum += xd_sum64(w);
		words[i] = xd_lower64(w);
	}
	q->name_len = name_len;
	q->key_size = key_size;
	q->sum = xd_fold(sum);
	return 0;
}

/* The IP length holds the UDP datagram and the frame holds both, as the
 * worker's parser demands (native/io/packet.c): a frame cut short is not
 * answered. */
static __always_inline int xd_lengths_ok(void *data, void *end, const struct xd_layout *l)
{
	__u8 *ip = data + (l->l3 & XD_HDR_MASK);
	__u32 udp_len = l->dns_len + XD_UDP_HLEN, ip_len;

	if (l->ipv6) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)ip;

		if ((void *)(ip6 + 1) > end)
			return 0;
		ip_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	} else {
		struct iphdr *ip4 = (struct iphdr *)ip;

		if ((void *)(ip4 + 1) > end)
			return 0;
		ip_len = bpf_ntohs(ip4->tot_len);
	}
	if (ip_len < l->l4 - l->l3 + udp_len || ip_len > 0xffff)
		return 0;
	return (void *)(ip + ip_len) <= end;
}

/* A query the table may answer: one question of class IN and nothing else
 * but, at most, an OPT of version 0 without options.  Any other query is
 * the worker's: its answer depends on more than the name, type and DO. */
static __always_inline int xd_read_question(struct xdp_md *ctx, const struct xd_layout *l,
					    struct xd_question *q)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *dns = data + (l->dns & XD_HDR_MASK), *tail, *opt;
	__u32 rest, arcount;

	if ((void *)(dns + XD_DNS_HEADER_LEN) > end || !xd_lengths_ok(data, end, l))
		return -1;
	q->flags = ((__u16)dns[2] << 8) | dns[3];
	if (dns[4] || dns[5] != 1 || dns[6] || dns[7] || dns[8] || dns[9] || dns[10])
		return -1; /* not one question alone */
	arcount = dns[11];
	if (xd_read_qname(ctx, q, l->dns, l->dns_len) < 0 || q->name_len > XD_ANSWER_KEY_256 - 1)
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	tail = data + (l->dns & XD_HDR_MASK) + XD_DNS_HEADER_LEN + (q->name_len & 0xff);
	if ((void *)(tail + 4) > end)
		return -1;
	q->key.qtype = ((__u16)tail[0] << 8) | tail[1];
	q->key.qclass = ((__u16)tail[2] << 8) | tail[3];
	if (q->key.qclass != XD_CLASS_IN)
		return -1;
	q->sum = xd_fold((__u64)q->sum +
			 xd_sum_at((__u64) * (__u16 *)(void *)tail + *(__u16 *)(void *)(tail + 2),
				   q->name_len));
	rest = l->dns_len - XD_DNS_HEADER_LEN - q->name_len - 4;
	q->edns = 0;
	q->udp_size = 0;
	if (rest == 0 && arcount == 0)
		return 0;
	if (rest != XD_OPT_LEN || arcount != 1)
		return -1; /* other records, or bytes after them: the core judges */
	opt = tail + 4;
	if ((void *)(opt + XD_OPT_LEN) > end)
		return -1;
	/* Root owner, type OPT, version 0, no options.  The extended RCODE
	 * byte and the flag bits but DO mean nothing in a query (the core
	 * reads neither). */
	if (opt[0] || opt[1] || opt[2] != XD_TYPE_OPT || opt[6] || opt[9] || opt[10])
		return -1;
	q->edns = 1;
	q->dnssec = !!(opt[7] & XD_EDNS_DO);
	q->udp_size = ((__u16)opt[3] << 8) | opt[4];
	/* Its bytes but the last (zero), as 16-bit words from where it lies. */
	q->opt_sum = xd_sum_at((__u64) * (__u16 *)(void *)opt + *(__u16 *)(void *)(opt + 2) +
				       *(__u16 *)(void *)(opt + 4) + *(__u16 *)(void *)(opt + 6) +
				       *(__u16 *)(void *)(opt + 8),
			       q->name_len);
	return 0;
}

static __always_inline struct xd_answer *xd_answer_find(struct xd_question *q)
{
	__u32 zero = 0;
	void *inner;

	if (q->key_size == XD_ANSWER_KEY_32) {
		inner = bpf_map_lookup_elem(&answers_32, &zero);
		return inner ? bpf_map_lookup_elem(inner, &q->key) : NULL;
	}
	if (q->key_size == XD_ANSWER_KEY_64) {
		inner = bpf_map_lookup_elem(&answers_64, &zero);
		return inner ? bpf_map_lookup_elem(inner, &q->key) : NULL;
	}
	if (q->key_size == XD_ANSWER_KEY_128) {
		inner = bpf_map_lookup_elem(&answers_128, &zero);
		return inner ? bpf_map_lookup_elem(inner, &q->key) : NULL;
	}
	inner = bpf_map_lookup_elem(&answers_256, &zero);
	return inner ? bpf_map_lookup_elem(inner, &q->key) : NULL;
}

/* The name's entry for the type, else its entry for every other type;
 * neither for the types the table holds no answers to (xd_answer_type_held):
 * the workers answer them. */
static __always_inline struct xd_answer *xd_answer_lookup(struct xd_question *q)
{
	struct xd_answer *a;

	if (!xd_answer_type_held(q->key.qtype))
		return NULL;
	a = xd_answer_find(q);
	if (a)
		return a;
	q->key.qtype = 0;
	q->key.qclass = XD_ANSWER_CLASS_OTHER;
	return xd_answer_find(q);
}

/* The entry for the query, DO included: a name's plain entry when it says
 * the answer with DO is the same, else the name's DO entries. */
static __always_inline struct xd_answer *xd_answer_lookup_do(struct xd_question *q)
{
	__u16 qtype = q->key.qtype;
	struct xd_answer *a = xd_answer_lookup(q);

	if (!q->dnssec || (a && a->also_do == XD_ANSWER_ALSO_DO))
		return a;
	q->key.qtype = qtype;
	q->key.qclass = XD_CLASS_IN;
	q->key.variant = XD_ANSWER_VARIANT_DO;
	return xd_answer_lookup(q);
}

/* Whether the answer fits where the core would send it whole: 512 bytes
 * without EDNS, else the client's size within [512, 1232] less the OPT
 * reserve.  A longer one is the core's to truncate. */
static __always_inline int xd_answer_fits(const struct xd_question *q, __u32 len)
{
	__u32 need = XD_DNS_HEADER_LEN + q->name_len + 4 + len;
	__u32 limit = XD_ANSWER_UDP_MIN;

	if (!q->edns)
		return need <= limit;
	if (q->udp_size > limit)
		limit = q->udp_size < XD_ANSWER_UDP_MAX ? q->udp_size : XD_ANSWER_UDP_MAX;
	return need + XD_ANSWER_OPT_RESERVE <= limit;
}

/* The sum of the OPT record of an answer: UDP size 1232, DO as the query
 * had it, the rest zero but the type. */
static __always_inline __u32 xd_opt_sum(int dnssec, __u32 odd)
{
	__u8 opt[12] = { 0,
			 0,
			 XD_TYPE_OPT,
			 XD_ANSWER_UDP_MAX >> 8,
			 XD_ANSWER_UDP_MAX & 0xff,
			 0,
			 0,
			 dnssec ? XD_EDNS_DO : 0 };

	return xd_sum_at((__u64) * (__u16 *)(void *)opt + *(__u16 *)(void *)(opt + 2) +
				 *(__u16 *)(void *)(opt + 4) + *(__u16 *)(void *)(opt + 6),
			 odd);
}

/* The pseudo-header's sum (RFC 768, RFC 8200 8.1) for a UDP length. */
static __always_inline int xd_pseudo_sum(void *data, void *end, const struct xd_layout *l,
					 __u16 udp_len_be, __u64 *out)
{
	__u16 *ip = data + (l->l3 & XD_HDR_MASK);
	__u64 sum = bpf_htons(IPPROTO_UDP) + udp_len_be;
	int i;

	if (l->ipv6) {
		if ((void *)(ip + 20) > end)
			return -1;
#pragma unroll
		for (i = 4; i < 20; i++)
			sum += ip[i];
	} else {
		if ((void *)(ip + 10) > end)
			return -1;
		sum += (__u64)ip[6] + ip[7] + ip[8] + ip[9];
	}
	*out = sum;
	return 0;
}

/* The checksums of a query as the AF_XDP worker checks them (native/
 * packet.c): the IPv4 header's, and the UDP one complete, absent (IPv4
 * only) or the partial sum a local sender with offload leaves. */
static __always_inline int xd_query_checksums_ok(struct xdp_md *ctx, const struct xd_layout *l,
						 const struct xd_question *q)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u16 *ip = data + (l->l3 & XD_HDR_MASK), *udp = data + (l->l4 & XD_HDR_MASK);
	__u16 *dns = data + (l->dns & XD_HDR_MASK);
	__u64 pseudo, sum = 0;
	int i;

	if ((void *)(udp + 4) > end || (void *)(dns + 6) > end)
		return 0;
	if (!l->ipv6) {
		if ((void *)(ip + 10) > end)
			return 0;
#pragma unroll
		for (i = 0; i < 10; i++)
			sum += ip[i];
		if (xd_fold(sum) != 0xffff)
			return 0;
		if (udp[3] == 0)
			return 1; /* no UDP checksum (RFC 768) */
	}
	if (xd_pseudo_sum(data, end, l, udp[2], &pseudo) < 0)
		return 0;
	sum = pseudo + udp[0] + udp[1] + udp[2] + udp[3] + q->sum;
#pragma unroll
	for (i = 0; i < 6; i++)
		sum += dns[i];
	sum += q->opt_sum;
	if (xd_fold(sum) == 0xffff)
		return 1;
	return udp[3] == xd_fold(pseudo);
}

static __always_inline void xd_swap(__u8 *a, __u8 *b, int n)
{
	__u8 t;
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		if (i >= n)
			break;
		t = a[i];
		a[i] = b[i];
		b[i] = t;
	}
}

/* The DNS header of the answer: ID as it came, QR, the table's AA and
 * RCODE, the query's opcode (QUERY), RD and CD (as the core's put_header);
 * its slip's has TC and no records.  Returns its sum. */
static __always_inline __u64 xd_write_header(__u8 *dns, const struct xd_question *q,
					     const struct xd_answer *a, int slip)
{
	__u16 flags = XD_DNS_FLAG_QR | a->flags | (q->flags & (XD_DNS_FLAG_RD | XD_DNS_FLAG_CD));
	__u16 *w = (__u16 *)(void *)dns;

	if (slip) {
		w[1] = bpf_htons(flags | XD_DNS_FLAG_TC);
		w[2] = bpf_htons(1);
		w[3] = 0;
		w[4] = 0;
		w[5] = 0;
		return (__u64)w[0] + w[1] + w[2];
	}
	w[1] = bpf_htons(flags);
	w[2] = bpf_htons(1);
	w[3] = bpf_htons(a->ancount);
	w[4] = bpf_htons(a->nscount);
	w[5] = bpf_htons(a->arcount + (q->edns ? 1 : 0));
	return (__u64)w[0] + w[1] + w[2] + w[3] + w[4] + w[5];
}

/* The OPT record the core puts on an answer to such a query: UDP size
 * 1232, no extended RCODE (the table holds none), version 0, DO as the
 * query's (RFC 3225 3), no options (RFC 6891 6.1.2). */
static __always_inline void xd_write_opt(__u8 *opt, int dnssec)
{
	opt[0] = 0;
	opt[1] = 0;
	opt[2] = XD_TYPE_OPT;
	opt[3] = XD_ANSWER_UDP_MAX >> 8;
	opt[4] = XD_ANSWER_UDP_MAX & 0xff;
	opt[5] = 0;
	opt[6] = 0;
	opt[7] = dnssec ? XD_EDNS_DO : 0;
	opt[8] = 0;
	opt[9] = 0;
	opt[10] = 0;
}

/* The IP and UDP headers of the answer, as native/io/packet.c's
 * xd_frame_reply writes them; the UDP checksum from body_sum, the sum of
 * the DNS message. */
static __always_inline int xd_write_ip_udp(void *data, void *end, const struct xd_layout *l,
					   __u32 dns_len, __u64 body_sum)
{
	__u16 udp_len = XD_UDP_HLEN + dns_len;
	__u8 *ip = data + (l->l3 & XD_HDR_MASK);
	struct udphdr *udp = data + (l->l4 & XD_HDR_MASK);
	__u64 sum;
	__u32 check;
	int i;

	if ((void *)(udp + 1) > end)
		return -1;
	if (l->ipv6) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)ip;

		if ((void *)(ip6 + 1) > end)
			return -1;
		xd_swap((__u8 *)&ip6->saddr, (__u8 *)&ip6->daddr, 16);
		ip6->payload_len = bpf_htons(udp_len);
		ip6->hop_limit = XD_REPLY_TTL;
	} else {
		struct iphdr *ip4 = (struct iphdr *)ip;
		__u16 *w = (__u16 *)ip;

		if ((void *)(ip + XD_IPV4_HLEN) > end)
			return -1;
		ip4->tos = 0;
		ip4->tot_len = bpf_htons(XD_IPV4_HLEN + udp_len);
		ip4->id = 0; /* unfragmented, RFC 6864 4.1 */
		ip4->frag_off = bpf_htons(XD_IP_DF);
		ip4->ttl = XD_REPLY_TTL;
		xd_swap((__u8 *)&ip4->saddr, (__u8 *)&ip4->daddr, 4);
		ip4->check = 0;
		sum = 0;
#pragma unroll
		for (i = 0; i < 10; i++)
			sum += w[i];
		ip4->check = ~xd_fold(sum) & 0xffff;
	}
	xd_swap((__u8 *)&udp->source, (__u8 *)&udp->dest, 2);
	udp->len = bpf_htons(udp_len);
	udp->check = 0;
	if (xd_pseudo_sum(data, end, l, udp->len, &sum) < 0)
		return -1;
	sum += (__u64)udp->source + udp->dest + udp->len + body_sum;
	check = ~xd_fold(sum) & 0xffff;
	udp->check = check ? check : 0xffff; /* RFC 768: a computed zero is sent as all ones */
	return 0;
}

/* Makes delta more bytes of room by growing the frame at its head, where
 * the headers and the question (its first n bytes) move: for a frame whose
 * tail has no room (on veth, a copied frame's tail ends near its data).
 * -1 before anything changed, -2 after. */
static __always_inline int xd_grow_head(struct xdp_md *ctx, int delta, __u32 n)
{
	__u32 zero = 0;
	struct xd_scratch *buf = bpf_map_lookup_elem(&answer_scratch, &zero);
	__u64 len = n;

	asm volatile("" : "+r"(len)); /* the verifier must see both bounds */
	if (!buf || len < 1 || len > XD_SCRATCH_SIZE)
		return -1;
	if (bpf_xdp_load_bytes(ctx, 0, buf->bytes, len) < 0)
		return -1;
	if (bpf_xdp_adjust_head(ctx, -delta) < 0)
		return -1;
	return bpf_xdp_store_bytes(ctx, 0, buf->bytes, len) < 0 ? -2 : 0;
}

/* Makes the query frame the answer in place: the sections after the
 * question from the table's page, the OPT when the query had one, the
 * header, then IP and UDP.  Its slip instead (rrl.c's xd_rrl_slip): the
 * header with TC and no records, the question, no OPT.  -1 before
 * anything changed (the worker may still answer), -2 after (the frame is
 * lost). */
static __always_inline int xd_answer_write(struct xdp_md *ctx, const struct xd_layout *l,
					   const struct xd_question *q, const struct xd_answer *a,
					   struct xd_answer_page *page, int slip)
{
	__u32 qend = XD_DNS_HEADER_LEN + q->name_len + 4;
	__u32 len = slip ? 0 : a->len, off = a->offset & (XD_ANSWER_PAGE_STRIDE - 1);
	int with_opt = q->edns && !slip;
	__u32 dns_len = qend + len + (with_opt ? XD_OPT_LEN : 0);
	void *data, *end;
	__u8 *eth, *dns, *opt;
	__u64 sum;
	int delta, rc;

	if (len > XD_ANSWER_BODY_MAX || qend > XD_DNS_HEADER_LEN + XD_ANSWER_KEY_256 + 4)
		return -1;
	delta = (int)(l->dns + dns_len) - (int)bpf_xdp_get_buff_len(ctx);
	if (bpf_xdp_adjust_tail(ctx, delta) < 0) {
		rc = delta > 0 ? xd_grow_head(ctx, delta, l->dns + qend) : -1;
		if (rc < 0)
			return rc;
	}
	if (len && bpf_xdp_store_bytes(ctx, l->dns + qend, page->bytes + off, len) < 0)
		return -2;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	dns = data + (l->dns & XD_HDR_MASK);
	if ((void *)(eth + 2 * ETH_ALEN) > end || (void *)(dns + XD_DNS_HEADER_LEN) > end)
		return -2;
	xd_swap(eth, eth + ETH_ALEN, ETH_ALEN);
	sum = xd_write_header(dns, q, a, slip) + q->sum + (slip ? 0 : xd_sum_at(a->csum, qend));
	if (with_opt) {
		opt = dns + ((qend + len) & XD_MSG_MASK);
		if ((void *)(opt + XD_OPT_LEN) > end)
			return -2;
		xd_write_opt(opt, q->dnssec);
		sum += xd_opt_sum(q->dnssec, qend + len);
	}
	return xd_write_ip_udp(data, end, l, dns_len, sum) < 0 ? -2 : 0;
}

/* ---- rate limiting: native/answer/rrl.c's scheme on the workers' buckets ---- */

enum xd_rrl_verdict {
	XD_RRL_V_SEND,
	XD_RRL_V_DROP,
	XD_RRL_V_SLIP,
};

static __always_inline int xd_rrl_exempt(const struct xd_addr_key *src, struct xd_rrl_scratch *sc)
{
	__u32 zero = 0;
	void *trie;

	if (src->family == XD_AF_INET) {
		trie = bpf_map_lookup_elem(&rrl_exempt_v4, &zero);
		sc->k4.prefixlen = 32;
		__builtin_memcpy(sc->k4.addr, src->addr, 4);
		return trie && bpf_map_lookup_elem(trie, &sc->k4);
	}
	trie = bpf_map_lookup_elem(&rrl_exempt_v6, &zero);
	sc->k6.prefixlen = 128;
	__builtin_memcpy(sc->k6.addr, src->addr, 16);
	return trie && bpf_map_lookup_elem(trie, &sc->k6);
}

/* The client's prefix: addr with the bits past prefix_len cleared (wire/prefixes.c's
 * xd_mask_prefix). */
static __always_inline void xd_rrl_mask(__u8 *addr, __u32 prefix_len)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		if (prefix_len >= 8 * (i + 1))
			continue;
		if (prefix_len <= 8 * i)
			addr[i] = 0;
		else
			addr[i] &= (__u8)(0xff00 >> (prefix_len - 8 * i));
	}
}

/* The limiter's verdict on an answer from the table to src, of a kind
 * (XD_RRL_KIND_*) counted by name (its hash) and, for answers, qtype, as
 * a worker's xd_rrl_filter gives it on the same bucket: credit, debit, a
 * note to the log once a window, every slip-th limited one truncated.  A
 * function of its own, verified once. */
__attribute__((noinline)) int xd_rrl_judge(const struct xd_addr_key *src, __u32 kind, __u32 qtype,
					   __u64 name)
{
	struct xd_rrl_settings *cfg;
	struct xd_rrl_scratch *sc;
	struct xd_rrl_note *note;
	struct xd_rrl_entry *e;
	struct xd_rrl_set *set;
	__u32 zero = 0, rate, idx, now, prefix;
	void *inner;
	int report, slip;
	__u64 key;

	if (!src || kind >= XD_RRL_KINDS)
		return XD_RRL_V_SEND;
	inner = bpf_map_lookup_elem(&rrl_settings, &zero);
	cfg = inner ? bpf_map_lookup_elem(inner, &zero) : NULL;
	if (!cfg || !cfg->nsets)
		return XD_RRL_V_SEND; /* rate limiting is off */
	/* The verifier must see the bound on the register that indexes. */
	asm volatile("" : "+r"(kind));
	if (kind >= XD_RRL_KINDS)
		return XD_RRL_V_SEND;
	rate = cfg->rate[kind];
	sc = bpf_map_lookup_elem(&rrl_scratch, &zero);
	if (!rate || !sc)
		return XD_RRL_V_SEND;
	if ((src->family == XD_AF_INET ? cfg->exempt_v4 : cfg->exempt_v6) && xd_rrl_exempt(src, sc))
		return XD_RRL_V_SEND;
	note = &sc->note;
	__builtin_memcpy(note->addr, src->addr, 16);
	note->family = src->family;
	prefix = src->family == XD_AF_INET ? cfg->ipv4_prefix : cfg->ipv6_prefix;
	note->prefix_len = prefix;
	note->kind = kind;
	note->pad = 0;
	xd_rrl_mask(note->addr, prefix);
	key = xd_rrl_bucket_key(cfg->seed, note->addr, src->family, kind,
				kind == XD_RRL_KIND_ANSWER ? qtype : 0, name);
	idx = (__u32)(key & (cfg->nsets - 1));
	inner = bpf_map_lookup_elem(&rrl_buckets, &zero);
	set = inner ? bpf_map_lookup_elem(inner, &idx) : NULL;
	if (!set)
		return XD_RRL_V_SEND; /* settings and buckets changing */
	now = (__u32)(bpf_ktime_get_coarse_ns() / 1000000000ULL);
	e = xd_rrl_bucket_find(set, key, rate, now);
	if (xd_rrl_bucket_debit(e, rate, cfg->window, now))
		return XD_RRL_V_SEND;
	slip = xd_rrl_bucket_limited(e, cfg->window, cfg->slip, now, &report);
	if (report) {
		note->time = now;
		bpf_ringbuf_output(&rrl_events, note, sizeof(*note), 0);
	}
	return slip ? XD_RRL_V_SLIP : XD_RRL_V_DROP;
}

/* Answers the query in place from the table: XDP_TX (out says what was
 * sent), or XDP_PASS to go on (not the table's, or no table), or XDP_DROP
 * for an answer rate limiting drops, or a frame lost half-way (it cannot
 * happen to a frame the checks passed). */
static __always_inline int xd_answer_query(struct xdp_md *ctx, const struct xd_layout *l,
					   const struct xd_config *cfg,
					   const struct xd_addr_key *src, struct xd_outcome *out)
{
	struct xd_answer_page *page;
	struct xd_question *q;
	struct xd_answer *a;
	__u32 zero = 0, qtype;
	void *pages;
	int rc, verdict;

	q = bpf_map_lookup_elem(&question_scratch, &zero);
	if (!q)
		return XDP_PASS;
	__builtin_memset(q, 0, sizeof(*q));
	if (xd_read_question(ctx, l, q) < 0)
		return XDP_PASS;
	if (cfg->verify_checksums && !xd_query_checksums_ok(ctx, l, q))
		return XDP_PASS; /* the worker drops and counts it */
	qtype = q->key.qtype; /* before the lookup's fallback clears it */
	a = xd_answer_lookup_do(q);
	if (!a || a->action != XD_ANSWER_SEND || !xd_answer_fits(q, a->len))
		return XDP_PASS;
	pages = bpf_map_lookup_elem(&answer_pages, &zero);
	if (!pages)
		return XDP_PASS;
	page = bpf_map_lookup_elem(pages, &a->page);
	if (!page)
		return XDP_PASS;
	verdict = xd_rrl_judge(src, a->rrl_kind, qtype, a->rrl_name);
	if (verdict == XD_RRL_V_DROP) {
		out->note = XD_NOTE_LIMITED;
		return XDP_DROP;
	}
	rc = xd_answer_write(ctx, l, q, a, page, verdict == XD_RRL_V_SLIP);
	out->note = verdict == XD_RRL_V_SLIP ? XD_NOTE_SLIPPED : XD_NOTE_ANSWERED;
	if (rc == -1) {
		out->note = XD_NOTE_NONE;
		return XDP_PASS;
	}
	if (rc < 0) {
		out->note = XD_NOTE_NONE;
		return XDP_DROP;
	}
	out->rcode = a->flags & 0xf;
	out->qtype = xd_qtype_bucket(qtype);
	return XDP_TX;
}

/* Marks the packet for its worker's dnstap (XD_TAP_MARK in 4 bytes of
 * metadata); -1 when the driver keeps no metadata: the worker answers the
 * packet as any other, unlogged. */
static __always_inline int xd_tap_mark(struct xdp_md *ctx)
{
	__u32 *meta;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*meta)))
		return -1;
	meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return -1;
	*meta = XD_TAP_MARK;
	return 0;
}

/* The verdict on one packet; out says what is counted with it beyond the
 * verdict (a header cut short: passed; a denied sender: dropped; an
 * answer from the table: its RCODE). */
static __always_inline int xd_decide(struct xdp_md *ctx, struct xd_outcome *out)
{
	void *data = (void *)(long)ctx->data;
	struct xd_addr_key dest, src;
	struct xd_cursor c;
	struct xd_config cfg;
	struct udphdr *udp;
	enum xd_parse r;
	__u32 action;
	void *l3 = NULL;
	int found, verdict;

	verdict = xd_frame_begin(ctx, &c, &dest, &src, &udp, &l3, out);
	if (verdict >= 0)
		return verdict; /* not unfragmented UDP over IP: the kernel's */

	action = xd_port_action(bpf_ntohs(udp->dest), &found);
	if (!found)
		return XDP_PASS; /* a port we have no action for */
	if (action == XD_ACTION_DROP)
		return XDP_DROP; /* the port's action is DROP */
	if (action != XD_ACTION_REDIRECT)
		return XDP_PASS; /* the port's action is PASS */

	cfg = xd_config_read();
	if (cfg.check_dest && !xd_dest_ours(&dest))
		return XDP_PASS; /* to an address we do not serve */
	/* Before the DNS header is even looked at: a denied sender gets
	 * nothing on this port, the kernel's listeners included. */
	if (cfg.acl_generation && xd_source_denied(cfg.acl_generation, &src)) {
		out->note = XD_NOTE_DENIED;
		return XDP_DROP; /* the source ACL denies the sender */
	}
	r = xd_parse_dns(&c, udp, 0);
	if (r != XD_PARSE_OK) {
		out->note = r == XD_PARSE_SHORT ? XD_NOTE_MALFORMED : XD_NOTE_NONE;
		return XDP_PASS; /* not a DNS query the engine answers: the socket listener's */
	}
	if (cfg.tap_sample && bpf_get_prandom_u32() % cfg.tap_sample == 0) {
		/* Packet pointers are void after the mark, whether it took. */
		xd_tap_mark(ctx);
		return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS); /* for dnstap */
	}
	/* IPv4 options are the worker's: its answer drops them, and the
	 * program's would have to move the payload. */
	if (src.family == XD_AF_INET6 || ((struct iphdr *)l3)->ihl == 5) {
		struct xd_layout layout = {
			.l3 = l3 - data,
			.l4 = (void *)udp - data,
			.dns = c.pos - data,
			.dns_len = bpf_ntohs(udp->len) - sizeof(*udp),
			.ipv6 = src.family == XD_AF_INET6,
		};
		verdict = xd_answer_query(ctx, &layout, &cfg, &src, out);
		if (verdict == XDP_TX)
			return XDP_TX; /* answered from the table, or its TC slip */
		if (verdict == XDP_DROP)
			return XDP_DROP; /* rate limited, or lost half-way */
	}
	/* A query for the worker of this rx queue; XDP_PASS, not a black hole,
	 * when no socket is bound there (no worker, or its process died). */
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS); /* ours */
}

SEC("xdp")
int xdpdns(struct xdp_md *ctx)
{
	struct xd_outcome out;

	return xd_count_verdict(xd_decide(ctx, &out), &out); /* xd_decide's reason */
}

char LICENSE[] SEC("license") = "GPL";
