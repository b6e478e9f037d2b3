/* The server's side of the plan push: the agents' reported states
 * (PUT /v1/agents/<node>/state, GET /v1/agents) and a pusher thread that
 * sends each node's plan to its agent's control API whenever the agent's
 * applied (epoch, generation) differs from the plan's, with backoff while
 * an agent is away. docs/k8s.md, "The plan push". */
#ifndef SONDE_SERVER_AGENTS_H
#define SONDE_SERVER_AGENTS_H

#include <jansson.h>
#include <stdio.h>

struct agents;
struct controller;

/* ctl NULL: states are kept, nothing is pushed. token: sent to agents. */
struct agents *agents_start(struct controller *ctl, const char *token);
/* A state report; 0, or -EINVAL with a message for a 400. */
int agents_report(struct agents *g, const char *node, const json_t *state,
		  char *err, size_t errlen);
/* {"epoch", "agents": {node: {...}}} (a new reference). */
json_t *agents_list(struct agents *g);
/* The plan may have changed (a new policy): look now, not at the next
 * poll. */
void agents_kick(struct agents *g);
void agents_metrics(struct agents *g, FILE *f);
void agents_stop(struct agents *g);

#endif
