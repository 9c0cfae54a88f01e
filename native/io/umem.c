/*
 * umem.c - the memory of a UMEM: hugepages on the NIC's NUMA node when
 * there are some, because a UMEM is touched by the NIC and the worker for
 * every packet and TLB misses on 4 KiB pages show at millions per second.
 */
#include <errno.h>
#include <numaif.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "io/xdp_internal.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

static void *map_huge(size_t size, int hugepage_mb)
{
	int shift = hugepage_mb == 1024 ? 30 : 21;
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (shift << MAP_HUGE_SHIFT), -1,
			 0);

	return mem == MAP_FAILED ? NULL : mem;
}

/* Binds the (still untouched) range to `node` and faults it in there. */
static int place_on_node(void *mem, size_t size, int node, struct xd_error *err)
{
	unsigned long mask[16] = { 0 };

	if (node < 0)
		goto touch;
	if ((size_t)node >= sizeof(mask) * 8) {
		snprintf(err->message, sizeof(err->message), "NUMA node %d out of range", node);
		return -EINVAL;
	}
	mask[node / (8 * sizeof(mask[0]))] |= 1UL << (node % (8 * sizeof(mask[0])));
	if (mbind(mem, size, MPOL_BIND, mask, sizeof(mask) * 8, MPOL_MF_STRICT)) {
		int rc = -errno;

		snprintf(err->message, sizeof(err->message),
			 "cannot bind the UMEM to NUMA node %d: %s", node, strerror(-rc));
		return rc;
	}
touch:
	/* Fault every page now: not on the first packets, and not on another
	 * node by first touch from elsewhere. */
	memset(mem, 0, size);
	return 0;
}

int xd_umem_area_alloc(struct xd_umem_area *a, size_t size, int node, int mode, int hugepage_mb,
		       char *warning, size_t wcap, struct xd_error *err)
{
	size_t page = (size_t)(hugepage_mb == 1024 ? 1024 : 2) << 20;
	int rc;

	memset(a, 0, sizeof(*a));
	if (mode != XD_HUGEPAGES_OFF) {
		a->size = round_up(size, page);
		a->mem = map_huge(a->size, hugepage_mb);
		a->hugepages = a->mem != NULL;
		if (!a->mem && mode == XD_HUGEPAGES_REQUIRED) {
			snprintf(err->message, sizeof(err->message),
				 "hugepages required but %zu MiB of %d MiB pages are not "
				 "available: reserve %zu more (e.g. echo N > "
				 "/proc/sys/vm/nr_hugepages%s)",
				 a->size >> 20, hugepage_mb == 1024 ? 1024 : 2, a->size / page,
				 hugepage_mb == 1024 ? ", or hugepages=N at boot for 1 GiB pages" :
						       "");
			return -ENOMEM;
		}
		if (!a->mem)
			snprintf(warning, wcap,
				 "hugepages unavailable (%zu pages of %d MiB "
				 "needed per queue): UMEM in normal pages",
				 a->size / page, hugepage_mb == 1024 ? 1024 : 2);
	}
	if (!a->mem) {
		a->size = round_up(size, 4096);
		a->mem = mmap(NULL, a->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
		if (a->mem == MAP_FAILED) {
			a->mem = NULL;
			rc = -errno;
			snprintf(err->message, sizeof(err->message),
				 "cannot allocate %zu bytes of UMEM: %s", a->size, strerror(-rc));
			return rc;
		}
	}
	rc = place_on_node(a->mem, a->size, node, err);
	if (rc)
		xd_umem_area_free(a);
	return rc;
}

void xd_umem_area_free(struct xd_umem_area *a)
{
	if (a && a->mem) {
		munmap(a->mem, a->size);
		a->mem = NULL;
	}
}
