/* `sonde agent`: runs one node's sensors and writes records as JSON lines.
 *
 * Shape (after libbpf-bootstrap and netstacklat): discover the node, start
 * the sensors (each may degrade on its own), then one epoll loop over the
 * ring buffers, a 1 s timer (rediscover pods, reload metadata, re-read the
 * clock offset) and a signalfd for a clean stop. */
#include "agent/flow_sensor.h"
#include "agent/meta.h"
#include "agent/node.h"
#include "cmds.h"
#include "lab/lab.h"
#include "lib/log.h"
#include "lib/opts.h"
#include "lib/sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct agent {
	const char *node_name;
	char cgroup_root[PATH_MAX];
	char netns_path[PATH_MAX];
	const char *metadata_path;
	struct meta meta;
	struct node_view view;
	struct flow_sensor *flow;
	FILE *out;
	int64_t mono_to_real_ns; /* add to CLOCK_MONOTONIC to get UTC */
	uint64_t records;
};

static const char *opt_node;
static const char *opt_cgroup_root;
static const char *opt_netns;
static const char *opt_metadata;
static const char *opt_output;
static const char *opt_btf;
static uint64_t opt_duration_ns;
static bool opt_all_netns;

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
	{ "output", 'o', OPT_STRING, &opt_output, "FILE",
	  "append JSON lines to FILE instead of stdout" },
	{ "duration", 'd', OPT_DURATION, &opt_duration_ns, "DUR",
	  "stop after DUR (e.g. 30s); default: run until SIGINT/SIGTERM" },
	{ "all-netns", 0, OPT_FLAG, &opt_all_netns, NULL,
	  "report sockets of every network namespace, not only this node's" },
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
		"Records: {\"kind\":\"flow\",\"event\":\"open\"|\"close\", "
		"\"time_ns\", \"node\", \"side\", \"src\", \"dst\", ...};\n"
		"src is the side that opened the connection. On exit, a line "
		"with the\nsensor's counters (events, lost events) goes to "
		"stderr.",
};

static int64_t clock_offset_ns(void)
{
	struct timespec mono, real;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	return ((int64_t)real.tv_sec - mono.tv_sec) * 1000000000LL +
	       (real.tv_nsec - mono.tv_nsec);
}

static const char *const tcp_states[] = {
	[1] = "ESTABLISHED", [2] = "SYN_SENT",	 [3] = "SYN_RECV",
	[4] = "FIN_WAIT1",   [5] = "FIN_WAIT2",	 [6] = "TIME_WAIT",
	[7] = "CLOSE",	     [8] = "CLOSE_WAIT", [9] = "LAST_ACK",
	[10] = "LISTEN",     [11] = "CLOSING",	 [12] = "NEW_SYN_RECV",
};

static const char *tcp_state_name(unsigned int s)
{
	if (s < sizeof(tcp_states) / sizeof(tcp_states[0]) && tcp_states[s])
		return tcp_states[s];
	return "UNKNOWN";
}

static void set_pod(json_t *ep, const struct meta_pod *p)
{
	json_object_set_new(ep, "pod", json_string(p->name));
	json_object_set_new(ep, "namespace", json_string(p->namespace));
	json_object_set_new(ep, "workload", json_string(p->workload));
	json_object_set_new(ep, "service",
			    p->service ? json_string(p->service) : json_null());
}

/* An endpoint of a record: address, and who is behind it when we know. The
 * local end is attributed through its netns (which pod owns the socket),
 * the remote end through its address (a pod IP or a service's cluster IP). */
