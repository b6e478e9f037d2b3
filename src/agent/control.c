/* The agent's control API and state reports (control.h).
 *
 * libmicrohttpd runs without threads of its own: its epoll fd joins the
 * agent's loop, so a pushed plan is applied on the agent's thread, between
 * two batches of ring-buffer reads, and the answer already says what is
 * attached. Reports to the server go from a thread of their own: a server
 * that is away must never stall the sensors. */
#include "agent/control.h"
#include "agent/agent.h"
#include "k8s/plan.h"
#include "lib/clock.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "server/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT_NS 3000000000LL
/* While the server does not answer: a restarted server learns of this
 * agent (and pushes its plan) within this, not a whole heartbeat. */
#define RETRY_NS 500000000LL
#define BODY_MAX (8u << 20)

struct control {
	struct agent *a;
	struct MHD_Daemon *d;
	char token[256];
	char node[256];
	char url[300];	       /* our control URL, as reported */
	char state_path[PATH_MAX];
	char instance[17];     /* new per process: the server sees restarts */
	json_t *applied;       /* {node, epoch, generation, sensors} */
	json_t *want;	       /* "kind/pod_uid" -> true, from applied */
	char *last_report;     /* the last state sent (without time) */
	int64_t last_report_ns;
	uint64_t plans, plans_bad, plans_unchanged;

	/* the reporter thread; under mu */
	bool reporting;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *pending;	       /* a body to send */
	bool stop;
	char report_url[1300];
	char auth[300];
	uint64_t reports, report_failures;
	bool report_ok;
};

static json_t *empty_plan(const char *node)
{
	return json_pack("{s:s, s:s, s:i, s:[]}", "node", node, "epoch", "",
			 "generation", 0, "sensors");
}

static void rebuild_want(struct control *c)
{
	size_t i;
	json_t *s;

	json_decref(c->want);
	c->want = json_object();
	json_array_foreach(json_object_get(c->applied, "sensors"), i, s) {
		char key[600];
		snprintf(key, sizeof(key), "%s/%s",
			 json_string_value(json_object_get(s, "kind")),
			 json_string_value(json_object_get(s, "pod_uid")));
		json_object_set_new(c->want, key, json_true());
	}
}

bool control_wants(const struct control *c, const char *kind,
		   const char *pod_uid)
{
	char key[600];
	snprintf(key, sizeof(key), "%s/%s", kind, pod_uid);
	return json_object_get(c->want, key) != NULL;
}

/* ---- the state file: the last applied plan, so that a restarted agent
 * watches the same pods at once instead of waiting for the server. */

