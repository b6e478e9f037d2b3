/* `sonde server`: ingest of agents' batches, the query API and /metrics.
 *
 * Ingest path: an HTTP thread reads one batch (JSON lines, zlib-compressed),
 * parses it into records, queues it for the single store writer and waits
 * until the writer has committed it: a 200 means "durably stored", so an
 * agent deletes its spooled copy only then. The queue is bounded in bytes;
 * beyond it the server answers 503 with Retry-After instead of growing. The
 * batch id is stored in the same transaction as the records, so a retried
 * batch is acknowledged again and never stored twice. */
#include "server/server.h"
#include "cmds.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/opts.h"
#include "server/http.h"
#include "server/series.h"
#include "server/es.h"
#include "server/controller.h"
#include "server/agents_disc.h"
#include "server/agents.h"
#include "lib/procstat.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_WATCHES 32

struct ingest_job {
	struct ingest_job *next;
	char batch_id[128];
	char *text; /* decompressed JSON lines; records point into it */
	struct store_record *recs;
	size_t n, bytes;
	bool done, dup;
	int rc;
};

struct watch {
	int fd;
	void (*cb)(struct server *s, int fd, void *ctx);
	void *ctx;
};

struct server {
	const struct store_ops *ops;
	struct store *writer; /* used by the writer thread only */
	struct store *reader; /* queries, from HTTP threads */
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	struct ingest_job *head, **tail;
	size_t queued_bytes, queue_max;
	size_t body_max;
	int uploads, uploads_max;
	bool stopping;
	const char *token;
	uint64_t retention_ns;
	struct series_set *series;
	struct es_exporter *es;
	struct controller *ctl; /* NULL: no Kubernetes controller */
	struct agents_disc *disc; /* agents' discovery reports */
	struct agents *agents;	/* agents' states, the plan push */
	int epfd;
	struct watch watches[MAX_WATCHES];
	int nwatches;
	/* counters for /metrics */
	atomic_uint_fast64_t batches_stored, batches_dup, batches_bad,
		batches_overload, batches_unauth, records_stored,
		records_invalid, bytes_received, expired, queries,
		store_errors;
};

static const char *opt_listen;
static const char *opt_store;
static const char *opt_token;
static uint64_t opt_retention_ns;
static long opt_queue_mb;
static long opt_uploads_max;
static const char *opt_export_es;
static const char *opt_kubeconfig;
static const char *opt_policy;
static long opt_stale_after = 3;

static const struct opt server_opts[] = {
	{ "listen", 'l', OPT_STRING, &opt_listen, "ADDR:PORT",
	  "HTTP address for ingest, queries and /metrics (default "
	  "127.0.0.1:7070)" },
	{ "store", 's', OPT_STRING, &opt_store, "SPEC",
	  "sqlite:PATH or PATH (default sonde.db), or "
	  "clickhouse:http://HOST:PORT" },
	{ "token", 't', OPT_STRING, &opt_token, "TOKEN",
	  "agents and clients must send 'Authorization: Bearer TOKEN' "
	  "(default: $SONDE_TOKEN; none: no auth)" },
	{ "retention", 'r', OPT_DURATION, &opt_retention_ns, "DUR",
	  "delete records older than DUR (default 7d as 168h)" },
	{ "queue-mb", 0, OPT_INT, &opt_queue_mb, "MB",
	  "ingest queue bound; beyond it 503 + Retry-After (default 64)" },
	{ "max-uploads", 0, OPT_INT, &opt_uploads_max, "N",
	  "concurrent ingest uploads; beyond it 429 + Retry-After "
	  "(default 32)" },
	{ "export-es", 0, OPT_STRING, &opt_export_es, "URL",
	  "also send stored records to Elasticsearch/OpenSearch at URL "
	  "(_bulk, indices sonde-YYYY.MM.DD, seed 000 Fig. 12 fields)" },
	{ "kubeconfig", 'k', OPT_STRING, &opt_kubeconfig, "FILE",
	  "run the Kubernetes controller (informers on pods, services, "
	  "endpoints, nodes) with this kubeconfig; without it, in-cluster "
	  "config when the service account's token exists" },
	{ "policy", 0, OPT_STRING, &opt_policy, "FILE",
	  "monitoring policy for the sensor plan (docs/k8s.md; default: "
	  "every pod)" },
	{ "stale-after", 0, OPT_INT, &opt_stale_after, "N",
	  "an agent's discovery is stale after N missed heartbeats "
	  "(default 3)" },
	OPT_END,
};

