/* The lab's state (state.json, written by lab/lab.sh) as Kubernetes v1
 * objects: what a real API server would hold for the same cluster. Pure
 * functions of the state, so the API stand-in can diff two states into
 * watch events, and a unit test can check the shapes real clients need. */
#include "lab/kobj.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

const char *const kobj_resource_names[KOBJ_N] = {
	[KOBJ_NODE] = "nodes",	       [KOBJ_NAMESPACE] = "namespaces",
	[KOBJ_POD] = "pods",	       [KOBJ_SERVICE] = "services",
	[KOBJ_ENDPOINTS] = "endpoints",
};
const char *const kobj_kind_names[KOBJ_N] = {
	[KOBJ_NODE] = "Node",	    [KOBJ_NAMESPACE] = "Namespace",
	[KOBJ_POD] = "Pod",	    [KOBJ_SERVICE] = "Service",
	[KOBJ_ENDPOINTS] = "Endpoints",
};

int kobj_resource_parse(const char *name)
{
	static const char *const short_names[KOBJ_N] = { "no", "ns", "po",
							  "svc", "ep" };
	for (int r = 0; r < KOBJ_N; r++)
		if (!strcmp(name, kobj_resource_names[r]) ||
		    !strcmp(name, short_names[r]))
			return r;
	return -1;
}

bool kobj_namespaced(enum kobj_resource r)
{
	return r == KOBJ_POD || r == KOBJ_SERVICE || r == KOBJ_ENDPOINTS;
}

/* Objects the lab does not name itself (nodes, services ...) still need a
 * stable uid: derived from the cluster's creation time and the object's
 * key, so it is the same across API stand-in restarts of one lab and
 * different for the next lab. */
static void stable_uid(const char *seed, const char *key, char out[37])
{
	uint64_t h1 = 1469598103934665603ULL, h2 = 0x9e3779b97f4a7c15ULL;
	for (const char *s = seed; *s; s++)
		h1 = (h1 ^ (unsigned char)*s) * 1099511628211ULL;
	for (const char *s = key; *s; s++) {
		h1 = (h1 ^ (unsigned char)*s) * 1099511628211ULL;
		h2 = (h2 ^ (unsigned char)*s) * 0x100000001b3ULL + (h1 >> 17);
	}
	snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012llx",
		 (unsigned)(h1 >> 32), (unsigned)(h1 >> 16) & 0xffff,
		 (unsigned)h1 & 0xfff, (unsigned)(h2 >> 52) & 0xfff,
		 (unsigned long long)(h2 & 0xffffffffffffULL));
}

static const char *str(const json_t *obj, const char *key, const char *def)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : def;
}

static json_t *meta(const char *name, const char *ns, const char *uid,
		    const char *created)
{
	json_t *m = json_pack("{s:s, s:s, s:s}", "name", name, "uid", uid,
			      "creationTimestamp", created);
	if (ns)
		json_object_set_new(m, "namespace", json_string(ns));
	return m;
}

static json_t *object(enum kobj_resource r, json_t *metadata)
{
	return json_pack("{s:s, s:s, s:o}", "kind", kobj_kind_names[r],
			 "apiVersion", "v1", "metadata", metadata);
}

static void add(json_t *out, enum kobj_resource r, json_t *obj)
{
	json_array_append_new(json_object_get(out, kobj_resource_names[r]),
			      obj);
}

static const json_t *find_node(const json_t *state, const char *name)
{
	size_t i;
	json_t *n;
	json_array_foreach(json_object_get(state, "nodes"), i, n)
		if (!strcmp(str(n, "name", ""), name))
			return n;
	return NULL;
}

static const json_t *find_pod(const json_t *state, const char *name)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(state, "pods"), i, p)
		if (!strcmp(str(p, "name", ""), name))
			return p;
	return NULL;
}

/* A pod is Ready unless the lab says otherwise: `lab move` writes a new pod
 * with "ready": false first, then true once it answers its probe. */
static bool pod_ready(const json_t *p)
{
	json_t *r = json_object_get(p, "ready");
	return !r || json_is_true(r);
}

