/* `sonde lab apiserver`: the lab's Kubernetes API stand-in.
 *
 * It serves the lab's state (state.json, which lab/lab.sh replaces
 * atomically on every change) as v1 objects with the API server's read
 * protocol: discovery, get, list (with the list's resourceVersion) and watch
 * (?watch=1&resourceVersion=N: chunked JSON events ADDED / MODIFIED /
 * DELETED / BOOKMARK / ERROR 410 Gone), label and field selectors, bearer
 * token auth, TLS. Writes are not served: the lab changes the cluster
 * through lab.sh, the stand-in turns each new state into events by diffing
 * the objects of the old and the new state.
 *
 * Threads: libmicrohttpd runs one thread per connection (a watch blocks in
 * its content reader until an event arrives), one thread follows the state
 * file with inotify, the main thread waits for signals:
 *   SIGTERM/SIGINT  stop;
 *   SIGUSR1         drop every open watch mid-stream (tests: a watch that
 *                   breaks without a clean end);
 *   SIGHUP          re-read the state.
 * resourceVersions survive a restart (kept in --rv-file) and jump forward
 * by a gap, and the event history starts empty, so a client that resumes
 * from an older version gets 410 Gone and must relist, as against a real
 * API server whose watch cache was reset. */
#include "lab/kobj.h"
#include "lab/lab.h"
#include "lib/log.h"
#include "lib/opts.h"
#include "lib/sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define API_RV_GAP 1000
#define API_DEFAULT_WATCH_TIMEOUT_S 1800

enum ev_type { EV_ADDED, EV_MODIFIED, EV_DELETED };
static const char *const ev_names[] = { "ADDED", "MODIFIED", "DELETED" };

struct stored {
	enum kobj_resource res;
	char *key;   /* "pods/bookinfo/ratings-v1-..." */
	char *canon; /* the object without resourceVersion, sorted keys */
	json_t *obj; /* with metadata.resourceVersion */
};

struct event {
	uint64_t rv;
	enum ev_type type;
	enum kobj_resource res;
	json_t *obj;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* broadcast on every new event, drop and stop */
	uint64_t rv;	   /* the latest resourceVersion */
	/* A watch may resume from any version >= compacted; older ones have
	 * left the history (or predate this process): 410 Gone. */
	uint64_t compacted;
	struct stored *objs;
	size_t nobjs;
	struct event *ring;
	size_t ring_cap, ring_start, ring_len;
	unsigned drop_gen;
	bool stopping;
	bool loaded;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static const char *opt_listen = "127.0.0.1:6443";
static const char *opt_state = LAB_STATE_FILE;
static const char *opt_token_file;
static const char *opt_cert, *opt_key;
static const char *opt_rv_file;
static const char *opt_ready_file;
static long opt_history = 1000;
static uint64_t opt_bookmark_ns = 5000000000ULL;
static char *token;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* --- the store: objects and the event history --------------------------- */

static void set_rv(json_t *obj, uint64_t rv)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)rv);
	json_object_set_new(json_object_get(obj, "metadata"),
			    "resourceVersion", json_string(buf));
}

static void persist_rv(void)
{
	if (!opt_rv_file)
		return;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt_rv_file);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%llu\n", (unsigned long long)S.rv);
	if (fclose(f) == 0)
		rename(tmp, opt_rv_file);
}

/* Called with S.mu held. Takes a reference to obj. */
static void record_event(enum ev_type type, enum kobj_resource res, json_t *obj)
{
	struct event *e;
	if (S.ring_len == S.ring_cap) {
		e = &S.ring[S.ring_start];
		S.compacted = e->rv;
		json_decref(e->obj);
		S.ring_start = (S.ring_start + 1) % S.ring_cap;
		S.ring_len--;
	}
	e = &S.ring[(S.ring_start + S.ring_len) % S.ring_cap];
	e->rv = S.rv;
	e->type = type;
	e->res = res;
	e->obj = json_incref(obj);
	S.ring_len++;
}

