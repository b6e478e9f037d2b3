#include "agent/node.h"

#include "lib/log.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

uint32_t netns_inode(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return 0;
	return (uint32_t)st.st_ino;
}

static bool is_uuid(const char *s)
{
	static const int dash_at[] = { 8, 13, 18, 23 };

	for (int i = 0; i < 36; i++) {
		bool dash = false;
		for (int d = 0; d < 4; d++)
			dash |= dash_at[d] == i;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* kubelet names a pod's cgroup "pod<uid>" (cgroupfs driver) or
 * "kubepods-<qos>-pod<uid with '_' for '-'>.slice" (systemd driver). */
int cgroup_path_pod_uid(const char *path, char *out, size_t len)
{
	const char *p = path;

	if (len < POD_UID_LEN)
		return -ENOSPC;
	while ((p = strstr(p, "pod"))) {
		char cand[POD_UID_LEN];
		bool boundary = p == path || p[-1] == '/' || p[-1] == '-';

		p += 3;
		if (!boundary || strlen(p) < 36)
			continue;
		memcpy(cand, p, 36);
		cand[36] = '\0';
		for (int i = 0; i < 36; i++)
			if (cand[i] == '_')
				cand[i] = '-';
		if (is_uuid(cand) && (p[36] == '/' || p[36] == '\0' ||
				      strncmp(p + 36, ".slice", 6) == 0)) {
			memcpy(out, cand, POD_UID_LEN);
			return 0;
		}
	}
	return -ENOENT;
}

/* The container's cgroup is the last component: "<64 hex>" (cgroupfs) or
 * "<runtime>-<64 hex>.scope" (systemd: cri-containerd, crio, docker). */
int cgroup_path_container_id(const char *path, char *out, size_t len)
{
	const char *last = strrchr(path, '/');
	const char *id;
	size_t n;

	last = last ? last + 1 : path;
	id = strrchr(last, '-');
	id = id ? id + 1 : last;
	n = strcspn(id, ".");
	if (n < 32 || n >= len) /* runtimes use 64 hex; a UUID part is 12 */
		return -ENOENT;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)id[i]))
			return -ENOENT;
	if (strcmp(id + n, "") && strcmp(id + n, ".scope"))
		return -ENOENT;
	memcpy(out, id, n);
	out[n] = '\0';
	return 0;
}

static struct node_view *scan_view; /* nftw has no user pointer */
/* The netns this process runs in. A pod's process seen there is in
 * transit: a runtime (or the lab's spawner) puts it in the pod's cgroup
 * first and moves it into the pod's netns a moment later. Counting it
 * would report our own netns as a pod's. */
static uint32_t scan_self_netns;

static int add_owner(uint32_t netns, const char *cgroup, uint32_t pid)
{
	struct node_view *v = scan_view;
	struct netns_owner *o;

	if (netns == scan_self_netns && netns != v->node_netns) {
		char uid[POD_UID_LEN];
		if (!cgroup_path_pod_uid(cgroup, uid, sizeof(uid)))
			v->transit++; /* a pod's, not a host daemon's */
		return 0;
	}
	if (netns == v->node_netns || node_find_netns(v, netns))
		return 0;
	o = realloc(v->owners, sizeof(*o) * (v->count + 1));
	if (!o)
		return -ENOMEM;
	v->owners = o;
	o = &v->owners[v->count++];
	memset(o, 0, sizeof(*o));
	o->netns = netns;
	o->pid = pid;
	cgroup_path_pod_uid(cgroup, o->pod_uid, sizeof(o->pod_uid));
	cgroup_path_container_id(cgroup, o->container_id,
				 sizeof(o->container_id));
	return 0;
}

/* The container of a cgroup with a pod UID and a container id, or NULL
 * (not a container's cgroup, or out of memory: discovery goes on without
 * it). */
static struct pod_container *add_container(const char *cgroup)
{
	struct node_view *v = scan_view;
	struct pod_container c = { 0 }, *n;

	if (cgroup_path_pod_uid(cgroup, c.pod_uid, sizeof(c.pod_uid)) ||
	    cgroup_path_container_id(cgroup, c.container_id,
				     sizeof(c.container_id)))
		return NULL;
	n = realloc(v->containers, sizeof(*n) * (v->ncontainers + 1));
	if (!n)
		return NULL;
	v->containers = n;
	n[v->ncontainers] = c;
	return &n[v->ncontainers++];
}

static int scan_cgroup(const char *path, const struct stat *st, int type,
		       struct FTW *ftw)
{
	char procs[4096 + 16], nspath[64];
	unsigned int pid;
	struct pod_container *c = NULL;
	bool looked = false; /* is this a container's cgroup? asked once */
	FILE *f;

	(void)st;
	(void)ftw;
	if (type != FTW_D)
		return 0;
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
	f = fopen(procs, "r");
	if (!f)
		return 0; /* removed while we walk: a pod going away */
	while (fscanf(f, "%u", &pid) == 1) {
		if (!looked) {
			c = add_container(path);
			looked = true;
		}
		if (c) {
			if (c->npids < CONTAINER_PIDS_MAX)
				c->pids[c->npids++] = pid;
			c->nprocs++;
		}
		snprintf(nspath, sizeof(nspath), "/proc/%u/ns/net", pid);
		uint32_t ino = netns_inode(nspath);
		if (ino && add_owner(ino, path, pid)) {
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

int node_scan(const char *cgroup_root, const char *node_netns_path,
	      struct node_view *view)
{
	memset(view, 0, sizeof(*view));
	view->node_netns = netns_inode(node_netns_path);
	if (!view->node_netns) {
		log_err("cannot read the node's network namespace %s: %s",
			node_netns_path, strerror(errno));
		return -ENOENT;
	}
	scan_view = view;
	scan_self_netns = netns_inode("/proc/self/ns/net");
	if (nftw(cgroup_root, scan_cgroup, 16, FTW_PHYS) < 0) {
		int err = -errno;
		log_err("cannot walk cgroup tree %s: %s", cgroup_root,
			strerror(errno));
		node_view_free(view);
		return err ? err : -EIO;
	}
	return 0;
}

void node_view_free(struct node_view *view)
{
	free(view->owners);
	free(view->containers);
	view->owners = NULL;
	view->containers = NULL;
	view->count = 0;
	view->ncontainers = 0;
}

const struct netns_owner *node_find_netns(const struct node_view *view,
					  uint32_t netns)
{
	for (size_t i = 0; i < view->count; i++)
		if (view->owners[i].netns == netns)
			return &view->owners[i];
	return NULL;
}
