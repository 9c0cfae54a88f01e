/*
 * xdp_loader.c - the XDP program (bpf/xdpdns.bpf.c) from user space: load it,
 * attach it through a bpf_link or libxdp's dispatcher, and read and write
 * its maps.
 *
 * By default the program is attached with a bpf_link owned by this
 * process, never a plain netlink attachment: when the process dies,
 * however it dies, the kernel closes the link's file descriptor and the
 * program is gone, so no dead server is left steering DNS into sockets
 * nobody reads.  In libxdp's dispatcher (xdp_dispatch.c) it shares the
 * interface with other programs, and is pinned instead: see there.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/if_link.h>
#include <linux/membarrier.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>

#include "error.h"
#include "wire/prefixes.h"
#include "io/xdp_answers.h"
#include "io/xdp_dispatch.h"
#include "io/xdp_loader.h"
#include "xdpdns_maps.h"

/* The kernel keeps the tail of the verifier log when it does not fit (its
 * log is rotating since 6.4), and the tail is where the reason is. */
#define XD_VERIFIER_LOG_SIZE (1024 * 1024)
/* How much of the verifier log goes into an error message. */
#define XD_VERIFIER_LOG_LINES 10
#define XD_PROG_NAME "xdpdns"

struct xd_prog {
	struct bpf_object *obj;
	int link_fd; /* attach = link */
	struct xdp_program *xprog; /* attach = dispatcher */
	int ifindex;
	int port_actions_fd;
	int dest_addrs_fd;
	int config_fd;
	int stats_fd;
	int xsks_fd;
	int acl_v4_fd; /* -1: a program without the source ACL */
	int acl_v6_fd;
	/* The answer table's slots (ARRAY_OF_MAPS), -1: a program without
	 * one; and the inner maps in them now, -1: none. */
	int answers_outer_fd[XD_ANSWER_CLASSES];
	int pages_outer_fd;
	struct xd_prog_table installed;
	/* What the config map holds: written whole, so that each writer
	 * keeps the other's field. */
	struct xd_config config;
};

/* ---- per-CPU values: the only place that knows their layout ------------- */

/*
 * For BPF_MAP_TYPE_PERCPU_{HASH,ARRAY} the kernel copies one slot of
 * round_up(value_size, 8) bytes per *possible* CPU (not online, not
 * configured) on every lookup and update; a smaller buffer is silently
 * overrun.  A buffer of that layout is allocated here, and only here.
 */
struct xd_percpu {
	void *buf;
	size_t slot;
	int ncpus;
};

static int xd_percpu_alloc(struct xd_percpu *pc, size_t value_size)
{
	pc->ncpus = libbpf_num_possible_cpus();
	if (pc->ncpus < 0)
		return pc->ncpus;
	pc->slot = (value_size + 7) & ~(size_t)7;
	pc->buf = calloc((size_t)pc->ncpus, pc->slot);
	return pc->buf ? 0 : -ENOMEM;
}

static void *xd_percpu_slot(const struct xd_percpu *pc, int cpu)
{
	return (char *)pc->buf + (size_t)cpu * pc->slot;
}

static void xd_percpu_free(struct xd_percpu *pc)
{
	free(pc->buf);
	pc->buf = NULL;
}

/* ---- loading: libbpf's messages and the verifier's log, never printed --- */

/* libbpf reports through a process-wide print callback (and prints to
 * stderr by default); while we load, it goes to this thread's buffer. */
static __thread char xd_libbpf_last[256];
#define XD_LIBBPF_PREFIX "libbpf: "

/* What went wrong while loading: libbpf's own words when it had some. */
static const char *xd_libbpf_reason(int rc)
{
	return xd_libbpf_last[0] ? xd_libbpf_last : strerror(-rc);
}

/* libbpf's own codes (LIBBPF_ERRNO__FORMAT and the like, from 4000 up)
 * are no errno: they become EINVAL, so there is one error space. */
static int xd_libbpf_errno(int rc)
{
	return rc <= -__LIBBPF_ERRNO__START ? -EINVAL : rc;
}

static int xd_libbpf_capture(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t n;

	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(xd_libbpf_last, sizeof(xd_libbpf_last), fmt, ap);
	n = strlen(XD_LIBBPF_PREFIX);
	if (!strncmp(xd_libbpf_last, XD_LIBBPF_PREFIX, n))
		memmove(xd_libbpf_last, xd_libbpf_last + n, strlen(xd_libbpf_last + n) + 1);
	n = strlen(xd_libbpf_last);
	while (n > 0 && xd_libbpf_last[n - 1] == '\n')
		xd_libbpf_last[--n] = '\0';
	return 0;
}

