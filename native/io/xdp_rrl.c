/*
 * xdp_rrl.c - rate limiting inside the XDP program (bpf/xdpdns_maps.h).
 *
 * The program answers from its table without a worker, so it must count
 * those answers where a worker counts its own: in the same buckets.  Each
 * generation of the settings gets maps of its own, sized for it: the
 * settings, the buckets (a mmapable array, so that the workers count in
 * the very memory the program does), and the exempt prefixes.  They go
 * into the program's one-slot ARRAY_OF_MAPS, the settings last, and the
 * old ones are unmapped once the workers have moved on; the kernel frees
 * them when the program's last run that read them is over.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "wire/prefixes.h"
#include "error.h"
#include "io/xdp_loader.h"
#include "io/xdp_rrl.h"
#include "xdpdns_maps.h"

static const char *const slot_names[XD_XDP_RRL_MAPS] = {
	[XD_XDP_RRL_SETTINGS] = "rrl_settings",
	[XD_XDP_RRL_BUCKETS] = "rrl_buckets",
	[XD_XDP_RRL_EXEMPT_V4] = "rrl_exempt_v4",
	[XD_XDP_RRL_EXEMPT_V6] = "rrl_exempt_v6",
};

bool xd_xdp_rrl_supported(struct xd_prog *p)
{
	for (int i = 0; i < XD_XDP_RRL_MAPS; i++)
		if (xd_prog_map_fd(p, slot_names[i]) < 0)
			return false;
	return xd_prog_map_fd(p, "rrl_events") >= 0;
}

static int settings_new(const struct xd_rrl *rrl)
{
	struct xd_rrl_settings s;
	__u32 zero = 0;
	int fd = xd_prog_map_create(BPF_MAP_TYPE_ARRAY, "rrl_settings", sizeof(__u32), sizeof(s), 1,
				    0);

	if (fd < 0)
		return fd;
	xd_rrl_settings_get(rrl, &s);
	if (bpf_map_update_elem(fd, &zero, &s, BPF_ANY) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

/* The buckets, zeroed (every entry free), mapped into r->shared. */
static int buckets_new(struct xd_xdp_rrl *r)
{
	uint64_t n = r->shared.nsets;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *mem;
	int fd = xd_prog_map_create(BPF_MAP_TYPE_ARRAY, "rrl_buckets", sizeof(__u32),
				    sizeof(struct xd_rrl_set), n, BPF_F_INNER_MAP | BPF_F_MMAPABLE);

	if (fd < 0)
		return fd;
	r->mapped = (n * sizeof(struct xd_rrl_set) + page - 1) / page * page;
	mem = mmap(NULL, r->mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		int rc = -errno;

		close(fd);
		r->mapped = 0;
		return rc;
	}
	r->shared.sets = mem;
	return fd;
}

/* The exempt prefixes of one family (the ACL's DENY entries). */
static int exempt_new(const struct xd_acl *exempt, int family)
{
	const struct xd_acl_table *t = exempt ? (family == AF_INET ? &exempt->v4 : &exempt->v6) :
						NULL;
	size_t bytes = family == AF_INET ? 4 : 16;
	uint32_t n = t ? t->n : 0;
	__u32 one = 1;
	int fd = xd_prog_map_create(BPF_MAP_TYPE_LPM_TRIE,
				    family == AF_INET ? "rrl_exempt_v4" : "rrl_exempt_v6",
				    sizeof(__u32) + bytes, sizeof(__u32), n, BPF_F_NO_PREALLOC);

	if (fd < 0)
		return fd;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t key[sizeof(struct xd_rrl_exempt_v6_key)] = { 0 };
		__u32 prefixlen = t->entries[i].prefix_len;

		if (t->entries[i].action != XD_ACL_DENY)
			continue;
		memcpy(key, &prefixlen, sizeof(prefixlen));
		memcpy(key + sizeof(prefixlen), t->entries[i].addr, bytes);
		if (bpf_map_update_elem(fd, key, &one, BPF_ANY) < 0) {
			int rc = -errno;

			close(fd);
			return rc;
		}
	}
	return fd;
}

_Static_assert(sizeof(struct xd_rrl_exempt_v4_key) == sizeof(__u32) + 4 &&
		       sizeof(struct xd_rrl_exempt_v6_key) == sizeof(__u32) + 16,
	       "exempt_new writes the prefix length, then the address");

int xd_xdp_rrl_build(struct xd_prog *p, const struct xd_rrl *rrl, struct xd_xdp_rrl **out,
		     struct xd_error *err)
{
	struct xd_xdp_rrl *r;
	int rc;

