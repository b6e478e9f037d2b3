/* Record -> store columns, shared by both backends, and the query pieces
 * both backends build the same way so that their answers agree. */
#include "store/store.h"
#include "store/sql.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy_str(char *dst, size_t size, json_t *v)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;

	if (!s) {
		dst[0] = 0;
		return;
	}
	snprintf(dst, size, "%s", s);
}

static int64_t get_int(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_real(v))
		return (int64_t)llround(json_real_value(v));
	return -1;
}

static void parse_endpoint(json_t *ep, struct store_endpoint *e)
{
	copy_str(e->ip, sizeof(e->ip), json_object_get(ep, "ip"));
	e->port = get_int(ep, "port");
	copy_str(e->pod, sizeof(e->pod), json_object_get(ep, "pod"));
	copy_str(e->ns, sizeof(e->ns), json_object_get(ep, "namespace"));
	copy_str(e->workload, sizeof(e->workload),
		 json_object_get(ep, "workload"));
	copy_str(e->service, sizeof(e->service),
		 json_object_get(ep, "service"));
	/* A client's end at a cluster IP: the pod that served it (from the
	 * agent's conntrack lookup) names the row, so that the client's and
	 * the server's records of one connection aggregate together. */
	json_t *b = json_object_get(ep, "backend");
	if (!e->pod[0] && json_is_object(b)) {
		copy_str(e->pod, sizeof(e->pod), json_object_get(b, "pod"));
		copy_str(e->workload, sizeof(e->workload),
			 json_object_get(b, "workload"));
	}
}