/* The start of the last `lines` lines of log, fewer when they would not fit
 * in `room` bytes (verifier lines with register state run to hundreds of
 * bytes): the last lines say why the program was rejected. */
static const char *xd_log_tail(const char *log, int lines, size_t room)
{
	const char *end = log + strlen(log);
	const char *p = end, *start = end;

	while (p > log && (p[-1] == '\n' || p[-1] == ' '))
		p--;
	end = p;
	while (lines > 0 && p > log) {
		p--;
		if (p == log || p[-1] == '\n') {
			if ((size_t)(end - p) > room)
				break;
			start = p;
			lines--;
		}
	}
	if (start == end && (size_t)(end - log) > room)
		start = end - room; /* one line longer than the room: its end */
	else if (start == end)
		start = log;
	return start;
}

/* err = prefix + the verifier log's last lines, as many as fit. */
static int xd_prog_verifier_error(struct xd_error *err, int rc, const char *obj_path,
				  const char *log)
{
	size_t used;

	if (!err)
		return rc;
	snprintf(err->message, sizeof(err->message),
		 "the kernel's verifier rejected the XDP program %s (%s):\n", obj_path,
		 strerror(-rc));
	used = strlen(err->message);
	snprintf(err->message + used, sizeof(err->message) - used, "%s",
		 xd_log_tail(log, XD_VERIFIER_LOG_LINES, sizeof(err->message) - used - 1));
	return rc;
}

static int xd_prog_find_fds(struct xd_prog *p, struct xd_error *err)
{
	static const struct {
		const char *name;
		size_t offset;
	} maps[] = {
		{ "port_actions", offsetof(struct xd_prog, port_actions_fd) },
		{ "dest_addrs", offsetof(struct xd_prog, dest_addrs_fd) },
		{ "config", offsetof(struct xd_prog, config_fd) },
		{ "stats", offsetof(struct xd_prog, stats_fd) },
		{ "xsks", offsetof(struct xd_prog, xsks_fd) },
	};
	size_t i;
	int fd;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		fd = bpf_object__find_map_fd_by_name(p->obj, maps[i].name);
		if (fd < 0)
			return xd_errorf(err, -ENOENT, "the XDP program has no map '%s'",
					 maps[i].name);
		*(int *)((char *)p + maps[i].offset) = fd;
	}
	/* Optional: the load generator's program (xdpgen.bpf.c) and programs
	 * of older versions have no ACL; xd_prog_acl_set says so if asked. */
	p->acl_v4_fd = bpf_object__find_map_fd_by_name(p->obj, "acl_v4");
	p->acl_v6_fd = bpf_object__find_map_fd_by_name(p->obj, "acl_v6");
	if (p->acl_v4_fd < 0 || p->acl_v6_fd < 0)
		p->acl_v4_fd = p->acl_v6_fd = -1;
	/* Optional too: xd_prog_answers_build says so if asked. */
	for (i = 0; i < XD_ANSWER_CLASSES; i++) {
		static const char *const names[XD_ANSWER_CLASSES] = {
			"answers_32",
			"answers_64",
			"answers_128",
			"answers_256",
		};

		p->answers_outer_fd[i] = bpf_object__find_map_fd_by_name(p->obj, names[i]);
	}
	p->pages_outer_fd = bpf_object__find_map_fd_by_name(p->obj, "answer_pages");
	return 0;
}

/* The kernel load: by libbpf for a bpf_link of our own, or by libxdp as
 * the freplace program that joins the dispatcher (attaching it too). */
static int xd_prog_load_object(struct xd_prog *p, const struct xd_prog_place *place,
			       struct xd_prog_attached *how, struct xd_error *err)
{
	if (place->attach == XD_ATTACH_DISPATCHER)
		return xd_dispatch_attach(p->obj, XD_PROG_NAME, p->ifindex, place->generic,
					  &p->xprog, &how->native, err);
	return xd_libbpf_errno(bpf_object__load(p->obj));
}

/* Opens and loads the object with the XSKMAP sized for nqueues. */
static int xd_prog_open_load(struct xd_prog *p, const char *obj_path, int nqueues,
			     const struct xd_prog_place *place, struct xd_prog_attached *how,
			     struct xd_error *err)
{
	libbpf_print_fn_t old_print;
	struct bpf_map *xsks;
	char *log;
	int rc;

