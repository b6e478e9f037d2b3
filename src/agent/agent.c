/* `sonde agent`: runs one node's sensor families and writes their records.
 *
 * Shape (after libbpf-bootstrap and netstacklat): discover the node, start
 * every selected family (each may degrade on its own), then one epoll loop
 * over the families' ring buffers, the node's change notifications
 * (nodewatch.c: link events, kubepods cgroups; they trigger a rediscovery
 * at once), a slow --rediscover timer as a safety net, a 1 s timer (reload
 * metadata when it changed, re-read the clock offset), an --interval timer
 * (families flush their aggregates) and a signalfd for a clean stop. With
 * --server, each rediscovery's document goes to the server
 * (discovery_report.c). */
#include "agent/agent.h"
#include "agent/control.h"
#include "agent/nat.h"
#include "agent/discovery.h"
#include "agent/nodewatch.h"
#include "agent/output.h"
#include "agent/sensor.h"
#include "cmds.h"
#include "lab/lab.h"
#include "lib/log.h"
#include "lib/opts.h"
#include "lib/sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FAMILIES 16

struct running {
	const struct sensor_family *fam;
	void *state;		/* NULL: unavailable */
	char why[256];		/* why it is unavailable */
};

struct agent {
	struct agent_config cfg;
	const char *node_name;
	char cgroup_root[PATH_MAX];
	char netns_path[PATH_MAX];
	const char *metadata_path;
	struct meta meta;
	struct node_view view;
	uint32_t *targets;	/* every family's, together */
	size_t ntargets;
	/* Each family's own: under a plan (--control) a pod may have a flow
	 * sensor and no latency sensor. cur_fam: the family being started or
	 * retargeted, whose set agent_target_netns answers. */
	uint32_t *fam_targets[MAX_FAMILIES];
	size_t fam_ntargets[MAX_FAMILIES];
	int cur_fam;
	struct control *ctl; /* NULL: no plan, pods by --pods/--namespace */
	struct output *out;
	int64_t mono_to_real_ns;
	struct running fams[MAX_FAMILIES];
	size_t nfams;
	struct nat *nat;   /* conntrack in the node's netns, opened at first use */
	bool nat_failed;   /* could not be opened: not retried at every record */
	struct disc_reporter *reporter; /* NULL: no --server */
	struct nodewatch *watch;	/* NULL: timer only */
	uint64_t rediscoveries;
};

static const char *opt_node;
static const char *opt_cgroup_root;
static const char *opt_netns;
static const char *opt_metadata;
static const char *opt_output;
static const char *opt_btf;
static const char *opt_sensors;
static const char *opt_pods;
static const char *opt_namespaces;
static uint64_t opt_duration_ns;
static uint64_t opt_interval_ns;
static bool opt_all_netns;
static bool opt_no_redact;
static long opt_latency_sample = 1;
static long opt_latency_test_skew_ns;
static uint64_t opt_rediscover_ns = 10000000000ULL;
static uint64_t opt_heartbeat_ns = 10000000000ULL;
static const char *opt_control;
static const char *opt_state_dir;

