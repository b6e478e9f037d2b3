/* latency sensor family, user side: loads bpf/latency.bpf.c, attaches the
 * sender (sock_ops on the node's cgroup root, through a bpf_link: other
 * families may attach their own there) and the receivers (tc filters in the
 * node's netns: ingress of the VXLAN device, egress of every host-side
 * veth, i.e. towards the pods), keeps the address filters equal to the
 * monitored pods, and every --interval turns the kernel's histograms into
 * "latency" records. */
#include "agent/agent.h"
#include "agent/bpfmap.h"
#include "agent/sensor.h"
#include "latency.h"
#include "latency.skel.h"
#include "lib/log.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

/* Our tc filters' priority and handle on shared clsact hooks: other
 * families' filters live beside them, and only ours are ever removed. */
#define LAT_TC_PRIO 0x4c47
#define LAT_TC_HANDLE 0x4c47
#define MAX_DEVS 256
/* tcx attach types (Linux 6.6); the installed UAPI header may predate
 * them. A tcx link belongs to the agent's fd: it goes with the process,
 * also on kill -9, where a legacy tc filter (and its program and maps)
 * would stay in the kernel. */
#define LAT_TCX_INGRESS 46
#define LAT_TCX_EGRESS 47

struct lat_dev {
	int ifindex;
	char name[IF_NAMESIZE];
	enum lat_hop hop;
	bool present; /* seen in the last scan */
	int link_fd;  /* tcx link; -1: a legacy tc filter */
};

struct lat_sensor {
	struct agent *agent;
	struct latency_bpf *skel;
	struct bpf_link *sockops_link;
	int node_netns_fd;
	int self_netns_fd;
	struct lat_dev devs[MAX_DEVS];
	size_t ndevs;
	int ncpus;
	size_t value_size; /* per-CPU slot of a lat_hist */
	void *percpu;
	uint64_t interval_start_ns; /* CLOCK_MONOTONIC */
	uint64_t records;
	uint32_t sample;
	int64_t test_skew_ns; /* --latency-test-skew-ns (tests only) */
};

/* ---- network namespace switching (the agent is single-threaded) */

static int enter_node(struct lat_sensor *s)
{
	if (s->node_netns_fd < 0)
		return 0;
	if (setns(s->node_netns_fd, CLONE_NEWNET))
		return -errno;
	return 0;
}

static void leave_node(struct lat_sensor *s)
{
	if (s->node_netns_fd >= 0 && setns(s->self_netns_fd, CLONE_NEWNET))
		log_err("latency: cannot return to the agent's netns: %s",
			strerror(errno));
}

/* The kernel driver behind an interface ("veth", "vxlan" ...). */
static int dev_driver(int sock, const char *name, char *out, size_t len)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_data = (void *)&info;
	if (ioctl(sock, SIOCETHTOOL, &ifr))
		return -errno;
	snprintf(out, len, "%s", info.driver);
	return 0;
}

static void tc_detach_legacy(struct lat_dev *d)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = d->ifindex,
		    .attach_point = d->hop == LAT_HOP_VXLAN ? BPF_TC_INGRESS
							     : BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = LAT_TC_HANDLE,
		    .priority = LAT_TC_PRIO);

	/* Only our filter: the clsact qdisc may carry others'. */
	bpf_tc_detach(&hook, &opts);
}

/* A tcx link where the kernel has them, else a legacy tc filter with our
 * fixed handle and priority, replaced in place (a restarted agent takes
 * over a killed one's filter instead of adding a second). Called inside
 * the node's netns: ifindex is resolved there. */
static int tc_attach(struct lat_sensor *s, struct lat_dev *d)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = d->ifindex,
		    .attach_point = d->hop == LAT_HOP_VXLAN ? BPF_TC_INGRESS
							     : BPF_TC_EGRESS);
	struct bpf_program *prog = d->hop == LAT_HOP_VXLAN
					   ? s->skel->progs.lat_rx_vxlan
					   : s->skel->progs.lat_rx_veth;
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = LAT_TC_HANDLE,
		    .priority = LAT_TC_PRIO, .flags = BPF_TC_F_REPLACE,
		    .prog_fd = bpf_program__fd(prog));

	d->link_fd = bpf_link_create(
		bpf_program__fd(prog), d->ifindex,
		(enum bpf_attach_type)(d->hop == LAT_HOP_VXLAN ? LAT_TCX_INGRESS
							       : LAT_TCX_EGRESS),
		NULL);
	if (d->link_fd >= 0) {
		/* A filter left by an agent that ran legacy tc and was
		 * killed: ours now, remove it. */
		tc_detach_legacy(d);
		return 0;
	}
	d->link_fd = -1;
	int err = bpf_tc_hook_create(&hook);

	/* The clsact qdisc may be there already (another family's). */
	if (err && err != -EEXIST)
		return err;
	return bpf_tc_attach(&hook, &opts);
}

