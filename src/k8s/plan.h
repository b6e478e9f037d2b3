/* The sensor plan: which sensors each node should run, computed from a
 * monitoring policy and the API's pods and services; versioned per node
 * with a generation; and the agent's diff of a desired set against what it
 * runs (add / stay / delete). Pure functions of JSON values, so the
 * controller (sonde server) and the agent share them and tests check them
 * without a cluster.
 *
 * Policy (JSON, e.g. a config file):
 *   {"namespaces": ["bookinfo"],            every pod of these namespaces
 *    "services": ["bookinfo/ratings", "reviews"],   pods a service selects
 *                                                  (NS/NAME, or NAME in any ns)
 *    "selectors": ["app=ratings,version=v1"],      pods whose labels match
 *    "sensors": ["flow"]}                          kinds per monitored pod
 *                                                  (default ["flow"])
 * A pod is monitored when any rule matches and it has a node and an IP.
 *
 * Plan: {"node-1": {"generation": G, "sensors": [S...]}, ...}, each sensor
 *   {"id": "<kind>/<ns>/<pod>", "kind", "pod_uid", "namespace", "pod",
 *    "ip", "services": [...]}, sorted by id. */
#ifndef SONDE_K8S_PLAN_H
#define SONDE_K8S_PLAN_H

#include <jansson.h>

/* 0, or -EINVAL with a message in err (unknown key, wrong type). */
int plan_policy_check(const json_t *policy, char *err, size_t errlen);

/* {"node": [sensors...]} for the pods and services (arrays of v1 objects). */
json_t *plan_desired(const json_t *policy, const json_t *pods,
		     const json_t *services);

/* Folds a new desired set into plan (the previous plan, or an empty
 * object): a node whose sensors changed gets generation + 1, an unchanged
 * node keeps its generation, a node with no sensors left keeps an empty
 * set with a new generation. Returns the number of nodes that changed. */
int plan_update(json_t *plan, const json_t *desired);

/* The agent's side: {"add": [...], "stay": [...], "delete": [...]} from the
 * sensors it runs and the desired ones (by id; a sensor whose fields
 * changed is deleted and added). */
json_t *plan_diff(const json_t *actual, const json_t *desired);

/* A plan as the server pushes it to one agent:
 *   {"node": N, "epoch": E, "generation": G, "sensors": [S...]}
 * node must be this agent's; epoch (optional) names the server run that
 * numbered the generation; each sensor needs a string id, kind and pod_uid,
 * ids unique. 0, or -EINVAL with a message for a 400. */
int plan_message_check(const json_t *msg, const char *node, char *err,
		       size_t errlen);

#endif