static const struct cmd_spec server_spec = {
	.path = "sonde server",
	.synopsis = "[OPTIONS]",
	.summary = "Collect agents' records into a store and answer queries.",
	.opts = server_opts,
	.details =
		"HTTP API (see docs/store.md):\n"
		"  POST /v1/ingest     a batch of JSON lines (Content-Encoding: "
		"deflate),\n"
		"                      header X-Sonde-Batch: unique id\n"
		"  GET  /v1/records    ?kind=&service=&workload=&pod=&namespace="
		"&node=&since=&until=&limit=\n"
		"  GET  /v1/count      same filters\n"
		"  GET  /v1/aggregate  same filters and &interval=DUR\n"
		"  GET  /v1/topology   with the controller: the topology JSON of "
		"`sonde topology --json`\n"
		"  GET  /v1/plan       with the controller: the sensor plan per "
		"node, with generations\n"
		"  PUT  /v1/agents/NODE/discovery  an agent's node discovery "
		"(JSON); GET returns it\n"
		"  GET/PUT /v1/policy  with the controller: the monitoring policy "
		"(JSON as --policy)\n"
		"  GET  /v1/agents     agents' reported states, plan push status\n"
		"  PUT  /v1/agents/NODE/state  an agent's state report\n"
		"  GET  /metrics       Prometheus exposition\n",
};

int64_t server_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int server_parse_time(const char *text, int64_t now_ns, int64_t *out_ns)
{
	size_t len = strlen(text);
	uint64_t d;

	if (len && strspn(text, "0123456789") == len) {
		*out_ns = strtoll(text, NULL, 10);
		return 0;
	}
	if (parse_duration_ns(text, &d))
		return -EINVAL;
	*out_ns = now_ns - (int64_t)d;
	return 0;
}

int server_watch_fd(struct server *s, int fd,
		    void (*cb)(struct server *s, int fd, void *ctx), void *ctx)
{
	if (s->nwatches == MAX_WATCHES)
		return -ENOSPC;
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u32 = (uint32_t)s->nwatches };
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	s->watches[s->nwatches++] = (struct watch){ fd, cb, ctx };
	return 0;
}

/* ---- the store writer */

static void *writer_main(void *arg)
{
	struct server *s = arg;
	int64_t last_expire = 0;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->head && !s->stopping) {
			struct timespec dl;
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_sec += 1;
			pthread_cond_timedwait(&s->wake, &s->lock, &dl);
			if (!s->head)
				break;
		}
		struct ingest_job *jobs = s->head;
		s->head = NULL;
		s->tail = &s->head;
		bool stop = s->stopping && !jobs;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;

		for (struct ingest_job *j = jobs; j; j = j->next) {
			j->rc = s->ops->append(s->writer, j->batch_id, j->recs,
					       j->n, &j->dup);
			if (j->rc)
				s->store_errors++;
			else if (!j->dup) {
				series_add(s->series, j->recs, j->n);
				if (s->es)
					es_enqueue(s->es, j->batch_id, j->recs, j->n);
			}
		}
		int64_t now = server_now_ns();
		if (s->retention_ns && now - last_expire > 10000000000LL) {
			int64_t deleted = 0;
			if (!s->ops->expire(s->writer,
					    now - (int64_t)s->retention_ns,
					    &deleted))
				s->expired += (uint64_t)deleted;
			last_expire = now;
		}

		pthread_mutex_lock(&s->lock);
		for (struct ingest_job *j = jobs; j; j = j->next) {
			j->done = true;
			s->queued_bytes -= j->bytes;
		}
		pthread_cond_broadcast(&s->done);
	}
	return NULL;
}

/* ---- ingest */

struct upload {
	char *body;
	size_t len, cap;
	bool counted; /* holds one of uploads_max */
	int early;    /* an answer decided before the body was read */
	const char *early_msg;
	struct buf doc; /* PUT /v1/agents/NODE/discovery */
};

static int inflate_all(const char *in, size_t in_len, char **out,
		       size_t *out_len, size_t limit)
{
	z_stream z = { 0 };
	size_t cap = in_len * 4 + 4096, len = 0;
	char *buf = malloc(cap + 1);
	int zrc;

	if (!buf || inflateInit(&z) != Z_OK) {
		free(buf);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	do {
		if (len == cap) {
			if (cap >= limit) {
				zrc = Z_MEM_ERROR;
				break;
			}
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				zrc = Z_MEM_ERROR;
				break;
			}
			buf = nb;
		}
		z.next_out = (Bytef *)buf + len;
		z.avail_out = (uInt)(cap - len);
		zrc = inflate(&z, Z_NO_FLUSH);
		len = cap - z.avail_out;
	} while (zrc == Z_OK);
	inflateEnd(&z);
	if (zrc != Z_STREAM_END) {
		free(buf);
		return zrc == Z_MEM_ERROR ? -E2BIG : -EINVAL;
	}
	buf[len] = 0;
	*out = buf;
	*out_len = len;
	return 0;
}

