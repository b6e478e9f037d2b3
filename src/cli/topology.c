/* `sonde topology`: the full-stack chain of every pod, as seed 000's Fig. 5:
 *
 *   service -> pod -> container -> process -> netns -> veth (pod side)
 *   -> veth (host side) -> bridge -> VXLAN -> uplink -> node
 *
 * The first half comes from the Kubernetes API (list + watch through the
 * k8s client library), the second from node discovery: cgroups give each
 * pod's processes and network namespace (agent/node.c), rtnetlink gives the
 * devices (agent/netdev.c). Discovery runs here for the nodes whose
 * namespaces this host can see (every lab node; the local node on a real
 * cluster, where the rest is the agents' job once they report to the
 * server). `--watch` prints the API's events instead, as JSON lines. */
#include "agent/netdev.h"
#include "agent/node.h"
#include "cmds.h"
#include "cli/topology.h"
#include "k8s/k8s.h"
#include "k8s/plan.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/opts.h"
#include "lib/sys.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *opt_kubeconfig;
static bool opt_in_cluster;
static bool opt_json;
static const char *opt_format = "table";
static bool opt_watch;
static const char *opt_snapshot;
static uint64_t opt_duration_ns;
static uint64_t opt_timeout_ns = 10000000000ULL;
static const char *opt_plan;
static const char *opt_server;
static const char *opt_token;

static const struct opt topo_opts[] = {
	{ "kubeconfig", 'k', OPT_STRING, &opt_kubeconfig, "FILE",
	  "kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)" },
	{ "in-cluster", 0, OPT_FLAG, &opt_in_cluster, NULL,
	  "use the pod's service account ($KUBERNETES_SERVICE_HOST)" },
	{ "json", 'j', OPT_FLAG, &opt_json, NULL, "same as --format json" },
	{ "format", 'f', OPT_STRING, &opt_format, "FMT",
	  "table (default), json or dot (Graphviz)" },
	{ "watch", 'w', OPT_FLAG, &opt_watch, NULL,
	  "print the API's pod, service, endpoints and node events as JSON "
	  "lines until interrupted" },
	{ "duration", 'd', OPT_DURATION, &opt_duration_ns, "DUR",
	  "with --watch: stop after DUR" },
	{ "snapshot", 0, OPT_STRING, &opt_snapshot, "FILE",
	  "with --watch: at exit, write the cached pods (uid, name, node, IP, "
	  "phase) and the client's counters to FILE as JSON" },
	{ "plan", 0, OPT_STRING, &opt_plan, "POLICY",
	  "print the sensor plan (desired sensors per node, with generations) "
	  "for a monitoring policy file (docs/k8s.md); with --watch, print "
	  "each node's new plan as it changes" },
	{ "server", 's', OPT_STRING, &opt_server, "URL",
	  "read the topology from `sonde server`'s GET /v1/topology (its "
	  "controller's informer cache) instead of the API (default: "
	  "$SONDE_SERVER when no --kubeconfig or --in-cluster is given)" },
	{ "token", 0, OPT_STRING, &opt_token, "TOKEN",
	  "with --server: bearer token (default: $SONDE_TOKEN)" },
	{ "timeout", 't', OPT_DURATION, &opt_timeout_ns, "DUR",
	  "give up when the first list takes longer (default 10s)" },
	OPT_END,
};

static const struct cmd_spec topo_spec = {
	"sonde topology", "[OPTIONS]",
	"Show service -> pod -> container -> process -> netns -> veth -> "
	"bridge -> VXLAN -> uplink -> node, from the Kubernetes API and node "
	"discovery.",
	topo_opts,
	"The lab's API: --kubeconfig /run/sonde-lab/kubeconfig (sonde lab up "
	"starts it).",
};

static const char *jstr(const json_t *o, const char *path)
{
	/* "a.b.c" through nested objects */
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	const json_t *cur = o;
	for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && cur;
	     t = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, t);
	return json_string_value(cur) ?: "";
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool pod_ready(const json_t *pod)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(json_object_get(pod, "status"), "conditions"), i, c)
		if (!strcmp(jstr(c, "type"), "Ready"))
			return !strcmp(jstr(c, "status"), "True");
	return false;
}

/* --- --watch --------------------------------------------------------------- */

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

