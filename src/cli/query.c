/* `sonde query flows|http|dns|latency`: asks the server's HTTP API and
 * prints a table (default) or the API's JSON (--json). Aggregates per
 * interval and workload pair by default; --records lists records. */
#include "cmds.h"
#include "cli/offsets.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/opts.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *opt_server;
static const char *opt_token;
static const char *opt_service;
static const char *opt_workload;
static const char *opt_pod;
static const char *opt_namespace;
static const char *opt_node;
static const char *opt_hop;
static const char *opt_since;
static const char *opt_until;
static const char *opt_interval;
static long opt_limit;
static bool opt_json;
static bool opt_records;
static bool opt_count;
static bool opt_hops;
static bool opt_offsets;

static const struct opt query_opts[] = {
	{ "service", 's', OPT_STRING, &opt_service, "NAME",
	  "records with this service at either end" },
	{ "workload", 'w', OPT_STRING, &opt_workload, "NAME",
	  "records with this workload at either end" },
	{ "pod", 'p', OPT_STRING, &opt_pod, "NAME",
	  "records with this pod at either end" },
	{ "namespace", 'n', OPT_STRING, &opt_namespace, "NAME",
	  "records with this namespace at either end" },
	{ "node", 0, OPT_STRING, &opt_node, "NAME", "records of this node" },
	{ "hop", 0, OPT_STRING, &opt_hop, "HOP",
	  "latency hop: pod_veth, vxlan_ingress, any (default: aggregates\n"
	  "                            pod_veth, --records/--count any)" },
	{ "since", 0, OPT_STRING, &opt_since, "TIME",
	  "from TIME: a duration back from now (5m) or UTC ns (default 15m)" },
	{ "until", 0, OPT_STRING, &opt_until, "TIME",
	  "up to TIME (exclusive), same forms (default: now)" },
	{ "interval", 'i', OPT_STRING, &opt_interval, "DUR",
	  "aggregate per DUR (default: one row per workload pair)" },
	{ "records", 'r', OPT_FLAG, &opt_records, NULL,
	  "list records (newest first) instead of aggregates" },
	{ "count", 'c', OPT_FLAG, &opt_count, NULL,
	  "print only the number of matching records" },
	{ "hops", 0, OPT_FLAG, &opt_hops, NULL,
	  "latency: per workload pair, the per-hop split (sender -> node\n"
	  "                            ingress, node -> pod) of cross-node records" },
	{ "offsets", 0, OPT_FLAG, &opt_offsets, NULL,
	  "latency: per node pair, the clock offset estimated from the two\n"
	  "                            directions' minima, its bound, corrected p50s" },
	{ "limit", 0, OPT_INT, &opt_limit, "N",
	  "with --records: at most N (default 100)" },
	{ "json", 'j', OPT_FLAG, &opt_json, NULL,
	  "print the server's JSON instead of a table" },
	{ "server", 0, OPT_STRING, &opt_server, "URL",
	  "the server (default: $SONDE_SERVER or http://127.0.0.1:7070)" },
	{ "token", 0, OPT_STRING, &opt_token, "TOKEN",
	  "bearer token (default: $SONDE_TOKEN)" },
	OPT_END,
};

static const struct cmd_spec query_spec = {
	.path = "sonde query",
	.synopsis = "flows|http|dns|latency|KIND [OPTIONS]",
	.summary = "Query the records stored by `sonde server`.",
	.opts = query_opts,
	.details =
		"Aggregate columns: records, count (latency: samples), errors "
		"(http 5xx, dns rcode != 0,\nflow handshakes that failed), "
		"p50/p99/max of duration_ns (latency: of the records'\np50_ns), "
		"bytes. Same API: GET $SONDE_SERVER/v1/aggregate|records|count.",
};

static void add_arg(CURL *curl, char *url, size_t size, const char *name,
		    const char *value)
{
	if (!value || !value[0])
		return;
	char *esc = curl_easy_escape(curl, value, 0);
	size_t len = strlen(url);
	snprintf(url + len, size - len, "%s%s=%s",
		 strchr(url, '?') ? "&" : "?", name, esc ? esc : "");
	curl_free(esc);
}

static const char *kind_of(const char *what)
{
	if (!strcmp(what, "flows"))
		return "flow";
	return what; /* http, dns, latency, and kinds added later */
}

static void print_ns(char *out, size_t size, int64_t ns)
{
	if (ns < 0)
		snprintf(out, size, "-");
	else if (ns >= 1000000000)
		snprintf(out, size, "%.2fs", (double)ns / 1e9);
	else if (ns >= 1000000)
		snprintf(out, size, "%.2fms", (double)ns / 1e6);
	else
		snprintf(out, size, "%.1fus", (double)ns / 1e3);
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s && s[0] ? s : "-";
}

