/* Agents' states and the plan push (agents.h).
 *
 * Generations are numbered by one server run: a restarted server starts
 * again from 1. So every push carries the server's epoch (new per run), and
 * an agent is in sync only when it reports both the epoch and the
 * generation of its node's plan. An agent applies any whole set it is sent
 * (it never compares generations), so after a server restart the agents'
 * heartbeats re-register them, their epoch differs, and they get the new
 * run's plan: no generation confusion, and a repeated push is harmless.
 *
 * One rule covers the three triggers (the plan changed, an agent restarted
 * with another plan, the server restarted): push when reported != desired.
 * The pusher looks every POLL_MS and at once when kicked (a state report,
 * a new policy); a failed push waits 250 ms doubling to 10 s, reset when
 * the agent reports again. */
#include "server/agents.h"
#include "lib/clock.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "server/controller.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define POLL_MS 200
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000
#define STALE_NS 15000000000LL

struct agents {
	struct controller *ctl;
	char auth[300];
	char epoch[17];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool kicked, stop;
	pthread_t thread;
	bool started;
	/* node -> {"state": last report or push answer, "last_seen_ns",
	 * "pushes", "push_failures", "last_error", "retry_at_ns" (mono),
	 * "backoff_ms"}; under mu */
	json_t *nodes;
	uint64_t reports, pushes, push_failures;
};

static const char *sget(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k)) ?: "";
}

static json_int_t iget(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void set_int(json_t *o, const char *k, json_int_t v)
{
	json_object_set_new(o, k, json_integer(v));
}

/* Called under mu. */
static json_t *entry(struct agents *g, const char *node)
{
	json_t *e = json_object_get(g->nodes, node);
	if (!e) {
		e = json_pack("{s:n, s:I, s:i, s:i, s:s, s:I, s:i}", "state",
			      "last_seen_ns", (json_int_t)0, "pushes", 0,
			      "push_failures", 0, "last_error", "",
			      "retry_at_ns", (json_int_t)0, "backoff_ms", 0);
		json_object_set_new(g->nodes, node, e);
	}
	return e;
}

int agents_report(struct agents *g, const char *node, const json_t *state,
		  char *err, size_t errlen)
{
	const char *url = json_string_value(json_object_get(state, "control_url"));
	const char *inst = json_string_value(json_object_get(state, "instance"));
	const char *n = json_string_value(json_object_get(state, "node"));

	if (!json_is_object(state)) {
		snprintf(err, errlen, "the state must be a JSON object");
		return -EINVAL;
	}
	if (!n || strcmp(n, node)) {
		snprintf(err, errlen, "state of node '%s' sent for '%s'",
			 n ? n : "(none)", node);
		return -EINVAL;
	}
	if (!url || strncmp(url, "http://", 7) || !inst || !*inst ||
	    !json_is_integer(json_object_get(state, "generation")) ||
	    !json_is_string(json_object_get(state, "epoch")) ||
	    !json_is_array(json_object_get(state, "sensors"))) {
		snprintf(err, errlen,
			 "the state needs control_url (http://...), instance, "
			 "epoch, generation and sensors");
		return -EINVAL;
	}
	pthread_mutex_lock(&g->mu);
	json_t *e = entry(g, node);
	json_t *old = json_object_get(e, "state");
	bool restarted = !json_is_object(old) || strcmp(sget(old, "instance"), inst);
	json_object_set_new(e, "state", json_deep_copy(state));
	set_int(e, "last_seen_ns", real_ns());
	if (restarted) {
		/* A new agent process (or a new control URL): no backoff
		 * from the old one's failures. */
		set_int(e, "retry_at_ns", 0);
		set_int(e, "backoff_ms", 0);
		log_info("agents: %s reports from %s (instance %s, epoch '%s', "
			 "generation %lld)",
			 node, url, inst, sget(state, "epoch"),
			 (long long)iget(state, "generation"));
	}
	g->reports++;
	g->kicked = true;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return 0;
}

json_t *agents_list(struct agents *g)
{
	json_t *plan = g->ctl ? controller_plan(g->ctl) : NULL;
	int64_t now = real_ns();
	pthread_mutex_lock(&g->mu);
	json_t *out = json_pack("{s:s, s:o}", "epoch", g->epoch, "agents",
				json_deep_copy(g->nodes));
	pthread_mutex_unlock(&g->mu);
	const char *node;
	json_t *e;
	json_object_foreach(json_object_get(out, "agents"), node, e) {
		json_t *want = json_object_get(plan, node);
		json_t *st = json_object_get(e, "state");
		json_object_del(e, "retry_at_ns");
		set_int(e, "desired_generation", iget(want, "generation"));
		json_object_set_new(e, "in_sync",
				    json_boolean(plan && !strcmp(sget(st, "epoch"), g->epoch) &&
						 iget(st, "generation") == iget(want, "generation")));
		json_object_set_new(e, "stale",
				    json_boolean(now - iget(e, "last_seen_ns") > STALE_NS));
	}
	json_decref(plan);
	return out;
}

void agents_kick(struct agents *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->mu);
	g->kicked = true;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* PUT url/v1/plan. Returns the agent's answer (its actual state) or NULL
 * with err set. */
static json_t *push(struct agents *g, CURL *curl, const char *url,
		    const char *body, char *err, size_t errlen)
{
	char full[1200];
	struct buf answer = { 0 };
	struct curl_slist *h = NULL;
	long status = 0;
	json_t *out = NULL;

	snprintf(full, sizeof(full), "%s/v1/plan", url);
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	if (g->auth[0])
		h = curl_slist_append(h, g->auth);
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, full);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buf_curl_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	CURLcode rc = curl_easy_perform(curl);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s", curl_easy_strerror(rc));
	} else {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		out = status == 200 && answer.p
			      ? json_loadb(answer.p, answer.len, 0, NULL)
			      : NULL;
		if (!out)
			snprintf(err, errlen, "HTTP %ld: %.200s", status,
				 answer.p ? answer.p : "");
	}
	curl_slist_free_all(h);
	buf_free(&answer);
	return out;
}

