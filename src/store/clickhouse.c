/* ClickHouse backend, through its HTTP interface (libcurl): a MergeTree
 * table partitioned by day, ordered by (kind, time_ns); inserts in
 * TabSeparated; the same WHERE text as SQLite (record.c) and quantileExact,
 * whose definition sonde_quantile copies, so both backends answer alike.
 *
 * Limits (docs/store.md): ClickHouse has no transactions, so the batch id
 * is written after the batch's records: a crash between the two makes the
 * retried batch a duplicate. TTL clauses came in ClickHouse 19.6; on older
 * servers (Debian's 18.16) retention runs as ALTER TABLE ... DELETE. */
#include "lib/buf.h"
#include "store/sql.h"
#include "store/store.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store {
	CURL *curl;
	char base[512];
	pthread_mutex_t lock; /* one request at a time on this handle */
	char *resp;
	size_t resp_len;
	long status;
};

static size_t on_data(char *d, size_t size, size_t n, void *ctx)
{
	struct store *s = ctx;
	char *p = realloc(s->resp, s->resp_len + size * n + 1);

	if (!p)
		return 0;
	memcpy(p + s->resp_len, d, size * n);
	s->resp = p;
	s->resp_len += size * n;
	s->resp[s->resp_len] = 0;
	return size * n;
}

/* POSTs body to base?query=<query> (query may be NULL: the body is the
 * SQL). Returns 0 on HTTP 200; the answer is in s->resp. Call locked. */
static int ch_request(struct store *s, const char *query, const char *body,
		      size_t len)
{
	char url[8192];
	char *esc = NULL;

	free(s->resp);
	s->resp = NULL;
	s->resp_len = 0;
	s->status = 0;
	if (query) {
		esc = curl_easy_escape(s->curl, query, 0);
		snprintf(url, sizeof(url), "%s%squery=%s", s->base,
			 strchr(s->base, '?') ? "&" : "/?", esc ? esc : "");
		curl_free(esc);
	} else {
		snprintf(url, sizeof(url), "%s", s->base);
	}
	curl_easy_setopt(s->curl, CURLOPT_URL, url);
	curl_easy_setopt(s->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->curl, CURLOPT_TIMEOUT, 300L);
	if (curl_easy_perform(s->curl) != CURLE_OK)
		return -EIO;
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
	return s->status == 200 ? 0 : -EIO;
}

static int ch_sql(struct store *s, const char *sql)
{
	return ch_request(s, NULL, sql, strlen(sql));
}

static void ch_close(struct store *s)
{
	if (!s)
		return;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	free(s->resp);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

#define COLUMNS                                                              \
	"time_ns Int64, kind String, node String, src_ip String,"            \
	" src_port Nullable(Int64), src_pod String, src_ns String,"          \
	" src_workload String, src_service String, dst_ip String,"           \
	" dst_port Nullable(Int64), dst_pod String, dst_ns String,"          \
	" dst_workload String, dst_service String, event String,"            \
	" name String, status Nullable(Int64), duration_ns Nullable(Int64),"  \
	" p99_ns Nullable(Int64), count Int64, bytes Nullable(Int64),"        \
	" payload String"
#define ENGINE                                                               \
	" ENGINE = MergeTree"                                                \
	" PARTITION BY toYYYYMMDD(toDateTime(intDiv(time_ns, 1000000000)))"  \
	" ORDER BY (kind, time_ns)"

static int ch_open(const char *target, struct store **out, char *why,
		   size_t why_len)
{
	struct store *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->base, sizeof(s->base), "%s", target);
	size_t l = strlen(s->base);
	if (l && s->base[l - 1] == '/')
		s->base[l - 1] = 0;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	s->curl = curl_easy_init();
	if (!s->curl)
		goto err;
	/* Days as partitions; a TTL where the server knows it (19.6+). */
	if (ch_sql(s, "CREATE TABLE IF NOT EXISTS records (" COLUMNS ")" ENGINE
		      " TTL toDateTime(intDiv(time_ns, 1000000000)) + "
		      "INTERVAL 7 DAY") &&
	    ch_sql(s, "CREATE TABLE IF NOT EXISTS records (" COLUMNS ")" ENGINE))
		goto err;
	if (ch_sql(s, "CREATE TABLE IF NOT EXISTS batches (id String,"
		      " time_ns Int64, records Int64) ENGINE = MergeTree"
		      " ORDER BY id"))
		goto err;
	*out = s;
	return 0;
err:
	snprintf(why, why_len, "ClickHouse at %s: %s%.200s", target,
		 s->status ? "" : "unreachable",
		 s->resp ? s->resp : "");
	ch_close(s);
	return -EIO;
}