static const struct opt agent_opts[] = {
	{ "node", 'n', OPT_STRING, &opt_node, "NAME",
	  "this node's name (default: the hostname; in the lab: node-N)" },
	{ "cgroup-root", 0, OPT_STRING, &opt_cgroup_root, "PATH",
	  "cgroup v2 directory holding this node's pods (default: the lab "
	  "node's, else the cgroup2 mount)" },
	{ "netns", 0, OPT_STRING, &opt_netns, "PATH",
	  "this node's network namespace (default: the lab node's, else "
	  "/proc/self/ns/net)" },
	{ "metadata", 'm', OPT_STRING, &opt_metadata, "FILE",
	  "pod/service metadata (default: " LAB_STATE_FILE " if present)" },
	{ "sensors", 's', OPT_STRING, &opt_sensors, "LIST",
	  "sensor families to run, comma-separated (default: all)" },
	{ "pods", 'p', OPT_STRING, &opt_pods, "LIST",
	  "monitor only these pods: NS/NAME or NAME (prefix), comma-separated" },
	{ "namespace", 0, OPT_STRING, &opt_namespaces, "LIST",
	  "monitor only pods of these namespaces, comma-separated" },
	{ "interval", 'i', OPT_DURATION, &opt_interval_ns, "DUR",
	  "aggregation and flush period of the sensors (default: 1s)" },
	{ "output", 'o', OPT_STRING, &opt_output, "FILE",
	  "append JSON lines to FILE instead of stdout" },
	{ "server", 0, OPT_STRING, &output_ship.server, "URL",
	  "ship records to `sonde server` at URL (then no stdout unless "
	  "--output); spooled on disk while it is away" },
	{ "token", 0, OPT_STRING, &output_ship.token, "TOKEN",
	  "bearer token for --server (default: $SONDE_TOKEN)" },
	{ "spool", 0, OPT_STRING, &output_ship.spool, "DIR",
	  "spool directory, one per agent (default /var/lib/sonde/spool)" },
	{ "spool-kb", 0, OPT_INT, &output_ship.spool_kb, "KB",
	  "spool bound; when full the oldest batches are dropped and counted "
	  "(default 262144 = 256 MiB)" },
	{ "batch", 0, OPT_INT, &output_ship.batch, "N",
	  "records per shipped batch (default 2000; a batch also leaves "
	  "after 1 s)" },
	{ "metrics", 0, OPT_STRING, &output_ship.metrics, "ADDR:PORT",
	  "serve Prometheus /metrics (events, lost events, shipping, CPU)" },
	{ "control", 0, OPT_STRING, &opt_control, "ADDR:PORT",
	  "serve the control API (PUT /v1/plan, GET /v1/state; --token): "
	  "the server's plan then selects the pods, not --pods/--namespace" },
	{ "state-dir", 0, OPT_STRING, &opt_state_dir, "DIR",
	  "where --control keeps the last applied plan, re-applied at "
	  "start (default /var/lib/sonde)" },
	{ "duration", 'd', OPT_DURATION, &opt_duration_ns, "DUR",
	  "stop after DUR (e.g. 30s); default: run until SIGINT/SIGTERM" },
	{ "all-netns", 0, OPT_FLAG, &opt_all_netns, NULL,
	  "report sockets of every network namespace, not only the "
	  "monitored pods'" },
	{ "no-redact", 0, OPT_FLAG, &opt_no_redact, NULL,
	  "l7: keep query strings in recorded URIs (redacted by default)" },
	{ "latency-sample", 0, OPT_INT, &opt_latency_sample, "N",
	  "latency sensor: stamp one TCP segment in N (1: every segment, "
	  "with room reserved in each; default 1)" },
	{ "latency-test-skew-ns", 0, OPT_INT, &opt_latency_test_skew_ns, "NS",
	  "TEST AID: the latency sensor acts as if this node's clock were NS\n"
	  "                            ahead (stamps and arrivals); records say so" },
	{ "rediscover", 0, OPT_DURATION, &opt_rediscover_ns, "DUR",
	  "rediscover the node every DUR even without a change notification "
	  "(a safety net; default 10s)" },
	{ "heartbeat", 0, OPT_DURATION, &opt_heartbeat_ns, "DUR",
	  "with --server: send the node's discovery at least every DUR "
	  "(default 10s; the server marks a node stale after missed "
	  "heartbeats)" },
	{ "btf", 0, OPT_STRING, &opt_btf, "FILE",
	  "kernel BTF to use (default: " SONDE_DEFAULT_BTF ")" },
	OPT_END,
};

static const struct cmd_spec agent_spec = {
	.path = "sonde agent",
	.synopsis = "[OPTIONS]",
	.summary = "Run the eBPF sensors of one node and write its records "
		   "as JSON lines.",
	.opts = agent_opts,
	.details =
		"Every record has \"kind\" (its sensor's record type), "
		"\"time_ns\" (UTC) and \"node\";\nsee docs/records.md. "
		"Without --pods/--namespace every pod of the node and the\n"
		"node's own network namespace are monitored. On exit, one "
		"line per sensor\nfamily with its state and counters (events, "
		"lost events) goes to stderr,\nafter one line for the node "
		"(rediscoveries, notifications, discovery reports).\n"
		"The node is rediscovered when its links or kubepods cgroups "
		"change (rtnetlink,\ninotify) and every --rediscover; with "
		"--server its discovery is also sent to\nPUT "
		"SERVER/v1/agents/NODE/discovery at each change and every "
		"--heartbeat.",
};

/* ---- what sensors may use (agent.h) */

const struct agent_config *agent_config(const struct agent *a)
{
	return &a->cfg;
}

const char *agent_node_name(const struct agent *a)
{
	return a->node_name;
}

int64_t agent_mono_to_real(const struct agent *a)
{
	return a->mono_to_real_ns;
}

const struct node_view *agent_view(const struct agent *a)
{
	return &a->view;
}

const char *agent_cgroup_root(const struct agent *a)
{
	return a->cgroup_root;
}

const struct meta *agent_meta(const struct agent *a)
{
	return &a->meta;
}

