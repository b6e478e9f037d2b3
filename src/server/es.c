#include "server/es.h"
#include "lib/clock.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct es_doc {
	char *action; /* {"index":{...}} line */
	char *source; /* the document line */
	int attempts;
};

struct es_exporter {
	char url[1024];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct es_doc *q; /* ring */
	size_t head, n, cap;
	bool stopping;
	int64_t drain_until;
	uint64_t indexed, rejected, dropped, retried_items, failed_requests;
};

static void doc_free(struct es_doc *d)
{
	free(d->action);
	free(d->source);
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v && v[0])
		json_object_set_new(o, k, json_string(v));
}

/* Fig. 12 of seed 000: SRCNode/DSTNode are the pods' IPs, SRCworkload /
 * DSTworkload the workloads, duration in ns, sensorType the record kind,
 * serviceName the namespace, startTimeMillis the time. The other fields
 * are sonde's additions. */
static int render(const struct store_record *r, const char *id,
		  struct es_doc *d)
{
	time_t sec = (time_t)(r->time_ns / 1000000000LL);
	struct tm tm;
	char index[32], ts[40];
	json_t *src = json_object();

	gmtime_r(&sec, &tm);
	strftime(index, sizeof(index), "sonde-%Y.%m.%d", &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03lldZ",
		 (long long)(r->time_ns / 1000000 % 1000));
	set_str(src, "SRCNode", r->src.ip);
	set_str(src, "DSTNode", r->dst.ip);
	set_str(src, "SRCworkload", r->src.workload[0] ? r->src.workload : r->src.service);
	set_str(src, "DSTworkload", r->dst.workload[0] ? r->dst.workload : r->dst.service);
	if (r->duration_ns >= 0)
		json_object_set_new(src, "duration", json_integer(r->duration_ns));
	set_str(src, "sensorType", r->kind);
	set_str(src, "serviceName", r->dst.ns[0] ? r->dst.ns : r->src.ns);
	json_object_set_new(src, "startTimeMillis",
			    json_integer(r->time_ns / 1000000));
	json_object_set_new(src, "@timestamp", json_string(ts));
	set_str(src, "node", r->node);
	set_str(src, "SRCpod", r->src.pod);
	set_str(src, "DSTpod", r->dst.pod);
	set_str(src, "SRCservice", r->src.service);
	set_str(src, "DSTservice", r->dst.service);
	if (r->src.port >= 0)
		json_object_set_new(src, "SRCport", json_integer(r->src.port));
	if (r->dst.port >= 0)
		json_object_set_new(src, "DSTport", json_integer(r->dst.port));
	set_str(src, "event", r->event);
	set_str(src, "name", r->name);
	if (r->status >= 0)
		json_object_set_new(src, "status", json_integer(r->status));
	json_object_set_new(src, "timeNs", json_integer(r->time_ns));
	json_t *act = json_pack("{s:{s:s,s:s}}", "index", "_index", index,
				"_id", id);
	d->source = json_dumps(src, JSON_COMPACT);
	d->action = act ? json_dumps(act, JSON_COMPACT) : NULL;
	d->attempts = 0;
	json_decref(src);
	json_decref(act);
	if (!d->source || !d->action) {
		doc_free(d);
		return -ENOMEM;
	}
	return 0;
}

void es_enqueue(struct es_exporter *e, const char *batch_id,
		const struct store_record *recs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct es_doc d;
		char id[160];
		snprintf(id, sizeof(id), "%s-%zu", batch_id, i);
		if (render(&recs[i], id, &d))
			continue;
		pthread_mutex_lock(&e->lock);
		if (e->n == e->cap) {
			/* Full: the oldest document goes, counted. */
			doc_free(&e->q[e->head]);
			e->head = (e->head + 1) % e->cap;
			e->n--;
			e->dropped++;
		}
		e->q[(e->head + e->n) % e->cap] = d;
		e->n++;
		pthread_cond_signal(&e->cv);
		pthread_mutex_unlock(&e->lock);
	}
}

static void wait_ms(struct es_exporter *e, int64_t ms)
{
	int64_t until = real_ns() + ms * 1000000LL;
	while (real_ns() < until) {
		int64_t d = until;
		if (e->stopping && e->drain_until < d)
			d = e->drain_until;
		if (real_ns() >= d)
			break;
		struct timespec ts = { d / 1000000000LL, d % 1000000000LL };
		pthread_cond_timedwait(&e->cv, &e->lock, &ts);
	}
}

#define BULK_MAX 500