int store_record_parse(const char *json, size_t len, struct store_record *r)
{
	json_error_t jerr;
	json_t *o = json_loadb(json, len, JSON_DISABLE_EOF_CHECK, &jerr);
	json_t *v;
	int rc = -EINVAL;

	/* No memset of the ~1 KiB struct: every field is set below (the
	 * server parses hundreds of thousands of records a second). */
	r->event[0] = r->name[0] = 0;
	r->payload = NULL;
	r->payload_len = 0;
	if (!json_is_object(o))
		goto out;
	v = json_object_get(o, "kind");
	if (!json_is_string(v) || !json_string_value(v)[0])
		goto out;
	copy_str(r->kind, sizeof(r->kind), v);
	r->time_ns = get_int(o, "time_ns");
	if (r->time_ns < 0)
		goto out;
	copy_str(r->node, sizeof(r->node), json_object_get(o, "node"));
	parse_endpoint(json_object_get(o, "src"), &r->src);
	parse_endpoint(json_object_get(o, "dst"), &r->dst);

	r->status = r->duration_ns = r->p99_ns = r->bytes = -1;
	r->count = 1;
	if (!strcmp(r->kind, "flow")) {
		copy_str(r->event, sizeof(r->event),
			 json_object_get(o, "event"));
		/* A flow's duration is its whole life, known once, at close:
		 * interval records (UDP ones carry the span so far) would put
		 * each long flow into the percentiles once per interval. */
		if (!strcmp(r->event, "close"))
			r->duration_ns = get_int(o, "duration_ns");
		/* A close that never completed its handshake is a failed
		 * connection: the flow "error" of the aggregates. */
		if (!strcmp(r->event, "close"))
			r->status = json_is_false(json_object_get(
					    o, "established")) ? 1 : 0;
		int64_t tx = get_int(o, "bytes_sent"),
			rx = get_int(o, "bytes_received");
		if (tx >= 0 || rx >= 0)
			r->bytes = (tx > 0 ? tx : 0) + (rx > 0 ? rx : 0);
	} else if (!strcmp(r->kind, "http")) {
		copy_str(r->event, sizeof(r->event), json_object_get(o, "side"));
		copy_str(r->name, sizeof(r->name), json_object_get(o, "uri"));
		r->status = get_int(o, "status");
		r->duration_ns = get_int(o, "duration_ns");
	} else if (!strcmp(r->kind, "dns")) {
		copy_str(r->event, sizeof(r->event), json_object_get(o, "side"));
		copy_str(r->name, sizeof(r->name), json_object_get(o, "qname"));
		r->status = get_int(o, "rcode");
		r->duration_ns = get_int(o, "duration_ns");
	} else if (!strcmp(r->kind, "latency")) {
		/* The hop in the event column: a cross-node pair has the same
		 * packets at both hops, so aggregates must pick one. */
		copy_str(r->event, sizeof(r->event), json_object_get(o, "hop"));
		r->duration_ns = get_int(o, "p50_ns");
		r->p99_ns = get_int(o, "p99_ns");
		int64_t c = get_int(o, "count");
		r->count = c >= 0 ? c : 1;
	} else {
		copy_str(r->event, sizeof(r->event),
			 json_object_get(o, "event"));
		r->duration_ns = get_int(o, "duration_ns");
	}
	r->payload = json;
	r->payload_len = len;
	/* Lines may carry trailing blanks or \r; keep the object only. */
	while (r->payload_len && (json[r->payload_len - 1] == '\n' ||
				  json[r->payload_len - 1] == '\r' ||
				  json[r->payload_len - 1] == ' '))
		r->payload_len--;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

int64_t store_quantile(const int64_t *sorted, size_t n, double p)
{
	if (!n)
		return -1;
	size_t i = p < 1 ? (size_t)(p * (double)n) : n - 1;
	return sorted[i < n ? i : n - 1];
}

/* ---- SQL text shared by the backends */

void sql_buf_init(struct sql_buf *b)
{
	b->len = 0;
	b->text[0] = 0;
	b->overflow = false;
}

void sql_add(struct sql_buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(b->text) - b->len;

	va_start(ap, fmt);
	int n = vsnprintf(b->text + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		b->overflow = true;
		return;
	}
	b->len += (size_t)n;
}

/* A string literal: '' doubling for both engines; ClickHouse also treats
 * backslash as an escape, so backslashes are doubled there. */
void sql_add_str(struct sql_buf *b, const char *s, bool backslash)
{
	sql_add(b, "'");
	for (; *s; s++) {
		if (*s == '\'')
			sql_add(b, "''");
		else if (*s == '\\' && backslash)
			sql_add(b, "\\\\");
		else
			sql_add(b, "%c", *s);
	}
	sql_add(b, "'");
}

void sql_add_where(struct sql_buf *b, const struct store_query *q,
		   bool backslash)
{
	sql_add(b, " WHERE time_ns >= %lld", (long long)q->since_ns);
	if (q->until_ns > 0)
		sql_add(b, " AND time_ns < %lld", (long long)q->until_ns);
	if (q->kind[0]) {
		sql_add(b, " AND kind = ");
		sql_add_str(b, q->kind, backslash);
	}
	const struct {
		const char *val, *col;
	} either[] = {
		{ q->service, "service" },
		{ q->workload, "workload" },
		{ q->pod, "pod" },
		{ q->ns, "ns" },
	};
	for (size_t i = 0; i < sizeof(either) / sizeof(either[0]); i++) {
		if (!either[i].val[0])
			continue;
		sql_add(b, " AND (src_%s = ", either[i].col);
		sql_add_str(b, either[i].val, backslash);
		sql_add(b, " OR dst_%s = ", either[i].col);
		sql_add_str(b, either[i].val, backslash);
		sql_add(b, ")");
	}
	if (q->node[0]) {
		sql_add(b, " AND node = ");
		sql_add_str(b, q->node, backslash);
	}
	if (q->event[0]) {
		sql_add(b, " AND event = ");
		sql_add_str(b, q->event, backslash);
	}
}

const char *const sql_agg_groups =
	"bucket, kind, src_service, src_workload, dst_service, dst_workload";

/* Errors per kind, an expression both engines evaluate alike. */
const char *const sql_errors_expr =
	"CASE WHEN kind = 'http' AND status >= 500 THEN 1"
	" WHEN kind = 'dns' AND status > 0 THEN 1"
	" WHEN kind = 'flow' AND status = 1 THEN 1 ELSE 0 END";

const struct store_ops *store_backend(const char *spec, const char **target)
{
	if (!strncmp(spec, "sqlite:", 7)) {
		*target = spec + 7;
		return &store_sqlite;
	}
	if (!strncmp(spec, "clickhouse:", 11)) {
		*target = spec + 11;
		return &store_clickhouse;
	}
	*target = spec;
	return &store_sqlite;
}