const uint32_t *agent_target_netns(const struct agent *a, size_t *n)
{
	if (a->cur_fam >= 0 && a->fam_targets[a->cur_fam]) {
		*n = a->fam_ntargets[a->cur_fam];
		return a->fam_targets[a->cur_fam];
	}
	*n = a->ntargets;
	return a->targets;
}

int agent_family_state(const struct agent *a, const char *name,
		       const char **why)
{
	for (size_t i = 0; i < a->nfams; i++) {
		if (strcmp(a->fams[i].fam->name, name))
			continue;
		*why = a->fams[i].state ? NULL : a->fams[i].why;
		return a->fams[i].state ? 1 : 0;
	}
	return -ENOENT;
}

static void set_pod(json_t *ep, const struct meta_pod *p)
{
	json_object_set_new(ep, "pod", json_string(p->name));
	json_object_set_new(ep, "namespace", json_string(p->namespace));
	json_object_set_new(ep, "workload", json_string(p->workload));
	json_object_set_new(ep, "service",
			    p->service ? json_string(p->service) : json_null());
}

json_t *agent_endpoint(struct agent *a, int family, const void *addr,
		       uint16_t port, const uint32_t *local_netns)
{
	char ip[INET6_ADDRSTRLEN] = "";
	json_t *ep = json_object();

	inet_ntop(family, addr, ip, sizeof(ip));
	json_object_set_new(ep, "ip", json_string(ip));
	json_object_set_new(ep, "port", json_integer(port));

	const struct meta_pod *pod = NULL;
	if (local_netns) {
		const struct netns_owner *o =
			node_find_netns(&a->view, *local_netns);
		if (o && o->pod_uid[0]) {
			pod = meta_pod_by_uid(&a->meta, o->pod_uid);
			if (!pod)
				json_object_set_new(ep, "pod_uid",
						    json_string(o->pod_uid));
		} else if (*local_netns == a->view.node_netns) {
			json_object_set_new(ep, "host_network", json_true());
		}
	}
	if (!pod)
		pod = meta_pod_by_ip(&a->meta, ip);
	if (pod) {
		set_pod(ep, pod);
		return ep;
	}
	const struct meta_service *svc = meta_service_by_ip(&a->meta, ip);
	if (svc) {
		json_object_set_new(ep, "namespace", json_string(svc->namespace));
		json_object_set_new(ep, "service", json_string(svc->name));
		json_object_set_new(ep, "cluster_ip", json_true());
	}
	return ep;
}

int agent_backend_addr(struct agent *a, uint8_t proto, int family,
		       const void *laddr, uint16_t lport, const void *raddr,
		       uint16_t rport, void *baddr, uint16_t *bport)
{
	if (!a->nat && !a->nat_failed) {
		a->nat = nat_open(a->netns_path[0] ? a->netns_path : NULL);
		if (!a->nat) {
			a->nat_failed = true;
			log_warn("conntrack unavailable (%s): connections to "
				 "cluster IPs keep no backend pod",
				 strerror(errno));
		}
	}
	if (!a->nat)
		return -ENOENT;
	return nat_backend(a->nat, proto, family, laddr, lport, raddr, rport,
			   baddr, bport);
}

void agent_backend(struct agent *a, json_t *remote, uint8_t proto,
		   int family, const void *laddr, uint16_t lport,
		   const void *raddr, uint16_t rport)
{
	uint8_t baddr[16];
	uint16_t bport;

	if (!json_is_true(json_object_get(remote, "cluster_ip")) ||
	    agent_backend_addr(a, proto, family, laddr, lport, raddr, rport,
			       baddr, &bport))
		return;
	json_object_set_new(remote, "backend",
			    agent_endpoint(a, family, baddr, bport, NULL));
}

json_t *agent_record(struct agent *a, const char *kind, uint64_t mono_ns)
{
	json_t *rec = json_object();

	json_object_set_new(rec, "kind", json_string(kind));
	json_object_set_new(rec, "time_ns",
			    json_integer((json_int_t)mono_ns +
					 a->mono_to_real_ns));
	json_object_set_new(rec, "node", json_string(a->node_name));
	return rec;
}

void agent_emit(struct agent *a, json_t *rec)
{
	char *line = json_dumps(rec, JSON_COMPACT);

	if (line) {
		if (output_write(a->out, line))
			log_warn("cannot write a record: %s", strerror(errno));
		free(line);
	}
	json_decref(rec);
}

void agent_emit_line(struct agent *a, const char *line)
{
	if (output_write(a->out, line))
		log_warn("cannot write a record: %s", strerror(errno));
}

/* ---- pod selection */