static void *es_main(void *arg)
{
	struct es_exporter *e = arg;
	CURL *curl = curl_easy_init();
	struct es_doc batch[BULK_MAX];
	char url[1100];
	int64_t backoff = 0;

	snprintf(url, sizeof(url), "%s/_bulk", e->url);
	pthread_mutex_lock(&e->lock);
	while (curl) {
		while (!e->n && !e->stopping)
			pthread_cond_wait(&e->cv, &e->lock);
		if (!e->n || (e->stopping && real_ns() > e->drain_until))
			break;
		size_t k = 0;
		while (k < BULK_MAX && e->n) {
			batch[k++] = e->q[e->head];
			e->head = (e->head + 1) % e->cap;
			e->n--;
		}
		pthread_mutex_unlock(&e->lock);

		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		for (size_t i = 0; f && i < k; i++)
			fprintf(f, "%s\n%s\n", batch[i].action, batch[i].source);
		if (f)
			fclose(f);
		struct buf resp = { 0 };
		struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
		h = curl_slist_append(h, "Expect:");
		curl_easy_setopt(curl, CURLOPT_URL, url);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buf_curl_write);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		long status = 0;
		if (curl_easy_perform(curl) == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		curl_slist_free_all(h);
		free(text);

		/* Per document: done (indexed or rejected for good) or retry. */
		bool retry[BULK_MAX];
		size_t nretry = 0;
		json_t *doc = status == 200 ? json_loadb(resp.p, resp.len, 0, NULL) : NULL;
		json_t *items = json_object_get(doc, "items");
		pthread_mutex_lock(&e->lock);
		if (!json_is_array(items) || json_array_size(items) != k) {
			/* Whole request failed (down, 429, 5xx, junk). */
			e->failed_requests++;
			for (size_t i = 0; i < k; i++)
				retry[i] = true;
			nretry = k;
		} else {
			for (size_t i = 0; i < k; i++) {
				json_t *it = json_array_get(items, i);
				json_t *op = json_object_get(it, "index");
				if (!op)
					op = json_object_get(it, "create");
				long st = (long)json_integer_value(json_object_get(op, "status"));
				retry[i] = st == 429 || st >= 500 || st == 0;
				if (retry[i]) {
					nretry++;
					e->retried_items++;
				} else if (st >= 200 && st < 300) {
					e->indexed++;
				} else {
					e->rejected++;
					const char *why = json_string_value(json_object_get(
						json_object_get(op, "error"), "type"));
					log_debug("elasticsearch rejected a document "
						  "(%ld %s)", st, why ? why : "");
				}
			}
		}
		json_decref(doc);
		free(resp.p);
		/* Retries go back to the front, in order, unless the queue
		 * filled meanwhile (then they count as dropped). */
		for (size_t i = k; i-- > 0;) {
			if (!retry[i]) {
				doc_free(&batch[i]);
				continue;
			}
			if (e->n == e->cap) {
				doc_free(&batch[i]);
				e->dropped++;
				continue;
			}
			e->head = (e->head + e->cap - 1) % e->cap;
			e->q[e->head] = batch[i];
			e->n++;
		}
		if (nretry) {
			backoff = backoff ? backoff * 2 : 100;
			if (backoff > 5000)
				backoff = 5000;
			wait_ms(e, backoff);
		} else {
			backoff = 0;
		}
	}
	pthread_mutex_unlock(&e->lock);
	curl_easy_cleanup(curl);
	return NULL;
}

struct es_exporter *es_start(const char *url, size_t max_docs)
{
	struct es_exporter *e = calloc(1, sizeof(*e));
	sigset_t all, old;

	if (!e)
		return NULL;
	snprintf(e->url, sizeof(e->url), "%s", url);
	size_t l = strlen(e->url);
	if (l && e->url[l - 1] == '/')
		e->url[l - 1] = 0;
	e->cap = max_docs ? max_docs : 100000;
	e->q = calloc(e->cap, sizeof(*e->q));
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cv, NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = e->q ? pthread_create(&e->thread, NULL, es_main, e) : ENOMEM;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		free(e->q);
		free(e);
		return NULL;
	}
	return e;
}

void es_stop(struct es_exporter *e, int drain_s)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	e->drain_until = real_ns() + (int64_t)drain_s * 1000000000LL;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->thread, NULL);
	while (e->n) {
		doc_free(&e->q[e->head]);
		e->head = (e->head + 1) % e->cap;
		e->n--;
		e->dropped++;
	}
	log_info("elasticsearch export: %llu indexed, %llu rejected, %llu dropped",
		 (unsigned long long)e->indexed, (unsigned long long)e->rejected,
		 (unsigned long long)e->dropped);
	free(e->q);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cv);
	free(e);
}

void es_metrics(struct es_exporter *e, FILE *f)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	fprintf(f,
		"# HELP sonde_server_export_documents_total Documents by outcome "
		"at the Elasticsearch exporter.\n"
		"# TYPE sonde_server_export_documents_total counter\n"
		"sonde_server_export_documents_total{result=\"indexed\"} %llu\n"
		"sonde_server_export_documents_total{result=\"rejected\"} %llu\n"
		"sonde_server_export_documents_total{result=\"dropped\"} %llu\n"
		"# HELP sonde_server_export_retried_documents_total Documents "
		"sent again after a per-item 429/5xx.\n"
		"# TYPE sonde_server_export_retried_documents_total counter\n"
		"sonde_server_export_retried_documents_total %llu\n"
		"# HELP sonde_server_export_failed_requests_total Whole _bulk "
		"requests that failed (retried).\n"
		"# TYPE sonde_server_export_failed_requests_total counter\n"
		"sonde_server_export_failed_requests_total %llu\n"
		"# HELP sonde_server_export_queue_documents Documents waiting.\n"
		"# TYPE sonde_server_export_queue_documents gauge\n"
		"sonde_server_export_queue_documents %zu\n",
		(unsigned long long)e->indexed, (unsigned long long)e->rejected,
		(unsigned long long)e->dropped,
		(unsigned long long)e->retried_items,
		(unsigned long long)e->failed_requests, e->n);
	pthread_mutex_unlock(&e->lock);
}
