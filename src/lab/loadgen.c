/* `sonde lab loadgen`: open-loop, constant-rate HTTP/1.1 load, one thread.
 *
 * Request i is due at t0 + i/RPS whatever the server does. A closed-loop
 * client (send, wait, send) slows down with the server and so hides exactly
 * the latency it should report ("coordinated omission"); here a slow server
 * only makes requests start late, and each log line carries both its due
 * time and its actual start, so lateness is visible and can be added back.
 *
 * libcurl's multi interface in its socket form drives the transfers from our
 * own epoll loop: an absolute timerfd wakes us for the next due request
 * (libcurl's own timer has only millisecond resolution). We hand libcurl at
 * most --connections transfers at a time, with the same limit on its
 * connection pool, so it never queues one internally where we could not see
 * the wait: a due request with no free connection waits in our schedule and
 * its lateness is recorded. Easy handles are reused, and so are their
 * keep-alive connections. Name resolution is libcurl's (getaddrinfo), so the
 * pod's /etc/resolv.conf applies, and its DNS cache keeps lookups to one a
 * minute. */
#include "lab/hist.h"
#include "lab/lab.h"
#include "lab/loadgen.h"
#include "lib/log.h"
#include "lib/opts.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC LOADGEN_NSEC_PER_SEC
#define NSEC_PER_MSEC 1000000ULL
/* A start later than this after its due time counts as a late start. */
#define LATE_NS NSEC_PER_MSEC
/* After SIGTERM/SIGINT, transfers in flight get this long to finish. */
#define STOP_GRACE_NS NSEC_PER_SEC
#define LOG_BUFFER (256 << 10)
#define MAX_STATUS 600

/* epoll tags: curl sockets carry their fd, ours sit above 2^32. */
#define TAG_SIGNAL (1ULL << 32)
#define TAG_SCHED (2ULL << 32)

struct loadgen;

struct slot {
	CURL *easy;
	struct loadgen *lg;
	uint64_t due_ns, start_ns; /* monotonic */
	bool busy;
	char errbuf[CURL_ERROR_SIZE];
};

struct loadgen {
	CURLM *multi;
	int epfd, sfd, tfd;
	struct slot *slots;
	int nslots, nbusy;

	uint64_t rps, timeout_ns, duration_ns;
	uint64_t t0;	       /* CLOCK_MONOTONIC when request 0 is due */
	int64_t mono_to_unix;  /* add to a monotonic time for unix ns */
	uint64_t next;	       /* index of the next request to start */
	uint64_t end;	       /* requests to send; UINT64_MAX: no end */
	uint64_t sched_at;     /* what the timerfd is armed for, 0 none */
	uint64_t curl_at;      /* libcurl's timeout, monotonic; 0 none */
	uint64_t stop_at;      /* give up on transfers in flight; 0 none */
	int signals;

	struct reqlog log;
	bool logging;

	uint64_t sent, completed, errors, skipped, abandoned, late;
	uint64_t status_count[MAX_STATUS + 1]; /* last: out of range */
	uint64_t error_count[CURL_LAST];
	struct hist total_us, late_us;
	uint64_t start_wall_ns;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t to_unix(const struct loadgen *lg, uint64_t mono)
{
	return (uint64_t)((int64_t)mono + lg->mono_to_unix);
}

/* ---------------------------------------------------------------- curl glue */

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp,
		   void *socketp)
{
	struct loadgen *lg = userp;
	struct epoll_event ev = { .data.u64 = (uint64_t)s };

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		/* libcurl may have closed it already, which removed it. */
		epoll_ctl(lg->epfd, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(lg->multi, s, NULL);
		return 0;
	}
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
		    ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (socketp) {
		if (epoll_ctl(lg->epfd, EPOLL_CTL_MOD, s, &ev) == 0)
			return 0;
		if (errno != ENOENT)
			goto fail;
	}
	/* A socket fd libcurl closed without telling us and reopened with
	 * the same number is still registered: modify it instead. */
	if (epoll_ctl(lg->epfd, EPOLL_CTL_ADD, s, &ev) &&
	    (errno != EEXIST || epoll_ctl(lg->epfd, EPOLL_CTL_MOD, s, &ev)))
		goto fail;
	curl_multi_assign(lg->multi, s, lg);
	return 0;
fail:
	log_err("loadgen: epoll_ctl on socket %d: %s", (int)s, strerror(errno));
	return -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct loadgen *lg = userp;

	(void)multi;
	if (timeout_ms < 0)
		lg->curl_at = 0;
	else
		lg->curl_at = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	return 0;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void)ptr;
	(void)userdata;
	return size * nmemb;
}

