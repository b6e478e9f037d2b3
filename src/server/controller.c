/* The controller: src/k8s informers driven from the server. The informers
 * run on their own threads and keep the cache; their eventfd wakes the
 * server's main loop, which recomputes the plan there, so plan generations
 * change on one thread only. HTTP threads read a copy under the lock. */
#include "server/controller.h"
#include "cli/topology.h"
#include "k8s/k8s.h"
#include "k8s/plan.h"
#include "lib/log.h"
#include "server/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct controller {
	struct k8s_client *client;
	json_t *policy;	 /* NULL: every pod; under mu */
	char *policy_file; /* --policy: a PUT policy is written back there */
	pthread_mutex_t mu;
	/* One replan at a time (main loop, a PUT of the policy): an older
	 * snapshot folded in last would undo a newer one. */
	pthread_mutex_t replan_mu;
	json_t *plan;	 /* {"node": {"generation", "sensors"}}; under mu */
	bool synced;	 /* plan computed from complete lists */
	uint64_t replans, plan_changes;
};

static void replan_locked(struct controller *c);

static void replan(struct controller *c)
{
	pthread_mutex_lock(&c->replan_mu);
	replan_locked(c);
	pthread_mutex_unlock(&c->replan_mu);
}

static void replan_locked(struct controller *c)
{
	/* A plan from half-listed resources would churn generations (nodes
	 * seen empty, then full): wait for every first list. */
	if (k8s_client_wait_synced(c->client, 0))
		return;
	json_t *pods = k8s_client_list(c->client, "pods");
	json_t *svcs = k8s_client_list(c->client, "services");
	pthread_mutex_lock(&c->mu);
	json_t *policy = json_incref(c->policy);
	pthread_mutex_unlock(&c->mu);
	if (!policy) {
		/* Every pod: a policy of every namespace that has one (plan.c
		 * has no "all" rule, and an empty selector is refused there). */
		json_t *nss = json_array();
		size_t i;
		json_t *p;
		json_array_foreach(pods, i, p) {
			json_t *ns = json_object_get(json_object_get(p, "metadata"),
						     "namespace");
			if (json_is_string(ns) && *json_string_value(ns))
				json_array_append(nss, ns);
		}
		policy = json_pack("{s:o}", "namespaces", nss);
	}
	json_t *desired = plan_desired(policy, pods, svcs);
	json_decref(policy);
	pthread_mutex_lock(&c->mu);
	int changed = desired ? plan_update(c->plan, desired) : 0;
	c->synced = true;
	c->replans++;
	c->plan_changes += changed > 0 ? (uint64_t)changed : 0;
	pthread_mutex_unlock(&c->mu);
	if (changed > 0)
		log_debug("controller: plan changed on %d node(s)", changed);
	json_decref(desired);
	json_decref(pods);
	json_decref(svcs);
}

static void on_change(struct server *s, int fd, void *ctx)
{
	uint64_t n;
	(void)s;
	/* One wake-up may stand for many events: the plan is recomputed
	 * from the whole cache, so once is enough. */
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("controller: eventfd: %s", strerror(errno));
	replan(ctx);
}

struct controller *controller_start(struct server *s, const char *kubeconfig,
				    const char *policy_file)
{
	struct k8s_config cfg;
	char err[256];
	struct controller *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->replan_mu, NULL);
	c->plan = json_object();
	if (policy_file) {
		json_error_t jerr;
		c->policy_file = strdup(policy_file);
		c->policy = json_load_file(policy_file, 0, &jerr);
		if (!c->policy) {
			log_err("policy %s: %s (line %d)", policy_file, jerr.text,
				jerr.line);
			goto fail;
		}
		if (plan_policy_check(c->policy, err, sizeof(err))) {
			log_err("policy %s: %s", policy_file, err);
			goto fail;
		}
	}
	if (kubeconfig ? k8s_config_from_kubeconfig(&cfg, kubeconfig)
		       : k8s_config_in_cluster(&cfg, NULL))
		goto fail;
	log_info("controller: Kubernetes API %s from %s", cfg.server, cfg.source);
	c->client = k8s_client_new(&cfg, NULL, c);
	k8s_config_free(&cfg);
	if (!c->client)
		goto fail;
	static const char *const resources[] = { "nodes", "pods", "services",
						 "endpoints" };
	for (size_t i = 0; i < 4; i++)
		if (k8s_client_watch(c->client, resources[i], NULL, NULL))
			goto fail;
	if (server_watch_fd(s, k8s_client_fd(c->client), on_change, c) ||
	    k8s_client_start(c->client))
		goto fail;
	return c;
