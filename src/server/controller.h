/* The Kubernetes controller inside `sonde server`: informers on pods,
 * services, endpoints and nodes (src/k8s), the topology built from their
 * cache, and the sensor plan (src/k8s/plan.c) recomputed on the server's
 * main loop after every change. */
#ifndef SONDE_CONTROLLER_H
#define SONDE_CONTROLLER_H

#include <jansson.h>
#include <stdio.h>

struct server;
struct controller;

/* kubeconfig: a file, or NULL for in-cluster config (service account).
 * policy_file: a monitoring policy, or NULL for every pod. Starts the
 * informers and joins the server's loop; does not wait for the lists. */
struct controller *controller_start(struct server *s, const char *kubeconfig,
				    const char *policy_file);
/* GET /v1/topology and /v1/plan: new references, or NULL before the
 * first lists are in. reports: the agents' discovery, joined into the
 * chains (topology_doc; NULL: none). */
json_t *controller_topology(struct controller *c, const json_t *reports);
json_t *controller_plan(struct controller *c);
/* GET/PUT /v1/policy: the policy (JSON null: the default, every pod). A
 * new one is checked (-EINVAL, err says why), written back to --policy
 * FILE when there is one, and the plan recomputed at once. */
json_t *controller_policy(struct controller *c);
int controller_set_policy(struct controller *c, json_t *policy, char *err,
			  size_t errlen);
void controller_metrics(struct controller *c, FILE *f);
void controller_stop(struct controller *c);

#endif