static int setup_easy(struct loadgen *lg, struct slot *s, const char *url)
{
	long timeout_ms = (long)(lg->timeout_ns / NSEC_PER_MSEC);
	CURL *e = curl_easy_init();

	if (!e)
		return -ENOMEM;
	s->easy = e;
	s->lg = lg;
	if (curl_easy_setopt(e, CURLOPT_URL, url) ||
	    curl_easy_setopt(e, CURLOPT_PRIVATE, s) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf) ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard) ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
			     (long)CURL_HTTP_VERSION_1_1) ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) ||
	    /* "" ignores http_proxy and friends: lab traffic goes to the
	     * lab, never through whatever proxy the host has. */
	    curl_easy_setopt(e, CURLOPT_PROXY, "") ||
	    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) ||
	    curl_easy_setopt(e, CURLOPT_USERAGENT,
			     "sonde-loadgen/" SONDE_VERSION) ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"))
		return -EINVAL;
	return 0;
}

/* ---------------------------------------------------------------- requests */

static void record(struct loadgen *lg, const struct reqlog_rec *r)
{
	if (lg->logging &&
	    reqlog_add(&lg->log, r, mono_ns()) && lg->log.write_errors == 1)
		log_warn("loadgen: cannot write the request log");
}

static void start_request(struct loadgen *lg, uint64_t due, uint64_t now)
{
	struct slot *s = NULL;

	for (int i = 0; i < lg->nslots; i++)
		if (!lg->slots[i].busy) {
			s = &lg->slots[i];
			break;
		}
	s->busy = true;
	s->due_ns = due;
	s->start_ns = now;
	s->errbuf[0] = '\0';
	lg->nbusy++;
	lg->sent++;
	hist_add(&lg->late_us, (now - due) / 1000);
	if (now - due > LATE_NS)
		lg->late++;
	CURLMcode mc = curl_multi_add_handle(lg->multi, s->easy);
	if (mc) {
		/* Only on a libcurl bug or out of memory: record it as a
		 * failed request and move on. */
		struct reqlog_rec r = {
			.start_unix_ns = to_unix(lg, now),
			.due_unix_ns = to_unix(lg, due),
			.error = curl_multi_strerror(mc),
		};
		s->busy = false;
		lg->nbusy--;
		lg->errors++;
		record(lg, &r);
	}
}

/* A request that could not start within the timeout would have failed
 * for its user anyway: it is logged as an error, not sent, so that a backlog
 * behind a stalled server stays bounded at rate x timeout. */
static void skip_request(struct loadgen *lg, uint64_t due, uint64_t now)
{
	struct reqlog_rec r = {
		.start_unix_ns = to_unix(lg, now),
		.due_unix_ns = to_unix(lg, due),
		.error = "skipped: no free connection within the timeout",
	};

	lg->skipped++;
	record(lg, &r);
}

static void arm_sched(struct loadgen *lg, uint64_t at)
{
	struct itimerspec its = { 0 };

	if (at == lg->sched_at)
		return;
	its.it_value.tv_sec = (time_t)(at / NSEC_PER_SEC);
	its.it_value.tv_nsec = (long)(at % NSEC_PER_SEC);
	if (timerfd_settime(lg->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		lg->sched_at = at;
	else
		log_err("loadgen: timerfd_settime: %s", strerror(errno));
}

/* Starts every request that is due, as far as connections allow, and arms
 * the timer for the next one. */
static void start_due(struct loadgen *lg, uint64_t now)
{
	while (lg->next < lg->end) {
		uint64_t due = loadgen_due_ns(lg->t0, lg->next, lg->rps);

		if (due > now) {
			arm_sched(lg, due);
			return;
		}
		if (now - due > lg->timeout_ns) {
			skip_request(lg, due, now);
		} else if (lg->nbusy < lg->nslots) {
			start_request(lg, due, now);
		} else {
			/* A completion will call us again. */
			arm_sched(lg, 0);
			return;
		}
		lg->next++;
	}
	arm_sched(lg, 0);
}

static void finish(struct loadgen *lg, CURL *e, CURLcode rc)
{
	struct slot *s = NULL;
	curl_off_t total = 0, connect = 0, ttfb = 0, pre = 0, bytes = 0;
	long status = 0;

	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total);
	curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connect);
	curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &ttfb);
	/* libcurl stamps pretransfer when it moves from sending the request
	 * to receiving the answer (its DID state), so total minus this is
	 * about request sent -> response done, without the wait between our
	 * handing the transfer over and libcurl's turn to send it. Caveat
	 * (tests/integration/lab_faults.sh): curl 7.88 sometimes takes that
	 * stamp only after the answer is in, which makes the span short. */
	curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre);
	curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &bytes);

	struct reqlog_rec r = {
		.start_unix_ns = to_unix(lg, s->start_ns),
		.due_unix_ns = to_unix(lg, s->due_ns),
		.status = status,
		.total_us = (uint64_t)total,
		.connect_us = (uint64_t)connect,
		.ttfb_us = (uint64_t)ttfb,
		.pretransfer_us = (uint64_t)pre,
		.bytes = (uint64_t)bytes,
	};
	if (rc != CURLE_OK) {
		r.error = s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc);
		lg->errors++;
		if ((unsigned int)rc < CURL_LAST)
			lg->error_count[rc]++;
	} else {
		lg->completed++;
		lg->status_count[status >= 0 && status < MAX_STATUS ?
					 status :
					 MAX_STATUS]++;
		hist_add(&lg->total_us, (uint64_t)total);
	}
	record(lg, &r);
	curl_multi_remove_handle(lg->multi, e);
	s->busy = false;
	lg->nbusy--;
}