	log = calloc(1, XD_VERIFIER_LOG_SIZE);
	if (!log)
		return xd_errorf(err, -ENOMEM, "out of memory");
	LIBBPF_OPTS(bpf_object_open_opts, opts, .kernel_log_buf = log,
		    .kernel_log_size = XD_VERIFIER_LOG_SIZE);

	xd_libbpf_last[0] = '\0';
	old_print = libbpf_set_print(xd_libbpf_capture);
	p->obj = bpf_object__open_file(obj_path, &opts);
	if (!p->obj) {
		rc = xd_libbpf_errno(-errno);
		xd_errorf(err, rc, "cannot open the XDP program %s: %s", obj_path,
			  xd_libbpf_reason(rc));
		goto out_print;
	}
	xsks = bpf_object__find_map_by_name(p->obj, "xsks");
	if (!xsks) {
		rc = xd_errorf(err, -ENOENT, "%s has no map 'xsks'", obj_path);
		goto out_print;
	}
	rc = bpf_map__set_max_entries(xsks, (__u32)nqueues);
	if (rc < 0) {
		xd_errorf(err, rc, "cannot size the XSKMAP: %s", strerror(-rc));
		goto out_print;
	}
	rc = xd_prog_load_object(p, place, how, err);
	if (rc < 0 && log[0])
		xd_prog_verifier_error(err, rc, obj_path, log);
	else if (rc < 0 && place->attach != XD_ATTACH_DISPATCHER)
		xd_errorf(err, rc, "cannot load the XDP program %s: %s", obj_path,
			  xd_libbpf_reason(rc));
out_print:
	libbpf_set_print(old_print);
	free(log);
	return rc;
}

static void xd_prog_detach(struct xd_prog *p);

/* ---- attaching ------------------------------------------------------------ */

/* Fails when any XDP program is on the interface: we neither replace one
 * nor share the hook with it. */
static int xd_prog_check_free(int ifindex, struct xd_error *err)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	__u32 id;
	int rc;

	rc = bpf_xdp_query(ifindex, 0, &q);
	if (rc < 0)
		return xd_errorf(err, rc, "cannot query XDP on interface %d: %s", ifindex,
				 strerror(-rc));
	if (q.attach_mode == XDP_ATTACHED_NONE)
		return 0;
	id = q.prog_id	   ? q.prog_id :
	     q.drv_prog_id ? q.drv_prog_id :
	     q.skb_prog_id ? q.skb_prog_id :
			     q.hw_prog_id;
	return xd_errorf(
		err, -EBUSY,
		"an XDP program (id %u) is already attached to interface %d; "
		"xdpdns will not replace it (detach it first: ip link set dev IFACE xdp off)",
		id, ifindex);
}

static int xd_prog_link(int prog_fd, int ifindex, __u32 mode)
{
	LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = mode);
	int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);

	return fd < 0 ? -errno : fd;
}

/* Driver mode first, generic (skb) mode when that fails or is asked for.
 * On success in generic mode after a driver-mode failure, err says why. */
static int xd_prog_attach(struct xd_prog *p, bool generic, bool *native, struct xd_error *err)
{
	struct bpf_program *prog;
	int prog_fd, fd, drv_rc = 0;

	prog = bpf_object__find_program_by_name(p->obj, XD_PROG_NAME);
	if (!prog)
		return xd_errorf(err, -ENOENT, "the XDP object has no program '%s'", XD_PROG_NAME);
	prog_fd = bpf_program__fd(prog);
	if (!generic) {
		fd = xd_prog_link(prog_fd, p->ifindex, XDP_FLAGS_DRV_MODE);
		if (fd >= 0) {
			p->link_fd = fd;
			*native = true;
			return 0;
		}
		drv_rc = fd;
	}
	fd = xd_prog_link(prog_fd, p->ifindex, XDP_FLAGS_SKB_MODE);
	if (fd < 0) {
		if (drv_rc)
			return xd_errorf(err, fd,
					 "cannot attach XDP to interface %d: "
					 "driver mode: %s; generic mode: %s",
					 p->ifindex, strerror(-drv_rc), strerror(-fd));
		return xd_errorf(err, fd, "cannot attach XDP to interface %d in generic mode: %s",
				 p->ifindex, strerror(-fd));
	}
	if (drv_rc)
		xd_errorf(err, 0, "driver-mode XDP failed (%s): generic mode", strerror(-drv_rc));
	p->link_fd = fd;
	*native = false;
	return 0;
}

/* Dispatcher mode: a bpffs for libxdp's pins, and the dispatcher cleared
 * of what a dead server left; then the load attaches. */
