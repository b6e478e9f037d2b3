#include "agent/flow_sensor.h"

#include "agent/attach.h"
#include "flow.skel.h"
#include "lib/log.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct flow_sensor {
	struct flow_bpf *skel;
	struct ring_buffer *rb;
	enum tp_kind hook;
	flow_event_fn on_event;
	void *ctx;
	int ncpus;
};

static int on_ring_record(void *ctx, void *data, size_t len)
{
	struct flow_sensor *s = ctx;

	if (len < sizeof(struct flow_event))
		return 0;
	s->on_event(data, s->ctx);
	return 0;
}

int flow_sensor_start(struct flow_sensor **out, const struct flow_options *o,
		      char *why, size_t why_len)
{
	LIBBPF_OPTS(bpf_object_open_opts, open_opts,
		    .btf_custom_path = o->btf_path);
	struct flow_sensor *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->on_event = o->on_event;
	s->ctx = o->ctx;
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
	s->skel->rodata->filter_netns = o->filter_netns;
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
	*out = s;
	return 0;
fail:
	flow_sensor_stop(s);
	return err;
}

static bool listed(const uint32_t *netns, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (netns[i] == v)
			return true;
	return false;
}

int flow_sensor_set_netns(struct flow_sensor *s, const uint32_t *netns,
			  size_t n)
{
	int fd = bpf_map__fd(s->skel->maps.netns_allow);
	uint32_t key, next, stale[256];
	size_t nstale = 0;
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
	for (size_t i = 0; i < n; i++) {
		if (bpf_map_update_elem(fd, &netns[i], &one, BPF_ANY)) {
			int err = -errno;
			log_warn("flow: cannot watch netns %u: %s", netns[i],
				 strerror(errno));
			return err;
		}
	}
	return 0;
}

int flow_sensor_fd(const struct flow_sensor *s)
{
	return ring_buffer__epoll_fd(s->rb);
}

int flow_sensor_consume(struct flow_sensor *s)
{
	return ring_buffer__consume(s->rb);
}

int flow_sensor_counters(const struct flow_sensor *s,
			 uint64_t out[FLOW_CNT_MAX])
{
	int fd = bpf_map__fd(s->skel->maps.flow_counters);
	uint64_t *percpu = calloc((size_t)s->ncpus, sizeof(uint64_t));

	if (!percpu)
		return -ENOMEM;
	for (uint32_t i = 0; i < FLOW_CNT_MAX; i++) {
		out[i] = 0;
		if (bpf_map_lookup_elem(fd, &i, percpu))
			continue;
		for (int c = 0; c < s->ncpus; c++)
			out[i] += percpu[c];
	}
	free(percpu);
	return 0;
}

const char *flow_sensor_hook(const struct flow_sensor *s)
{
	return tp_kind_name(s->hook);
}

void flow_sensor_stop(struct flow_sensor *s)
{
	if (!s)
		return;
	ring_buffer__free(s->rb);
	flow_bpf__destroy(s->skel);
	free(s);
}