static void tc_detach(struct lat_dev *d)
{
	if (d->link_fd >= 0) {
		close(d->link_fd);
		d->link_fd = -1;
		return;
	}
	tc_detach_legacy(d);
}

/* Finds the node's VXLAN devices and host-side veths and attaches to the
 * new ones. Pods come and go: run at start and on every retarget. */
static void scan_devices(struct lat_sensor *s)
{
	struct if_nameindex *ifs;
	char driver[32];
	int sock, err;

	err = enter_node(s);
	if (err) {
		log_warn("latency: cannot enter the node netns: %s",
			 strerror(-err));
		return;
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ifs = if_nameindex();
	if (sock < 0 || !ifs)
		goto out;
	for (size_t i = 0; i < s->ndevs; i++)
		s->devs[i].present = false;
	for (struct if_nameindex *it = ifs; it->if_index; it++) {
		enum lat_hop hop;
		size_t j;

		if (dev_driver(sock, it->if_name, driver, sizeof(driver)))
			continue;
		if (!strcmp(driver, "vxlan"))
			hop = LAT_HOP_VXLAN;
		else if (!strcmp(driver, "veth") &&
			 strncmp(it->if_name, "eth", 3))
			/* a node's uplink is a veth in the lab, named eth0 */
			hop = LAT_HOP_POD_VETH;
		else
			continue;
		for (j = 0; j < s->ndevs; j++)
			if (s->devs[j].ifindex == (int)it->if_index &&
			    !strcmp(s->devs[j].name, it->if_name))
				break;
		if (j < s->ndevs) {
			s->devs[j].present = true;
			continue;
		}
		if (s->ndevs == MAX_DEVS) {
			log_warn("latency: more than %d devices; %s unwatched",
				 MAX_DEVS, it->if_name);
			continue;
		}
		struct lat_dev *d = &s->devs[s->ndevs];
		d->ifindex = (int)it->if_index;
		snprintf(d->name, sizeof(d->name), "%s", it->if_name);
		d->hop = hop;
		d->present = true;
		err = tc_attach(s, d);
		if (err) {
			log_warn("latency: tc attach to %s: %s", d->name,
				 strerror(-err));
			continue;
		}
		log_info("latency receiver attached to %s %s", d->name,
			 hop == LAT_HOP_VXLAN ? "ingress" : "egress (towards the pod)");
		s->ndevs++;
	}
	/* Forget devices that are gone (their filters went with them; a
	 * tcx link stays as an empty shell until its fd is closed). */
	size_t k = 0;
	for (size_t i = 0; i < s->ndevs; i++) {
		if (s->devs[i].present)
			s->devs[k++] = s->devs[i];
		else if (s->devs[i].link_fd >= 0)
			close(s->devs[i].link_fd);
	}
	s->ndevs = k;
out:
	if (ifs)
		if_freenameindex(ifs);
	if (sock >= 0)
		close(sock);
	leave_node(s);
}

/* ---- address filters */

static int addr_parse(const char *ip, struct lat_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (!ip)
		return -EINVAL;
	if (inet_pton(AF_INET, ip, a->addr) == 1) {
		a->family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, a->addr) == 1) {
		a->family = 6;
		return 0;
	}
	return -EINVAL;
}

/* A pod's listening ports, from the metadata's pod object ("ports"), when
 * the metadata has them (the lab's state does). */
static void pod_ports(const struct meta *m, const char *uid,
		      struct lat_pod *out)
{
	json_t *pods = json_object_get((json_t *)m->root, "pods"), *p, *port;
	size_t i, j, n = 0;

	memset(out, 0, sizeof(*out));
	json_array_foreach(pods, i, p) {
		const char *u = json_string_value(json_object_get(p, "uid"));
		if (!u || !uid || strcmp(u, uid))
			continue;
		json_array_foreach(json_object_get(p, "ports"), j, port) {
			if (n < 4 && json_is_integer(port))
				out->ports[n++] =
					(uint16_t)json_integer_value(port);
		}
		return;
	}
}