static int xd_prog_dispatch_prepare(struct xd_prog *p, struct xd_prog_attached *how,
				    struct xd_error *err)
{
	char ifname[IF_NAMESIZE];
	int rc;

	if (!if_indextoname((unsigned)p->ifindex, ifname))
		return xd_errorf(err, -ENODEV, "no interface index %d", p->ifindex);
	rc = xd_dispatch_check_bpffs(ifname, err);
	if (rc == 0)
		rc = xd_dispatch_clear_stale(p->ifindex, XD_PROG_NAME, &how->stale_removed, err);
	return rc;
}

int xd_prog_load(const char *obj_path, int ifindex, int nqueues, const struct xd_prog_place *place,
		 struct xd_prog **out, struct xd_prog_attached *how, struct xd_error *err)
{
	struct xd_prog *p;
	int rc;

	*out = NULL;
	memset(how, 0, sizeof(*how));
	if (ifindex <= 0)
		return xd_errorf(err, -ENODEV, "no interface index %d", ifindex);
	if (nqueues < 1 || nqueues > XD_XSKS_MAX)
		return xd_errorf(err, -EINVAL, "XSKMAP of %d queues: expected 1 to %d", nqueues,
				 XD_XSKS_MAX);
	p = calloc(1, sizeof(*p));
	if (!p)
		return xd_errorf(err, -ENOMEM, "out of memory");
	p->ifindex = ifindex;
	p->link_fd = -1;
	p->installed.pages = -1;
	for (int i = 0; i < XD_ANSWER_CLASSES; i++)
		p->installed.fds[i] = -1;

	if (place->attach == XD_ATTACH_DISPATCHER)
		rc = xd_prog_dispatch_prepare(p, how, err);
	else
		rc = xd_prog_check_free(ifindex, err);
	if (rc < 0)
		goto out_free;
	rc = xd_prog_open_load(p, obj_path, nqueues, place, how, err);
	if (rc < 0)
		goto out_object;
	rc = xd_prog_find_fds(p, err);
	if (rc < 0)
		goto out_detach;
	if (place->attach != XD_ATTACH_DISPATCHER) {
		rc = xd_prog_attach(p, place->generic, &how->native, err);
		if (rc < 0)
			goto out_object;
	}
	how->prog_id = xd_prog_id(p);
	*out = p;
	return 0;

out_detach:
	xd_prog_detach(p);
out_object:
	bpf_object__close(p->obj);
out_free:
	free(p);
	return rc;
}

uint32_t xd_prog_id(const struct xd_prog *p)
{
	const struct bpf_program *prog;
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	if (p->xprog)
		return xdp_program__id(p->xprog);
	prog = bpf_object__find_program_by_name(p->obj, XD_PROG_NAME);
	memset(&info, 0, sizeof(info));
	if (!prog || bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) < 0)
		return 0;
	return info.id;
}

/* Takes the program off the interface.  In the dispatcher that needs the
 * bpffs and CAP_SYS_ADMIN (libxdp opens the dispatcher by id): once the
 * server has become its user this fails, and its guard does it instead. */
static void xd_prog_detach(struct xd_prog *p)
{
	if (p->link_fd >= 0)
		close(p->link_fd); /* the last reference: detaches */
	p->link_fd = -1;
	if (p->xprog) {
		xd_dispatch_detach(p->ifindex, xdp_program__id(p->xprog), NULL);
		xdp_program__close(p->xprog);
		p->xprog = NULL;
	}
}

void xd_prog_free(struct xd_prog *p)
{
	if (!p)
		return;
	xd_prog_detach(p);
	xd_prog_table_close(&p->installed);
	bpf_object__close(p->obj);
	free(p);
}

/* ---- maps ------------------------------------------------------------------ */

int xd_prog_map_fd(struct xd_prog *p, const char *name)
{
	int fd = bpf_object__find_map_fd_by_name(p->obj, name);

	return fd < 0 ? -1 : fd;
}

int xd_prog_set_port(struct xd_prog *p, uint16_t port, uint32_t action, struct xd_error *err)
{
	struct xd_port_key key = { .port = port };
	struct xd_percpu pc;
	int cpu, rc;

	if (action > XD_ACTION_DROP)
		return xd_errorf(err, -EINVAL, "port %u: no action %u", port, action);
	rc = xd_percpu_alloc(&pc, sizeof(struct xd_port_value));
	if (rc < 0)
		return xd_errorf(err, rc, "per-CPU value: %s", strerror(-rc));
	for (cpu = 0; cpu < pc.ncpus; cpu++)
		((struct xd_port_value *)xd_percpu_slot(&pc, cpu))->action = action;
	rc = bpf_map_update_elem(p->port_actions_fd, &key, pc.buf, BPF_ANY);
	if (rc < 0)
		xd_errorf(err, rc, "port %u: cannot set its action: %s%s", port, strerror(-rc),
			  rc == -E2BIG ? " (too many ports, XD_PORT_ACTIONS_MAX)" : "");
	xd_percpu_free(&pc);
	return rc;
}