static void reap(struct loadgen *lg)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(lg->multi, &left)))
		if (m->msg == CURLMSG_DONE)
			finish(lg, m->easy_handle, m->data.result);
}

/* ---------------------------------------------------------------- summary */

static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void summary(const struct loadgen *lg)
{
	uint64_t span = mono_ns() - lg->t0;
	/* A --duration run is over when its last request is due; draining
	 * the transfers in flight does not make the rate lower. */
	if (lg->duration_ns && span > lg->duration_ns)
		span = lg->duration_ns;
	double secs = (double)span / 1e9;
	double cpu = cpu_seconds();
	char line[1024];
	size_t p = 0;

	if (secs <= 0)
		secs = 1e-9;
	log_info("loadgen: %.1f s at %" PRIu64 "/s: sent %" PRIu64
		 " (%.1f/s), completed %" PRIu64 ", errors %" PRIu64
		 ", skipped %" PRIu64 ", abandoned %" PRIu64,
		 secs, lg->rps, lg->sent, (double)lg->sent / secs,
		 lg->completed, lg->errors, lg->skipped, lg->abandoned);
	for (int i = 0; i <= MAX_STATUS && p < sizeof(line) - 32; i++)
		if (lg->status_count[i])
			p += (size_t)snprintf(line + p, sizeof(line) - p,
					      " %s%d: %" PRIu64,
					      i == MAX_STATUS ? ">=" : "", i,
					      lg->status_count[i]);
	log_info("loadgen: by status:%s", p ? line : " none");
	for (int i = 0; i < CURL_LAST; i++)
		if (lg->error_count[i])
			log_info("loadgen: error '%s': %" PRIu64,
				 curl_easy_strerror((CURLcode)i),
				 lg->error_count[i]);
	log_info("loadgen: total_ms p50 %.3f p99 %.3f max %.3f",
		 (double)hist_quantile(&lg->total_us, 0.5) / 1e3,
		 (double)hist_quantile(&lg->total_us, 0.99) / 1e3,
		 (double)lg->total_us.max / 1e3);
	log_info("loadgen: late starts (> %.0f ms after due): %" PRIu64
		 ", lateness p99 %.3f ms, max %.3f ms",
		 (double)LATE_NS / 1e6, lg->late,
		 (double)hist_quantile(&lg->late_us, 0.99) / 1e3,
		 (double)lg->late_us.max / 1e3);
	log_info("loadgen: cpu %.2f s (%.1f%% of one core)", cpu,
		 100.0 * cpu / secs);
}

/* ---------------------------------------------------------------- main loop */

static void on_signal(struct loadgen *lg, uint64_t now)
{
	struct signalfd_siginfo si;

	while (read(lg->sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGUSR1) {
			summary(lg);
			continue;
		}
		lg->signals++;
		lg->end = lg->next; /* start nothing more */
		/* The first signal lets transfers in flight finish briefly;
		 * a second one stops at once. */
		if (lg->signals == 1 && lg->nbusy)
			lg->stop_at = now + STOP_GRACE_NS;
		else
			lg->stop_at = now;
	}
}

