/* The agent's discovery report to the server (discovery.h). The agent's
 * loop hands over each new document; this thread owns the copy it sends,
 * so no JSON value is shared between threads. */
#include "agent/discovery.h"
#include "lib/clock.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct disc_reporter {
	char url[1200];
	char auth[600];
	char node[256];
	char instance[17];
	uint64_t heartbeat_ns;
	int64_t started_ns;

	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	json_t *latest;	   /* under mu; owned */
	uint64_t seq, sent_seq;
	bool stopping;
	uint64_t sent, failed, changes;
};

/* PUT one document. Returns the HTTP status, 0 when unreachable. */
static long put_doc(struct disc_reporter *r, CURL *curl, const char *body,
		    struct buf *answer)
{
	struct curl_slist *h = NULL;
	long status = 0;

	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	if (r->auth[0])
		h = curl_slist_append(h, r->auth);
	curl_easy_setopt(curl, CURLOPT_URL, r->url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
			 (curl_off_t)strlen(body));
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buf_curl_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, answer);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	return status;
}

static void *reporter_main(void *arg)
{
	struct disc_reporter *r = arg;
	CURL *curl = curl_easy_init();
	int64_t next_send = 0, backoff = 0;
	bool failing = false;

	pthread_mutex_lock(&r->mu);
	while (curl && !r->stopping) {
		int64_t now = clock_ns(CLOCK_MONOTONIC);
		bool changed = r->seq != r->sent_seq;
		if (!r->latest || (!(changed && !backoff) && now < next_send)) {
			/* Wait for a new document, the next heartbeat or the
			 * end of a retry pause. */
			if (!r->latest || !next_send) {
				pthread_cond_wait(&r->cv, &r->mu);
			} else {
				struct timespec ts = {
					.tv_sec = next_send / 1000000000LL,
					.tv_nsec = next_send % 1000000000LL
				};
				pthread_cond_timedwait(&r->cv, &r->mu, &ts);
			}
			continue;
		}
		json_t *doc = json_deep_copy(r->latest);
		uint64_t seq = r->seq;
		pthread_mutex_unlock(&r->mu);

		json_object_set_new(doc, "time_ns",
				    json_integer(clock_ns(CLOCK_REALTIME)));
		json_object_set_new(
			doc, "agent",
			json_pack("{s:s, s:s, s:I, s:I, s:I}", "instance",
				  r->instance, "version", SONDE_VERSION,
				  "heartbeat_ns", (json_int_t)r->heartbeat_ns,
				  "started_ns", (json_int_t)r->started_ns,
				  "pid", (json_int_t)getpid()));
		char *body = json_dumps(doc, JSON_COMPACT);
		json_decref(doc);
		struct buf answer = { 0 };
		long status = body ? put_doc(r, curl, body, &answer) : -1;
		free(body);

		pthread_mutex_lock(&r->mu);
		now = clock_ns(CLOCK_MONOTONIC);
		if (status >= 200 && status < 300) {
			if (failing)
				log_info("discovery: the server takes our "
					 "reports again");
			failing = false;
			r->sent++;
			r->sent_seq = seq;
			backoff = 0;
			next_send = now + (int64_t)r->heartbeat_ns;
		} else if (status == 400 || status == 413 || status < 0) {
			/* The server will not take this document: resending
			 * it would not help; the next change or heartbeat
			 * sends a new one. */
			r->failed++;
			r->sent_seq = seq;
			log_warn("discovery: the server refused our report "
				 "(HTTP %ld): %s", status,
				 answer.p ? answer.p : "");
			backoff = 0;
			next_send = now + (int64_t)r->heartbeat_ns;
		} else {
			r->failed++;
			if (!failing)
				log_warn("discovery: cannot report to %s (%s); "
					 "retrying", r->url,
					 status ? (status == 401 || status == 403
							   ? "token refused"
							   : "HTTP error")
						: "unreachable");
			failing = true;
			backoff = backoff ? backoff * 2 : 500000000LL;
			if (backoff > (int64_t)r->heartbeat_ns)
				backoff = (int64_t)r->heartbeat_ns;
			next_send = now + backoff;
		}
		buf_free(&answer);
	}
	pthread_mutex_unlock(&r->mu);
	curl_easy_cleanup(curl);
	return NULL;
}

struct disc_reporter *disc_reporter_start(const char *server,
					  const char *token, const char *node,
					  uint64_t heartbeat_ns)
{
	struct disc_reporter *r = calloc(1, sizeof(*r));
	pthread_condattr_t ca;
	uint64_t rnd = 0;

	if (!r)
		return NULL;
	snprintf(r->url, sizeof(r->url), "%s/v1/agents/%s/discovery", server,
		 node);
	if (token && token[0])
		snprintf(r->auth, sizeof(r->auth), "Authorization: Bearer %s",
			 token);
	snprintf(r->node, sizeof(r->node), "%s", node);
	/* One id per agent run: the server (and a reader) can tell a
	 * restarted agent from one that kept running. */
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)clock_ns(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32);
	snprintf(r->instance, sizeof(r->instance), "%016llx",
		 (unsigned long long)rnd);
	r->heartbeat_ns = heartbeat_ns;
	r->started_ns = clock_ns(CLOCK_REALTIME);
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* Signals belong to the agent's signalfd, not to this thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&r->thread, NULL, reporter_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		pthread_mutex_destroy(&r->mu);
		pthread_cond_destroy(&r->cv);
		curl_global_cleanup();
		free(r);
		errno = err;
		return NULL;
	}
	log_info("discovery: reporting node %s to %s every %llu ms and at "
		 "each change", node, r->url,
		 (unsigned long long)(heartbeat_ns / 1000000));
	return r;
}

void disc_reporter_update(struct disc_reporter *r, json_t *doc)
{
	if (!doc)
		return;
	pthread_mutex_lock(&r->mu);
	if (r->latest && json_equal(r->latest, doc)) {
		pthread_mutex_unlock(&r->mu);
		json_decref(doc);
		return;
	}
	json_decref(r->latest);
	r->latest = doc;
	r->seq++;
	r->changes++;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void disc_reporter_status(struct disc_reporter *r, json_t *out)
{
	pthread_mutex_lock(&r->mu);
	json_object_set_new(out, "discovery",
			    json_pack("{s:I, s:I, s:I}", "sent",
				      (json_int_t)r->sent, "failed",
				      (json_int_t)r->failed, "changes",
				      (json_int_t)r->changes));
	pthread_mutex_unlock(&r->mu);
}

void disc_reporter_stop(struct disc_reporter *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	json_decref(r->latest);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	curl_global_cleanup();
	free(r);
}
