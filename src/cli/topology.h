/* The topology document shared by `sonde topology --json` and the server's
 * GET /v1/topology, so both print the same JSON. */
#ifndef SONDE_TOPOLOGY_H
#define SONDE_TOPOLOGY_H

#include <jansson.h>
#include <stdbool.h>

/* {"nodes": [...], "pods": [chains], "services": [...]} from v1 pods,
 * services and nodes, joined with node discovery (netns, veth, bridge,
 * VXLAN, uplink). discover: run it here for the nodes whose namespaces
 * this host can see. Else reports (may be NULL): {"<node>": {"discovery":
 * an agent's document (agent/discovery.h), "stale": bool, "received_ns"}}
 * as the server keeps them. A node with neither has chains with
 * "discovered": false and only the API's facts. */
json_t *topology_doc(const json_t *pods, const json_t *services,
		     const json_t *knodes, bool discover, const json_t *reports);

#endif
