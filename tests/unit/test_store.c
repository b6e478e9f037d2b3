/* The store interface on the SQLite backend: record parsing into columns,
 * batch-id idempotence, filters on either end, aggregates with exact
 * percentiles, retention. */
#include "store/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char path[64];

static char *rec_json(const char *kind, long long t, const char *sw,
		      const char *ss, const char *dw, const char *ds,
		      const char *extra)
{
	char *out = NULL;
	if (asprintf(&out,
		     "{\"kind\":\"%s\",\"time_ns\":%lld,\"node\":\"node-1\","
		     "\"src\":{\"ip\":\"10.244.1.2\",\"port\":40000,\"pod\":\"%s-p\","
		     "\"namespace\":\"bookinfo\",\"workload\":\"%s\",\"service\":\"%s\"},"
		     "\"dst\":{\"ip\":\"10.244.2.3\",\"port\":9080,\"pod\":\"%s-p\","
		     "\"namespace\":\"bookinfo\",\"workload\":\"%s\",\"service\":%s%s%s}%s}",
		     kind, t, sw, sw, ss, dw, dw, ds ? "\"" : "", ds ? ds : "null",
		     ds ? "\"" : "", extra) < 0)
		return NULL;
	return out;
}

static int setup(void **st)
{
	struct store *s;
	char why[256];
	snprintf(path, sizeof(path), "/tmp/sonde-test-store-%d.db", getpid());
	unlink(path);
	assert_int_equal(store_sqlite.open(path, &s, why, sizeof(why)), 0);
	*st = s;
	return 0;
}

static int teardown(void **st)
{
	char p[80];
	store_sqlite.close(*st);
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	return 0;
}

static void test_parse(void **st)
{
	(void)st;
	struct store_record r;
	char *j = rec_json("http", 5, "a", "sa", "b", "sb",
			   ",\"status\":503,\"uri\":\"/x\",\"duration_ns\":7,"
			   "\"side\":\"client\"");
	assert_int_equal(store_record_parse(j, strlen(j), &r), 0);
	assert_string_equal(r.kind, "http");
	assert_int_equal(r.time_ns, 5);
	assert_string_equal(r.src.workload, "a");
	assert_string_equal(r.dst.service, "sb");
	assert_int_equal(r.dst.port, 9080);
	assert_int_equal(r.status, 503);
	assert_int_equal(r.duration_ns, 7);
	assert_string_equal(r.name, "/x");
	assert_string_equal(r.event, "client");
	assert_int_equal(r.payload_len, strlen(j));
	free(j);
	/* null service: empty column */
	j = rec_json("flow", 1, "a", "sa", "b", NULL, "");
	assert_int_equal(store_record_parse(j, strlen(j), &r), 0);
	assert_string_equal(r.dst.service, "");
	assert_int_equal(r.duration_ns, -1);
	free(j);
	/* A flow's duration counts at close only (UDP intervals carry the
	 * span so far). */
	j = rec_json("flow", 1, "a", "sa", "b", NULL,
		     ",\"event\":\"interval\",\"duration_ns\":42000000000");
	assert_int_equal(store_record_parse(j, strlen(j), &r), 0);
	assert_int_equal(r.duration_ns, -1);
	free(j);
	j = rec_json("flow", 1, "a", "sa", "b", NULL,
		     ",\"event\":\"close\",\"duration_ns\":42000000000");
	assert_int_equal(store_record_parse(j, strlen(j), &r), 0);
	assert_int_equal(r.duration_ns, 42000000000LL);
	free(j);
	/* A client's end at a cluster IP takes its backend pod's names (the
	 * cluster IP stays in ip); an end with a pod keeps its own. */
	const char *cj =
		"{\"kind\":\"http\",\"time_ns\":9,\"src\":{\"ip\":\"10.244.1.2\","
		"\"pod\":\"pp-1\",\"workload\":\"pp\"},\"dst\":{\"ip\":"
		"\"10.96.0.7\",\"port\":9080,\"service\":\"reviews\","
		"\"cluster_ip\":true,\"backend\":{\"ip\":\"10.244.2.4\","
		"\"pod\":\"reviews-v3-x\",\"workload\":\"reviews-v3\","
		"\"service\":\"reviews\"}}}";
	assert_int_equal(store_record_parse(cj, strlen(cj), &r), 0);
	assert_string_equal(r.dst.ip, "10.96.0.7");
	assert_string_equal(r.dst.pod, "reviews-v3-x");
	assert_string_equal(r.dst.workload, "reviews-v3");
	assert_string_equal(r.dst.service, "reviews");
	assert_string_equal(r.src.pod, "pp-1");
	assert_int_equal(store_record_parse("{\"time_ns\":1}", 13, &r), -EINVAL);
	assert_int_equal(store_record_parse("[1]", 3, &r), -EINVAL);
	assert_int_equal(store_record_parse("{\"kind\":\"x\"}", 12, &r), -EINVAL);
}