/* TabSeparated escaping of one value. */
static void tsv_str(struct buf *b, const char *v, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		const char *rep = NULL;
		switch (v[i]) {
		case '\\': rep = "\\\\"; break;
		case '\t': rep = "\\t"; break;
		case '\n': rep = "\\n"; break;
		case '\r': rep = "\\r"; break;
		case '\0': rep = "\\0"; break;
		default: continue;
		}
		buf_add(b, v + start, i - start);
		buf_add(b, rep, 2);
		start = i + 1;
	}
	buf_add(b, v + start, len - start);
}

static void tsv_col(struct buf *b, const char *v)
{
	tsv_str(b, v, strlen(v));
	buf_add(b, "\t", 1);
}

static void tsv_int(struct buf *b, int64_t v, bool nullable)
{
	char num[32];
	int n = (nullable && v < 0) ? snprintf(num, sizeof(num), "\\N\t")
				    : snprintf(num, sizeof(num), "%lld\t",
					       (long long)v);
	buf_add(b, num, (size_t)n);
}

static void tsv_endpoint(struct buf *b, const struct store_endpoint *e)
{
	tsv_col(b, e->ip);
	tsv_int(b, e->port, true);
	tsv_col(b, e->pod);
	tsv_col(b, e->ns);
	tsv_col(b, e->workload);
	tsv_col(b, e->service);
}

