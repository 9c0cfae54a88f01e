/*
 * xdp_loader.h - the XDP program from user space: loading, attaching through a
 * bpf_link (so it goes away with the process) or libxdp's dispatcher, and
 * its maps.  Internal to
 * the engine; not seen by cffi.
 */
#ifndef XDPDNS_XDP_PROG_H
#define XDPDNS_XDP_PROG_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/bpf.h>

#include "engine.h"
#include "io/xdp_answers.h"

struct xd_prog;

/* Where the program goes: cfg's mode and [xdp] attach. */
struct xd_prog_place {
	bool generic; /* generic (skb) mode only */
	int attach; /* XD_ATTACH_LINK or XD_ATTACH_DISPATCHER */
};

/* How it went. */
struct xd_prog_attached {
	bool native; /* driver mode, else generic */
	uint32_t prog_id; /* the kernel's id of our program */
	int stale_removed; /* dead servers' programs taken out of
					 * the dispatcher first */
};

/* Opens obj_path, sizes the XSKMAP for nqueues, loads the program (a
 * verifier rejection puts the log's last lines into err) and attaches it
 * to ifindex: driver mode first, generic mode when that fails or when
 * place->generic is set.  With a bpf_link of its own, refusing an
 * interface that has any XDP program; or into libxdp's dispatcher
 * (xdp_dispatch.h), next to the programs there. */
int xd_prog_load(const char *obj_path, int ifindex, int nqueues, const struct xd_prog_place *place,
		 struct xd_prog **out, struct xd_prog_attached *how, struct xd_error *err);
/* The kernel's id of the loaded program (0 if unknown). */
uint32_t xd_prog_id(const struct xd_prog *p);
/* Detaches (in the dispatcher: when it still may) and frees; accepts NULL. */
void xd_prog_free(struct xd_prog *p);

int xd_prog_set_port(struct xd_prog *p, uint16_t port, uint32_t action, struct xd_error *err);
/* One action per possible CPU into actions[0..max); returns that count. */
int xd_prog_port_actions(struct xd_prog *p, uint16_t port, uint32_t *actions, int max);
int xd_prog_add_address(struct xd_prog *p, int family, const uint8_t *addr, struct xd_error *err);
struct xd_acl;
/* Makes the program judge sources by acl (NULL: no check), switching from
 * the previous rule set in one store; on failure the previous one stays.
 * -EOPNOTSUPP for a program without the ACL maps, unless acl is NULL. */
int xd_prog_acl_set(struct xd_prog *p, const struct xd_acl *acl, struct xd_error *err);
/* Whether the program checks a query's checksums before it answers it
 * (the workers' verify_checksums). */
int xd_prog_set_checksums(struct xd_prog *p, bool verify, struct xd_error *err);
/* Makes the program pick one DNS query in `sample` (0: none) for its
 * worker's dnstap (XD_TAP_MARK). */
int xd_prog_set_tap_sample(struct xd_prog *p, uint32_t sample, struct xd_error *err);
/* Puts an AF_XDP socket into the XSKMAP at its queue. */
int xd_prog_set_socket(struct xd_prog *p, int queue, int xsk_fd);
struct xd_answers;
/* Whether the program has the answer table's maps. */
bool xd_prog_answers_supported(const struct xd_prog *p);
/* Empties the answer table's slots and returns once no run of the program
 * can still read the maps that were in them: from then on it answers
 * nothing itself. */
void xd_prog_answers_clear(struct xd_prog *p);
/* The maps of one table, written but not yet in the program's slots. */
struct xd_prog_table {
	int fds[XD_ANSWER_CLASSES]; /* per key size class */
	int pages;
	uint64_t bytes; /* their memory, as the kernel counts it */
};
/* Writes table t into new maps sized for it (the program answers from the
 * old ones meanwhile).  On failure nothing is left open. */
int xd_prog_answers_build(struct xd_prog *p, const struct xd_answers *t, struct xd_prog_table *out,
			  struct xd_error *err);
/* Puts built maps into the slots (emptying them first), pages first, and
 * takes their descriptors; on failure the slots stay empty. */
int xd_prog_answers_put(struct xd_prog *p, struct xd_prog_table *m, struct xd_error *err);
/* Closes built maps not put (accepts a closed one). */
void xd_prog_table_close(struct xd_prog_table *m);
/* A new map for an inner slot (n entries, at least 1): its descriptor, or
 * -errno (-E2BIG past 2^32 entries). */
int xd_prog_map_create(enum bpf_map_type type, const char *name, size_t key_size, size_t value_size,
		       uint64_t n, __u32 flags);
/* The descriptor of the program's map `name` (the program keeps it), or
 * -1 when it has none. */
int xd_prog_map_fd(struct xd_prog *p, const char *name);
/* cpu -1: summed.  Returns the number of possible CPUs or -errno. */
int xd_prog_counters(struct xd_prog *p, int cpu, struct xd_prog_stats *out);

#endif