fail:
	controller_stop(c);
	return NULL;
}

json_t *controller_policy(struct controller *c)
{
	pthread_mutex_lock(&c->mu);
	json_t *p = c->policy ? json_deep_copy(c->policy) : json_null();
	pthread_mutex_unlock(&c->mu);
	return p;
}

int controller_set_policy(struct controller *c, json_t *policy, char *err,
			  size_t errlen)
{
	if (!json_is_null(policy) && plan_policy_check(policy, err, errlen))
		return -EINVAL;
	/* Written back first: a restarted server must plan as this one. */
	if (c->policy_file) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", c->policy_file);
		if (json_is_null(policy) ||
		    json_dump_file(policy, tmp, JSON_INDENT(2)) ||
		    rename(tmp, c->policy_file)) {
			snprintf(err, errlen,
				 json_is_null(policy)
					 ? "the server runs with --policy %s: put a policy, not null"
					 : "cannot write the policy to %s",
				 c->policy_file);
			unlink(tmp);
			return json_is_null(policy) ? -EINVAL : -EIO;
		}
	}
	pthread_mutex_lock(&c->mu);
	json_decref(c->policy);
	c->policy = json_is_null(policy) ? NULL : json_deep_copy(policy);
	pthread_mutex_unlock(&c->mu);
	log_info("controller: new policy; replanning");
	replan(c);
	return 0;
}

json_t *controller_topology(struct controller *c, const json_t *reports)
{
	if (k8s_client_wait_synced(c->client, 0))
		return NULL;
	json_t *pods = k8s_client_list(c->client, "pods");
	json_t *svcs = k8s_client_list(c->client, "services");
	json_t *nodes = k8s_client_list(c->client, "nodes");
	json_t *doc = topology_doc(pods, svcs, nodes, false, reports);
	json_decref(pods);
	json_decref(svcs);
	json_decref(nodes);
	return doc;
}

json_t *controller_plan(struct controller *c)
{
	json_t *out = NULL;
	/* The last first list may have brought no object, hence no wake-up:
	 * plan here then (replan is safe from any thread: it updates the
	 * plan under the lock). */
	pthread_mutex_lock(&c->mu);
	bool synced = c->synced;
	pthread_mutex_unlock(&c->mu);
	if (!synced)
		replan(c);
	pthread_mutex_lock(&c->mu);
	if (c->synced)
		out = json_deep_copy(c->plan);
	pthread_mutex_unlock(&c->mu);
	return out;
}

void controller_metrics(struct controller *c, FILE *f)
{
	struct k8s_stats st;
	k8s_client_stats(c->client, &st);
	pthread_mutex_lock(&c->mu);
	fprintf(f,
		"# TYPE sonde_controller_lists_total counter\n"
		"sonde_controller_lists_total %llu\n"
		"# TYPE sonde_controller_watches_total counter\n"
		"sonde_controller_watches_total %llu\n"
		"# TYPE sonde_controller_events_total counter\n"
		"sonde_controller_events_total %llu\n"
		"# TYPE sonde_controller_gone_total counter\n"
		"sonde_controller_gone_total %llu\n"
		"# TYPE sonde_controller_errors_total counter\n"
		"sonde_controller_errors_total %llu\n"
		"# TYPE sonde_controller_plan_changes_total counter\n"
		"sonde_controller_plan_changes_total %llu\n",
		(unsigned long long)st.lists, (unsigned long long)st.watches,
		(unsigned long long)st.events, (unsigned long long)st.gone,
		(unsigned long long)st.errors,
		(unsigned long long)c->plan_changes);
	pthread_mutex_unlock(&c->mu);
}

void controller_stop(struct controller *c)
{
	if (!c)
		return;
	if (c->client)
		k8s_client_free(c->client);
	json_decref(c->plan);
	json_decref(c->policy);
	free(c->policy_file);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->replan_mu);
	free(c);
}
