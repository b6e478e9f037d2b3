/* SQLite backend: one file, WAL, one transaction per append (the server
 * groups several agents' batches into one), prepared statements, indices for
 * the queries `sonde query` makes (kind/time, service/time on either end). */
#include "store/sql.h"
#include "store/store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store {
	sqlite3 *db;
	sqlite3_stmt *ins_rec, *ins_batch, *has_batch;
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	/* WAL + NORMAL: a commit survives a crash of the process; only a
	 * power loss may lose the last transactions. */
	"PRAGMA synchronous=NORMAL;"
	/* 64 MiB of page cache: index pages of recent times stay hot. */
	"PRAGMA cache_size=-65536;"
	"CREATE TABLE IF NOT EXISTS records("
	" time_ns INTEGER NOT NULL, kind TEXT NOT NULL, node TEXT NOT NULL,"
	" src_ip TEXT NOT NULL, src_port INTEGER, src_pod TEXT NOT NULL,"
	" src_ns TEXT NOT NULL, src_workload TEXT NOT NULL,"
	" src_service TEXT NOT NULL,"
	" dst_ip TEXT NOT NULL, dst_port INTEGER, dst_pod TEXT NOT NULL,"
	" dst_ns TEXT NOT NULL, dst_workload TEXT NOT NULL,"
	" dst_service TEXT NOT NULL,"
	" event TEXT NOT NULL, name TEXT NOT NULL, status INTEGER,"
	" duration_ns INTEGER, p99_ns INTEGER, count INTEGER NOT NULL,"
	" bytes INTEGER, payload TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS records_kind_time ON records(kind, time_ns);"
	"CREATE INDEX IF NOT EXISTS records_src_service ON records(src_service, time_ns);"
	"CREATE INDEX IF NOT EXISTS records_dst_service ON records(dst_service, time_ns);"
	"CREATE TABLE IF NOT EXISTS batches(id TEXT PRIMARY KEY,"
	" time_ns INTEGER NOT NULL, records INTEGER NOT NULL) WITHOUT ROWID;";

/* sonde_quantile(x, p): exact percentile, see store.h. */
struct quantile_ctx {
	int64_t *v;
	size_t n, cap;
	double p;
};

static void quantile_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct quantile_ctx *q = sqlite3_aggregate_context(ctx, sizeof(*q));

	(void)argc;
	if (!q || sqlite3_value_type(argv[0]) == SQLITE_NULL)
		return;
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		int64_t *v = realloc(q->v, cap * sizeof(*v));
		if (!v) {
			sqlite3_result_error_nomem(ctx);
			return;
		}
		q->v = v;
		q->cap = cap;
	}
	q->v[q->n++] = sqlite3_value_int64(argv[0]);
	q->p = sqlite3_value_double(argv[1]);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void quantile_final(sqlite3_context *ctx)
{
	struct quantile_ctx *q = sqlite3_aggregate_context(ctx, 0);

	if (!q || !q->n) {
		sqlite3_result_null(ctx);
		if (q)
			free(q->v);
		return;
	}
	qsort(q->v, q->n, sizeof(*q->v), cmp_i64);
	sqlite3_result_int64(ctx, store_quantile(q->v, q->n, q->p));
	free(q->v);
}

static int fail(struct store *s, char *why, size_t why_len, const char *what)
{
	snprintf(why, why_len, "%s: %s", what,
		 s->db ? sqlite3_errmsg(s->db) : "out of memory");
	return -EIO;
}

static void sqlite_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->ins_rec);
	sqlite3_finalize(s->ins_batch);
	sqlite3_finalize(s->has_batch);
	sqlite3_close(s->db);
	free(s);
}

