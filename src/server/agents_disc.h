/* The agents' discovery reports, kept by the server (in memory, the latest
 * per node): PUT /v1/agents/<node>/discovery stores, GET returns it, and
 * GET /v1/topology joins them with the API's objects (cli/topology.c). A
 * node whose agent missed `stale_after` heartbeats (the interval its agent
 * declares) is stale. */
#ifndef SONDE_AGENTS_DISC_H
#define SONDE_AGENTS_DISC_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define AGENTS_DISC_BODY_MAX (8u << 20)

struct agents_disc;

struct agents_disc *agents_disc_new(unsigned stale_after);
void agents_disc_free(struct agents_disc *a);

/* The node of "/v1/agents/<node>/discovery" into node (NUL-terminated);
 * false for any other path or a node name that is not a DNS label/subdomain
 * of at most 253 bytes. */
bool agents_disc_path(const char *url, char *node, size_t len);

/* PUT: body is the document; answers 200, 400 (with the reason) or 413. */
enum MHD_Result agents_disc_put(struct agents_disc *a,
				struct MHD_Connection *c, const char *node,
				const char *body, size_t len, bool too_large);
/* GET: {"node", "received_ns", "age_ns", "stale", "discovery": doc}, or 404. */
enum MHD_Result agents_disc_get(struct agents_disc *a,
				struct MHD_Connection *c, const char *node);
/* {"<node>": {"discovery", "stale", "received_ns"}} for topology_doc. */
json_t *agents_disc_reports(struct agents_disc *a);
/* One more unauthorized PUT (counted in /metrics). */
void agents_disc_unauthorized(struct agents_disc *a);
void agents_disc_metrics(struct agents_disc *a, FILE *f);

#endif