struct job {
	char node[256];
	char url[512];
	char *body;
	json_int_t generation;
};

static void *pusher_main(void *arg)
{
	struct agents *g = arg;
	CURL *curl = curl_easy_init();

	pthread_mutex_lock(&g->mu);
	while (!g->stop) {
		if (!g->kicked) {
			struct timespec dl;
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_nsec += POLL_MS * 1000000L;
			if (dl.tv_nsec >= 1000000000L) {
				dl.tv_sec++;
				dl.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&g->cv, &g->mu, &dl);
		}
		g->kicked = false;
		if (g->stop)
			break;
		pthread_mutex_unlock(&g->mu);
		json_t *plan = g->ctl ? controller_plan(g->ctl) : NULL;
		pthread_mutex_lock(&g->mu);
		if (!plan)
			continue; /* no controller, or lists not in yet */

		/* Who needs a push: decided under the lock, sent without. */
		size_t njobs = 0, cap = json_object_size(g->nodes);
		struct job *jobs = calloc(cap ? cap : 1, sizeof(*jobs));
		int64_t now = mono_ns();
		const char *node;
		json_t *e;
		json_object_foreach(g->nodes, node, e) {
			json_t *st = json_object_get(e, "state");
			json_t *want = json_object_get(plan, node);
			json_int_t gen = iget(want, "generation");
			if (!jobs || !json_is_object(st) ||
			    (!strcmp(sget(st, "epoch"), g->epoch) &&
			     iget(st, "generation") == gen) ||
			    now < iget(e, "retry_at_ns"))
				continue;
			json_t *sensors = json_object_get(want, "sensors");
			json_t *msg = json_pack("{s:s, s:s, s:I, s:o}", "node",
						node, "epoch", g->epoch,
						"generation", gen, "sensors",
						sensors ? json_incref(sensors)
							: json_array());
			struct job *j = &jobs[njobs++];
			snprintf(j->node, sizeof(j->node), "%s", node);
			snprintf(j->url, sizeof(j->url), "%s", sget(st, "control_url"));
			j->body = json_dumps(msg, JSON_COMPACT);
			j->generation = gen;
			json_decref(msg);
		}
		pthread_mutex_unlock(&g->mu);
		json_decref(plan);

		for (size_t i = 0; i < njobs; i++) {
			char err[300] = "";
			json_t *ans = curl && jobs[i].body
					      ? push(g, curl, jobs[i].url,
						     jobs[i].body, err, sizeof(err))
					      : NULL;
			pthread_mutex_lock(&g->mu);
			e = entry(g, jobs[i].node);
			if (ans) {
				g->pushes++;
				set_int(e, "pushes", iget(e, "pushes") + 1);
				set_int(e, "backoff_ms", 0);
				set_int(e, "retry_at_ns", 0);
				json_object_set_new(e, "last_error", json_string(""));
				/* The answer is the agent's state after the
				 * push: in sync without waiting for its
				 * next report. */
				json_object_del(ans, "applied");
				json_object_set_new(e, "state", ans);
				log_debug("agents: pushed generation %lld to %s",
					  (long long)jobs[i].generation,
					  jobs[i].node);
			} else {
				json_int_t b = iget(e, "backoff_ms");
				b = b ? (b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2)
				      : BACKOFF_MIN_MS;
				g->push_failures++;
				set_int(e, "push_failures", iget(e, "push_failures") + 1);
				set_int(e, "backoff_ms", b);
				set_int(e, "retry_at_ns", mono_ns() + b * 1000000LL);
				json_object_set_new(e, "last_error", json_string(err));
				log_debug("agents: push to %s (%s) failed: %s; "
					  "retry in %lld ms",
					  jobs[i].node, jobs[i].url, err, (long long)b);
			}
			pthread_mutex_unlock(&g->mu);
			free(jobs[i].body);
		}
		free(jobs);
		pthread_mutex_lock(&g->mu);
	}
	pthread_mutex_unlock(&g->mu);
	curl_easy_cleanup(curl);
	return NULL;
}