/* Splits text into records. Invalid lines are counted and skipped: one bad
 * line must not make an agent retry a batch forever. */
static int parse_lines(struct server *s, char *text, size_t len,
		       struct store_record **out, size_t *n_out)
{
	size_t lines = 1, n = 0;

	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	struct store_record *recs = malloc(lines * sizeof(*recs));
	if (!recs)
		return -ENOMEM;
	for (char *p = text, *end = text + len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l && p[0] != '\n') {
			if (store_record_parse(p, l, &recs[n]) == 0)
				n++;
			else
				s->records_invalid++;
		}
		p += l + 1;
	}
	*out = recs;
	*n_out = n;
	return 0;
}

static enum MHD_Result ingest_finish(struct server *s,
				     struct MHD_Connection *c,
				     struct upload *u)
{
	const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     "X-Sonde-Batch");
	const char *enc = MHD_lookup_connection_value(
		c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!id || !id[0] || strlen(id) >= sizeof(((struct ingest_job *)0)->batch_id)) {
		s->batches_bad++;
		return http_error(c, MHD_HTTP_BAD_REQUEST,
				  "X-Sonde-Batch header (a unique batch id, "
				  "< 128 bytes) is required");
	}
	if (enc && !strcmp(enc, "deflate")) {
		rc = inflate_all(u->body, u->len, &text, &len,
				 s->queue_max > 0 ? s->queue_max : 1 << 28);
		if (rc) {
			s->batches_bad++;
			return http_error(c, rc == -E2BIG
						     ? MHD_HTTP_CONTENT_TOO_LARGE
						     : MHD_HTTP_BAD_REQUEST,
					  "cannot inflate the body (zlib)");
		}
	} else if (!enc || !strcmp(enc, "identity")) {
		text = u->body;
		len = u->len;
		u->body = NULL;
		if (!text)
			text = strdup("");
	} else {
		s->batches_bad++;
		return http_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
				  "Content-Encoding must be deflate or identity");
	}

	struct ingest_job *j = calloc(1, sizeof(*j));
	if (!j || parse_lines(s, text, len, &j->recs, &j->n)) {
		free(j);
		free(text);
		return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
				  "out of memory");
	}
	snprintf(j->batch_id, sizeof(j->batch_id), "%s", id);
	j->text = text;
	j->bytes = len + j->n * sizeof(*j->recs);

	pthread_mutex_lock(&s->lock);
	if (s->queued_bytes + j->bytes > s->queue_max && s->queued_bytes) {
		pthread_mutex_unlock(&s->lock);
		s->batches_overload++;
		free(j->recs);
		free(j->text);
		free(j);
		return http_retry(c, MHD_HTTP_SERVICE_UNAVAILABLE, 1,
				  "ingest queue full");
	}
	s->queued_bytes += j->bytes;
	*s->tail = j;
	s->tail = &j->next;
	pthread_cond_signal(&s->wake);
	while (!j->done)
		pthread_cond_wait(&s->done, &s->lock);
	pthread_mutex_unlock(&s->lock);

	enum MHD_Result ret;
	if (j->rc) {
		ret = http_retry(c, MHD_HTTP_SERVICE_UNAVAILABLE, 2,
				 "store write failed");
	} else {
		if (j->dup) {
			s->batches_dup++;
		} else {
			s->batches_stored++;
			s->records_stored += j->n;
		}
		/* The id is echoed through jansson: it is client text. */
		json_t *o = json_pack("{s:s,s:I,s:b}", "batch", j->batch_id,
				      "records", (json_int_t)j->n, "duplicate",
				      j->dup);
		ret = http_json(c, MHD_HTTP_OK, o);
	}
	free(j->recs);
	free(j->text);
	free(j);
	return ret;
}

/* ---- queries */

