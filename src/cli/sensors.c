/* `sonde sensors`: what every agent runs, as the server knows it (GET
 * /v1/agents: the agents' reported states and the plan push's status). */
#include "cmds.h"
#include "lib/httpget.h"
#include "lib/log.h"
#include "lib/opts.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *opt_server;
static const char *opt_token;
static bool opt_json;

static const struct opt sensors_opts[] = {
	{ "server", 's', OPT_STRING, &opt_server, "URL",
	  "the server (default: $SONDE_SERVER or http://127.0.0.1:7070)" },
	{ "token", 0, OPT_STRING, &opt_token, "TOKEN",
	  "bearer token (default: $SONDE_TOKEN)" },
	{ "json", 'j', OPT_FLAG, &opt_json, NULL,
	  "print the server's GET /v1/agents document" },
	OPT_END,
};

static const struct cmd_spec sensors_spec = {
	.path = "sonde sensors",
	.synopsis = "[OPTIONS]",
	.summary = "Show each agent's sensors and whether it runs the server's "
		   "plan.",
	.opts = sensors_opts,
	.details = "One line per sensor: node, sensor id, status (attached, "
		   "pending: the pod is not on\nthe node yet, failed: with "
		   "the reason), then per node the applied and the\ndesired "
		   "generation. Agents run with --control (docs/k8s.md).",
};

int cmd_sensors(int argc, char **argv)
{
	int npos = 0, rc = opts_parse(&sensors_spec, argc, argv, &npos);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (npos) {
		opts_usage(&sensors_spec, stderr);
		return 2;
	}
	const char *server = opt_server ? opt_server : getenv("SONDE_SERVER");
	const char *token = opt_token ? opt_token : getenv("SONDE_TOKEN");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	json_t *doc = http_get_json(server && *server ? server
						      : "http://127.0.0.1:7070",
				    "/v1/agents", token, 10000L);
	curl_global_cleanup();
	if (!doc)
		return 1;
	if (opt_json) {
		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
		json_decref(doc);
		return 0;
	}
	printf("%-10s %-52s %-9s %s\n", "NODE", "SENSOR", "STATUS", "DETAIL");
	const char *node;
	json_t *a;
	json_object_foreach(json_object_get(doc, "agents"), node, a) {
		json_t *st = json_object_get(a, "state"), *s;
		size_t i;
		json_array_foreach(json_object_get(st, "sensors"), i, s) {
			const char *status = json_string_value(json_object_get(s, "status"));
			const char *err = json_string_value(json_object_get(s, "error"));
			printf("%-10s %-52s %-9s %s\n", node,
			       json_string_value(json_object_get(s, "id")),
			       status ? status : "?", err ? err : "");
		}
	}
	printf("\n%-10s %-10s %-10s %-8s %s\n", "NODE", "APPLIED", "DESIRED",
	       "IN SYNC", "PUSH");
	json_object_foreach(json_object_get(doc, "agents"), node, a) {
		json_t *st = json_object_get(a, "state");
		const char *e = json_string_value(json_object_get(a, "last_error"));
		printf("%-10s %-10lld %-10lld %-8s %lld ok, %lld failed%s%s%s\n",
		       node,
		       (long long)json_integer_value(json_object_get(st, "generation")),
		       (long long)json_integer_value(json_object_get(a, "desired_generation")),
		       json_is_true(json_object_get(a, "in_sync")) ? "yes"
		       : json_is_true(json_object_get(a, "stale")) ? "stale"
								   : "no",
		       (long long)json_integer_value(json_object_get(a, "pushes")),
		       (long long)json_integer_value(json_object_get(a, "push_failures")),
		       e && *e ? " (" : "", e && *e ? e : "", e && *e ? ")" : "");
	}
	json_decref(doc);
	return 0;
}
