/* The sensor plan (plan.h): policy + pods + services -> desired sensors per
 * node -> generations -> the agent's add / stay / delete. */
#include "k8s/plan.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *jget(const json_t *o, const char *a, const char *b)
{
	const json_t *x = json_object_get(o, a);
	if (b)
		x = json_object_get(x, b);
	return json_string_value(x) ?: "";
}

int plan_policy_check(const json_t *policy, char *err, size_t errlen)
{
	const char *k;
	json_t *v;
	if (!json_is_object(policy)) {
		snprintf(err, errlen, "the policy must be a JSON object");
		return -EINVAL;
	}
	json_object_foreach((json_t *)policy, k, v) {
		if (strcmp(k, "namespaces") && strcmp(k, "services") &&
		    strcmp(k, "selectors") && strcmp(k, "sensors")) {
			snprintf(err, errlen,
				 "unknown policy key '%s' (namespaces, services, "
				 "selectors, sensors)",
				 k);
			return -EINVAL;
		}
		size_t i;
		json_t *e;
		if (!json_is_array(v)) {
			snprintf(err, errlen, "policy '%s' must be a list of strings", k);
			return -EINVAL;
		}
		json_array_foreach(v, i, e) if (!json_is_string(e) || !*json_string_value(e))
		{
			snprintf(err, errlen, "policy '%s' must be a list of strings", k);
			return -EINVAL;
		}
	}
	return 0;
}

/* Equality-based label selector: "k=v,k2=v2" (also "k==v", "k!=v"). */
static bool labels_match(const json_t *labels, const char *sel)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", sel);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		bool neg = false;
		char *eq = strstr(t, "!=");
		if (eq) {
			neg = true;
			*eq = '\0';
			eq += 2;
		} else if ((eq = strchr(t, '='))) {
			*eq++ = '\0';
			if (*eq == '=')
				eq++;
		}
		const char *have = json_string_value(json_object_get(labels, t));
		if (!eq) {
			if (!have)
				return false;
			continue;
		}
		bool same = have && !strcmp(have, eq);
		if (same == neg)
			return false;
	}
	return true;
}

static bool selector_selects(const json_t *svc, const json_t *labels)
{
	const json_t *sel = json_object_get(json_object_get(svc, "spec"), "selector");
	if (!json_object_size(sel))
		return false;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)sel, k, v)
		if (!json_equal(v, json_object_get(labels, k)))
			return false;
	return true;
}

static bool in_strings(const json_t *list, const char *s)
{
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
		if (!strcmp(json_string_value(e), s))
			return true;
	return false;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(jget(*(json_t *const *)a, "id", NULL),
		      jget(*(json_t *const *)b, "id", NULL));
}

static void sort_by_id(json_t *arr)
{
	size_t n = json_array_size(arr);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), cmp_id);
	json_array_clear(arr);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

json_t *plan_desired(const json_t *policy, const json_t *pods,
		     const json_t *services)
{
	json_t *out = json_object();
	const json_t *kinds = json_object_get(policy, "sensors");
	json_t *default_kinds = json_pack("[s]", "flow");
	if (!json_array_size(kinds))
		kinds = default_kinds;
	size_t i;
	json_t *pod;
	json_array_foreach(pods, i, pod) {
		const char *ns = jget(pod, "metadata", "namespace");
		const char *name = jget(pod, "metadata", "name");
		const char *node = jget(pod, "spec", "nodeName");
		const char *ip = jget(pod, "status", "podIP");
		const json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");
		if (!*node || !*ip)
			continue; /* not scheduled or no address yet */
		json_t *svcs = json_array();
		bool by_service = false;
		size_t j;
		json_t *svc;
		json_array_foreach(services, j, svc) {
			if (strcmp(jget(svc, "metadata", "namespace"), ns) ||
			    !selector_selects(svc, labels))
				continue;
			const char *sname = jget(svc, "metadata", "name");
			char full[512];
			snprintf(full, sizeof(full), "%s/%s", ns, sname);
			json_array_append_new(svcs, json_string(sname));
			const json_t *wanted = json_object_get(policy, "services");
			if (in_strings(wanted, full) || in_strings(wanted, sname))
				by_service = true;
		}
		bool monitored = by_service ||
				 in_strings(json_object_get(policy, "namespaces"), ns);
		json_t *sel;
		json_array_foreach(json_object_get(policy, "selectors"), j, sel)
			monitored |= labels_match(labels, json_string_value(sel));
		if (!monitored) {
			json_decref(svcs);
			continue;
		}
		json_t *list = json_object_get(out, node);
		if (!list) {
			list = json_array();
			json_object_set_new(out, node, list);
		}
		json_t *kind;
		json_array_foreach(kinds, j, kind) {
			char id[600];
			snprintf(id, sizeof(id), "%s/%s/%s", json_string_value(kind), ns, name);
			json_array_append_new(
				list, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O}",
						"id", id, "kind", json_string_value(kind),
						"pod_uid", jget(pod, "metadata", "uid"),
						"namespace", ns, "pod", name, "ip", ip,
						"services", svcs));
		}
		json_decref(svcs);
	}
	json_decref(default_kinds);
	const char *node;
	json_t *list;
	json_object_foreach(out, node, list)
		sort_by_id(list);
	return out;
}