static json_t *node_object(const json_t *state, const json_t *n)
{
	const char *name = str(n, "name", "");
	const char *created = str(state, "created", "1970-01-01T00:00:00Z");
	char uid[37], backend[160];

	stable_uid(created, name, uid);
	json_t *m = meta(name, NULL, uid, created);
	json_object_set_new(m, "labels",
			    json_pack("{s:s, s:s, s:s, s:s}",
				      "kubernetes.io/hostname", name,
				      "kubernetes.io/os", "linux",
				      "kubernetes.io/arch", "amd64",
				      "sonde.dev/lab", "true"));
	snprintf(backend, sizeof(backend), "{\"VNI\":%lld,\"VtepMAC\":\"%s\"}",
		 (long long)json_integer_value(json_object_get(n, "vxlan_vni")),
		 str(n, "vtep_mac", ""));
	/* flannel's own annotations: where a controller finds the VTEP. */
	json_object_set_new(
		m, "annotations",
		json_pack("{s:s, s:s, s:s, s:s}",
			  "flannel.alpha.coreos.com/backend-type", "vxlan",
			  "flannel.alpha.coreos.com/backend-data", backend,
			  "flannel.alpha.coreos.com/public-ip", str(n, "ip", ""),
			  "sonde.dev/netns", str(n, "netns", "")));
	json_t *o = object(KOBJ_NODE, m);
	json_object_set_new(o, "spec",
			    json_pack("{s:s, s:[s]}", "podCIDR",
				      str(n, "pod_cidr", ""), "podCIDRs",
				      str(n, "pod_cidr", "")));
	json_t *info = json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
		"machineID", uid, "systemUUID", uid, "bootID", uid,
		"kernelVersion", "lab", "osImage", "sonde lab",
		"containerRuntimeVersion", "sonde-lab://1", "kubeletVersion",
		"v1.28.0-sonde-lab", "kubeProxyVersion", "v1.28.0-sonde-lab",
		"operatingSystem", "linux", "architecture", "amd64");
	json_object_set_new(
		o, "status",
		json_pack("{s:[{s:s, s:s}, {s:s, s:s}], s:[{s:s, s:s, s:s, s:s, s:s, s:s}], s:o}",
			  "addresses", "type", "InternalIP", "address",
			  str(n, "ip", ""), "type", "Hostname", "address", name,
			  "conditions", "type", "Ready", "status", "True",
			  "reason", "KubeletReady", "message",
			  "kubelet is posting ready status", "lastHeartbeatTime",
			  created, "lastTransitionTime", created, "nodeInfo",
			  info));
	return o;
}

