/* flow sensor family, user side: loads bpf/flow.bpf.c, keeps its netns
 * filter equal to the monitored pods' namespaces, turns ring-buffer events
 * (TCP open, close) into records, and every interval reads the kernel's
 * per-flow tables (TCP, UDP, drops) and emits what changed since the last
 * interval. The kernel keeps cumulative counters; the differences are made
 * here against the previous interval's copy (a sorted snapshot). */
#include "agent/agent.h"
#include "agent/attach.h"
#include "agent/bpfmap.h"
#include "agent/sensor.h"
#include "flow.h"
#include "flow.skel.h"
#include "lib/log.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A UDP pair or a drop key with no new packet for this long is finished:
 * its entry is deleted and a close record carries its totals. */
#define FLOW_IDLE_NS (30ULL * 1000000000ULL)

/* A map's entries, sorted by key, as read at one interval. */
struct snap {
	size_t ksz, vsz, n, cap;
	uint8_t *buf;
};

struct hook {
	const char *name;
	const char *metric; /* what is missing when the hook is */
	enum tp_kind kind;
	char why[160];
};

enum { HOOK_STATE, HOOK_DESTROY, HOOK_PROBE, HOOK_RST_TX, HOOK_RST_RX,
       HOOK_DROP, HOOK_UDP, HOOK_N };

struct flow_sensor {
	struct agent *agent;
	struct flow_bpf *skel;
	struct ring_buffer *rb;
	struct bpf_link *udp_links[2];
	struct hook hooks[HOOK_N];
	struct btf *vmlinux; /* drop reason names */
	int ncpus;
	uint32_t epoch;
	struct snap tcp_prev, udp_prev, drop_prev;
	uint64_t records, intervals, udp_idle_deleted, drop_idle_deleted;
};

/* ---- snapshots */

static size_t snap_keysz_for_sort;

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, snap_keysz_for_sort);
}

static void snap_free(struct snap *s)
{
	free(s->buf);
	s->buf = NULL;
	s->n = s->cap = 0;
}

/* Reads every entry of map fd. Entries deleted meanwhile are skipped. */
static int snap_load(int fd, size_t ksz, size_t vsz, struct snap *s)
{
	uint8_t key[64], next[64];
	void *prev = NULL;

	s->ksz = ksz;
	s->vsz = vsz;
	s->n = 0;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 64;
			uint8_t *b = realloc(s->buf, cap * (ksz + vsz));
			if (!b)
				return -ENOMEM;
			s->buf = b;
			s->cap = cap;
		}
		uint8_t *e = s->buf + s->n * (ksz + vsz);
		memcpy(e, next, ksz);
		if (bpf_map_lookup_elem(fd, next, e + ksz) == 0)
			s->n++;
		memcpy(key, next, ksz);
		prev = key;
	}
	snap_keysz_for_sort = ksz;
	if (s->n)
		qsort(s->buf, s->n, ksz + vsz, key_cmp);
	return 0;
}

static const void *snap_find(const struct snap *s, const void *key)
{
	const uint8_t *e;

	if (!s->n)
		return NULL;
	snap_keysz_for_sort = s->ksz;
	e = bsearch(key, s->buf, s->n, s->ksz + s->vsz, key_cmp);
	return e ? e + s->ksz : NULL;
}

#define SNAP_EACH(s, k, v)                                                   \
	for (size_t _i = 0; _i < (s)->n &&                                   \
			    ((k) = (void *)((s)->buf + _i * ((s)->ksz + (s)->vsz)), \
			    (v) = (void *)((uint8_t *)(k) + (s)->ksz), 1);     \
	     _i++)

/* ---- record helpers */

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

/* IPv4 on an IPv6 socket (::ffff:a.b.c.d) is IPv4 on the wire and in the
 * lab's pod table: report it as such. */
