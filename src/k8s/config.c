/* Where the API server is and how to authenticate: a kubeconfig (YAML,
 * parsed with libyaml into a JSON tree) or the in-cluster service account,
 * as client-go resolves them. */
#include "k8s/k8s.h"
#include "lib/log.h"
#include "lib/sys.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

static json_t *yaml_node_to_json(yaml_document_t *doc, yaml_node_t *node,
				 int depth)
{
	if (!node || depth > 64)
		return json_null();
	switch (node->type) {
	case YAML_SCALAR_NODE:
		return json_stringn((const char *)node->data.scalar.value,
				    node->data.scalar.length);
	case YAML_SEQUENCE_NODE: {
		json_t *arr = json_array();
		for (yaml_node_item_t *it = node->data.sequence.items.start;
		     it < node->data.sequence.items.top; it++)
			json_array_append_new(
				arr, yaml_node_to_json(
					     doc, yaml_document_get_node(doc, *it),
					     depth + 1));
		return arr;
	}
	case YAML_MAPPING_NODE: {
		json_t *obj = json_object();
		for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
		     p < node->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			if (!k || k->type != YAML_SCALAR_NODE)
				continue;
			char *key = strndup((const char *)k->data.scalar.value,
					    k->data.scalar.length);
			json_object_set_new(
				obj, key,
				yaml_node_to_json(
					doc, yaml_document_get_node(doc, p->value),
					depth + 1));
			free(key);
		}
		return obj;
	}
	default:
		return json_null();
	}
}

json_t *k8s_yaml_to_json(const char *text, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	json_t *out = NULL;

	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text,
				     strlen(text));
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "line %zu: %s",
			 parser.problem_mark.line + 1,
			 parser.problem ? parser.problem : "parse error");
	} else {
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		out = root ? yaml_node_to_json(&doc, root, 0) : json_object();
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
	return out;
}

static char *base64_decode(const char *in)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in);
	char *out = malloc(n / 4 * 3 + 4), *o = out;
	unsigned acc = 0;
	int bits = 0;
	if (!out)
		return NULL;
	for (const char *p = in; *p && *p != '='; p++) {
		const char *c = strchr(alphabet, *p);
		if (!c || !*p) {
			if (*p == '\n' || *p == '\r' || *p == ' ')
				continue;
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned)(c - alphabet);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*o++ = (char)((acc >> bits) & 0xff);
		}
	}
	*o = '\0';
	return out;
}

static const json_t *named(const json_t *list, const char *name,
			   const char *field)
{
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "name")) ?: "",
			    name))
			return json_object_get(e, field);
	return NULL;
}

static char *resolve_path(const char *dir, const char *p)
{
	char *out;
	if (p[0] == '/' || !dir)
		return strdup(p);
	if (asprintf(&out, "%s/%s", dir, p) < 0)
		return NULL;
	return out;
}

void k8s_config_free(struct k8s_config *cfg)
{
	free(cfg->server);
	free(cfg->token);
	free(cfg->token_file);
	free(cfg->ca_file);
	free(cfg->ca_pem);
	free(cfg->client_cert_pem);
	free(cfg->client_key_pem);
	free(cfg->namespace_);
	memset(cfg, 0, sizeof(*cfg));
}