struct addr_set {
	struct lat_addr *keys;
	struct lat_pod *vals;
	size_t n, cap;
};

static void set_add(struct addr_set *set, const struct lat_addr *k,
		    const struct lat_pod *v)
{
	for (size_t i = 0; i < set->n; i++)
		if (!memcmp(&set->keys[i], k, sizeof(*k)))
			return;
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 64;
		void *nk = realloc(set->keys, cap * sizeof(*k));
		if (!nk)
			return;
		set->keys = nk;
		void *nv = realloc(set->vals, cap * sizeof(*v));
		if (!nv)
			return;
		set->vals = nv;
		set->cap = cap;
	}
	set->keys[set->n] = *k;
	set->vals[set->n++] = *v;
}

static void set_free(struct addr_set *set)
{
	free(set->keys);
	free(set->vals);
}

/* Makes the map hold exactly `set` (value size vsize; NULL vals: a byte). */
static void sync_map(int fd, const struct addr_set *set, size_t vsize)
{
	struct lat_addr key, next, *stale = NULL;
	size_t nstale = 0, cap = 0;
	void *prev = NULL;
	uint8_t one = 1;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		bool keep = false;
		for (size_t i = 0; i < set->n && !keep; i++)
			keep = !memcmp(&set->keys[i], &next, sizeof(next));
		if (!keep) {
			if (nstale == cap) {
				cap = cap ? cap * 2 : 16;
				void *ns = realloc(stale, cap * sizeof(*stale));
				if (!ns)
					break;
				stale = ns;
			}
			stale[nstale++] = next;
		}
		key = next;
		prev = &key;
	}
	for (size_t i = 0; i < nstale; i++)
		bpf_map_delete_elem(fd, &stale[i]);
	free(stale);
	for (size_t i = 0; i < set->n; i++)
		if (bpf_map_update_elem(fd, &set->keys[i],
					vsize == 1 ? (void *)&one
						   : (void *)&set->vals[i],
					BPF_ANY))
			log_warn("latency: map update: %s", strerror(errno));
}

/* Senders: the monitored pods of this node. Receivers: packets to those
 * pods, from any pod of the cluster's metadata (only monitored pods stamp,
 * so the sender side already narrows the sources). */
static void latency_retarget(void *state)
{
	struct lat_sensor *s = state;
	struct agent *a = s->agent;
	const struct meta *m = agent_meta(a);
	const struct node_view *v = agent_view(a);
	struct addr_set local = { 0 }, all = { 0 };
	const uint32_t *netns;
	size_t n;
	bool ports = false;

	netns = agent_target_netns(a, &n);
	for (size_t i = 0; i < n; i++) {
		const struct netns_owner *o = node_find_netns(v, netns[i]);
		const struct meta_pod *p =
			o && o->pod_uid[0] ? meta_pod_by_uid(m, o->pod_uid) : NULL;
		struct lat_addr k;
		struct lat_pod val;

		if (!p || addr_parse(p->ip, &k))
			continue;
		pod_ports(m, p->uid, &val);
		set_add(&local, &k, &val);
	}
	for (size_t i = 0; i < m->npods; i++) {
		struct lat_addr k;
		struct lat_pod val;

		if (addr_parse(m->pods[i].ip, &k))
			continue;
		pod_ports(m, m->pods[i].uid, &val);
		ports |= val.ports[0] != 0;
		set_add(&all, &k, &val);
	}
	/* At a pod's veth, the reply of a connection made to a cluster IP
	 * already carries the cluster IP as its source (kube-proxy's DNAT is
	 * undone on the client's node, before the veth): such samples are
	 * attributed to the service, the sending pod being unknown there. */
	json_t *svcs = json_object_get((json_t *)m->root, "services"), *sv;
	size_t si;
	json_array_foreach(svcs, si, sv) {
		struct lat_addr k;
		struct lat_pod val = { { 0 } };
		json_t *port;
		size_t pi, np = 0;

		if (addr_parse(json_string_value(json_object_get(sv, "cluster_ip")),
			       &k))
			continue;
		json_array_foreach(json_object_get(sv, "ports"), pi, port) {
			json_t *num = json_object_get(port, "port");
			if (np < 4 && json_is_integer(num))
				val.ports[np++] = (uint16_t)json_integer_value(num);
		}
		set_add(&all, &k, &val);
	}
	sync_map(bpf_map__fd(s->skel->maps.tx_local), &local, 1);
	sync_map(bpf_map__fd(s->skel->maps.rx_dst), &local,
		 sizeof(struct lat_pod));
	sync_map(bpf_map__fd(s->skel->maps.rx_src), &all,
		 sizeof(struct lat_pod));
	/* Filter by port only when the metadata knows the ports. */
	s->skel->bss->lat_filter_ports = ports;
	set_free(&local);
	set_free(&all);
	scan_devices(s);
}