int plan_update(json_t *plan, const json_t *desired)
{
	int changed = 0;
	const char *node;
	json_t *list, *entry;
	json_object_foreach((json_t *)desired, node, list) {
		entry = json_object_get(plan, node);
		if (entry && json_equal(json_object_get(entry, "sensors"), list))
			continue;
		json_int_t gen = entry ? json_integer_value(json_object_get(entry, "generation")) : 0;
		json_object_set_new(plan, node,
				    json_pack("{s:I, s:O}", "generation", gen + 1,
					      "sensors", list));
		changed++;
	}
	json_object_foreach(plan, node, entry) {
		if (json_object_get(desired, node) ||
		    !json_array_size(json_object_get(entry, "sensors")))
			continue;
		json_object_set_new(entry, "sensors", json_array());
		json_object_set_new(entry, "generation",
				    json_integer(json_integer_value(json_object_get(entry, "generation")) + 1));
		changed++;
	}
	return changed;
}

json_t *plan_diff(const json_t *actual, const json_t *desired)
{
	json_t *add = json_array(), *stay = json_array(), *del = json_array();
	size_t i, j;
	json_t *d, *a;
	json_array_foreach(desired, i, d) {
		const json_t *match = NULL;
		json_array_foreach(actual, j, a)
			if (!strcmp(jget(a, "id", NULL), jget(d, "id", NULL)))
				match = a;
		if (match && json_equal(match, d)) {
			json_array_append(stay, d);
		} else {
			if (match)
				json_array_append(del, (json_t *)match);
			json_array_append(add, d);
		}
	}
	json_array_foreach(actual, j, a) {
		bool wanted = false;
		json_array_foreach(desired, i, d)
			wanted |= !strcmp(jget(a, "id", NULL), jget(d, "id", NULL));
		if (!wanted)
			json_array_append(del, a);
	}
	return json_pack("{s:o, s:o, s:o}", "add", add, "stay", stay, "delete", del);
}

int plan_message_check(const json_t *msg, const char *node, char *err,
		       size_t errlen)
{
	const json_t *gen = json_object_get(msg, "generation");
	const json_t *epoch = json_object_get(msg, "epoch");
	const json_t *sensors = json_object_get(msg, "sensors");
	const char *n = json_string_value(json_object_get(msg, "node"));
	size_t i, j;
	json_t *s, *t;

	if (!json_is_object(msg)) {
		snprintf(err, errlen, "the plan must be a JSON object "
				      "{\"node\", \"generation\", \"sensors\"}");
		return -EINVAL;
	}
	if (!n || strcmp(n, node)) {
		snprintf(err, errlen, "plan for node '%s', this agent is '%s'",
			 n ? n : "(none)", node);
		return -EINVAL;
	}
	if (!json_is_integer(gen) || json_integer_value(gen) < 0) {
		snprintf(err, errlen, "'generation' must be an integer >= 0");
		return -EINVAL;
	}
	if (epoch && !json_is_string(epoch)) {
		snprintf(err, errlen, "'epoch' must be a string");
		return -EINVAL;
	}
	if (!json_is_array(sensors)) {
		snprintf(err, errlen, "'sensors' must be a list");
		return -EINVAL;
	}
	json_array_foreach(sensors, i, s) {
		static const char *const need[] = { "id", "kind", "pod_uid" };
		for (size_t k = 0; k < 3; k++) {
			const char *v = json_string_value(json_object_get(s, need[k]));
			if (!v || !*v) {
				snprintf(err, errlen,
					 "sensor %zu: '%s' must be a non-empty string",
					 i, need[k]);
				return -EINVAL;
			}
		}
		json_array_foreach(sensors, j, t) {
			if (j < i && !strcmp(jget(s, "id", NULL), jget(t, "id", NULL))) {
				snprintf(err, errlen, "sensor id '%s' appears twice",
					 jget(s, "id", NULL));
				return -EINVAL;
			}
		}
	}
	return 0;
}