static int sqlite_open(const char *path, struct store **out, char *why,
		       size_t why_len)
{
	struct store *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		rc = fail(s, why, why_len, path);
		goto err;
	}
	/* Readers (queries) and the writer share the file: wait rather than
	 * fail while the other holds the lock. */
	sqlite3_busy_timeout(s->db, 10000);
	if (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		rc = fail(s, why, why_len, "schema");
		goto err;
	}
	if (sqlite3_create_function(s->db, "sonde_quantile", 2, SQLITE_UTF8,
				    NULL, NULL, quantile_step,
				    quantile_final) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db,
			       "INSERT INTO records VALUES(?,?,?,?,?,?,?,?,?,?,?,"
			       "?,?,?,?,?,?,?,?,?,?,?,?)",
			       -1, &s->ins_rec, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "INSERT INTO batches VALUES(?,?,?)", -1,
			       &s->ins_batch, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "SELECT 1 FROM batches WHERE id = ?", -1,
			       &s->has_batch, NULL) != SQLITE_OK) {
		rc = fail(s, why, why_len, "prepare");
		goto err;
	}
	*out = s;
	return 0;
err:
	sqlite_close(s);
	return rc;
}

static void bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
	if (v < 0)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_int64(st, i, v);
}

static void bind_endpoint(sqlite3_stmt *st, int i,
			  const struct store_endpoint *e)
{
	sqlite3_bind_text(st, i, e->ip, -1, SQLITE_STATIC);
	bind_opt(st, i + 1, e->port);
	sqlite3_bind_text(st, i + 2, e->pod, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i + 3, e->ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i + 4, e->workload, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, i + 5, e->service, -1, SQLITE_STATIC);
}

static int insert_record(struct store *s, const struct store_record *r)
{
	sqlite3_stmt *st = s->ins_rec;

	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, r->time_ns);
	sqlite3_bind_text(st, 2, r->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->node, -1, SQLITE_STATIC);
	bind_endpoint(st, 4, &r->src);
	bind_endpoint(st, 10, &r->dst);
	sqlite3_bind_text(st, 16, r->event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 17, r->name, -1, SQLITE_STATIC);
	bind_opt(st, 18, r->status);
	bind_opt(st, 19, r->duration_ns);
	bind_opt(st, 20, r->p99_ns);
	sqlite3_bind_int64(st, 21, r->count);
	bind_opt(st, 22, r->bytes);
	sqlite3_bind_text(st, 23, r->payload, (int)r->payload_len,
			  SQLITE_STATIC);
	return sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
}

