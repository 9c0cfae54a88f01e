/*
 * xdp_frame.h - what the server's XDP program (xdpdns.bpf.c) and the load
 * generator's (xdpgen.bpf.c) share: the maps both have (port actions,
 * destination addresses, config, counters, the XSKMAP), the parsing of a
 * frame down to its DNS header, and the counting of verdicts.  Each
 * program that includes it gets maps of its own.
 */
#ifndef XDPDNS_XDP_FRAME_H
#define XDPDNS_XDP_FRAME_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "xdpdns_maps.h"

/* Address families of struct xd_addr_key, Linux's values (sys/socket.h is
 * not available to BPF programs). */
#define XD_AF_INET 2
#define XD_AF_INET6 10

/* IPv4 fragment bits of frag_off (the kernel's net/ip.h, not uapi). */
#define XD_IP_MF 0x2000
#define XD_IP_OFFSET 0x1fff

/* At most two VLAN tags: an 802.1ad outer and an 802.1Q inner one (QinQ). */
#define XD_VLAN_MAX 2

#define XD_DNS_HEADER_LEN 12
#define XD_DNS_QR 0x80 /* in the third header byte */
#define XD_DNS_OPCODE_SHIFT 3
#define XD_DNS_OPCODE_MASK 0x0f
#define XD_DNS_OPCODE_QUERY 0

/* A load the compiler neither repeats nor tears (the kernel's READ_ONCE). */
#define XD_READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))

/* Why a packet got its verdict, beyond the verdict itself (counted). */
enum xd_note {
	XD_NOTE_NONE,
	XD_NOTE_MALFORMED, /* a header cut short: passed */
	XD_NOTE_DENIED, /* the source ACL denies the sender: dropped */
	XD_NOTE_ANSWERED, /* answered from the answer table: XDP_TX */
	XD_NOTE_LIMITED, /* a table answer rate limiting dropped */
	XD_NOTE_SLIPPED, /* one it sent truncated instead: XDP_TX */
};

/* A verdict and what is counted with it. */
struct xd_outcome {
	enum xd_note note;
	__u32 rcode; /* XD_NOTE_ANSWERED: the answer's RCODE */
	__u32 qtype; /* and the query's type bucket (xd_qtype_bucket) */
};

/* ---- maps ---------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct xd_port_key);
	__type(value, struct xd_port_value);
	__uint(max_entries, XD_PORT_ACTIONS_MAX);
} port_actions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct xd_addr_key);
	__type(value, struct xd_addr_value);
	__uint(max_entries, XD_DEST_ADDRS_MAX);
} dest_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct xd_config);
	__uint(max_entries, 1);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct xd_prog_counters);
	__uint(max_entries, 1);
} stats SEC(".maps");

/* Indexed by rx queue; user space sets max_entries to the queue count
 * before loading (xd_prog_load). */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, XD_XSKS_MAX);
} xsks SEC(".maps");

/* ---- parsing: each helper checks one header and moves the cursor past it */

struct xd_cursor {
	void *pos;
	void *end;
};

enum xd_parse {
	XD_PARSE_OK,
	XD_PARSE_OTHER, /* well-formed, but not for us */
	XD_PARSE_SHORT, /* a header is cut short: malformed */
};

struct xd_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline int xd_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet and up to XD_VLAN_MAX VLAN tags; *proto gets the EtherType of
 * what follows, in network byte order. */
static __always_inline enum xd_parse xd_parse_eth(struct xd_cursor *c, __be16 *proto)
{
	struct ethhdr *eth = c->pos;
	struct xd_vlan_hdr *vlan;
	int i;

	if ((void *)(eth + 1) > c->end)
		return XD_PARSE_SHORT;
	c->pos = eth + 1;
	*proto = eth->h_proto;

#pragma unroll
	for (i = 0; i < XD_VLAN_MAX; i++) {
		if (!xd_is_vlan(*proto))
			break;
		vlan = c->pos;
		if ((void *)(vlan + 1) > c->end)
			return XD_PARSE_SHORT;
		c->pos = vlan + 1;
		*proto = vlan->encap_proto;
	}
	if (xd_is_vlan(*proto))
		return XD_PARSE_OTHER; /* more tags than we look through */
	return XD_PARSE_OK;
}

