/* flow sensor family, user side: loads bpf/flow.bpf.c, keeps its netns
 * filter equal to the monitored pods' namespaces, and turns each kernel
 * event into a "flow" record. */
#include "agent/agent.h"
#include "agent/attach.h"
#include "agent/sensor.h"
#include "flow.h"
#include "flow.skel.h"
#include "lib/log.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct flow_sensor {
	struct agent *agent;
	struct flow_bpf *skel;
	struct ring_buffer *rb;
	enum tp_kind hook;
	int ncpus;
	uint64_t records;
};

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

static void emit_event(struct flow_sensor *s, const struct flow_event *e)
{
	struct agent *a = s->agent;
	int family = e->family == 2 ? AF_INET : AF_INET6;
	json_t *local = agent_endpoint(a, family, e->laddr, e->lport, &e->netns);
	json_t *remote = agent_endpoint(a, family, e->raddr, e->rport, NULL);
	bool server = e->side == FLOW_SIDE_SERVER;
	json_t *rec = agent_record(a, "flow", e->ts_ns);
	char comm[FLOW_COMM_LEN + 1];

	json_object_set_new(rec, "event", json_string(e->type == FLOW_EV_OPEN
							     ? "open"
							     : "close"));
	json_object_set_new(rec, "proto", json_string("tcp"));
	json_object_set_new(rec, "ip_version",
			    json_integer(family == AF_INET ? 4 : 6));
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
	agent_emit(a, rec);
	s->records++;
}

static int on_ring_record(void *ctx, void *data, size_t len)
{
	if (len >= sizeof(struct flow_event))
		emit_event(ctx, data);
	return 0;
}

static void flow_stop(void *state)
{
	struct flow_sensor *s = state;

	if (!s)
		return;
	ring_buffer__free(s->rb);
	flow_bpf__destroy(s->skel);
	free(s);
}

static int flow_start(struct agent *a, void **state, char *why,
		      size_t why_len)
{
	const struct agent_config *cfg = agent_config(a);
	LIBBPF_OPTS(bpf_object_open_opts, open_opts,
		    .btf_custom_path = cfg->btf_path);
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

	s->skel = flow_bpf__open_opts(&open_opts);
	if (!s->skel) {
		err = -errno;
		snprintf(why, why_len, "open BPF object: %s", strerror(-err));
		goto fail;
	}
	s->skel->rodata->filter_netns = !cfg->all_netns;
	s->hook = tracepoint_choose("sock", "inet_sock_set_state",
				    s->skel->progs.flow_state_btf,
				    s->skel->progs.flow_state_tp, why, why_len);
	if (s->hook == TP_NONE) {
		err = -ENOTSUP;
		goto fail;
	}
	err = flow_bpf__load(s->skel);
	if (err) {
		snprintf(why, why_len, "load (%s): %s", tp_kind_name(s->hook),
			 strerror(-err));
		goto fail;
	}
	err = flow_bpf__attach(s->skel);
	if (err) {
		snprintf(why, why_len, "attach (%s): %s",
			 tp_kind_name(s->hook), strerror(-err));
		goto fail;
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.flow_events),
				 on_ring_record, s, NULL);
	if (!s->rb) {
		err = -errno;
		snprintf(why, why_len, "ring buffer: %s", strerror(-err));
		goto fail;
	}
	log_info("flow sensor attached to sock:inet_sock_set_state (%s)",
		 tp_kind_name(s->hook));
	*state = s;
	return 0;
fail:
	flow_stop(s);
	return err;
}

static bool listed(const uint32_t *netns, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (netns[i] == v)
			return true;
	return false;
}

/* Makes the kernel's netns filter exactly the agent's targets. */
static void flow_retarget(void *state)
{
	struct flow_sensor *s = state;
	int fd = bpf_map__fd(s->skel->maps.netns_allow);
	uint32_t key, next, stale[256];
	size_t n, nstale = 0;
	const uint32_t *netns = agent_target_netns(s->agent, &n);
	uint8_t one = 1;
	void *prev = NULL;

	/* Delete after the walk: deleting during get_next_key restarts it. */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (!listed(netns, n, next) && nstale < 256)
			stale[nstale++] = next;
		key = next;
		prev = &key;
	}
	for (size_t i = 0; i < nstale; i++)
		bpf_map_delete_elem(fd, &stale[i]);
	for (size_t i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, &netns[i], &one, BPF_ANY))
			log_warn("flow: cannot watch netns %u: %s", netns[i],
				 strerror(errno));
}

static int flow_poll_fd(void *state)
{
	return ring_buffer__epoll_fd(((struct flow_sensor *)state)->rb);
}

static void flow_consume(void *state)
{
	ring_buffer__consume(((struct flow_sensor *)state)->rb);
}

static void flow_status(void *state, json_t *out)
{
	static const char *const names[FLOW_CNT_MAX] = {
		[FLOW_CNT_EVENTS] = "events",
		[FLOW_CNT_RINGBUF_FULL] = "lost_ringbuf_full",
		[FLOW_CNT_TRACK_FULL] = "untracked_map_full",
		[FLOW_CNT_UNTRACKED_END] = "closes_without_birth",
	};
	struct flow_sensor *s = state;
	int fd = bpf_map__fd(s->skel->maps.flow_counters);
	uint64_t *percpu = calloc((size_t)s->ncpus, sizeof(uint64_t));

	json_object_set_new(out, "hook", json_string(tp_kind_name(s->hook)));
	json_object_set_new(out, "records", json_integer((json_int_t)s->records));
	if (!percpu)
		return;
	for (uint32_t i = 0; i < FLOW_CNT_MAX; i++) {
		uint64_t sum = 0;
		if (bpf_map_lookup_elem(fd, &i, percpu))
			continue;
		for (int c = 0; c < s->ncpus; c++)
			sum += percpu[c];
		json_object_set_new(out, names[i], json_integer((json_int_t)sum));
	}
	free(percpu);
}

const struct sensor_family flow_family = {
	.name = "flow",
	.summary = "TCP connections: open, close, handshake and span time",
	.start = flow_start,
	.retarget = flow_retarget,
	.poll_fd = flow_poll_fd,
	.consume = flow_consume,
	.status = flow_status,
	.stop = flow_stop,
};