static json_t *pod_object(const json_t *state, const json_t *p)
{
	const char *name = str(p, "name", ""), *created = str(p, "created", "");
	const char *node = str(p, "node", ""), *wl = str(p, "workload", "");
	const json_t *n = find_node(state, node);
	bool ready = pod_ready(p);
	char rs[256], hash[64] = "", image[128], cid[80], rs_uid[37];

	/* Pod names are <deployment>-<template hash>-<suffix>: the ReplicaSet
	 * that owns the pod is the name without the suffix. */
	snprintf(rs, sizeof(rs), "%s", name);
	char *dash = strrchr(rs, '-');
	if (dash)
		*dash = '\0';
	if (strlen(rs) > strlen(wl) + 1)
		snprintf(hash, sizeof(hash), "%s", rs + strlen(wl) + 1);
	stable_uid(str(state, "created", ""), rs, rs_uid);
	snprintf(image, sizeof(image), "sonde-lab/%s:latest",
		 str(p, "container", wl));
	snprintf(cid, sizeof(cid), "containerd://%s", str(p, "container_id", ""));

	json_t *m = meta(name, str(p, "namespace", "default"),
			 str(p, "uid", ""), created);
	json_t *labels = json_deep_copy(json_object_get(p, "labels"));
	if (!labels)
		labels = json_object();
	if (*hash)
		json_object_set_new(labels, "pod-template-hash", json_string(hash));
	json_object_set_new(m, "labels", labels);
	char gen[260];
	snprintf(gen, sizeof(gen), "%s-", rs);
	json_object_set_new(m, "generateName", json_string(gen));
	json_object_set_new(
		m, "ownerReferences",
		json_pack("[{s:s, s:s, s:s, s:s, s:b, s:b}]", "apiVersion",
			  "apps/v1", "kind", "ReplicaSet", "name", rs, "uid",
			  rs_uid, "controller", 1, "blockOwnerDeletion", 1));
	json_object_set_new(m, "annotations",
			    json_pack("{s:s, s:s}", "sonde.dev/netns",
				      str(p, "netns", ""), "sonde.dev/host-veth",
				      str(p, "host_veth", "")));

	json_t *cports = json_array();
	size_t i;
	json_t *port;
	json_array_foreach(json_object_get(p, "ports"), i, port)
		json_array_append_new(
			cports, json_pack("{s:I, s:s}", "containerPort",
					  (json_int_t)json_integer_value(port),
					  "protocol",
					  !strcmp(wl, "coredns") ? "UDP" : "TCP"));
	json_t *o = object(KOBJ_POD, m);
	json_object_set_new(
		o, "spec",
		json_pack("{s:s, s:[{s:s, s:s, s:o}], s:s, s:s, s:s}",
			  "nodeName", node, "containers", "name",
			  str(p, "container", wl), "image", image, "ports",
			  cports, "restartPolicy", "Always", "schedulerName",
			  "default-scheduler", "dnsPolicy", "ClusterFirst"));

	const char *rstatus = ready ? "True" : "False";
	json_t *running = json_pack("{s:{s:s}}", "running", "startedAt", created);
	json_t *waiting = json_pack("{s:{s:s}}", "waiting", "reason",
				    "ContainerCreating");
	json_t *status = json_pack(
		"{s:s, s:s, s:[{s:s}], s:s, s:[{s:s}], s:s, s:s, "
		"s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:s}], "
		"s:[{s:s, s:s, s:s, s:s, s:b, s:b, s:i, s:o}]}",
		"phase", ready ? "Running" : "Pending", "podIP",
		str(p, "ip", ""), "podIPs", "ip", str(p, "ip", ""), "hostIP",
		n ? str(n, "ip", "") : "", "hostIPs", "ip",
		n ? str(n, "ip", "") : "", "startTime", created, "qosClass",
		"BestEffort", "conditions", "type", "Initialized", "status",
		"True", "lastTransitionTime", created, "type", "Ready", "status",
		rstatus, "lastTransitionTime", created, "type",
		"ContainersReady", "status", rstatus, "lastTransitionTime",
		created, "type", "PodScheduled", "status", "True",
		"lastTransitionTime", created, "containerStatuses", "name",
		str(p, "container", wl), "image", image, "imageID", image,
		"containerID", cid, "ready", ready, "started", ready,
		"restartCount", 0, "state", ready ? running : waiting);
	json_decref(ready ? waiting : running);
	json_object_set_new(o, "status", status);
	return o;
}

static json_t *service_object(const json_t *state, const json_t *s)
{
	const char *ns = str(s, "namespace", "default"), *name = str(s, "name", "");
	const char *created = str(state, "created", "");
	char key[300], uid[37];

	snprintf(key, sizeof(key), "svc/%s/%s", ns, name);
	stable_uid(created, key, uid);
	json_t *ports = json_array();
	size_t i;
	json_t *port;
	json_array_foreach(json_object_get(s, "ports"), i, port)
		json_array_append_new(
			ports,
			json_pack("{s:s, s:I, s:I, s:s}", "name",
				  str(port, "name", ""), "port",
				  (json_int_t)json_integer_value(
					  json_object_get(port, "port")),
				  "targetPort",
				  (json_int_t)json_integer_value(
					  json_object_get(port, "target_port")),
				  "protocol", str(port, "protocol", "TCP")));
	json_t *sel = json_deep_copy(json_object_get(s, "selector"));
	json_t *o = object(KOBJ_SERVICE, meta(name, ns, uid, created));
	json_object_set_new(
		o, "spec",
		json_pack("{s:s, s:s, s:[s], s:o, s:o, s:s, s:s}", "type",
			  "ClusterIP", "clusterIP", str(s, "cluster_ip", ""),
			  "clusterIPs", str(s, "cluster_ip", ""), "ports", ports,
			  "selector", sel ? sel : json_object(),
			  "sessionAffinity", "None", "internalTrafficPolicy",
			  "Cluster"));
	json_object_set_new(o, "status", json_pack("{s:{}}", "loadBalancer"));
	return o;
}