/* Is `item` in the comma-separated `list`? With prefix, item may be longer
 * than the list entry (pod names carry generated suffixes). */
static bool in_list(const char *list, const char *item, bool prefix)
{
	size_t ilen = strlen(item);

	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len && (prefix ? len <= ilen : len == ilen) &&
		    !strncmp(p, item, len))
			return true;
		p += len + (end ? 1 : 0);
	}
	return false;
}

static bool pod_selected(const struct meta_pod *p)
{
	char full[512];

	if (opt_namespaces && !in_list(opt_namespaces, p->namespace, false))
		return false;
	if (!opt_pods)
		return true;
	snprintf(full, sizeof(full), "%s/%s", p->namespace, p->name);
	return in_list(opt_pods, full, true) || in_list(opt_pods, p->name, true);
}

static void add_target(uint32_t *t, size_t *n, uint32_t netns)
{
	for (size_t j = 0; j < *n; j++)
		if (t[j] == netns)
			return;
	t[(*n)++] = netns;
}

/* Recomputes the target netns from the node view and the selection: the
 * plan's pods per family under --control, else --pods/--namespace (or
 * everything) for every family alike. */
static void compute_targets(struct agent *a)
{
	bool selecting = opt_pods || opt_namespaces || a->ctl;
	size_t n = 0;

	free(a->targets);
	a->targets = calloc(a->view.count + 1, sizeof(uint32_t));
	a->ntargets = 0;
	for (size_t f = 0; f < a->nfams; f++) {
		free(a->fam_targets[f]);
		a->fam_targets[f] = a->ctl ? calloc(a->view.count + 1, sizeof(uint32_t))
					   : NULL;
		a->fam_ntargets[f] = 0;
	}
	if (!a->targets)
		return;
	if (!selecting)
		a->targets[n++] = a->view.node_netns;
	for (size_t i = 0; i < a->view.count; i++) {
		const struct netns_owner *o = &a->view.owners[i];
		if (a->ctl) {
			bool any = false;
			for (size_t f = 0; f < a->nfams && o->pod_uid[0]; f++) {
				if (!a->fam_targets[f] ||
				    !control_wants(a->ctl, a->fams[f].fam->name,
						   o->pod_uid))
					continue;
				add_target(a->fam_targets[f], &a->fam_ntargets[f],
					   o->netns);
				any = true;
			}
			if (!any)
				continue;
		} else if (selecting) {
			const struct meta_pod *p =
				o->pod_uid[0] ? meta_pod_by_uid(&a->meta, o->pod_uid)
					      : NULL;
			if (!p || !pod_selected(p))
				continue;
		}
		add_target(a->targets, &n, o->netns);
	}
	a->ntargets = n;
}

static int64_t clock_offset_ns(void)
{
	struct timespec mono, real;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	return ((int64_t)real.tv_sec - mono.tv_sec) * 1000000000LL +
	       (real.tv_nsec - mono.tv_nsec);
}

static bool has_target(const uint32_t *t, size_t n, uint32_t netns)
{
	for (size_t i = 0; i < n; i++)
		if (t[i] == netns)
			return true;
	return false;
}

static void emit_target_event(struct agent *a, const struct node_view *view,
			      uint32_t netns, const char *what)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	json_t *rec = agent_record(a, "event",
				   (uint64_t)now.tv_sec * 1000000000ULL +
					   (uint64_t)now.tv_nsec);
	json_object_set_new(rec, "event", json_string(what));
	json_object_set_new(rec, "netns", json_integer(netns));
	const struct netns_owner *o = node_find_netns(view, netns);
	const struct meta_pod *p =
		o && o->pod_uid[0] ? meta_pod_by_uid(&a->meta, o->pod_uid) : NULL;
	if (o && o->pod_uid[0])
		json_object_set_new(rec, "pod_uid", json_string(o->pod_uid));
	if (p) {
		json_t *pod = json_object();
		set_pod(pod, p);
		json_object_set_new(rec, "target", pod);
	}
	agent_emit(a, rec);
}

/* `event` records when the sensors start or stop watching a pod's netns
 * (a pod appeared, moved here, left): the agent's side of a relocation. */
static void emit_target_changes(struct agent *a, const struct node_view *old_view,
				const uint32_t *old_targets, size_t old_n)
{
	if (!old_targets)
		return; /* the first discovery: no change to report */
	for (size_t i = 0; i < a->ntargets; i++)
		if (!has_target(old_targets, old_n, a->targets[i]))
			emit_target_event(a, &a->view, a->targets[i], "sensor_attached");
	for (size_t i = 0; i < old_n; i++)
		if (!has_target(a->targets, a->ntargets, old_targets[i]))
			emit_target_event(a, old_view, old_targets[i], "sensor_detached");
}