/* ---- records */

static uint64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A percentile from the buckets: linear interpolation inside the bucket
 * holding the rank (exact below 128 ns), clamped to the observed range. */
static int64_t hist_percentile(const struct lat_hist *h, double p)
{
	uint64_t n = h->count - h->negative, cum = 0;
	double rank;

	if (!n)
		return h->min_ns;
	rank = p * (double)n;
	if (rank < 0.5)
		rank = 0.5;
	for (uint32_t b = 0; b < LAT_NBUCKETS; b++) {
		uint64_t c = h->buckets[b];
		if (!c || (double)(cum + c) < rank) {
			cum += c;
			continue;
		}
		uint64_t lo = lat_bucket_low(b);
		uint64_t hi = b + 1 < LAT_NBUCKETS ? lat_bucket_low(b + 1) : lo + 1;
		/* The c samples are taken as spread evenly over [lo, hi):
		 * sample j (from 0) at lo + (j + 0.5) * width / c. */
		double j = rank - (double)cum - 0.5;
		if (j < 0)
			j = 0;
		if (j > (double)(c - 1))
			j = (double)(c - 1);
		int64_t v = (int64_t)((double)lo + (j + 0.5) * (double)(hi - lo) /
						       (double)c);
		if (v < h->min_ns)
			v = h->min_ns;
		if (v > h->max_ns)
			v = h->max_ns;
		return v;
	}
	return h->max_ns;
}

static const char *hop_name(unsigned int hop)
{
	return hop == LAT_HOP_VXLAN ? "vxlan_ingress" : "pod_veth";
}

static void iso8601(int64_t utc_ns, char *buf, size_t len)
{
	time_t sec = (time_t)(utc_ns / 1000000000LL);
	struct tm tm;

	gmtime_r(&sec, &tm);
	size_t k = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + k, len - k, ".%03lldZ",
		 (long long)(utc_ns % 1000000000LL / 1000000));
}

/* This node's clock discipline, as the kernel knows it (adjtimex). A
 * test skew, when set, is written next to it: such figures are doctored. */
static json_t *clock_state(int64_t test_skew_ns, int64_t *error_ns)
{
	struct timex tx = { 0 };
	int state = adjtimex(&tx);
	json_t *c = json_object();
	bool synced = state != TIME_ERROR && !(tx.status & STA_UNSYNC);

	json_object_set_new(c, "synced", json_boolean(synced));
	json_object_set_new(c, "maxerror_ns", json_integer(tx.maxerror * 1000LL));
	json_object_set_new(c, "esterror_ns", json_integer(tx.esterror * 1000LL));
	json_object_set_new(c, "tai_offset_s", json_integer(tx.tai));
	if (test_skew_ns)
		json_object_set_new(c, "test_skew_ns", json_integer(test_skew_ns));
	*error_ns = tx.maxerror * 1000LL;
	return c;
}

static void set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, v ? json_string(v) : json_null());
}

/* upstream: for a pod_veth record, the same pair's vxlan_ingress histogram
 * of the same interval (cross-node traffic), or NULL. */