/* IPv4 with options; only unfragmented UDP is ours.  *dest and *src get
 * the destination and source addresses. */
static __always_inline enum xd_parse xd_parse_ipv4(struct xd_cursor *c, struct xd_addr_key *dest,
						   struct xd_addr_key *src)
{
	struct iphdr *ip = c->pos;
	int hdr_len;

	if ((void *)(ip + 1) > c->end)
		return XD_PARSE_SHORT;
	hdr_len = ip->ihl * 4;
	if (ip->version != 4 || hdr_len < (int)sizeof(*ip))
		return XD_PARSE_SHORT;
	if (c->pos + hdr_len > c->end)
		return XD_PARSE_SHORT;
	c->pos += hdr_len;
	dest->family = XD_AF_INET;
	__builtin_memcpy(dest->addr, &ip->daddr, sizeof(ip->daddr));
	src->family = XD_AF_INET;
	__builtin_memcpy(src->addr, &ip->saddr, sizeof(ip->saddr));
	/* A fragment carries no UDP header, or only part of the datagram:
	 * the kernel reassembles it. */
	if (ip->frag_off & bpf_htons(XD_IP_MF | XD_IP_OFFSET))
		return XD_PARSE_OTHER;
	if (ip->protocol != IPPROTO_UDP)
		return XD_PARSE_OTHER;
	return XD_PARSE_OK;
}

/* IPv6 whose next header is UDP itself: extension headers (fragments
 * among them) are left to the kernel.  *dest and *src get the addresses. */
static __always_inline enum xd_parse xd_parse_ipv6(struct xd_cursor *c, struct xd_addr_key *dest,
						   struct xd_addr_key *src)
{
	struct ipv6hdr *ip6 = c->pos;

	if ((void *)(ip6 + 1) > c->end)
		return XD_PARSE_SHORT;
	if (ip6->version != 6)
		return XD_PARSE_SHORT;
	c->pos = ip6 + 1;
	dest->family = XD_AF_INET6;
	__builtin_memcpy(dest->addr, &ip6->daddr, sizeof(ip6->daddr));
	src->family = XD_AF_INET6;
	__builtin_memcpy(src->addr, &ip6->saddr, sizeof(ip6->saddr));
	if (ip6->nexthdr != IPPROTO_UDP)
		return XD_PARSE_OTHER;
	return XD_PARSE_OK;
}

static __always_inline enum xd_parse xd_parse_udp(struct xd_cursor *c, struct udphdr **out)
{
	struct udphdr *udp = c->pos;

	if ((void *)(udp + 1) > c->end)
		return XD_PARSE_SHORT;
	c->pos = udp + 1;
	*out = udp;
	return XD_PARSE_OK;
}

/* The DNS header's first three bytes (ID and the QR/opcode byte): a query
 * the engine can answer has QR clear and opcode QUERY.  The UDP length,
 * not the frame's end, says how long the payload is: Ethernet pads short
 * frames. */
/* The DNS header of a standard query (answers: false) or of a response
 * to one (answers: true, the load generator's side). */
static __always_inline enum xd_parse xd_parse_dns(struct xd_cursor *c, const struct udphdr *udp,
						  int answers)
{
	__u8 *dns = c->pos;
	__u8 flags;

	if (bpf_ntohs(udp->len) < sizeof(*udp) + XD_DNS_HEADER_LEN)
		return XD_PARSE_OTHER;
	if ((void *)(dns + XD_DNS_HEADER_LEN) > c->end)
		return XD_PARSE_SHORT;
	flags = dns[2];
	if (!(flags & XD_DNS_QR) != !answers)
		return XD_PARSE_OTHER;
	if (((flags >> XD_DNS_OPCODE_SHIFT) & XD_DNS_OPCODE_MASK) != XD_DNS_OPCODE_QUERY)
		return XD_PARSE_OTHER;
	return XD_PARSE_OK;
}

/* What the one config entry says; all zero (no address check, no ACL)
 * if it could not be read. */
static __always_inline struct xd_config xd_config_read(void)
{
	__u32 zero = 0;
	struct xd_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct xd_config out = { 0, 0, 0, 0 };

	if (cfg) {
		out.check_dest = cfg->check_dest;
		out.verify_checksums = cfg->verify_checksums;
		out.tap_sample = cfg->tap_sample;
		/* One read: the packet is judged by one rule set even while
		 * user space flips to the next. */
		out.acl_generation = XD_READ_ONCE(cfg->acl_generation);
	}
	return out;
}