static int query_from_args(struct MHD_Connection *c, struct store_query *q,
			   const char **err)
{
	const struct {
		const char *arg;
		char *dst;
		size_t size;
	} strs[] = {
		{ "kind", q->kind, sizeof(q->kind) },
		{ "service", q->service, sizeof(q->service) },
		{ "workload", q->workload, sizeof(q->workload) },
		{ "pod", q->pod, sizeof(q->pod) },
		{ "namespace", q->ns, sizeof(q->ns) },
		{ "node", q->node, sizeof(q->node) },
		{ "event", q->event, sizeof(q->event) },
	};
	int64_t now = server_now_ns();
	const char *v;

	memset(q, 0, sizeof(*q));
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
						strs[i].arg);
		if (v && strlen(v) >= strs[i].size) {
			*err = "a filter value is too long";
			return -EINVAL;
		}
		snprintf(strs[i].dst, strs[i].size, "%s", v ? v : "");
	}
	v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
	if (v && server_parse_time(v, now, &q->since_ns)) {
		*err = "since: a duration (5m) or UTC ns";
		return -EINVAL;
	}
	v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "until");
	if (v && server_parse_time(v, now, &q->until_ns)) {
		*err = "until: a duration (5m) or UTC ns";
		return -EINVAL;
	}
	v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "interval");
	if (v) {
		uint64_t d;
		if (parse_duration_ns(v, &d)) {
			*err = "interval: a duration (10s, 1m)";
			return -EINVAL;
		}
		q->interval_ns = (int64_t)d;
	}
	v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	if (v)
		q->limit = strtoll(v, NULL, 10);
	return 0;
}

static int add_record_line(void *ctx, const char *json, size_t len)
{
	buf_add(ctx, json, len);
	buf_add(ctx, "\n", 1);
	return 0;
}

static int add_agg_row(void *ctx, const struct store_agg_row *r)
{
	json_t *rows = ctx;
	json_t *o = json_pack(
		"{s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
		"bucket_ns", (json_int_t)r->bucket_ns, "kind", r->kind,
		"src_service", r->src_service, "src_workload", r->src_workload,
		"dst_service", r->dst_service, "dst_workload", r->dst_workload,
		"records", (json_int_t)r->records, "count",
		(json_int_t)r->count, "errors", (json_int_t)r->errors, "p50_ns",
		(json_int_t)r->p50_ns, "p99_ns", (json_int_t)r->p99_ns,
		"max_ns", (json_int_t)r->max_ns, "bytes", (json_int_t)r->bytes);
	return o ? json_array_append_new(rows, o) : -ENOMEM;
}

static enum MHD_Result handle_query(struct server *s, struct MHD_Connection *c,
				    const char *url)
{
	struct store_query q;
	const char *err = NULL;
	int rc;

	s->queries++;
	if (query_from_args(c, &q, &err))
		return http_error(c, MHD_HTTP_BAD_REQUEST, err);
	if (!strcmp(url, "/v1/records")) {
		struct buf b = { 0 };
		rc = s->ops->records(s->reader, &q, add_record_line, &b);
		if (rc || b.oom) {
			free(b.p);
			return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
					  "store query failed");
		}
		return http_take(c, MHD_HTTP_OK, "application/x-ndjson", b.p,
				 b.len);
	}
	if (!strcmp(url, "/v1/count")) {
		int64_t n = 0;
		if (s->ops->count(s->reader, &q, &n))
			return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
					  "store query failed");
		return http_json(c, MHD_HTTP_OK,
				 json_pack("{s:I}", "records", (json_int_t)n));
	}
	if (!strcmp(url, "/v1/aggregate")) {
		json_t *rows = json_array();
		if (s->ops->aggregate(s->reader, &q, add_agg_row, rows)) {
			json_decref(rows);
			return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
					  "store query failed");
		}
		return http_json(c, MHD_HTTP_OK,
				 json_pack("{s:I,s:o}", "interval_ns",
					   (json_int_t)q.interval_ns, "rows",
					   rows));
	}
	return http_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
}