static void print_table(json_t *doc)
{
	json_t *rows = json_object_get(doc, "rows");
	size_t i;
	json_t *r;

	printf("%-19s %-26s %-26s %8s %8s %6s %9s %9s %9s %10s\n", "TIME",
	       "SRC (svc/workload)", "DST (svc/workload)", "RECORDS", "COUNT",
	       "ERRORS", "P50", "P99", "MAX", "BYTES");
	json_array_foreach(rows, i, r)
	{
		char when[32] = "-", src[160], dst[160], p50[16], p99[16],
		     max[16];
		int64_t b = json_integer_value(json_object_get(r, "bucket_ns"));
		if (b > 0) {
			time_t t = (time_t)(b / 1000000000);
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		}
		snprintf(src, sizeof(src), "%s/%s", jstr(r, "src_service"),
			 jstr(r, "src_workload"));
		snprintf(dst, sizeof(dst), "%s/%s", jstr(r, "dst_service"),
			 jstr(r, "dst_workload"));
		print_ns(p50, sizeof(p50),
			 json_integer_value(json_object_get(r, "p50_ns")));
		print_ns(p99, sizeof(p99),
			 json_integer_value(json_object_get(r, "p99_ns")));
		print_ns(max, sizeof(max),
			 json_integer_value(json_object_get(r, "max_ns")));
		printf("%-19s %-26.26s %-26.26s %8lld %8lld %6lld %9s %9s %9s "
		       "%10lld\n",
		       when, src, dst,
		       (long long)json_integer_value(json_object_get(r, "records")),
		       (long long)json_integer_value(json_object_get(r, "count")),
		       (long long)json_integer_value(json_object_get(r, "errors")),
		       p50, p99, max,
		       (long long)json_integer_value(json_object_get(r, "bytes")));
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* The value at 0-based position floor(p * n) of the sorted values, as the
 * store's aggregates define their percentiles; -1 when there is none. */
static int64_t arr_quantile(json_t *arr, double p)
{
	size_t n = json_array_size(arr), i;
	json_t *v;
	if (!n)
		return -1;
	int64_t *x = malloc(n * sizeof(*x));
	if (!x)
		return -1;
	json_array_foreach(arr, i, v) x[i] = json_integer_value(v);
	qsort(x, n, sizeof(*x), cmp_i64);
	size_t k = (size_t)(p * (double)n);
	int64_t r = x[k < n ? k : n - 1];
	free(x);
	return r;
}

static void arr_push(json_t *g, const char *key, json_t *v)
{
	if (!json_is_integer(v))
		return;
	json_t *a = json_object_get(g, key);
	if (!a) {
		a = json_array();
		json_object_set_new(g, key, a);
	}
	json_array_append(a, v);
}

/* `--hops`: the pod_veth records (the end-to-end hop) grouped per workload
 * pair; those of cross-node pairs carry `hops` (the vxlan_ingress median of
 * the same interval and the remainder), whose medians give the split. The
 * server has no columns for it, so it is computed here from the records. */
static void print_hops(const char *text)
{
	json_t *groups = json_object();
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		json_t *o = json_loadb(p, len, 0, NULL);
		p += len + (nl ? 1 : 0);
		if (!o)
			continue;
		json_t *s = json_object_get(o, "src"), *d = json_object_get(o, "dst");
		char key[512];
		snprintf(key, sizeof(key), "%s/%s %s/%s", jstr(s, "service"),
			 jstr(s, "workload"), jstr(d, "service"),
			 jstr(d, "workload"));
		json_t *g = json_object_get(groups, key);
		if (!g) {
			g = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "src_service",
				      jstr(s, "service"), "src_workload",
				      jstr(s, "workload"), "dst_service",
				      jstr(d, "service"), "dst_workload",
				      jstr(d, "workload"), "records",
				      (json_int_t)0, "count", (json_int_t)0);
			json_object_set_new(groups, key, g);
		}
		json_object_set_new(g, "records",
				    json_integer(json_integer_value(json_object_get(
							 g, "records")) + 1));
		json_object_set_new(
			g, "count",
			json_integer(json_integer_value(json_object_get(g, "count")) +
				     json_integer_value(json_object_get(o, "count"))));
		arr_push(g, "p", json_object_get(o, "p50_ns"));
		json_t *h = json_object_get(o, "hops");
		if (h) {
			arr_push(g, "s", json_object_get(h, "sender_to_node_p50_ns"));
			arr_push(g, "n", json_object_get(h, "node_to_pod_p50_ns"));
		}
		json_decref(o);
	}
	json_t *rows = json_array(), *g;
	const char *key;
	json_object_foreach(groups, key, g)
	{
		json_t *n = json_object_get(g, "n");
		json_array_append_new(
			rows,
			json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:I,s:I,s:I,s:I}",
				  "src_service", json_object_get(g, "src_service"),
				  "src_workload", json_object_get(g, "src_workload"),
				  "dst_service", json_object_get(g, "dst_service"),
				  "dst_workload", json_object_get(g, "dst_workload"),
				  "records", json_object_get(g, "records"),
				  "count", json_object_get(g, "count"),
				  "p50_ns", (json_int_t)arr_quantile(json_object_get(g, "p"), 0.5),
				  "split_records", (json_int_t)json_array_size(n),
				  "sender_to_node_p50_ns",
				  (json_int_t)arr_quantile(json_object_get(g, "s"), 0.5),
				  "node_to_pod_p50_ns", (json_int_t)arr_quantile(n, 0.5)));
	}
	json_decref(groups);
	if (opt_json) {
		json_t *doc = json_pack("{s:o}", "rows", rows);
		char *t = json_dumps(doc, JSON_COMPACT);
		if (t)
			puts(t);
		free(t);
		json_decref(doc);
		return;
	}
	size_t i;
	json_t *r;
	printf("%-26s %-26s %8s %8s %9s %6s %13s %11s\n", "SRC (svc/workload)",
	       "DST (svc/workload)", "RECORDS", "COUNT", "P50", "SPLIT",
	       "SENDER->NODE", "NODE->POD");
	json_array_foreach(rows, i, r)
	{
		char src[160], dst[160], a[16], b[16], c[16];
		snprintf(src, sizeof(src), "%s/%s", jstr(r, "src_service"),
			 jstr(r, "src_workload"));
		snprintf(dst, sizeof(dst), "%s/%s", jstr(r, "dst_service"),
			 jstr(r, "dst_workload"));
		print_ns(a, sizeof(a), json_integer_value(json_object_get(r, "p50_ns")));
		print_ns(b, sizeof(b),
			 json_integer_value(json_object_get(r, "sender_to_node_p50_ns")));
		print_ns(c, sizeof(c),
			 json_integer_value(json_object_get(r, "node_to_pod_p50_ns")));
		printf("%-26.26s %-26.26s %8lld %8lld %9s %6lld %13s %11s\n", src,
		       dst, (long long)json_integer_value(json_object_get(r, "records")),
		       (long long)json_integer_value(json_object_get(r, "count")), a,
		       (long long)json_integer_value(json_object_get(r, "split_records")),
		       b, c);
	}
	json_decref(rows);
}