static void emit(struct lat_sensor *s, const struct lat_key *k,
		 const struct lat_hist *h, const struct lat_hist *upstream,
		 uint64_t start, uint64_t end)
{
	struct agent *a = s->agent;
	const struct meta *m = agent_meta(a);
	int fam = k->src.family == 6 ? AF_INET6 : AF_INET;
	char sip[INET6_ADDRSTRLEN] = "", dip[INET6_ADDRSTRLEN] = "", t[40];
	json_t *rec = agent_record(a, "latency", end);
	json_t *src, *dst;
	int64_t clock_err;
	int64_t p50 = hist_percentile(h, 0.50);

	inet_ntop(fam, k->src.addr, sip, sizeof(sip));
	inet_ntop(fam, k->dst.addr, dip, sizeof(dip));
	src = agent_endpoint(a, fam, k->src.addr, 0, NULL);
	dst = agent_endpoint(a, fam, k->dst.addr, 0, NULL);
	json_object_del(src, "port"); /* per pod pair, all ports */
	json_object_del(dst, "port");
	const struct meta_pod *sp = meta_pod_by_ip(m, sip);
	const struct meta_pod *dp = meta_pod_by_ip(m, dip);

	json_object_set_new(rec, "src", src);
	json_object_set_new(rec, "dst", dst);
	json_object_set_new(rec, "hop", json_string(hop_name(k->hop)));
	set_str(rec, "src_node", sp ? sp->node : NULL);
	set_str(rec, "dst_node", dp ? dp->node : agent_node_name(a));
	json_object_set_new(rec, "count", json_integer((json_int_t)h->count));
	json_object_set_new(rec, "min_ns", json_integer(h->min_ns));
	json_object_set_new(rec, "p50_ns", json_integer(p50));
	json_object_set_new(rec, "p90_ns", json_integer(hist_percentile(h, 0.90)));
	json_object_set_new(rec, "p99_ns", json_integer(hist_percentile(h, 0.99)));
	json_object_set_new(rec, "max_ns", json_integer(h->max_ns));
	json_object_set_new(rec, "sum_ns", json_integer((json_int_t)h->sum_ns));
	json_object_set_new(rec, "negative", json_integer((json_int_t)h->negative));
	json_object_set_new(rec, "start_ns",
			    json_integer((json_int_t)start + agent_mono_to_real(a)));
	json_object_set_new(rec, "interval_ns",
			    json_integer((json_int_t)(end - start)));
	json_object_set_new(rec, "sample", json_integer(s->sample));
	json_object_set_new(rec, "clock",
			    clock_state(s->test_skew_ns, &clock_err));
	json_object_set_new(rec, "clock_error_ns", json_integer(clock_err));
	if (upstream) {
		/* Both hops timed against the same send stamps, on one time
		 * base: the split of the path at the receiving node's
		 * ingress. Medians of the two sets; the veth's set also holds
		 * any same-node traffic of the pair (none when they are on
		 * different nodes). */
		json_t *seg = json_object();
		int64_t up50 = hist_percentile(upstream, 0.50);
		int64_t up99 = hist_percentile(upstream, 0.99);
		json_object_set_new(seg, "sender_to_node_p50_ns", json_integer(up50));
		json_object_set_new(seg, "node_to_pod_p50_ns", json_integer(p50 - up50));
		json_object_set_new(seg, "sender_to_node_p99_ns", json_integer(up99));
		json_object_set_new(seg, "vxlan_count", json_integer((json_int_t)upstream->count));
		json_object_set_new(rec, "hops", seg);
	}
	/* Seed 000's Fig. 12 names, for its dashboards and exporters. */
	json_object_set_new(rec, "DSTNode", json_string(dip));
	set_str(rec, "DSTworkload", dp ? dp->workload : NULL);
	json_object_set_new(rec, "SRCNode", json_string(sip));
	set_str(rec, "SRCworkload", sp ? sp->workload : NULL);
	json_object_set_new(rec, "duration", json_integer(p50));
	json_object_set_new(rec, "sensorType", json_string("latency"));
	set_str(rec, "serviceName", dp ? dp->namespace : NULL);
	iso8601((int64_t)start + agent_mono_to_real(a), t, sizeof(t));
	json_object_set_new(rec, "startTime", json_string(t));
	agent_emit(a, rec);
	s->records++;
}

