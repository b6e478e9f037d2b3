/* Agents' discovery reports (agents_disc.h). HTTP threads store and read
 * under one lock; documents are replaced whole, never edited, so a reader
 * takes a reference and uses it outside the lock. */
#include "server/agents_disc.h"
#include "agent/discovery.h"
#include "server/http.h"
#include "server/server.h"

#include "lib/clock.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An agent that declares no heartbeat is assumed to send every 10 s (the
 * agent's default). */
#define DEFAULT_HEARTBEAT_NS 10000000000LL

struct agents_disc {
	pthread_mutex_t mu;
	json_t *nodes; /* {"<node>": {"doc", "received_ns", "received_mono"}} */
	unsigned stale_after;
	uint64_t stored, invalid, unauthorized;
};

struct agents_disc *agents_disc_new(unsigned stale_after)
{
	struct agents_disc *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	pthread_mutex_init(&a->mu, NULL);
	a->nodes = json_object();
	a->stale_after = stale_after ? stale_after : 3;
	return a;
}

void agents_disc_free(struct agents_disc *a)
{
	if (!a)
		return;
	json_decref(a->nodes);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

bool agents_disc_path(const char *url, char *node, size_t len)
{
	static const char prefix[] = "/v1/agents/", suffix[] = "/discovery";
	size_t ul = strlen(url), pl = sizeof(prefix) - 1, sl = sizeof(suffix) - 1;

	if (ul <= pl + sl || strncmp(url, prefix, pl) ||
	    strcmp(url + ul - sl, suffix))
		return false;
	size_t n = ul - pl - sl;
	if (n > 253 || n >= len)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = url[pl + i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
			return false;
	}
	memcpy(node, url + pl, n);
	node[n] = '\0';
	return true;
}

/* Under mu. */
static bool is_stale(const struct agents_disc *a, const json_t *entry,
		     int64_t now)
{
	const json_t *doc = json_object_get(entry, "doc");
	int64_t hb = (int64_t)json_integer_value(
		json_object_get(json_object_get(doc, "agent"), "heartbeat_ns"));
	if (hb <= 0)
		hb = DEFAULT_HEARTBEAT_NS;
	int64_t at = (int64_t)json_integer_value(json_object_get(entry, "received_mono"));
	return now - at > hb * (int64_t)a->stale_after;
}

enum MHD_Result agents_disc_put(struct agents_disc *a,
				struct MHD_Connection *c, const char *node,
				const char *body, size_t len, bool too_large)
{
	json_error_t jerr;
	char err[256], msg[400];

	if (too_large) {
		__atomic_add_fetch(&a->invalid, 1, __ATOMIC_RELAXED);
		return http_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
				  "discovery document over 8 MiB");
	}
	json_t *doc = json_loadb(body ? body : "", len, 0, &jerr);
	if (!doc) {
		__atomic_add_fetch(&a->invalid, 1, __ATOMIC_RELAXED);
		snprintf(msg, sizeof(msg), "not JSON: %s (line %d)", jerr.text,
			 jerr.line);
		return http_error(c, MHD_HTTP_BAD_REQUEST, msg);
	}
	if (discovery_check(doc, node, err, sizeof(err))) {
		json_decref(doc);
		__atomic_add_fetch(&a->invalid, 1, __ATOMIC_RELAXED);
		return http_error(c, MHD_HTTP_BAD_REQUEST, err);
	}
	json_int_t pods = (json_int_t)json_array_size(json_object_get(doc, "pods"));
	json_t *entry = json_pack("{s:o, s:I, s:I}", "doc", doc, "received_ns",
				  (json_int_t)server_now_ns(), "received_mono",
				  (json_int_t)mono_ns());
	pthread_mutex_lock(&a->mu);
	json_object_set_new(a->nodes, node, entry);
	a->stored++;
	pthread_mutex_unlock(&a->mu);
	return http_json(c, MHD_HTTP_OK,
			 json_pack("{s:s, s:I}", "node", node, "pods", pods));
}

enum MHD_Result agents_disc_get(struct agents_disc *a,
				struct MHD_Connection *c, const char *node)
{
	int64_t now = mono_ns();
	json_t *out = NULL;

	pthread_mutex_lock(&a->mu);
	json_t *e = json_object_get(a->nodes, node);
	if (e)
		out = json_pack("{s:s, s:O, s:I, s:b, s:O}", "node", node,
				"received_ns", json_object_get(e, "received_ns"),
				"age_ns",
				(json_int_t)(now - json_integer_value(json_object_get(
							   e, "received_mono"))),
				"stale", is_stale(a, e, now), "discovery",
				json_object_get(e, "doc"));
	pthread_mutex_unlock(&a->mu);
	if (!out)
		return http_error(c, MHD_HTTP_NOT_FOUND,
				  "no discovery reported for this node");
	return http_json(c, MHD_HTTP_OK, out);
}

json_t *agents_disc_reports(struct agents_disc *a)
{
	int64_t now = mono_ns();
	json_t *out = json_object();
	const char *node;
	json_t *e;

	pthread_mutex_lock(&a->mu);
	json_object_foreach(a->nodes, node, e)
		json_object_set_new(out, node,
				    json_pack("{s:O, s:b, s:O}", "discovery",
					      json_object_get(e, "doc"), "stale",
					      is_stale(a, e, now), "received_ns",
					      json_object_get(e, "received_ns")));
	pthread_mutex_unlock(&a->mu);
	return out;
}

void agents_disc_unauthorized(struct agents_disc *a)
{
	__atomic_add_fetch(&a->unauthorized, 1, __ATOMIC_RELAXED);
}

void agents_disc_metrics(struct agents_disc *a, FILE *f)
{
	int64_t now = mono_ns();
	unsigned fresh = 0, stale = 0;
	const char *node;
	json_t *e;

	pthread_mutex_lock(&a->mu);
	json_object_foreach(a->nodes, node, e) {
		if (is_stale(a, e, now))
			stale++;
		else
			fresh++;
	}
	uint64_t stored = a->stored;
	pthread_mutex_unlock(&a->mu);
	fprintf(f,
		"# HELP sonde_server_discovery_reports_total Agents' discovery "
		"PUTs by outcome.\n"
		"# TYPE sonde_server_discovery_reports_total counter\n"
		"sonde_server_discovery_reports_total{result=\"stored\"} %llu\n"
		"sonde_server_discovery_reports_total{result=\"invalid\"} %llu\n"
		"sonde_server_discovery_reports_total{result=\"unauthorized\"} %llu\n"
		"# HELP sonde_server_discovery_nodes Nodes whose agent reported "
		"its discovery, by freshness.\n"
		"# TYPE sonde_server_discovery_nodes gauge\n"
		"sonde_server_discovery_nodes{state=\"fresh\"} %u\n"
		"sonde_server_discovery_nodes{state=\"stale\"} %u\n",
		(unsigned long long)stored,
		(unsigned long long)__atomic_load_n(&a->invalid, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&a->unauthorized,
						    __ATOMIC_RELAXED),
		fresh, stale);
}
