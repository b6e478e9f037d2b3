/* ClickHouse backend: not built yet (see docs/store.md). */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>

static int ch_open(const char *target, struct store **out, char *why,
		   size_t why_len)
{
	(void)target;
	(void)out;
	snprintf(why, why_len, "the ClickHouse backend is not available");
	return -ENOTSUP;
}

const struct store_ops store_clickhouse = {
	.name = "clickhouse",
	.open = ch_open,
};
