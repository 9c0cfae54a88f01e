/*
 * packet.c - parsing and answering frames in place.  Every read is checked
 * against the frame's length before it happens.
 */
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <string.h>

#include "wire/client.h"
#include "io/packet.h"
#include "wire/wire.h"

#define XD_VLAN_DEPTH 2 /* 802.1ad outer + 802.1Q inner */
#define XD_ETH_HLEN 14
#define XD_VLAN_HLEN 4
#define XD_IPV4_HLEN 20
#define XD_IPV6_HLEN 40
#define XD_UDP_HLEN 8
#define XD_REPLY_TTL 64

uint64_t xd_csum_add(uint64_t sum, const uint8_t *data, size_t len)
{
	size_t i = 0;

	/* 32 bits at a time into 64: no carry is lost before the fold. */
	for (; i + 4 <= len; i += 4) {
		uint32_t w;

		memcpy(&w, data + i, 4);
		sum += w;
	}
	if (i + 2 <= len) {
		uint16_t w;

		memcpy(&w, data + i, 2);
		sum += w;
		i += 2;
	}
	if (i < len) {
		uint16_t w = 0;

		memcpy(&w, data + i, 1); /* the odd byte, padded with zero */
		sum += w;
	}
	return sum;
}

uint16_t xd_csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The pseudo-header (RFC 768, RFC 8200 8.1) as a ones-complement sum over
 * native-order 16-bit words. */
static uint64_t pseudo_sum(const uint8_t *data, const struct xd_frame *f, size_t udp_len)
{
	uint64_t sum;

	if (f->ipv6)
		sum = xd_csum_add(0, data + f->l3 + 8, 32);
	else
		sum = xd_csum_add(0, data + f->l3 + 12, 8);
	sum += htons(IPPROTO_UDP);
	sum += htons((uint16_t)udp_len);
	return sum;
}

static uint64_t udp_sum(const uint8_t *data, const struct xd_frame *f, size_t udp_len)
{
	return xd_csum_add(pseudo_sum(data, f, udp_len), data + f->l4, udp_len);
}

/*
 * A sender on this host with checksum offload (a veth peer, a container)
 * leaves only the pseudo-header's sum in the field (CHECKSUM_PARTIAL) and
 * the kernel trusts it; such a packet never crossed a wire.  Accept that
 * exact value as well as a complete checksum.
 */
static bool udp_checksum_ok(const uint8_t *data, const struct xd_frame *f, size_t udp_len,
			    uint16_t check)
{
	uint16_t partial;

	if (xd_csum_fold(udp_sum(data, f, udp_len)) == 0)
		return true;
	partial = (uint16_t)~xd_csum_fold(pseudo_sum(data, f, udp_len));
	return htons(check) == partial;
}

static int parse_ipv4(const uint8_t *data, size_t len, bool verify, struct xd_frame *f)
{
	const uint8_t *ip = data + f->l3;
	size_t ihl, total;

	if (len < (size_t)f->l3 + XD_IPV4_HLEN || (ip[0] >> 4) != 4)
		return XD_FRAME_MALFORMED;
	ihl = (size_t)(ip[0] & 0xf) * 4;
	total = xd_get16(ip + 2);
	if (ihl < XD_IPV4_HLEN || total < ihl + XD_UDP_HLEN || f->l3 + total > len ||
	    ip[9] != IPPROTO_UDP || (xd_get16(ip + 6) & 0x3fff))
		return XD_FRAME_MALFORMED; /* fragments are the kernel's */
	if (verify && xd_csum_fold(xd_csum_add(0, ip, ihl)) != 0)
		return XD_FRAME_BAD_CHECKSUM;
	f->l4 = f->l3 + ihl;
	f->ipv6 = false;
	return XD_FRAME_OK;
}

static int parse_ipv6(const uint8_t *data, size_t len, struct xd_frame *f)
{
	const uint8_t *ip = data + f->l3;

	if (len < (size_t)f->l3 + XD_IPV6_HLEN || (ip[0] >> 4) != 6 || ip[6] != IPPROTO_UDP ||
	    f->l3 + XD_IPV6_HLEN + (size_t)xd_get16(ip + 4) > len)
		return XD_FRAME_MALFORMED; /* extension headers are the kernel's */
	f->l4 = f->l3 + XD_IPV6_HLEN;
	f->ipv6 = true;
	return XD_FRAME_OK;
}