	*out = NULL;
	if (!xd_xdp_rrl_supported(p))
		return xd_errorf(err, -EOPNOTSUPP,
				 "the XDP program has no rate limiting maps "
				 "(rrl_settings ... rrl_events): build it from this "
				 "version's bpf/xdpdns.bpf.c");
	r = calloc(1, sizeof(*r));
	if (!r)
		return xd_errorf(err, -ENOMEM, "RRL: out of memory");
	for (int i = 0; i < XD_XDP_RRL_MAPS; i++)
		r->fds[i] = -1;
	r->shared.generation = rrl->generation;
	r->shared.nsets = rrl->table_size / XD_RRL_WAYS;
	rc = r->fds[XD_XDP_RRL_BUCKETS] = buckets_new(r);
	if (rc >= 0)
		rc = r->fds[XD_XDP_RRL_EXEMPT_V4] = exempt_new(rrl->exempt, AF_INET);
	if (rc >= 0)
		rc = r->fds[XD_XDP_RRL_EXEMPT_V6] = exempt_new(rrl->exempt, AF_INET6);
	if (rc >= 0)
		rc = r->fds[XD_XDP_RRL_SETTINGS] = settings_new(rrl);
	if (rc < 0) {
		xd_xdp_rrl_free(r);
		return xd_errorf(err, rc,
				 "cannot make the XDP program's rate limiting maps "
				 "(%u buckets): %s",
				 rrl->table_size, strerror(-rc));
	}
	*out = r;
	return 0;
}

int xd_xdp_rrl_put(struct xd_prog *p, const struct xd_xdp_rrl *r, struct xd_error *err)
{
	static const int order[XD_XDP_RRL_MAPS] = {
		XD_XDP_RRL_BUCKETS,
		XD_XDP_RRL_EXEMPT_V4,
		XD_XDP_RRL_EXEMPT_V6,
		XD_XDP_RRL_SETTINGS,
	};
	__u32 zero = 0;

	for (int i = 0; i < XD_XDP_RRL_MAPS; i++) {
		int slot = xd_prog_map_fd(p, slot_names[order[i]]);

		if (bpf_map_update_elem(slot, &zero, &r->fds[order[i]], BPF_ANY) < 0) {
			int rc = -errno;

			xd_xdp_rrl_clear(p);
			return xd_errorf(err, rc,
					 "cannot put the rate limiting maps into the "
					 "XDP program (%s): %s",
					 slot_names[order[i]], strerror(-rc));
		}
	}
	return 0;
}

void xd_xdp_rrl_clear(struct xd_prog *p)
{
	__u32 zero = 0;

	/* The settings first: without them the program limits nothing and
	 * reads no other slot. */
	for (int i = 0; i < XD_XDP_RRL_MAPS; i++) {
		int slot = xd_prog_map_fd(p, slot_names[i]);

		if (slot >= 0)
			bpf_map_delete_elem(slot, &zero);
	}
}

void xd_xdp_rrl_free(struct xd_xdp_rrl *r)
{
	if (!r)
		return;
	if (r->shared.sets)
		munmap(r->shared.sets, r->mapped);
	for (int i = 0; i < XD_XDP_RRL_MAPS; i++)
		if (r->fds[i] >= 0)
			close(r->fds[i]);
	free(r);
}

/* ---- notes of limited buckets ---------------------------------------------------- */

struct xd_xdp_rrl_notes {
	struct ring_buffer *ring;
	/* Where the take in progress puts them. */
	struct xd_rrl_event *out;
	int max;
	int n;
	int64_t to_unix; /* UNIX time less the buckets' clock */
};

static int note_take(void *ctx, void *data, size_t size)
{
	struct xd_xdp_rrl_notes *n = ctx;
	const struct xd_rrl_note *note = data;
	struct xd_rrl_event *ev;

	if (size < sizeof(*note) || n->n >= n->max)
		return 0; /* lost, as a full worker ring loses it */
	ev = &n->out[n->n++];
	memset(ev, 0, sizeof(*ev));
	ev->family = (int)note->family;
	memcpy(ev->addr, note->addr, sizeof(ev->addr));
	ev->prefix_len = note->prefix_len;
	ev->kind = note->kind;
	ev->time = (uint32_t)((int64_t)note->time + n->to_unix);
	return 0;
}

int xd_xdp_rrl_notes_open(struct xd_prog *p, struct xd_xdp_rrl_notes **out)
{
	struct xd_xdp_rrl_notes *n;
	int fd = xd_prog_map_fd(p, "rrl_events");

	*out = NULL;
	if (fd < 0)
		return 0; /* a program without: nothing to take */
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->ring = ring_buffer__new(fd, note_take, n, NULL);
	if (!n->ring) {
		int rc = -errno;

		free(n);
		return rc;
	}
	*out = n;
	return 0;
}

void xd_xdp_rrl_notes_close(struct xd_xdp_rrl_notes *n)
{
	if (!n)
		return;
	ring_buffer__free(n->ring);
	free(n);
}

int xd_xdp_rrl_notes_take(struct xd_xdp_rrl_notes *n, struct xd_rrl_event *out, int max)
{
	if (!n || max <= 0)
		return 0;
	n->out = out;
	n->max = max;
	n->n = 0;
	n->to_unix = (int64_t)time(NULL) - (int64_t)xd_rrl_clock();
	ring_buffer__consume(n->ring);
	return n->n;
}
