/* The API stand-in's objects and selectors (lab/kobj.c) and the client's
 * configuration (k8s/config.c): kubeconfig YAML, base64 CA data, relative
 * paths, in-cluster service account. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8s/k8s.h"
#include "lab/kobj.h"

static const char *const STATE =
	"{\"created\":\"2026-01-01T10:00:00Z\","
	"\"nodes\":[{\"name\":\"node-1\",\"ip\":\"172.30.0.1\",\"pod_cidr\":\"10.244.1.0/24\","
	"\"vxlan_vni\":1,\"vtep_mac\":\"02:5e:00:00:00:01\",\"netns\":\"sonde-node-1\"}],"
	"\"pods\":[{\"uid\":\"u-1\",\"namespace\":\"bookinfo\",\"name\":\"ratings-v1-abcdefghij-xyzzy\","
	"\"workload\":\"ratings-v1\",\"labels\":{\"app\":\"ratings\",\"version\":\"v1\"},"
	"\"node\":\"node-1\",\"ip\":\"10.244.1.3\",\"container\":\"ratings\",\"container_id\":\"c0ffee\","
	"\"ports\":[9080],\"created\":\"2026-01-01T10:00:01Z\"},"
	"{\"uid\":\"u-2\",\"namespace\":\"bookinfo\",\"name\":\"ratings-v1-abcdefghij-qqqqq\","
	"\"workload\":\"ratings-v1\",\"labels\":{\"app\":\"ratings\",\"version\":\"v1\"},"
	"\"node\":\"node-1\",\"ip\":\"10.244.1.4\",\"container\":\"ratings\",\"container_id\":\"beef\","
	"\"ports\":[9080],\"created\":\"2026-01-01T10:00:02Z\",\"ready\":false}],"
	"\"services\":[{\"namespace\":\"bookinfo\",\"name\":\"ratings\",\"cluster_ip\":\"10.96.1.1\","
	"\"ports\":[{\"name\":\"http\",\"port\":9080,\"target_port\":9080,\"protocol\":\"TCP\"}],"
	"\"selector\":{\"app\":\"ratings\"},\"endpoints\":["
	"{\"pod\":\"ratings-v1-abcdefghij-xyzzy\",\"ip\":\"10.244.1.3\",\"port\":9080,\"node\":\"node-1\"},"
	"{\"pod\":\"ratings-v1-abcdefghij-qqqqq\",\"ip\":\"10.244.1.4\",\"port\":9080,\"node\":\"node-1\"}]}]}";

static json_t *objects(void)
{
	json_error_t err;
	json_t *state = json_loads(STATE, 0, &err);
	assert_non_null(state);
	json_t *all = kobj_from_state(state);
	json_decref(state);
	assert_non_null(all);
	return all;
}

static const char *at(const json_t *o, const char *a, const char *b, const char *c)
{
	const json_t *x = json_object_get(o, a);
	if (b)
		x = json_object_get(x, b);
	if (c)
		x = json_object_get(x, c);
	return json_string_value(x);
}

static void test_pod_objects(void **s)
{
	(void)s;
	json_t *all = objects();
	json_t *pods = json_object_get(all, "pods");
	assert_int_equal(json_array_size(pods), 2);
	json_t *p = json_array_get(pods, 0);
	assert_string_equal(at(p, "kind", NULL, NULL), "Pod");
	assert_string_equal(at(p, "apiVersion", NULL, NULL), "v1");
	assert_string_equal(at(p, "spec", "nodeName", NULL), "node-1");
	assert_string_equal(at(p, "status", "podIP", NULL), "10.244.1.3");
	assert_string_equal(at(p, "status", "hostIP", NULL), "172.30.0.1");
	assert_string_equal(at(p, "status", "phase", NULL), "Running");
	assert_string_equal(at(p, "metadata", "labels", "pod-template-hash"), "abcdefghij");
	json_t *cs = json_array_get(json_object_get(json_object_get(p, "status"), "containerStatuses"), 0);
	assert_string_equal(at(cs, "containerID", NULL, NULL), "containerd://c0ffee");
	/* What the Python client insists on. */
	assert_non_null(json_object_get(cs, "imageID"));
	assert_non_null(json_object_get(cs, "restartCount"));
	json_t *owner = json_array_get(json_object_get(json_object_get(p, "metadata"), "ownerReferences"), 0);
	assert_string_equal(at(owner, "name", NULL, NULL), "ratings-v1-abcdefghij");
	/* The second pod is not ready yet: Pending, not an endpoint address. */
	json_t *q = json_array_get(pods, 1);
	assert_string_equal(at(q, "status", "phase", NULL), "Pending");
	json_t *ep = json_array_get(json_object_get(all, "endpoints"), 0);
	json_t *sub = json_array_get(json_object_get(ep, "subsets"), 0);
	assert_int_equal(json_array_size(json_object_get(sub, "addresses")), 1);
	assert_int_equal(json_array_size(json_object_get(sub, "notReadyAddresses")), 1);
	json_t *node = json_array_get(json_object_get(all, "nodes"), 0);
	assert_int_equal(json_object_size(json_object_get(json_object_get(node, "status"), "nodeInfo")), 10);
	assert_int_equal(json_array_size(json_object_get(all, "namespaces")), 3);
	json_decref(all);
}