static void ep_text(json_t *ep, char *out, size_t size)
{
	const char *pod = json_string_value(json_object_get(ep, "pod"));
	snprintf(out, size, "%s:%lld(%s)",
		 json_string_value(json_object_get(ep, "ip"))
			 ? json_string_value(json_object_get(ep, "ip"))
			 : "?",
		 (long long)json_integer_value(json_object_get(ep, "port")),
		 pod ? pod : "-");
}

static void print_records(const char *text)
{
	printf("%-26s %-6s %-8s %-40s %-40s %s\n", "TIME", "KIND", "NODE",
	       "SRC", "DST", "DETAIL");
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		json_t *o = json_loadb(p, len, 0, NULL);
		p += len + (nl ? 1 : 0);
		if (!o)
			continue;
		char when[40] = "-", src[128], dst[128], detail[160] = "";
		int64_t t = json_integer_value(json_object_get(o, "time_ns"));
		time_t sec = (time_t)(t / 1000000000);
		struct tm tm;
		gmtime_r(&sec, &tm);
		size_t w = strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(when + w, sizeof(when) - w, ".%06lld",
			 (long long)(t % 1000000000) / 1000);
		ep_text(json_object_get(o, "src"), src, sizeof(src));
		ep_text(json_object_get(o, "dst"), dst, sizeof(dst));
		const char *keys[] = { "event", "side", "method", "uri", "status",
				       "qname", "rcode", "duration_ns", "p50_ns",
				       "p99_ns" };
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			json_t *v = json_object_get(o, keys[k]);
			size_t dl = strlen(detail);
			if (json_is_string(v))
				snprintf(detail + dl, sizeof(detail) - dl,
					 "%s=%s ", keys[k], json_string_value(v));
			else if (json_is_integer(v))
				snprintf(detail + dl, sizeof(detail) - dl,
					 "%s=%lld ", keys[k],
					 (long long)json_integer_value(v));
		}
		printf("%-26s %-6s %-8s %-40s %-40s %s\n", when,
		       jstr(o, "kind"), jstr(o, "node"), src, dst, detail);
		json_decref(o);
	}
}

