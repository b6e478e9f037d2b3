/* A sensor family (flow, l7, latency ...) as the agent drives it: each is
 * its bpf/<name>.bpf.c, its src/agent/<name>.c holding these operations and
 * the record formatting, and the shared bpf/<name>.h. A family that cannot
 * start degrades alone: the agent reports why and keeps the others. */
#ifndef SONDE_SENSOR_H
#define SONDE_SENSOR_H

#include <jansson.h>
#include <stddef.h>

struct agent;

struct sensor_family {
	const char *name;
	const char *summary; /* one line for `sonde agent --help` */
	/* Opens, loads, attaches. On failure: negative errno and a reason. */
	int (*start)(struct agent *a, void **state, char *why, size_t why_len);
	/* The monitored pods changed (see agent_target_netns). Optional. */
	void (*retarget)(void *state);
	/* An fd to poll (ring buffers), or -1. */
	int (*poll_fd)(void *state);
	/* Called when poll_fd is readable, and once more before stop. */
	void (*consume)(void *state);
	/* Every --interval: flush aggregates. Optional. */
	void (*tick)(void *state);
	/* Adds counters (events, lost events ...) to a status object. */
	void (*status)(void *state, json_t *out);
	void (*stop)(void *state);
};

/* The families this build has, NULL-terminated (src/agent/sensors.c). */
extern const struct sensor_family *const sensor_families[];

#endif