static int tuple_family(const struct flow_tuple *t, const uint8_t **l,
			const uint8_t **r)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	*l = t->laddr;
	*r = t->raddr;
	if (t->family == 2)
		return AF_INET;
	if (!memcmp(t->laddr, mapped, 12) && !memcmp(t->raddr, mapped, 12)) {
		*l = t->laddr + 12;
		*r = t->raddr + 12;
		return AF_INET;
	}
	return AF_INET6;
}

static void set_u64(json_t *rec, const char *name, uint64_t v)
{
	json_object_set_new(rec, name, json_integer((json_int_t)v));
}

static void set_task(json_t *rec, uint32_t pid, const char *comm_raw)
{
	char comm[FLOW_COMM_LEN + 1];

	if (!pid)
		return;
	memcpy(comm, comm_raw, FLOW_COMM_LEN);
	comm[FLOW_COMM_LEN] = '\0';
	set_u64(rec, "pid", pid);
	json_object_set_new(rec, "comm", json_string(comm));
}

/* Starts a TCP record: endpoints oriented src = the side that connected. */
static json_t *tcp_record(struct flow_sensor *s, const char *event,
			  uint64_t ts, const struct flow_tcp *f)
{
	struct agent *a = s->agent;
	const uint8_t *l, *r;
	int family = tuple_family(&f->tuple, &l, &r);
	json_t *local = agent_endpoint(a, family, l, f->tuple.lport, &f->netns);
	json_t *remote = agent_endpoint(a, family, r, f->tuple.rport, NULL);
	bool server = f->side == FLOW_SIDE_SERVER;
	json_t *rec = agent_record(a, "flow", ts);

	if (!server)
		agent_backend(a, remote, IPPROTO_TCP, family, l, f->tuple.lport,
			      r, f->tuple.rport);

	json_object_set_new(rec, "event", json_string(event));
	json_object_set_new(rec, "proto", json_string("tcp"));
	json_object_set_new(rec, "ip_version",
			    json_integer(family == AF_INET ? 4 : 6));
	json_object_set_new(rec, "side",
			    json_string(server			      ? "server"
					: f->side == FLOW_SIDE_CLIENT ? "client"
								      : "unknown"));
	/* src opened the connection: the remote end when we are the server. */
	json_object_set_new(rec, "src", server ? remote : local);
	json_object_set_new(rec, "dst", server ? local : remote);
	set_u64(rec, "netns", f->netns);
	set_task(rec, f->pid, f->comm);
	return rec;
}

/* Counters of the local socket: _out = sent by it, _in = received. */
static void tcp_counters(json_t *rec, const struct flow_tcp *f,
			 const struct flow_tcp *base)
{
	static const struct flow_tcp zero;

	if (!base)
		base = &zero;
	set_u64(rec, "bytes_out", f->bytes_acked - base->bytes_acked);
	set_u64(rec, "bytes_in", f->bytes_received - base->bytes_received);
	set_u64(rec, "bytes_sent", f->bytes_sent - base->bytes_sent);
	set_u64(rec, "bytes_retrans", f->bytes_retrans - base->bytes_retrans);
	set_u64(rec, "segs_out", f->segs_out - base->segs_out);
	set_u64(rec, "segs_in", f->segs_in - base->segs_in);
	set_u64(rec, "data_segs_out", f->data_segs_out - base->data_segs_out);
	set_u64(rec, "data_segs_in", f->data_segs_in - base->data_segs_in);
	set_u64(rec, "retrans", f->total_retrans - base->total_retrans);
	set_u64(rec, "tlp", f->tlp - base->tlp);
	set_u64(rec, "rst_sent", f->rst_sent - base->rst_sent);
	set_u64(rec, "rst_received", f->rst_received - base->rst_received);
	if (f->srtt_us)
		set_u64(rec, "srtt_us", f->srtt_us);
	if (f->min_rtt_us && f->min_rtt_us != ~0u)
		set_u64(rec, "min_rtt_us", f->min_rtt_us);
}