int xd_prog_port_actions(struct xd_prog *p, uint16_t port, uint32_t *actions, int max)
{
	struct xd_port_key key = { .port = port };
	struct xd_percpu pc;
	int cpu, rc;

	rc = xd_percpu_alloc(&pc, sizeof(struct xd_port_value));
	if (rc < 0)
		return rc;
	rc = bpf_map_lookup_elem(p->port_actions_fd, &key, pc.buf);
	if (rc == 0) {
		for (cpu = 0; cpu < pc.ncpus && cpu < max; cpu++)
			actions[cpu] = ((struct xd_port_value *)xd_percpu_slot(&pc, cpu))->action;
		rc = pc.ncpus;
	}
	xd_percpu_free(&pc);
	return rc;
}

/* Writes the config entry whole (each writer changes its own field of a
 * copy of p->config) and keeps it as p->config once the kernel has it. */
static int config_write(struct xd_prog *p, const struct xd_config *cfg)
{
	__u32 zero = 0;
	int rc = bpf_map_update_elem(p->config_fd, &zero, cfg, BPF_ANY);

	if (rc == 0)
		p->config = *cfg;
	return rc;
}

int xd_prog_add_address(struct xd_prog *p, int family, const uint8_t *addr, struct xd_error *err)
{
	struct xd_addr_key key;
	struct xd_addr_value value = { .present = 1 };
	struct xd_config cfg = p->config;
	int rc;

	memset(&key, 0, sizeof(key));
	key.family = (__u32)family;
	if (family == AF_INET)
		memcpy(key.addr, addr, 4);
	else if (family == AF_INET6)
		memcpy(key.addr, addr, 16);
	else
		return xd_errorf(err, -EAFNOSUPPORT,
				 "address family %d: expected "
				 "AF_INET or AF_INET6",
				 family);
	rc = bpf_map_update_elem(p->dest_addrs_fd, &key, &value, BPF_ANY);
	if (rc < 0)
		return xd_errorf(err, rc, "cannot add an address: %s%s", strerror(-rc),
				 rc == -E2BIG ? " (too many addresses, XD_DEST_ADDRS_MAX)" : "");
	/* The first address turns the check on: with none, every
	 * destination is ours. */
	cfg.check_dest = 1;
	rc = config_write(p, &cfg);
	if (rc < 0)
		return xd_errorf(err, rc, "cannot turn the address check on: %s", strerror(-rc));
	return 0;
}

/* config_write, with a failure in words: what the program was to do. */
static int config_set(struct xd_prog *p, const struct xd_config *cfg, const char *what,
		      struct xd_error *err)
{
	int rc = config_write(p, cfg);

	return rc < 0 ? xd_errorf(err, rc, "cannot set the program's %s: %s", what, strerror(-rc)) :
			0;
}

int xd_prog_set_checksums(struct xd_prog *p, bool verify, struct xd_error *err)
{
	struct xd_config cfg = p->config;

	cfg.verify_checksums = verify;
	return config_set(p, &cfg, "checksum check", err);
}

int xd_prog_set_tap_sample(struct xd_prog *p, uint32_t sample, struct xd_error *err)
{
	struct xd_config cfg = p->config;

	cfg.tap_sample = sample;
	return config_set(p, &cfg, "dnstap sampling", err);
}

int xd_prog_set_socket(struct xd_prog *p, int queue, int xsk_fd)
{
	__u32 key = (__u32)queue;
	__u32 fd = (__u32)xsk_fd;

	return bpf_map_update_elem(p->xsks_fd, &key, &fd, BPF_ANY);
}

static void xd_prog_stats_add(struct xd_prog_stats *out, const struct xd_prog_counters *c)
{
	out->seen += c->seen;
	out->redirected += c->redirected;
	out->passed += c->passed;
	out->dropped += c->dropped;
	out->malformed += c->malformed;
	out->denied += c->denied;
	out->answered_in_xdp += c->answered_in_xdp;
	for (int i = 0; i < XD_ANSWER_RCODES; i++)
		out->answered_in_xdp_rcode[i] += c->answered_in_xdp_rcode[i];
	out->rate_limited += c->rate_limited;
	out->slipped += c->slipped;
	for (int i = 0; i < XD_QTYPE_BUCKETS; i++)
		out->answered_in_xdp_qtype[i] += c->answered_in_xdp_qtype[i];
}