static void dispatch(struct loadgen *lg, const struct epoll_event *ev,
		     uint64_t now)
{
	int running, flags = 0;
	uint64_t ticks;

	if (ev->data.u64 == TAG_SIGNAL) {
		on_signal(lg, now);
		return;
	}
	if (ev->data.u64 == TAG_SCHED) {
		if (read(lg->tfd, &ticks, sizeof(ticks)) > 0)
			lg->sched_at = 0;
		return;
	}
	if (ev->events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (ev->events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (ev->events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(lg->multi, (curl_socket_t)ev->data.u64,
				 flags, &running);
}

/* Milliseconds until the earliest of the given deadlines (0 = none),
 * rounded up so that we never wake before one; -1 when there is none. */
static int wait_ms(uint64_t now, const uint64_t *at, int n)
{
	uint64_t first = 0;

	for (int i = 0; i < n; i++)
		if (at[i] && (!first || at[i] < first))
			first = at[i];
	if (!first)
		return -1;
	if (first <= now)
		return 0;
	uint64_t ms = (first - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC;
	return ms > 60000 ? 60000 : (int)ms;
}

static int run(struct loadgen *lg)
{
	struct epoll_event evs[64];
	int running;

	for (;;) {
		uint64_t now = mono_ns();

		if (lg->curl_at && lg->curl_at <= now) {
			lg->curl_at = 0;
			curl_multi_socket_action(lg->multi, CURL_SOCKET_TIMEOUT,
						 0, &running);
			reap(lg);
			now = mono_ns();
		}
		start_due(lg, now);
		/* Transfers just added want libcurl's attention at once. */
		if (lg->curl_at && lg->curl_at <= now)
			continue;
		if (lg->next >= lg->end && !lg->stop_at)
			/* --duration is over: let what is in flight finish. */
			lg->stop_at = now + lg->timeout_ns;
		if (lg->stop_at && (!lg->nbusy || now >= lg->stop_at))
			return 0;
		if (lg->logging && reqlog_flush_due(&lg->log, now))
			reqlog_flush(&lg->log);

		uint64_t flush_at =
			lg->logging ? reqlog_flush_deadline(&lg->log) : 0;
		uint64_t at[3] = { lg->curl_at, lg->stop_at, flush_at };
		int n = epoll_wait(lg->epfd, evs, 64, wait_ms(now, at, 3));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("loadgen: epoll_wait: %s", strerror(errno));
			return -errno;
		}
		now = mono_ns();
		for (int i = 0; i < n; i++)
			dispatch(lg, &evs[i], now);
		reap(lg);
	}
}

static int setup(struct loadgen *lg, const char *url, long conns,
		 sigset_t *mask)
{
	struct epoll_event ev = { .events = EPOLLIN };

	lg->epfd = epoll_create1(EPOLL_CLOEXEC);
	lg->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	lg->sfd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (lg->epfd < 0 || lg->tfd < 0 || lg->sfd < 0)
		return -errno;
	ev.data.u64 = TAG_SIGNAL;
	if (epoll_ctl(lg->epfd, EPOLL_CTL_ADD, lg->sfd, &ev))
		return -errno;
	ev.data.u64 = TAG_SCHED;
	if (epoll_ctl(lg->epfd, EPOLL_CTL_ADD, lg->tfd, &ev))
		return -errno;

	lg->multi = curl_multi_init();
	if (!lg->multi)
		return -ENOMEM;
	curl_multi_setopt(lg->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(lg->multi, CURLMOPT_SOCKETDATA, lg);
	curl_multi_setopt(lg->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(lg->multi, CURLMOPT_TIMERDATA, lg);
	curl_multi_setopt(lg->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
	curl_multi_setopt(lg->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
	curl_multi_setopt(lg->multi, CURLMOPT_MAXCONNECTS, conns);

	lg->nslots = (int)conns;
	lg->slots = calloc((size_t)conns, sizeof(*lg->slots));
	if (!lg->slots)
		return -ENOMEM;
	for (int i = 0; i < lg->nslots; i++) {
		int err = setup_easy(lg, &lg->slots[i], url);
		if (err)
			return err;
	}
	return 0;
}

static void teardown(struct loadgen *lg)
{
	for (int i = 0; lg->slots && i < lg->nslots; i++) {
		struct slot *s = &lg->slots[i];
		if (!s->easy)
			continue;
		if (s->busy) {
			curl_multi_remove_handle(lg->multi, s->easy);
			lg->abandoned++;
		}
		curl_easy_cleanup(s->easy);
	}
	free(lg->slots);
	if (lg->multi)
		curl_multi_cleanup(lg->multi);
	if (lg->epfd >= 0)
		close(lg->epfd);
	if (lg->tfd >= 0)
		close(lg->tfd);
	if (lg->sfd >= 0)
		close(lg->sfd);
}

static const char *opt_url;
static long opt_rate = -1;
static long opt_conns = 8;
static uint64_t opt_duration;
static uint64_t opt_timeout = 10 * NSEC_PER_SEC;
static const char *opt_log;

static const struct opt loadgen_opts[] = {
	{ "url", 'u', OPT_STRING, &opt_url, "URL",
	  "http:// URL to GET (required)" },
	{ "rate", 'r', OPT_INT, &opt_rate, "RPS",
	  "requests per second, 1..1000000 (required)" },
	{ "connections", 'c', OPT_INT, &opt_conns, "N",
	  "at most N connections, kept alive (default 8)" },
	{ "duration", 'd', OPT_DURATION, &opt_duration, "DUR",
	  "stop after DUR, e.g. 10s (default: run until SIGTERM/SIGINT)" },
	{ "timeout", 't', OPT_DURATION, &opt_timeout, "DUR",
	  "per-request timeout (default 10s)" },
	{ "log", 'l', OPT_STRING, &opt_log, "FILE",
	  "append one JSON line per finished request to FILE" },
	OPT_END,
};

static const struct cmd_spec loadgen_spec = {
	"sonde lab loadgen", "--url URL --rate RPS [OPTIONS]",
	"Open-loop HTTP/1.1 load at a constant request rate.", loadgen_opts,
	"Request i is due at start + i/RPS, whatever the server does; a "
	"request that\nfinds all connections busy starts late, and the log "
	"shows by how much (start\nminus due). One that cannot start within "
	"--timeout is logged as skipped.\nLog line: {\"start\":unix s,\"due\":"
	"unix s,\"status\":200,\"total_ms\":..,\n\"connect_ms\":..,\"ttfb_ms\":"
	"..,\"pretransfer_ms\":..,\"bytes\":..,\"error\":null or libcurl's message}.\nIt is flushed "
	"at least every second, whole lines only. SIGUSR1 prints the\nsummary "
	"so far; SIGTERM/SIGINT stop (in-flight requests get 1 s), "
	"printing it.",
};

int lab_loadgen_main(int argc, char **argv)
{
	struct loadgen lg = { .epfd = -1, .tfd = -1, .sfd = -1 };
	struct timespec rt, mt;
	sigset_t mask;
	int npos = 0, err;

	err = opts_parse(&loadgen_spec, argc, argv, &npos);
	if (err)
		return err > 0 ? 0 : 2;
	if (npos || !opt_url || opt_rate < 0) {
		fprintf(stderr, "Usage: %s %s\n", loadgen_spec.path,
			loadgen_spec.synopsis);
		return 2;
	}
	if (strncmp(opt_url, "http://", 7) && strncmp(opt_url, "https://", 8)) {
		log_err("loadgen: --url must be an http:// or https:// URL");
		return 2;
	}
	if (opt_rate < 1 || opt_rate > 1000000 || opt_conns < 1 ||
	    opt_conns > 10000 || opt_timeout < NSEC_PER_MSEC) {
		log_err("loadgen: --rate must be 1..1000000, --connections "
			"1..10000 and --timeout at least 1ms");
		return 2;
	}
	lg.rps = (uint64_t)opt_rate;
	lg.timeout_ns = opt_timeout;
	lg.duration_ns = opt_duration;
	lg.end = opt_duration ? loadgen_count_within(opt_duration, lg.rps) :
				UINT64_MAX;
	hist_init(&lg.total_us);
	hist_init(&lg.late_us);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		log_err("loadgen: curl_global_init failed");
		return 1;
	}
	if (opt_log) {
		err = reqlog_open(&lg.log, opt_log, LOG_BUFFER);
		if (err) {
			log_err("loadgen: cannot open %s: %s", opt_log,
				strerror(-err));
			goto out;
		}
		lg.logging = true;
	}
	err = setup(&lg, opt_url, opt_conns, &mask);
	if (err) {
		log_err("loadgen: setup: %s", strerror(-err));
		goto out;
	}

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mt);
	lg.mono_to_unix = ((int64_t)rt.tv_sec - (int64_t)mt.tv_sec) *
				  (int64_t)NSEC_PER_SEC +
			  (rt.tv_nsec - mt.tv_nsec);
	lg.t0 = mono_ns();
	log_info("loadgen: GET %s at %ld/s over at most %ld connections%s%s",
		 opt_url, opt_rate, opt_conns, opt_log ? ", log " : "",
		 opt_log ? opt_log : "");
	err = run(&lg);
out:
	teardown(&lg);
	if (lg.logging)
		reqlog_close(&lg.log);
	if (lg.t0)
		summary(&lg);
	curl_global_cleanup();
	return err ? 1 : 0;
}
