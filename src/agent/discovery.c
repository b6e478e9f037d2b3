/* The node's discovery document (discovery.h): node_scan's view (pods'
 * cgroups -> processes -> netns) joined with rtnetlink link dumps of the
 * node's netns and of each pod's netns (pod eth0 -> its peer, the host
 * veth -> its bridge; the VXLAN device -> its lower device, the uplink). */
#include "agent/discovery.h"
#include "agent/netdev.h"
#include "lib/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *dev_json(const struct netdev *d)
{
	return json_pack("{s:s, s:i}", "name", d->name, "ifindex", d->ifindex);
}

static json_t *comm_of(uint32_t pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	f = fopen(path, "r");
	if (!f)
		return json_string(""); /* exited since the scan */
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	return json_string(comm);
}

/* The pod's eth0 (else its first veth) names its peer's ifindex in the
 * node's netns: the host veth, whose master is the bridge. */
static void add_veths(json_t *pod, uint32_t pid, const struct netdev *devs,
		      size_t ndevs)
{
	char ns[64];
	struct netdev *pdevs = NULL;
	size_t npdevs = 0, i;
	int err;

	snprintf(ns, sizeof(ns), "/proc/%u/ns/net", pid);
	err = netdev_list(ns, &pdevs, &npdevs);
	if (err) {
		/* The pod left between the scan and now (a move, a delete):
		 * reported without its veth; the next rediscovery drops it. */
		log_info("discovery: pod %s left while we looked (netns of pid "
			 "%u: %s)",
			 json_string_value(json_object_get(pod, "uid")), pid,
			 strerror(-err));
		return;
	}
	const struct netdev *eth0 = netdev_by_name(pdevs, npdevs, "eth0");
	for (i = 0; i < npdevs && !eth0; i++)
		if (!strcmp(pdevs[i].kind, "veth"))
			eth0 = &pdevs[i];
	if (eth0) {
		json_object_set_new(pod, "pod_veth", dev_json(eth0));
		const struct netdev *host = netdev_by_index(devs, ndevs, eth0->link);
		if (host) {
			json_object_set_new(pod, "host_veth", dev_json(host));
			const struct netdev *br =
				netdev_by_index(devs, ndevs, host->master);
			if (br)
				json_object_set_new(pod, "bridge", dev_json(br));
		}
	}
	free(pdevs);
}

static json_t *pod_entry(json_t *pods, const char *uid)
{
	size_t i;
	json_t *p;

	json_array_foreach(pods, i, p)
		if (!strcmp(json_string_value(json_object_get(p, "uid")), uid))
			return p;
	p = json_pack("{s:s, s:[]}", "uid", uid, "containers");
	json_array_append_new(pods, p);
	return p;
}

static int cmp_uid(const void *a, const void *b)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "uid")),
		      json_string_value(json_object_get(*(json_t *const *)b, "uid")));
}

json_t *discovery_build(const char *node, const char *cgroup_root,
			const char *netns_path, const struct node_view *view)
{
	struct node_view own = { 0 };
	struct netdev *devs = NULL;
	size_t ndevs = 0, i;
	json_t *doc = NULL;
	int err;

	if (!view) {
		if (node_scan(cgroup_root, netns_path, &own))
			return NULL;
		view = &own;
	}
	err = netdev_list(netns_path, &devs, &ndevs);
	if (err) {
		log_warn("discovery: cannot list the links of %s: %s",
			 netns_path, strerror(-err));
		goto out;
	}
	doc = json_pack("{s:s, s:s, s:s, s:I}", "node", node, "cgroup_root",
			cgroup_root, "netns_path", netns_path, "netns",
			(json_int_t)view->node_netns);
	/* The node's side: the pods' bridge (flannel's cni0; else the first
	 * bridge), the overlay's VXLAN device and the uplink under it. */
	const struct netdev *br = netdev_by_name(devs, ndevs, "cni0");
	for (i = 0; i < ndevs && !br; i++)
		if (!strcmp(devs[i].kind, "bridge"))
			br = &devs[i];
	if (br)
		json_object_set_new(doc, "bridge", dev_json(br));
	for (i = 0; i < ndevs; i++) {
		const struct netdev *vx = &devs[i];
		if (strcmp(vx->kind, "vxlan"))
			continue;
		json_object_set_new(doc, "vxlan",
				    json_pack("{s:s, s:i, s:i, s:i}", "name",
					      vx->name, "ifindex", vx->ifindex,
					      "vni", (int)vx->vni, "port",
					      (int)vx->port));
		const struct netdev *up = netdev_by_index(devs, ndevs, vx->link);
		if (up)
			json_object_set_new(doc, "uplink", dev_json(up));
		break;
	}

	json_t *pods = json_array();
	for (i = 0; i < view->count; i++) {
		const struct netns_owner *o = &view->owners[i];
		if (!o->pod_uid[0])
			continue; /* a netns of no pod (a host daemon's) */
		json_t *p = pod_entry(pods, o->pod_uid);
		if (json_object_get(p, "netns"))
			continue; /* one netns per pod; the first holds */
		char path[64];
		snprintf(path, sizeof(path), "/proc/%u/ns/net", o->pid);
		json_object_set_new(p, "netns", json_integer(o->netns));
		json_object_set_new(p, "netns_path", json_string(path));
		json_object_set_new(p, "pid", json_integer(o->pid));
		json_object_set_new(p, "comm", comm_of(o->pid));
		add_veths(p, o->pid, devs, ndevs);
	}
	for (i = 0; i < view->ncontainers; i++) {
		const struct pod_container *c = &view->containers[i];
		json_t *p = pod_entry(pods, c->pod_uid);
		json_t *pids = json_array();
		for (uint32_t k = 0; k < c->npids; k++)
			json_array_append_new(pids, json_integer(c->pids[k]));
		json_array_append_new(
			json_object_get(p, "containers"),
			json_pack("{s:s, s:I, s:o, s:o, s:I}", "id",
				  c->container_id, "pid", (json_int_t)c->pids[0],
				  "comm", comm_of(c->pids[0]), "pids", pids,
				  "processes", (json_int_t)c->nprocs));
	}
	/* Sorted by uid: two scans of the same node give equal documents, so
	 * the agent can tell a change from a heartbeat with json_equal. */
	size_t n = json_array_size(pods);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	json_t *sorted = json_array();
	if (v) {
		for (i = 0; i < n; i++)
			v[i] = json_array_get(pods, i);
		qsort(v, n, sizeof(*v), cmp_uid);
		for (i = 0; i < n; i++)
			json_array_append(sorted, v[i]);
		free(v);
	}
	json_decref(pods);
	json_object_set_new(doc, "pods", sorted);
out:
	free(devs);
	node_view_free(&own);
	return doc;
}

