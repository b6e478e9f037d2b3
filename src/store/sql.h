/* SQL text both backends build alike (record.c). */
#ifndef SONDE_STORE_SQL_H
#define SONDE_STORE_SQL_H

#include "store/store.h"

#include <stdarg.h>
#include <stdbool.h>

struct sql_buf {
	char text[4096];
	size_t len;
	bool overflow;
};

void sql_buf_init(struct sql_buf *b);
void sql_add(struct sql_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sql_add_str(struct sql_buf *b, const char *s, bool backslash);
/* " WHERE ..." for q; backslash: escape backslashes (ClickHouse). */
void sql_add_where(struct sql_buf *b, const struct store_query *q,
		   bool backslash);

extern const char *const sql_agg_groups;
extern const char *const sql_errors_expr;

#endif