/* Rediscovers the node's pods and points the sensors at their netns. */
static void refresh_node(struct agent *a)
{
	struct node_view view;

	if (a->metadata_path && meta_changed(&a->meta))
		meta_load(&a->meta, a->metadata_path);
	a->mono_to_real_ns = clock_offset_ns();
	if (node_scan(a->cgroup_root, a->netns_path, &view))
		return;
	struct node_view old_view = a->view;
	uint32_t *old_targets = a->targets;
	size_t old_n = a->ntargets;
	a->targets = NULL;
	a->view = view;
	compute_targets(a);
	for (size_t i = 0; i < a->nfams; i++) {
		a->cur_fam = (int)i;
		if (a->fams[i].state && a->fams[i].fam->retarget)
			a->fams[i].fam->retarget(a->fams[i].state);
	}
	a->cur_fam = -1;
	emit_target_changes(a, &old_view, old_targets, old_n);
	node_view_free(&old_view);
	free(old_targets);
	a->rediscoveries++;
	if (a->reporter)
		disc_reporter_update(a->reporter,
				     discovery_build(a->node_name, a->cgroup_root,
						     a->netns_path, &a->view));
	control_tick(a->ctl);
}

void agent_plan_changed(struct agent *a)
{
	refresh_node(a);
}

static int resolve_node(struct agent *a)
{
	static char hostname[256];
	const struct meta_node *mn = NULL;

	if (!opt_node) {
		if (gethostname(hostname, sizeof(hostname) - 1))
			snprintf(hostname, sizeof(hostname), "unknown");
		opt_node = hostname;
	}
	a->node_name = opt_node;
	a->metadata_path = opt_metadata;
	if (!a->metadata_path && access(LAB_STATE_FILE, R_OK) == 0)
		a->metadata_path = LAB_STATE_FILE;
	if (a->metadata_path) {
		int err = meta_load(&a->meta, a->metadata_path);
		if (err) {
			log_err("cannot load metadata %s: %s", a->metadata_path,
				strerror(-err));
			return err;
		}
		mn = meta_node(&a->meta, a->node_name);
	}
	if ((opt_pods || opt_namespaces) && opt_control) {
		log_err("--pods/--namespace and --control exclude each other: "
			"under --control the server's plan selects the pods");
		return -EINVAL;
	}
	if ((opt_pods || opt_namespaces) && !a->metadata_path) {
		log_err("--pods/--namespace need pod metadata (--metadata)");
		return -EINVAL;
	}
	if (opt_cgroup_root)
		snprintf(a->cgroup_root, sizeof(a->cgroup_root), "%s",
			 opt_cgroup_root);
	else if (mn && mn->cgroup)
		snprintf(a->cgroup_root, sizeof(a->cgroup_root), "%s",
			 mn->cgroup);
	else if (sys_cgroup2_mount(a->cgroup_root, sizeof(a->cgroup_root)))
		return -ENOENT;
	snprintf(a->netns_path, sizeof(a->netns_path), "%s",
		 opt_netns		  ? opt_netns
		 : mn && mn->netns_path ? mn->netns_path
					  : "/proc/self/ns/net");
	log_info("node %s: cgroup root %s, netns %s%s", a->node_name,
		 a->cgroup_root, a->netns_path,
		 a->metadata_path ? "" : " (no metadata: pods by uid only)");
	return 0;
}