static void test_not_a_state(void **s)
{
	(void)s;
	json_t *junk = json_pack("{s:[]}", "nodes");
	assert_null(kobj_from_state(junk));
	json_decref(junk);
}

static void test_selectors(void **s)
{
	(void)s;
	json_t *all = objects();
	json_t *p = json_array_get(json_object_get(all, "pods"), 0);
	assert_true(kobj_matches(p, "app=ratings", NULL));
	assert_true(kobj_matches(p, "app==ratings,version", NULL));
	assert_false(kobj_matches(p, "app=ratings,version!=v1", NULL));
	assert_false(kobj_matches(p, "!version", NULL));
	assert_true(kobj_matches(p, "!tier", "spec.nodeName=node-1"));
	assert_false(kobj_matches(p, NULL, "spec.nodeName=node-2"));
	assert_true(kobj_matches(p, NULL, "metadata.namespace=bookinfo,status.phase=Running"));
	assert_int_equal(kobj_selector_check("spec.nodeName=x", true), 0);
	assert_int_equal(kobj_selector_check("spec.bogus=x", true), -1);
	assert_int_equal(kobj_selector_check("app in (a,b)", false), -1);
	json_decref(all);
}

static void test_kubeconfig(void **s)
{
	(void)s;
	char dir[] = "/tmp/sonde-test-k8s-XXXXXX", path[128];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config", dir);
	FILE *f = fopen(path, "w");
	/* "LS0tCg==" is base64 of "---\n". */
	fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n"
		   "- name: other\n  cluster: {server: https://10.0.0.1}\n"
		   "- name: lab\n  cluster:\n    server: https://127.0.0.1:6443\n"
		   "    certificate-authority-data: LS0tCg==\n"
		   "users:\n- name: me\n  user:\n    tokenFile: tok\n"
		   "contexts:\n- name: c\n  context: {cluster: lab, user: me, namespace: ns1}\n"
		   "current-context: c\n");
	fclose(f);
	struct k8s_config cfg;
	assert_int_equal(k8s_config_from_kubeconfig(&cfg, path), 0);
	assert_string_equal(cfg.server, "https://127.0.0.1:6443");
	assert_string_equal(cfg.ca_pem, "---\n");
	char want[160];
	snprintf(want, sizeof(want), "%s/tok", dir);
	assert_string_equal(cfg.token_file, want);
	assert_string_equal(cfg.namespace_, "ns1");
	k8s_config_free(&cfg);

	f = fopen(path, "w");
	fprintf(f, "current-context: missing\ncontexts: []\n");
	fclose(f);
	assert_int_not_equal(k8s_config_from_kubeconfig(&cfg, path), 0);
	f = fopen(path, "w");
	fprintf(f, "clusters: [unclosed\n");
	fclose(f);
	assert_int_not_equal(k8s_config_from_kubeconfig(&cfg, path), 0);
	unlink(path);

	/* In-cluster: a service account directory. */
	snprintf(path, sizeof(path), "%s/token", dir);
	f = fopen(path, "w");
	fprintf(f, "abc\n");
	fclose(f);
	snprintf(path, sizeof(path), "%s/namespace", dir);
	f = fopen(path, "w");
	fprintf(f, "kube-system\n");
	fclose(f);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(k8s_config_in_cluster(&cfg, dir), 0);
	assert_string_equal(cfg.server, "https://10.96.0.1:443");
	assert_string_equal(cfg.namespace_, "kube-system");
	k8s_config_free(&cfg);
	unsetenv("KUBERNETES_SERVICE_HOST");
	assert_int_not_equal(k8s_config_in_cluster(&cfg, dir), 0);
	unlink(path);
	snprintf(path, sizeof(path), "%s/token", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pod_objects),
		cmocka_unit_test(test_not_a_state),
		cmocka_unit_test(test_selectors),
		cmocka_unit_test(test_kubeconfig),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