static int sqlite_append(struct store *s, const char *batch_id,
			 const struct store_record *recs, size_t n, bool *dup)
{
	int rc = 0;

	*dup = false;
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return -EIO;
	if (batch_id && batch_id[0]) {
		sqlite3_reset(s->has_batch);
		sqlite3_bind_text(s->has_batch, 1, batch_id, -1, SQLITE_STATIC);
		if (sqlite3_step(s->has_batch) == SQLITE_ROW) {
			*dup = true;
			sqlite3_reset(s->has_batch);
			goto commit;
		}
		sqlite3_reset(s->has_batch);
		int64_t newest = 0;
		for (size_t i = 0; i < n; i++)
			if (recs[i].time_ns > newest)
				newest = recs[i].time_ns;
		sqlite3_reset(s->ins_batch);
		sqlite3_bind_text(s->ins_batch, 1, batch_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s->ins_batch, 2, newest);
		sqlite3_bind_int64(s->ins_batch, 3, (int64_t)n);
		if (sqlite3_step(s->ins_batch) != SQLITE_DONE) {
			rc = -EIO;
			goto rollback;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (insert_record(s, &recs[i])) {
			rc = -EIO;
			goto rollback;
		}
	}
commit:
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	rc = -EIO;
rollback:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int sqlite_records(struct store *s, const struct store_query *q,
			  int (*cb)(void *ctx, const char *json, size_t len),
			  void *ctx)
{
	struct sql_buf b;
	sqlite3_stmt *st;
	int rc = 0, step;

	sql_buf_init(&b);
	sql_add(&b, "SELECT payload FROM records");
	sql_add_where(&b, q, false);
	sql_add(&b, " ORDER BY time_ns DESC LIMIT %lld",
		(long long)(q->limit > 0 ? q->limit : 1000));
	if (b.overflow)
		return -E2BIG;
	if (sqlite3_prepare_v2(s->db, b.text, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		rc = cb(ctx, (const char *)sqlite3_column_text(st, 0),
			(size_t)sqlite3_column_bytes(st, 0));
		if (rc)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = -EIO;
	sqlite3_finalize(st);
	return rc;
}

static int sqlite_count(struct store *s, const struct store_query *q,
			int64_t *out)
{
	struct sql_buf b;
	sqlite3_stmt *st;
	int rc = -EIO;

	sql_buf_init(&b);
	sql_add(&b, "SELECT count(*) FROM records");
	sql_add_where(&b, q, false);
	if (b.overflow)
		return -E2BIG;
	if (sqlite3_prepare_v2(s->db, b.text, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = 0;
	}
	sqlite3_finalize(st);
	return rc;
}

static void col_str(sqlite3_stmt *st, int i, char *dst, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static int64_t col_opt(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL
		       ? -1
		       : sqlite3_column_int64(st, i);
}

static int sqlite_aggregate(struct store *s, const struct store_query *q,
			    int (*cb)(void *ctx, const struct store_agg_row *row),
			    void *ctx)
{
	struct sql_buf b;
	sqlite3_stmt *st;
	int rc = 0, step;

	sql_buf_init(&b);
	if (q->interval_ns > 0)
		sql_add(&b, "SELECT time_ns - time_ns %% %lld AS bucket,",
			(long long)q->interval_ns);
	else
		sql_add(&b, "SELECT 0 AS bucket,");
	sql_add(&b,
		" kind, src_service, src_workload, dst_service, dst_workload,"
		" count(*), sum(count), sum(%s),"
		" sonde_quantile(duration_ns, 0.5),"
		" sonde_quantile(duration_ns, 0.99), max(duration_ns),"
		" sum(bytes) FROM records",
		sql_errors_expr);
	sql_add_where(&b, q, false);
	sql_add(&b, " GROUP BY %s ORDER BY %s", sql_agg_groups, sql_agg_groups);
	if (b.overflow)
		return -E2BIG;
	if (sqlite3_prepare_v2(s->db, b.text, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_agg_row r;
		r.bucket_ns = sqlite3_column_int64(st, 0);
		col_str(st, 1, r.kind, sizeof(r.kind));
		col_str(st, 2, r.src_service, sizeof(r.src_service));
		col_str(st, 3, r.src_workload, sizeof(r.src_workload));
		col_str(st, 4, r.dst_service, sizeof(r.dst_service));
		col_str(st, 5, r.dst_workload, sizeof(r.dst_workload));
		r.records = sqlite3_column_int64(st, 6);
		r.count = sqlite3_column_int64(st, 7);
		r.errors = sqlite3_column_int64(st, 8);
		r.p50_ns = col_opt(st, 9);
		r.p99_ns = col_opt(st, 10);
		r.max_ns = col_opt(st, 11);
		r.bytes = col_opt(st, 12);
		if (r.bytes < 0)
			r.bytes = 0;
		rc = cb(ctx, &r);
		if (rc)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = -EIO;
	sqlite3_finalize(st);
	return rc;
}

static int sqlite_expire(struct store *s, int64_t cutoff_ns, int64_t *deleted)
{
	sqlite3_stmt *st;
	int rc = -EIO;

	*deleted = 0;
	if (sqlite3_prepare_v2(s->db, "DELETE FROM records WHERE time_ns < ?",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(st, 1, cutoff_ns);
	if (sqlite3_step(st) == SQLITE_DONE) {
		*deleted = sqlite3_changes(s->db);
		rc = 0;
	}
	sqlite3_finalize(st);
	/* Batch ids live as long as their records: a replay older than the
	 * retention would be expired at once anyway. */
	if (!rc && sqlite3_prepare_v2(s->db,
				      "DELETE FROM batches WHERE time_ns < ?",
				      -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cutoff_ns);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	return rc;
}

const struct store_ops store_sqlite = {
	.name = "sqlite",
	.open = sqlite_open,
	.append = sqlite_append,
	.records = sqlite_records,
	.count = sqlite_count,
	.aggregate = sqlite_aggregate,
	.expire = sqlite_expire,
	.close = sqlite_close,
};