struct watch_ctx {
	struct k8s_client *client;
	json_t *policy; /* NULL: no plan */
	json_t *plan;
	bool synced;
};

static void print_json_line(json_t *line)
{
	char *text = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	pthread_mutex_lock(&out_mu);
	printf("%s\n", text);
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
	free(text);
}

/* Recomputes the plan from the cache and prints the nodes whose desired
 * sensors changed, with their new generation: what the controller would
 * push to those nodes' agents. Runs under the client's lock. */
static pthread_mutex_t plan_mu = PTHREAD_MUTEX_INITIALIZER;

/* Lock order: the client's lock (held by callbacks), then plan_mu. The
 * lists are taken first, so the main thread never holds plan_mu while it
 * waits for the client's lock. */
static void replan(struct watch_ctx *w, bool from_main)
{
	json_t *pods = k8s_client_list(w->client, "pods");
	json_t *svcs = k8s_client_list(w->client, "services");
	pthread_mutex_lock(&plan_mu);
	if (from_main)
		w->synced = true;
	if (!w->synced) {
		pthread_mutex_unlock(&plan_mu);
		json_decref(pods);
		json_decref(svcs);
		return;
	}
	json_t *desired = plan_desired(w->policy, pods, svcs);
	json_t *before = json_deep_copy(w->plan);
	plan_update(w->plan, desired);
	const char *node;
	json_t *entry;
	json_object_foreach(w->plan, node, entry) {
		if (json_equal(entry, json_object_get(before, node)))
			continue;
		json_t *ids = json_array();
		size_t i;
		json_t *s;
		json_array_foreach(json_object_get(entry, "sensors"), i, s)
			json_array_append(ids, json_object_get(s, "id"));
		print_json_line(json_pack("{s:I, s:s, s:s, s:O, s:o}", "time_ns",
					  (json_int_t)realtime_ns(), "resource", "plan",
					  "node", node, "generation",
					  json_object_get(entry, "generation"), "sensors",
					  ids));
	}
	json_decref(before);
	json_decref(desired);
	json_decref(pods);
	json_decref(svcs);
	pthread_mutex_unlock(&plan_mu);
}

static void print_event(void *ctx, const char *resource,
			enum k8s_event_type type, const json_t *obj)
{
	struct watch_ctx *w = ctx;
	json_t *line = json_pack(
		"{s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "time_ns",
		(json_int_t)realtime_ns(), "resource", resource, "type",
		k8s_event_names[type], "namespace",
		jstr(obj, "metadata.namespace"), "name",
		jstr(obj, "metadata.name"), "uid", jstr(obj, "metadata.uid"),
		"resource_version", jstr(obj, "metadata.resourceVersion"));
	if (!strcmp(resource, "pods")) {
		json_object_set_new(line, "node", json_string(jstr(obj, "spec.nodeName")));
		json_object_set_new(line, "ip", json_string(jstr(obj, "status.podIP")));
		json_object_set_new(line, "phase", json_string(jstr(obj, "status.phase")));
		json_object_set_new(line, "ready", json_boolean(pod_ready(obj)));
	}
	print_json_line(line);
	if (w->policy &&
	    (!strcmp(resource, "pods") || !strcmp(resource, "services")))
		replan(w, false);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(jstr(*(json_t *const *)a, "metadata.name"),
		      jstr(*(json_t *const *)b, "metadata.name"));
}

static int write_snapshot(struct k8s_client *c, const char *path)
{
	json_t *pods = k8s_client_list(c, "pods");
	size_t n = json_array_size(pods);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(pods, i);
	qsort(v, n, sizeof(*v), cmp_name);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
			out, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}",
				       "uid", jstr(v[i], "metadata.uid"),
				       "namespace", jstr(v[i], "metadata.namespace"),
				       "name", jstr(v[i], "metadata.name"), "node",
				       jstr(v[i], "spec.nodeName"), "ip",
				       jstr(v[i], "status.podIP"), "phase",
				       jstr(v[i], "status.phase"), "ready",
				       pod_ready(v[i])));
	free(v);
	json_decref(pods);
	struct k8s_stats st;
	k8s_client_stats(c, &st);
	json_t *doc = json_pack(
		"{s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I}}", "pods", out, "stats",
		"lists", (json_int_t)st.lists, "watches", (json_int_t)st.watches,
		"events", (json_int_t)st.events, "bookmarks",
		(json_int_t)st.bookmarks, "gone", (json_int_t)st.gone, "errors",
		(json_int_t)st.errors);
	int rc = json_dump_file(doc, path, JSON_INDENT(1));
	json_decref(doc);
	if (rc)
		log_err("cannot write %s", path);
	return rc ? -EIO : 0;
}