static enum MHD_Result handle_metrics(struct server *s,
				      struct MHD_Connection *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return http_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "oom");
	fprintf(f,
		"# HELP sonde_server_ingest_batches_total Ingest requests by "
		"outcome.\n"
		"# TYPE sonde_server_ingest_batches_total counter\n");
	const struct {
		const char *result;
		uint64_t v;
	} outcomes[] = {
		{ "stored", s->batches_stored },
		{ "duplicate", s->batches_dup },
		{ "invalid", s->batches_bad },
		{ "overloaded", s->batches_overload },
		{ "unauthorized", s->batches_unauth },
	};
	for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
		fprintf(f,
			"sonde_server_ingest_batches_total{result=\"%s\"} "
			"%llu\n",
			outcomes[i].result, (unsigned long long)outcomes[i].v);
	pthread_mutex_lock(&s->lock);
	size_t queued = s->queued_bytes;
	pthread_mutex_unlock(&s->lock);
	fprintf(f,
		"# HELP sonde_server_ingest_records_total Records stored.\n"
		"# TYPE sonde_server_ingest_records_total counter\n"
		"sonde_server_ingest_records_total %llu\n"
		"# HELP sonde_server_ingest_invalid_records_total Lines that "
		"were not records (skipped).\n"
		"# TYPE sonde_server_ingest_invalid_records_total counter\n"
		"sonde_server_ingest_invalid_records_total %llu\n"
		"# HELP sonde_server_ingest_received_bytes_total Request body "
		"bytes as sent (compressed).\n"
		"# TYPE sonde_server_ingest_received_bytes_total counter\n"
		"sonde_server_ingest_received_bytes_total %llu\n"
		"# HELP sonde_server_ingest_queue_bytes Batches waiting for the "
		"store writer.\n"
		"# TYPE sonde_server_ingest_queue_bytes gauge\n"
		"sonde_server_ingest_queue_bytes %zu\n"
		"# HELP sonde_server_store_expired_records_total Records "
		"deleted by retention.\n"
		"# TYPE sonde_server_store_expired_records_total counter\n"
		"sonde_server_store_expired_records_total %llu\n"
		"# HELP sonde_server_store_errors_total Failed store writes.\n"
		"# TYPE sonde_server_store_errors_total counter\n"
		"sonde_server_store_errors_total %llu\n"
		"# HELP sonde_server_queries_total Query API requests.\n"
		"# TYPE sonde_server_queries_total counter\n"
		"sonde_server_queries_total %llu\n",
		(unsigned long long)s->records_stored,
		(unsigned long long)s->records_invalid,
		(unsigned long long)s->bytes_received, queued,
		(unsigned long long)s->expired,
		(unsigned long long)s->store_errors,
		(unsigned long long)s->queries);
	procstat_write(f);
	series_write(s->series, f);
	es_metrics(s->es, f);
	if (s->ctl)
		controller_metrics(s->ctl, f);
	agents_disc_metrics(s->disc, f);
	agents_metrics(s->agents, f);
	fclose(f);
	return http_take(c, MHD_HTTP_OK, "text/plain; version=0.0.4", text,
			 len);
}

static bool authorized(struct server *s, struct MHD_Connection *c)
{
	if (!s->token || !s->token[0])
		return true;
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, s->token);
}