static void tcp_transitions(struct flow_sensor *s, json_t *rec,
			    const struct flow_tcp *f)
{
	json_t *arr = json_array();

	for (unsigned int i = 0; i < f->ntrans && i < FLOW_MAX_TRANS; i++) {
		json_t *t = json_object();
		json_object_set_new(t, "old",
				    json_string(tcp_state_name(f->trans[i].oldstate)));
		json_object_set_new(t, "new",
				    json_string(tcp_state_name(f->trans[i].newstate)));
		set_u64(t, "time_ns", f->trans[i].ts_ns +
					      (uint64_t)agent_mono_to_real(s->agent));
		json_array_append_new(arr, t);
	}
	json_object_set_new(rec, "transitions", arr);
}

static void emit_event(struct flow_sensor *s, const struct flow_event *e)
{
	bool close = e->type == FLOW_EV_CLOSE;
	const struct flow_tcp *f = &e->f;
	json_t *rec = tcp_record(s, close ? "close" : "open", e->ts_ns, f);

	json_object_set_new(rec, "old_state",
			    json_string(tcp_state_name(e->oldstate)));
	json_object_set_new(rec, "new_state",
			    json_string(tcp_state_name(e->newstate)));
	if (f->start_ns && f->established_ns)
		set_u64(rec, "handshake_ns", f->established_ns - f->start_ns);
	if (e->tracked)
		tcp_transitions(s, rec, f);
	if (close) {
		json_object_set_new(rec, "established",
				    json_boolean(f->established_ns != 0 ||
						 !f->start_ns));
		if (f->start_ns)
			set_u64(rec, "duration_ns", e->ts_ns - f->start_ns);
		if (e->tracked) /* totals over the connection's life */
			tcp_counters(rec, f, NULL);
	}
	agent_emit(s->agent, rec);
	s->records++;
}

static int on_ring_record(void *ctx, void *data, size_t len)
{
	if (len >= sizeof(struct flow_event))
		emit_event(ctx, data);
	return 0;
}

/* ---- per-interval flush */

/* Kernel times may be later than `now` (taken before the map walk). */
static bool idle_since(uint64_t now, uint64_t last)
{
	return now > last && now - last > FLOW_IDLE_NS;
}

static void flush_tcp(struct flow_sensor *s, uint64_t now, uint32_t done)
{
	struct snap cur = { 0 };
	uint64_t *key;
	struct flow_tcp *f;

	if (snap_load(bpf_map__fd(s->skel->maps.tcp_flows), sizeof(uint64_t),
		      sizeof(struct flow_tcp), &cur)) {
		snap_free(&cur);
		return;
	}
	SNAP_EACH(&cur, key, f)
	{
		const struct flow_tcp *prev = snap_find(&s->tcp_prev, key);
		/* A new socket at a freed one's address: not a continuation. */
		if (prev && prev->start_ns != f->start_ns)
			prev = NULL;
		const struct flow_rtt_slot *rtt = &f->rtt[done & 1];
		bool has_rtt = rtt->epoch == done && rtt->samples;

		/* Not established yet: the open record will come. */
		if (!f->established_ns)
			continue;
		if (prev && !has_rtt && prev->last_ns == f->last_ns &&
		    prev->rst_sent == f->rst_sent &&
		    prev->rst_received == f->rst_received &&
		    prev->state == f->state)
			continue; /* nothing happened on this flow */
		json_t *rec = tcp_record(s, "interval", now, f);
		json_object_set_new(rec, "state",
				    json_string(tcp_state_name(f->state)));
		tcp_counters(rec, f, prev);
		if (has_rtt) {
			set_u64(rec, "rtt_samples", rtt->samples);
			set_u64(rec, "rtt_min_us", rtt->min_us);
			set_u64(rec, "rtt_max_us", rtt->max_us);
		}
		if (f->start_ns)
			set_u64(rec, "span_ns", now - f->start_ns);
		agent_emit(s->agent, rec);
		s->records++;
	}
	snap_free(&s->tcp_prev);
	s->tcp_prev = cur;
}