/* --- the topology ------------------------------------------------------------ */

struct node_disc {
	char name[256];
	char netns_path[PATH_MAX];
	char cgroup_root[PATH_MAX + 300];
	bool seen; /* discovery ran */
	struct node_view view;
	struct netdev *devs;
	size_t ndevs;
};

/* Where a node's namespaces are visible from here: a lab node names its
 * netns in an annotation and has its cgroup subtree; the node this runs on
 * is the host's own namespace and cgroup mount. */
static void discover_node(struct node_disc *d, const json_t *node)
{
	char cg2[PATH_MAX], host[256] = "";
	const json_t *ann = json_object_get(json_object_get(node, "metadata"), "annotations");
	const char *ns = json_string_value(json_object_get(ann, "sonde.dev/netns")) ?: "";
	snprintf(d->name, sizeof(d->name), "%s", jstr(node, "metadata.name"));
	if (sys_cgroup2_mount(cg2, sizeof(cg2)))
		return;
	gethostname(host, sizeof(host) - 1);
	if (*ns) {
		snprintf(d->netns_path, sizeof(d->netns_path), "/run/netns/%s", ns);
		snprintf(d->cgroup_root, sizeof(d->cgroup_root), "%s/sonde-lab/%s",
			 cg2, d->name);
		if (access(d->netns_path, R_OK) || access(d->cgroup_root, R_OK))
			return;
	} else if (!strcmp(host, d->name)) {
		snprintf(d->netns_path, sizeof(d->netns_path), "/proc/self/ns/net");
		snprintf(d->cgroup_root, sizeof(d->cgroup_root), "%s", cg2);
	} else {
		return;
	}
	if (node_scan(d->cgroup_root, d->netns_path, &d->view))
		return;
	if (netdev_list(d->netns_path, &d->devs, &d->ndevs)) {
		node_view_free(&d->view);
		return;
	}
	d->seen = true;
}