/* Endpoints as the endpoints controller writes them: one subset with every
 * ready address and every not-ready one, the service's ports by name. */
static json_t *endpoints_object(const json_t *state, const json_t *s)
{
	const char *ns = str(s, "namespace", "default"), *name = str(s, "name", "");
	const char *created = str(state, "created", "");
	char key[300], uid[37];

	snprintf(key, sizeof(key), "ep/%s/%s", ns, name);
	stable_uid(created, key, uid);
	json_t *ready = json_array(), *not_ready = json_array();
	size_t i;
	json_t *ep, *port;
	json_array_foreach(json_object_get(s, "endpoints"), i, ep) {
		const json_t *pod = find_pod(state, str(ep, "pod", ""));
		json_t *addr = json_pack(
			"{s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "ip",
			str(ep, "ip", ""), "nodeName", str(ep, "node", ""),
			"targetRef", "kind", "Pod", "namespace", ns, "name",
			str(ep, "pod", ""), "uid",
			pod ? str(pod, "uid", "") : "");
		json_array_append_new(pod && !pod_ready(pod) ? not_ready : ready,
				      addr);
	}
	json_t *ports = json_array();
	json_array_foreach(json_object_get(s, "ports"), i, port)
		json_array_append_new(
			ports, json_pack("{s:s, s:I, s:s}", "name",
					 str(port, "name", ""), "port",
					 (json_int_t)json_integer_value(
						 json_object_get(port, "target_port")),
					 "protocol", str(port, "protocol", "TCP")));
	json_t *o = object(KOBJ_ENDPOINTS, meta(name, ns, uid, created));
	json_t *subsets = json_array();
	if (json_array_size(ready) || json_array_size(not_ready)) {
		json_t *sub = json_object();
		if (json_array_size(ready))
			json_object_set(sub, "addresses", ready);
		if (json_array_size(not_ready))
			json_object_set(sub, "notReadyAddresses", not_ready);
		json_object_set(sub, "ports", ports);
		json_array_append_new(subsets, sub);
	}
	json_decref(ready);
	json_decref(not_ready);
	json_decref(ports);
	json_object_set_new(o, "subsets", subsets);
	return o;
}

static void add_namespace(json_t *out, json_t *seen, const json_t *state,
			  const char *ns)
{
	char key[300], uid[37];
	const char *created = str(state, "created", "");

	if (!ns || json_object_get(seen, ns))
		return;
	json_object_set_new(seen, ns, json_true());
	snprintf(key, sizeof(key), "ns/%s", ns);
	stable_uid(created, key, uid);
	json_t *m = meta(ns, NULL, uid, created);
	json_object_set_new(m, "labels",
			    json_pack("{s:s}", "kubernetes.io/metadata.name", ns));
	json_t *o = object(KOBJ_NAMESPACE, m);
	json_object_set_new(o, "spec", json_pack("{s:[s]}", "finalizers",
						 "kubernetes"));
	json_object_set_new(o, "status", json_pack("{s:s}", "phase", "Active"));
	add(out, KOBJ_NAMESPACE, o);
}

json_t *kobj_from_state(const json_t *state)
{
	json_t *out = json_object(), *seen = json_object();
	size_t i;
	json_t *x;

	if (!json_is_object(state) || !json_is_array(json_object_get(state, "nodes")) ||
	    !json_is_array(json_object_get(state, "pods")) ||
	    !json_is_array(json_object_get(state, "services"))) {
		json_decref(out);
		json_decref(seen);
		return NULL;
	}
	for (int r = 0; r < KOBJ_N; r++)
		json_object_set_new(out, kobj_resource_names[r], json_array());
	json_array_foreach(json_object_get(state, "nodes"), i, x)
		add(out, KOBJ_NODE, node_object(state, x));
	add_namespace(out, seen, state, "default");
	add_namespace(out, seen, state, "kube-system");
	json_array_foreach(json_object_get(state, "pods"), i, x) {
		add_namespace(out, seen, state, str(x, "namespace", NULL));
		add(out, KOBJ_POD, pod_object(state, x));
	}
	json_array_foreach(json_object_get(state, "services"), i, x) {
		add_namespace(out, seen, state, str(x, "namespace", NULL));
		add(out, KOBJ_SERVICE, service_object(state, x));
		add(out, KOBJ_ENDPOINTS, endpoints_object(state, x));
	}
	json_decref(seen);
	return out;
}

