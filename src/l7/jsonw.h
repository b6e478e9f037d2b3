/* A minimal JSON text writer into a caller's fixed buffer, for records
 * written at high rate (one http record per request and side).
 *
 * Why not jansson here: building a json_t tree and dumping it (allocations,
 * hashing of keys, printf of every number) was ~80 % of the agent's CPU per
 * http record (perf, bench/results/l7.md). Records have a fixed shape, so
 * they are written straight as text. Strings are escaped as JSON requires;
 * bytes that are not valid UTF-8 become U+FFFD (jansson refused such
 * strings, which silently dropped the field). */
#ifndef SONDE_L7_JSONW_H
#define SONDE_L7_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jsonw {
	char *buf;
	size_t cap, len;
	bool overflow; /* something did not fit: the text is unusable */
	bool first;    /* no member written yet in the current object */
};

void jw_init(struct jsonw *w, char *buf, size_t cap);
/* Raw text, copied as is (already valid JSON where it lands). */
void jw_raw(struct jsonw *w, const char *s, size_t n);
/* A JSON string (quoted, escaped) from n bytes of s. */
void jw_strn(struct jsonw *w, const char *s, size_t n);
void jw_str(struct jsonw *w, const char *s);
void jw_u64(struct jsonw *w, uint64_t v);
void jw_i64(struct jsonw *w, int64_t v);
/* Object members: jw_key writes the separator and "key":. Keys are
 * trusted literals (not escaped). */
void jw_open(struct jsonw *w);
void jw_close(struct jsonw *w);
void jw_key(struct jsonw *w, const char *key);
/* The finished text, NUL-terminated, or NULL on overflow. */
const char *jw_text(struct jsonw *w);

#endif
