/* The topology document shared by `sonde topology --json` and the server's
 * GET /v1/topology, so both print the same JSON. */
#ifndef SONDE_TOPOLOGY_H
#define SONDE_TOPOLOGY_H

#include <jansson.h>
#include <stdbool.h>

/* {"nodes": [...], "pods": [chains]} from v1 pods, services and nodes.
 * discover: also run node discovery (netns, veth, bridge, VXLAN, uplink)
 * for the nodes whose namespaces this host can see; without it every
 * chain has "discovered": false and only the API's facts. */
json_t *topology_doc(const json_t *pods, const json_t *services,
		     const json_t *knodes, bool discover);

#endif
