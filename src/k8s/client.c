/* Informers over libcurl: one thread per watched resource runs
 *
 *   list (rv := list's resourceVersion, diff against the cache)
 *   loop: watch from rv; each event moves rv; a BOOKMARK only moves rv;
 *         the stream ends (server timeout) -> watch again from rv;
 *         a broken stream / refused connection -> backoff, watch again from rv;
 *         410 Gone (HTTP status or ERROR event) -> list again.
 *
 * Relisting diffs the new list against the cache, so events missed while
 * disconnected are delivered as ADDED / MODIFIED / DELETED: a consumer
 * never misses a final state, though it may miss intermediate ones (as with
 * client-go's informers). */
#include "k8s/k8s.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define WATCH_TIMEOUT_S 300

const char *const k8s_event_names[3] = { "ADDED", "MODIFIED", "DELETED" };

struct informer {
	struct k8s_client *client;
	char *resource, *label_sel, *field_sel;
	json_t *cache; /* uid -> object */
	char rv[32];   /* "" = list needed */
	bool synced;
	pthread_t thread;
	bool started;
	/* the current watch stream */
	char *line;
	size_t line_len, line_cap;
	bool gone;   /* 410 seen in the stream */
	bool got_event;
	CURLM *multi; /* the running watch, for k8s_client_free's wakeup */
};

struct k8s_client {
	struct k8s_config cfg;
	k8s_event_fn on_event;
	void *ctx;
	pthread_mutex_t mu; /* recursive: callbacks may call k8s_client_list */
	pthread_cond_t cv;
	struct informer *inf;
	size_t ninf;
	int efd;
	volatile bool stop;
	struct k8s_stats stats;
};

static void sleep_ms(struct k8s_client *c, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ms * 1000000ULL;
	ts.tv_sec += (time_t)(ns / 1000000000ULL);
	ts.tv_nsec = (long)(ns % 1000000000ULL);
	/* The condition variable is also broadcast when any informer syncs:
	 * only a stop may cut the backoff short, or a failing resource would
	 * be retried at once whenever another one lists. */
	pthread_mutex_lock(&c->mu);
	while (!c->stop &&
	       pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&c->mu);
}

static const char *obj_uid(const json_t *obj)
{
	return json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "uid"));
}

static const char *obj_rv(const json_t *obj)
{
	return json_string_value(json_object_get(
		json_object_get(obj, "metadata"), "resourceVersion"));
}