static int save_state(struct control *c)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", c->state_path);
	if (json_dump_file(c->applied, tmp, JSON_COMPACT) ||
	    rename(tmp, c->state_path)) {
		log_warn("control: cannot write %s: %s", c->state_path,
			 strerror(errno));
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

static void load_state(struct control *c)
{
	json_error_t jerr;
	char err[256];
	json_t *p = json_load_file(c->state_path, 0, &jerr);

	if (!p) {
		if (access(c->state_path, F_OK) == 0)
			log_warn("control: %s: %s; starting with no sensors",
				 c->state_path, jerr.text);
		return;
	}
	if (plan_message_check(p, c->node, err, sizeof(err))) {
		log_warn("control: %s: %s; starting with no sensors",
			 c->state_path, err);
		json_decref(p);
		return;
	}
	json_decref(c->applied);
	c->applied = p;
	log_info("control: re-applying the plan of %s (generation %lld, %zu "
		 "sensors)",
		 c->state_path,
		 (long long)json_integer_value(json_object_get(p, "generation")),
		 json_array_size(json_object_get(p, "sensors")));
}

/* ---- actual state */

/* {"node", "instance", "control_url", "epoch", "generation", "sensors":
 * [{"id", "kind", "pod_uid", "pod", "namespace", "status", "error"?}],
 * "attached", "pending", "failed"}. */
static json_t *actual_state(struct control *c)
{
	const struct node_view *v = agent_view(c->a);
	json_t *list = json_array();
	int counts[3] = { 0 };
	static const char *const names[3] = { "attached", "pending", "failed" };
	size_t i;
	json_t *s;

	json_array_foreach(json_object_get(c->applied, "sensors"), i, s) {
		const char *kind = json_string_value(json_object_get(s, "kind"));
		const char *uid = json_string_value(json_object_get(s, "pod_uid"));
		const char *why = NULL;
		int st, fam = agent_family_state(c->a, kind, &why);
		json_t *o = json_pack("{s:O, s:O, s:O}", "id",
				      json_object_get(s, "id"), "kind",
				      json_object_get(s, "kind"), "pod_uid",
				      json_object_get(s, "pod_uid"));
		json_t *pod = json_object_get(s, "pod");
		if (pod)
			json_object_set(o, "pod", pod);
		if (json_object_get(s, "namespace"))
			json_object_set(o, "namespace", json_object_get(s, "namespace"));
		uint32_t netns = 0;
		for (size_t k = 0; k < v->count; k++)
			if (!strcmp(v->owners[k].pod_uid, uid))
				netns = v->owners[k].netns;
		if (fam < 0) {
			st = 2;
			json_object_set_new(o, "error",
					    json_string("no sensor family of this "
							"kind in this agent"));
		} else if (fam == 0) {
			st = 2;
			json_object_set_new(o, "error", json_string(why ? why : ""));
		} else if (!netns) {
			st = 1;
			json_object_set_new(o, "error",
					    json_string("pod not on this node (yet)"));
		} else {
			st = 0;
			json_object_set_new(o, "netns", json_integer(netns));
		}
		json_object_set_new(o, "status", json_string(names[st]));
		counts[st]++;
		json_array_append_new(list, o);
	}
	json_t *out = json_pack("{s:s, s:s, s:s, s:O, s:O, s:o}", "node",
				c->node, "instance", c->instance, "control_url",
				c->url, "epoch",
				json_object_get(c->applied, "epoch"),
				"generation",
				json_object_get(c->applied, "generation"),
				"sensors", list);
	for (int k = 0; k < 3; k++)
		json_object_set_new(out, names[k], json_integer(counts[k]));
	return out;
}

/* ---- reports to the server */

static size_t discard(char *d, size_t size, size_t n, void *ctx)
{
	(void)d;
	(void)ctx;
	return size * n;
}

static void *reporter_main(void *arg)
{
	struct control *c = arg;
	CURL *curl = curl_easy_init();

	pthread_mutex_lock(&c->mu);
	while (!c->stop || c->pending) {
		if (!c->pending) {
			pthread_cond_wait(&c->cv, &c->mu);
			continue;
		}
		char *body = c->pending;
		c->pending = NULL;
		bool last = c->stop;
		pthread_mutex_unlock(&c->mu);

		long status = 0;
		struct curl_slist *h = NULL;
		h = curl_slist_append(h, "Content-Type: application/json");
		if (c->auth[0])
			h = curl_slist_append(h, c->auth);
		curl_easy_reset(curl);
		curl_easy_setopt(curl, CURLOPT_URL, c->report_url);
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, last ? 1000L : 5000L);
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		CURLcode rc = curl ? curl_easy_perform(curl) : CURLE_FAILED_INIT;
		if (rc == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		curl_slist_free_all(h);
		free(body);

		pthread_mutex_lock(&c->mu);
		c->reports++;
		c->report_ok = status == 200;
		if (status != 200) {
			/* The next heartbeat tries again: no queue to grow. */
			log_debug("control: state report to %s: %s (HTTP %ld)",
				  c->report_url,
				  rc != CURLE_OK ? curl_easy_strerror(rc) : "refused",
				  status);
			c->report_failures++;
		}
	}
	pthread_mutex_unlock(&c->mu);
	curl_easy_cleanup(curl);
	return NULL;
}

static void report(struct control *c)
{
	json_t *st = actual_state(c);
	char *text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
	int64_t now = mono_ns();
	bool changed = !c->last_report || !text || strcmp(c->last_report, text);
	pthread_mutex_lock(&c->mu);
	int64_t period = c->report_ok ? HEARTBEAT_NS : RETRY_NS;
	pthread_mutex_unlock(&c->mu);

	if (!c->reporting || !text ||
	    (!changed && now - c->last_report_ns < period)) {
		free(text);
		json_decref(st);
		return;
	}
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	json_object_set_new(st, "time_ns",
			    json_integer((json_int_t)rt.tv_sec * 1000000000LL +
					 rt.tv_nsec));
	char *body = json_dumps(st, JSON_COMPACT);
	json_decref(st);
	free(c->last_report);
	c->last_report = text;
	c->last_report_ns = now;
	pthread_mutex_lock(&c->mu);
	free(c->pending); /* an older state is worth nothing now */
	c->pending = body;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void control_tick(struct control *c)
{
	if (c)
		report(c);
}

/* ---- applying a plan */

static json_t *apply(struct control *c, json_t *msg)
{
	json_t *old = json_object_get(c->applied, "sensors");
	json_t *new = json_object_get(msg, "sensors");
	json_t *diff = plan_diff(old, new);
	size_t nadd = json_array_size(json_object_get(diff, "add"));
	size_t ndel = json_array_size(json_object_get(diff, "delete"));
	json_t *epoch = json_object_get(msg, "epoch");
	json_t *plan = json_pack("{s:s, s:o, s:O, s:O}", "node", c->node,
				 "epoch",
				 epoch ? json_incref(epoch) : json_string(""),
				 "generation", json_object_get(msg, "generation"),
				 "sensors", new);

	c->plans++;
	if (json_equal(plan, c->applied)) {
		/* The same plan again (a retry, a re-push): nothing moves. */
		c->plans_unchanged++;
		json_decref(plan);
		return diff;
	}
	json_decref(c->applied);
	c->applied = plan;
	rebuild_want(c);
	save_state(c);
	log_info("control: plan generation %lld (epoch %s): %zu added, %zu "
		 "deleted, %zu kept",
		 (long long)json_integer_value(json_object_get(plan, "generation")),
		 json_string_value(json_object_get(plan, "epoch")), nadd, ndel,
		 json_array_size(json_object_get(diff, "stay")));
	if (nadd || ndel)
		agent_plan_changed(c->a); /* rediscover + retarget now */
	return diff;
}

static json_t *ids(const json_t *list)
{
	json_t *out = json_array();
	size_t i;
	json_t *s;
	json_array_foreach(list, i, s)
		json_array_append(out, json_object_get(s, "id"));
	return out;
}

static enum MHD_Result put_plan(struct control *c, struct MHD_Connection *conn,
				struct buf *body)
{
	json_error_t jerr;
	char err[300];
	json_t *msg = body->oom ? NULL
				: json_loadb(body->p ? body->p : "", body->len,
					     0, &jerr);

	if (!msg) {
		c->plans_bad++;
		snprintf(err, sizeof(err), "the plan is not JSON: %s",
			 body->oom ? "too large" : jerr.text);
		return http_error(conn, MHD_HTTP_BAD_REQUEST, err);
	}
	if (plan_message_check(msg, c->node, err, sizeof(err))) {
		c->plans_bad++;
		json_decref(msg);
		return http_error(conn, MHD_HTTP_BAD_REQUEST, err);
	}
	json_t *diff = apply(c, msg);
	json_decref(msg);
	json_t *st = actual_state(c);
	json_object_set_new(st, "applied",
			    json_pack("{s:o, s:o, s:I}", "add",
				      ids(json_object_get(diff, "add")),
				      "delete",
				      ids(json_object_get(diff, "delete")),
				      "stay",
				      (json_int_t)json_array_size(
					      json_object_get(diff, "stay"))));
	json_decref(diff);
	report(c); /* the server learns at once (if it changed) */
	return http_json(conn, MHD_HTTP_OK, st);
}

static bool authorized(struct control *c, struct MHD_Connection *conn)
{
	if (!c->token[0])
		return true;
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, c->token);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn,
			       const char *url, const char *method,
			       const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct control *c = cls;
	(void)version;

	if (!strcmp(method, "PUT") && !strcmp(url, "/v1/plan")) {
		struct buf *b = *con_cls;
		if (!b) {
			if (!(b = calloc(1, sizeof(*b))))
				return MHD_NO;
			*con_cls = b;
			return MHD_YES;
		}
		if (*upload_size) {
			if (b->len + *upload_size > BODY_MAX)
				b->oom = true;
			buf_add(b, upload, *upload_size);
			*upload_size = 0;
			return MHD_YES;
		}
		/* Authorized after the body is read: answering early would
		 * leave the client writing into a closed request. */
		if (!authorized(c, conn))
			return http_error(conn, MHD_HTTP_UNAUTHORIZED,
					  "missing or wrong bearer token");
		return put_plan(c, conn, b);
	}
	if (!authorized(c, conn))
		return http_error(conn, MHD_HTTP_UNAUTHORIZED,
				  "missing or wrong bearer token");
	if (!strcmp(url, "/v1/state") && !strcmp(method, "GET"))
		return http_json(conn, MHD_HTTP_OK, actual_state(c));
	if (!strcmp(url, "/v1/plan") && !strcmp(method, "GET"))
		return http_json(conn, MHD_HTTP_OK, json_deep_copy(c->applied));
	if (!strcmp(url, "/v1/state") || !strcmp(url, "/v1/plan"))
		return http_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "GET /v1/state, GET or PUT /v1/plan");
	return http_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint");
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct buf *b = *con_cls;
	if (b) {
		buf_free(b);
		free(b);
		*con_cls = NULL;
	}
}

