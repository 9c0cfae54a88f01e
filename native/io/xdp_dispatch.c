/*
 * xdp_dispatch.c - the XDP program in libxdp's multi-program dispatcher, so
 * that it shares the interface with programs that xdp-loader and other
 * libxdp users load ([xdp] attach = "dispatcher").
 *
 * libxdp attaches one dispatcher program per interface (netlink, no
 * bpf_link) and joins each program to it as an freplace (EXT) program
 * whose bpf_link it pins under <bpffs>/xdp/dispatch-IFINDEX-ID/.  So,
 * unlike the bpf_link of attach = "link", our program outlives a process
 * that dies: the server's guard process (xdpdns/xdp.py) takes it out when
 * the server ends however it ends, and a start takes out what a server
 * that died with its guard left (xd_dispatch_clear_stale).
 *
 * libxdp reports through its own print callback; while we call it, its
 * warnings go to this thread's buffer and into our error messages.
 */
#define _GNU_SOURCE /* secure_getenv, as libxdp reads LIBXDP_BPFFS */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>

#include "error.h"
#include "io/xdp_dispatch.h"

/* libxdp's default bpffs, and the variable that moves it (libxdp.h). */
#define XD_BPFFS_DEFAULT "/sys/fs/bpf"
/* How often a start goes round taking stale programs out: each removal
 * makes a new dispatcher, so the list is read again after each. */
#define XD_STALE_MAX 16

#define XD_USE_LINK "or set [xdp] attach = \"link\""

/* ---- libxdp's messages -------------------------------------------------- */

static __thread char xd_libxdp_said[256];
#define XD_LIBXDP_PREFIX "libxdp: "

static int xd_libxdp_capture(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	char line[160], *text;
	size_t used = strlen(xd_libxdp_said), n;

	if (level == LIBXDP_DEBUG)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	text = line;
	while (*text == ' ')
		text++;
	if (!strncmp(text, XD_LIBXDP_PREFIX, strlen(XD_LIBXDP_PREFIX)))
		text += strlen(XD_LIBXDP_PREFIX);
	/* What it does next is ours to decide (xd_check_joined undoes it). */
	if (!strncmp(text, "Falling back", strlen("Falling back")))
		return 0;
	n = strlen(text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	if (n && used + 2 < sizeof(xd_libxdp_said))
		snprintf(xd_libxdp_said + used, sizeof(xd_libxdp_said) - used, "%s%s",
			 used ? "; " : "", text);
	return 0;
}

static libxdp_print_fn_t xd_libxdp_listen(void)
{
	xd_libxdp_said[0] = '\0';
	return libxdp_set_print(xd_libxdp_capture);
}

static const char *xd_libxdp_reason(int rc)
{
	return xd_libxdp_said[0] ? xd_libxdp_said : strerror(-rc);
}

static const char *xd_ifname(int ifindex, char buf[IF_NAMESIZE])
{
	if (!if_indextoname((unsigned)ifindex, buf))
		snprintf(buf, IF_NAMESIZE, "#%d", ifindex);
	return buf;
}

/* ---- the bpffs ------------------------------------------------------------ */

static const char *xd_bpffs_dir(void)
{
	const char *dir = secure_getenv("LIBXDP_BPFFS");

	return dir && *dir ? dir : XD_BPFFS_DEFAULT;
}

/* Before libxdp looks: without a bpffs it silently attaches the program on
 * its own instead (no dispatcher, and no bpf_link either). */
int xd_dispatch_check_bpffs(const char *ifname, struct xd_error *err)
{
	const char *dir = xd_bpffs_dir();
	struct statfs fs;

	if (statfs(dir, &fs) < 0 || (unsigned long)fs.f_type != BPF_FS_MAGIC)
		return xd_errorf(err, -ENOENT,
				 "[xdp] attach = \"dispatcher\" on %s: no bpffs at "
				 "%s, where libxdp pins the dispatcher and its programs (mount -t "
				 "bpf bpf %s, or point LIBXDP_BPFFS at one), " XD_USE_LINK,
				 ifname, dir, dir);
	if (access(dir, W_OK) < 0)
		return xd_errorf(err, -errno,
				 "[xdp] attach = \"dispatcher\" on %s: the bpffs at "
				 "%s is not writable (%s): libxdp pins the dispatcher there; "
				 "make it writable for xdpdns, " XD_USE_LINK,
				 ifname, dir, strerror(errno));
	return 0;
}

/* ---- stale programs -------------------------------------------------------- */

/* Whether fd `fd` of process pid refers to BPF program prog_id: a program
 * or a link to it (/proc/PID/fdinfo says "prog_id:"). */
static bool xd_fd_holds(const char *pid, const char *fd, uint32_t prog_id)
{
	char path[PATH_MAX], target[64], line[128];
	unsigned id;
	bool found = false;
	ssize_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/fd/%s", pid, fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	if (strcmp(target, "anon_inode:bpf-prog") && strcmp(target, "anon_inode:bpf_link"))
		return false;
	snprintf(path, sizeof(path), "/proc/%s/fdinfo/%s", pid, fd);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "prog_id: %u", &id) == 1 && id == prog_id;
	fclose(f);
	return found;
}

