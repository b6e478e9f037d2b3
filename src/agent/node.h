/* Node discovery from the kernel alone: a pod's processes live in cgroups
 * whose path holds the pod UID (kubelet's cgroupfs and systemd drivers
 * alike), and /proc/PID/ns/net names their network namespace. No container
 * runtime API is needed. */
#ifndef SONDE_NODE_H
#define SONDE_NODE_H

#include <stddef.h>
#include <stdint.h>

#define POD_UID_LEN 37	     /* 36 characters of a UUID + NUL */
#define CONTAINER_ID_LEN 129 /* runtimes use 64 hex; leave room */

struct netns_owner {
	uint32_t netns;	     /* inode number of the network namespace */
	char pod_uid[POD_UID_LEN];
	char container_id[CONTAINER_ID_LEN];
	uint32_t pid;	     /* one process seen in it */
};

#define CONTAINER_PIDS_MAX 8

/* A container's cgroup (one with a pod UID and a container id in its path)
 * and the first processes in it, in cgroup.procs order. */
struct pod_container {
	char pod_uid[POD_UID_LEN];
	char container_id[CONTAINER_ID_LEN];
	uint32_t pids[CONTAINER_PIDS_MAX];
	uint32_t npids;	    /* kept, at most CONTAINER_PIDS_MAX */
	uint32_t nprocs;    /* in the cgroup */
};

struct node_view {
	uint32_t node_netns; /* the node's own (root) network namespace */
	struct netns_owner *owners;
	size_t count;
	struct pod_container *containers;
	size_t ncontainers;
	/* Pods' processes still in the scanner's own netns: on their way
	 * into their pod's netns (worth a quick second look). */
	uint32_t transit;
};

/* Fills `view` from every cgroup under cgroup_root; node_netns_path names
 * the node's netns (e.g. /proc/self/ns/net or /run/netns/sonde-node-1). */
int node_scan(const char *cgroup_root, const char *node_netns_path,
	      struct node_view *view);
void node_view_free(struct node_view *view);
const struct netns_owner *node_find_netns(const struct node_view *view,
					  uint32_t netns);

/* Pure helpers, exported for unit tests. Both return 0 and fill `out` when
 * the path holds a pod UID / container id, -ENOENT otherwise. */
int cgroup_path_pod_uid(const char *path, char *out, size_t len);
int cgroup_path_container_id(const char *path, char *out, size_t len);
/* Inode number of a namespace file (/proc/PID/ns/net); 0 on error. */
uint32_t netns_inode(const char *path);

#endif
