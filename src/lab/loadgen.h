/* The load generator's network-free parts: the open-loop schedule and the
 * request log (one JSON object per line). */
#ifndef SONDE_LAB_LOADGEN_H
#define SONDE_LAB_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOADGEN_NSEC_PER_SEC 1000000000ULL

/* Request i is due at t0 + i / rps, computed from i each time rather than by
 * adding a rounded interval, so the schedule never drifts: after an hour at
 * 3 requests/s it is still exact to the nanosecond. */
static inline uint64_t loadgen_due_ns(uint64_t t0, uint64_t i, uint64_t rps)
{
	return t0 +
	       (uint64_t)((unsigned __int128)i * LOADGEN_NSEC_PER_SEC / rps);
}

/* How many requests fall due strictly before t0 + span: the number a run of
 * that duration sends. */
static inline uint64_t loadgen_count_within(uint64_t span_ns, uint64_t rps)
{
	return (uint64_t)(((unsigned __int128)span_ns * rps +
			   LOADGEN_NSEC_PER_SEC - 1) /
			  LOADGEN_NSEC_PER_SEC);
}

/* One finished (or given-up) request. Times are unix ns and us so that the
 * line is formatted from integers: exact, and no locale can turn the decimal
 * point into a comma. */
struct reqlog_rec {
	uint64_t start_unix_ns;
	uint64_t due_unix_ns;
	long status;	/* HTTP status, 0 without a response */
	uint64_t total_us;
	uint64_t connect_us;
	uint64_t ttfb_us;
	uint64_t pretransfer_us; /* start -> libcurl's pretransfer stamp (loadgen.c) */
	uint64_t bytes;
	const char *error; /* NULL when the transfer succeeded */
};

/* Writes the record as one JSON line, "\n" included, into buf:
 * {"start":1712345678.123456,"due":..,"status":200,"total_ms":1.234,
 *  "connect_ms":..,"ttfb_ms":..,"pretransfer_ms":..,"bytes":..,"error":null}
 * Returns the length, or -ENOSPC when buf is too small (buf is then left
 * unterminated garbage: never write it). */
int reqlog_format(char *buf, size_t len, const struct reqlog_rec *r);

/* Appends text as a JSON string body (no quotes) at buf[*pos], escaping
 * quotes, backslashes and control characters. Returns -ENOSPC when it does
 * not fit. */
int json_escape(char *buf, size_t len, size_t *pos, const char *text);

/* Buffered request log. Lines are only ever written whole: a line that would
 * not fit in the buffer flushes it first, and a flush writes complete lines,
 * so a reader never sees half a line unless the process is killed in the
 * middle of write(). */
struct reqlog {
	int fd;
	char *buf;
	size_t len, cap;
	uint64_t oldest_ns; /* monotonic time of the oldest unflushed line */
	uint64_t lines, write_errors;
};

#define REQLOG_FLUSH_NS LOADGEN_NSEC_PER_SEC

/* Opens path for appending (a restarted load generator continues the same
 * log). A last line cut short by a kill -9 is terminated first, so that it
 * stays one bad line rather than spoiling the next good one. */
int reqlog_open(struct reqlog *l, const char *path, size_t cap);
int reqlog_add(struct reqlog *l, const struct reqlog_rec *r, uint64_t now_ns);
int reqlog_flush(struct reqlog *l);
/* True when the oldest unflushed line is REQLOG_FLUSH_NS old. */
bool reqlog_flush_due(const struct reqlog *l, uint64_t now_ns);
/* The monotonic time by which the buffer must be flushed, 0 when empty. */
uint64_t reqlog_flush_deadline(const struct reqlog *l);
void reqlog_close(struct reqlog *l);

#endif
