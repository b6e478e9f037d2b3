/* Where records go: JSON lines to stdout or appended to a file, and/or
 * shipped to `sonde server` in compressed batches through a bounded
 * on-disk spool (see docs/store.md). */
#ifndef SONDE_OUTPUT_H
#define SONDE_OUTPUT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

/* Shipping settings; the agent's option table writes them directly. */
struct output_ship_opts {
	const char *server; /* base URL; NULL: no shipping */
	const char *token;  /* NULL: $SONDE_TOKEN */
	const char *spool;  /* spool directory */
	long spool_kb;      /* spool bound (KiB) */
	long batch;         /* records per batch */
	const char *metrics; /* ADDR:PORT for the agent's /metrics */
};
extern struct output_ship_opts output_ship;

struct output;

/* path NULL or "-": stdout, unless output_ship.server is set (then NULL
 * means: only ship). Returns NULL with errno set on failure. */
struct output *output_open(const char *path);
/* Takes one record as a JSON text without newline. */
int output_write(struct output *o, const char *line);
/* Called after each burst of records: flushes the file and seals the
 * current batch when it is old enough. */
void output_flush(struct output *o);
uint64_t output_records(const struct output *o);
/* Seals the last batch, tries for a few seconds to ship what is spooled
 * (the rest stays in the spool for the next start), writes one status line
 * to stderr. */
void output_close(struct output *o);

/* The agent's /metrics (output_ship.metrics): fn fills `families` (a JSON
 * array of status objects as on exit: {"sensor": name, "state": ...,
 * counters...}). It is called from output_flush, on the agent's thread, at
 * most once a second; the HTTP thread serves the latest snapshot. */
void output_set_status(struct output *o,
		       void (*fn)(void *ctx, json_t *families), void *ctx);

#endif