/* The first process of a container: kubelet's cgroupfs layouts. */
static long container_pid(const char *cgroup_root, const char *uid,
			  const char *cid)
{
	static const char *const qos[] = { "besteffort/", "burstable/", "" };
	char path[PATH_MAX * 2];
	for (size_t i = 0; i < sizeof(qos) / sizeof(qos[0]); i++) {
		snprintf(path, sizeof(path), "%s/kubepods/%spod%s/%s/cgroup.procs",
			 cgroup_root, qos[i], uid, cid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		long pid = 0;
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
		return pid;
	}
	return 0;
}

static json_t *pod_chain(const json_t *pod, json_t *services,
			 struct node_disc *nodes, size_t nnodes)
{
	const char *uid = jstr(pod, "metadata.uid");
	const char *ns = jstr(pod, "metadata.namespace");
	const char *node_name = jstr(pod, "spec.nodeName");
	json_t *svc_names = json_array();
	size_t i;
	json_t *s;

	/* A service selects a pod when every selector label matches. */
	json_array_foreach(services, i, s) {
		if (strcmp(jstr(s, "metadata.namespace"), ns))
			continue;
		const json_t *sel = json_object_get(json_object_get(s, "spec"), "selector");
		const json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");
		if (!json_object_size(sel))
			continue;
		bool all = true;
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)sel, k, v)
			all &= json_equal(v, json_object_get(labels, k));
		if (all)
			json_array_append_new(svc_names, json_string(jstr(s, "metadata.name")));
	}
	const json_t *cs = json_array_get(
		json_object_get(json_object_get(pod, "status"), "containerStatuses"), 0);
	const char *cid_full = jstr(cs, "containerID");
	const char *cid = strstr(cid_full, "://") ? strstr(cid_full, "://") + 3 : cid_full;
	json_t *chain = json_pack(
		"{s:o, s:s, s:s, s:s, s:s, s:s, s:b, s:{s:s, s:s}}", "services",
		svc_names, "namespace", ns, "pod", jstr(pod, "metadata.name"),
		"uid", uid, "ip", jstr(pod, "status.podIP"), "phase",
		jstr(pod, "status.phase"), "ready", pod_ready(pod), "container",
		"name", jstr(cs, "name"), "id", cid);
	json_object_set_new(chain, "node", json_string(node_name));

	struct node_disc *d = NULL;
	for (i = 0; i < nnodes; i++)
		if (!strcmp(nodes[i].name, node_name))
			d = &nodes[i];
	if (!d || !d->seen) {
		json_object_set_new(chain, "discovered", json_false());
		return chain;
	}
	json_object_set_new(chain, "discovered", json_true());
	const struct netns_owner *owner = NULL;
	for (i = 0; i < d->view.count; i++)
		if (!strcmp(d->view.owners[i].pod_uid, uid))
			owner = &d->view.owners[i];
	long pid = *cid ? container_pid(d->cgroup_root, uid, cid) : 0;
	if (!pid && owner)
		pid = owner->pid;
	if (pid) {
		char comm_path[64], comm[64] = "";
		snprintf(comm_path, sizeof(comm_path), "/proc/%ld/comm", pid);
		FILE *f = fopen(comm_path, "r");
		if (f) {
			if (!fgets(comm, sizeof(comm), f))
				comm[0] = '\0';
			fclose(f);
		}
		comm[strcspn(comm, "\n")] = '\0';
		json_object_set_new(chain, "process",
				    json_pack("{s:I, s:s}", "pid", (json_int_t)pid,
					      "comm", comm));
	}
	if (!owner)
		return chain;
	json_object_set_new(chain, "netns", json_integer(owner->netns));
	/* The pod's eth0 names its peer's ifindex in the node's netns. */
	char pod_ns[64];
	snprintf(pod_ns, sizeof(pod_ns), "/proc/%u/ns/net", owner->pid);
	struct netdev *pdevs = NULL;
	size_t npdevs = 0;
	if (netdev_list(pod_ns, &pdevs, &npdevs))
		return chain;
	const struct netdev *eth0 = netdev_by_name(pdevs, npdevs, "eth0");
	if (!eth0) {
		for (i = 0; i < npdevs && !eth0; i++)
			if (!strcmp(pdevs[i].kind, "veth"))
				eth0 = &pdevs[i];
	}
	const struct netdev *host = eth0 ? netdev_by_index(d->devs, d->ndevs, eth0->link) : NULL;
	if (eth0)
		json_object_set_new(chain, "pod_veth",
				    json_pack("{s:s, s:i}", "name", eth0->name,
					      "ifindex", eth0->ifindex));
	if (host) {
		json_object_set_new(chain, "host_veth",
				    json_pack("{s:s, s:i}", "name", host->name,
					      "ifindex", host->ifindex));
		const struct netdev *br = netdev_by_index(d->devs, d->ndevs, host->master);
		if (br)
			json_object_set_new(chain, "bridge",
					    json_pack("{s:s, s:i}", "name", br->name,
						      "ifindex", br->ifindex));
	}
	free(pdevs);
	for (i = 0; i < d->ndevs; i++) {
		const struct netdev *vx = &d->devs[i];
		if (strcmp(vx->kind, "vxlan"))
			continue;
		json_object_set_new(chain, "vxlan",
				    json_pack("{s:s, s:i, s:i, s:i}", "name", vx->name,
					      "ifindex", vx->ifindex, "vni",
					      (int)vx->vni, "port", (int)vx->port));
		const struct netdev *up = netdev_by_index(d->devs, d->ndevs, vx->link);
		if (up)
			json_object_set_new(chain, "uplink",
					    json_pack("{s:s, s:i}", "name", up->name,
						      "ifindex", up->ifindex));
		break;
	}
	return chain;
}

static const char *cname(const json_t *chain, const char *key)
{
	const char *s = json_string_value(json_object_get(json_object_get(chain, key), "name"));
	return s && *s ? s : "-";
}

