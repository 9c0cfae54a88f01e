/*
 * privileges.c - giving up root once the server holds what needed it: its
 * sockets bound, the XDP program attached, the UMEM mapped.
 *
 * setgroups, setgid and setuid go through glibc, which applies them to
 * every thread of the process (its set*id broadcast), so no worker keeps
 * root.  Capabilities are per thread: only the calling thread keeps the
 * ones asked for (PR_SET_KEEPCAPS is its own attribute), and threads it
 * starts afterwards inherit them; every other thread loses all of them
 * with root.  The bounding set is cut to the same set first, so that no
 * program the server runs gets more back.
 */
#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#include "engine.h"
#include "error.h"

/* The highest capability this code knows of; a newer kernel's further
 * ones are dropped from the bounding set too (EINVAL ends the loop). */
#define XD_CAP_SCAN_MAX 63

static int bounding_keep(uint64_t keep)
{
	for (int cap = 0; cap <= XD_CAP_SCAN_MAX; cap++) {
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				return 0; /* past the kernel's last capability */
			return -errno;
		}
	}
	return 0;
}

/* The calling thread's effective and permitted sets become keep. */
static int caps_set(uint64_t keep)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)keep;
	data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
	return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

int xd_privileges_drop(uint32_t uid, uint32_t gid, uint64_t keep, struct xd_error *err)
{
	gid_t groups[1] = { gid };
	int rc;

	if (uid == 0)
		return xd_errorf(err, -EINVAL, "the user to run as is root: nothing to give up");
	rc = bounding_keep(keep);
	if (rc)
		return xd_errorf(err, rc,
				 "cannot drop capabilities from the bounding set: %s "
				 "(running without CAP_SETPCAP?)",
				 strerror(-rc));
	if (keep && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return xd_errorf(err, -errno, "cannot keep capabilities across setuid: %s",
				 strerror(errno));
	if (setgroups(1, groups) < 0)
		return xd_errorf(err, -errno, "cannot set the supplementary groups to %u: %s", gid,
				 strerror(errno));
	if (setgid(gid) < 0)
		return xd_errorf(err, -errno, "cannot switch to group %u: %s", gid,
				 strerror(errno));
	if (setuid(uid) < 0)
		return xd_errorf(err, -errno, "cannot switch to user %u: %s", uid, strerror(errno));
	rc = caps_set(keep);
	if (rc)
		return xd_errorf(err, rc, "cannot keep capabilities 0x%llx: %s",
				 (unsigned long long)keep, strerror(-rc));
	if (keep)
		prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	/* Root must be gone for good: a saved set-user-ID of 0 would let any
	 * code take it back. */
	if (setuid(0) == 0 || getuid() != uid || geteuid() != uid)
		return xd_errorf(err, -EPERM,
				 "root could be regained after switching to "
				 "user %u",
				 uid);
	return 0;
}
