/* The text writer behind l7 http records: whatever bytes a URI or a comm
 * holds, the record is one valid JSON object that says the same thing
 * (checked by parsing it back with jansson), and a record that does not
 * fit is refused, never cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "l7/jsonw.h"

/* {"s": <bytes>} written by jsonw, parsed back: the string jansson sees. */
static json_t *roundtrip(const char *bytes, size_t n, char *buf, size_t cap)
{
	struct jsonw w;
	json_error_t err;

	jw_init(&w, buf, cap);
	jw_open(&w);
	jw_key(&w, "s");
	jw_strn(&w, bytes, n);
	jw_key(&w, "n");
	jw_u64(&w, 9223372036854775807ULL);
	jw_key(&w, "i");
	jw_i64(&w, -9223372036854775807LL - 1);
	jw_close(&w);
	if (!jw_text(&w))
		return NULL;
	return json_loads(jw_text(&w), 0, &err);
}

static void test_escapes_round_trip(void **state)
{
	(void)state;
	char buf[512];
	const char in[] = "a\"b\\c\n\r\t\x01\x1f/é€😀 end";
	json_t *j = roundtrip(in, strlen(in), buf, sizeof(buf));

	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "s")), in);
	assert_true(json_integer_value(json_object_get(j, "i")) ==
		    -9223372036854775807LL - 1);
	assert_true(json_integer_value(json_object_get(j, "n")) ==
		    9223372036854775807LL);
	json_decref(j);
}

static void test_u64_max(void **state)
{
	(void)state;
	char buf[64];
	struct jsonw w;

	/* jansson holds signed integers only: checked as text. */
	jw_init(&w, buf, sizeof(buf));
	jw_u64(&w, 18446744073709551615ULL);
	assert_string_equal(jw_text(&w), "18446744073709551615");
	jw_init(&w, buf, sizeof(buf));
	jw_u64(&w, 0);
	assert_string_equal(jw_text(&w), "0");
}

static void test_invalid_utf8_replaced(void **state)
{
	(void)state;
	char buf[512];
	/* A lone continuation byte, an overlong '/', a surrogate, a byte past
	 * U+10FFFF's lead bytes, and a sequence cut by the end. */
	const char in[] = "x\x80y\xc0\xafz\xed\xa0\x80w\xf5\x80\x80\x80v\xe2\x82";
	json_t *j = roundtrip(in, sizeof(in) - 1, buf, sizeof(buf));
	const char *s;

	assert_non_null(j);
	s = json_string_value(json_object_get(j, "s"));
	assert_non_null(s);
	assert_non_null(strstr(s, "x\xef\xbf\xbdy"));
	assert_int_equal(s[0], 'x');
	assert_null(strchr(s, (char)0xc0)); /* no raw invalid byte left */
	assert_null(strchr(s, (char)0x80));
	json_decref(j);
}

static void test_every_byte_value(void **state)
{
	(void)state;
	char in[256], buf[4096];
	for (int i = 0; i < 256; i++)
		in[i] = (char)(i ? i : 1);
	json_t *j = roundtrip(in, sizeof(in), buf, sizeof(buf));
	assert_non_null(j);
	json_decref(j);
}

static void test_overflow_refused(void **state)
{
	(void)state;
	char buf[16];
	struct jsonw w;

	jw_init(&w, buf, sizeof(buf));
	jw_open(&w);
	jw_key(&w, "uri");
	jw_str(&w, "/a/long/path/that/does/not/fit");
	jw_close(&w);
	assert_null(jw_text(&w));
	/* Exactly fitting text (with its NUL) is accepted. */
	jw_init(&w, buf, 3);
	jw_open(&w);
	jw_close(&w);
	assert_string_equal(jw_text(&w), "{}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes_round_trip),
		cmocka_unit_test(test_u64_max),
		cmocka_unit_test(test_invalid_utf8_replaced),
		cmocka_unit_test(test_every_byte_value),
		cmocka_unit_test(test_overflow_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
