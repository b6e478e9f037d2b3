/* Per workload-pair series the server exposes at /metrics, fed by every
 * stored record: records, errors and a duration histogram per (kind,
 * src service/workload, dst service/workload). Bounded in series. */
#ifndef SONDE_SERIES_H
#define SONDE_SERIES_H

#include "store/store.h"

#include <stdio.h>

struct series_set;

struct series_set *series_new(size_t max_series);
void series_free(struct series_set *s);
void series_add(struct series_set *s, const struct store_record *r, size_t n);
/* Prometheus text exposition of every series. */
void series_write(struct series_set *s, FILE *f);

#endif