/* Flips the generation, then reads, emits and deletes the previous one. */
static void latency_tick(void *state)
{
	struct lat_sensor *s = state;
	int fd = bpf_map__fd(s->skel->maps.lat_hists);
	uint8_t old = s->skel->bss->lat_gen;
	struct lat_key key, next, *keys = NULL;
	size_t nkeys = 0, cap = 0;
	uint64_t end = mono_now();
	struct lat_hist *sums;
	void *prev = NULL;

	s->skel->bss->lat_gen = old ^ 1;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (next.gen == old) {
			if (nkeys == cap) {
				cap = cap ? cap * 2 : 16;
				void *nk = realloc(keys, cap * sizeof(*keys));
				if (!nk)
					break;
				keys = nk;
			}
			keys[nkeys++] = next;
		}
		key = next;
		prev = &key;
	}
	/* Sum every entry over CPUs first: a pod_veth record is completed
	 * with the same pair's vxlan_ingress figures (the per-hop split). */
	sums = calloc(nkeys ? nkeys : 1, sizeof(*sums));
	for (size_t i = 0; sums && i < nkeys; i++) {
		struct lat_hist *sum = &sums[i];

		if (bpf_map_lookup_elem(fd, &keys[i], s->percpu))
			continue;
		for (int c = 0; c < s->ncpus; c++) {
			const struct lat_hist *h =
				(const void *)((char *)s->percpu +
					       (size_t)c * s->value_size);
			if (!h->count)
				continue;
			if (!sum->count || h->min_ns < sum->min_ns)
				sum->min_ns = h->min_ns;
			if (!sum->count || h->max_ns > sum->max_ns)
				sum->max_ns = h->max_ns;
			sum->count += h->count;
			sum->sum_ns += h->sum_ns;
			sum->negative += h->negative;
			for (uint32_t b = 0; b < LAT_NBUCKETS; b++)
				sum->buckets[b] += h->buckets[b];
		}
		/* Reset in place rather than delete: the kernel then never
		 * allocates for a busy pair (allocation in softirq context can
		 * fail); a pair idle for a whole interval is deleted. */
		if (sum->count) {
			memset(s->percpu, 0, (size_t)s->ncpus * s->value_size);
			if (bpf_map_update_elem(fd, &keys[i], s->percpu, BPF_EXIST))
				bpf_map_delete_elem(fd, &keys[i]);
		} else {
			bpf_map_delete_elem(fd, &keys[i]);
		}
	}
	for (size_t i = 0; sums && i < nkeys; i++) {
		const struct lat_hist *upstream = NULL;

		if (!sums[i].count)
			continue;
		for (size_t j = 0; keys[i].hop == LAT_HOP_POD_VETH && j < nkeys; j++)
			if (keys[j].hop == LAT_HOP_VXLAN && sums[j].count &&
			    !memcmp(&keys[j].src, &keys[i].src, sizeof(keys[i].src)) &&
			    !memcmp(&keys[j].dst, &keys[i].dst, sizeof(keys[i].dst)))
				upstream = &sums[j];
		emit(s, &keys[i], &sums[i], upstream, s->interval_start_ns, end);
	}
	free(sums);
	free(keys);
	s->interval_start_ns = end;
}

/* ---- lifecycle */

static void latency_stop(void *state)
{
	struct lat_sensor *s = state;

	if (!s)
		return;
	if (s->ndevs && enter_node(s) == 0) {
		for (size_t i = 0; i < s->ndevs; i++)
			tc_detach(&s->devs[i]);
		leave_node(s);
	}
	bpf_link__destroy(s->sockops_link);
	latency_bpf__destroy(s->skel);
	if (s->node_netns_fd >= 0)
		close(s->node_netns_fd);
	if (s->self_netns_fd >= 0)
		close(s->self_netns_fd);
	free(s->percpu);
	free(s);
}