int k8s_config_from_kubeconfig(struct k8s_config *cfg, const char *path)
{
	char def[PATH_MAX], err[256], dir[PATH_MAX];
	const char *env = getenv("KUBECONFIG");

	memset(cfg, 0, sizeof(*cfg));
	if (!path && env && *env) {
		snprintf(def, sizeof(def), "%s", env);
		def[strcspn(def, ":")] = '\0';
		path = def;
	} else if (!path) {
		snprintf(def, sizeof(def), "%s/.kube/config",
			 getenv("HOME") ? getenv("HOME") : "/root");
		path = def;
	}
	char *text = sys_read_file(path);
	if (!text) {
		log_err("cannot read kubeconfig %s: %s", path, strerror(errno));
		return -ENOENT;
	}
	json_t *kc = k8s_yaml_to_json(text, err, sizeof(err));
	free(text);
	if (!json_is_object(kc)) {
		log_err("kubeconfig %s is not valid YAML: %s", path,
			kc ? "not a mapping" : err);
		json_decref(kc);
		return -EINVAL;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	const char *ctx_name =
		json_string_value(json_object_get(kc, "current-context"));
	const json_t *ctx =
		ctx_name ? named(json_object_get(kc, "contexts"), ctx_name,
				 "context")
			 : NULL;
	if (!ctx) {
		log_err("kubeconfig %s: no current-context, or context '%s' is "
			"not defined",
			path, ctx_name ? ctx_name : "");
		json_decref(kc);
		return -EINVAL;
	}
	const char *cluster_name =
		json_string_value(json_object_get(ctx, "cluster")) ?: "";
	const char *user_name = json_string_value(json_object_get(ctx, "user")) ?: "";
	const json_t *cluster =
		named(json_object_get(kc, "clusters"), cluster_name, "cluster");
	const json_t *user = named(json_object_get(kc, "users"), user_name, "user");
	const char *server = json_string_value(json_object_get(cluster, "server"));
	if (!server) {
		log_err("kubeconfig %s: cluster '%s' has no server", path,
			cluster_name);
		json_decref(kc);
		return -EINVAL;
	}
	cfg->server = strdup(server);
	const char *s;
	if ((s = json_string_value(json_object_get(cluster, "certificate-authority-data"))))
		cfg->ca_pem = base64_decode(s);
	if ((s = json_string_value(json_object_get(cluster, "certificate-authority"))))
		cfg->ca_file = resolve_path(dir, s);
	s = json_string_value(json_object_get(cluster, "insecure-skip-tls-verify"));
	cfg->insecure = s && !strcmp(s, "true");
	if ((s = json_string_value(json_object_get(user, "token"))))
		cfg->token = strdup(s);
	if ((s = json_string_value(json_object_get(user, "tokenFile"))))
		cfg->token_file = resolve_path(dir, s);
	if ((s = json_string_value(json_object_get(user, "client-certificate-data"))))
		cfg->client_cert_pem = base64_decode(s);
	if ((s = json_string_value(json_object_get(user, "client-key-data"))))
		cfg->client_key_pem = base64_decode(s);
	if ((s = json_string_value(json_object_get(ctx, "namespace"))))
		cfg->namespace_ = strdup(s);
	snprintf(cfg->source, sizeof(cfg->source), "kubeconfig %s (context %s)",
		 path, ctx_name);
	json_decref(kc);
	if ((json_object_get(cluster, "certificate-authority-data") && !cfg->ca_pem) ||
	    (json_object_get(user, "client-key-data") && !cfg->client_key_pem)) {
		log_err("kubeconfig %s: invalid base64 data", path);
		k8s_config_free(cfg);
		return -EINVAL;
	}
	return 0;
}

int k8s_config_in_cluster(struct k8s_config *cfg, const char *sa_dir)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char path[PATH_MAX];

	memset(cfg, 0, sizeof(*cfg));
	if (!sa_dir)
		sa_dir = getenv("SONDE_K8S_SA_DIR");
	if (!sa_dir)
		sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
	if (!host || !*host || !port || !*port) {
		log_err("not in a cluster: KUBERNETES_SERVICE_HOST and "
			"KUBERNETES_SERVICE_PORT are not set (give --kubeconfig)");
		return -ENOENT;
	}
	/* An IPv6 service host needs brackets in the URL. */
	bool v6 = strchr(host, ':') != NULL;
	if (asprintf(&cfg->server, "https://%s%s%s:%s", v6 ? "[" : "", host,
		     v6 ? "]" : "", port) < 0)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/token", sa_dir);
	cfg->token_file = strdup(path);
	char *tok = sys_read_file(path);
	if (!tok) {
		log_err("in-cluster: cannot read the service account token %s",
			path);
		k8s_config_free(cfg);
		return -ENOENT;
	}
	free(tok);
	snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
	cfg->ca_file = strdup(path);
	snprintf(path, sizeof(path), "%s/namespace", sa_dir);
	char *ns = sys_read_file(path);
	if (ns) {
		ns[strcspn(ns, "\r\n")] = '\0';
		cfg->namespace_ = ns;
	}
	snprintf(cfg->source, sizeof(cfg->source), "in-cluster (%s)", sa_dir);
	return 0;
}

int k8s_config_load(struct k8s_config *cfg, const char *kubeconfig)
{
	char def[PATH_MAX];
	if (kubeconfig || (getenv("KUBECONFIG") && *getenv("KUBECONFIG")))
		return k8s_config_from_kubeconfig(cfg, kubeconfig);
	if (getenv("KUBERNETES_SERVICE_HOST"))
		return k8s_config_in_cluster(cfg, NULL);
	snprintf(def, sizeof(def), "%s/.kube/config",
		 getenv("HOME") ? getenv("HOME") : "/root");
	if (access(def, R_OK) == 0)
		return k8s_config_from_kubeconfig(cfg, def);
	log_err("no Kubernetes API configured: give --kubeconfig FILE, set "
		"KUBECONFIG, or run in a pod (in-cluster config); the lab's is "
		"/run/sonde-lab/kubeconfig");
	return -ENOENT;
}
