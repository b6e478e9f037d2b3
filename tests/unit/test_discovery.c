/* The discovery document: what the server accepts (discovery_check), the
 * discovery path's node name, and node_scan's containers on a fake cgroup
 * tree (a process still in our own netns is in transit, not a pod's). */
#include <errno.h>
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

#include "agent/discovery.h"
#include "server/agents_disc.h"

#define UID "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
#define CID "4d3c2b1a0f9e8d7c6b5a49382716059f4d3c2b1a0f9e8d7c6b5a49382716059f"

static int check(const char *text, const char *node)
{
	char err[256] = "";
	json_t *doc = json_loads(text, JSON_DECODE_ANY, NULL);
	assert_non_null(doc);
	int rc = discovery_check(doc, node, err, sizeof(err));
	if (rc)
		assert_true(err[0]); /* a reason for every refusal */
	json_decref(doc);
	return rc;
}

static void test_check(void **state)
{
	(void)state;
	const char *good =
		"{\"node\":\"node-1\",\"time_ns\":5,\"agent\":{\"instance\":"
		"\"ab\",\"heartbeat_ns\":10},\"netns\":4026531840,"
		"\"bridge\":{\"name\":\"cni0\",\"ifindex\":3},"
		"\"vxlan\":{\"name\":\"flannel.1\",\"ifindex\":4,\"vni\":1,"
		"\"port\":8472},\"pods\":[{\"uid\":\"" UID "\",\"netns\":7,"
		"\"pid\":9,\"containers\":[{\"id\":\"" CID "\",\"pid\":9}],"
		"\"host_veth\":{\"name\":\"veth1\",\"ifindex\":6}}]}";

	assert_int_equal(check(good, "node-1"), 0);
	assert_int_equal(check(good, "node-2"), -EINVAL); /* path != doc */
	assert_int_equal(check("[]", "node-1"), -EINVAL);
	assert_int_equal(check("{\"node\":\"node-1\",\"agent\":{\"instance\":"
			       "\"a\"},\"pods\":[]}", "node-1"),
			 -EINVAL); /* no time */
	assert_int_equal(check("{\"node\":\"node-1\",\"time_ns\":1,\"pods\":[]}",
			       "node-1"),
			 -EINVAL); /* no agent */
	assert_int_equal(check("{\"node\":\"node-1\",\"time_ns\":1,\"agent\":"
			       "{\"instance\":\"a\"},\"pods\":{}}", "node-1"),
			 -EINVAL);
	assert_int_equal(check("{\"node\":\"node-1\",\"time_ns\":1,\"agent\":"
			       "{\"instance\":\"a\"},\"pods\":[{\"uid\":\"\"}]}",
			       "node-1"),
			 -EINVAL);
	assert_int_equal(check("{\"node\":\"node-1\",\"time_ns\":1,\"agent\":"
			       "{\"instance\":\"a\"},\"pods\":[{\"uid\":\"u\","
			       "\"netns\":-1}]}", "node-1"),
			 -EINVAL);
	assert_int_equal(check("{\"node\":\"node-1\",\"time_ns\":1,\"agent\":"
			       "{\"instance\":\"a\"},\"vxlan\":{\"name\":\"v\","
			       "\"ifindex\":1},\"pods\":[]}", "node-1"),
			 -EINVAL); /* vxlan without vni/port */
	assert_int_equal(check("{\"node\":\"node-1\",\"time_ns\":1,\"agent\":"
			       "{\"instance\":\"a\"},\"pods\":[{\"uid\":\"u\","
			       "\"containers\":[{\"pid\":1}]}]}", "node-1"),
			 -EINVAL);

	json_t *doc = json_loads(good, 0, NULL);
	assert_non_null(discovery_pod(doc, UID));
	assert_null(discovery_pod(doc, "nope"));
	json_decref(doc);
}

static void test_path(void **state)
{
	(void)state;
	char node[256];

	assert_true(agents_disc_path("/v1/agents/node-1/discovery", node, sizeof(node)));
	assert_string_equal(node, "node-1");
	assert_true(agents_disc_path("/v1/agents/ip-10-0-0-1.ec2.internal/discovery",
				     node, sizeof(node)));
	assert_false(agents_disc_path("/v1/agents//discovery", node, sizeof(node)));
	assert_false(agents_disc_path("/v1/agents/node-1/state", node, sizeof(node)));
	assert_false(agents_disc_path("/v1/agents/a/b/discovery", node, sizeof(node)));
	assert_false(agents_disc_path("/v1/agents/..%2f/discovery", node, sizeof(node)));
	assert_false(agents_disc_path("/v1/agents/node-1/discovery", node, 4));
}

/* A fake cgroup tree holding our own pid and pid 1: the container is
 * found with both, the netns (ours) is not taken for a pod's. */
static void test_scan_containers(void **state)
{
	(void)state;
	char root[] = "/tmp/sonde-test-discovery.XXXXXX", path[512];
	struct node_view v;

	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/kubepods", root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/kubepods/pod" UID, root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/kubepods/pod" UID "/" CID, root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/kubepods/pod" UID "/" CID "/cgroup.procs", root);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "%d\n1\n", getpid());
	fclose(f);

	/* Our netns as the node's: a process there is no pod's netns owner,
	 * but its container is still found. */
	assert_int_equal(node_scan(root, "/proc/self/ns/net", &v), 0);
	assert_int_equal(v.ncontainers, 1);
	assert_string_equal(v.containers[0].pod_uid, UID);
	assert_string_equal(v.containers[0].container_id, CID);
	assert_int_equal(v.containers[0].npids, 2);
	assert_int_equal(v.containers[0].pids[0], getpid());
	assert_null(node_find_netns(&v, netns_inode("/proc/self/ns/net")));

	json_t *doc = discovery_build("n", root, "/proc/self/ns/net", &v);
	assert_non_null(doc);
	const json_t *p = discovery_pod(doc, UID);
	assert_non_null(p);
	assert_null(json_object_get(p, "netns"));
	assert_int_equal(json_array_size(json_object_get(p, "containers")), 1);
	json_object_set_new(doc, "time_ns", json_integer(1));
	json_object_set_new(doc, "agent", json_pack("{s:s}", "instance", "x"));
	char err[256];
	assert_int_equal(discovery_check(doc, "n", err, sizeof(err)), 0);
	json_decref(doc);
	node_view_free(&v);

	unlink(path);
	snprintf(path, sizeof(path), "%s/kubepods/pod" UID "/" CID, root);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/kubepods/pod" UID, root);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/kubepods", root);
	rmdir(path);
	rmdir(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_scan_containers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