static __always_inline int xd_dest_ours(const struct xd_addr_key *dest)
{
	return bpf_map_lookup_elem(&dest_addrs, dest) != NULL;
}

/* The action for a UDP port (found: whether the port has one). */
static __always_inline __u32 xd_port_action(__u16 port, int *found)
{
	struct xd_port_key key = { .port = port, .pad = 0 };
	struct xd_port_value *value = bpf_map_lookup_elem(&port_actions, &key);

	*found = value != NULL;
	return value ? value->action : XD_ACTION_PASS;
}

/* Parses a frame up to its UDP payload: XD_PARSE_OK with c there, *udp its
 * header, *l3 its IP header and dest and src its addresses. */
static __always_inline enum xd_parse xd_parse_frame(struct xd_cursor *c, struct xd_addr_key *dest,
						    struct xd_addr_key *src, struct udphdr **udp,
						    void **l3)
{
	enum xd_parse r;
	__be16 proto;

	/* Map keys: every byte initialised, IPv4's unused ones zero. */
	__builtin_memset(dest, 0, sizeof(*dest));
	__builtin_memset(src, 0, sizeof(*src));
	r = xd_parse_eth(c, &proto);
	if (r != XD_PARSE_OK)
		return r;
	*l3 = c->pos;
	if (proto == bpf_htons(ETH_P_IP))
		r = xd_parse_ipv4(c, dest, src);
	else if (proto == bpf_htons(ETH_P_IPV6))
		r = xd_parse_ipv6(c, dest, src);
	else
		r = XD_PARSE_OTHER;
	return r == XD_PARSE_OK ? xd_parse_udp(c, udp) : r;
}

/* Begins the verdict on a frame: out cleared and the frame parsed down to
 * its UDP payload (as xd_parse_frame); -1 when that went well, else
 * XDP_PASS, with out noting a header cut short. */
static __always_inline int xd_frame_begin(struct xdp_md *ctx, struct xd_cursor *c,
					  struct xd_addr_key *dest, struct xd_addr_key *src,
					  struct udphdr **udp, void **l3, struct xd_outcome *out)
{
	enum xd_parse r;

	c->pos = (void *)(long)ctx->data;
	c->end = (void *)(long)ctx->data_end;
	out->note = XD_NOTE_NONE;
	out->rcode = 0;
	out->qtype = 0;
	r = xd_parse_frame(c, dest, src, udp, l3);
	if (r == XD_PARSE_OK)
		return -1;
	out->note = r == XD_PARSE_SHORT ? XD_NOTE_MALFORMED : XD_NOTE_NONE;
	return XDP_PASS;
}

/* Counts a packet's verdict (per-CPU values: XDP runs with migration
 * disabled, so plain increments are exact).  Each packet lands in exactly
 * one of redirected, answered_in_xdp, rate_limited, passed, dropped and
 * denied. */
static __always_inline int xd_count_verdict(int verdict, const struct xd_outcome *out)
{
	__u32 zero = 0;
	struct xd_prog_counters *count = bpf_map_lookup_elem(&stats, &zero);

	if (!count)
		return verdict; /* cannot happen for a one-entry array */
	count->seen++;
	if (verdict == XDP_REDIRECT)
		count->redirected++;
	else if (out->note == XD_NOTE_ANSWERED) {
		count->answered_in_xdp++;
		count->answered_in_xdp_rcode[out->rcode & (XD_ANSWER_RCODES - 1)]++;
		count->answered_in_xdp_qtype[out->qtype & (XD_QTYPE_BUCKETS - 1)]++;
	} else if (out->note == XD_NOTE_LIMITED || out->note == XD_NOTE_SLIPPED) {
		count->rate_limited++;
		count->slipped += out->note == XD_NOTE_SLIPPED;
	} else if (out->note == XD_NOTE_DENIED)
		count->denied++;
	else if (verdict == XDP_DROP)
		count->dropped++;
	else
		count->passed++;
	if (out->note == XD_NOTE_MALFORMED)
		count->malformed++;
	return verdict;
}

#endif
