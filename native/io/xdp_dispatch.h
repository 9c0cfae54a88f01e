/*
 * xdp_dispatch.h - the XDP program as one of several in libxdp's
 * multi-program dispatcher ([xdp] attach = "dispatcher").  Internal to the
 * engine; not seen by cffi.
 */
#ifndef XDPDNS_XDP_DISPATCH_H
#define XDPDNS_XDP_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

struct bpf_object;
struct xdp_program;

/* Where in the dispatcher's chain xdpdns runs (libxdp: lower runs first;
 * its default, and xdp-loader's, is 50).  Early, because the program only
 * ever drops, answers or redirects UDP to its own ports and addresses and
 * passes everything else on down the chain. */
#define XD_DISPATCH_RUN_PRIO 10

/* Fails with a message naming ifname unless a writable bpffs is where
 * libxdp pins the dispatcher ($LIBXDP_BPFFS, else /sys/fs/bpf). */
int xd_dispatch_check_bpffs(const char *ifname, struct xd_error *err);

/* Takes out of ifindex's dispatcher every program called prog_name that no
 * live process holds (left by an xdpdns that died without its guard);
 * *removed counts them.  Fails with -EBUSY when a live process holds one
 * (another xdpdns serves the interface) or when a program outside any
 * dispatcher is attached. */
int xd_dispatch_clear_stale(int ifindex, const char *prog_name, int *removed, struct xd_error *err);

/* Loads prog_name of the opened (not loaded) obj as an freplace program
 * and adds it to ifindex's dispatcher, creating one if none is there: in
 * the existing dispatcher's mode, else native, else (or when generic is
 * set) generic.  Never leaves it attached outside a dispatcher: libxdp
 * falls back to that when the kernel refuses freplace, and that is an
 * error here.  On success *out is the program (its id is the one to
 * detach) and *native says which mode. */
int xd_dispatch_attach(struct bpf_object *obj, const char *prog_name, int ifindex, bool generic,
		       struct xdp_program **out, bool *native, struct xd_error *err);

/* Takes program prog_id out of ifindex's dispatcher (the dispatcher goes
 * when it was the last); 0 also when it is not there. */
int xd_dispatch_detach(int ifindex, uint32_t prog_id, struct xd_error *err);

#endif