/* Picks the families named by --sensors (all by default). */
static int select_families(struct agent *a)
{
	for (const struct sensor_family *const *f = sensor_families; *f; f++)
		if ((!opt_sensors || in_list(opt_sensors, (*f)->name, false)) &&
		    a->nfams < MAX_FAMILIES)
			a->fams[a->nfams++].fam = *f;
	if (opt_sensors) {
		/* Every name given must exist: a typo must not go unnoticed. */
		char *copy = strdup(opt_sensors), *save = NULL;
		for (char *t = strtok_r(copy, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			bool known = false;
			for (size_t i = 0; i < a->nfams; i++)
				known |= !strcmp(a->fams[i].fam->name, t);
			if (!known) {
				fprintf(stderr,
					"sonde agent: unknown sensor family "
					"'%s' (have:",
					t);
				for (const struct sensor_family *const *f =
					     sensor_families;
				     *f; f++)
					fprintf(stderr, " %s", (*f)->name);
				fprintf(stderr, ")\n");
				free(copy);
				return -EINVAL;
			}
		}
		free(copy);
	}
	return 0;
}

static json_t *family_status(const struct running *r)
{
	json_t *st = json_object();

	json_object_set_new(st, "sensor", json_string(r->fam->name));
	json_object_set_new(st, "state", json_string(r->state ? "running"
							      : "unavailable"));
	if (r->state && r->fam->status)
		r->fam->status(r->state, st);
	else if (!r->state)
		json_object_set_new(st, "reason", json_string(r->why));
	return st;
}

/* For the agent's /metrics (output_set_status). */
static void families_status(void *ctx, json_t *out)
{
	struct agent *a = ctx;

	for (size_t i = 0; i < a->nfams; i++)
		json_array_append_new(out, family_status(&a->fams[i]));
}

static void report_status(struct agent *a)
{
	json_t *node = json_pack("{s:I}", "rediscoveries",
				 (json_int_t)a->rediscoveries);
	if (a->watch) {
		struct nodewatch_stats st;
		nodewatch_stats(a->watch, &st);
		json_object_set_new(node, "link_events",
				    json_integer((json_int_t)st.link_events));
		json_object_set_new(node, "cgroup_events",
				    json_integer((json_int_t)st.cgroup_events));
		json_object_set_new(node, "overruns",
				    json_integer((json_int_t)st.overruns));
	}
	if (a->reporter)
		disc_reporter_status(a->reporter, node);
	if (a->nat) {
		struct nat_stats ns;
		nat_stats(a->nat, &ns);
		json_object_set_new(
			node, "conntrack",
			json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "lookups",
				  (json_int_t)ns.lookups, "cached",
				  (json_int_t)ns.cached, "found",
				  (json_int_t)ns.found, "errors",
				  (json_int_t)ns.errors, "events",
				  (json_int_t)ns.events, "event_overruns",
				  (json_int_t)ns.event_overruns));
	}
	char *text = json_dumps(node, JSON_COMPACT);
	if (text)
		fprintf(stderr, "{\"node\":%s}\n", text);
	free(text);
	json_decref(node);
	for (size_t i = 0; i < a->nfams; i++) {
		json_t *st = family_status(&a->fams[i]);
		char *line = json_dumps(st, JSON_COMPACT);
		if (line) {
			fprintf(stderr, "%s\n", line);
			free(line);
		}
		json_decref(st);
	}
}