struct control *control_open(struct agent *a, const struct control_opts *o)
{
	struct sockaddr_in sin;
	uint64_t rnd = 0;
	struct control *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->a = a;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	snprintf(c->node, sizeof(c->node), "%s", o->node);
	snprintf(c->token, sizeof(c->token), "%s", o->token ? o->token : "");
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
	snprintf(c->instance, sizeof(c->instance), "%016llx",
		 (unsigned long long)rnd);
	c->applied = empty_plan(c->node);

	if (http_parse_listen(o->listen, &sin)) {
		log_err("--control wants ADDR:PORT (IPv4), got '%s'", o->listen);
		goto fail;
	}
	if (!c->token[0] && sin.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		log_warn("control API on %s without a token: anyone who reaches "
			 "it can change the sensors (give --token)",
			 o->listen);
	/* Default 0.0.0.0 would be reported as such: name loopback then. */
	snprintf(c->url, sizeof(c->url), "http://%s%s",
		 o->listen[0] == ':' ? "127.0.0.1" : "", o->listen);

	const char *dir = o->state_dir ? o->state_dir : "/var/lib/sonde";
	if (mkdir(dir, 0700) && errno != EEXIST)
		log_warn("control: cannot create %s: %s", dir, strerror(errno));
	snprintf(c->state_path, sizeof(c->state_path), "%s/plan-%s.json", dir,
		 c->node);
	load_state(c);
	rebuild_want(c);

	c->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
				handler, c, MHD_OPTION_SOCK_ADDR,
				(struct sockaddr *)&sin,
				MHD_OPTION_NOTIFY_COMPLETED, completed, c,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
				MHD_OPTION_LISTENING_ADDRESS_REUSE,
				(unsigned int)1, MHD_OPTION_END);
	if (!c->d) {
		log_err("cannot serve the control API on %s (in use?)", o->listen);
		goto fail;
	}
	if (o->server && o->server[0]) {
		snprintf(c->report_url, sizeof(c->report_url),
			 "%s/v1/agents/%s/state", o->server, c->node);
		if (c->token[0])
			snprintf(c->auth, sizeof(c->auth),
				 "Authorization: Bearer %s", c->token);
		curl_global_init(CURL_GLOBAL_DEFAULT);
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		c->reporting = !pthread_create(&c->thread, NULL, reporter_main, c);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!c->reporting)
			log_warn("control: cannot start the reporter thread");
	}
	log_info("control API on %s (instance %s)%s%s", c->url, c->instance,
		 c->reporting ? ", reporting to " : "",
		 c->reporting ? c->report_url : "");
	return c;
fail:
	control_close(c);
	return NULL;
}

int control_fd(const struct control *c)
{
	const union MHD_DaemonInfo *i =
		MHD_get_daemon_info(c->d, MHD_DAEMON_INFO_EPOLL_FD);
	return i ? i->epoll_fd : -1;
}

void control_run(struct control *c)
{
	if (c && c->d)
		MHD_run(c->d);
}

void control_close(struct control *c)
{
	if (!c)
		return;
	if (c->d)
		MHD_stop_daemon(c->d);
	if (c->reporting) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->thread, NULL);
		curl_global_cleanup();
	}
	free(c->pending);
	free(c->last_report);
	json_decref(c->applied);
	json_decref(c->want);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}