struct agents *agents_start(struct controller *ctl, const char *token)
{
	struct agents *g = calloc(1, sizeof(*g));
	uint64_t rnd = 0;

	if (!g)
		return NULL;
	g->ctl = ctl;
	g->nodes = json_object();
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	if (token && token[0])
		snprintf(g->auth, sizeof(g->auth), "Authorization: Bearer %s", token);
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)real_ns();
	snprintf(g->epoch, sizeof(g->epoch), "%016llx", (unsigned long long)rnd);
	if (ctl) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		g->started = !pthread_create(&g->thread, NULL, pusher_main, g);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!g->started) {
			log_err("agents: cannot start the plan pusher");
			agents_stop(g);
			return NULL;
		}
		log_info("agents: plan epoch %s", g->epoch);
	}
	return g;
}

void agents_metrics(struct agents *g, FILE *f)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->mu);
	fprintf(f,
		"# HELP sonde_server_agents Agents that reported their state.\n"
		"# TYPE sonde_server_agents gauge\n"
		"sonde_server_agents %zu\n"
		"# TYPE sonde_server_agent_reports_total counter\n"
		"sonde_server_agent_reports_total %llu\n"
		"# HELP sonde_server_plan_pushes_total Plans pushed to agents "
		"by outcome.\n"
		"# TYPE sonde_server_plan_pushes_total counter\n"
		"sonde_server_plan_pushes_total{result=\"ok\"} %llu\n"
		"sonde_server_plan_pushes_total{result=\"failed\"} %llu\n",
		json_object_size(g->nodes), (unsigned long long)g->reports,
		(unsigned long long)g->pushes,
		(unsigned long long)g->push_failures);
	pthread_mutex_unlock(&g->mu);
}

void agents_stop(struct agents *g)
{
	if (!g)
		return;
	if (g->started) {
		pthread_mutex_lock(&g->mu);
		g->stop = true;
		pthread_cond_signal(&g->cv);
		pthread_mutex_unlock(&g->mu);
		pthread_join(g->thread, NULL);
		curl_global_cleanup();
	}
	json_decref(g->nodes);
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
	free(g);
}