static json_t *endpoint(struct agent *a, const uint8_t *addr, uint16_t family,
			uint16_t port, const uint32_t *local_netns)
{
	char ip[INET6_ADDRSTRLEN] = "";
	json_t *ep = json_object();

	inet_ntop(family == 2 ? AF_INET : AF_INET6, addr, ip, sizeof(ip));
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

static void on_flow_event(const struct flow_event *e, void *ctx)
{
	struct agent *a = ctx;
	json_t *local = endpoint(a, e->laddr, e->family, e->lport, &e->netns);
	json_t *remote = endpoint(a, e->raddr, e->family, e->rport, NULL);
	bool server = e->side == FLOW_SIDE_SERVER;
	json_t *rec = json_object();
	char comm[FLOW_COMM_LEN + 1];

	json_object_set_new(rec, "kind", json_string("flow"));
	json_object_set_new(rec, "event", json_string(e->type == FLOW_EV_OPEN
							     ? "open"
							     : "close"));
	json_object_set_new(rec, "time_ns",
			    json_integer((json_int_t)e->ts_ns +
					 a->mono_to_real_ns));
	json_object_set_new(rec, "node", json_string(a->node_name));
	json_object_set_new(rec, "proto", json_string("tcp"));
	json_object_set_new(rec, "ip_version",
			    json_integer(e->family == 2 ? 4 : 6));
	json_object_set_new(rec, "side",
			    json_string(server			      ? "server"
					: e->side == FLOW_SIDE_CLIENT ? "client"
								      : "unknown"));
	/* src opened the connection: the remote end when we are the server. */
	json_object_set_new(rec, "src", server ? remote : local);
	json_object_set_new(rec, "dst", server ? local : remote);
	json_object_set_new(rec, "old_state",
			    json_string(tcp_state_name(e->oldstate)));
	json_object_set_new(rec, "new_state",
			    json_string(tcp_state_name(e->newstate)));
	json_object_set_new(rec, "netns", json_integer(e->netns));
	if (e->pid) {
		memcpy(comm, e->comm, FLOW_COMM_LEN);
		comm[FLOW_COMM_LEN] = '\0';
		json_object_set_new(rec, "pid", json_integer(e->pid));
		json_object_set_new(rec, "comm", json_string(comm));
	}
	if (e->start_ns && e->established_ns)
		json_object_set_new(
			rec, "handshake_ns",
			json_integer((json_int_t)(e->established_ns -
						  e->start_ns)));
	if (e->type == FLOW_EV_CLOSE) {
		json_object_set_new(rec, "established",
				    json_boolean(e->established_ns != 0 ||
						 !e->start_ns));
		if (e->start_ns)
			json_object_set_new(
				rec, "duration_ns",
				json_integer((json_int_t)(e->ts_ns -
							  e->start_ns)));
	}

	char *line = json_dumps(rec, JSON_COMPACT);
	if (line) {
		fputs(line, a->out);
		fputc('\n', a->out);
		free(line);
		a->records++;
	}
	json_decref(rec);
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
	node_view_free(&a->view);
	a->view = view;
	if (!a->flow)
		return;

	uint32_t *netns = calloc(view.count + 1, sizeof(uint32_t));
	if (!netns)
		return;
	netns[0] = view.node_netns;
	for (size_t i = 0; i < view.count; i++)
		netns[i + 1] = view.owners[i].netns;
	flow_sensor_set_netns(a->flow, netns, view.count + 1);
	free(netns);
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

static void report_counters(struct agent *a)
{
	uint64_t c[FLOW_CNT_MAX];

	if (!a->flow) {
		fprintf(stderr, "{\"sensor\":\"flow\",\"state\":\"unavailable\"}\n");
		return;
	}
	if (flow_sensor_counters(a->flow, c))
		return;
	fprintf(stderr,
		"{\"sensor\":\"flow\",\"state\":\"running\",\"hook\":\"%s\","
		"\"records\":%llu,\"events\":%llu,\"lost_ringbuf_full\":%llu,"
		"\"untracked_map_full\":%llu,\"closes_without_birth\":%llu}\n",
		flow_sensor_hook(a->flow), (unsigned long long)a->records,
		(unsigned long long)c[FLOW_CNT_EVENTS],
		(unsigned long long)c[FLOW_CNT_RINGBUF_FULL],
		(unsigned long long)c[FLOW_CNT_TRACK_FULL],
		(unsigned long long)c[FLOW_CNT_UNTRACKED_END]);
}

int cmd_agent(int argc, char **argv)
{
	struct agent a = { .out = stdout };
	int npos = 0, rc = 1, epfd = -1, tfd = -1, sfd = -1;
	char why[256] = "";

	int prc = opts_parse(&agent_spec, argc, argv, &npos);
	if (prc)
		return prc > 0 ? 0 : 2;
	if (npos) {
		fprintf(stderr, "sonde agent: unexpected argument '%s'\n",
			argv[0]);
		return 2;
	}
	if (sys_require_root("sonde agent") || sys_require_btf(opt_btf))
		return 1;
	if (resolve_node(&a))
		goto out;
	if (opt_output) {
		a.out = fopen(opt_output, "a");
		if (!a.out) {
			log_err("cannot open --output %s: %s", opt_output,
				strerror(errno));
			a.out = stdout;
			goto out;
		}
	}

	/* Stop cleanly on SIGINT/SIGTERM: read through a signalfd. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);

	struct flow_options fo = {
		.filter_netns = !opt_all_netns,
		.btf_path = opt_btf,
		.on_event = on_flow_event,
		.ctx = &a,
	};
	int err = flow_sensor_start(&a.flow, &fo, why, sizeof(why));
	if (err) {
		/* A sensor that cannot run degrades; the agent stays up. */
		log_warn("flow sensor unavailable: %s", why);
		a.flow = NULL;
	}
	refresh_node(&a);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (epfd < 0 || tfd < 0 || sfd < 0) {
		log_err("epoll/timerfd/signalfd: %s", strerror(errno));
		goto out;
	}
	struct itimerspec tick = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	timerfd_settime(tfd, 0, &tick, NULL);
	struct epoll_event ev = { .events = EPOLLIN };
	ev.data.fd = tfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	ev.data.fd = sfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
	if (a.flow) {
		ev.data.fd = flow_sensor_fd(a.flow);
		epoll_ctl(epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
	}

	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	bool stop = false;
	while (!stop) {
		struct epoll_event evs[8];
		int n = epoll_wait(epfd, evs, 8, 1000);

		if (n < 0 && errno != EINTR) {
			log_err("epoll_wait: %s", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == sfd) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) > 0)
					log_info("signal %u: stopping",
						 si.ssi_signo);
				stop = true;
			} else if (fd == tfd) {
				uint64_t expirations;
				if (read(tfd, &expirations, sizeof(expirations)) > 0)
					refresh_node(&a);
			} else if (a.flow) {
				flow_sensor_consume(a.flow);
			}
		}
		fflush(a.out);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (opt_duration_ns &&
		    (uint64_t)((now.tv_sec - t0.tv_sec) * 1000000000LL +
			       (now.tv_nsec - t0.tv_nsec)) >= opt_duration_ns)
			stop = true;
	}
	/* Drain what the kernel already wrote: accepted data is never lost. */
	if (a.flow)
		flow_sensor_consume(a.flow);
	fflush(a.out);
	rc = 0;
out:
	report_counters(&a);
	flow_sensor_stop(a.flow);
	node_view_free(&a.view);
	meta_free(&a.meta);
	if (a.out && a.out != stdout)
		fclose(a.out);
	if (epfd >= 0)
		close(epfd);
	if (tfd >= 0)
		close(tfd);
	if (sfd >= 0)
		close(sfd);
	return rc;
}