static void test_quantile(void **st)
{
	(void)st;
	int64_t v[] = { 10, 20, 30, 40 };
	assert_int_equal(store_quantile(v, 4, 0.5), 30); /* floor(0.5*4)=2 */
	assert_int_equal(store_quantile(v, 4, 0.99), 40);
	assert_int_equal(store_quantile(v, 1, 0.5), 10);
	assert_int_equal(store_quantile(v, 0, 0.5), -1);
	assert_int_equal(store_quantile(v, 4, 1.0), 40);
}

/* 100 http records a->b (status 500 for every 10th, duration i*1000),
 * 50 flow records c->a, over 10 s. */
static void fill(struct store *s)
{
	struct store_record recs[150];
	char *texts[150];
	bool dup;
	for (int i = 0; i < 150; i++) {
		char extra[128];
		if (i < 100) {
			snprintf(extra, sizeof(extra),
				 ",\"status\":%d,\"duration_ns\":%d,\"uri\":\"/u\"",
				 i % 10 == 0 ? 500 : 200, (i + 1) * 1000);
			texts[i] = rec_json("http", 1000000000LL * (i / 10), "a",
					    "sa", "b", "sb", extra);
		} else {
			texts[i] = rec_json("flow", 1000000000LL * ((i - 100) / 5),
					    "c", "sc", "a", "sa",
					    ",\"event\":\"open\"");
		}
		assert_int_equal(store_record_parse(texts[i], strlen(texts[i]),
						    &recs[i]),
				 0);
	}
	assert_int_equal(store_sqlite.append(s, "b-1", recs, 150, &dup), 0);
	assert_false(dup);
	for (int i = 0; i < 150; i++)
		free(texts[i]);
}

static void test_idempotent(void **st)
{
	struct store *s = *st;
	struct store_query q = { 0 };
	struct store_record r;
	int64_t n;
	bool dup;
	fill(s);
	char *j = rec_json("flow", 1, "x", "sx", "y", "sy", "");
	assert_int_equal(store_record_parse(j, strlen(j), &r), 0);
	assert_int_equal(store_sqlite.append(s, "b-1", &r, 1, &dup), 0);
	assert_true(dup);
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 150);
	assert_int_equal(store_sqlite.append(s, "b-2", &r, 1, &dup), 0);
	assert_false(dup);
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 151);
	free(j);
}

static void test_filters(void **st)
{
	struct store *s = *st;
	struct store_query q = { 0 };
	int64_t n;
	fill(s);
	strcpy(q.service, "sa"); /* either end: all 150 */
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 150);
	strcpy(q.kind, "flow");
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 50);
	memset(&q, 0, sizeof(q));
	strcpy(q.workload, "b");
	q.since_ns = 2000000000LL;
	q.until_ns = 5000000000LL;
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 30);
	memset(&q, 0, sizeof(q));
	strcpy(q.pod, "c-p");
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 50);
	strcpy(q.service, "it's'; DROP TABLE records; --");
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 0);
}

struct rows {
	struct store_agg_row r[64];
	int n;
};

static int collect(void *ctx, const struct store_agg_row *row)
{
	struct rows *rs = ctx;
	if (rs->n < 64)
		rs->r[rs->n++] = *row;
	return 0;
}

static void test_aggregate(void **st)
{
	struct store *s = *st;
	struct store_query q = { 0 };
	struct rows rs = { 0 };
	fill(s);
	strcpy(q.kind, "http");
	assert_int_equal(store_sqlite.aggregate(s, &q, collect, &rs), 0);
	assert_int_equal(rs.n, 1);
	assert_int_equal(rs.r[0].records, 100);
	assert_int_equal(rs.r[0].errors, 10);
	assert_int_equal(rs.r[0].p50_ns, 51000); /* sorted[50] */
	assert_int_equal(rs.r[0].p99_ns, 100000); /* sorted[99] */
	assert_int_equal(rs.r[0].max_ns, 100000);
	assert_string_equal(rs.r[0].src_workload, "a");
	assert_string_equal(rs.r[0].dst_service, "sb");
	memset(&rs, 0, sizeof(rs));
	q.interval_ns = 5000000000LL;
	assert_int_equal(store_sqlite.aggregate(s, &q, collect, &rs), 0);
	assert_int_equal(rs.n, 2);
	assert_int_equal(rs.r[0].bucket_ns, 0);
	assert_int_equal(rs.r[0].records, 50);
	assert_int_equal(rs.r[1].bucket_ns, 5000000000LL);
	assert_int_equal(rs.r[1].p50_ns, 76000);
	assert_int_equal(rs.r[1].errors, 5);
}

static int count_cb(void *ctx, const char *json, size_t len)
{
	(void)json;
	(void)len;
	(*(int *)ctx)++;
	return 0;
}

static void test_expire_records(void **st)
{
	struct store *s = *st;
	struct store_query q = { 0 };
	int64_t n, deleted;
	int listed = 0;
	fill(s);
	assert_int_equal(store_sqlite.expire(s, 5000000000LL, &deleted), 0);
	assert_int_equal(deleted, 75);
	assert_int_equal(store_sqlite.count(s, &q, &n), 0);
	assert_int_equal(n, 75);
	q.limit = 10;
	assert_int_equal(store_sqlite.records(s, &q, count_cb, &listed), 0);
	assert_int_equal(listed, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_quantile),
		cmocka_unit_test_setup_teardown(test_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aggregate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_records, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