int xd_prog_counters(struct xd_prog *p, int cpu, struct xd_prog_stats *out)
{
	struct xd_percpu pc;
	__u32 zero = 0;
	int i, rc;

	memset(out, 0, sizeof(*out));
	rc = xd_percpu_alloc(&pc, sizeof(struct xd_prog_counters));
	if (rc < 0)
		return rc;
	if (cpu < -1 || cpu >= pc.ncpus) {
		rc = -EINVAL;
		goto out_free;
	}
	rc = bpf_map_lookup_elem(p->stats_fd, &zero, pc.buf);
	if (rc < 0)
		goto out_free;
	for (i = 0; i < pc.ncpus; i++)
		if (cpu == -1 || cpu == i)
			xd_prog_stats_add(out, xd_percpu_slot(&pc, i));
	rc = pc.ncpus;
out_free:
	xd_percpu_free(&pc);
	return rc;
}

/* ---- the source ACL ------------------------------------------------------------ */

/*
 * A rule set lives under its generation (struct xd_acl_v4_key): the next
 * one is written beside the current one, config.acl_generation flips to it
 * in one store (the program reads it once per packet), and then every
 * entry of another generation is deleted.  A packet is judged by the old
 * rules or by the new, never by a mixture; and a failure before the flip
 * leaves the old rules in force.
 */

static __u32 acl_next_generation(__u32 generation)
{
	return generation + 1 ? generation + 1 : 1; /* 0 means "no ACL" */
}

static int acl_put(struct xd_prog *p, int family, __u32 generation, const uint8_t *addr,
		   unsigned prefix_len, __u32 action)
{
	struct xd_acl_value value = { .action = action };

	if (family == AF_INET) {
		struct xd_acl_v4_key key = {
			.prefixlen = XD_ACL_GENERATION_BITS + prefix_len,
			.generation = generation,
		};

		memcpy(key.addr, addr, sizeof(key.addr));
		return bpf_map_update_elem(p->acl_v4_fd, &key, &value, BPF_ANY);
	}
	struct xd_acl_v6_key key = {
		.prefixlen = XD_ACL_GENERATION_BITS + prefix_len,
		.generation = generation,
	};

	memcpy(key.addr, addr, sizeof(key.addr));
	return bpf_map_update_elem(p->acl_v6_fd, &key, &value, BPF_ANY);
}

static int acl_put_table(struct xd_prog *p, int family, __u32 generation,
			 const struct xd_acl_table *t)
{
	int rc;

	for (uint32_t i = 0; i < t->n; i++) {
		rc = acl_put(p, family, generation, t->entries[i].addr, t->entries[i].prefix_len,
			     t->entries[i].action);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The default is the generation's /0 (written first, so that an explicit
 * 0.0.0.0/0 or ::/0 rule replaces it, as it does in socket mode). */
static int acl_put_all(struct xd_prog *p, __u32 generation, const struct xd_acl *acl)
{
	static const uint8_t any[16];
	int rc;

	if (acl->default_action == XD_ACL_DENY) {
		rc = acl_put(p, AF_INET, generation, any, 0, XD_ACL_DENY);
		if (rc == 0)
			rc = acl_put(p, AF_INET6, generation, any, 0, XD_ACL_DENY);
		if (rc < 0)
			return rc;
	}
	rc = acl_put_table(p, AF_INET, generation, &acl->v4);
	return rc < 0 ? rc : acl_put_table(p, AF_INET6, generation, &acl->v6);
}

_Static_assert(offsetof(struct xd_acl_v4_key, generation) ==
		       offsetof(struct xd_acl_v6_key, generation),
	       "acl_sweep reads the generation of either key at one offset");

/* Deletes every entry of the LPM trie fd whose generation is not `keep`.
 * The keys are collected first: deleting while iterating would restart
 * the walk from the first key. */
static int acl_sweep(int fd, size_t key_size, __u32 keep)
{
	uint8_t key[sizeof(struct xd_acl_v6_key)], next[sizeof(struct xd_acl_v6_key)];
	size_t n = 0, cap = 0;
	uint8_t *doomed = NULL, *grown;
	void *prev = NULL;
	__u32 generation;
	int rc;

	while ((rc = bpf_map_get_next_key(fd, prev, next)) == 0) {
		memcpy(&generation, next + offsetof(struct xd_acl_v4_key, generation),
		       sizeof(generation));
		if (generation != keep) {
			if (n == cap) {
				cap = cap ? 2 * cap : 256;
				grown = realloc(doomed, cap * key_size);
				if (!grown) {
					rc = -ENOMEM;
					goto out_free;
				}
				doomed = grown;
			}
			memcpy(doomed + n++ * key_size, next, key_size);
		}
		memcpy(key, next, key_size);
		prev = key;
	}
	if (rc != -ENOENT)
		goto out_free; /* -ENOENT: past the last key */
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = bpf_map_delete_elem(fd, doomed + i * key_size);
		if (rc == -ENOENT)
			rc = 0;
	}
out_free:
	free(doomed);
	return rc;
}