/* --- selectors, as the API server evaluates them -------------------------- */

static const char *field_value(const json_t *obj, const char *field)
{
	const json_t *meta_ = json_object_get(obj, "metadata");
	if (!strcmp(field, "metadata.name"))
		return str(meta_, "name", "");
	if (!strcmp(field, "metadata.namespace"))
		return str(meta_, "namespace", "");
	if (!strcmp(field, "spec.nodeName"))
		return str(json_object_get(obj, "spec"), "nodeName", "");
	if (!strcmp(field, "status.phase"))
		return str(json_object_get(obj, "status"), "phase", "");
	if (!strcmp(field, "status.podIP"))
		return str(json_object_get(obj, "status"), "podIP", "");
	return NULL;
}

/* Splits "a=b,c!=d,e" into terms; calls fn(key, op, value) for each; op is
 * '=' (also "=="), '!' (!=), 'e' (exists), 'n' (!key). */
static int each_term(const char *sel, int (*fn)(void *, const char *, char,
						 const char *),
		     void *ctx)
{
	char buf[1024];
	if (!sel || !*sel)
		return 0;
	if (strlen(sel) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", sel);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		char op = 'e', *v = NULL, *k = t;
		char *ne = strstr(t, "!="), *eq = strchr(t, '=');
		if (ne) {
			*ne = '\0';
			v = ne + 2, op = '!';
		} else if (eq) {
			*eq = '\0';
			v = eq + 1 + (eq[1] == '=');
			op = '=';
		} else if (*t == '!') {
			k = t + 1, op = 'n';
		}
		if (!*k || strchr(k, ' ') || strchr(k, '(') ||
		    (v && strchr(v, ' ')))
			return -1;
		int rc = fn(ctx, k, op, v ? v : "");
		if (rc)
			return rc;
	}
	return 0;
}

struct match_ctx {
	const json_t *obj;
	bool fields;
};

static int match_term(void *ctxp, const char *k, char op, const char *v)
{
	struct match_ctx *ctx = ctxp;
	const char *have;
	if (ctx->fields) {
		have = field_value(ctx->obj, k);
		if (!have)
			return -1;
	} else {
		have = json_string_value(json_object_get(
			json_object_get(json_object_get(ctx->obj, "metadata"),
					"labels"),
			k));
	}
	switch (op) {
	case '=':
		return have && !strcmp(have, v) ? 0 : 1;
	case '!':
		return have && !strcmp(have, v) ? 1 : 0;
	case 'e':
		return have ? 0 : 1;
	default:
		return have ? 1 : 0;
	}
}

static int check_term(void *ctxp, const char *k, char op, const char *v)
{
	struct match_ctx *ctx = ctxp;
	(void)v;
	if (ctx->fields && (op == 'e' || op == 'n'))
		return -1;
	if (ctx->fields) {
		static const char *const known[] = {
			"metadata.name", "metadata.namespace", "spec.nodeName",
			"status.phase", "status.podIP",
		};
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (!strcmp(k, known[i]))
				return 0;
		return -1;
	}
	return 0;
}

int kobj_selector_check(const char *sel, bool fields)
{
	struct match_ctx ctx = { NULL, fields };
	return each_term(sel, check_term, &ctx) ? -1 : 0;
}

bool kobj_matches(const json_t *obj, const char *label_sel,
		  const char *field_sel)
{
	struct match_ctx l = { obj, false }, f = { obj, true };
	return each_term(label_sel, match_term, &l) == 0 &&
	       each_term(field_sel, match_term, &f) == 0;
}
