/* A node's discovery as one JSON document: what the agent found of its
 * pods (netns, processes, containers, veth pair, bridge) and of the node
 * (bridge, VXLAN device, uplink). The agent sends it to the server
 * (PUT /v1/agents/<node>/discovery), and `sonde topology` builds the same
 * document for the nodes it can see itself, so both join it with the API's
 * objects the same way (cli/topology.c). Layout: docs/k8s.md. */
#ifndef SONDE_DISCOVERY_H
#define SONDE_DISCOVERY_H

#include "agent/node.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The document of the node whose cgroup root and netns are given, from
 * `view` (NULL: scan now). Every pod (cgroup with a pod UID) is listed;
 * a pod whose netns vanished while we looked is listed without its veth.
 * No "time_ns" and no "agent": the sender stamps those. NULL when the
 * node's own netns cannot be read. */
json_t *discovery_build(const char *node, const char *cgroup_root,
			const char *netns_path, const struct node_view *view);

/* Checks a document received for `node` (what the server accepts): 0, or
 * -EINVAL with the reason in err. */
int discovery_check(const json_t *doc, const char *node, char *err,
		    size_t errlen);

/* The entry of pod `uid` in a document, or NULL. */
const json_t *discovery_pod(const json_t *doc, const char *uid);

/* Sends the latest document to `sonde server` (PUT
 * SERVER/v1/agents/<node>/discovery, bearer token) from a thread of its
 * own: at once when it changes, and every heartbeat_ns otherwise, so the
 * server can tell a silent agent (stale) from an unchanged node. A failed
 * send is retried (0.5 s doubling, at most a heartbeat apart); the agent's
 * loop never waits for the server. */
struct disc_reporter;

struct disc_reporter *disc_reporter_start(const char *server,
					  const char *token, const char *node,
					  uint64_t heartbeat_ns);
/* Takes the reference to doc (from discovery_build). */
void disc_reporter_update(struct disc_reporter *r, json_t *doc);
/* Counters for the agent's exit line: {"discovery": {"sent", "failed",
 * "changes"}}. */
void disc_reporter_status(struct disc_reporter *r, json_t *out);
void disc_reporter_stop(struct disc_reporter *r);

#endif