static void print_table(json_t *chains)
{
	printf("%-12s %-11s %-32s %-8s %-11s %-12s %-18s %-11s %-13s %-6s %-10s %-6s\n",
	       "SERVICE", "NAMESPACE", "POD", "NODE", "IP", "CONTAINER",
	       "PROCESS", "NETNS", "HOST-VETH", "BRIDGE", "VXLAN", "UPLINK");
	size_t i;
	json_t *c;
	json_array_foreach(chains, i, c) {
		char svc[128] = "", proc[64] = "-", netns[32] = "-";
		size_t j;
		json_t *s;
		json_array_foreach(json_object_get(c, "services"), j, s) {
			if (*svc)
				strncat(svc, ",", sizeof(svc) - strlen(svc) - 1);
			strncat(svc, json_string_value(s), sizeof(svc) - strlen(svc) - 1);
		}
		const json_t *p = json_object_get(c, "process");
		if (p)
			snprintf(proc, sizeof(proc), "%s/%lld", jstr(p, "comm"),
				 (long long)json_integer_value(json_object_get(p, "pid")));
		if (json_object_get(c, "netns"))
			snprintf(netns, sizeof(netns), "net:[%lld]",
				 (long long)json_integer_value(json_object_get(c, "netns")));
		printf("%-12s %-11s %-32s %-8s %-11s %-12s %-18s %-11s %-13s %-6s %-10s %-6s\n",
		       *svc ? svc : "-", jstr(c, "namespace"), jstr(c, "pod"),
		       jstr(c, "node"), jstr(c, "ip"), cname(c, "container"),
		       proc, netns, cname(c, "host_veth"), cname(c, "bridge"),
		       cname(c, "vxlan"), cname(c, "uplink"));
	}
}

/* One Graphviz node per entity, edges along each pod's chain. */
static void print_dot(json_t *chains)
{
	printf("digraph sonde_topology {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n");
	size_t i;
	json_t *c;
	json_array_foreach(chains, i, c) {
		const char *node = jstr(c, "node");
		char pod[300], prev[400], cur[400];
		snprintf(pod, sizeof(pod), "pod:%s/%s", jstr(c, "namespace"), jstr(c, "pod"));
		size_t j;
		json_t *s;
		json_array_foreach(json_object_get(c, "services"), j, s)
			printf("  \"svc:%s/%s\" -> \"%s\";\n", jstr(c, "namespace"),
			       json_string_value(s), pod);
		snprintf(prev, sizeof(prev), "%s", pod);
#define HOP(fmt, ...)                                                  \
	do {                                                           \
		snprintf(cur, sizeof(cur), fmt, __VA_ARGS__);          \
		printf("  \"%s\" -> \"%s\";\n", prev, cur);            \
		snprintf(prev, sizeof(prev), "%s", cur);               \
	} while (0)
		if (strcmp(cname(c, "container"), "-"))
			HOP("container:%s/%s", jstr(c, "pod"), cname(c, "container"));
		const json_t *p = json_object_get(c, "process");
		if (p)
			HOP("process:%s/%lld", jstr(p, "comm"),
			    (long long)json_integer_value(json_object_get(p, "pid")));
		if (json_object_get(c, "netns"))
			HOP("netns:%lld", (long long)json_integer_value(json_object_get(c, "netns")));
		if (json_object_get(c, "pod_veth"))
			HOP("veth:%s/%s", jstr(c, "pod"), cname(c, "pod_veth"));
		if (json_object_get(c, "host_veth"))
			HOP("veth:%s/%s", node, cname(c, "host_veth"));
		if (json_object_get(c, "bridge"))
			HOP("bridge:%s/%s", node, cname(c, "bridge"));
		if (json_object_get(c, "vxlan"))
			HOP("vxlan:%s/%s", node, cname(c, "vxlan"));
		if (json_object_get(c, "uplink"))
			HOP("uplink:%s/%s", node, cname(c, "uplink"));
		HOP("node:%s", node);
#undef HOP
	}
	printf("}\n");
}