/* A process other than this one with a descriptor of program prog_id (a
 * live xdpdns holds its program's), or 0.  The pinned link the dispatcher
 * keeps is no process's. */
static pid_t xd_prog_holder(uint32_t prog_id)
{
	char fds[PATH_MAX];
	struct dirent *p, *d;
	DIR *proc, *dir;
	pid_t self = getpid(), holder = 0;

	proc = opendir("/proc");
	if (!proc)
		return 0;
	while (!holder && (p = readdir(proc))) {
		if (p->d_name[0] < '1' || p->d_name[0] > '9' || atoi(p->d_name) == self)
			continue;
		snprintf(fds, sizeof(fds), "/proc/%s/fd", p->d_name);
		dir = opendir(fds);
		if (!dir)
			continue; /* gone meanwhile */
		while (!holder && (d = readdir(dir)))
			if (d->d_name[0] != '.' && xd_fd_holds(p->d_name, d->d_name, prog_id))
				holder = atoi(p->d_name);
		closedir(dir);
	}
	closedir(proc);
	return holder;
}

/* The dispatcher on ifindex, NULL with *rc = 0 when nothing is attached. */
static struct xdp_multiprog *xd_dispatcher_get(int ifindex, int *rc)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
	long e = libxdp_get_error(mp);

	*rc = 0;
	if (!e && mp)
		return mp;
	if (e != -ENOENT && e != 0)
		*rc = (int)e;
	return NULL;
}

/* One round: takes out the first stale prog_name; 1 when it did, 0 when
 * there was none. */
static int xd_clear_one(int ifindex, const char *prog_name, struct xd_error *err)
{
	struct xdp_program *p = NULL;
	struct xdp_multiprog *mp;
	char ifname[IF_NAMESIZE];
	pid_t holder;
	int rc;

	mp = xd_dispatcher_get(ifindex, &rc);
	if (!mp)
		return rc ? xd_errorf(err, rc, "cannot read the XDP programs of %s: %s",
				      xd_ifname(ifindex, ifname), xd_libxdp_reason(rc)) :
			    0;
	if (xdp_multiprog__is_legacy(mp)) {
		rc = xd_errorf(err, -EBUSY,
			       "an XDP program (%s, id %u) is attached to %s outside "
			       "libxdp's dispatcher: xdpdns cannot join it (unload it, or load it "
			       "with xdp-loader; see xdp-loader status %s)",
			       xdp_program__name(xdp_multiprog__main_prog(mp)),
			       xdp_program__id(xdp_multiprog__main_prog(mp)),
			       xd_ifname(ifindex, ifname), ifname);
		goto out;
	}
	while ((p = xdp_multiprog__next_prog(p, mp))) {
		if (strcmp(xdp_program__name(p), prog_name))
			continue;
		holder = xd_prog_holder(xdp_program__id(p));
		if (holder) {
			rc = xd_errorf(err, -EBUSY,
				       "xdpdns (pid %d) already serves %s through its "
				       "dispatcher (program id %u)",
				       (int)holder, xd_ifname(ifindex, ifname), xdp_program__id(p));
			goto out;
		}
		rc = xdp_program__detach(p, ifindex, XDP_MODE_UNSPEC, 0);
		/* -ENOENT: gone meanwhile (the dead server's guard was still
		 * at it); the next round reads the dispatcher again. */
		if (rc < 0 && rc != -ENOENT) {
			rc = xd_errorf(err, rc,
				       "cannot take the stale xdpdns program (id %u) out "
				       "of %s's dispatcher: %s",
				       xdp_program__id(p), xd_ifname(ifindex, ifname),
				       xd_libxdp_reason(rc));
			goto out;
		}
		rc = 1;
		goto out;
	}
	rc = 0;
out:
	xdp_multiprog__close(mp);
	return rc;
}

