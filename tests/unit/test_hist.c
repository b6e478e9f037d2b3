/* The log-linear latency histogram: buckets tile the value range without
 * gaps, quantiles stay within 1/64 of the truth, extremes and mean are
 * exact. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lab/hist.h"

static void check_bucket(uint64_t v)
{
	unsigned int b = hist_bucket(v);

	assert_true(b < HIST_BUCKETS);
	assert_true(hist_bucket_low(b) <= v);
	assert_true(v - hist_bucket_low(b) < hist_bucket_width(b));
}

static void test_buckets_tile_the_range(void **state)
{
	(void)state;
	for (uint64_t v = 0; v < 100000; v++)
		check_bucket(v);
	for (unsigned int k = 7; k < 64; k++) {
		uint64_t p = 1ULL << k;
		check_bucket(p - 1);
		check_bucket(p);
		check_bucket(p + 1);
		check_bucket(p + p / 3);
	}
	check_bucket(UINT64_MAX);
	assert_int_equal(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
	/* Adjacent buckets meet: no gaps, no overlaps. */
	for (unsigned int b = 0; b + 1 < HIST_BUCKETS; b++)
		assert_int_equal(hist_bucket_low(b) + hist_bucket_width(b),
				 hist_bucket_low(b + 1));
	/* Exact below 128. */
	for (uint64_t v = 0; v < HIST_LINEAR; v++)
		assert_int_equal(hist_bucket_width(hist_bucket(v)), 1);
}

static void test_quantiles(void **state)
{
	(void)state;
	struct hist *h = malloc(sizeof(*h));

	assert_non_null(h);
	hist_init(h);
	assert_int_equal(hist_quantile(h, 0.5), 0);
	assert_true(hist_mean(h) == 0);

	/* 1..100000 in shuffled order: the q-quantile is 100000 q. */
	for (uint64_t i = 0; i < 100000; i++)
		hist_add(h, (i * 7919) % 100000 + 1);
	assert_int_equal(h->count, 100000);
	assert_int_equal(hist_quantile(h, 0), 1);
	assert_int_equal(hist_quantile(h, 1), 100000);
	const double qs[] = { 0.001, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999 };
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		double want = qs[i] * 100000;
		double got = (double)hist_quantile(h, qs[i]);
		assert_true(fabs(got - want) <= want / 64 + 1);
	}
	assert_true(fabs(hist_mean(h) - 50000.5) < 1e-6);
	/* Uniform 1..n: sd = sqrt((n^2 - 1) / 12). */
	assert_true(fabs(hist_stddev(h) - sqrt((1e10 - 1) / 12)) < 0.01);

	/* Small values are exact, and clamping keeps q = 1 on the max. */
	hist_init(h);
	hist_add(h, 3);
	hist_add(h, 3);
	hist_add(h, 90);
	assert_int_equal(hist_quantile(h, 0.5), 3);
	assert_int_equal(hist_quantile(h, 0.67), 90);
	assert_int_equal(hist_quantile(h, 0.99), 90);
	assert_int_equal(h->min, 3);
	assert_int_equal(h->max, 90);

	/* One big value: the bucket middle is clamped to the exact max. */
	hist_init(h);
	hist_add(h, 20123456);
	assert_int_equal(hist_quantile(h, 0.5), 20123456);
	assert_true(hist_stddev(h) == 0);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets_tile_the_range),
		cmocka_unit_test(test_quantiles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
