/*
 * xdp_neighbour.bpf.c - another XDP program to share an interface with
 * xdpdns in libxdp's dispatcher (tests/test_xdp_dispatcher.py), compiled by
 * the test with clang.  With -DDROP_PORT=N it drops UDP to port N (so a
 * test can see that it runs after xdpdns passed the packet on) and passes
 * the rest; without, it passes everything.  BTF (-g) is what lets libxdp
 * load it as an freplace program.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))

#ifdef DROP_PORT
SEC("xdp")
int xdp_drop_port(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;

	if ((void *)(ip + 1) > end || eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return XDP_PASS;	/* IPv4 only: enough for the test */
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;	/* no options, UDP only */
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;	/* too short to be ours */
	if (udp->dest == __builtin_bswap16(DROP_PORT))
		return XDP_DROP;	/* the port this program is for */
	return XDP_PASS;	/* everything else */
}
#else
SEC("xdp")
int xdp_pass_all(struct xdp_md *ctx)
{
	return XDP_PASS;	/* a neighbour that takes nothing */
}
#endif

char LICENSE[] SEC("license") = "GPL";