int xd_dispatch_clear_stale(int ifindex, const char *prog_name, int *removed, struct xd_error *err)
{
	libxdp_print_fn_t old = xd_libxdp_listen();
	int rc, round;

	*removed = 0;
	for (round = 0; round < XD_STALE_MAX; round++) {
		rc = xd_clear_one(ifindex, prog_name, err);
		if (rc <= 0)
			break;
		(*removed)++;
	}
	libxdp_set_print(old);
	return rc < 0 ? rc : 0;
}

/* ---- attaching and detaching --------------------------------------------- */

static enum xdp_attach_mode xd_first_mode(int ifindex, bool generic, bool *fixed)
{
	struct xdp_multiprog *mp;
	enum xdp_attach_mode mode;
	int rc;

	*fixed = false;
	mp = xd_dispatcher_get(ifindex, &rc);
	if (mp) {
		/* One dispatcher serves every program: its mode is ours. */
		mode = xdp_multiprog__attach_mode(mp);
		xdp_multiprog__close(mp);
		if (mode == XDP_MODE_NATIVE || mode == XDP_MODE_SKB) {
			*fixed = true;
			return mode;
		}
	}
	return generic ? XDP_MODE_SKB : XDP_MODE_NATIVE;
}

/* After xdp_program__attach: our program must be in a dispatcher.  libxdp
 * attaches it alone (netlink, outliving us) when the kernel cannot run
 * freplace programs; that is undone here and reported. */
static int xd_check_joined(int ifindex, uint32_t prog_id, struct xd_error *err)
{
	struct xdp_multiprog *mp;
	struct xdp_program *p = NULL;
	char ifname[IF_NAMESIZE];
	int rc;

	mp = xd_dispatcher_get(ifindex, &rc);
	if (!mp)
		return xd_errorf(err, rc ? rc : -ENOENT,
				 "no XDP dispatcher on %s after "
				 "attaching to it: %s",
				 xd_ifname(ifindex, ifname), xd_libxdp_reason(rc ? rc : -ENOENT));
	if (xdp_multiprog__is_legacy(mp)) {
		if (xdp_program__id(xdp_multiprog__main_prog(mp)) == prog_id)
			xdp_multiprog__detach(mp);
		xdp_multiprog__close(mp);
		return xd_errorf(
			err, -EOPNOTSUPP,
			"the kernel refused libxdp's dispatcher on %s: "
			"xdpdns joins it as an freplace (EXT) program, which needs BTF and "
			"kernel 5.10 or later not forbidding it (libxdp: %s); " XD_USE_LINK,
			xd_ifname(ifindex, ifname), xd_libxdp_reason(-EOPNOTSUPP));
	}
	while ((p = xdp_multiprog__next_prog(p, mp)))
		if (xdp_program__id(p) == prog_id)
			break;
	xdp_multiprog__close(mp);
	if (!p)
		return xd_errorf(err, -ENOENT,
				 "the XDP program is not in %s's dispatcher after "
				 "attaching to it (another libxdp user replaced it meanwhile?)",
				 xd_ifname(ifindex, ifname));
	return 0;
}

