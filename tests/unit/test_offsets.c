/* `sonde query latency --offsets` on records made here from a known truth:
 * node clocks set apart by a chosen offset, paths with chosen delays. The
 * estimate recovers the offset when the fastest paths are symmetric, is off
 * by half the asymmetry when they are not (and the bound still holds the
 * truth), and needs both directions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/offsets.h"

static char text[65536];

/* One latency record from `from` to `to`, received (and clock-stamped) by
 * `to`: the figures are the true delays plus the receiver's clock minus the
 * sender's, as the kernel would compute them. */
static void rec(const char *from, const char *to, int64_t t, int64_t min_delay,
		int64_t p50_delay, int64_t clock_to_minus_from,
		int64_t maxerror_us, const char *hop)
{
	size_t len = strlen(text);

	snprintf(text + len, sizeof(text) - len,
		 "{\"kind\":\"latency\",\"time_ns\":%lld,\"node\":\"%s\","
		 "\"src_node\":\"%s\",\"dst_node\":\"%s\",\"hop\":\"%s\","
		 "\"count\":10,\"negative\":0,\"min_ns\":%lld,\"p50_ns\":%lld,"
		 "\"clock\":{\"synced\":true,\"maxerror_ns\":%lld,"
		 "\"esterror_ns\":1000}}\n",
		 (long long)t, to, from, to, hop,
		 (long long)(min_delay + clock_to_minus_from),
		 (long long)(p50_delay + clock_to_minus_from),
		 (long long)(maxerror_us * 1000));
}

static json_t *pair(json_t *doc, size_t i)
{
	return json_array_get(json_object_get(doc, "pairs"), i);
}

static long long ig(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(o, path1);
	if (path2)
		v = json_object_get(v, path2);
	assert_true(json_is_integer(v));
	return (long long)json_integer_value(v);
}

/* node-2's clock 2 ms ahead of node-1's, the same fastest path both ways
 * (5 us), slower intervals too: the estimate is the offset exactly. */
static void test_symmetric_recovers_offset(void **state)
{
	const int64_t theta = 2000000;
	(void)state;
	text[0] = 0;
	rec("node-1", "node-2", 1000, 5000, 9000, theta, 50, "vxlan_ingress");
	rec("node-1", "node-2", 2000, 7000, 8000, theta, 50, "vxlan_ingress");
	rec("node-1", "node-2", 3000, 6000, 10000, theta, 50, "vxlan_ingress");
	rec("node-2", "node-1", 1500, 5000, 12000, -theta, 70, "vxlan_ingress");
	rec("node-2", "node-1", 2500, 8000, 11000, -theta, 80, "vxlan_ingress");
	json_t *doc = latency_offsets(text), *p = pair(doc, 0);

	assert_int_equal(json_array_size(json_object_get(doc, "pairs")), 1);
	assert_string_equal(json_string_value(json_object_get(p, "node_a")), "node-1");
	assert_string_equal(json_string_value(json_object_get(p, "node_b")), "node-2");
	assert_int_equal(ig(p, "offset_ns", NULL), theta);
	assert_int_equal(ig(p, "uncertainty_ns", NULL), 5000);
	assert_true(ig(p, "offset_low_ns", NULL) <= theta);
	assert_true(ig(p, "offset_high_ns", NULL) >= theta);
	assert_int_equal(ig(p, "a_to_b", "min_ns"), 5000 + theta);
	assert_int_equal(ig(p, "b_to_a", "min_ns"), 5000 - theta);
	assert_int_equal(ig(p, "a_to_b", "records"), 3);
	assert_int_equal(ig(p, "a_to_b", "count"), 30);
	/* medians (position n/2) of the true p50s, offset taken out */
	assert_int_equal(ig(p, "a_to_b", "p50_corrected_ns"), 9000);
	assert_int_equal(ig(p, "b_to_a", "p50_corrected_ns"), 12000);
	/* each node's newest clock state; the pair's bound is their sum */
	assert_int_equal(ig(p, "clock_a", "maxerror_ns"), 80000);
	assert_int_equal(ig(p, "clock_b", "maxerror_ns"), 50000);
	assert_int_equal(ig(p, "clock_error_ns", NULL), 130000);
	json_decref(doc);
}

/* Same clocks, but node-2's outgoing path 20 ms slower (a delayed uplink):
 * the estimate says -10 ms although the clocks agree: an asymmetry reads
 * as half an offset. The bound still holds the truth (0). */
static void test_asymmetry_reads_as_half_offset(void **state)
{
	(void)state;
	text[0] = 0;
	rec("node-2", "node-1", 1000, 20005000, 20010000, 0, 10, "pod_veth");
	rec("node-1", "node-2", 1000, 5000, 9000, 0, 10, "pod_veth");
	json_t *doc = latency_offsets(text), *p = pair(doc, 0);

	assert_int_equal(ig(p, "offset_ns", NULL), -10000000);
	assert_int_equal(ig(p, "uncertainty_ns", NULL), 10005000);
	assert_true(ig(p, "offset_low_ns", NULL) <= 0);
	assert_true(ig(p, "offset_high_ns", NULL) >= 0);
	json_decref(doc);
}

/* Negative figures (a clock far ahead of the delays) work the same way. */
static void test_negative_minima(void **state)
{
	const int64_t theta = -3000000; /* node-b behind node-a */
	(void)state;
	text[0] = 0;
	rec("node-a", "node-b", 1000, 4000, 6000, theta, 10, "vxlan_ingress");
	rec("node-b", "node-a", 1000, 4000, 6000, -theta, 10, "vxlan_ingress");
	json_t *doc = latency_offsets(text), *p = pair(doc, 0);

	assert_int_equal(ig(p, "a_to_b", "min_ns"), 4000 + theta);
	assert_int_equal(ig(p, "offset_ns", NULL), theta);
	assert_int_equal(ig(p, "uncertainty_ns", NULL), 4000);
	json_decref(doc);
}

/* One direction only: no estimate. Records within one node, without node
 * names, or of another kind are not pairs. */
static void test_needs_both_directions(void **state)
{
	(void)state;
	text[0] = 0;
	rec("node-1", "node-3", 1000, 5000, 9000, 0, 10, "pod_veth");
	rec("node-1", "node-1", 1000, 3000, 4000, 0, 10, "pod_veth");
	strcat(text, "{\"kind\":\"latency\",\"node\":\"node-1\",\"src_node\":null,"
		     "\"dst_node\":\"node-1\",\"min_ns\":1}\n");
	strcat(text, "{\"kind\":\"flow\",\"node\":\"node-1\",\"src_node\":\"node-5\","
		     "\"dst_node\":\"node-1\",\"min_ns\":1}\nnot json\n");
	json_t *doc = latency_offsets(text), *p = pair(doc, 0);

	assert_int_equal(json_array_size(json_object_get(doc, "pairs")), 1);
	assert_string_equal(json_string_value(json_object_get(p, "node_b")), "node-3");
	assert_true(json_is_null(json_object_get(p, "offset_ns")));
	assert_true(json_is_null(json_object_get(p, "b_to_a")));
	assert_true(json_is_object(json_object_get(p, "clock_a")));
	assert_int_equal(ig(p, "a_to_b", "min_ns"), 5000);
	json_decref(doc);

	doc = latency_offsets("");
	assert_int_equal(json_array_size(json_object_get(doc, "pairs")), 0);
	json_decref(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_symmetric_recovers_offset),
		cmocka_unit_test(test_asymmetry_reads_as_half_offset),
		cmocka_unit_test(test_negative_minima),
		cmocka_unit_test(test_needs_both_directions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