static int add_fd(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int arm(int tfd, uint64_t ns)
{
	struct itimerspec t = {
		.it_interval = { (time_t)(ns / 1000000000ULL),
				 (long)(ns % 1000000000ULL) },
	};
	t.it_value = t.it_interval;
	return timerfd_settime(tfd, 0, &t, NULL);
}

enum { TAG_SIGNAL = 1000, TAG_REFRESH, TAG_TICK, TAG_META, TAG_WATCH,
       TAG_SOON, TAG_REDISCOVER, TAG_CONTROL };

/* A change notification rediscovers after SOON_NS, so that one burst (a
 * veth made, enslaved, set up; a process joining its cgroup) costs one
 * rediscovery; then once more SETTLE_NS later, for what the burst
 * announced but had not finished (a process joins its pod's cgroup a
 * moment before it enters the pod's netns). */
#define SOON_NS 5000000ULL
#define SETTLE_NS 250000000ULL
/* A process seen in transit (node.h) is looked at again after TRANSIT_NS,
 * up to TRANSIT_LOOKS times in a row (a process that stays is not a pod's
 * netns owner; the settle and periodic rediscoveries still see it). */
#define TRANSIT_NS 10000000ULL
#define TRANSIT_LOOKS 50

static void arm_once(int tfd, uint64_t ns)
{
	struct itimerspec t = { .it_value = { (time_t)(ns / 1000000000ULL),
					      (long)(ns % 1000000000ULL) } };
	timerfd_settime(tfd, 0, &t, NULL);
}

int cmd_agent(int argc, char **argv)
{
	struct agent a = { .cur_fam = -1 };
	int npos = 0, rc = 1, epfd = -1, rfd = -1, ifd = -1, sfd = -1, mfd = -1;
	int soonfd = -1, rdfd = -1;
	enum { SOON_IDLE, SOON_EVENT, SOON_SETTLE } soon = SOON_IDLE;
	unsigned transit_looks = 0;

	int prc = opts_parse(&agent_spec, argc, argv, &npos);
	if (prc)
		return prc > 0 ? 0 : 2;
	if (npos) {
		fprintf(stderr, "sonde agent: unexpected argument '%s'\n",
			argv[0]);
		return 2;
	}
	if (select_families(&a))
		return 2;
	if (sys_require_root("sonde agent") || sys_require_btf(opt_btf))
		return 1;
	a.cfg.btf_path = opt_btf;
	a.cfg.interval_ns = opt_interval_ns ? opt_interval_ns : 1000000000ULL;
	a.cfg.all_netns = opt_all_netns;
	a.cfg.no_redact = opt_no_redact;
	if (opt_latency_sample < 1 || opt_latency_sample > 1000000) {
		fprintf(stderr, "sonde agent: --latency-sample must be 1..1000000\n");
		return 2;
	}
	a.cfg.latency_sample = (uint32_t)opt_latency_sample;
	a.cfg.latency_test_skew_ns = opt_latency_test_skew_ns;
	if (resolve_node(&a))
		goto out;
	a.cfg.cgroup_root = a.cgroup_root;
	a.cfg.netns_path = a.netns_path;
	a.out = output_open(opt_output);
	if (!a.out) {
		log_err("cannot open --output %s: %s", opt_output,
			strerror(errno));
		goto out;
	}
	output_set_status(a.out, families_status, &a);
	if (opt_control) {
		struct control_opts co = {
			.listen = opt_control,
			.token = output_ship.token ? output_ship.token
						   : getenv("SONDE_TOKEN"),
			.server = output_ship.server,
			.state_dir = opt_state_dir,
			.node = a.node_name,
		};
		/* Before the families start: the last applied plan is in
		 * force from the first rediscovery on. */
		a.ctl = control_open(&a, &co);
		if (!a.ctl)
			goto out;
	}

	/* Stop cleanly on SIGINT/SIGTERM: read through a signalfd. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	rfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	ifd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	soonfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	rdfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (epfd < 0 || rfd < 0 || ifd < 0 || sfd < 0 || soonfd < 0 || rdfd < 0) {
		log_err("epoll/timerfd/signalfd: %s", strerror(errno));
		goto out;
	}

	a.mono_to_real_ns = clock_offset_ns();
	for (size_t i = 0; i < a.nfams; i++) {
		struct running *r = &a.fams[i];
		int err = r->fam->start(&a, &r->state, r->why, sizeof(r->why));
		if (err) {
			/* A family that cannot run degrades; the agent stays. */
			log_warn("%s sensor unavailable: %s", r->fam->name,
				 r->why);
			r->state = NULL;
			continue;
		}
		int fd = r->fam->poll_fd ? r->fam->poll_fd(r->state) : -1;
		if (fd >= 0 && add_fd(epfd, fd, i))
			log_warn("%s: epoll: %s", r->fam->name, strerror(errno));
	}
	if (output_ship.server) {
		const char *token = output_ship.token ? output_ship.token
						      : getenv("SONDE_TOKEN");
		a.reporter = disc_reporter_start(output_ship.server, token,
						 a.node_name,
						 opt_heartbeat_ns ? opt_heartbeat_ns
								  : 10000000000ULL);
		if (!a.reporter)
			log_warn("discovery: cannot start the reporter: %s",
				 strerror(errno));
	}
	/* Watched before the first discovery: a change between the two is
	 * not missed. */
	a.watch = nodewatch_open(a.netns_path, a.cgroup_root);
	if (a.watch && add_fd(epfd, nodewatch_fd(a.watch), TAG_WATCH))
		log_warn("nodewatch: epoll: %s", strerror(errno));
	refresh_node(&a);

	arm(rfd, 1000000000ULL);
	arm(ifd, a.cfg.interval_ns);
	arm(rdfd, opt_rediscover_ns ? opt_rediscover_ns : 10000000000ULL);
	add_fd(epfd, sfd, TAG_SIGNAL);
	add_fd(epfd, rfd, TAG_REFRESH);
	add_fd(epfd, ifd, TAG_TICK);
	if (a.ctl && add_fd(epfd, control_fd(a.ctl), TAG_CONTROL))
		log_warn("control: epoll: %s", strerror(errno));
	add_fd(epfd, soonfd, TAG_SOON);
	add_fd(epfd, rdfd, TAG_REDISCOVER);
	/* The metadata is the pod selection's input (--pods, --namespace):
	 * when the lab rewrites it (by rename), the targets are recomputed at
	 * once. Discovery itself follows the node's own notifications. */
	char meta_dir[PATH_MAX];
	const char *meta_base = NULL;
	if (a.metadata_path) {
		snprintf(meta_dir, sizeof(meta_dir), "%s", a.metadata_path);
		char *slash = strrchr(meta_dir, '/');
		meta_base = slash ? slash + 1 : a.metadata_path;
		if (slash)
			*slash = '\0';
		mfd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
		if (mfd >= 0 &&
		    (inotify_add_watch(mfd, slash ? meta_dir : ".",
				       IN_MOVED_TO | IN_CLOSE_WRITE) < 0 ||
		     add_fd(epfd, mfd, TAG_META))) {
			close(mfd);
			mfd = -1;
		}
	}

	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	bool stop = false;
	while (!stop) {
		struct epoll_event evs[16];
		int n = epoll_wait(epfd, evs, 16, 1000);
		uint64_t expirations;

		if (n < 0 && errno != EINTR) {
			log_err("epoll_wait: %s", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) > 0)
					log_info("signal %u: stopping",
						 si.ssi_signo);
				stop = true;
			} else if (tag == TAG_REFRESH) {
				if (read(rfd, &expirations, sizeof(expirations)) <= 0)
					continue;
				a.mono_to_real_ns = clock_offset_ns();
				if (a.metadata_path && meta_changed(&a.meta))
					refresh_node(&a);
			} else if (tag == TAG_REDISCOVER) {
				if (read(rdfd, &expirations, sizeof(expirations)) > 0)
					refresh_node(&a);
			} else if (tag == TAG_WATCH) {
				if (nodewatch_read(a.watch) > 0 && soon != SOON_EVENT) {
					arm_once(soonfd, SOON_NS);
					soon = SOON_EVENT;
				}
			} else if (tag == TAG_SOON) {
				if (read(soonfd, &expirations, sizeof(expirations)) <= 0)
					continue;
				refresh_node(&a);
				if (a.view.transit && transit_looks < TRANSIT_LOOKS) {
					/* A pod's process between its cgroup and
					 * its netns: look again shortly. */
					transit_looks++;
					arm_once(soonfd, TRANSIT_NS);
				} else if (soon == SOON_EVENT) {
					transit_looks = 0;
					arm_once(soonfd, SETTLE_NS);
					soon = SOON_SETTLE;
				} else {
					transit_looks = 0;
					soon = SOON_IDLE;
				}
			} else if (tag == TAG_META) {
				char buf[4096] __attribute__((aligned(8)));
				bool changed = false;
				ssize_t len;
				while ((len = read(mfd, buf, sizeof(buf))) > 0)
					for (char *p = buf; p < buf + len;) {
						struct inotify_event *ev = (void *)p;
						if (ev->len && !strcmp(ev->name, meta_base))
							changed = true;
						p += sizeof(*ev) + ev->len;
					}
				if (changed)
					refresh_node(&a);
			} else if (tag == TAG_TICK) {
				if (read(ifd, &expirations, sizeof(expirations)) <= 0)
					continue;
				for (size_t f = 0; f < a.nfams; f++)
					if (a.fams[f].state && a.fams[f].fam->tick)
						a.fams[f].fam->tick(a.fams[f].state);
			} else if (tag == TAG_CONTROL) {
				control_run(a.ctl);
			} else if (tag < a.nfams && a.fams[tag].state) {
				a.fams[tag].fam->consume(a.fams[tag].state);
			}
		}
		/* Every turn, not only when its fd wakes us: libmicrohttpd
		 * also times out idle connections here. */
		control_run(a.ctl);
		output_flush(a.out);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (opt_duration_ns &&
		    (uint64_t)((now.tv_sec - t0.tv_sec) * 1000000000LL +
			       (now.tv_nsec - t0.tv_nsec)) >= opt_duration_ns)
			stop = true;
	}
	/* Drain what the kernel already wrote, then flush the aggregates:
	 * accepted data is never lost. */
	for (size_t f = 0; f < a.nfams; f++) {
		if (!a.fams[f].state)
			continue;
		a.fams[f].fam->consume(a.fams[f].state);
		if (a.fams[f].fam->tick)
			a.fams[f].fam->tick(a.fams[f].state);
	}
	rc = 0;
out:
	report_status(&a);
	for (size_t f = 0; f < a.nfams; f++)
		if (a.fams[f].state)
			a.fams[f].fam->stop(a.fams[f].state);
	disc_reporter_stop(a.reporter);
	nodewatch_close(a.watch);
	control_close(a.ctl);
	output_close(a.out);
	nat_close(a.nat);
	free(a.targets);
	for (size_t f = 0; f < a.nfams; f++)
		free(a.fam_targets[f]);
	node_view_free(&a.view);
	meta_free(&a.meta);
	if (epfd >= 0)
		close(epfd);
	if (rfd >= 0)
		close(rfd);
	if (ifd >= 0)
		close(ifd);
	if (sfd >= 0)
		close(sfd);
	if (mfd >= 0)
		close(mfd);
	if (soonfd >= 0)
		close(soonfd);
	if (rdfd >= 0)
		close(rdfd);
	return rc;
}
