/* Node discovery: pod UID and container id from the cgroup paths kubelet
 * and the runtimes create, and the metadata lookups built on them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/meta.h"
#include "agent/node.h"

#define UID "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
#define CID "4d3c2b1a0f9e8d7c6b5a49382716059f4d3c2b1a0f9e8d7c6b5a49382716059f"

static void test_pod_uid_cgroupfs(void **state)
{
	(void)state;
	char uid[POD_UID_LEN];

	assert_int_equal(cgroup_path_pod_uid("/sys/fs/cgroup/unified/sonde-lab/"
					     "node-1/kubepods/besteffort/pod" UID
					     "/" CID,
					     uid, sizeof(uid)),
			 0);
	assert_string_equal(uid, UID);
	assert_int_equal(cgroup_path_pod_uid("/kubepods/pod" UID, uid,
					     sizeof(uid)),
			 0);
	assert_string_equal(uid, UID);
}

static void test_pod_uid_systemd(void **state)
{
	(void)state;
	char uid[POD_UID_LEN];
	const char *path =
		"/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/"
		"kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0."
		"slice/cri-containerd-" CID ".scope";

	assert_int_equal(cgroup_path_pod_uid(path, uid, sizeof(uid)), 0);
	assert_string_equal(uid, UID);
}

static void test_pod_uid_rejects_lookalikes(void **state)
{
	(void)state;
	char uid[POD_UID_LEN];

	/* "pod" inside a word, a short id, a non-hex id: none is a pod. */
	assert_int_equal(cgroup_path_pod_uid("/x/ipod" UID, uid, sizeof(uid)),
			 -ENOENT);
	assert_int_equal(cgroup_path_pod_uid("/kubepods/pod1234", uid,
					     sizeof(uid)),
			 -ENOENT);
	assert_int_equal(cgroup_path_pod_uid("/kubepods/podzz1e2d3c-4b5a-6978-"
					     "8796-a5b4c3d2e1f0",
					     uid, sizeof(uid)),
			 -ENOENT);
	assert_int_equal(cgroup_path_pod_uid("/system.slice/sshd.service", uid,
					     sizeof(uid)),
			 -ENOENT);
}

static void test_container_id(void **state)
{
	(void)state;
	char id[CONTAINER_ID_LEN];

	assert_int_equal(cgroup_path_container_id("/kubepods/pod" UID "/" CID,
						  id, sizeof(id)),
			 0);
	assert_string_equal(id, CID);
	assert_int_equal(cgroup_path_container_id("/k/cri-containerd-" CID
						  ".scope",
						  id, sizeof(id)),
			 0);
	assert_string_equal(id, CID);
	assert_int_equal(cgroup_path_container_id("/k/docker-" CID ".scope", id,
						  sizeof(id)),
			 0);
	/* The pod's own cgroup is not a container. */
	assert_int_equal(cgroup_path_container_id("/kubepods/pod" UID, id,
						  sizeof(id)),
			 -ENOENT);
	assert_int_equal(cgroup_path_container_id("/k/sshd.service", id,
						  sizeof(id)),
			 -ENOENT);
}

static void test_meta_lookups_and_reload(void **state)
{
	(void)state;
	char path[] = "/tmp/sonde-meta-XXXXXX";
	int fd = mkstemp(path);
	struct meta m = { 0 };
	const char *doc =
		"{\"nodes\":[{\"name\":\"node-1\",\"cgroup\":\"/cg/n1\","
		"\"netns_path\":\"/run/netns/n1\"}],"
		"\"pods\":[{\"uid\":\"" UID "\",\"name\":\"ratings-v1-abc\","
		"\"namespace\":\"bookinfo\",\"workload\":\"ratings-v1\","
		"\"node\":\"node-1\",\"ip\":\"10.244.1.5\"}],"
		"\"services\":[{\"namespace\":\"bookinfo\",\"name\":\"ratings\","
		"\"cluster_ip\":\"10.96.0.20\",\"endpoints\":[{\"pod\":"
		"\"ratings-v1-abc\",\"ip\":\"10.244.1.5\",\"port\":9080}]}]}";

	assert_true(fd >= 0);
	assert_int_equal(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
	close(fd);
	assert_int_equal(meta_load(&m, path), 0);

	const struct meta_pod *p = meta_pod_by_uid(&m, UID);
	assert_non_null(p);
	assert_string_equal(p->name, "ratings-v1-abc");
	assert_string_equal(p->service, "ratings");
	assert_ptr_equal(meta_pod_by_ip(&m, "10.244.1.5"), p);
	assert_null(meta_pod_by_ip(&m, "10.244.1.6"));
	assert_string_equal(meta_service_by_ip(&m, "10.96.0.20")->name,
			    "ratings");
	assert_string_equal(meta_node(&m, "node-1")->cgroup, "/cg/n1");
	assert_null(meta_node(&m, "node-2"));

	/* A broken rewrite keeps what was loaded. */
	FILE *f = fopen(path, "w");
	fputs("{\"pods\": [", f);
	fclose(f);
	assert_int_equal(meta_load(&m, path), -EINVAL);
	assert_non_null(meta_pod_by_uid(&m, UID));

	meta_free(&m);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pod_uid_cgroupfs),
		cmocka_unit_test(test_pod_uid_systemd),
		cmocka_unit_test(test_pod_uid_rejects_lookalikes),
		cmocka_unit_test(test_container_id),
		cmocka_unit_test(test_meta_lookups_and_reload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