/* PUT /v1/policy, PUT /v1/agents/NODE/state: small JSON bodies. */
static enum MHD_Result handle_put(struct server *s, struct MHD_Connection *c,
				  const char *url, const char *body, size_t len)
{
	char err[300], node[256];
	json_error_t jerr;
	json_t *doc = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
	int rc;

	if (!doc) {
		snprintf(err, sizeof(err), "the body is not JSON: %s (line %d)",
			 jerr.text, jerr.line);
		return http_error(c, MHD_HTTP_BAD_REQUEST, err);
	}
	if (!strcmp(url, "/v1/policy")) {
		if (!s->ctl) {
			json_decref(doc);
			return http_error(c, MHD_HTTP_NOT_FOUND,
					  "no Kubernetes controller (start "
					  "with --kubeconfig)");
		}
		rc = controller_set_policy(s->ctl, doc, err, sizeof(err));
		json_decref(doc);
		if (rc)
			return http_error(c, rc == -EINVAL ? MHD_HTTP_BAD_REQUEST
							   : MHD_HTTP_INTERNAL_SERVER_ERROR,
					  err);
		agents_kick(s->agents);
		return http_json(c, MHD_HTTP_OK, controller_policy(s->ctl));
	}
	size_t pre = strlen("/v1/agents/");
	const char *name = !strncmp(url, "/v1/agents/", pre) ? url + pre : "";
	const char *slash = strchr(name, '/');
	if (slash && slash > name && (size_t)(slash - name) < sizeof(node) &&
	    !strcmp(slash, "/state")) {
		snprintf(node, sizeof(node), "%.*s", (int)(slash - name), name);
		rc = agents_report(s->agents, node, doc, err, sizeof(err));
		json_decref(doc);
		if (rc)
			return http_error(c, MHD_HTTP_BAD_REQUEST, err);
		return http_json(c, MHD_HTTP_OK, json_pack("{s:b}", "ok", 1));
	}
	json_decref(doc);
	return http_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
			       const char *url, const char *method,
			       const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	char node[256];
	(void)version;

	if (!strcmp(method, "PUT") && agents_disc_path(url, node, sizeof(node))) {
		/* An agent's discovery: the body is read whole (bounded),
		 * then checked and stored (agents_disc.c). */
		struct upload *u = *con_cls;
		if (!u) {
			if (!(u = calloc(1, sizeof(*u))))
				return MHD_NO;
			*con_cls = u;
			if (!authorized(s, c)) {
				agents_disc_unauthorized(s->disc);
				u->early = MHD_HTTP_UNAUTHORIZED;
			}
			return MHD_YES;
		}
		if (*upload_size) {
			if (!u->early && u->len + *upload_size > AGENTS_DISC_BODY_MAX)
				u->early = MHD_HTTP_CONTENT_TOO_LARGE;
			if (!u->early) {
				buf_add(&u->doc, upload, *upload_size);
				u->len = u->doc.len;
			}
			*upload_size = 0;
			return MHD_YES;
		}
		if (u->early == MHD_HTTP_UNAUTHORIZED)
			return http_error(c, MHD_HTTP_UNAUTHORIZED,
					  "missing or wrong bearer token");
		return agents_disc_put(s->disc, c, node, u->doc.p, u->doc.len,
				       u->early == MHD_HTTP_CONTENT_TOO_LARGE ||
					       u->doc.oom);
	}
	if (!strcmp(method, "POST") && !strcmp(url, "/v1/ingest")) {
		struct upload *u = *con_cls;
		if (!u) {
			u = calloc(1, sizeof(*u));
			if (!u)
				return MHD_NO;
			*con_cls = u;
			/* Decide what we can before reading the body. */
			if (!authorized(s, c)) {
				s->batches_unauth++;
				u->early = MHD_HTTP_UNAUTHORIZED;
				u->early_msg = "missing or wrong bearer token";
			} else {
				pthread_mutex_lock(&s->lock);
				if (s->uploads >= s->uploads_max) {
					u->early = MHD_HTTP_TOO_MANY_REQUESTS;
					u->early_msg = "too many concurrent "
						       "uploads";
				} else if (s->queued_bytes >= s->queue_max) {
					u->early = MHD_HTTP_SERVICE_UNAVAILABLE;
					u->early_msg = "ingest queue full";
				} else {
					s->uploads++;
					u->counted = true;
				}
				pthread_mutex_unlock(&s->lock);
				if (u->early)
					s->batches_overload++;
			}
			return MHD_YES;
		}
		if (*upload_size) {
			if (!u->early) {
				if (u->len + *upload_size > s->body_max) {
					u->early = MHD_HTTP_CONTENT_TOO_LARGE;
					u->early_msg = "batch too large";
					s->batches_bad++;
				} else {
					if (u->len + *upload_size > u->cap) {
						size_t cap = u->cap ? u->cap : 65536;
						while (cap < u->len + *upload_size)
							cap *= 2;
						char *b = realloc(u->body, cap);
						if (!b)
							return MHD_NO;
						u->body = b;
						u->cap = cap;
					}
					memcpy(u->body + u->len, upload,
					       *upload_size);
					u->len += *upload_size;
				}
			}
			s->bytes_received += *upload_size;
			*upload_size = 0;
			return MHD_YES;
		}
		if (u->early == MHD_HTTP_TOO_MANY_REQUESTS ||
		    u->early == MHD_HTTP_SERVICE_UNAVAILABLE)
			return http_retry(c, (unsigned)u->early, 1, u->early_msg);
		if (u->early)
			return http_error(c, (unsigned)u->early, u->early_msg);
		return ingest_finish(s, c, u);
	}
	if (!strcmp(method, "PUT") && !strncmp(url, "/v1/", 4)) {
		struct upload *u = *con_cls;
		if (!u) {
			if (!(u = calloc(1, sizeof(*u))))
				return MHD_NO;
			*con_cls = u;
			return MHD_YES;
		}
		if (*upload_size) {
			if (u->len + *upload_size + 1 > (1u << 20)) {
				u->early = MHD_HTTP_CONTENT_TOO_LARGE;
			} else {
				if (u->len + *upload_size + 1 > u->cap) {
					size_t cap = (u->len + *upload_size + 1) * 2;
					char *b = realloc(u->body, cap);
					if (!b)
						return MHD_NO;
					u->body = b;
					u->cap = cap;
				}
				memcpy(u->body + u->len, upload, *upload_size);
				u->len += *upload_size;
			}
			*upload_size = 0;
			return MHD_YES;
		}
		if (!authorized(s, c))
			return http_error(c, MHD_HTTP_UNAUTHORIZED,
					  "missing or wrong bearer token");
		if (u->early)
			return http_error(c, (unsigned)u->early, "body too large");
		return handle_put(s, c, url, u->body ? u->body : "", u->len);
	}
	/* Other requests have no body: answer on the first call. */
	if (!strcmp(url, "/metrics") && !strcmp(method, "GET"))
		return handle_metrics(s, c);
	if (!strcmp(url, "/healthz"))
		return http_take(c, MHD_HTTP_OK, "text/plain", strdup("ok\n"), 3);
	if (!strncmp(url, "/v1/", 4) && !strcmp(method, "GET")) {
		if (!authorized(s, c))
			return http_error(c, MHD_HTTP_UNAUTHORIZED,
					  "missing or wrong bearer token");
		if (!strcmp(url, "/v1/agents"))
			return http_json(c, MHD_HTTP_OK, agents_list(s->agents));
		if (!strcmp(url, "/v1/policy")) {
			if (!s->ctl)
				return http_error(c, MHD_HTTP_NOT_FOUND,
						  "no Kubernetes controller "
						  "(start with --kubeconfig)");
			return http_json(c, MHD_HTTP_OK, controller_policy(s->ctl));
		}
		if (!strcmp(url, "/v1/topology") || !strcmp(url, "/v1/plan")) {
			if (!s->ctl)
				return http_error(c, MHD_HTTP_NOT_FOUND,
						  "no Kubernetes controller "
						  "(start with --kubeconfig)");
			json_t *doc;
			if (url[4] == 't') {
				json_t *reports = agents_disc_reports(s->disc);
				doc = controller_topology(s->ctl, reports);
				json_decref(reports);
			} else {
				doc = controller_plan(s->ctl);
			}
			if (!doc)
				return http_retry(c, MHD_HTTP_SERVICE_UNAVAILABLE,
						  1, "the controller's first "
						     "lists are not in yet");
			return http_json(c, MHD_HTTP_OK, doc);
		}
		if (agents_disc_path(url, node, sizeof(node)))
			return agents_disc_get(s->disc, c, node);
		return handle_query(s, c, url);
	}
	return http_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct server *s = cls;
	struct upload *u = *con_cls;
	(void)c;
	(void)toe;

	if (!u)
		return;
	if (u->counted) {
		pthread_mutex_lock(&s->lock);
		s->uploads--;
		pthread_mutex_unlock(&s->lock);
	}
	free(u->body);
	buf_free(&u->doc);
	free(u);
	*con_cls = NULL;
}

