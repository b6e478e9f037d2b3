/* Pod and service metadata the agent attributes records with. Until the
 * controller pushes it (Kubernetes API), it comes from the lab's state file,
 * which has the same facts: pods (uid, name, namespace, workload, node, IP)
 * and services (cluster IP, endpoints). */
#ifndef SONDE_META_H
#define SONDE_META_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct meta_pod {
	const char *uid;
	const char *name;
	const char *namespace;
	const char *workload;
	const char *node;
	const char *ip;
	const char *service; /* first service selecting it; NULL = none */
};

struct meta_service {
	const char *name;
	const char *namespace;
	const char *cluster_ip;
};

struct meta_node {
	const char *name;
	const char *cgroup;	/* the node's cgroup root */
	const char *netns_path; /* the node's network namespace */
};

struct meta {
	void *root; /* json_t: owns every string above */
	struct meta_pod *pods;
	size_t npods;
	struct meta_service *services;
	size_t nservices;
	struct meta_node *nodes;
	size_t nnodes;
	char *path;
	struct timespec mtime;
};

/* Loads (or, when the file changed, reloads) `path`. A missing or broken
 * file leaves the previous contents in place and returns a negative errno. */
int meta_load(struct meta *m, const char *path);
bool meta_changed(const struct meta *m);
void meta_free(struct meta *m);

const struct meta_pod *meta_pod_by_uid(const struct meta *m, const char *uid);
const struct meta_pod *meta_pod_by_ip(const struct meta *m, const char *ip);
const struct meta_service *meta_service_by_ip(const struct meta *m,
					      const char *ip);
const struct meta_node *meta_node(const struct meta *m, const char *name);

#endif
