/* The sensor plan: policy -> desired sensors per node, generations that
 * move only when a node's set changes, the agent's add / stay / delete. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "k8s/plan.h"

static json_t *pod(const char *ns, const char *name, const char *uid,
		   const char *node, const char *ip, const char *app)
{
	return json_pack("{s:{s:s, s:s, s:s, s:{s:s}}, s:{s:s}, s:{s:s}}",
			 "metadata", "namespace", ns, "name", name, "uid", uid,
			 "labels", "app", app, "spec", "nodeName", node,
			 "status", "podIP", ip);
}

static json_t *svc(const char *ns, const char *name, const char *app)
{
	return json_pack("{s:{s:s, s:s}, s:{s:{s:s}}}", "metadata", "namespace",
			 ns, "name", name, "spec", "selector", "app", app);
}

static size_t count(const json_t *desired, const char *node)
{
	return json_array_size(json_object_get(desired, node));
}

static void test_policy_rules(void **s)
{
	(void)s;
	json_t *pods = json_pack("[o, o, o, o]",
				 pod("bookinfo", "ratings-a", "u1", "node-1", "10.244.1.3", "ratings"),
				 pod("bookinfo", "reviews-a", "u2", "node-2", "10.244.2.2", "reviews"),
				 pod("kube-system", "coredns-a", "u3", "node-1", "10.244.1.5", "dns"),
				 pod("bookinfo", "pending", "u4", "", "", "ratings"));
	json_t *svcs = json_pack("[o, o]", svc("bookinfo", "ratings", "ratings"),
				 svc("bookinfo", "reviews", "reviews"));
	char err[128];

	json_t *policy = json_pack("{s:[s], s:[s, s]}", "services", "bookinfo/ratings",
				   "sensors", "flow", "l7");
	assert_int_equal(plan_policy_check(policy, err, sizeof(err)), 0);
	json_t *d = plan_desired(policy, pods, svcs);
	assert_int_equal(count(d, "node-1"), 2); /* ratings: flow + l7 */
	assert_int_equal(count(d, "node-2"), 0);
	json_t *first = json_array_get(json_object_get(d, "node-1"), 0);
	assert_string_equal(json_string_value(json_object_get(first, "id")),
			    "flow/bookinfo/ratings-a");
	assert_string_equal(json_string_value(json_array_get(json_object_get(first, "services"), 0)),
			    "ratings");
	json_decref(d);
	json_decref(policy);

	policy = json_pack("{s:[s], s:[s]}", "namespaces", "bookinfo", "selectors", "app=dns");
	d = plan_desired(policy, pods, svcs);
	assert_int_equal(count(d, "node-1"), 2); /* ratings + coredns, flow only */
	assert_int_equal(count(d, "node-2"), 1);
	json_decref(d);
	json_decref(policy);

	policy = json_pack("{s:[s]}", "pods", "x");
	assert_int_not_equal(plan_policy_check(policy, err, sizeof(err)), 0);
	json_decref(policy);
	policy = json_pack("{s:s}", "namespaces", "bookinfo");
	assert_int_not_equal(plan_policy_check(policy, err, sizeof(err)), 0);
	json_decref(policy);
	json_decref(pods);
	json_decref(svcs);
}

static json_int_t gen(const json_t *plan, const char *node)
{
	return json_integer_value(json_object_get(json_object_get(plan, node), "generation"));
}