static json_t *udp_record(struct flow_sensor *s, const char *event,
			  uint64_t ts, const struct flow_udp_key *k,
			  const struct flow_udp *u, const struct flow_udp *base)
{
	static const struct flow_udp zero;
	struct agent *a = s->agent;
	const uint8_t *l, *r;
	int family = tuple_family(&k->tuple, &l, &r);
	/* The local end is attributed by its address: cgroup_skb has no
	 * netns at hand, and a pod IP names one pod. */
	json_t *local = agent_endpoint(a, family, l, k->tuple.lport, NULL);
	json_t *remote = agent_endpoint(a, family, r, k->tuple.rport, NULL);
	json_t *rec = agent_record(a, "flow", ts);

	if (u->first_egress)
		agent_backend(a, remote, IPPROTO_UDP, family, l, k->tuple.lport,
			      r, k->tuple.rport);
	if (!base)
		base = &zero;
	json_object_set_new(rec, "event", json_string(event));
	json_object_set_new(rec, "proto", json_string("udp"));
	json_object_set_new(rec, "ip_version",
			    json_integer(family == AF_INET ? 4 : 6));
	/* src sent the first datagram we saw. */
	json_object_set_new(rec, "side", json_string(u->first_egress ? "client"
								     : "server"));
	json_object_set_new(rec, "src", u->first_egress ? local : remote);
	json_object_set_new(rec, "dst", u->first_egress ? remote : local);
	set_u64(rec, "cgroup_id", k->cgroup_id);
	set_u64(rec, "bytes_out", u->bytes_out - base->bytes_out);
	set_u64(rec, "bytes_in", u->bytes_in - base->bytes_in);
	set_u64(rec, "dgrams_out", u->dgrams_out - base->dgrams_out);
	set_u64(rec, "dgrams_in", u->dgrams_in - base->dgrams_in);
	set_u64(rec, "duration_ns", u->last_ns - u->first_ns);
	return rec;
}

static void flush_udp(struct flow_sensor *s, uint64_t now)
{
	int fd = bpf_map__fd(s->skel->maps.udp_flows);
	struct snap cur = { 0 };
	struct flow_udp_key *k;
	struct flow_udp *u;

	if (snap_load(fd, sizeof(*k), sizeof(*u), &cur)) {
		snap_free(&cur);
		return;
	}
	SNAP_EACH(&cur, k, u)
	{
		const struct flow_udp *prev = snap_find(&s->udp_prev, k);

		/* Deleted while idle and begun again: a new flow. */
		if (prev && prev->first_ns != u->first_ns)
			prev = NULL;
		if (!prev || prev->last_ns != u->last_ns) {
			agent_emit(s->agent,
				   udp_record(s, "interval", now, k, u, prev));
			s->records++;
		}
		if (idle_since(now, u->last_ns)) {
			/* Idle: the pair is over. Totals, then forget it (a
			 * datagram racing the delete starts a new flow). */
			if (bpf_map_delete_elem(fd, k) == 0)
				s->udp_idle_deleted++;
			agent_emit(s->agent,
				   udp_record(s, "close", u->last_ns, k, u, NULL));
			s->records++;
		}
	}
	snap_free(&s->udp_prev);
	s->udp_prev = cur;
}

static const char *drop_reason_name(struct flow_sensor *s, uint32_t reason,
				    char *buf, size_t len)
{
	static const char prefix[] = "SKB_DROP_REASON_";
	int id = s->vmlinux ? btf__find_by_name_kind(s->vmlinux, "skb_drop_reason",
						     BTF_KIND_ENUM)
			    : -1;

	if (id > 0) {
		const struct btf_type *t = btf__type_by_id(s->vmlinux, id);
		const struct btf_enum *e = btf_enum(t);
		for (int i = 0; i < btf_vlen(t); i++, e++) {
			if ((uint32_t)e->val != reason)
				continue;
			const char *n = btf__name_by_offset(s->vmlinux, e->name_off);
			if (!strncmp(n, prefix, sizeof(prefix) - 1))
				n += sizeof(prefix) - 1;
			snprintf(buf, len, "%s", n);
			return buf;
		}
	}
	snprintf(buf, len, "%u", reason);
	return buf;
}