static int acl_sweep_all(struct xd_prog *p, __u32 keep)
{
	int rc = acl_sweep(p->acl_v4_fd, sizeof(struct xd_acl_v4_key), keep);
	int rc6 = acl_sweep(p->acl_v6_fd, sizeof(struct xd_acl_v6_key), keep);

	return rc < 0 ? rc : rc6;
}

static int acl_flip(struct xd_prog *p, __u32 generation)
{
	struct xd_config cfg = p->config;

	cfg.acl_generation = generation;
	return config_write(p, &cfg);
}

int xd_prog_acl_set(struct xd_prog *p, const struct xd_acl *acl, struct xd_error *err)
{
	__u32 old = p->config.acl_generation;
	__u32 generation = acl ? acl_next_generation(old) : 0;
	int rc;

	if (p->acl_v4_fd < 0)
		return acl ? xd_errorf(err, -EOPNOTSUPP,
				       "the XDP program has no source "
				       "ACL maps (acl_v4, acl_v6): build it from this "
				       "version's bpf/xdpdns.bpf.c") :
			     0;
	rc = acl ? acl_put_all(p, generation, acl) : 0;
	if (rc == 0)
		rc = acl_flip(p, generation);
	if (rc < 0) {
		acl_sweep_all(p, old); /* what was written of the new set */
		return xd_errorf(err, rc,
				 "cannot put the source ACL into the XDP program: "
				 "%s%s",
				 strerror(-rc),
				 rc == -ENOSPC || rc == -E2BIG ?
					 " (too many prefixes, XD_ACL_ENTRIES_MAX)" :
					 "");
	}
	/* The new rules are in force.  Entries of the old generation that
	 * could not be deleted now are never matched, and the next change
	 * deletes them. */
	acl_sweep_all(p, generation);
	return 0;
}

/* ---- the answer table ---------------------------------------------------------- */

/*
 * A table lives in inner maps of its own, sized for it: pages, and one
 * hash per key size.  A new one is never mixed with the old: the slots are
 * emptied, the kernel's readers are waited out, then the new maps go in,
 * pages first, so that every entry a packet finds points into its own
 * pages.  Until then the program finds no table and every query goes on
 * to the workers.
 */

bool xd_prog_answers_supported(const struct xd_prog *p)
{
	for (int i = 0; i < XD_ANSWER_CLASSES; i++)
		if (p->answers_outer_fd[i] < 0)
			return false;
	return p->pages_outer_fd >= 0;
}

/* Returns once every run of the program that could hold a map taken out
 * of a slot has ended: XDP runs inside an RCU read-side section (softirq),
 * and membarrier's global command is synchronize_rcu(). */
static void answers_wait_readers(void)
{
	const struct timespec grace = { 0, 50 * 1000 * 1000 };

	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) < 0)
		nanosleep(&grace, NULL); /* nohz_full: no such command */
}

void xd_prog_answers_clear(struct xd_prog *p)
{
	__u32 zero = 0;
	bool any = false;

	for (int i = 0; i < XD_ANSWER_CLASSES; i++) {
		if (p->installed.fds[i] < 0)
			continue;
		bpf_map_delete_elem(p->answers_outer_fd[i], &zero);
		any = true;
	}
	if (p->installed.pages >= 0) {
		bpf_map_delete_elem(p->pages_outer_fd, &zero);
		any = true;
	}
	if (!any)
		return;
	answers_wait_readers();
	xd_prog_table_close(&p->installed);
}

int xd_prog_map_create(enum bpf_map_type type, const char *name, size_t key_size, size_t value_size,
		       uint64_t n, __u32 flags)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
	int fd;

	if (n > UINT32_MAX)
		return -E2BIG;
	fd = bpf_map_create(type, name, (__u32)key_size, (__u32)value_size, n ? (__u32)n : 1,
			    &opts);
	return fd < 0 ? -errno : fd;
}