/* Called with c->mu held. */
static void deliver(struct informer *inf, enum k8s_event_type type,
		    const json_t *obj)
{
	struct k8s_client *c = inf->client;
	c->stats.events++;
	if (c->on_event)
		c->on_event(c->ctx, inf->resource, type, obj);
	uint64_t one = 1;
	if (write(c->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated only if nobody reads: harmless */
	}
}

static CURL *new_request(struct k8s_client *c, const char *url,
			 struct curl_slist **headers)
{
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	if (c->cfg.insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->cfg.ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_file);
	if (c->cfg.ca_pem) {
		struct curl_blob blob = { c->cfg.ca_pem, strlen(c->cfg.ca_pem),
					  CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
	}
	if (c->cfg.client_cert_pem && c->cfg.client_key_pem) {
		struct curl_blob cert = { c->cfg.client_cert_pem,
					  strlen(c->cfg.client_cert_pem),
					  CURL_BLOB_COPY };
		struct curl_blob key = { c->cfg.client_key_pem,
					 strlen(c->cfg.client_key_pem),
					 CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	}
	*headers = curl_slist_append(NULL, "Accept: application/json");
	char auth[4200] = "";
	if (c->cfg.token_file) {
		/* Re-read at each request: projected tokens rotate. */
		FILE *f = fopen(c->cfg.token_file, "r");
		char tok[4096] = "";
		if (f) {
			if (!fgets(tok, sizeof(tok), f))
				tok[0] = '\0';
			fclose(f);
		}
		tok[strcspn(tok, "\r\n")] = '\0';
		if (*tok)
			snprintf(auth, sizeof(auth),
				 "Authorization: Bearer %s", tok);
	}
	if (!*auth && c->cfg.token)
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
			 c->cfg.token);
	if (*auth)
		*headers = curl_slist_append(*headers, auth);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
	return h;
}

static int abort_check(void *p, curl_off_t a, curl_off_t b, curl_off_t d,
		       curl_off_t e)
{
	(void)a, (void)b, (void)d, (void)e;
	return ((struct k8s_client *)p)->stop ? 1 : 0;
}

static size_t collect(char *data, size_t size, size_t n, void *p)
{
	FILE *m = p;
	return fwrite(data, size, n, m);
}

static char *url_for(struct informer *inf, bool watch)
{
	char *url = NULL, *l = NULL, *f = NULL;
	CURL *h = curl_easy_init();
	if (inf->label_sel)
		l = curl_easy_escape(h, inf->label_sel, 0);
	if (inf->field_sel)
		f = curl_easy_escape(h, inf->field_sel, 0);
	char rv_part[160] = "";
	if (watch)
		snprintf(rv_part, sizeof(rv_part),
			 "&watch=1&allowWatchBookmarks=true&timeoutSeconds=%d"
			 "&resourceVersion=%s",
			 WATCH_TIMEOUT_S, inf->rv);
	if (asprintf(&url, "%s/api/v1/%s?limit=500%s%s%s%s%s",
		     inf->client->cfg.server, inf->resource, rv_part,
		     l ? "&labelSelector=" : "", l ? l : "",
		     f ? "&fieldSelector=" : "", f ? f : "") < 0)
		url = NULL;
	curl_free(l);
	curl_free(f);
	curl_easy_cleanup(h);
	return url;
}

/* Lists every page, then replaces the cache, reporting the differences. */
static int do_list(struct informer *inf)
{
	struct k8s_client *c = inf->client;
	json_t *items = json_array();
	char list_rv[32] = "", cont[1024] = "";
	char *base = url_for(inf, false);
	int rc = 0;

	for (;;) {
		char *url = NULL, *body = NULL;
		size_t len = 0;
		struct curl_slist *hdrs = NULL;
		if (*cont) {
			char *e = curl_easy_escape(NULL, cont, 0);
			if (asprintf(&url, "%s&continue=%s", base, e) < 0)
				url = NULL;
			curl_free(e);
		} else {
			url = strdup(base);
		}
		CURL *h = new_request(c, url, &hdrs);
		FILE *m = open_memstream(&body, &len);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, m);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
		CURLcode cc = curl_easy_perform(h);
		long code = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		fclose(m);
		curl_easy_cleanup(h);
		curl_slist_free_all(hdrs);
		free(url);
		json_error_t jerr;
		json_t *doc = cc == CURLE_OK ? json_loads(body, 0, &jerr) : NULL;
		if (cc != CURLE_OK || code != 200 ||
		    !json_is_array(json_object_get(doc, "items"))) {
			if (cc != CURLE_OK)
				log_warn("k8s: list %s: %s", inf->resource,
					 curl_easy_strerror(cc));
			else
				log_warn("k8s: list %s: HTTP %ld: %.200s",
					 inf->resource, code,
					 doc ? json_string_value(json_object_get(doc, "message")) ?: "malformed list" : "not JSON");
			json_decref(doc);
			free(body);
			rc = -EIO;
			break;
		}
		free(body);
		json_array_extend(items, json_object_get(doc, "items"));
		const json_t *meta = json_object_get(doc, "metadata");
		snprintf(list_rv, sizeof(list_rv), "%s",
			 json_string_value(json_object_get(meta, "resourceVersion")) ?: "");
		snprintf(cont, sizeof(cont), "%s",
			 json_string_value(json_object_get(meta, "continue")) ?: "");
		json_decref(doc);
		if (!*cont)
			break;
	}
	free(base);
	if (rc || !*list_rv) {
		if (!rc)
			log_warn("k8s: list %s: no resourceVersion", inf->resource);
		json_decref(items);
		return -EIO;
	}

	pthread_mutex_lock(&c->mu);
	c->stats.lists++;
	json_t *next = json_object();
	/* The differences are delivered after the cache is replaced, as a
	 * watch event is after its cache update: a callback that reads the
	 * cache (a replan) must see the state the event leads to. */
	json_t *changes = json_array();
	size_t i;
	json_t *obj;
	json_array_foreach(items, i, obj) {
		const char *uid = obj_uid(obj);
		if (!uid) {
			/* A real API server never sends one: say so, keep
			 * the rest of the list. */
			log_warn("k8s: list %s: item %zu without metadata.uid "
				 "ignored",
				 inf->resource, i);
			c->stats.errors++;
			continue;
		}
		json_object_set(next, uid, obj);
		json_t *old = json_object_get(inf->cache, uid);
		if (!old)
			json_array_append_new(changes, json_pack("[i, O]", K8S_ADDED, obj));
		else if (strcmp(obj_rv(old) ?: "", obj_rv(obj) ?: ""))
			json_array_append_new(changes, json_pack("[i, O]", K8S_MODIFIED, obj));
	}
	const char *uid;
	json_t *old;
	json_object_foreach(inf->cache, uid, old)
		if (!json_object_get(next, uid))
			json_array_append_new(changes, json_pack("[i, O]", K8S_DELETED, old));
	json_decref(inf->cache);
	inf->cache = next;
	json_t *ch;
	json_array_foreach(changes, i, ch)
		deliver(inf, (enum k8s_event_type)json_integer_value(json_array_get(ch, 0)),
			json_array_get(ch, 1));
	json_decref(changes);
	snprintf(inf->rv, sizeof(inf->rv), "%s", list_rv);
	if (!inf->synced) {
		inf->synced = true;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	json_decref(items);
	return 0;
}

static void handle_event(struct informer *inf, const char *line)
{
	struct k8s_client *c = inf->client;
	json_error_t jerr;
	json_t *ev = json_loads(line, 0, &jerr);
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");

	if (!type || !json_is_object(obj)) {
		log_warn("k8s: watch %s: malformed event ignored: %.120s",
			 inf->resource, line);
		pthread_mutex_lock(&c->mu);
		c->stats.errors++;
		pthread_mutex_unlock(&c->mu);
		json_decref(ev);
		return;
	}
	pthread_mutex_lock(&c->mu);
	if (!strcmp(type, "ERROR")) {
		long code = (long)json_integer_value(json_object_get(obj, "code"));
		if (code == 410) {
			inf->gone = true;
		} else {
			log_warn("k8s: watch %s: error %ld: %s", inf->resource,
				 code, json_string_value(json_object_get(obj, "message")) ?: "");
			c->stats.errors++;
		}
	} else if (!strcmp(type, "BOOKMARK")) {
		c->stats.bookmarks++;
		if (obj_rv(obj))
			snprintf(inf->rv, sizeof(inf->rv), "%s", obj_rv(obj));
	} else {
		const char *uid = obj_uid(obj), *rv = obj_rv(obj);
		enum k8s_event_type t = !strcmp(type, "ADDED")	  ? K8S_ADDED
					: !strcmp(type, "MODIFIED") ? K8S_MODIFIED
					: !strcmp(type, "DELETED")  ? K8S_DELETED
								    : (enum k8s_event_type)-1;
		if (!uid || !rv || (int)t < 0) {
			log_warn("k8s: watch %s: event without uid/resourceVersion "
				 "or of unknown type '%s' ignored",
				 inf->resource, type);
			c->stats.errors++;
		} else {
			if (t == K8S_DELETED)
				json_object_del(inf->cache, uid);
			else
				json_object_set(inf->cache, uid, obj);
			snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
			inf->got_event = true;
			deliver(inf, t, obj);
		}
	}
	pthread_mutex_unlock(&c->mu);
	json_decref(ev);
}

static size_t stream_data(char *data, size_t size, size_t n, void *p)
{
	struct informer *inf = p;
	size_t total = size * n;
	for (size_t i = 0; i < total; i++) {
		if (data[i] == '\n') {
			if (inf->line_len) {
				inf->line[inf->line_len] = '\0';
				handle_event(inf, inf->line);
				inf->line_len = 0;
			}
			if (inf->gone)
				return 0; /* abort: relist */
			continue;
		}
		if (inf->line_len + 2 > inf->line_cap) {
			inf->line_cap = inf->line_cap ? inf->line_cap * 2 : 65536;
			inf->line = realloc(inf->line, inf->line_cap);
			if (!inf->line)
				return 0;
		}
		inf->line[inf->line_len++] = data[i];
	}
	return total;
}

/* One watch request. Returns 0 when the stream ended cleanly (server
 * timeout), -EAGAIN when it broke, -ESTALE on 410 Gone. */
static int do_watch(struct informer *inf)
{
	struct k8s_client *c = inf->client;
	struct curl_slist *hdrs = NULL;
	char *url = url_for(inf, true);
	CURL *h = new_request(c, url, &hdrs);

	inf->line_len = 0;
	inf->gone = false;
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stream_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, inf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, abort_check);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	/* A silent server: bookmarks and events stop for this long. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)WATCH_TIMEOUT_S + 30);
	pthread_mutex_lock(&c->mu);
	c->stats.watches++;
	pthread_mutex_unlock(&c->mu);
	log_debug("k8s: watch %s from %s", inf->resource, inf->rv);
	/* A multi handle so that k8s_client_free can wake the transfer up
	 * (curl_multi_wakeup) instead of waiting for the progress callback,
	 * which an idle stream calls only once a second. */
	CURLM *m = curl_multi_init();
	curl_multi_add_handle(m, h);
	pthread_mutex_lock(&c->mu);
	inf->multi = m;
	pthread_mutex_unlock(&c->mu);
	CURLcode cc = CURLE_OK;
	int running = 1;
	while (running && !c->stop) {
		if (curl_multi_perform(m, &running) != CURLM_OK)
			break;
		if (running)
			curl_multi_poll(m, NULL, 0, 1000, NULL);
	}
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(m, &left)))
		if (msg->msg == CURLMSG_DONE)
			cc = msg->data.result;
	if (running)
		cc = CURLE_ABORTED_BY_CALLBACK;
	pthread_mutex_lock(&c->mu);
	inf->multi = NULL;
	pthread_mutex_unlock(&c->mu);
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(m, h);
	curl_multi_cleanup(m);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	free(url);
	if (inf->gone || code == 410) {
		pthread_mutex_lock(&c->mu);
		c->stats.gone++;
		pthread_mutex_unlock(&c->mu);
		log_info("k8s: watch %s: resourceVersion %s expired (410 Gone): "
			 "relisting",
			 inf->resource, inf->rv);
		return -ESTALE;
	}
	if (cc == CURLE_OK && code == 200)
		return 0;
	pthread_mutex_lock(&c->mu);
	c->stats.errors++;
	pthread_mutex_unlock(&c->mu);
	if (!c->stop)
		log_info("k8s: watch %s broke (%s, HTTP %ld): resuming from %s",
			 inf->resource, curl_easy_strerror(cc), code, inf->rv);
	return -EAGAIN;
}

