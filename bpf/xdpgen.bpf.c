/*
 * xdpgen.bpf.c - the XDP program of xdpdns's load generator
 * (native/bench/xdpgen.c), on the client's interface: DNS *answers* from a
 * port the generator loads (port_actions keyed by the UDP source port) go
 * to the generator's AF_XDP socket of their rx queue; everything else goes
 * on to the kernel.  It parses frames as the server's program does
 * (xdp_frame.h) and keeps the same counters.
 */
#include "xdp_frame.h"

static __always_inline int xd_decide(struct xdp_md *ctx, struct xd_outcome *out)
{
	struct xd_addr_key dest, src;
	struct xd_cursor c;
	struct xd_config cfg;
	struct udphdr *udp;
	enum xd_parse r;
	void *l3 = NULL;
	int found, verdict;

	verdict = xd_frame_begin(ctx, &c, &dest, &src, &udp, &l3, out);
	if (verdict >= 0)
		return verdict; /* not unfragmented UDP over IP: the kernel's */
	if (xd_port_action(bpf_ntohs(udp->source), &found) != XD_ACTION_REDIRECT)
		return XDP_PASS; /* not from the server it loads */
	cfg = xd_config_read();
	if (cfg.check_dest && !xd_dest_ours(&dest))
		return XDP_PASS; /* not to the generator's address */
	r = xd_parse_dns(&c, udp, 1);
	if (r != XD_PARSE_OK) {
		out->note = r == XD_PARSE_SHORT ? XD_NOTE_MALFORMED : XD_NOTE_NONE;
		return XDP_PASS; /* not a DNS answer */
	}
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

/* Named as the server's: the loader (native/io/xdp_loader.c) finds it so. */
SEC("xdp")
int xdpdns(struct xdp_md *ctx)
{
	struct xd_outcome out;

	return xd_count_verdict(xd_decide(ctx, &out), &out);
}

char LICENSE[] SEC("license") = "GPL";
