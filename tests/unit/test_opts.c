/* Option tables: parsing, positionals, "--", durations, generated help. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/opts.h"

static long t_count;
static const char *t_name;
static bool t_flag;
static uint64_t t_dur;
static struct strlist t_list;

static const struct opt t_opts[] = {
	{ "count", 'c', OPT_INT, &t_count, "N", "a number" },
	{ "name", 0, OPT_STRING, &t_name, "NAME", "a name" },
	{ "flag", 'f', OPT_FLAG, &t_flag, NULL, "a flag" },
	{ "every", 0, OPT_DURATION, &t_dur, "DUR", "a duration" },
	{ "pods", 'p', OPT_LIST, &t_list, "LIST", "a list" },
	OPT_END,
};
static const struct cmd_spec t_spec = { "sonde t", "[OPTIONS] ARGS",
					"test command", t_opts, NULL };

static int reset(void **state)
{
	(void)state;
	t_count = 0;
	t_name = NULL;
	t_flag = false;
	t_dur = 0;
	strlist_free(&t_list);
	return 0;
}

static void test_options_anywhere(void **state)
{
	(void)state;
	char *argv[] = { "t", "a", "--count", "7", "b", "-f", "--name=x",
			 "--every", "20ms", "-p", "ns/a,ns/b", "--pods", "c",
			 NULL };
	int npos = -1;

	assert_int_equal(opts_parse(&t_spec, 13, argv, &npos), 0);
	assert_int_equal(npos, 2);
	assert_string_equal(argv[0], "a");
	assert_string_equal(argv[1], "b");
	assert_int_equal(t_count, 7);
	assert_string_equal(t_name, "x");
	assert_true(t_flag);
	assert_int_equal(t_dur, 20000000ULL);
	assert_int_equal(t_list.count, 3);
	assert_string_equal(t_list.items[1], "ns/b");
	assert_string_equal(t_list.items[2], "c");
}

static void test_double_dash_keeps_the_rest(void **state)
{
	(void)state;
	char *argv[] = { "t", "pod", "--", "curl", "-s", "--count", "x", NULL };
	int npos = 0;

	assert_int_equal(opts_parse(&t_spec, 7, argv, &npos), 0);
	assert_int_equal(npos, 5);
	assert_string_equal(argv[0], "pod");
	assert_string_equal(argv[1], "curl");
	assert_string_equal(argv[2], "-s");
	assert_string_equal(argv[3], "--count");
	assert_int_equal(t_count, 0);
}

static void test_errors(void **state)
{
	(void)state;
	char *bad_int[] = { "t", "--count", "7x", NULL };
	char *unknown[] = { "t", "--nope", NULL };
	char *missing[] = { "t", "--name", NULL };
	char *bad_dur[] = { "t", "--every", "soon", NULL };
	int npos;

	assert_int_equal(opts_parse(&t_spec, 3, bad_int, &npos), -EINVAL);
	assert_int_equal(opts_parse(&t_spec, 2, unknown, &npos), -EINVAL);
	assert_int_equal(opts_parse(&t_spec, 2, missing, &npos), -EINVAL);
	assert_int_equal(opts_parse(&t_spec, 3, bad_dur, &npos), -EINVAL);
}

static void test_durations(void **state)
{
	(void)state;
	uint64_t ns;

	assert_int_equal(parse_duration_ns("1.5s", &ns), 0);
	assert_int_equal(ns, 1500000000ULL);
	assert_int_equal(parse_duration_ns("500us", &ns), 0);
	assert_int_equal(ns, 500000ULL);
	assert_int_equal(parse_duration_ns("2m", &ns), 0);
	assert_int_equal(ns, 120000000000ULL);
	assert_int_equal(parse_duration_ns("3", &ns), 0);
	assert_int_equal(ns, 3000000000ULL);
	assert_int_equal(parse_duration_ns("250ns", &ns), 0);
	assert_int_equal(ns, 250ULL);
	assert_int_equal(parse_duration_ns("-1s", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("ms", &ns), -EINVAL);
	assert_int_equal(parse_duration_ns("5 parsecs", &ns), -EINVAL);
}

static void test_help_lists_every_option(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	opts_usage(&t_spec, f);
	fclose(f);
	for (const struct opt *o = t_opts; o->name; o++) {
		char want[64];
		snprintf(want, sizeof(want), "--%s", o->name);
		assert_non_null(strstr(buf, want));
		assert_non_null(strstr(buf, o->help));
	}
	assert_non_null(strstr(buf, "-c, --count N"));
	assert_non_null(strstr(buf, "Usage: sonde t [OPTIONS] ARGS"));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_options_anywhere, reset),
		cmocka_unit_test_setup(test_double_dash_keeps_the_rest, reset),
		cmocka_unit_test_setup(test_errors, reset),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_help_lists_every_option),
	};
	int rc = cmocka_run_group_tests(tests, NULL, reset);
	strlist_free(&t_list);
	return rc;
}
