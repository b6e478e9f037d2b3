/* A Kubernetes API client for sonde's controller: connection config
 * (kubeconfig or in-cluster service account), and informers that list then
 * watch a resource from the list's resourceVersion, follow bookmarks,
 * relist on 410 Gone, reconnect with backoff after a dropped stream, and
 * keep a cache of the current objects.
 *
 * Use: k8s_config_load -> k8s_client_new(cfg, on_event, ctx) ->
 * k8s_client_watch("pods", ...) for each resource -> k8s_client_start ->
 * k8s_client_wait_synced. Events come to on_event from the client's
 * threads, one at a time (callbacks are serialized under the client's
 * lock, which is recursive: a callback may call k8s_client_list). After a
 * relist, objects that vanished while the stream was down are reported as
 * DELETED and changed ones as MODIFIED, so a consumer that applies every
 * event ends with the server's state. k8s_client_fd() is an eventfd that
 * becomes readable after each event, for an epoll loop (read it to reset). */
#ifndef SONDE_K8S_H
#define SONDE_K8S_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct k8s_config {
	char *server;	     /* https://host:port */
	char *token;	     /* bearer token, or NULL */
	char *token_file;    /* re-read at every connection (rotation) */
	char *ca_file;	     /* PEM file, or NULL */
	char *ca_pem;	     /* PEM text (certificate-authority-data) */
	char *client_cert_pem, *client_key_pem;
	bool insecure;	     /* insecure-skip-tls-verify */
	char *namespace_;    /* the context's or service account's namespace */
	char source[8400];   /* "kubeconfig /path (context x)" or "in-cluster" */
};

/* Reads a kubeconfig (YAML or JSON): path, else $KUBECONFIG (first entry),
 * else ~/.kube/config; its current context's cluster and user. */
int k8s_config_from_kubeconfig(struct k8s_config *cfg, const char *path);
/* In-cluster: $KUBERNETES_SERVICE_HOST/_PORT and the service account's
 * token, ca.crt and namespace in sa_dir (NULL: $SONDE_K8S_SA_DIR, else
 * /var/run/secrets/kubernetes.io/serviceaccount). */
int k8s_config_in_cluster(struct k8s_config *cfg, const char *sa_dir);
/* kubeconfig when given or found, in-cluster otherwise. */
int k8s_config_load(struct k8s_config *cfg, const char *kubeconfig);
void k8s_config_free(struct k8s_config *cfg);

/* YAML text -> JSON tree (mappings, sequences, scalars as strings); NULL
 * with a message in err on a parse error. Exported for unit tests. */
json_t *k8s_yaml_to_json(const char *text, char *err, size_t errlen);

enum k8s_event_type { K8S_ADDED, K8S_MODIFIED, K8S_DELETED };
extern const char *const k8s_event_names[3];

typedef void (*k8s_event_fn)(void *ctx, const char *resource,
			     enum k8s_event_type type, const json_t *obj);

struct k8s_client;

struct k8s_stats {
	uint64_t lists;	     /* full lists (1 per resource + relists) */
	uint64_t watches;    /* watch requests started */
	uint64_t events;     /* ADDED/MODIFIED/DELETED delivered */
	uint64_t bookmarks;
	uint64_t gone;	     /* 410 Gone answers (relist follows) */
	uint64_t errors;     /* failed requests and broken streams */
};

struct k8s_client *k8s_client_new(const struct k8s_config *cfg,
				  k8s_event_fn on_event, void *ctx);
/* Adds an informer for a core v1 resource ("pods", "nodes", "services",
 * "endpoints", "namespaces"), all namespaces, optional selectors. */
int k8s_client_watch(struct k8s_client *c, const char *resource,
		     const char *label_selector, const char *field_selector);
int k8s_client_start(struct k8s_client *c);
/* 0 once every informer has completed its first list; -ETIMEDOUT. */
int k8s_client_wait_synced(struct k8s_client *c, int timeout_ms);
/* The cached objects of a resource: a new JSON array (caller decrefs). */
json_t *k8s_client_list(struct k8s_client *c, const char *resource);
int k8s_client_fd(struct k8s_client *c);
void k8s_client_stats(struct k8s_client *c, struct k8s_stats *out);
/* Stops the informers (aborts their transfers) and frees everything. */
void k8s_client_free(struct k8s_client *c);

#endif
