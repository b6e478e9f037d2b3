/* The l7 HTTP/1.x stream parser: messages come out whole and exact however
 * the bytes are cut into pieces (keep-alive, pipelining, chunked, split
 * anywhere, large headers), bodies of known length are skipped through
 * gaps, and whatever cannot be followed is marked partial, never guessed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "l7/http.h"

#define MAX_MSGS 16

struct sink {
	struct http_msg msgs[MAX_MSGS];
	int n;
	bool head_no_body; /* answer on_head as for a HEAD request */
};

static bool on_head(void *ctx, struct http_msg *m)
{
	struct sink *s = ctx;
	(void)m;
	return !s->head_no_body;
}

static void on_done(void *ctx, struct http_msg *m)
{
	struct sink *s = ctx;
	if (s->n < MAX_MSGS)
		s->msgs[s->n++] = *m;
}

static const struct http_hooks hooks = { .on_head = on_head,
					 .on_done = on_done };

static void feed_str(struct http_stream *st, const char *text, uint64_t t)
{
	size_t n = strlen(text);
	http_stream_feed(st, (const uint8_t *)text, n, n, t, t + 1);
}

/* Feeds text in pieces of `step` bytes, piece k at time k. */
static void feed_split(struct http_stream *st, const char *text, size_t step)
{
	size_t n = strlen(text);
	uint64_t t = 100;
	for (size_t i = 0; i < n; i += step, t += 10) {
		size_t k = n - i < step ? n - i : step;
		http_stream_feed(st, (const uint8_t *)text + i, k, k, t, t + 1);
	}
}

static const char REQS[] =
	"GET /productpage?u=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\n\r\n"
	"POST /ratings/0 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
	"HEAD /details/0 HTTP/1.0\r\n\r\n";

static const char RESPS[] =
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
	"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
	"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
	"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";

static void check_reqs(struct sink *s)
{
	assert_int_equal(s->n, 3);
	assert_string_equal(s->msgs[0].method, "GET");
	assert_string_equal(s->msgs[0].uri, "/productpage?u=1");
	assert_int_equal(s->msgs[0].version, 11);
	assert_string_equal(s->msgs[1].method, "POST");
	assert_int_equal(s->msgs[1].body_bytes, 5);
	assert_string_equal(s->msgs[2].method, "HEAD");
	assert_int_equal(s->msgs[2].version, 10);
	for (int i = 0; i < 3; i++)
		assert_int_equal(s->msgs[i].partial, 0);
	assert_int_equal(s->msgs[0].head_bytes + s->msgs[1].head_bytes +
				 s->msgs[1].body_bytes + s->msgs[2].head_bytes,
			 strlen(REQS));
}

static void check_resps(struct sink *s)
{
	assert_int_equal(s->n, 3);
	assert_int_equal(s->msgs[0].status, 200);
	assert_int_equal(s->msgs[0].body_bytes, 3);
	assert_int_equal(s->msgs[1].status, 201);
	assert_true(s->msgs[1].chunked);
	assert_int_equal(s->msgs[2].status, 404);
	for (int i = 0; i < 3; i++)
		assert_int_equal(s->msgs[i].partial, 0);
	uint64_t total = 0;
	for (int i = 0; i < 3; i++)
		total += s->msgs[i].head_bytes + s->msgs[i].body_bytes;
	assert_int_equal(total, strlen(RESPS));
}

/* Pipelined requests in one piece, and in pieces of every size. */
static void test_requests_any_split(void **state)
{
	(void)state;
	for (size_t step = 1; step <= sizeof(REQS); step++) {
		struct sink s = { 0 };
		struct http_stream st;
		http_stream_init(&st, true, &hooks, &s);
		feed_split(&st, REQS, step);
		check_reqs(&s);
	}
}

static void test_responses_any_split(void **state)
{
	(void)state;
	for (size_t step = 1; step <= sizeof(RESPS); step++) {
		struct sink s = { 0 };
		struct http_stream st;
		http_stream_init(&st, false, &hooks, &s);
		feed_split(&st, RESPS, step);
		check_resps(&s);
	}
}

/* Times: first byte's piece and last byte's piece. */
static void test_times(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	(void)state;
	http_stream_init(&st, false, &hooks, &s);
	feed_str(&st, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab", 10);
	feed_str(&st, "cd", 20);
	assert_int_equal(s.n, 0);
	feed_str(&st, "ef", 30);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].first_enter_ns, 10);
	assert_int_equal(s.msgs[0].first_exit_ns, 11);
	assert_int_equal(s.msgs[0].last_exit_ns, 31);
}

/* A body sent with sendfile: its bytes are a gap of known length. */
static void test_gap_in_body(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	(void)state;
	http_stream_init(&st, false, &hooks, &s);
	feed_str(&st, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n", 1);
	http_stream_feed(&st, NULL, 0, 10000, 5, 6);
	feed_str(&st, "HTTP/1.1 304 Not Modified\r\n\r\n", 7);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[0].partial, 0);
	assert_int_equal(s.msgs[0].body_bytes, 10000);
	assert_int_equal(s.msgs[0].last_exit_ns, 6);
	assert_int_equal(s.msgs[1].status, 304);
}

/* A gap inside a head cannot be followed: partial, then resync on the
 * next piece that starts a message. */