static void flush_drops(struct flow_sensor *s, uint64_t now)
{
	int fd = bpf_map__fd(s->skel->maps.drop_flows);
	struct snap cur = { 0 };
	struct flow_drop_key *k;
	struct flow_drop *d;
	char reason[64];

	if (snap_load(fd, sizeof(*k), sizeof(*d), &cur)) {
		snap_free(&cur);
		return;
	}
	SNAP_EACH(&cur, k, d)
	{
		const struct flow_drop *prev = snap_find(&s->drop_prev, k);
		const uint8_t *src, *dst;
		int family;

		if (prev && prev->first_ns != d->first_ns)
			prev = NULL;
		if (idle_since(now, d->last_ns) && bpf_map_delete_elem(fd, k) == 0)
			s->drop_idle_deleted++;
		if (prev && prev->packets == d->packets)
			continue;
		family = tuple_family(&k->tuple, &src, &dst);
		json_t *rec = agent_record(s->agent, "flow", now);
		json_object_set_new(rec, "event", json_string("drop"));
		json_object_set_new(rec, "proto",
				    json_string(k->proto == 6	 ? "tcp"
						: k->proto == 17 ? "udp"
								 : "other"));
		json_object_set_new(rec, "ip_version",
				    json_integer(family == AF_INET ? 4 : 6));
		/* src/dst as in the dropped packet. A reply from a cluster IP
		 * (un-DNATed on its way back, e.g. data purged from a closing
		 * client's queue) names the pod that sent it: conntrack's
		 * original direction is dst -> src. */
		json_t *sep = agent_endpoint(s->agent, family, src,
					     k->tuple.lport, NULL);
		if (k->proto == IPPROTO_TCP || k->proto == IPPROTO_UDP)
			agent_backend(s->agent, sep, k->proto, family, dst,
				      k->tuple.rport, src, k->tuple.lport);
		json_object_set_new(rec, "src", sep);
		json_object_set_new(rec, "dst",
				    agent_endpoint(s->agent, family, dst,
						   k->tuple.rport, NULL));
		json_object_set_new(rec, "reason",
				    json_string(drop_reason_name(
					    s, k->reason, reason, sizeof(reason))));
		set_u64(rec, "reason_code", k->reason);
		set_u64(rec, "netns", k->netns);
		set_u64(rec, "ifindex", k->ifindex);
		set_u64(rec, "packets", d->packets - (prev ? prev->packets : 0));
		set_u64(rec, "bytes", d->bytes - (prev ? prev->bytes : 0));
		agent_emit(s->agent, rec);
		s->records++;
	}
	snap_free(&s->drop_prev);
	s->drop_prev = cur;
}

static uint64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void flow_tick(void *state)
{
	struct flow_sensor *s = state;
	uint32_t done = s->epoch;
	uint64_t now = mono_now();

	/* Start a new RTT interval: the kernel moves to the other slot, the
	 * finished one (done) is read below. */
	s->epoch++;
	s->skel->bss->rtt_epoch = s->epoch;
	/* Open records first: an interval record never precedes its open. */
	ring_buffer__consume(s->rb);
	flush_tcp(s, now, done);
	if (s->udp_links[0])
		flush_udp(s, now);
	if (s->hooks[HOOK_DROP].kind != TP_NONE)
		flush_drops(s, now);
	s->intervals++;
}

/* ---- lifecycle */

static void flow_stop(void *state)
{
	struct flow_sensor *s = state;

	if (!s)
		return;
	ring_buffer__free(s->rb);
	for (int i = 0; i < 2; i++)
		bpf_link__destroy(s->udp_links[i]);
	flow_bpf__destroy(s->skel);
	btf__free(s->vmlinux);
	snap_free(&s->tcp_prev);
	snap_free(&s->udp_prev);
	snap_free(&s->drop_prev);
	free(s);
}

