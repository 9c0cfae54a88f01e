// SPDX-License-Identifier: GPL-2.0
/*
 * reflector.bpf.c - the ceiling of the XDP path for bench/xdp_peers.sh: an
 * XDP program that turns every IPv4 UDP/53 packet straight around with
 * XDP_TX (MACs, addresses and ports swapped, QR set) and does nothing else.
 * No DNS server can answer faster on the same path.  Built by the bench
 * script with clang; never part of xdpdns.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define DNS_PORT 53
#define DNS_QR 0x80

SEC("xdp")
int reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	unsigned char *dns = (void *)(udp + 1);
	unsigned char mac[ETH_ALEN];
	__be32 addr;
	__be16 port;

	if ((void *)(dns + 3) > end)
		return XDP_PASS; /* too short for Ethernet/IPv4/UDP/DNS */
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    udp->dest != bpf_htons(DNS_PORT))
		return XDP_PASS; /* not a plain IPv4 UDP/53 packet */
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->check = 0; /* optional over IPv4 (RFC 768) */
	dns[2] |= DNS_QR;
	return XDP_TX; /* back out of the interface it came in on */
}

char LICENSE[] SEC("license") = "GPL";