static void *informer_main(void *p)
{
	struct informer *inf = p;
	struct k8s_client *c = inf->client;
	unsigned backoff = BACKOFF_MIN_MS;

	while (!c->stop) {
		int rc;
		if (!inf->rv[0]) {
			rc = do_list(inf);
		} else {
			inf->got_event = false;
			rc = do_watch(inf);
			if (rc == -ESTALE) {
				inf->rv[0] = '\0';
				continue;
			}
			if (inf->got_event)
				backoff = BACKOFF_MIN_MS;
		}
		if (c->stop)
			break;
		if (rc == 0) {
			if (!inf->rv[0])
				backoff = BACKOFF_MIN_MS;
			continue;
		}
		/* Jitter, so many informers do not reconnect in lockstep. */
		unsigned ms = backoff / 2 + (unsigned)rand() % (backoff / 2 + 1);
		sleep_ms(c, ms);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

struct k8s_client *k8s_client_new(const struct k8s_config *cfg,
				  k8s_event_fn on_event, void *ctx)
{
	struct k8s_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c->cfg.server = strdup(cfg->server);
	/* Without a trailing slash: paths are appended. */
	size_t sl = strlen(c->cfg.server);
	while (sl && c->cfg.server[sl - 1] == '/')
		c->cfg.server[--sl] = '\0';
#define DUP(f) c->cfg.f = cfg->f ? strdup(cfg->f) : NULL
	DUP(token);
	DUP(token_file);
	DUP(ca_file);
	DUP(ca_pem);
	DUP(client_cert_pem);
	DUP(client_key_pem);
	DUP(namespace_);
#undef DUP
	c->cfg.insecure = cfg->insecure;
	memcpy(c->cfg.source, cfg->source, sizeof(c->cfg.source));
	c->on_event = on_event;
	c->ctx = ctx;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&c->mu, &a);
	pthread_mutexattr_destroy(&a);
	pthread_cond_init(&c->cv, NULL);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return c;
}

int k8s_client_watch(struct k8s_client *c, const char *resource,
		     const char *label_selector, const char *field_selector)
{
	struct informer *n = realloc(c->inf, (c->ninf + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	c->inf = n;
	struct informer *inf = &c->inf[c->ninf++];
	memset(inf, 0, sizeof(*inf));
	inf->client = c;
	inf->resource = strdup(resource);
	inf->label_sel = label_selector ? strdup(label_selector) : NULL;
	inf->field_sel = field_selector ? strdup(field_selector) : NULL;
	inf->cache = json_object();
	return 0;
}

int k8s_client_start(struct k8s_client *c)
{
	for (size_t i = 0; i < c->ninf; i++) {
		int rc = pthread_create(&c->inf[i].thread, NULL, informer_main,
					&c->inf[i]);
		if (rc)
			return -rc;
		c->inf[i].started = true;
	}
	return 0;
}

int k8s_client_wait_synced(struct k8s_client *c, int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)timeout_ms * 1000000ULL;
	ts.tv_sec += (time_t)(ns / 1000000000ULL);
	ts.tv_nsec = (long)(ns % 1000000000ULL);
	int rc = 0;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		bool all = true;
		for (size_t i = 0; i < c->ninf; i++)
			all &= c->inf[i].synced;
		if (all)
			break;
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

json_t *k8s_client_list(struct k8s_client *c, const char *resource)
{
	json_t *out = json_array();
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->ninf; i++) {
		if (strcmp(c->inf[i].resource, resource))
			continue;
		const char *uid;
		json_t *obj;
		json_object_foreach(c->inf[i].cache, uid, obj)
			json_array_append_new(out, json_deep_copy(obj));
	}
	pthread_mutex_unlock(&c->mu);
	return out;
}

int k8s_client_fd(struct k8s_client *c)
{
	return c->efd;
}

void k8s_client_stats(struct k8s_client *c, struct k8s_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->stats;
	pthread_mutex_unlock(&c->mu);
}

void k8s_client_free(struct k8s_client *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_broadcast(&c->cv);
	for (size_t i = 0; i < c->ninf; i++)
		if (c->inf[i].multi)
			curl_multi_wakeup(c->inf[i].multi);
	pthread_mutex_unlock(&c->mu);
	for (size_t i = 0; i < c->ninf; i++) {
		struct informer *inf = &c->inf[i];
		if (inf->started)
			pthread_join(inf->thread, NULL);
		free(inf->resource);
		free(inf->label_sel);
		free(inf->field_sel);
		free(inf->line);
		json_decref(inf->cache);
	}
	free(c->inf);
	close(c->efd);
	k8s_config_free(&c->cfg);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	curl_global_cleanup();
}