static int map_fill(int fd, const void *keys, const void *values, size_t n)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
	__u32 count = (__u32)n;

	if (!n)
		return 0;
	return bpf_map_update_batch(fd, keys, values, &count, &opts) < 0 ? -errno : 0;
}

static int pages_create(const struct xd_answers *t, int *out)
{
	__u32 *keys = calloc(t->npages ? t->npages : 1, sizeof(*keys));
	int fd, rc;

	if (!keys)
		return -ENOMEM;
	for (__u32 i = 0; i < t->npages; i++)
		keys[i] = i;
	fd = xd_prog_map_create(BPF_MAP_TYPE_ARRAY, "answer_pages", sizeof(__u32),
				sizeof(struct xd_answer_page), t->npages, BPF_F_INNER_MAP);
	rc = fd < 0 ? fd : map_fill(fd, keys, t->pages, t->npages);
	free(keys);
	if (rc < 0 && fd >= 0)
		close(fd);
	if (rc == 0)
		*out = fd;
	return rc;
}

/* A hash for one key size: room for every key with some to spare, as a
 * preallocated hash takes its last elements only from the CPU that
 * frees them. */
static int class_create(const struct xd_answer_class *c, int *out)
{
	size_t cap = c->n + c->n / 16 + 64;
	int fd = xd_prog_map_create(BPF_MAP_TYPE_HASH, "answers", c->key_size,
				    sizeof(struct xd_answer), cap, 0);
	int rc = fd < 0 ? fd : map_fill(fd, c->keys, c->values, c->n);

	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

/* The kernel's figure for a map's memory (its fdinfo's memlock). */
static uint64_t map_memlock(int fd)
{
	char path[64], line[128];
	unsigned long long bytes = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "memlock: %llu", &bytes) == 1)
			break;
	fclose(f);
	return bytes;
}

void xd_prog_table_close(struct xd_prog_table *m)
{
	for (int i = 0; i < XD_ANSWER_CLASSES; i++) {
		if (m->fds[i] >= 0)
			close(m->fds[i]);
		m->fds[i] = -1;
	}
	if (m->pages >= 0)
		close(m->pages);
	m->pages = -1;
}

int xd_prog_answers_build(struct xd_prog *p, const struct xd_answers *t, struct xd_prog_table *out,
			  struct xd_error *err)
{
	int i, rc;

	out->pages = -1;
	out->bytes = 0;
	for (i = 0; i < XD_ANSWER_CLASSES; i++)
		out->fds[i] = -1;
	if (!xd_prog_answers_supported(p))
		return xd_errorf(err, -EOPNOTSUPP,
				 "the XDP program has no answer table maps "
				 "(answers_32 ... answer_pages): build it from this version's "
				 "bpf/xdpdns.bpf.c, or set [xdp] answers = \"off\"");
	rc = pages_create(t, &out->pages);
	for (i = 0; rc == 0 && i < XD_ANSWER_CLASSES; i++)
		rc = class_create(&t->classes[i], &out->fds[i]);
	if (rc) {
		xd_prog_table_close(out);
		return xd_errorf(
			err, rc, "cannot write the answer table into BPF maps: %s%s", strerror(-rc),
			rc == -ENOMEM || rc == -E2BIG ? " (kernel memory for BPF maps)" : "");
	}
	out->bytes = map_memlock(out->pages);
	for (i = 0; i < XD_ANSWER_CLASSES; i++)
		out->bytes += map_memlock(out->fds[i]);
	return 0;
}

int xd_prog_answers_put(struct xd_prog *p, struct xd_prog_table *m, struct xd_error *err)
{
	__u32 zero = 0;
	int rc;

	xd_prog_answers_clear(p);
	rc = bpf_map_update_elem(p->pages_outer_fd, &zero, &m->pages, BPF_ANY) < 0 ? -errno : 0;
	if (rc == 0) {
		p->installed.pages = m->pages;
		m->pages = -1;
	}
	for (int i = 0; rc == 0 && i < XD_ANSWER_CLASSES; i++) {
		rc = bpf_map_update_elem(p->answers_outer_fd[i], &zero, &m->fds[i], BPF_ANY) < 0 ?
			     -errno :
			     0;
		if (rc == 0) {
			p->installed.fds[i] = m->fds[i];
			m->fds[i] = -1;
		}
	}
	xd_prog_table_close(m);
	if (rc) {
		xd_prog_answers_clear(p); /* no half table */
		return xd_errorf(err, rc, "cannot put the answer table into the XDP program: %s",
				 strerror(-rc));
	}
	return 0;
}