static char *object_key(enum kobj_resource r, const json_t *obj)
{
	const json_t *m = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(m, "namespace"));
	const char *name = json_string_value(json_object_get(m, "name"));
	char *key;
	if (asprintf(&key, "%s/%s/%s", kobj_resource_names[r], ns ? ns : "",
		     name ? name : "") < 0)
		return NULL;
	return key;
}

/* Replaces the store with the objects of a new state, recording an event
 * for every object added, changed or removed. Called with S.mu held. */
static size_t apply_objects(json_t *all, bool initial)
{
	struct stored *next = NULL;
	size_t nnext = 0, cap = 0, nevents = 0;
	/* key -> index into S.objs: a linear search per object made a state
	 * of 1000 pods cost a million comparisons per change. */
	json_t *index = json_object();
	for (size_t j = 0; j < S.nobjs; j++)
		json_object_set_new(index, S.objs[j].key, json_integer((json_int_t)j));

	for (int r = 0; r < KOBJ_N; r++) {
		size_t i;
		json_t *obj;
		json_array_foreach(json_object_get(all, kobj_resource_names[r]), i, obj) {
			if (nnext == cap) {
				cap = cap ? cap * 2 : 64;
				next = realloc(next, cap * sizeof(*next));
				if (!next)
					abort();
			}
			struct stored *s = &next[nnext++];
			s->res = (enum kobj_resource)r;
			s->key = object_key(s->res, obj);
			s->canon = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
			s->obj = json_incref(obj);
			struct stored *old = NULL;
			json_t *at = json_object_get(index, s->key);
			if (at && S.objs[json_integer_value(at)].key)
				old = &S.objs[json_integer_value(at)];
			if (old && !strcmp(old->canon, s->canon)) {
				json_decref(s->obj);
				s->obj = json_incref(old->obj);
			} else {
				S.rv++;
				set_rv(s->obj, S.rv);
				if (!initial)
					record_event(old ? EV_MODIFIED : EV_ADDED,
						     s->res, s->obj);
				nevents++;
			}
			if (old) {
				free(old->key);
				old->key = NULL; /* matched: not deleted */
			}
		}
	}
	for (size_t j = 0; j < S.nobjs; j++) {
		struct stored *old = &S.objs[j];
		if (old->key) {
			/* A deleted object is sent as its last state with the
			 * deletion's resourceVersion, as the API server does. */
			json_t *gone = json_deep_copy(old->obj);
			S.rv++;
			set_rv(gone, S.rv);
			record_event(EV_DELETED, old->res, gone);
			json_decref(gone);
			nevents++;
			free(old->key);
		}
		free(old->canon);
		json_decref(old->obj);
	}
	json_decref(index);
	free(S.objs);
	S.objs = next;
	S.nobjs = nnext;
	return nevents;
}

static int load_state(bool initial)
{
	json_error_t err;
	json_t *state = json_load_file(opt_state, 0, &err);
	if (!state) {
		log_warn("apiserver: cannot read %s: %s (line %d); keeping the "
			 "previous objects",
			 opt_state, err.text, err.line);
		return -1;
	}
	json_t *all = kobj_from_state(state);
	json_decref(state);
	if (!all) {
		log_warn("apiserver: %s is not a lab state; keeping the previous "
			 "objects",
			 opt_state);
		return -1;
	}
	pthread_mutex_lock(&S.mu);
	size_t n = apply_objects(all, initial);
	if (initial)
		S.compacted = S.rv;
	S.loaded = true;
	if (n)
		persist_rv();
	pthread_cond_broadcast(&S.cv);
	pthread_mutex_unlock(&S.mu);
	json_decref(all);
	if (n)
		log_debug("apiserver: state reloaded: %zu events, rv %llu", n,
			  (unsigned long long)S.rv);
	return 0;
}

