/* `sonde topology`: the full-stack chain of every pod, as seed 000's Fig. 5:
 *
 *   service -> pod -> container -> process -> netns -> veth (pod side)
 *   -> veth (host side) -> bridge -> VXLAN -> uplink -> node
 *
 * The first half comes from the Kubernetes API (list + watch through the
 * k8s client library), the second from node discovery: cgroups give each
 * pod's processes and network namespace (agent/node.c), rtnetlink gives the
 * devices (agent/netdev.c), both in one document per node
 * (agent/discovery.c). Discovery runs here for the nodes whose namespaces
 * this host can see (every lab node; the local node on a real cluster);
 * the server joins the documents its agents report with the same code
 * (topology_doc). `--watch` prints the API's events instead, as JSON
 * lines. */
#include "agent/discovery.h"
#include "cmds.h"
#include "cli/topology.h"
#include "k8s/k8s.h"
#include "k8s/plan.h"
#include "lib/httpget.h"
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

/* A node's discovery (agent/discovery.h): built here for the nodes whose
 * namespaces this host can see, or reported by the node's agent to the
 * server. */
struct node_disc {
	char name[256];
	json_t *doc;	  /* NULL: not discovered */
	bool stale;	  /* its agent stopped reporting */
	json_t *agent;	  /* the reporting agent (server only) */
};

/* Where a node's namespaces are visible from here: a lab node names its
 * netns in an annotation and has its cgroup subtree; the node this runs on
 * is the host's own namespace and cgroup mount. */
static void discover_node(struct node_disc *d, const json_t *node)
{
	char cg2[PATH_MAX], host[256] = "", netns_path[PATH_MAX];
	char cgroup_root[PATH_MAX + 300];
	const json_t *ann = json_object_get(json_object_get(node, "metadata"), "annotations");
	const char *ns = json_string_value(json_object_get(ann, "sonde.dev/netns")) ?: "";
	if (sys_cgroup2_mount(cg2, sizeof(cg2)))
		return;
	gethostname(host, sizeof(host) - 1);
	if (*ns) {
		snprintf(netns_path, sizeof(netns_path), "/run/netns/%s", ns);
		snprintf(cgroup_root, sizeof(cgroup_root), "%s/sonde-lab/%s",
			 cg2, d->name);
		if (access(netns_path, R_OK) || access(cgroup_root, R_OK))
			return;
	} else if (!strcmp(host, d->name)) {
		snprintf(netns_path, sizeof(netns_path), "/proc/self/ns/net");
		snprintf(cgroup_root, sizeof(cgroup_root), "%s", cg2);
	} else {
		return;
	}
	d->doc = discovery_build(d->name, cgroup_root, netns_path, NULL);
}

static json_t *chain_dev(const json_t *from, const char *key)
{
	json_t *dev = json_object_get(from, key);
	return dev ? json_deep_copy(dev) : NULL;
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
	if (!d || !d->doc) {
		json_object_set_new(chain, "discovered", json_false());
		return chain;
	}
	json_object_set_new(chain, "discovered", json_true());
	if (d->stale)
		json_object_set_new(chain, "stale", json_true());
	const json_t *dp = discovery_pod(d->doc, uid);
	if (!dp)
		return chain;
	/* The process: the first of the API's container, else the one that
	 * holds the pod's netns. */
	const json_t *proc = json_object_get(dp, "pid") ? dp : NULL;
	json_t *c;
	json_array_foreach(json_object_get(dp, "containers"), i, c)
		if (*cid && !strcmp(jstr(c, "id"), cid))
			proc = c;
	if (proc)
		json_object_set_new(chain, "process",
				    json_pack("{s:O, s:s}", "pid",
					      json_object_get(proc, "pid"), "comm",
					      jstr(proc, "comm")));
	if (!json_object_get(dp, "netns"))
		return chain;
	json_object_set(chain, "netns", json_object_get(dp, "netns"));
	static const char *const pod_devs[] = { "pod_veth", "host_veth", "bridge" };
	for (i = 0; i < 3; i++) {
		json_t *dev = chain_dev(dp, pod_devs[i]);
		if (dev)
			json_object_set_new(chain, pod_devs[i], dev);
	}
	json_t *vx = chain_dev(d->doc, "vxlan"), *up = chain_dev(d->doc, "uplink");
	if (vx)
		json_object_set_new(chain, "vxlan", vx);
	if (up)
		json_object_set_new(chain, "uplink", up);
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
		     const json_t *knodes, bool discover, const json_t *reports)
{
	size_t nnodes = json_array_size(knodes);
	struct node_disc *nodes = calloc(nnodes ? nnodes : 1, sizeof(*nodes));
	for (size_t i = 0; i < nnodes; i++) {
		const json_t *kn = json_array_get(knodes, i);
		snprintf(nodes[i].name, sizeof(nodes[i].name), "%s", jstr(kn, "metadata.name"));
		const json_t *r = json_object_get(reports, nodes[i].name);
		if (discover) {
			discover_node(&nodes[i], kn);
		} else if (json_is_object(json_object_get(r, "discovery"))) {
			nodes[i].doc = json_incref(json_object_get(r, "discovery"));
			nodes[i].stale = json_is_true(json_object_get(r, "stale"));
			nodes[i].agent = json_pack(
				"{s:O?, s:O?, s:O?, s:b}", "instance",
				json_object_get(json_object_get(nodes[i].doc, "agent"), "instance"),
				"time_ns", json_object_get(nodes[i].doc, "time_ns"),
				"received_ns", json_object_get(r, "received_ns"),
				"stale", nodes[i].stale);
		}
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
		json_t *no = json_pack("{s:s, s:s, s:s, s:b}", "name", nodes[i].name,
				       "ip", jstr(addr, "address"), "pod_cidr",
				       jstr(kn, "spec.podCIDR"), "discovered",
				       nodes[i].doc != NULL);
		/* The node's half of every chain on it, and who reported it. */
		static const char *const node_devs[] = { "bridge", "vxlan", "uplink" };
		for (size_t k = 0; k < 3; k++) {
			json_t *dev = chain_dev(nodes[i].doc, node_devs[k]);
			if (dev)
				json_object_set_new(no, node_devs[k], dev);
		}
		if (nodes[i].agent) {
			json_object_set_new(no, "stale", json_boolean(nodes[i].stale));
			json_object_set_new(no, "agent", nodes[i].agent);
		}
		json_array_append_new(nodes_out, no);
	}
	for (size_t i = 0; i < nnodes; i++)
		json_decref(nodes[i].doc);
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
		/* The server builds the same document from its informers'
		 * cache and the agents' discovery reports. */
		return print_doc(http_get_json(
			server, "/v1/topology",
			opt_token ? opt_token : getenv("SONDE_TOKEN"),
			(long)(opt_timeout_ns / 1000000)));
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
	json_t *doc = topology_doc(pods, services, knodes, true, NULL);
	json_decref(pods);
	json_decref(services);
	json_decref(knodes);
	return print_doc(doc);
}
