/* The agent's control API (`sonde agent --control ADDR:PORT`): the server
 * pushes this node's whole desired sensor set (PUT /v1/plan), the agent
 * diffs it with what it runs, applies it, keeps it in a state file (a
 * restarted agent re-applies it at once) and reports its actual state to
 * the server (PUT /v1/agents/<node>/state) after each change and as a
 * heartbeat. docs/k8s.md, "The plan push". */
#ifndef SONDE_AGENT_CONTROL_H
#define SONDE_AGENT_CONTROL_H

#include <stdbool.h>

struct agent;
struct control;

struct control_opts {
	const char *listen;    /* ADDR:PORT of the control API */
	const char *token;     /* NULL or "": no auth (loopback only) */
	const char *server;    /* base URL to report to; NULL: no reports */
	const char *state_dir; /* where the applied plan is kept */
	const char *node;
};

/* Listens and loads the last applied plan. The HTTP work runs on the
 * caller's thread: poll control_fd and call control_run. NULL on error. */
struct control *control_open(struct agent *a, const struct control_opts *o);
int control_fd(const struct control *c);
void control_run(struct control *c);
/* Does the applied plan have a sensor of this kind on this pod? */
bool control_wants(const struct control *c, const char *kind,
		   const char *pod_uid);
/* After each rediscovery: reports the state when it changed, else as a
 * heartbeat every few seconds. */
void control_tick(struct control *c);
void control_close(struct control *c);

#endif
