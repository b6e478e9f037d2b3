/* flow sensor, user side: loads flow.bpf.c, keeps its netns filter in step
 * with the node, and hands each kernel record to a callback. */
#ifndef SONDE_FLOW_SENSOR_H
#define SONDE_FLOW_SENSOR_H

#include "flow.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct flow_sensor;

typedef void (*flow_event_fn)(const struct flow_event *e, void *ctx);

struct flow_options {
	bool filter_netns; /* only sockets of the listed netns (the node's) */
	const char *btf_path; /* NULL: the running kernel's */
	flow_event_fn on_event;
	void *ctx;
};

/* Opens, loads and attaches. On failure returns a negative errno and puts
 * the reason in `why` so the agent can report the sensor as unavailable. */
int flow_sensor_start(struct flow_sensor **out, const struct flow_options *o,
		      char *why, size_t why_len);
/* Makes the netns filter exactly `netns[0..n-1]`. */
int flow_sensor_set_netns(struct flow_sensor *s, const uint32_t *netns,
			  size_t n);
/* fd to poll for readable records; then call flow_sensor_consume. */
int flow_sensor_fd(const struct flow_sensor *s);
int flow_sensor_consume(struct flow_sensor *s);
/* Sums the per-CPU counters (enum flow_counter). */
int flow_sensor_counters(const struct flow_sensor *s,
			 uint64_t out[FLOW_CNT_MAX]);
const char *flow_sensor_hook(const struct flow_sensor *s);
void flow_sensor_stop(struct flow_sensor *s);

#endif