json_t *topology_doc(const json_t *pods, const json_t *services,
		     const json_t *knodes, bool discover)
{
	size_t nnodes = json_array_size(knodes);
	struct node_disc *nodes = calloc(nnodes ? nnodes : 1, sizeof(*nodes));
	for (size_t i = 0; i < nnodes; i++) {
		const json_t *kn = json_array_get(knodes, i);
		snprintf(nodes[i].name, sizeof(nodes[i].name), "%s", jstr(kn, "metadata.name"));
		if (discover)
			discover_node(&nodes[i], kn);
	}
	size_t n = json_array_size(pods);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(pods, i);
	qsort(v, n, sizeof(*v), cmp_name);
	json_t *chains = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(chains, pod_chain(v[i], (json_t *)services, nodes, nnodes));
	free(v);
	json_t *nodes_out = json_array();
	for (size_t i = 0; i < nnodes; i++) {
		const json_t *kn = json_array_get(knodes, i);
		json_t *addr = json_array_get(json_object_get(json_object_get(kn, "status"), "addresses"), 0);
		json_array_append_new(
			nodes_out,
			json_pack("{s:s, s:s, s:s, s:b}", "name", nodes[i].name,
				  "ip", jstr(addr, "address"), "pod_cidr",
				  jstr(kn, "spec.podCIDR"), "discovered",
				  nodes[i].seen));
	}
	for (size_t i = 0; i < nnodes; i++) {
		node_view_free(&nodes[i].view);
		free(nodes[i].devs);
	}
	free(nodes);
	/* Each service with the pods it selects (the chains' "services",
	 * turned around), so a reader needs no second pass. */
	json_t *svcs_out = json_array();
	size_t i;
	const json_t *sv;
	json_array_foreach(services, i, sv) {
		json_t *names = json_array();
		size_t j;
		json_t *ch;
		json_array_foreach(chains, j, ch) {
			if (strcmp(jstr(ch, "namespace"), jstr(sv, "metadata.namespace")))
				continue;
			size_t k;
			json_t *nm;
			json_array_foreach(json_object_get(ch, "services"), k, nm)
				if (!strcmp(json_string_value(nm), jstr(sv, "metadata.name")))
					json_array_append_new(names, json_string(jstr(ch, "pod")));
		}
		json_t *ports = json_array();
		json_t *pt;
		json_array_foreach(json_object_get(json_object_get(sv, "spec"), "ports"), j, pt)
			json_array_append_new(
				ports, json_pack("{s:s, s:O?, s:s}", "name", jstr(pt, "name"),
						 "port", json_object_get(pt, "port"),
						 "protocol", jstr(pt, "protocol")));
		json_array_append_new(
			svcs_out,
			json_pack("{s:s, s:s, s:s, s:o, s:o}", "namespace",
				  jstr(sv, "metadata.namespace"), "name",
				  jstr(sv, "metadata.name"), "cluster_ip",
				  jstr(sv, "spec.clusterIP"), "ports", ports, "pods", names));
	}
	return json_pack("{s:o, s:o, s:o}", "nodes", nodes_out, "pods", chains,
			 "services", svcs_out);
}

/* Prints a topology document in opt_format; takes the reference. */
static int print_doc(json_t *doc)
{
	if (!doc)
		return 1;
	if (!strcmp(opt_format, "json")) {
		char *text = json_dumps(doc, JSON_INDENT(2));
		printf("%s\n", text);
		free(text);
	} else if (!strcmp(opt_format, "dot")) {
		print_dot(json_object_get(doc, "pods"));
	} else {
		print_table(json_object_get(doc, "pods"));
	}
	json_decref(doc);
	return 0;
}

/* GET SERVER/v1/topology: the same document, built by the server from its
 * informers' cache (no node discovery there: the server does not see the
 * nodes' namespaces). */
static json_t *fetch_doc(const char *server, const char *token)
{
	char url[2048], auth[512];
	struct buf b = { 0 };
	struct curl_slist *hdrs = NULL;
	long status = 0;
	json_t *doc = NULL;
	CURL *curl = curl_easy_init();
	if (!curl)
		return NULL;
	snprintf(url, sizeof(url), "%s/v1/topology", server);
	if (token && token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buf_curl_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
			 (long)(opt_timeout_ns / 1000000));
	CURLcode cc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK)
		log_err("cannot reach the server at %s: %s", server,
			curl_easy_strerror(cc));
	else if (status != 200)
		log_err("%s answered %ld: %s", url, status, b.p ? b.p : "");
	else if (!(doc = json_loads(b.p ? b.p : "", 0, NULL)))
		log_err("%s: not JSON", url);
	free(b.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(curl);
	return doc;
}