static int parse_udp(const uint8_t *data, size_t len, bool verify, struct xd_frame *f)
{
	const uint8_t *udp = data + f->l4;
	size_t ulen;
	uint16_t check;

	if (len < (size_t)f->l4 + XD_UDP_HLEN)
		return XD_FRAME_MALFORMED;
	ulen = xd_get16(udp + 4);
	if (ulen < XD_UDP_HLEN + XD_DNS_HEADER_LEN || f->l4 + ulen > len)
		return XD_FRAME_MALFORMED;
	check = xd_get16(udp + 6);
	if (verify && (check != 0 || f->ipv6)) {
		/* RFC 8200 8.1: a zero checksum is not allowed over IPv6. */
		if (check == 0 || !udp_checksum_ok(data, f, ulen, check))
			return XD_FRAME_BAD_CHECKSUM;
	}
	f->payload = f->l4 + XD_UDP_HLEN;
	f->payload_len = ulen - XD_UDP_HLEN;
	return XD_FRAME_OK;
}

int xd_frame_parse(const uint8_t *data, size_t len, bool verify, struct xd_frame *f)
{
	size_t off = XD_ETH_HLEN;
	uint16_t proto;
	int rc;

	if (len < XD_ETH_HLEN || len > UINT16_MAX)
		return XD_FRAME_MALFORMED;
	proto = xd_get16(data + 12);
	for (int i = 0; i < XD_VLAN_DEPTH && (proto == ETH_P_8021Q || proto == ETH_P_8021AD); i++) {
		if (len < off + XD_VLAN_HLEN)
			return XD_FRAME_MALFORMED;
		proto = xd_get16(data + off + 2);
		off += XD_VLAN_HLEN;
	}
	f->l3 = off;
	if (proto == ETH_P_IP)
		rc = parse_ipv4(data, len, verify, f);
	else if (proto == ETH_P_IPV6)
		rc = parse_ipv6(data, len, f);
	else
		rc = XD_FRAME_MALFORMED;
	return rc ? rc : parse_udp(data, len, verify, f);
}

void xd_frame_source(const uint8_t *data, const struct xd_frame *f, struct xd_client *client)
{
	/* xd_frame_parse checked that the whole IP header is there. */
	if (f->ipv6)
		xd_client_set(client, AF_INET6, data + f->l3 + 8);
	else
		xd_client_set(client, AF_INET, data + f->l3 + 12);
}

/* Sums are over native-order words, so the folded value is stored as is. */
static void store_csum(uint8_t *at, uint16_t csum)
{
	memcpy(at, &csum, sizeof(csum));
}

static void swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
	uint8_t tmp[16];

	memcpy(tmp, a, n);
	memcpy(a, b, n);
	memcpy(b, tmp, n);
}

size_t xd_frame_reply(uint8_t *data, const struct xd_frame *f, size_t resp_len)
{
	size_t udp_len = XD_UDP_HLEN + resp_len;
	uint8_t *ip = data + f->l3;
	struct xd_frame out = *f;
	uint16_t check;
	uint8_t *udp;

	swap_bytes(data, data + 6, 6);
	if (f->ipv6) {
		swap_bytes(ip + 8, ip + 24, 16);
		xd_put16(ip + 4, udp_len);
		ip[7] = XD_REPLY_TTL;
		udp = ip + XD_IPV6_HLEN;
	} else {
		/* The caller wrote the response after a 20-byte header: any
		 * options of the query are gone. */
		ip[0] = 0x45;
		ip[1] = 0;
		xd_put16(ip + 2, XD_IPV4_HLEN + udp_len);
		xd_put16(ip + 4, 0); /* ID: unfragmented, RFC 6864 4.1 */
		xd_put16(ip + 6, 0x4000); /* DF */
		ip[8] = XD_REPLY_TTL;
		swap_bytes(ip + 12, ip + 16, 4);
		xd_put16(ip + 10, 0);
		store_csum(ip + 10, xd_csum_fold(xd_csum_add(0, ip, XD_IPV4_HLEN)));
		udp = ip + XD_IPV4_HLEN;
	}
	swap_bytes(udp, udp + 2, 2);
	xd_put16(udp + 4, udp_len);
	xd_put16(udp + 6, 0);
	out.l4 = udp - data;
	check = xd_csum_fold(udp_sum(data, &out, udp_len));
	/* RFC 768: a computed zero is sent as all ones. */
	store_csum(udp + 6, check ? check : 0xffff);
	return (size_t)(udp - data) + udp_len;
}
