/* The lab's state.json as Kubernetes v1 objects (Node, Namespace, Pod,
 * Service, Endpoints), and the API server's label and field selectors. */
#ifndef SONDE_LAB_KOBJ_H
#define SONDE_LAB_KOBJ_H

#include <jansson.h>
#include <stdbool.h>

enum kobj_resource {
	KOBJ_NODE,
	KOBJ_NAMESPACE,
	KOBJ_POD,
	KOBJ_SERVICE,
	KOBJ_ENDPOINTS,
	KOBJ_N,
};

extern const char *const kobj_resource_names[KOBJ_N]; /* "pods" */
extern const char *const kobj_kind_names[KOBJ_N];     /* "Pod" */

/* "pods" or "po" -> KOBJ_POD; -1 when unknown. */
int kobj_resource_parse(const char *name);
bool kobj_namespaced(enum kobj_resource r);

/* {"nodes": [...], "namespaces": [...], "pods": [...], ...}, each object a
 * full v1 object without metadata.resourceVersion; NULL when the state is
 * not a lab state (missing nodes, pods or services). */
json_t *kobj_from_state(const json_t *state);

/* 0 when a label (fields=false) or field selector is one the stand-in
 * evaluates (equality-based; fields: metadata.name, metadata.namespace,
 * spec.nodeName, status.phase, status.podIP), -1 otherwise (the API
 * server answers 400 for those). */
int kobj_selector_check(const char *sel, bool fields);
bool kobj_matches(const json_t *obj, const char *label_sel,
		  const char *field_sel);

#endif