int cmd_topology(int argc, char **argv)
{
	int npos = 0, rc = opts_parse(&topo_spec, argc, argv, &npos);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (npos) {
		opts_usage(&topo_spec, stderr);
		return 2;
	}
	if (opt_json)
		opt_format = "json";
	if (strcmp(opt_format, "table") && strcmp(opt_format, "json") &&
	    strcmp(opt_format, "dot")) {
		log_err("--format must be table, json or dot, not '%s'", opt_format);
		return 2;
	}
	const char *server = opt_server;
	if (!server && !opt_kubeconfig && !opt_in_cluster && getenv("SONDE_SERVER") &&
	    *getenv("SONDE_SERVER"))
		server = getenv("SONDE_SERVER");
	if (server && !opt_watch && !opt_plan)
		return print_doc(fetch_doc(server, opt_token ? opt_token
							    : getenv("SONDE_TOKEN")));
	if (opt_server) {
		log_err("--server serves the topology only (not --watch or --plan: "
			"GET /v1/plan has the server's plan)");
		return 2;
	}
	struct watch_ctx wctx = { 0 };
	if (opt_plan) {
		json_error_t jerr;
		char err[256];
		wctx.policy = json_load_file(opt_plan, 0, &jerr);
		if (!wctx.policy) {
			log_err("policy %s: %s (line %d)", opt_plan, jerr.text, jerr.line);
			return 1;
		}
		if (plan_policy_check(wctx.policy, err, sizeof(err))) {
			log_err("policy %s: %s", opt_plan, err);
			json_decref(wctx.policy);
			return 1;
		}
		wctx.plan = json_object();
	}
	struct k8s_config cfg;
	rc = opt_in_cluster ? k8s_config_in_cluster(&cfg, NULL)
			    : k8s_config_load(&cfg, opt_kubeconfig);
	if (rc)
		return 1;
	log_debug("topology: API %s from %s", cfg.server, cfg.source);

	/* Signals are taken by sigwait in this thread: block them before the
	 * client's threads start, so those inherit the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	struct k8s_client *c = k8s_client_new(&cfg, opt_watch ? print_event : NULL, &wctx);
	k8s_config_free(&cfg);
	if (!c)
		return 1;
	wctx.client = c;
	static const char *const resources[] = { "nodes", "pods", "services", "endpoints" };
	for (size_t i = 0; i < 4; i++)
		k8s_client_watch(c, resources[i], NULL, NULL);
	k8s_client_start(c);
	if (k8s_client_wait_synced(c, (int)(opt_timeout_ns / 1000000))) {
		log_err("the Kubernetes API did not answer the first list within "
			"%llu ms (is it up? sonde lab api status)",
			(unsigned long long)(opt_timeout_ns / 1000000));
		k8s_client_free(c);
		return 1;
	}
	if (wctx.policy && opt_watch) {
		/* The first plan, once every list is in; twice, for an event
		 * that came between the first's lists and its plan. */
		replan(&wctx, true);
		replan(&wctx, true);
	}
	if (wctx.policy && !opt_watch) {
		json_t *pods = k8s_client_list(c, "pods");
		json_t *svcs = k8s_client_list(c, "services");
		json_t *desired = plan_desired(wctx.policy, pods, svcs);
		plan_update(wctx.plan, desired);
		char *text = json_dumps(wctx.plan, JSON_INDENT(2) | JSON_SORT_KEYS);
		printf("%s\n", text);
		free(text);
		json_decref(desired);
		json_decref(pods);
		json_decref(svcs);
		json_decref(wctx.plan);
		json_decref(wctx.policy);
		k8s_client_free(c);
		return 0;
	}
	if (opt_watch) {
		struct timespec ts = { 3600 * 24 * 365, 0 };
		if (opt_duration_ns) {
			ts.tv_sec = (time_t)(opt_duration_ns / 1000000000ULL);
			ts.tv_nsec = (long)(opt_duration_ns % 1000000000ULL);
		}
		sigtimedwait(&sigs, NULL, &ts);
		rc = 0;
		if (opt_snapshot)
			rc = write_snapshot(c, opt_snapshot) ? 1 : 0;
		k8s_client_free(c);
		json_decref(wctx.plan);
		json_decref(wctx.policy);
		return rc;
	}

	json_t *pods = k8s_client_list(c, "pods");
	json_t *services = k8s_client_list(c, "services");
	json_t *knodes = k8s_client_list(c, "nodes");
	k8s_client_free(c);
	json_t *doc = topology_doc(pods, services, knodes, true);
	json_decref(pods);
	json_decref(services);
	json_decref(knodes);
	return print_doc(doc);
}