/* tp_btf-only hooks: a missing one disables its metric, not the family. */
static void choose_btf(struct flow_sensor *s, int h, const char *name,
		       const char *metric, struct bpf_program *prog)
{
	struct hook *k = &s->hooks[h];

	k->name = name;
	k->metric = metric;
	k->kind = tracepoint_choose("tcp", name, prog, NULL, k->why,
				    sizeof(k->why));
	if (k->kind == TP_NONE)
		log_warn("flow: %s unavailable: %s", metric, k->why);
}

static int attach_udp(struct flow_sensor *s)
{
	const char *root = agent_cgroup_root(s->agent);
	struct hook *k = &s->hooks[HOOK_UDP];
	int cg = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (cg < 0) {
		snprintf(k->why, sizeof(k->why), "open cgroup %s: %s", root,
			 strerror(errno));
		return -1;
	}
	/* bpf_link attachment: multi-attach, leaves other programs on the
	 * same cgroup alone, and goes away with the agent. */
	s->udp_links[0] = bpf_program__attach_cgroup(
		s->skel->progs.flow_udp_egress, cg);
	s->udp_links[1] = s->udp_links[0] ? bpf_program__attach_cgroup(
						    s->skel->progs.flow_udp_ingress, cg)
					  : NULL;
	if (!s->udp_links[1]) {
		snprintf(k->why, sizeof(k->why), "attach cgroup_skb to %s: %s",
			 root, strerror(errno));
		bpf_link__destroy(s->udp_links[0]);
		s->udp_links[0] = NULL;
		close(cg);
		return -1;
	}
	close(cg);
	k->kind = TP_BTF; /* "attached" */
	return 0;
}

/* Opens the object and picks the hooks. minimal: only the lifecycle hook
 * (the retry when an optional program fails to load). */
static int flow_open(struct flow_sensor *s, bool minimal, char *why,
		     size_t why_len)
{
	const struct agent_config *cfg = agent_config(s->agent);
	LIBBPF_OPTS(bpf_object_open_opts, open_opts,
		    .btf_custom_path = cfg->btf_path);
	struct flow_bpf *sk;

	sk = s->skel = flow_bpf__open_opts(&open_opts);
	if (!s->skel) {
		snprintf(why, why_len, "open BPF object: %s", strerror(errno));
		return -errno;
	}
	sk->rodata->filter_netns = !cfg->all_netns;
	s->hooks[HOOK_STATE].name = "inet_sock_set_state";
	s->hooks[HOOK_STATE].metric = "tcp";
	s->hooks[HOOK_STATE].kind = tracepoint_choose(
		"sock", "inet_sock_set_state", sk->progs.flow_state_btf,
		sk->progs.flow_state_tp, why, why_len);
	if (s->hooks[HOOK_STATE].kind == TP_NONE)
		return -ENOTSUP;
	choose_btf(s, HOOK_DESTROY, "tcp_destroy_sock",
		   "resets sent at close()", sk->progs.flow_destroy_btf);
	choose_btf(s, HOOK_PROBE, "tcp_probe",
		   "interval counters, RTT and tail-loss probes",
		   sk->progs.flow_probe_btf);
	choose_btf(s, HOOK_RST_TX, "tcp_send_reset", "resets sent",
		   sk->progs.flow_send_reset_btf);
	choose_btf(s, HOOK_RST_RX, "tcp_receive_reset", "resets received",
		   sk->progs.flow_receive_reset_btf);
	s->hooks[HOOK_DROP].name = "kfree_skb";
	s->hooks[HOOK_DROP].metric = "drops";
	s->hooks[HOOK_DROP].kind =
		tracepoint_choose("skb", "kfree_skb", sk->progs.flow_drop_btf,
				  NULL, s->hooks[HOOK_DROP].why,
				  sizeof(s->hooks[HOOK_DROP].why));
	s->hooks[HOOK_UDP].name = "cgroup_skb";
	s->hooks[HOOK_UDP].metric = "udp";
	if (minimal) {
		static const struct {
			int hook;
			size_t off;
		} opt[] = {
			{ HOOK_DESTROY, offsetof(struct flow_bpf, progs.flow_destroy_btf) },
			{ HOOK_PROBE, offsetof(struct flow_bpf, progs.flow_probe_btf) },
			{ HOOK_RST_TX, offsetof(struct flow_bpf, progs.flow_send_reset_btf) },
			{ HOOK_RST_RX, offsetof(struct flow_bpf, progs.flow_receive_reset_btf) },
			{ HOOK_DROP, offsetof(struct flow_bpf, progs.flow_drop_btf) },
			{ HOOK_UDP, offsetof(struct flow_bpf, progs.flow_udp_egress) },
			{ HOOK_UDP, offsetof(struct flow_bpf, progs.flow_udp_ingress) },
		};
		for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
			struct hook *k = &s->hooks[opt[i].hook];
			bpf_program__set_autoload(
				*(struct bpf_program **)((char *)sk + opt[i].off),
				false);
			if (k->kind != TP_NONE || opt[i].hook == HOOK_UDP)
				snprintf(k->why, sizeof(k->why),
					 "the kernel rejected the program (see "
					 "the verifier log above)");
			k->kind = TP_NONE;
		}
	}
	sk->rodata->close_at_destroy = s->hooks[HOOK_DESTROY].kind != TP_NONE;
	return 0;
}