static int xd_attach_error(int ifindex, int rc, struct xd_error *err)
{
	char ifname[IF_NAMESIZE];

	if (rc == -EOPNOTSUPP || rc == -EPERM)
		return xd_errorf(
			err, rc,
			"the kernel refused libxdp's dispatcher on %s: xdpdns "
			"joins it as an freplace (EXT) program, which needs BTF and kernel "
			"5.10 or later not forbidding it (libxdp: %s); " XD_USE_LINK,
			xd_ifname(ifindex, ifname), xd_libxdp_reason(rc));
	return xd_errorf(err, rc, "cannot add the XDP program to %s's dispatcher: %s",
			 xd_ifname(ifindex, ifname), xd_libxdp_reason(rc));
}

int xd_dispatch_attach(struct bpf_object *obj, const char *prog_name, int ifindex, bool generic,
		       struct xdp_program **out, bool *native, struct xd_error *err)
{
	DECLARE_LIBXDP_OPTS(xdp_program_opts, opts, .obj = obj, .prog_name = prog_name);
	libxdp_print_fn_t old = xd_libxdp_listen();
	struct xdp_program *prog;
	enum xdp_attach_mode mode;
	bool fixed;
	int rc;

	*out = NULL;
	prog = xdp_program__create(&opts);
	rc = (int)libxdp_get_error(prog);
	if (rc || !prog) {
		rc = xd_errorf(err, rc ? rc : -EINVAL, "libxdp cannot take the XDP program: %s",
			       xd_libxdp_reason(rc ? rc : -EINVAL));
		goto out_print;
	}
	/* Chain call actions stay libxdp's default: only XDP_PASS goes on to
	 * the next program, which is what we return for all that is not
	 * ours (a redirect to no socket included). */
	xdp_program__set_run_prio(prog, XD_DISPATCH_RUN_PRIO);
	mode = xd_first_mode(ifindex, generic, &fixed);
	rc = xdp_program__attach(prog, ifindex, mode, 0);
	if (rc < 0 && mode == XDP_MODE_NATIVE && !fixed) {
		xd_libxdp_said[0] = '\0';
		mode = XDP_MODE_SKB; /* the driver's refusal: generic mode */
		rc = xdp_program__attach(prog, ifindex, mode, 0);
	}
	if (rc < 0) {
		xd_attach_error(ifindex, rc, err);
		goto out_close;
	}
	rc = xd_check_joined(ifindex, xdp_program__id(prog), err);
	if (rc < 0)
		goto out_close;
	*native = mode == XDP_MODE_NATIVE;
	*out = prog;
	goto out_print;

out_close:
	xdp_program__close(prog);
out_print:
	libxdp_set_print(old);
	return rc;
}

int xd_dispatch_detach(int ifindex, uint32_t prog_id, struct xd_error *err)
{
	libxdp_print_fn_t old = xd_libxdp_listen();
	struct xdp_program *p = NULL;
	struct xdp_multiprog *mp;
	char ifname[IF_NAMESIZE];
	int rc;

	mp = xd_dispatcher_get(ifindex, &rc);
	if (!mp) {
		if (rc)
			xd_errorf(err, rc, "cannot read the XDP programs of %s: %s",
				  xd_ifname(ifindex, ifname), xd_libxdp_reason(rc));
		goto out_print;
	}
	while ((p = xdp_multiprog__next_prog(p, mp)))
		if (xdp_program__id(p) == prog_id)
			break;
	if (p) {
		rc = xdp_program__detach(p, ifindex, XDP_MODE_UNSPEC, 0);
		if (rc < 0)
			xd_errorf(err, rc,
				  "cannot take the XDP program (id %u) out of %s's "
				  "dispatcher: %s",
				  prog_id, xd_ifname(ifindex, ifname), xd_libxdp_reason(rc));
	}
	xdp_multiprog__close(mp);
out_print:
	libxdp_set_print(old);
	return rc;
}
