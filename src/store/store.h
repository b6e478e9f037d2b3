/* The record store behind `sonde server`: one interface, two backends
 * (SQLite by default, ClickHouse at scale). Records are generic: the columns
 * every kind shares (kind, time, node, both endpoints) are indexed columns,
 * a few kind-specific figures are lifted into generic numeric columns so
 * that aggregates run in the engine, and the whole record is kept as its
 * JSON text, so kinds added later need no schema change. */
#ifndef SONDE_STORE_H
#define SONDE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_endpoint {
	char ip[48];
	int64_t port; /* -1: none */
	/* Empty string: unknown (stored as NULL). */
	char pod[128], ns[64], workload[128], service[64];
};

/* One record as stored. Numeric columns are -1 (NULL) when the kind has no
 * such figure; see docs/store.md for the mapping per kind. */
struct store_record {
	int64_t time_ns;
	char kind[16];
	char node[64];
	struct store_endpoint src, dst;
	char event[16]; /* flow: open/close; http/dns: side */
	char name[256]; /* http: uri; dns: qname */
	int64_t status;      /* http: status; dns: rcode */
	int64_t duration_ns; /* http/dns/flow: duration_ns; latency: p50_ns */
	int64_t p99_ns;      /* latency: p99_ns */
	int64_t count;       /* latency: count; others 1 */
	int64_t bytes;       /* flow: bytes both ways, when present */
	const char *payload; /* the record's JSON text (not owned) */
	size_t payload_len;
};

/* Parses one JSON record (a line of `sonde agent` output) into columns.
 * payload points into `json`, which must outlive the record. Returns 0, or
 * -EINVAL when it is not an object with kind and time_ns. */
int store_record_parse(const char *json, size_t len, struct store_record *r);

/* What to select. Empty strings / 0 mean "any". service, workload, pod and
 * namespace match either end. */
struct store_query {
	char kind[16];
	char service[64];
	char workload[128];
	char pod[128];
	char ns[64];
	char node[64];
	char event[32]; /* the event column: flow event, http/dns side, latency hop */
	int64_t since_ns; /* inclusive */
	int64_t until_ns; /* exclusive; 0: no bound */
	int64_t interval_ns; /* aggregates: bucket width (0: one bucket) */
	int64_t limit;       /* records: at most this many (0: 1000) */
};

/* One aggregate row: per interval, kind and workload pair (workloads, not
 * pods, so a series continues across pod moves). Percentiles are exact: the
 * value at 0-based position floor(p * n) of the n sorted non-NULL values
 * (ClickHouse's quantileExact), -1 when there is none. */
struct store_agg_row {
	int64_t bucket_ns;
	char kind[16];
	char src_service[64], src_workload[128];
	char dst_service[64], dst_workload[128];
	int64_t records;  /* rows */
	int64_t count;    /* sum of count */
	int64_t errors;   /* http: status >= 500; dns: rcode != 0; flow: !established */
	int64_t p50_ns, p99_ns, max_ns; /* of duration_ns */
	int64_t bytes;                  /* sum */
};

struct store;

struct store_ops {
	const char *name;
	int (*open)(const char *target, struct store **out, char *why,
		    size_t why_len);
	/* Stores a batch unless batch_id was stored before: *dup is set then
	 * and nothing is written. All or nothing. */
	int (*append)(struct store *s, const char *batch_id,
		      const struct store_record *recs, size_t n, bool *dup);
	/* Calls cb with each matching record's JSON text, newest first. */
	int (*records)(struct store *s, const struct store_query *q,
		       int (*cb)(void *ctx, const char *json, size_t len),
		       void *ctx);
	int (*count)(struct store *s, const struct store_query *q,
		     int64_t *out);
	int (*aggregate)(struct store *s, const struct store_query *q,
			 int (*cb)(void *ctx, const struct store_agg_row *row),
			 void *ctx);
	/* Deletes records (and batch ids) older than cutoff_ns. */
	int (*expire)(struct store *s, int64_t cutoff_ns, int64_t *deleted);
	void (*close)(struct store *s);
};

extern const struct store_ops store_sqlite;
extern const struct store_ops store_clickhouse;

/* "sqlite:PATH", a bare PATH, or "clickhouse:http://HOST:PORT[/?database=DB]". */
const struct store_ops *store_backend(const char *spec, const char **target);

/* Percentile of sorted values as defined above. */
int64_t store_quantile(const int64_t *sorted, size_t n, double p);

#endif