static int flow_start(struct agent *a, void **state, char *why,
		      size_t why_len)
{
	struct flow_sensor *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->agent = a;
	s->ncpus = libbpf_num_possible_cpus();
	if (s->ncpus <= 0) {
		err = s->ncpus ? s->ncpus : -EINVAL;
		snprintf(why, why_len, "cannot count CPUs");
		goto fail;
	}
	s->vmlinux = btf__load_vmlinux_btf();

	err = flow_open(s, false, why, why_len);
	if (err)
		goto fail;
	err = flow_bpf__load(s->skel);
	if (err) {
		/* An optional program the verifier refuses must not take
		 * the connection records with it: retry with the spine. */
		log_warn("flow: load failed (%s); retrying with the lifecycle "
			 "hook only",
			 strerror(-err));
		flow_bpf__destroy(s->skel);
		memset(s->hooks, 0, sizeof(s->hooks));
		err = flow_open(s, true, why, why_len);
		if (err)
			goto fail;
		err = flow_bpf__load(s->skel);
	}
	if (err) {
		snprintf(why, why_len, "load: %s", strerror(-err));
		goto fail;
	}
	err = flow_bpf__attach(s->skel) ? -errno : 0;
	if (err) {
		snprintf(why, why_len, "attach (%s): %s",
			 tp_kind_name(s->hooks[HOOK_STATE].kind), strerror(-err));
		goto fail;
	}
	if (s->hooks[HOOK_UDP].why[0] == '\0' && attach_udp(s))
		log_warn("flow: udp unavailable: %s", s->hooks[HOOK_UDP].why);
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.flow_events),
				 on_ring_record, s, NULL);
	if (!s->rb) {
		err = -errno;
		snprintf(why, why_len, "ring buffer: %s", strerror(-err));
		goto fail;
	}
	log_info("flow sensor attached to sock:inet_sock_set_state (%s)",
		 tp_kind_name(s->hooks[HOOK_STATE].kind));
	*state = s;
	return 0;
fail:
	flow_stop(s);
	return err;
}

/* Makes the kernel's netns filter exactly the agent's targets. */
static void flow_retarget(void *state)
{
	struct flow_sensor *s = state;
	size_t n;
	const uint32_t *netns = agent_target_netns(s->agent, &n);

	netns_filter_sync(bpf_map__fd(s->skel->maps.netns_allow), netns, n,
			  "flow");
}

static int flow_poll_fd(void *state)
{
	return ring_buffer__epoll_fd(((struct flow_sensor *)state)->rb);
}

