/* The load generator's schedule (exact, drift-free) and its request log
 * (one valid JSON object per line, whole lines only, a cut last line left by
 * a kill -9 kept apart from the next run's lines). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lab/loadgen.h"

#define SEC 1000000000ULL

static void test_schedule(void **state)
{
	(void)state;
	const uint64_t t0 = 123456789;

	assert_int_equal(loadgen_due_ns(t0, 0, 1000), t0);
	assert_int_equal(loadgen_due_ns(t0, 1, 1000), t0 + 1000000);
	assert_int_equal(loadgen_due_ns(t0, 1000, 1000), t0 + SEC);
	/* 1/3 s does not divide evenly; i/rps from scratch does not drift:
	 * request 3 * 3600 of a 3/s hour is due exactly an hour in. */
	assert_int_equal(loadgen_due_ns(t0, 1, 3), t0 + 333333333);
	assert_int_equal(loadgen_due_ns(t0, 2, 3), t0 + 666666666);
	assert_int_equal(loadgen_due_ns(t0, 3 * 3600, 3), t0 + 3600 * SEC);
	/* No overflow for a week at a million per second. */
	uint64_t week = 7ULL * 86400;
	assert_int_equal(loadgen_due_ns(0, week * 1000000, 1000000),
			 week * SEC);
	/* Due times never go backwards. */
	for (uint64_t i = 0; i < 10000; i++)
		assert_true(loadgen_due_ns(t0, i + 1, 7) >
			    loadgen_due_ns(t0, i, 7));

	/* A run of d seconds sends the requests due in [0, d). */
	assert_int_equal(loadgen_count_within(10 * SEC, 1000), 10000);
	assert_int_equal(loadgen_count_within(SEC, 3), 3);
	assert_int_equal(loadgen_count_within(SEC / 2, 3), 2);
	assert_int_equal(loadgen_count_within(1, 1000), 1);
	for (uint64_t rps = 1; rps < 50; rps++) {
		uint64_t n = loadgen_count_within(2 * SEC + 1234, rps);
		assert_true(loadgen_due_ns(0, n - 1, rps) < 2 * SEC + 1234);
		assert_true(loadgen_due_ns(0, n, rps) >= 2 * SEC + 1234);
	}
}

static void test_format(void **state)
{
	(void)state;
	char buf[512];
	struct reqlog_rec r = {
		.start_unix_ns = 1712345678123456789ULL,
		.due_unix_ns = 1712345678000001000ULL,
		.status = 200,
		.total_us = 1234,
		.connect_us = 5,
		.ttfb_us = 1000000,
		.pretransfer_us = 250,
		.bytes = 4294967296ULL,
	};
	int n = reqlog_format(buf, sizeof(buf), &r);

	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	assert_string_equal(buf,
			    "{\"start\":1712345678.123456,\"due\":1712345678."
			    "000001,\"status\":200,\"total_ms\":1.234,"
			    "\"connect_ms\":0.005,\"ttfb_ms\":1000.000,"
			    "\"pretransfer_ms\":0.250,"
			    "\"bytes\":4294967296,\"error\":null}\n");

	r.status = 0;
	r.error = "Failed \"x\"\\ to\nconnect\x01";
	n = reqlog_format(buf, sizeof(buf), &r);
	assert_true(n > 0);
	json_error_t jerr;
	json_t *o = json_loads(buf, 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "error")),
			    r.error);
	assert_true(json_real_value(json_object_get(o, "start")) >
		    1712345678.12);
	assert_int_equal(json_integer_value(json_object_get(o, "status")), 0);
	json_decref(o);
	assert_non_null(strstr(buf, "\\\"x\\\"\\\\ to\\nconnect\\u0001"));

	/* Too small: an error, never a truncated line. */
	for (size_t len = 0; len < (size_t)n; len++)
		assert_int_equal(reqlog_format(buf, len, &r), -ENOSPC);
	assert_int_equal(reqlog_format(buf, (size_t)n + 1, &r), n);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text = calloc(1, 1 << 20);
	size_t n;

	assert_non_null(f);
	assert_non_null(text);
	n = fread(text, 1, (1 << 20) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static int count_lines(const char *text, int *valid)
{
	int n = 0;

	*valid = 0;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		json_error_t jerr;
		json_t *o = json_loadb(p, len, 0, &jerr);
		if (o && nl)
			(*valid)++;
		json_decref(o);
		n++;
		p += len + (nl ? 1 : 0);
	}
	return n;
}

static void test_log_whole_lines(void **state)
{
	(void)state;
	char path[] = "/tmp/sonde-test-reqlog-XXXXXX";
	int fd = mkstemp(path);
	struct reqlog l;
	struct reqlog_rec r = { .start_unix_ns = 1, .due_unix_ns = 1,
				.status = 200 };
	int valid;

	assert_true(fd >= 0);
	/* A previous run killed in the middle of a line. */
	assert_int_equal(write(fd, "{\"start\":17", 11), 11);
	close(fd);

	/* A buffer of 1000 bytes holds 6 lines of ~150: adding 20 flushes
	 * twice on the way, each time whole lines only. */
	assert_int_equal(reqlog_open(&l, path, 1000), 0);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(reqlog_add(&l, &r, 100 + (uint64_t)i), 0);
		char *text = slurp(path);
		size_t len = strlen(text);
		assert_true(len > 0 && text[len - 1] == '\n');
		free(text);
	}
	assert_int_equal(l.lines, 20);
	assert_true(l.len > 0);
	/* Flush due a second after the oldest buffered line, not before. */
	uint64_t oldest = l.oldest_ns;
	assert_int_equal(reqlog_flush_deadline(&l), oldest + REQLOG_FLUSH_NS);
	assert_false(reqlog_flush_due(&l, oldest + REQLOG_FLUSH_NS - 1));
	assert_true(reqlog_flush_due(&l, oldest + REQLOG_FLUSH_NS));
	reqlog_close(&l);

	char *text = slurp(path);
	assert_int_equal(count_lines(text, &valid), 21);
	assert_int_equal(valid, 20);
	assert_true(strncmp(text, "{\"start\":17\n{\"start\":0.000000,", 30) ==
		    0);
	free(text);

	/* A clean end: nothing is inserted on reopening. */
	assert_int_equal(reqlog_open(&l, path, 1000), 0);
	assert_int_equal(reqlog_add(&l, &r, 5), 0);
	reqlog_close(&l);
	text = slurp(path);
	assert_int_equal(count_lines(text, &valid), 22);
	assert_int_equal(valid, 21);
	free(text);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schedule),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_log_whole_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
