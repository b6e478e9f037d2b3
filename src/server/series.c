#include "server/series.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in seconds: 50 us .. 5 s, covering pod-to-pod one-way
 * latency (tens of us) up to slow HTTP requests. */
static const double bounds_s[] = { 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
				   0.0025, 0.005, 0.01, 0.025, 0.05,
				   0.1, 0.25, 0.5, 1, 2.5, 5 };
#define NB (sizeof(bounds_s) / sizeof(bounds_s[0]))

struct series {
	struct series *next;
	uint64_t hash;
	char kind[16], src_service[64], src_workload[128], dst_service[64],
		dst_workload[128];
	uint64_t records, errors, samples;
	uint64_t buckets[NB + 1]; /* non-cumulative; last: +Inf */
	double sum_s;
};

struct series_set {
	pthread_mutex_t lock;
	struct series **table;
	size_t nbuckets, n, max;
	uint64_t overflow;
};

struct series_set *series_new(size_t max_series)
{
	struct series_set *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->nbuckets = 4096;
	s->table = calloc(s->nbuckets, sizeof(*s->table));
	if (!s->table) {
		free(s);
		return NULL;
	}
	s->max = max_series;
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void series_free(struct series_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nbuckets; i++)
		for (struct series *e = s->table[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	free(s->table);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static uint64_t fnv(uint64_t h, const char *str)
{
	for (; *str; str++)
		h = (h ^ (unsigned char)*str) * 1099511628211ULL;
	return (h ^ 0xff) * 1099511628211ULL; /* field separator */
}

static bool is_error(const struct store_record *r)
{
	if (!strcmp(r->kind, "http"))
		return r->status >= 500;
	if (!strcmp(r->kind, "dns"))
		return r->status > 0;
	if (!strcmp(r->kind, "flow"))
		return r->status == 1;
	return false;
}

static struct series *lookup(struct series_set *s, const struct store_record *r)
{
	uint64_t h = 14695981039346656037ULL;
	h = fnv(h, r->kind);
	h = fnv(h, r->src.service);
	h = fnv(h, r->src.workload);
	h = fnv(h, r->dst.service);
	h = fnv(h, r->dst.workload);
	struct series **slot = &s->table[h % s->nbuckets];
	for (struct series *e = *slot; e; e = e->next)
		if (e->hash == h && !strcmp(e->kind, r->kind) &&
		    !strcmp(e->src_service, r->src.service) &&
		    !strcmp(e->src_workload, r->src.workload) &&
		    !strcmp(e->dst_service, r->dst.service) &&
		    !strcmp(e->dst_workload, r->dst.workload))
			return e;
	if (s->n >= s->max)
		return NULL;
	struct series *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->hash = h;
	memcpy(e->kind, r->kind, sizeof(e->kind));
	memcpy(e->src_service, r->src.service, sizeof(e->src_service));
	memcpy(e->src_workload, r->src.workload, sizeof(e->src_workload));
	memcpy(e->dst_service, r->dst.service, sizeof(e->dst_service));
	memcpy(e->dst_workload, r->dst.workload, sizeof(e->dst_workload));
	e->next = *slot;
	*slot = e;
	s->n++;
	return e;
}

void series_add(struct series_set *s, const struct store_record *recs, size_t n)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		const struct store_record *r = &recs[i];
		struct series *e = lookup(s, r);
		if (!e) {
			s->overflow++;
			continue;
		}
		e->records++;
		e->errors += is_error(r);
		if (r->duration_ns >= 0) {
			double v = (double)r->duration_ns / 1e9;
			size_t b = 0;
			while (b < NB && v > bounds_s[b])
				b++;
			e->buckets[b]++;
			e->samples++;
			e->sum_s += v;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

/* Label values: escape backslash, quote and newline as the text format
 * asks. */
static void label(FILE *f, const char *name, const char *v, bool comma)
{
	fprintf(f, "%s=\"", name);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fprintf(f, "\"%s", comma ? "," : "");
}

static void labels(FILE *f, const struct series *e)
{
	label(f, "kind", e->kind, true);
	label(f, "src_service", e->src_service, true);
	label(f, "src_workload", e->src_workload, true);
	label(f, "dst_service", e->dst_service, true);
	label(f, "dst_workload", e->dst_workload, false);
}

void series_write(struct series_set *s, FILE *f)
{
	pthread_mutex_lock(&s->lock);
	fprintf(f, "# HELP sonde_records_total Records stored, per kind and "
		   "workload pair.\n# TYPE sonde_records_total counter\n");
	for (size_t i = 0; i < s->nbuckets; i++)
		for (struct series *e = s->table[i]; e; e = e->next) {
			fputs("sonde_records_total{", f);
			labels(f, e);
			fprintf(f, "} %llu\n", (unsigned long long)e->records);
		}
	fprintf(f, "# HELP sonde_errors_total Failed exchanges: HTTP 5xx, DNS "
		   "rcode != 0, TCP handshakes that never completed.\n"
		   "# TYPE sonde_errors_total counter\n");
	for (size_t i = 0; i < s->nbuckets; i++)
		for (struct series *e = s->table[i]; e; e = e->next) {
			fputs("sonde_errors_total{", f);
			labels(f, e);
			fprintf(f, "} %llu\n", (unsigned long long)e->errors);
		}
	fprintf(f, "# HELP sonde_duration_seconds Duration of HTTP requests, "
		   "DNS transactions and TCP connections; one-way latency "
		   "(per-interval p50) for kind latency.\n"
		   "# TYPE sonde_duration_seconds histogram\n");
	for (size_t i = 0; i < s->nbuckets; i++)
		for (struct series *e = s->table[i]; e; e = e->next) {
			if (!e->samples)
				continue;
			uint64_t cum = 0;
			for (size_t b = 0; b <= NB; b++) {
				cum += e->buckets[b];
				fputs("sonde_duration_seconds_bucket{", f);
				labels(f, e);
				if (b < NB)
					fprintf(f, ",le=\"%g\"} %llu\n",
						bounds_s[b],
						(unsigned long long)cum);
				else
					fprintf(f, ",le=\"+Inf\"} %llu\n",
						(unsigned long long)cum);
			}
			fputs("sonde_duration_seconds_sum{", f);
			labels(f, e);
			fprintf(f, "} %.9f\n", e->sum_s);
			fputs("sonde_duration_seconds_count{", f);
			labels(f, e);
			fprintf(f, "} %llu\n", (unsigned long long)e->samples);
		}
	fprintf(f, "# HELP sonde_series_overflow_records_total Records not in "
		   "any series (series limit reached).\n"
		   "# TYPE sonde_series_overflow_records_total counter\n"
		   "sonde_series_overflow_records_total %llu\n",
		(unsigned long long)s->overflow);
	pthread_mutex_unlock(&s->lock);
}