/* Follows the state file: lab.sh replaces it by rename, so watch the
 * directory for IN_MOVED_TO; a poll every second catches anything else. */
static void *state_follower(void *arg)
{
	(void)arg;
	char dir[4096], *slash;
	snprintf(dir, sizeof(dir), "%s", opt_state);
	slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : opt_state;
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (fd >= 0 && inotify_add_watch(fd, dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
		log_warn("apiserver: inotify on %s: %s (polling instead)", dir,
			 strerror(errno));
	struct stat last = { 0 };
	stat(opt_state, &last);
	for (;;) {
		pthread_mutex_lock(&S.mu);
		bool stop = S.stopping;
		pthread_mutex_unlock(&S.mu);
		if (stop)
			break;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		bool changed = false;
		if (fd >= 0 && poll(&pfd, 1, 1000) > 0) {
			char buf[4096] __attribute__((aligned(8)));
			ssize_t n;
			while ((n = read(fd, buf, sizeof(buf))) > 0)
				for (char *p = buf; p < buf + n;) {
					struct inotify_event *ev = (void *)p;
					if (ev->len && !strcmp(ev->name, base))
						changed = true;
					p += sizeof(*ev) + ev->len;
				}
		} else if (fd < 0) {
			sleep(1);
		}
		struct stat st;
		if (stat(opt_state, &st) == 0 &&
		    (st.st_ino != last.st_ino ||
		     st.st_mtim.tv_nsec != last.st_mtim.tv_nsec ||
		     st.st_mtim.tv_sec != last.st_mtim.tv_sec)) {
			changed = true;
			last = st;
		}
		if (changed)
			load_state(false);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* --- HTTP ---------------------------------------------------------------- */

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code,
				 json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	size_t len = strlen(text);
	text[len] = '\0';
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, text, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-cache, private");
	enum MHD_Result ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static json_t *status_object(unsigned code, const char *reason,
			     const char *message)
{
	return json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind",
			 "Status", "apiVersion", "v1", "metadata", "status",
			 "Failure", "message", message, "reason", reason,
			 "code", (int)code);
}

static enum MHD_Result send_status(struct MHD_Connection *c, unsigned code,
				   const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static enum MHD_Result send_status(struct MHD_Connection *c, unsigned code,
				   const char *reason, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return send_json(c, code, status_object(code, reason, msg));
}

static const char *q(struct MHD_Connection *c, const char *key)
{
	return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

static bool truthy(const char *v)
{
	return v && (!strcmp(v, "1") || !strcasecmp(v, "true"));
}

static json_t *discovery_resources(void)
{
	static const char *const singular[KOBJ_N] = { "node", "namespace", "pod",
						      "service", "endpoints" };
	static const char *const shorts[KOBJ_N] = { "no", "ns", "po", "svc", "ep" };
	json_t *list = json_array();
	for (int r = 0; r < KOBJ_N; r++)
		json_array_append_new(
			list,
			json_pack("{s:s, s:s, s:b, s:s, s:[s, s, s], s:[s]}",
				  "name", kobj_resource_names[r], "singularName",
				  singular[r], "namespaced",
				  kobj_namespaced((enum kobj_resource)r), "kind",
				  kobj_kind_names[r], "verbs", "get", "list",
				  "watch", "shortNames", shorts[r]));
	return json_pack("{s:s, s:s, s:o}", "kind", "APIResourceList",
			 "groupVersion", "v1", "resources", list);
}

struct request {
	enum kobj_resource res;
	const char *ns;	  /* NULL: all namespaces */
	const char *name; /* NULL: a collection */
	const char *label_sel, *field_sel;
};

static bool request_matches(const struct request *rq, enum kobj_resource res,
			    const json_t *obj)
{
	if (res != rq->res)
		return false;
	const json_t *m = json_object_get(obj, "metadata");
	if (rq->ns &&
	    strcmp(rq->ns, json_string_value(json_object_get(m, "namespace")) ?: ""))
		return false;
	if (rq->name &&
	    strcmp(rq->name, json_string_value(json_object_get(m, "name")) ?: ""))
		return false;
	return kobj_matches(obj, rq->label_sel, rq->field_sel);
}

/* --- watch: a chunked stream, one JSON event and "\n" per chunk ---------- */

struct watch {
	struct request rq;
	char *ns_copy, *name_copy, *label_copy, *field_copy;
	uint64_t cursor;      /* events with rv > cursor are still to send */
	uint64_t deadline_ns; /* timeoutSeconds */
	uint64_t last_bookmark_ns;
	bool bookmarks;
	unsigned drop_gen;
	char *buf;
	size_t len, off, cap;
	bool done;
};

static void watch_append(struct watch *w, const char *type, json_t *obj)
{
	json_t *ev = json_pack("{s:s, s:O}", "type", type, "object", obj);
	char *line = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	size_t n = strlen(line);
	if (w->len + n + 1 > w->cap) {
		w->cap = (w->len + n + 1) * 2;
		w->buf = realloc(w->buf, w->cap);
		if (!w->buf)
			abort();
	}
	memcpy(w->buf + w->len, line, n);
	w->buf[w->len + n] = '\n';
	w->len += n + 1;
	free(line);
}

static void watch_free(void *p)
{
	struct watch *w = p;
	free(w->buf);
	free(w->ns_copy);
	free(w->name_copy);
	free(w->label_copy);
	free(w->field_copy);
	free(w);
}

/* Called with S.mu held: queues the events after the cursor. */
static void watch_collect(struct watch *w)
{
	for (size_t i = 0; i < S.ring_len; i++) {
		struct event *e = &S.ring[(S.ring_start + i) % S.ring_cap];
		if (e->rv <= w->cursor)
			continue;
		if (request_matches(&w->rq, e->res, e->obj))
			watch_append(w, ev_names[e->type], e->obj);
		w->cursor = e->rv;
	}
	if (S.rv > w->cursor)
		w->cursor = S.rv;
}

static ssize_t watch_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct watch *w = cls;
	(void)pos;

	if (w->off == w->len) {
		w->off = w->len = 0;
		if (w->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		pthread_mutex_lock(&S.mu);
		for (;;) {
			if (S.stopping || w->drop_gen != S.drop_gen) {
				pthread_mutex_unlock(&S.mu);
				/* Ends the connection without the final chunk:
				 * the client sees a broken stream. */
				return MHD_CONTENT_READER_END_WITH_ERROR;
			}
			if (w->cursor < S.compacted) {
				char msg[160];
				snprintf(msg, sizeof(msg),
					 "too old resource version: %llu (%llu)",
					 (unsigned long long)w->cursor,
					 (unsigned long long)S.compacted);
				json_t *st = status_object(410, "Expired", msg);
				watch_append(w, "ERROR", st);
				json_decref(st);
				w->done = true;
				break;
			}
			watch_collect(w);
			if (w->len)
				break;
			uint64_t now = now_ns();
			if (now >= w->deadline_ns) {
				w->done = true;
				break;
			}
			uint64_t wake = w->deadline_ns;
			if (w->bookmarks) {
				uint64_t next = w->last_bookmark_ns + opt_bookmark_ns;
				if (now >= next) {
					char rv[32];
					snprintf(rv, sizeof(rv), "%llu",
						 (unsigned long long)w->cursor);
					json_t *bm = json_pack(
						"{s:s, s:s, s:{s:s}}", "kind",
						kobj_kind_names[w->rq.res],
						"apiVersion", "v1", "metadata",
						"resourceVersion", rv);
					watch_append(w, "BOOKMARK", bm);
					json_decref(bm);
					w->last_bookmark_ns = now;
					break;
				}
				if (next < wake)
					wake = next;
			}
			/* The condition variable uses CLOCK_REALTIME: convert
			 * the monotonic wake time into a relative wait. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t wait = wake - now;
			if (wait > 1000000000ULL)
				wait = 1000000000ULL;
			uint64_t abs = (uint64_t)ts.tv_sec * 1000000000ULL +
				       (uint64_t)ts.tv_nsec + wait;
			ts.tv_sec = (time_t)(abs / 1000000000ULL);
			ts.tv_nsec = (long)(abs % 1000000000ULL);
			pthread_cond_timedwait(&S.cv, &S.mu, &ts);
		}
		pthread_mutex_unlock(&S.mu);
		if (!w->len)
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	size_t n = w->len - w->off;
	if (n > max)
		n = max;
	memcpy(out, w->buf + w->off, n);
	w->off += n;
	return (ssize_t)n;
}

static enum MHD_Result start_watch(struct MHD_Connection *c,
				   const struct request *rq)
{
	const char *rv_s = q(c, "resourceVersion");
	const char *timeout_s = q(c, "timeoutSeconds");
	struct watch *w = calloc(1, sizeof(*w));
	if (!w)
		return MHD_NO;
	w->rq = *rq;
	w->ns_copy = rq->ns ? strdup(rq->ns) : NULL;
	w->name_copy = rq->name ? strdup(rq->name) : NULL;
	w->label_copy = rq->label_sel ? strdup(rq->label_sel) : NULL;
	w->field_copy = rq->field_sel ? strdup(rq->field_sel) : NULL;
	w->rq.ns = w->ns_copy;
	w->rq.name = w->name_copy;
	w->rq.label_sel = w->label_copy;
	w->rq.field_sel = w->field_copy;
	w->bookmarks = truthy(q(c, "allowWatchBookmarks"));
	long timeout = API_DEFAULT_WATCH_TIMEOUT_S;
	if (timeout_s) {
		char *end;
		timeout = strtol(timeout_s, &end, 10);
		if (*end || timeout < 0) {
			watch_free(w);
			return send_status(c, 400, "BadRequest",
					   "invalid timeoutSeconds: %s", timeout_s);
		}
		if (timeout == 0)
			timeout = API_DEFAULT_WATCH_TIMEOUT_S;
	}
	w->deadline_ns = now_ns() + (uint64_t)timeout * 1000000000ULL;
	w->last_bookmark_ns = now_ns();

	pthread_mutex_lock(&S.mu);
	w->drop_gen = S.drop_gen;
	if (!rv_s || !*rv_s || !strcmp(rv_s, "0")) {
		/* No version: the current objects as synthetic ADDED events,
		 * then everything after them. */
		for (size_t i = 0; i < S.nobjs; i++)
			if (request_matches(rq, S.objs[i].res, S.objs[i].obj))
				watch_append(w, "ADDED", S.objs[i].obj);
		w->cursor = S.rv;
	} else {
		char *end;
		unsigned long long v = strtoull(rv_s, &end, 10);
		if (*end) {
			pthread_mutex_unlock(&S.mu);
			watch_free(w);
			return send_status(c, 400, "BadRequest",
					   "invalid resourceVersion: %s", rv_s);
		}
		w->cursor = v;
	}
	pthread_mutex_unlock(&S.mu);

	struct MHD_Response *r = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, 16384, watch_read, w, watch_free);
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-cache, private");
	enum MHD_Result ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result serve_list_or_get(struct MHD_Connection *c,
					 const struct request *rq)
{
	json_t *items = json_array();
	json_t *found = NULL;
	char rv[32];

	pthread_mutex_lock(&S.mu);
	snprintf(rv, sizeof(rv), "%llu", (unsigned long long)S.rv);
	for (size_t i = 0; i < S.nobjs; i++)
		if (request_matches(rq, S.objs[i].res, S.objs[i].obj)) {
			json_array_append(items, S.objs[i].obj);
			if (rq->name && !found)
				found = json_incref(S.objs[i].obj);
		}
	pthread_mutex_unlock(&S.mu);
	if (rq->name) {
		json_decref(items);
		if (!found)
			return send_status(c, 404, "NotFound",
					   "%s \"%s\" not found",
					   kobj_resource_names[rq->res], rq->name);
		return send_json(c, 200, found);
	}
	char kind[64];
	snprintf(kind, sizeof(kind), "%sList", kobj_kind_names[rq->res]);
	return send_json(c, 200,
			 json_pack("{s:s, s:s, s:{s:s}, s:o}", "kind", kind,
				   "apiVersion", "v1", "metadata",
				   "resourceVersion", rv, "items", items));
}

static bool authorized(struct MHD_Connection *c)
{
	if (!token)
		return true;
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    "Authorization");
	return h && !strncasecmp(h, "Bearer ", 7) && !strcmp(h + 7, token);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	(void)cls, (void)version, (void)upload;
	/* The first call only announces the request (headers read). */
	if (!*con_cls) {
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0; /* bodies are ignored: no writes here */
		return MHD_YES;
	}
	log_debug("apiserver: %s %s", method, url);
	if (!strcmp(url, "/healthz") || !strcmp(url, "/livez") ||
	    !strcmp(url, "/readyz")) {
		struct MHD_Response *r = MHD_create_response_from_buffer(
			2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
		enum MHD_Result ret = MHD_queue_response(c, 200, r);
		MHD_destroy_response(r);
		return ret;
	}
	if (!strcmp(url, "/version"))
		/* kubectl here dispatches on the minor version to one of its
		 * bundled clients (1.27 .. 1.33). */
		return send_json(c, 200,
				 json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
					   "major", "1", "minor", "28",
					   "gitVersion", "v1.28.0-sonde-lab",
					   "gitCommit", "sonde", "buildDate",
					   "2026-01-01T00:00:00Z", "goVersion",
					   "go1.20", "platform", "linux/amd64"));
	if (!authorized(c))
		return send_status(c, 401, "Unauthorized", "Unauthorized");
	if (strcmp(method, "GET"))
		return send_status(c, 405, "MethodNotAllowed",
				   "the lab's API is read-only: change the "
				   "cluster with sonde lab (move, ...)");
	if (!strcmp(url, "/api") || !strcmp(url, "/api/"))
		return send_json(c, 200,
				 json_pack("{s:s, s:[s], s:[{s:s, s:s}]}", "kind",
					   "APIVersions", "versions", "v1",
					   "serverAddressByClientCIDRs",
					   "clientCIDR", "0.0.0.0/0",
					   "serverAddress", opt_listen));
	if (!strcmp(url, "/apis") || !strcmp(url, "/apis/"))
		return send_json(c, 200,
				 json_pack("{s:s, s:s, s:[]}", "kind",
					   "APIGroupList", "apiVersion", "v1",
					   "groups"));
	if (!strcmp(url, "/api/v1") || !strcmp(url, "/api/v1/"))
		return send_json(c, 200, discovery_resources());
	if (strncmp(url, "/api/v1/", 8))
		return send_status(c, 404, "NotFound", "the server could not "
				   "find the requested resource");

	/* /api/v1/[watch/](RES[/NAME] | namespaces/NS/RES[/NAME]) */
	char path[1024];
	snprintf(path, sizeof(path), "%s", url + 8);
	bool watch = truthy(q(c, "watch"));
	char *seg[6] = { 0 };
	int nseg = 0;
	for (char *save = NULL, *t = strtok_r(path, "/", &save); t && nseg < 6;
	     t = strtok_r(NULL, "/", &save))
		seg[nseg++] = t;
	int i = 0;
	if (nseg > 0 && !strcmp(seg[0], "watch"))
		watch = true, i = 1;
	struct request rq = { 0 };
	const char *res_name = NULL;
	if (nseg - i >= 3 && !strcmp(seg[i], "namespaces")) {
		rq.ns = seg[i + 1];
		res_name = seg[i + 2];
		rq.name = nseg - i >= 4 ? seg[i + 3] : NULL;
		if (nseg - i > 4)
			res_name = NULL;
	} else if (nseg - i >= 1 && nseg - i <= 2) {
		res_name = seg[i];
		rq.name = nseg - i == 2 ? seg[i + 1] : NULL;
	}
	int res = res_name ? kobj_resource_parse(res_name) : -1;
	if (res < 0 || strcmp(res_name, kobj_resource_names[res]))
		return send_status(c, 404, "NotFound",
				   "the server could not find the requested "
				   "resource");
	rq.res = (enum kobj_resource)res;
	if (rq.ns && !kobj_namespaced(rq.res))
		return send_status(c, 404, "NotFound", "%s are not namespaced",
				   res_name);
	rq.label_sel = q(c, "labelSelector");
	rq.field_sel = q(c, "fieldSelector");
	if (kobj_selector_check(rq.label_sel, false))
		return send_status(c, 400, "BadRequest",
				   "unable to parse requirement: labelSelector "
				   "\"%s\" (the lab evaluates k=v, k==v, k!=v, "
				   "k, !k)",
				   rq.label_sel);
	if (kobj_selector_check(rq.field_sel, true))
		return send_status(c, 400, "BadRequest",
				   "\"%s\" is not a known field selector: only "
				   "metadata.name, metadata.namespace, "
				   "spec.nodeName, status.phase, status.podIP",
				   rq.field_sel);
	if (watch)
		return start_watch(c, &rq);
	return serve_list_or_get(c, &rq);
}

/* --- main ----------------------------------------------------------------- */

static const struct opt api_opts[] = {
	{ "listen", 'l', OPT_STRING, &opt_listen, "IP:PORT",
	  "loopback address to listen on (default 127.0.0.1:6443)" },
	{ "state", 's', OPT_STRING, &opt_state, "FILE",
	  "lab state to serve (default " LAB_STATE_FILE ")" },
	{ "token-file", 0, OPT_STRING, &opt_token_file, "FILE",
	  "bearer token every request but /version and /healthz must carry" },
	{ "tls-cert", 0, OPT_STRING, &opt_cert, "FILE", "serve HTTPS with this certificate (PEM)" },
	{ "tls-key", 0, OPT_STRING, &opt_key, "FILE", "and this key (PEM)" },
	{ "rv-file", 0, OPT_STRING, &opt_rv_file, "FILE",
	  "keeps the latest resourceVersion across restarts" },
	{ "history", 0, OPT_INT, &opt_history, "N",
	  "events kept for watches resuming from a version (default 1000); "
	  "older versions get 410 Gone" },
	{ "bookmark-interval", 0, OPT_DURATION, &opt_bookmark_ns, "DUR",
	  "BOOKMARK events to watches that allow them, this often (default 5s)" },
	{ "ready-file", 0, OPT_STRING, &opt_ready_file, "FILE",
	  "written once the server listens" },
	OPT_END,
};

static const struct cmd_spec api_spec = {
	"sonde lab apiserver", "[OPTIONS]",
	"Serve the lab's state as a read-only Kubernetes API (list, watch).",
	api_opts, NULL,
};

int lab_apiserver_main(int argc, char **argv)
{
	int npos = 0, rc = opts_parse(&api_spec, argc, argv, &npos);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (npos) {
		opts_usage(&api_spec, stderr);
		return 2;
	}
	char host[64];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *colon = strrchr(opt_listen, ':');
	long port = colon ? strtol(colon + 1, NULL, 10) : 0;
	snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - opt_listen) : 0,
		 opt_listen);
	if (!colon || port <= 0 || port > 65535 ||
	    inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
		log_err("--listen must be a loopback IPv4 address and port such "
			"as 127.0.0.1:6443, not '%s' (the lab's API never "
			"listens outside loopback)",
			opt_listen);
		return 2;
	}
	sa.sin_port = htons((uint16_t)port);
	if (opt_history < 1 || opt_history > 1000000) {
		log_err("--history must be between 1 and 1000000");
		return 2;
	}
	if (opt_token_file) {
		token = sys_read_file(opt_token_file);
		if (!token || !*token) {
			log_err("cannot read a token from %s", opt_token_file);
			return 1;
		}
		token[strcspn(token, "\r\n")] = '\0';
	}
	char *cert = NULL, *key = NULL;
	if (!!opt_cert != !!opt_key) {
		log_err("--tls-cert and --tls-key go together");
		return 2;
	}
	if (opt_cert) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			log_err("this libmicrohttpd has no TLS support");
			return 1;
		}
		cert = sys_read_file(opt_cert);
		key = sys_read_file(opt_key);
		if (!cert || !key) {
			log_err("cannot read %s or %s", opt_cert, opt_key);
			return 1;
		}
	}

	S.ring_cap = (size_t)opt_history;
	S.ring = calloc(S.ring_cap, sizeof(*S.ring));
	if (opt_rv_file) {
		char *saved = sys_read_file(opt_rv_file);
		if (saved)
			S.rv = strtoull(saved, NULL, 10);
		free(saved);
	}
	/* A restart jumps forward: versions handed out by the previous run
	 * are older than every new one and not in the new history. */
	S.rv += API_RV_GAP;
	if (load_state(true)) {
		log_err("apiserver: no lab state to serve at %s", opt_state);
		return 1;
	}

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	unsigned flags = MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (cert)
		flags |= MHD_USE_TLS;
	struct MHD_Daemon *d;
	if (cert)
		d = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL,
				     MHD_OPTION_SOCK_ADDR, &sa,
				     MHD_OPTION_HTTPS_MEM_CERT, cert,
				     MHD_OPTION_HTTPS_MEM_KEY, key,
				     MHD_OPTION_CONNECTION_TIMEOUT, 0u,
				     MHD_OPTION_END);
	else
		d = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL,
				     MHD_OPTION_SOCK_ADDR, &sa,
				     MHD_OPTION_CONNECTION_TIMEOUT, 0u,
				     MHD_OPTION_END);
	if (!d) {
		log_err("apiserver: cannot listen on %s (in use? another lab's "
			"API?)",
			opt_listen);
		return 1;
	}
	pthread_t follower;
	pthread_create(&follower, NULL, state_follower, NULL);
	if (opt_ready_file) {
		FILE *f = fopen(opt_ready_file, "w");
		if (f) {
			fprintf(f, "%d\n", getpid());
			fclose(f);
		}
	}
	log_info("apiserver: serving %s on %s://%s (rv %llu)", opt_state,
		 cert ? "https" : "http", opt_listen, (unsigned long long)S.rv);

	for (;;) {
		int sig;
		if (sigwait(&sigs, &sig))
			continue;
		if (sig == SIGUSR1) {
			pthread_mutex_lock(&S.mu);
			S.drop_gen++;
			pthread_cond_broadcast(&S.cv);
			pthread_mutex_unlock(&S.mu);
			log_info("apiserver: dropping every open watch");
		} else if (sig == SIGHUP) {
			load_state(false);
		} else {
			break;
		}
	}
	pthread_mutex_lock(&S.mu);
	S.stopping = true;
	pthread_cond_broadcast(&S.cv);
	pthread_mutex_unlock(&S.mu);
	MHD_stop_daemon(d);
	pthread_join(follower, NULL);
	for (size_t i = 0; i < S.nobjs; i++) {
		free(S.objs[i].key);
		free(S.objs[i].canon);
		json_decref(S.objs[i].obj);
	}
	free(S.objs);
	for (size_t i = 0; i < S.ring_len; i++)
		json_decref(S.ring[(S.ring_start + i) % S.ring_cap].obj);
	free(S.ring);
	free(token);
	free(cert);
	free(key);
	return 0;
}