static void flow_consume(void *state)
{
	ring_buffer__consume(((struct flow_sensor *)state)->rb);
}

static uint64_t counter(struct flow_sensor *s, uint32_t i)
{
	return percpu_sum(bpf_map__fd(s->skel->maps.flow_counters), i, s->ncpus);
}

static size_t map_entries(int fd, size_t ksz)
{
	uint8_t key[64], next[64];
	void *prev = NULL;
	size_t n = 0;

	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		n++;
		memcpy(key, next, ksz);
		prev = key;
	}
	return n;
}

static void flow_status(void *state, json_t *out)
{
	static const char *const names[FLOW_CNT_MAX] = {
		[FLOW_CNT_EVENTS] = "events",
		[FLOW_CNT_RINGBUF_FULL] = "lost_ringbuf_full",
		[FLOW_CNT_TRACK_FULL] = "untracked_map_full",
		[FLOW_CNT_UNTRACKED_END] = "closes_without_birth",
		[FLOW_CNT_TCP_INSERTS] = "tcp_flows_created",
		[FLOW_CNT_TCP_DELETES] = "tcp_flows_closed",
		[FLOW_CNT_UDP_INSERTS] = "udp_flows_created",
		[FLOW_CNT_UDP_TRACK_FULL] = "udp_untracked_map_full",
		[FLOW_CNT_UDP_UNPARSED] = "udp_unparsed",
		[FLOW_CNT_TRANS_TRUNCATED] = "transitions_truncated",
		[FLOW_CNT_DROPS] = "drops_counted",
		[FLOW_CNT_DROP_TRACK_FULL] = "drops_untracked_map_full",
	};
	struct flow_sensor *s = state;
	uint64_t c[FLOW_CNT_MAX] = { 0 };
	json_t *degraded = json_object();

	json_object_set_new(out, "hook",
			    json_string(tp_kind_name(s->hooks[HOOK_STATE].kind)));
	set_u64(out, "records", s->records);
	set_u64(out, "intervals", s->intervals);
	for (int h = 0; h < HOOK_N; h++)
		if (s->hooks[h].kind == TP_NONE && s->hooks[h].why[0])
			json_object_set_new(degraded, s->hooks[h].metric,
					    json_string(s->hooks[h].why));
	json_object_set_new(out, "degraded", degraded);
	for (uint32_t i = 0; i < FLOW_CNT_MAX; i++) {
		c[i] = counter(s, i);
		set_u64(out, names[i], c[i]);
	}
	/* LRU maps evict silently: what was created and neither closed nor
	 * still there was evicted. */
	size_t tcp_live = map_entries(bpf_map__fd(s->skel->maps.tcp_flows), 8);
	size_t udp_live = map_entries(bpf_map__fd(s->skel->maps.udp_flows),
				      sizeof(struct flow_udp_key));
	int64_t tcp_ev = (int64_t)c[FLOW_CNT_TCP_INSERTS] -
			 (int64_t)c[FLOW_CNT_TCP_DELETES] - (int64_t)tcp_live;
	int64_t udp_ev = (int64_t)c[FLOW_CNT_UDP_INSERTS] -
			 (int64_t)s->udp_idle_deleted - (int64_t)udp_live;
	set_u64(out, "tcp_flows_live", tcp_live);
	set_u64(out, "tcp_flows_evicted", tcp_ev > 0 ? (uint64_t)tcp_ev : 0);
	set_u64(out, "udp_flows_live", udp_live);
	set_u64(out, "udp_flows_evicted", udp_ev > 0 ? (uint64_t)udp_ev : 0);
}

const struct sensor_family flow_family = {
	.name = "flow",
	.summary = "TCP and UDP flows: lifecycle, bytes, segments, "
		   "retransmits, RTT, resets, drops",
	.start = flow_start,
	.retarget = flow_retarget,
	.poll_fd = flow_poll_fd,
	.consume = flow_consume,
	.tick = flow_tick,
	.status = flow_status,
	.stop = flow_stop,
};
