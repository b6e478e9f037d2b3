#include "lib/buf.h"

#include <stdlib.h>
#include <string.h>

void buf_add(struct buf *b, const void *data, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = 0;
}

size_t buf_curl_write(char *data, size_t size, size_t n, void *ctx)
{
	struct buf *b = ctx;

	buf_add(b, data, size * n);
	return b->oom ? 0 : size * n;
}

void buf_free(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}
