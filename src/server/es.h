/* Elasticsearch/OpenSearch exporter: stored records go out as _bulk NDJSON
 * with seed 000's Fig. 12 field names into daily indices sonde-YYYY.MM.DD.
 * Documents have ids (batch id + position), so a retried request never
 * indexes twice. Retries with backoff on whole-request and per-item 429 /
 * 5xx; per-item 4xx are dropped and counted. Bounded queue: drop oldest. */
#ifndef SONDE_ES_H
#define SONDE_ES_H

#include "store/store.h"

#include <stdio.h>

struct es_exporter;

struct es_exporter *es_start(const char *url, size_t max_docs);
void es_enqueue(struct es_exporter *e, const char *batch_id,
		const struct store_record *recs, size_t n);
/* Ships what is queued for up to drain_s seconds, then stops. */
void es_stop(struct es_exporter *e, int drain_s);
void es_metrics(struct es_exporter *e, FILE *f);

#endif