static void test_gap_in_head_resyncs(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	(void)state;
	http_stream_init(&st, true, &hooks, &s);
	const char *p = "GET /a HTTP/1.1\r\nX: ";
	http_stream_feed(&st, (const uint8_t *)p, strlen(p), strlen(p) + 50, 1, 2);
	feed_str(&st, "garbage\r\n\r\n", 3); /* tail of the lost head */
	feed_str(&st, "GET /b HTTP/1.1\r\n\r\n", 4);
	assert_int_equal(s.n, 2);
	assert_true(s.msgs[0].partial & HTTP_P_GAP);
	assert_string_equal(s.msgs[0].uri, "/a");
	assert_string_equal(s.msgs[1].uri, "/b");
	assert_int_equal(s.msgs[1].partial, 0);
	assert_int_equal(st.resyncs, 1);
}

static void test_lost_events(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	(void)state;
	http_stream_init(&st, false, &hooks, &s);
	feed_str(&st, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
	http_stream_lost(&st);
	feed_str(&st, "5\r\nhello\r\n0\r\n\r\n", 2); /* cannot trust it */
	feed_str(&st, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
	assert_int_equal(s.n, 2);
	assert_true(s.msgs[0].partial & HTTP_P_LOST);
	assert_int_equal(s.msgs[1].partial, 0);
}

/* Headers far longer than the line buffer: framing still found. */
static void test_large_headers(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	size_t big = 3 * HTTP_LINE_MAX;
	char *msg = malloc(big + 256);
	(void)state;
	int n = sprintf(msg, "GET /big HTTP/1.1\r\nCookie: ");
	memset(msg + n, 'c', big);
	strcpy(msg + n + big, "\r\nContent-Length: 2\r\n\r\nok");
	http_stream_init(&st, true, &hooks, &s);
	feed_split(&st, msg, 1000);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].partial, 0);
	assert_int_equal(s.msgs[0].body_bytes, 2);
	assert_int_equal(s.msgs[0].head_bytes + 2, strlen(msg));
	free(msg);
}

static void test_long_uri_is_marked(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	char *msg = malloc(HTTP_LINE_MAX * 2);
	(void)state;
	strcpy(msg, "GET /");
	memset(msg + 5, 'u', HTTP_LINE_MAX);
	strcpy(msg + 5 + HTTP_LINE_MAX, " HTTP/1.1\r\n\r\n");
	http_stream_init(&st, true, &hooks, &s);
	feed_str(&st, msg, 1);
	assert_int_equal(s.n, 1);
	assert_true(s.msgs[0].partial & HTTP_P_TRUNCATED);
	assert_string_equal(s.msgs[0].method, "GET");
	free(msg);
}

/* HTTP/1.0 body delimited by the close; HEAD answers have no body. */
static void test_eof_body_and_head(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	(void)state;
	http_stream_init(&st, false, &hooks, &s);
	feed_str(&st, "HTTP/1.0 200 OK\r\n\r\nsome body", 1);
	assert_int_equal(s.n, 0);
	http_stream_end(&st, 9);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].partial, 0);
	assert_int_equal(s.msgs[0].body_bytes, 9);

	s.head_no_body = true;
	feed_str(&st, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 10);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[1].body_bytes, 0);
}

static void test_cut_by_close_is_partial(void **state)
{
	struct sink s = { 0 };
	struct http_stream st;
	(void)state;
	http_stream_init(&st, false, &hooks, &s);
	feed_str(&st, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", 1);
	http_stream_end(&st, 2);
	assert_int_equal(s.n, 1);
	assert_true(s.msgs[0].partial & HTTP_P_EOF);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sink s = { 0 };
		struct http_stream st;
		http_stream_init(&st, false, &hooks, &s);
		feed_str(&st, bad[i], 1);
		assert_int_equal(s.n, 1);
		assert_true(s.msgs[0].partial & HTTP_P_MALFORMED);
	}
}

static void test_detection_and_redaction(void **state)
{
	char out[64];
	(void)state;
	assert_true(http_looks_request((const uint8_t *)"GET / HTTP/1.1", 14));
	assert_true(http_looks_request((const uint8_t *)"DELETE /x", 9));
	assert_false(http_looks_request((const uint8_t *)"GETX / ", 7));
	assert_false(http_looks_request((const uint8_t *)"\x16\x03\x01", 3));
	assert_true(http_looks_response((const uint8_t *)"HTTP/1.1 200", 12));
	assert_false(http_looks_response((const uint8_t *)"HTTP/2", 6));
	assert_true(http_redact_uri("/a/b?user=x&k=1", out, sizeof(out)));
	assert_string_equal(out, "/a/b?<redacted>");
	assert_false(http_redact_uri("/a/b", out, sizeof(out)));
	assert_string_equal(out, "/a/b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests_any_split),
		cmocka_unit_test(test_responses_any_split),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_gap_in_body),
		cmocka_unit_test(test_gap_in_head_resyncs),
		cmocka_unit_test(test_lost_events),
		cmocka_unit_test(test_large_headers),
		cmocka_unit_test(test_long_uri_is_marked),
		cmocka_unit_test(test_eof_body_and_head),
		cmocka_unit_test(test_cut_by_close_is_partial),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_detection_and_redaction),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