int cmd_query(int argc, char **argv)
{
	int npos = 0, rc = 1;
	char url[2048], auth[512];
	struct buf body = { 0 };
	struct curl_slist *hdrs = NULL;
	long status = 0;

	int prc = opts_parse(&query_spec, argc, argv, &npos);
	if (prc)
		return prc > 0 ? 0 : 2;
	if (npos != 1) {
		fprintf(stderr, "sonde query: which records? flows, http, dns "
				"or latency (see --help)\n");
		return 2;
	}
	const char *server = opt_server ? opt_server : getenv("SONDE_SERVER");
	const char *token = opt_token ? opt_token : getenv("SONDE_TOKEN");
	if (!server || !server[0])
		server = "http://127.0.0.1:7070";

	CURL *curl = curl_easy_init();
	if (!curl)
		return 1;
	if (opt_hops && (strcmp(kind_of(argv[0]), "latency") || opt_records ||
			 opt_count || opt_interval)) {
		fprintf(stderr, "sonde query: --hops is for latency aggregates "
				"(no --records, --count, --interval)\n");
		curl_easy_cleanup(curl);
		return 2;
	}
	if (opt_offsets && (strcmp(kind_of(argv[0]), "latency") || opt_records ||
			    opt_count || opt_interval || opt_hops)) {
		fprintf(stderr, "sonde query: --offsets is for latency (no "
				"--records, --count, --interval, --hops)\n");
		curl_easy_cleanup(curl);
		return 2;
	}
	bool listing = opt_records || opt_hops || opt_offsets;
	const char *endpoint = opt_count ? "count" : listing ? "records"
							     : "aggregate";
	snprintf(url, sizeof(url), "%s/v1/%s", server, endpoint);
	add_arg(curl, url, sizeof(url), "kind", kind_of(argv[0]));
	add_arg(curl, url, sizeof(url), "service", opt_service);
	add_arg(curl, url, sizeof(url), "workload", opt_workload);
	add_arg(curl, url, sizeof(url), "pod", opt_pod);
	add_arg(curl, url, sizeof(url), "namespace", opt_namespace);
	add_arg(curl, url, sizeof(url), "node", opt_node);
	/* A cross-node pair has the same packets at both hops: aggregating
	 * both would count every sample twice and mix the hops' figures, so
	 * aggregates take the last hop (sender to pod, measured for same-node
	 * pairs too) unless asked otherwise. */
	const char *hop = opt_hop;
	if (!hop && !opt_offsets && (opt_hops || (!opt_records && !opt_count)) &&
	    !strcmp(kind_of(argv[0]), "latency"))
		hop = "pod_veth";
	if (hop && strcmp(hop, "any"))
		add_arg(curl, url, sizeof(url), "event", hop);
	add_arg(curl, url, sizeof(url), "since", opt_since ? opt_since : "15m");
	add_arg(curl, url, sizeof(url), "until", opt_until);
	add_arg(curl, url, sizeof(url), "interval", opt_interval);
	if (listing) {
		char lim[32];
		snprintf(lim, sizeof(lim), "%ld",
			 opt_limit > 0 ? opt_limit : opt_records ? 100 : 10000000);
		add_arg(curl, url, sizeof(url), "limit", lim);
	}
	if (token && token[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buf_curl_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
	CURLcode cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		fprintf(stderr, "sonde query: cannot reach the server at %s: %s "
				"(is `sonde server` running? set SONDE_SERVER)\n",
			server, curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		fprintf(stderr, "sonde query: server answered %ld: %s\n", status,
			body.p ? body.p : "");
		goto out;
	}
	if (opt_hops) {
		print_hops(body.p ? body.p : "");
	} else if (opt_offsets) {
		/* Both directions of a node pair are needed, so it is computed
		 * here from the records (every hop unless --hop). */
		json_t *doc = latency_offsets(body.p);
		if (opt_json) {
			char *t = json_dumps(doc, JSON_COMPACT);
			if (t)
				puts(t);
			free(t);
		} else {
			latency_offsets_print(doc, stdout);
		}
		json_decref(doc);
	} else if (opt_json || !body.p) {
		if (body.p)
			fputs(body.p, stdout);
		if (body.len && body.p[body.len - 1] != '\n')
			putchar('\n');
	} else if (opt_count) {
		json_t *o = json_loads(body.p, 0, NULL);
		printf("%lld\n", (long long)json_integer_value(
					 json_object_get(o, "records")));
		json_decref(o);
	} else if (opt_records) {
		print_records(body.p);
	} else {
		json_t *o = json_loads(body.p, 0, NULL);
		if (!o) {
			fprintf(stderr, "sonde query: the server's answer is not "
					"JSON\n");
			goto out;
		}
		print_table(o);
		json_decref(o);
	}
	rc = 0;
out:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(curl);
	free(body.p);
	return rc;
}