static int ch_append(struct store *s, const char *batch_id,
		     const struct store_record *recs, size_t n, bool *dup)
{
	struct buf b = { 0 };
	struct sql_buf q;
	int rc = 0;

	*dup = false;
	pthread_mutex_lock(&s->lock);
	if (batch_id && batch_id[0]) {
		sql_buf_init(&q);
		sql_add(&q, "SELECT count() FROM batches WHERE id = ");
		sql_add_str(&q, batch_id, true);
		if (q.overflow || ch_sql(s, q.text)) {
			rc = -EIO;
			goto out;
		}
		if (strtoll(s->resp, NULL, 10) > 0) {
			*dup = true;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct store_record *r = &recs[i];
		tsv_int(&b, r->time_ns, false);
		tsv_col(&b, r->kind);
		tsv_col(&b, r->node);
		tsv_endpoint(&b, &r->src);
		tsv_endpoint(&b, &r->dst);
		tsv_col(&b, r->event);
		tsv_col(&b, r->name);
		tsv_int(&b, r->status, true);
		tsv_int(&b, r->duration_ns, true);
		tsv_int(&b, r->p99_ns, true);
		tsv_int(&b, r->count, false);
		tsv_int(&b, r->bytes, true);
		tsv_str(&b, r->payload, r->payload_len);
		buf_add(&b, "\n", 1);
	}
	if (b.oom) {
		rc = -ENOMEM;
		goto out;
	}
	if (n && ch_request(s, "INSERT INTO records FORMAT TabSeparated", b.p,
			    b.len)) {
		rc = -EIO;
		goto out;
	}
	if (batch_id && batch_id[0]) {
		int64_t newest = 0;
		for (size_t i = 0; i < n; i++)
			if (recs[i].time_ns > newest)
				newest = recs[i].time_ns;
		b.len = 0;
		tsv_col(&b, batch_id);
		tsv_int(&b, newest, false);
		char cnt[32];
		buf_add(&b, cnt, (size_t)snprintf(cnt, sizeof(cnt), "%zu\n", n));
		if (b.oom || ch_request(s, "INSERT INTO batches FORMAT "
					   "TabSeparated",
					b.p, b.len))
			rc = -EIO;
	}
out:
	pthread_mutex_unlock(&s->lock);
	free(b.p);
	return rc;
}

static int ch_records(struct store *s, const struct store_query *q,
		      int (*cb)(void *ctx, const char *json, size_t len),
		      void *ctx)
{
	struct sql_buf b;
	int rc = 0;

	sql_buf_init(&b);
	sql_add(&b, "SELECT payload FROM records");
	sql_add_where(&b, q, true);
	sql_add(&b, " ORDER BY time_ns DESC LIMIT %lld FORMAT TabSeparatedRaw",
		(long long)(q->limit > 0 ? q->limit : 1000));
	if (b.overflow)
		return -E2BIG;
	pthread_mutex_lock(&s->lock);
	if (ch_sql(s, b.text)) {
		pthread_mutex_unlock(&s->lock);
		return -EIO;
	}
	for (char *p = s->resp, *end = s->resp + s->resp_len; p && p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len && (rc = cb(ctx, p, len)))
			break;
		p += len + 1;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int ch_count(struct store *s, const struct store_query *q, int64_t *out)
{
	struct sql_buf b;
	int rc;

	sql_buf_init(&b);
	sql_add(&b, "SELECT count() FROM records");
	sql_add_where(&b, q, true);
	if (b.overflow)
		return -E2BIG;
	pthread_mutex_lock(&s->lock);
	rc = ch_sql(s, b.text);
	if (!rc)
		*out = strtoll(s->resp, NULL, 10);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Next TabSeparated field of line (modified in place); NULL at the end. */
static char *next_field(char **line)
{
	char *f = *line, *tab;

	if (!f)
		return NULL;
	tab = strchr(f, '\t');
	if (tab) {
		*tab = 0;
		*line = tab + 1;
	} else {
		*line = NULL;
	}
	/* Unescape \\ \t \n (workload names hold none in practice). */
	char *w = f;
	for (char *r = f; *r; r++) {
		if (*r == '\\' && r[1]) {
			r++;
			*w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
	return f;
}

static int64_t field_int(char **line)
{
	char *f = next_field(line);
	if (!f || !strcmp(f, "\\N") || !strcmp(f, "N") || !f[0])
		return -1;
	return strtoll(f, NULL, 10);
}

static void field_str(char **line, char *dst, size_t size)
{
	char *f = next_field(line);
	snprintf(dst, size, "%s", f ? f : "");
}

static int ch_aggregate(struct store *s, const struct store_query *q,
			int (*cb)(void *ctx, const struct store_agg_row *row),
			void *ctx)
{
	struct sql_buf b;
	int rc = 0;

	sql_buf_init(&b);
	if (q->interval_ns > 0)
		sql_add(&b, "SELECT time_ns - time_ns %% %lld AS bucket,",
			(long long)q->interval_ns);
	else
		sql_add(&b, "SELECT toInt64(0) AS bucket,");
	sql_add(&b,
		" kind, src_service, src_workload, dst_service, dst_workload,"
		" count(), sum(count), sum(%s),"
		" quantileExact(0.5)(duration_ns),"
		" quantileExact(0.99)(duration_ns), max(duration_ns),"
		" sum(bytes) FROM records",
		sql_errors_expr);
	sql_add_where(&b, q, true);
	sql_add(&b, " GROUP BY %s ORDER BY %s FORMAT TabSeparated",
		sql_agg_groups, sql_agg_groups);
	if (b.overflow)
		return -E2BIG;
	pthread_mutex_lock(&s->lock);
	if (ch_sql(s, b.text)) {
		pthread_mutex_unlock(&s->lock);
		return -EIO;
	}
	for (char *p = s->resp, *end = s->resp + s->resp_len; p && p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl)
			*nl = 0;
		char *line = p;
		p = nl ? nl + 1 : end;
		if (!line[0])
			continue;
		struct store_agg_row r;
		r.bucket_ns = field_int(&line);
		field_str(&line, r.kind, sizeof(r.kind));
		field_str(&line, r.src_service, sizeof(r.src_service));
		field_str(&line, r.src_workload, sizeof(r.src_workload));
		field_str(&line, r.dst_service, sizeof(r.dst_service));
		field_str(&line, r.dst_workload, sizeof(r.dst_workload));
		r.records = field_int(&line);
		r.count = field_int(&line);
		r.errors = field_int(&line);
		r.p50_ns = field_int(&line);
		r.p99_ns = field_int(&line);
		r.max_ns = field_int(&line);
		r.bytes = field_int(&line);
		if (r.bytes < 0)
			r.bytes = 0;
		if ((rc = cb(ctx, &r)))
			break;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int ch_expire(struct store *s, int64_t cutoff_ns, int64_t *deleted)
{
	char sql[256];
	int64_t before = 0;
	struct store_query all = { 0 };
	int rc;

	*deleted = 0;
	all.until_ns = cutoff_ns;
	if (ch_count(s, &all, &before) || !before)
		return 0;
	/* A mutation: ClickHouse rewrites the affected parts in the
	 * background. Newer servers drop whole days through the TTL. */
	pthread_mutex_lock(&s->lock);
	snprintf(sql, sizeof(sql),
		 "ALTER TABLE records DELETE WHERE time_ns < %lld",
		 (long long)cutoff_ns);
	rc = ch_sql(s, sql);
	if (!rc) {
		snprintf(sql, sizeof(sql),
			 "ALTER TABLE batches DELETE WHERE time_ns < %lld",
			 (long long)cutoff_ns);
		ch_sql(s, sql);
		*deleted = before;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

const struct store_ops store_clickhouse = {
	.name = "clickhouse",
	.open = ch_open,
	.append = ch_append,
	.records = ch_records,
	.count = ch_count,
	.aggregate = ch_aggregate,
	.expire = ch_expire,
	.close = ch_close,
};