int cmd_server(int argc, char **argv)
{
	struct server s = { 0 };
	struct sockaddr_in sin;
	sigset_t mask;
	struct MHD_Daemon *d = NULL;
	pthread_t writer;
	bool writer_started = false;
	int npos = 0, rc = 1, sfd = -1;
	char why[256] = "";
	const char *target;

	int prc = opts_parse(&server_spec, argc, argv, &npos);
	if (prc)
		return prc > 0 ? 0 : 2;
	if (npos) {
		fprintf(stderr, "sonde server: unexpected argument '%s'\n",
			argv[0]);
		return 2;
	}
	if (!opt_listen)
		opt_listen = "127.0.0.1:7070";
	if (http_parse_listen(opt_listen, &sin)) {
		fprintf(stderr, "sonde server: --listen wants ADDR:PORT (IPv4), "
				"got '%s'\n", opt_listen);
		return 2;
	}
	s.token = opt_token ? opt_token : getenv("SONDE_TOKEN");
	s.retention_ns = opt_retention_ns ? opt_retention_ns
					  : 168ULL * 3600 * 1000000000ULL;
	s.queue_max = (size_t)(opt_queue_mb > 0 ? opt_queue_mb : 64) << 20;
	s.body_max = 32u << 20;
	s.uploads_max = opt_uploads_max > 0 ? (int)opt_uploads_max : 32;
	s.ops = store_backend(opt_store ? opt_store : "sonde.db", &target);
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.wake, NULL);
	pthread_cond_init(&s.done, NULL);
	s.tail = &s.head;
	s.epfd = -1;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	/* Blocked before any thread starts: they inherit the mask, so
	 * the signals reach the signalfd only. */
	signal(SIGPIPE, SIG_IGN);
	/* Batches allocate and free megabytes each; keep that memory in the
	 * heap instead of mmap/munmap per batch (page faults were a third of
	 * the ingest CPU). */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	s.series = series_new(20000);
	s.disc = agents_disc_new(opt_stale_after > 0 ? (unsigned)opt_stale_after : 3);
	if (!s.series || !s.disc)
		goto out;
	if (opt_export_es && !(s.es = es_start(opt_export_es, 200000))) {
		log_err("cannot start the Elasticsearch exporter");
		goto out;
	}
	if (s.ops->open(target, &s.writer, why, sizeof(why)) ||
	    s.ops->open(target, &s.reader, why, sizeof(why))) {
		log_err("cannot open the %s store %s: %s", s.ops->name, target,
			why);
		goto out;
	}
	if (pthread_create(&writer, NULL, writer_main, &s)) {
		log_err("cannot start the store writer");
		goto out;
	}
	writer_started = true;

	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || s.epfd < 0) {
		log_err("signalfd/epoll: %s", strerror(errno));
		goto out;
	}

	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
				     MHD_USE_INTERNAL_POLLING_THREAD |
				     MHD_USE_ITC |
				     MHD_USE_ERROR_LOG,
			     0, NULL, NULL, handler, &s, MHD_OPTION_SOCK_ADDR,
			     (struct sockaddr *)&sin, MHD_OPTION_NOTIFY_COMPLETED,
			     completed, &s, MHD_OPTION_CONNECTION_TIMEOUT,
			     (unsigned int)60, MHD_OPTION_LISTENING_ADDRESS_REUSE,
			     (unsigned int)1, MHD_OPTION_END);
	if (!d) {
		log_err("cannot listen on %s (in use? try --listen)", opt_listen);
		goto out;
	}
	/* In-cluster when no kubeconfig is given and the pod has a service
	 * account: the server's usual deployment. */
	const char *sa_dir = getenv("SONDE_K8S_SA_DIR");
	char sa_token[512];
	snprintf(sa_token, sizeof(sa_token), "%s/token",
		 sa_dir && *sa_dir ? sa_dir
				   : "/var/run/secrets/kubernetes.io/serviceaccount");
	if (opt_kubeconfig ||
	    (getenv("KUBERNETES_SERVICE_HOST") && !access(sa_token, R_OK))) {
		s.ctl = controller_start(&s, opt_kubeconfig, opt_policy);
		if (!s.ctl) {
			log_err("cannot start the Kubernetes controller");
			goto out;
		}
	} else if (opt_policy) {
		log_err("--policy needs the controller (--kubeconfig or in-cluster)");
		goto out;
	}
	s.agents = agents_start(s.ctl, s.token);
	if (!s.agents)
		goto out;
	log_info("sonde server listening on http://%s, store %s:%s",
		 opt_listen, s.ops->name, target);

	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = UINT32_MAX };
	epoll_ctl(s.epfd, EPOLL_CTL_ADD, sfd, &ev);
	for (bool stop = false; !stop;) {
		struct epoll_event evs[8];
		int n = epoll_wait(s.epfd, evs, 8, 1000);
		if (n < 0 && errno != EINTR) {
			log_err("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			uint32_t tag = evs[i].data.u32;
			if (tag == UINT32_MAX) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) > 0)
					log_info("signal %u: stopping",
						 si.ssi_signo);
				stop = true;
			} else if (tag < (uint32_t)s.nwatches) {
				struct watch *w = &s.watches[tag];
				w->cb(&s, w->fd, w->ctx);
			}
		}
	}
	rc = 0;