static int latency_start(struct agent *a, void **state, char *why,
			 size_t why_len)
{
	const struct agent_config *cfg = agent_config(a);
	LIBBPF_OPTS(bpf_object_open_opts, open_opts,
		    .btf_custom_path = cfg->btf_path);
	struct lat_sensor *s = calloc(1, sizeof(*s));
	int err, cgfd;

	if (!s)
		return -ENOMEM;
	s->agent = a;
	s->node_netns_fd = s->self_netns_fd = -1;
	s->sample = cfg->latency_sample ? cfg->latency_sample : 1;
	s->ncpus = libbpf_num_possible_cpus();
	s->value_size = (sizeof(struct lat_hist) + 7) & ~(size_t)7;
	s->percpu = s->ncpus > 0 ? calloc((size_t)s->ncpus, s->value_size)
				 : NULL;
	if (!s->percpu) {
		err = -ENOMEM;
		snprintf(why, why_len, "cannot count CPUs or allocate");
		goto fail;
	}
	s->skel = latency_bpf__open_opts(&open_opts);
	if (!s->skel) {
		err = -errno;
		snprintf(why, why_len, "open BPF object: %s", strerror(-err));
		goto fail;
	}
	s->skel->rodata->lat_sample = s->sample;
	s->test_skew_ns = cfg->latency_test_skew_ns;
	s->skel->rodata->lat_test_skew_ns = s->test_skew_ns;
	if (s->test_skew_ns)
		log_warn("latency: TEST AID: this node's stamps and arrival "
			 "times are shifted by %lld ns (--latency-test-skew-ns)",
			 (long long)s->test_skew_ns);
	err = latency_bpf__load(s->skel);
	if (err) {
		snprintf(why, why_len, "load: %s", strerror(-err));
		goto fail;
	}

	cgfd = open(cfg->cgroup_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0) {
		err = -errno;
		snprintf(why, why_len, "open cgroup %s: %s", cfg->cgroup_root,
			 strerror(-err));
		goto fail;
	}
	/* A link attachment is always multi: the flow family (or anyone)
	 * may attach sock_ops programs to the same cgroup. */
	s->sockops_link =
		bpf_program__attach_cgroup(s->skel->progs.lat_sockops, cgfd);
	err = s->sockops_link ? 0 : -errno;
	close(cgfd);
	if (err) {
		snprintf(why, why_len, "attach sock_ops to %s: %s",
			 cfg->cgroup_root, strerror(-err));
		goto fail;
	}

	s->self_netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (cfg->netns_path && strcmp(cfg->netns_path, "/proc/self/ns/net")) {
		s->node_netns_fd = open(cfg->netns_path, O_RDONLY | O_CLOEXEC);
		if (s->node_netns_fd < 0 || s->self_netns_fd < 0) {
			err = -errno;
			snprintf(why, why_len, "open netns %s: %s",
				 cfg->netns_path, strerror(-err));
			goto fail;
		}
	}
	s->interval_start_ns = mono_now();
	log_info("latency sensor attached: sock_ops on %s (1 in %u segments), "
		 "tc receivers in %s",
		 cfg->cgroup_root, s->sample,
		 cfg->netns_path ? cfg->netns_path : "this netns");
	*state = s;
	return 0;
fail:
	latency_stop(s);
	return err;
}

static void latency_consume(void *state)
{
	(void)state; /* everything is aggregated in maps; see tick */
}

static void latency_status(void *state, json_t *out)
{
	static const char *const names[LAT_CNT_MAX] = {
		[LAT_CNT_TX_SOCKS] = "tx_connections",
		[LAT_CNT_TX_STAMPED] = "tx_stamped",
		[LAT_CNT_TX_NOT_SAMPLED] = "tx_not_sampled",
		[LAT_CNT_TX_NO_ROOM] = "tx_no_room",
		[LAT_CNT_TX_RESERVE_FAIL] = "tx_reserve_failed",
		[LAT_CNT_TX_STORE_FAIL] = "tx_store_failed",
		[LAT_CNT_RX_TCP] = "rx_tcp",
		[LAT_CNT_RX_FILTERED] = "rx_not_monitored",
		[LAT_CNT_RX_NO_OPTION] = "rx_no_option",
		[LAT_CNT_RX_TRUNCATED] = "rx_truncated_option",
		[LAT_CNT_RX_OTHER_EXID] = "rx_other_exid",
		[LAT_CNT_RX_MEASURED] = "rx_measured",
		[LAT_CNT_RX_NEGATIVE] = "rx_negative",
		[LAT_CNT_RX_MAP_FULL] = "rx_map_full",
		[LAT_CNT_RX_NOT_TCP] = "rx_not_tcp",
	};
	struct lat_sensor *s = state;
	int fd = bpf_map__fd(s->skel->maps.lat_counters);
	json_t *devs = json_array();

	json_object_set_new(out, "records", json_integer((json_int_t)s->records));
	json_object_set_new(out, "sample", json_integer(s->sample));
	for (size_t i = 0; i < s->ndevs; i++)
		json_array_append_new(devs, json_string(s->devs[i].name));
	json_object_set_new(out, "devices", devs);
	json_object_set_new(out, "tc_attach",
			    json_string(!s->ndevs ? "none"
					: s->devs[0].link_fd >= 0 ? "tcx"
								  : "legacy tc"));
	percpu_counters_json(fd, s->ncpus, names, LAT_CNT_MAX, out);
}

static int latency_poll_fd(void *state)
{
	(void)state;
	return -1;
}

const struct sensor_family latency_family = {
	.name = "latency",
	.summary = "one-way pod-to-pod latency from a TCP option stamped at "
		   "the sender",
	.start = latency_start,
	.retarget = latency_retarget,
	.poll_fd = latency_poll_fd,
	.consume = latency_consume,
	.tick = latency_tick,
	.status = latency_status,
	.stop = latency_stop,
};