static void test_generations_and_move(void **s)
{
	(void)s;
	json_t *policy = json_pack("{s:[s]}", "services", "ratings");
	json_t *svcs = json_pack("[o]", svc("bookinfo", "ratings", "ratings"));
	json_t *plan = json_object();
	json_t *pods = json_pack("[o, o]",
				 pod("bookinfo", "ratings-a", "u1", "node-1", "10.244.1.3", "ratings"),
				 pod("bookinfo", "details-a", "u2", "node-2", "10.244.2.3", "details"));
	json_t *d = plan_desired(policy, pods, svcs);
	assert_int_equal(plan_update(plan, d), 1);
	assert_int_equal(gen(plan, "node-1"), 1);
	/* The same desired set again: nothing changes (idempotent). */
	assert_int_equal(plan_update(plan, d), 0);
	assert_int_equal(gen(plan, "node-1"), 1);
	json_t *on_node1 = json_deep_copy(json_object_get(json_object_get(plan, "node-1"), "sensors"));
	json_decref(d);
	json_decref(pods);

	/* The pod moves: deleted on node-1, a new pod (new uid, IP) on node-2. */
	pods = json_pack("[o, o]",
			 pod("bookinfo", "ratings-b", "u9", "node-2", "10.244.2.9", "ratings"),
			 pod("bookinfo", "details-a", "u2", "node-2", "10.244.2.3", "details"));
	d = plan_desired(policy, pods, svcs);
	assert_int_equal(plan_update(plan, d), 2);
	assert_int_equal(gen(plan, "node-1"), 2);
	assert_int_equal(json_array_size(json_object_get(json_object_get(plan, "node-1"), "sensors")), 0);
	assert_int_equal(gen(plan, "node-2"), 1);

	/* node-1's agent: its sensor goes; node-2's: one to add. */
	json_t *diff = plan_diff(on_node1, json_object_get(json_object_get(plan, "node-1"), "sensors"));
	assert_int_equal(json_array_size(json_object_get(diff, "delete")), 1);
	assert_int_equal(json_array_size(json_object_get(diff, "add")), 0);
	json_decref(diff);
	json_t *empty = json_array();
	json_t *want2 = json_object_get(json_object_get(plan, "node-2"), "sensors");
	diff = plan_diff(empty, want2);
	assert_int_equal(json_array_size(json_object_get(diff, "add")), 1);
	json_decref(diff);
	/* Applied, then the same plan pushed again: all stay. */
	diff = plan_diff(want2, want2);
	assert_int_equal(json_array_size(json_object_get(diff, "stay")), 1);
	assert_int_equal(json_array_size(json_object_get(diff, "add")), 0);
	assert_int_equal(json_array_size(json_object_get(diff, "delete")), 0);
	json_decref(diff);

	json_decref(empty);
	json_decref(on_node1);
	json_decref(d);
	json_decref(pods);
	json_decref(plan);
	json_decref(svcs);
	json_decref(policy);
}

/* What an agent accepts as a pushed plan (PUT /v1/plan): everything else
 * is a 400 and leaves its state alone. */
static void test_message_check(void **s)
{
	(void)s;
	static const struct {
		const char *json;
		int rc;
		const char *msg; /* part of the error */
	} cases[] = {
		{ "{\"node\":\"n1\",\"generation\":3,\"sensors\":[]}", 0, "" },
		{ "{\"node\":\"n1\",\"epoch\":\"e\",\"generation\":0,\"sensors\":"
		  "[{\"id\":\"flow/a/b\",\"kind\":\"flow\",\"pod_uid\":\"u\"}]}", 0, "" },
		{ "[]", -EINVAL, "JSON object" },
		{ "{\"node\":\"n2\",\"generation\":1,\"sensors\":[]}", -EINVAL, "this agent is 'n1'" },
		{ "{\"generation\":1,\"sensors\":[]}", -EINVAL, "(none)" },
		{ "{\"node\":\"n1\",\"generation\":\"1\",\"sensors\":[]}", -EINVAL, "generation" },
		{ "{\"node\":\"n1\",\"generation\":-2,\"sensors\":[]}", -EINVAL, "generation" },
		{ "{\"node\":\"n1\",\"epoch\":7,\"generation\":1,\"sensors\":[]}", -EINVAL, "epoch" },
		{ "{\"node\":\"n1\",\"generation\":1,\"sensors\":{}}", -EINVAL, "list" },
		{ "{\"node\":\"n1\",\"generation\":1,\"sensors\":[{\"id\":\"x\",\"kind\":\"flow\"}]}",
		  -EINVAL, "pod_uid" },
		{ "{\"node\":\"n1\",\"generation\":1,\"sensors\":[{\"id\":\"x\",\"kind\":\"flow\",\"pod_uid\":\"u\"},"
		  "{\"id\":\"x\",\"kind\":\"l7\",\"pod_uid\":\"u\"}]}", -EINVAL, "twice" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		json_t *m = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
		assert_non_null(m);
		assert_int_equal(plan_message_check(m, "n1", err, sizeof(err)), cases[i].rc);
		assert_non_null(strstr(err, cases[i].msg));
		json_decref(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_rules),
		cmocka_unit_test(test_generations_and_move),
		cmocka_unit_test(test_message_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
