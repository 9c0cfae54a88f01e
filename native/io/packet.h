/*
 * packet.h - the frames of XDP mode: finding the DNS message inside an
 * Ethernet/IP/UDP frame, verifying its checksums, and turning the frame into
 * the response in place (addresses and ports swapped, lengths and checksums
 * recomputed).
 */
#ifndef XDPDNS_PACKET_H
#define XDPDNS_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Where the parts of a parsed frame are (offsets from the frame's start). */
struct xd_frame {
	uint16_t l3; /* IP header */
	uint16_t l4; /* UDP header */
	uint16_t payload; /* DNS message */
	uint16_t payload_len;
	bool ipv6;
};

enum {
	XD_FRAME_OK = 0,
	XD_FRAME_MALFORMED = -1, /* not Ethernet/IP/UDP as we take it */
	XD_FRAME_BAD_CHECKSUM = -2,
};

/* Parses a frame the XDP program redirected; with verify, the IPv4 header
 * checksum and the UDP checksum must be right. */
int xd_frame_parse(const uint8_t *data, size_t len, bool verify, struct xd_frame *f);

/* The query's source address (who gets the answer, and whose address a
 * DNS cookie is made for). */
void xd_frame_source(const uint8_t *data, const struct xd_frame *f, struct xd_client *client);

/* Rewrites the headers of a parsed frame whose payload has been replaced by
 * a response of resp_len bytes written at data + f->l4 + 8; returns the
 * frame's new length.  IPv4 options are dropped. */
size_t xd_frame_reply(uint8_t *data, const struct xd_frame *f, size_t resp_len);

/* Internet checksum helpers (RFC 1071), exposed for tests. */
uint16_t xd_csum_fold(uint64_t sum);
uint64_t xd_csum_add(uint64_t sum, const uint8_t *data, size_t len);

#endif