const json_t *discovery_pod(const json_t *doc, const char *uid)
{
	size_t i;
	json_t *p;

	json_array_foreach(json_object_get(doc, "pods"), i, p)
		if (json_is_string(json_object_get(p, "uid")) &&
		    !strcmp(json_string_value(json_object_get(p, "uid")), uid))
			return p;
	return NULL;
}

/* ---- what the server accepts */

static int bad(char *err, size_t len, const char *what)
{
	snprintf(err, len, "%s", what);
	return -EINVAL;
}

/* An optional {"name": string, "ifindex": integer} (vxlan: and vni, port). */
static int bad_dev(const json_t *d, bool vxlan, char *err, size_t len,
		   const char *what)
{
	char msg[160];

	if (!d)
		return 0;
	snprintf(msg, sizeof(msg), "%s: an object with \"name\" (string) and "
		 "\"ifindex\" (integer)%s", what,
		 vxlan ? ", \"vni\" and \"port\" (integers)" : "");
	if (!json_is_object(d) || !json_is_string(json_object_get(d, "name")) ||
	    !json_is_integer(json_object_get(d, "ifindex")))
		return bad(err, len, msg);
	if (vxlan && (!json_is_integer(json_object_get(d, "vni")) ||
		      !json_is_integer(json_object_get(d, "port"))))
		return bad(err, len, msg);
	return 0;
}

static bool bad_int(const json_t *v, bool required)
{
	if (!v)
		return required;
	return !json_is_integer(v) || json_integer_value(v) < 0;
}

int discovery_check(const json_t *doc, const char *node, char *err,
		    size_t errlen)
{
	const json_t *agent = json_object_get(doc, "agent");
	const json_t *pods = json_object_get(doc, "pods");
	const char *dn = json_string_value(json_object_get(doc, "node"));
	size_t i;
	json_t *p;

	if (!json_is_object(doc))
		return bad(err, errlen, "the document must be a JSON object");
	if (!dn || strcmp(dn, node))
		return bad(err, errlen, "\"node\" must be the node named in the "
			   "path");
	if (bad_int(json_object_get(doc, "time_ns"), true) ||
	    !json_integer_value(json_object_get(doc, "time_ns")))
		return bad(err, errlen, "\"time_ns\" (UTC ns, integer) is "
			   "required");
	if (!json_is_object(agent) ||
	    !json_is_string(json_object_get(agent, "instance")) ||
	    bad_int(json_object_get(agent, "heartbeat_ns"), false))
		return bad(err, errlen, "\"agent\" must be an object with "
			   "\"instance\" (string) and \"heartbeat_ns\" "
			   "(integer)");
	if (bad_int(json_object_get(doc, "netns"), false))
		return bad(err, errlen, "\"netns\" must be an inode number");
	if (bad_dev(json_object_get(doc, "bridge"), false, err, errlen, "bridge") ||
	    bad_dev(json_object_get(doc, "vxlan"), true, err, errlen, "vxlan") ||
	    bad_dev(json_object_get(doc, "uplink"), false, err, errlen, "uplink"))
		return -EINVAL;
	if (!json_is_array(pods))
		return bad(err, errlen, "\"pods\" must be an array");
	json_array_foreach(pods, i, p) {
		const char *uid = json_string_value(json_object_get(p, "uid"));
		if (!json_is_object(p) || !uid || !*uid || strlen(uid) >= 64)
			return bad(err, errlen, "every pod needs \"uid\" (a "
				   "string of 1 to 63 bytes)");
		if (bad_int(json_object_get(p, "netns"), false) ||
		    bad_int(json_object_get(p, "pid"), false))
			return bad(err, errlen, "a pod's \"netns\" and \"pid\" "
				   "must be non-negative integers");
		const json_t *cs = json_object_get(p, "containers");
		if (cs && !json_is_array(cs))
			return bad(err, errlen, "a pod's \"containers\" must be "
				   "an array");
		size_t j;
		json_t *c;
		json_array_foreach(cs, j, c)
			if (!json_is_string(json_object_get(c, "id")) ||
			    bad_int(json_object_get(c, "pid"), false))
				return bad(err, errlen, "a container needs \"id\" "
					   "(string) and \"pid\" (integer)");
		if (bad_dev(json_object_get(p, "pod_veth"), false, err, errlen,
			    "pod_veth") ||
		    bad_dev(json_object_get(p, "host_veth"), false, err, errlen,
			    "host_veth") ||
		    bad_dev(json_object_get(p, "bridge"), false, err, errlen,
			    "a pod's bridge"))
			return -EINVAL;
	}
	return 0;
}
