/*
 * numa.c - where the NIC is: its NUMA node, the CPUs there, and how many
 * queues it has.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/xdp_internal.h"

static int read_line(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");

	if (!f)
		return -errno;
	if (!fgets(buf, cap, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	return 0;
}

int xd_numa_nic_node(const char *ifname)
{
	char path[256], line[32];

	snprintf(path, sizeof(path), "/sys/class/net/%s/device/numa_node", ifname);
	if (read_line(path, line, sizeof(line)))
		return -1; /* virtual devices (veth) have no device node */
	return atoi(line) < 0 ? -1 : atoi(line);
}

/* Parses a kernel CPU list ("0-3,8,10-11") into cpus. */
static int parse_cpulist(const char *list, int *cpus, int max)
{
	int n = 0;

	while (*list && *list != '\n' && n < max) {
		char *end;
		long lo = strtol(list, &end, 10), hi = lo;

		if (end == list)
			break;
		if (*end == '-')
			hi = strtol(end + 1, &end, 10);
		for (long c = lo; c <= hi && n < max; c++)
			cpus[n++] = (int)c;
		list = *end == ',' ? end + 1 : end;
	}
	return n;
}

/* Keeps the CPUs this process may run on (taskset, cgroup cpusets,
 * systemd's CPUAffinity): an operator who confines the server confines its
 * workers too.  Returns how many are left. */
static int keep_allowed(int *cpus, int n)
{
	cpu_set_t allowed;
	int kept = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return n;
	for (int i = 0; i < n; i++)
		if (cpus[i] < CPU_SETSIZE && CPU_ISSET(cpus[i], &allowed))
			cpus[kept++] = cpus[i];
	return kept;
}

int xd_numa_cpus(int node, int *cpus, int max)
{
	char path[256], line[4096];
	int n = 0;

	if (node >= 0) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
		if (read_line(path, line, sizeof(line)) == 0)
			n = keep_allowed(cpus, parse_cpulist(line, cpus, max));
	}
	/* No node, or none of its CPUs allowed: any allowed CPU. */
	if (n == 0 && read_line("/sys/devices/system/cpu/online", line, sizeof(line)) == 0)
		n = keep_allowed(cpus, parse_cpulist(line, cpus, max));
	if (n == 0) {
		cpus[0] = 0;
		n = 1;
	}
	return n;
}

int xd_nic_queue_count(const char *ifname, struct xd_error *err)
{
	struct ethtool_channels ch = { .cmd = ETHTOOL_GCHANNELS };
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&ch;
	rc = ioctl(fd, SIOCETHTOOL, &ifr);
	close(fd);
	if (rc < 0) {
		if (errno == EOPNOTSUPP)
			return 1; /* no channels to speak of: one queue */
		rc = -errno;
		snprintf(err->message, sizeof(err->message),
			 "%s: cannot read its queues (ethtool channels): %s", ifname,
			 strerror(-rc));
		return rc;
	}
	/* veth reports rx channels only; NICs usually combined ones. */
	rc = (int)(ch.combined_count > ch.rx_count ? ch.combined_count : ch.rx_count);
	return rc > 0 ? rc : 1;
}