out:
	/* Stop taking requests first; the writer then finishes what was
	 * queued, so every batch answered 200 is in the store. */
	if (d) {
		/* Stop accepting, then let uploads in progress get their
		 * answer (up to 5 s): a batch committed but never answered
		 * would be sent again (a duplicate, harmless) or, from an agent
		 * whose spool overflows meanwhile, counted as dropped. */
		MHD_socket lfd = MHD_quiesce_daemon(d);
		for (int i = 0; i < 100; i++) {
			pthread_mutex_lock(&s.lock);
			int busy = s.uploads;
			pthread_mutex_unlock(&s.lock);
			if (!busy)
				break;
			usleep(50000);
		}
		MHD_stop_daemon(d);
		/* Quiesced: the listening socket is ours to close. */
		if (lfd != MHD_INVALID_SOCKET)
			close(lfd);
	}
	if (writer_started) {
		pthread_mutex_lock(&s.lock);
		s.stopping = true;
		pthread_cond_signal(&s.wake);
		pthread_mutex_unlock(&s.lock);
		pthread_join(writer, NULL);
	}
	/* After the HTTP daemon: no request reads the controller any more;
	 * the pusher reads it until it stops. */
	agents_stop(s.agents);
	controller_stop(s.ctl);
	es_stop(s.es, 5);
	if (s.writer)
		s.ops->close(s.writer);
	if (s.reader)
		s.ops->close(s.reader);
	series_free(s.series);
	agents_disc_free(s.disc);
	if (sfd >= 0)
		close(sfd);
	if (s.epfd >= 0)
		close(s.epfd);
	log_info("stored %llu records in %llu batches (%llu duplicates)",
		 (unsigned long long)s.records_stored,
		 (unsigned long long)s.batches_stored,
		 (unsigned long long)s.batches_dup);
	return rc;
}
