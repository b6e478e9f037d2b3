#include "agent/meta.h"

#include "lib/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* The first service (in file order) whose endpoints list the pod. */
static const char *service_of(json_t *services, const char *pod_name,
			      const char *namespace)
{
	size_t i, j;
	json_t *svc, *ep;

	json_array_foreach(services, i, svc) {
		const char *ns = str(svc, "namespace");
		if (!ns || !namespace || strcmp(ns, namespace))
			continue;
		json_array_foreach(json_object_get(svc, "endpoints"), j, ep) {
			const char *p = str(ep, "pod");
			if (p && pod_name && !strcmp(p, pod_name))
				return str(svc, "name");
		}
	}
	return NULL;
}

static void meta_clear(struct meta *m)
{
	free(m->pods);
	free(m->services);
	free(m->nodes);
	if (m->root)
		json_decref(m->root);
	m->root = NULL;
	m->pods = NULL;
	m->services = NULL;
	m->nodes = NULL;
	m->npods = m->nservices = m->nnodes = 0;
}

bool meta_changed(const struct meta *m)
{
	struct stat st;

	if (!m->path || stat(m->path, &st))
		return false;
	return st.st_mtim.tv_sec != m->mtime.tv_sec ||
	       st.st_mtim.tv_nsec != m->mtime.tv_nsec;
}

int meta_load(struct meta *m, const char *path)
{
	json_error_t err;
	struct stat st;
	json_t *root, *pods, *services, *nodes, *item;
	size_t i;

	if (stat(path, &st))
		return -errno;
	root = json_load_file(path, 0, &err);
	if (!root) {
		log_warn("metadata %s: %s (line %d); keeping what we had",
			 path, err.text, err.line);
		return -EINVAL;
	}
	pods = json_object_get(root, "pods");
	services = json_object_get(root, "services");
	nodes = json_object_get(root, "nodes");

	struct meta next = { .root = root };
	next.pods = calloc(json_array_size(pods) + 1, sizeof(*next.pods));
	next.services =
		calloc(json_array_size(services) + 1, sizeof(*next.services));
	next.nodes = calloc(json_array_size(nodes) + 1, sizeof(*next.nodes));
	if (!next.pods || !next.services || !next.nodes) {
		meta_clear(&next);
		return -ENOMEM;
	}
	json_array_foreach(pods, i, item) {
		struct meta_pod *p = &next.pods[next.npods++];
		p->uid = str(item, "uid");
		p->name = str(item, "name");
		p->namespace = str(item, "namespace");
		p->workload = str(item, "workload");
		p->node = str(item, "node");
		p->ip = str(item, "ip");
		p->service = service_of(services, p->name, p->namespace);
	}
	json_array_foreach(services, i, item) {
		struct meta_service *s = &next.services[next.nservices++];
		s->name = str(item, "name");
		s->namespace = str(item, "namespace");
		s->cluster_ip = str(item, "cluster_ip");
	}
	json_array_foreach(nodes, i, item) {
		struct meta_node *n = &next.nodes[next.nnodes++];
		n->name = str(item, "name");
		n->cgroup = str(item, "cgroup");
		n->netns_path = str(item, "netns_path");
	}

	char *path_copy = strdup(path);
	if (!path_copy) {
		meta_clear(&next);
		return -ENOMEM;
	}
	meta_clear(m);
	free(m->path);
	*m = next;
	m->path = path_copy;
	m->mtime = st.st_mtim;
	log_debug("metadata %s: %zu pods, %zu services, %zu nodes", path,
		  m->npods, m->nservices, m->nnodes);
	return 0;
}

void meta_free(struct meta *m)
{
	meta_clear(m);
	free(m->path);
	m->path = NULL;
}

static bool eq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

const struct meta_pod *meta_pod_by_uid(const struct meta *m, const char *uid)
{
	for (size_t i = 0; i < m->npods; i++)
		if (eq(m->pods[i].uid, uid))
			return &m->pods[i];
	return NULL;
}

const struct meta_pod *meta_pod_by_ip(const struct meta *m, const char *ip)
{
	for (size_t i = 0; i < m->npods; i++)
		if (eq(m->pods[i].ip, ip))
			return &m->pods[i];
	return NULL;
}

const struct meta_service *meta_service_by_ip(const struct meta *m,
					      const char *ip)
{
	for (size_t i = 0; i < m->nservices; i++)
		if (eq(m->services[i].cluster_ip, ip))
			return &m->services[i];
	return NULL;
}

const struct meta_node *meta_node(const struct meta *m, const char *name)
{
	for (size_t i = 0; i < m->nnodes; i++)
		if (eq(m->nodes[i].name, name))
			return &m->nodes[i];
	return NULL;
}
