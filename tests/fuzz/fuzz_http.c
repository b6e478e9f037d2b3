/* libFuzzer target for the l7 HTTP/1.x stream parser.
 *
 * Input: byte 0 chooses the direction (requests or responses) and how the
 * rest is cut into pieces (byte 1 seeds the piece sizes). The same bytes
 * are parsed twice, whole and in pieces: the messages must be identical
 * (a parser that depends on where syscalls cut the stream would record
 * different things for the same traffic). Every message not marked partial
 * must be fully formed. Then a third pass with gaps and losses injected
 * must never crash and never produce an unmarked malformed message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "l7/http.h"

#define MAXM 64

struct sink {
	struct http_msg m[MAXM];
	int n;
	uint64_t total;
};

static bool on_head(void *ctx, struct http_msg *m)
{
	(void)ctx;
	(void)m;
	return true;
}

static void on_done(void *ctx, struct http_msg *m)
{
	struct sink *s = ctx;

	if (!m->partial) {
		/* A whole message is a well-formed one. */
		if (!m->head_done)
			abort();
		if (m->is_request && (!m->method[0] || m->uri[0] == '\0' ||
				      (m->version != 10 && m->version != 11)))
			abort();
		if (!m->is_request && (m->status < 100 || m->status > 999))
			abort();
	}
	if (m->head_bytes + m->body_bytes > s->total)
		abort();
	if (s->n < MAXM)
		s->m[s->n++] = *m;
}

static const struct http_hooks hooks = { .on_head = on_head,
					 .on_done = on_done };

static int same(const struct http_msg *a, const struct http_msg *b)
{
	return a->partial == b->partial && a->status == b->status &&
	       a->version == b->version && a->head_bytes == b->head_bytes &&
	       a->body_bytes == b->body_bytes &&
	       !strcmp(a->method, b->method) && !strcmp(a->uri, b->uri);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sink whole, split, gappy;
	static struct http_stream st;
	bool requests;
	unsigned seed;

	if (size < 2)
		return 0;
	requests = data[0] & 1;
	seed = data[1];
	data += 2;
	size -= 2;

	memset(&whole, 0, sizeof(whole));
	whole.total = size;
	http_stream_init(&st, requests, &hooks, &whole);
	http_stream_feed(&st, data, size, size, 1, 2);
	http_stream_end(&st, 3);

	memset(&split, 0, sizeof(split));
	split.total = size;
	http_stream_init(&st, requests, &hooks, &split);
	for (size_t i = 0, k; i < size; i += k) {
		seed = seed * 1103515245u + 12345u;
		k = 1 + (seed >> 16) % 64;
		if (k > size - i)
			k = size - i;
		http_stream_feed(&st, data + i, k, k, 1, 2);
	}
	http_stream_end(&st, 3);

	/* Resynchronisation happens only at piece starts, so it may differ
	 * once the stream was lost; before that, results must agree. */
	if (!st.resyncs) {
		if (whole.n != split.n)
			abort();
		for (int i = 0; i < whole.n; i++)
			if (!same(&whole.m[i], &split.m[i]))
				abort();
	}

	/* Gaps and losses: only robustness and marking are checked. */
	memset(&gappy, 0, sizeof(gappy));
	gappy.total = size * 2 + 1;
	http_stream_init(&st, requests, &hooks, &gappy);
	for (size_t i = 0, k; i < size; i += k) {
		seed = seed * 1103515245u + 12345u;
		k = 1 + (seed >> 16) % 32;
		if (k > size - i)
			k = size - i;
		switch ((seed >> 8) & 7) {
		case 0:
			http_stream_feed(&st, data + i, k / 2, k, 1, 2);
			break;
		case 1:
			http_stream_lost(&st);
			/* fall through */
		default:
			http_stream_feed(&st, data + i, k, k, 1, 2);
		}
	}
	http_stream_end(&st, 3);
	return 0;
}
