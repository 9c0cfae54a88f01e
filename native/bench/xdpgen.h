/*
 * xdpgen.h - the API of xdpdns's AF_XDP load generator (xdpgen.c), the
 * one header cffi reads for the generator's own extension,
 * xdpdns.bench._loadgen (native/build_loadgen.py): the server's extension
 * holds none of it.  Plain declarations, as engine.h.
 */
#ifndef XDPDNS_XDPGEN_H
#define XDPDNS_XDPGEN_H

#include <stdint.h>

#include "engine.h"

/* xdpdns's own load generator, for `xdpdns bench`: one AF_XDP socket and one
 * pinned thread per queue of the client's interface, each sending query
 * frames built from templates at its share of the rate and counting the
 * answers that come back on its queue (the generator's XDP program,
 * xdpgen.bpf.o, steers them).
 * Every queue of a veth is loaded: an AF_XDP socket transmits on its own
 * queue, and the peer receives on the queue of the same number. */
struct xd_gen_config {
	char ifname[16];
	char bpf_object[512]; /* path of the compiled xdpgen.bpf.o */
	int queues; /* 0: every queue of the NIC */
	int first_queue;
	int cpus[256]; /* queue i's thread runs on cpus[i % ncpus] */
	int ncpus; /* 0: the CPUs this process may run on */
	uint32_t frames_per_queue;
	uint32_t frame_size; /* 2048 or 4096 */
	uint32_t ring_size;
	int zerocopy; /* XD_ZEROCOPY_* */
	int generic; /* 1: generic (skb) mode only */
	int busy_poll;
	uint8_t src_mac[6];
	uint8_t dst_mac[6];
	int family; /* AF_INET or AF_INET6 */
	uint8_t src_addr[16]; /* IPv4: the first 4 bytes */
	uint8_t dst_addr[16];
	uint16_t dst_port;
	uint64_t rate; /* queries/s over all queues; 0: unlimited */
	uint32_t duration_ms; /* sending time */
	uint32_t drain_ms; /* time after it for late answers */
};

/* Latency buckets: bucket i holds answers that took [2^i, 2^(i+1))
 * microseconds (bucket 0 also those under one). */
enum {
	XD_GEN_LATENCY_BUCKETS = 24
};

/* Counters of one generator queue. */
struct xd_gen_stats {
	uint64_t sent;
	uint64_t answered; /* answers to queries it sent */
	uint64_t rcodes[16]; /* answers by RCODE */
	uint64_t truncated; /* answers with TC set */
	uint64_t unexpected; /* answers to no query in flight */
	uint64_t malformed; /* frames that were no DNS answer */
	uint64_t bad_checksum; /* answers with a wrong IPv4 or UDP
					 * checksum: not counted as answered */
	uint64_t tx_full; /* sends put off: no frame or TX room */
	uint64_t latency[XD_GEN_LATENCY_BUCKETS];
	uint64_t latency_sum_ns;
	uint64_t kernel_rx_dropped;
	uint64_t kernel_rx_ring_full;
	int cpu;
};

struct xd_gen;

/* Builds the query frames from nqueries DNS messages (queries holds them
 * back to back, lens[i] bytes each), loads and attaches the generator's XDP
 * program, opens the sockets and starts the threads, which send for
 * duration_ms and then wait drain_ms for answers. */
int xd_gen_start(const struct xd_gen_config *cfg, const uint8_t *queries, const uint32_t *lens,
		 uint32_t nqueries, struct xd_gen **out, struct xd_error *err);
/* Waits for the threads to end; 0 once they have. */
int xd_gen_wait(struct xd_gen *g);
/* Ends the sending early (the drain still runs); safe from any thread. */
void xd_gen_stop(struct xd_gen *g);
int xd_gen_queue_count(const struct xd_gen *g);
int xd_gen_queue_stats(const struct xd_gen *g, int queue, struct xd_gen_stats *out);
/* Stops and joins the threads, closes the sockets, detaches the program. */
void xd_gen_free(struct xd_gen *g);

#endif
