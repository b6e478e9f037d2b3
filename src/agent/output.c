/* Record output. Local: JSON lines to a file or stdout. Shipping: records
 * are cut into batches (--batch records or 1 s, whichever first), each
 * batch is zlib-compressed and written to the spool directory BEFORE any
 * send, then a shipper thread POSTs spooled batches in order and deletes
 * each only when the server answered 200 (stored or already stored). So a
 * server that is away, slow (503/429 + Retry-After) or restarting loses
 * nothing while the spool holds; when the spool exceeds its bound the
 * oldest batches are deleted and their records counted as dropped.
 *
 * A batch's id is in its file name (<seal time>-<run id>-<seq>-<records>),
 * so a batch replayed after an agent restart keeps its id and the server
 * stores it once. */
#include "agent/output.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/procstat.h"
#include "server/http.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

struct output_ship_opts output_ship;

struct spooled {
	char name[96];
	uint64_t bytes;
	uint32_t records;
};

struct output {
	FILE *f;
	uint64_t records;

	/* shipping; all below but the batch under construction is shared
	 * with the shipper thread under mu */
	bool ship;
	char url[1024];
	char auth[600];
	char dir[PATH_MAX];
	int lock_fd;
	char run_id[17];
	uint64_t seq;
	char *buf;
	size_t len, cap;
	uint32_t nbuf;
	int64_t first_ns; /* monotonic time of the batch's first record */
	uint32_t batch_max;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct spooled *q;
	size_t qn, qcap;
	char inflight[96];
	uint64_t spool_bytes, spool_max;
	bool stopping;
	int64_t drain_until_ns;
	/* counters */
	/* the agent's /metrics */
	struct MHD_Daemon *mhd;
	void (*status_fn)(void *ctx, json_t *families);
	void *status_ctx;
	int64_t status_ns;
	char *sensors_text; /* under mu */
	uint64_t sealed_batches, shipped_batches, shipped_records,
		duplicate_batches, dropped_batches, dropped_records,
		rejected_batches, rejected_records, send_failures,
		retry_after_waits, spool_errors;
};

/* ---- spool index (called under mu) */

static int cmp_spooled(const void *a, const void *b)
{
	return strcmp(((const struct spooled *)a)->name,
		      ((const struct spooled *)b)->name);
}

static int push_spooled(struct output *o, const char *name, uint64_t bytes,
			uint32_t records)
{
	if (o->qn == o->qcap) {
		size_t cap = o->qcap ? o->qcap * 2 : 64;
		struct spooled *q = realloc(o->q, cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		o->q = q;
		o->qcap = cap;
	}
	struct spooled *s = &o->q[o->qn++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->bytes = bytes;
	s->records = records;
	o->spool_bytes += bytes;
	return 0;
}

static void remove_spooled(struct output *o, size_t i)
{
	o->spool_bytes -= o->q[i].bytes;
	memmove(&o->q[i], &o->q[i + 1], (o->qn - i - 1) * sizeof(*o->q));
	o->qn--;
}

/* Deletes the oldest batches (never the one being sent) until the spool
 * fits its bound. */
static void enforce_bound(struct output *o)
{
	size_t i = 0;

	while (o->spool_bytes > o->spool_max && i < o->qn) {
		if (!strcmp(o->q[i].name, o->inflight)) {
			i++;
			continue;
		}
		char path[PATH_MAX + 100];
		snprintf(path, sizeof(path), "%s/%s", o->dir, o->q[i].name);
		unlink(path);
		o->dropped_batches++;
		o->dropped_records += o->q[i].records;
		log_warn("spool over %llu bytes: dropped the oldest batch "
			 "(%u records)",
			 (unsigned long long)o->spool_max, o->q[i].records);
		remove_spooled(o, i);
	}
}

/* <seal time ns, 19 digits>-<run id>-<seq>-<records>.zb */
static int parse_name(const char *name, uint32_t *records)
{
	size_t len = strlen(name);
	const char *dash = strrchr(name, '-');

	if (len < 4 || strcmp(name + len - 3, ".zb") || !dash)
		return -EINVAL;
	*records = (uint32_t)strtoul(dash + 1, NULL, 10);
	return 0;
}

/* The batch id is the name without the time prefix and the suffix. */
static void batch_id_of(const char *name, char *id, size_t size)
{
	const char *p = strchr(name, '-');
	const char *end = strrchr(name, '-');

	p = p ? p + 1 : name;
	if (!end || end < p)
		end = name + strlen(name);
	snprintf(id, size, "%.*s", (int)(end - p), p);
}

static void seal(struct output *o)
{
	if (!o->nbuf)
		return;
	uLongf zlen = compressBound(o->len);
	Bytef *z = malloc(zlen);
	char name[96], tmp[PATH_MAX + 110], path[PATH_MAX + 100];
	int fd = -1;

	if (!z || compress2(z, &zlen, (const Bytef *)o->buf, o->len, 1) != Z_OK)
		goto fail;
	snprintf(name, sizeof(name), "%019lld-%s-%llu-%u.zb",
		 (long long)real_ns(), o->run_id, (unsigned long long)++o->seq,
		 o->nbuf);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", o->dir, name);
	snprintf(path, sizeof(path), "%s/%s", o->dir, name);
	/* Written aside and renamed: the shipper never sees half a batch,
	 * and a crash leaves only a .tmp, ignored at start. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, z, zlen) != (ssize_t)zlen || close(fd) ||
	    rename(tmp, path)) {
		if (fd >= 0)
			unlink(tmp);
		goto fail;
	}
	pthread_mutex_lock(&o->mu);
	o->sealed_batches++;
	if (push_spooled(o, name, zlen, o->nbuf) == 0)
		enforce_bound(o);
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	free(z);
	o->len = 0;
	o->nbuf = 0;
	return;
fail:
	free(z);
	pthread_mutex_lock(&o->mu);
	o->spool_errors++;
	o->dropped_batches++;
	o->dropped_records += o->nbuf;
	pthread_mutex_unlock(&o->mu);
	log_warn("cannot spool a batch of %u records in %s: %s", o->nbuf,
		 o->dir, strerror(errno));
	o->len = 0;
	o->nbuf = 0;
}

/* ---- the shipper thread */

static size_t discard(char *d, size_t size, size_t n, void *ctx)
{
	(void)d;
	(void)ctx;
	return size * n;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	struct stat st;

	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) == 0 && (buf = malloc((size_t)st.st_size + 1)))
		*len = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	return buf;
}

/* Sends one batch. Returns the HTTP status, or 0 when the server could
 * not be reached; *retry_after_s from the answer's Retry-After. */
static long send_batch(struct output *o, CURL *curl, const char *name,
		       long *retry_after_s)
{
	char path[PATH_MAX + 100], id[96], hdr[160];
	size_t len = 0;
	long status = 0;
	struct curl_slist *h = NULL;

	snprintf(path, sizeof(path), "%s/%s", o->dir, name);
	char *body = read_file(path, &len);
	if (!body)
		return -1;
	batch_id_of(name, id, sizeof(id));
	snprintf(hdr, sizeof(hdr), "X-Sonde-Batch: %s", id);
	h = curl_slist_append(h, hdr);
	h = curl_slist_append(h, "Content-Encoding: deflate");
	h = curl_slist_append(h, "Content-Type: application/x-ndjson");
	h = curl_slist_append(h, "Expect:");
	if (o->auth[0])
		h = curl_slist_append(h, o->auth);
	curl_easy_setopt(curl, CURLOPT_URL, o->url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	*retry_after_s = 0;
	if (curl_easy_perform(curl) == CURLE_OK) {
		curl_off_t ra = 0;
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &ra) ==
			    CURLE_OK &&
		    ra > 0)
			*retry_after_s = (long)ra;
	}
	curl_slist_free_all(h);
	free(body);
	return status;
}

/* Sleeps until deadline (real time); a stop request shortens the sleep to
 * the drain deadline. New batches do not wake it: Retry-After holds. */
static void wait_until(struct output *o, int64_t deadline)
{
	for (;;) {
		int64_t d = deadline;
		if (o->stopping && o->drain_until_ns < d)
			d = o->drain_until_ns;
		if (real_ns() >= d)
			return;
		struct timespec ts = { .tv_sec = d / 1000000000LL,
				       .tv_nsec = d % 1000000000LL };
		pthread_cond_timedwait(&o->cv, &o->mu, &ts);
	}
}

static void *shipper_main(void *arg)
{
	struct output *o = arg;
	CURL *curl = curl_easy_init();
	int64_t backoff_ms = 0;

	pthread_mutex_lock(&o->mu);
	while (curl) {
		while (!o->qn && !o->stopping)
			pthread_cond_wait(&o->cv, &o->mu);
		if (!o->qn || (o->stopping && real_ns() > o->drain_until_ns))
			break;
		char name[96];
		snprintf(name, sizeof(name), "%s", o->q[0].name);
		uint32_t nrec = o->q[0].records;
		snprintf(o->inflight, sizeof(o->inflight), "%s", name);
		pthread_mutex_unlock(&o->mu);

		long retry_after = 0;
		long status = send_batch(o, curl, name, &retry_after);

		pthread_mutex_lock(&o->mu);
		o->inflight[0] = 0;
		bool done = status == 200 || status == 400 || status == 413 ||
			    status == 415 || status < 0;
		if (done) {
			char path[PATH_MAX + 100];
			snprintf(path, sizeof(path), "%s/%s", o->dir, name);
			unlink(path);
			for (size_t i = 0; i < o->qn; i++)
				if (!strcmp(o->q[i].name, name)) {
					remove_spooled(o, i);
					break;
				}
			if (status == 200) {
				o->shipped_batches++;
				o->shipped_records += nrec;
			} else {
				/* The server will never take this batch:
				 * keeping it would block the spool. */
				o->rejected_batches++;
				o->rejected_records += nrec;
				log_warn("server rejected batch %s (HTTP %ld): "
					 "dropped", name, status);
			}
			backoff_ms = 0;
			continue;
		}
		o->send_failures++;
		if (retry_after) {
			o->retry_after_waits++;
			backoff_ms = retry_after * 1000;
		} else {
			/* 0.1 s doubling to 2 s: a returning server is
			 * found within 2 s, a down one costs little. */
			backoff_ms = backoff_ms ? backoff_ms * 2 : 100;
			if (backoff_ms > 2000)
				backoff_ms = 2000;
		}
		if (status == 401 || status == 403)
			log_warn("server refused our token (HTTP %ld); "
				 "keeping the batch", status);
		wait_until(o, real_ns() + backoff_ms * 1000000LL);
	}
	pthread_mutex_unlock(&o->mu);
	curl_easy_cleanup(curl);
	return NULL;
}

static int metrics_open(struct output *o, const char *listen);
static void snapshot_status(struct output *o);

/* ---- setup */

static int scan_spool(struct output *o)
{
	DIR *d = opendir(o->dir);
	struct dirent *e;
	struct stat st;
	char path[PATH_MAX + 300];

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		uint32_t records;
		if (e->d_name[0] == '.') {
			/* A batch half written by a crashed agent. */
			if (strstr(e->d_name, ".tmp")) {
				snprintf(path, sizeof(path), "%s/%s", o->dir,
					 e->d_name);
				unlink(path);
			}
			continue;
		}
		if (parse_name(e->d_name, &records))
			continue;
		snprintf(path, sizeof(path), "%s/%s", o->dir, e->d_name);
		if (stat(path, &st) == 0 && strlen(e->d_name) < 96)
			push_spooled(o, e->d_name, (uint64_t)st.st_size, records);
	}
	closedir(d);
	if (o->qn)
		qsort(o->q, o->qn, sizeof(*o->q), cmp_spooled);
	return 0;
}

static int ship_open(struct output *o)
{
	const char *dir = output_ship.spool ? output_ship.spool
					    : "/var/lib/sonde/spool";
	const char *token = output_ship.token ? output_ship.token
					      : getenv("SONDE_TOKEN");
	uint64_t rnd = 0;
	char lock[PATH_MAX + 10];

	snprintf(o->url, sizeof(o->url), "%s/v1/ingest", output_ship.server);
	if (token && token[0])
		snprintf(o->auth, sizeof(o->auth), "Authorization: Bearer %s",
			 token);
	snprintf(o->dir, sizeof(o->dir), "%s", dir);
	o->spool_max = (uint64_t)(output_ship.spool_kb > 0 ? output_ship.spool_kb
							   : 262144)
		       << 10;
	o->batch_max = output_ship.batch > 0 ? (uint32_t)output_ship.batch : 2000;
	o->lock_fd = -1;
	/* mkdir -p of the last two levels is enough for the default. */
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", dir);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = 0;
		mkdir(parent, 0700);
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		log_err("cannot create the spool directory %s: %s", dir,
			strerror(errno));
		return -errno;
	}
	snprintf(lock, sizeof(lock), "%s/lock", dir);
	o->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (o->lock_fd < 0 || flock(o->lock_fd, LOCK_EX | LOCK_NB)) {
		log_err("spool %s is in use by another agent (give each agent "
			"its own --spool)", dir);
		return -EBUSY;
	}
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)real_ns() ^ ((uint64_t)getpid() << 32);
	snprintf(o->run_id, sizeof(o->run_id), "%016llx", (unsigned long long)rnd);
	int err = scan_spool(o);
	if (err)
		return err;
	if (o->qn)
		log_info("spool %s: %zu batches from an earlier run to replay",
			 dir, o->qn);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* The shipper must not take the agent's SIGINT/SIGTERM (they go to
	 * its signalfd, blocked later): start it with every signal blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int perr = pthread_create(&o->thread, NULL, shipper_main, o);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (perr)
		return -EAGAIN;
	o->thread_started = true;
	o->ship = true;
	return 0;
}

struct output *output_open(const char *path)
{
	struct output *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->lock_fd = -1;
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	if (output_ship.metrics && metrics_open(o, output_ship.metrics)) {
		free(o);
		errno = EADDRINUSE;
		return NULL;
	}
	if (output_ship.server) {
		int err = ship_open(o);
		if (err) {
			output_close(o);
			errno = -err;
			return NULL;
		}
		if (!path)
			return o; /* ship only */
	}
	if (!path || !strcmp(path, "-")) {
		o->f = stdout;
		return o;
	}
	/* Append: a restarted agent must not erase what it wrote before. */
	o->f = fopen(path, "a");
	if (!o->f) {
		int err = errno;
		output_close(o);
		errno = err;
		return NULL;
	}
	/* l7 writes a record per request: a 4 KiB stdio buffer meant a
	 * write() per ~10 records. Flushed every interval anyway. */
	setvbuf(o->f, NULL, _IOFBF, 1 << 18);
	return o;
}

int output_write(struct output *o, const char *line)
{
	if (o->f && (fputs(line, o->f) < 0 || fputc('\n', o->f) < 0))
		return -EIO;
	o->records++;
	if (!o->ship)
		return 0;
	size_t n = strlen(line);
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 1 << 16;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *b = realloc(o->buf, cap);
		if (!b)
			return -ENOMEM;
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, line, n);
	o->buf[o->len + n] = '\n';
	o->len += n + 1;
	if (!o->nbuf++)
		o->first_ns = mono_ns();
	if (o->nbuf >= o->batch_max)
		seal(o);
	return 0;
}

void output_flush(struct output *o)
{
	if (o->f)
		fflush(o->f);
	snapshot_status(o);
	/* A batch waits at most ~1 s: records stay near real time. */
	if (o->ship && o->nbuf && mono_ns() - o->first_ns >= 1000000000LL)
		seal(o);
}

uint64_t output_records(const struct output *o)
{
	return o->records;
}

static void write_metrics(struct output *o, FILE *f)
{
	fprintf(f, "# HELP sonde_agent_records_total Records the sensors "
		   "emitted.\n# TYPE sonde_agent_records_total counter\n"
		   "sonde_agent_records_total %llu\n",
		(unsigned long long)o->records);
	pthread_mutex_lock(&o->mu);
	if (o->sensors_text)
		fputs(o->sensors_text, f);
	if (!o->ship) {
		pthread_mutex_unlock(&o->mu);
		return;
	}
	fprintf(f,
		"# HELP sonde_agent_shipped_records_total Records the server "
		"acknowledged.\n"
		"# TYPE sonde_agent_shipped_records_total counter\n"
		"sonde_agent_shipped_records_total %llu\n"
		"# HELP sonde_agent_spool_dropped_records_total Records dropped "
		"because the spool was full.\n"
		"# TYPE sonde_agent_spool_dropped_records_total counter\n"
		"sonde_agent_spool_dropped_records_total %llu\n"
		"# HELP sonde_agent_rejected_records_total Records in batches "
		"the server refused as invalid.\n"
		"# TYPE sonde_agent_rejected_records_total counter\n"
		"sonde_agent_rejected_records_total %llu\n"
		"# HELP sonde_agent_spool_bytes Bytes waiting in the spool.\n"
		"# TYPE sonde_agent_spool_bytes gauge\n"
		"sonde_agent_spool_bytes %llu\n"
		"# HELP sonde_agent_spool_batches Batches waiting in the spool.\n"
		"# TYPE sonde_agent_spool_batches gauge\n"
		"sonde_agent_spool_batches %zu\n"
		"# HELP sonde_agent_ship_failures_total Failed sends (retried).\n"
		"# TYPE sonde_agent_ship_failures_total counter\n"
		"sonde_agent_ship_failures_total %llu\n",
		(unsigned long long)o->shipped_records,
		(unsigned long long)o->dropped_records,
		(unsigned long long)o->rejected_records,
		(unsigned long long)o->spool_bytes, o->qn,
		(unsigned long long)o->send_failures);
	pthread_mutex_unlock(&o->mu);
}

/* ---- the agent's /metrics */

struct metric_line {
	char name[96];
	char labels[160];
	long long value;
	const char *type;
};

static int cmp_metric(const void *a, const void *b)
{
	const struct metric_line *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->labels, y->labels);
}

/* Families' status objects -> Prometheus lines, grouped by metric name as
 * the text format wants: "events" -> sonde_agent_events_total,
 * "lost_<why>" -> sonde_agent_lost_events_total{reason="<why>"}, other
 * counters -> sonde_agent_sensor_<name>. */
static char *render_families(json_t *fams)
{
	size_t n = 0, cap = 64, i;
	struct metric_line *m = malloc(cap * sizeof(*m));
	json_t *fam;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (!m)
		return NULL;
	json_array_foreach(fams, i, fam)
	{
		const char *sensor = json_string_value(json_object_get(fam, "sensor"));
		const char *state = json_string_value(json_object_get(fam, "state"));
		const char *k;
		json_t *v;
		if (!sensor)
			continue;
		if (n + json_object_size(fam) + 1 > cap) {
			cap = (n + json_object_size(fam) + 1) * 2;
			struct metric_line *nm = realloc(m, cap * sizeof(*m));
			if (!nm)
				break;
			m = nm;
		}
		snprintf(m[n].name, sizeof(m[n].name), "sonde_agent_sensor_up");
		snprintf(m[n].labels, sizeof(m[n].labels), "sensor=\"%s\"", sensor);
		m[n].value = state && !strcmp(state, "running");
		m[n++].type = "gauge";
		json_object_foreach(fam, k, v)
		{
			if (!json_is_integer(v))
				continue;
			struct metric_line *l = &m[n++];
			l->value = (long long)json_integer_value(v);
			l->type = "counter";
			snprintf(l->labels, sizeof(l->labels), "sensor=\"%s\"", sensor);
			if (!strcmp(k, "events")) {
				snprintf(l->name, sizeof(l->name), "sonde_agent_events_total");
			} else if (!strncmp(k, "lost_", 5)) {
				snprintf(l->name, sizeof(l->name), "sonde_agent_lost_events_total");
				snprintf(l->labels, sizeof(l->labels),
					 "sensor=\"%s\",reason=\"%s\"", sensor, k + 5);
			} else {
				/* Counters of the family's own (records,
				 * map_full ...): untyped, the name is theirs. */
				snprintf(l->name, sizeof(l->name), "sonde_agent_sensor_%s", k);
				l->type = "untyped";
			}
		}
	}
	qsort(m, n, sizeof(*m), cmp_metric);
	f = open_memstream(&text, &len);
	if (f) {
		for (i = 0; i < n; i++) {
			if (!i || strcmp(m[i].name, m[i - 1].name))
				fprintf(f, "# TYPE %s %s\n", m[i].name, m[i].type);
			fprintf(f, "%s{%s} %lld\n", m[i].name, m[i].labels, m[i].value);
		}
		fclose(f);
	}
	free(m);
	return text;
}

static void snapshot_status(struct output *o)
{
	int64_t now = mono_ns();

	if (!o->status_fn || !o->mhd || now - o->status_ns < 1000000000LL)
		return;
	o->status_ns = now;
	json_t *fams = json_array();
	o->status_fn(o->status_ctx, fams);
	char *text = render_families(fams);
	json_decref(fams);
	pthread_mutex_lock(&o->mu);
	free(o->sensors_text);
	o->sensors_text = text;
	pthread_mutex_unlock(&o->mu);
}

void output_set_status(struct output *o,
		       void (*fn)(void *ctx, json_t *families), void *ctx)
{
	o->status_fn = fn;
	o->status_ctx = ctx;
}

static enum MHD_Result metrics_handler(void *cls, struct MHD_Connection *c,
				       const char *url, const char *method,
				       const char *version, const char *upload,
				       size_t *upload_size, void **con_cls)
{
	struct output *o = cls;
	char *text = NULL;
	size_t len = 0;
	(void)method;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;

	if (strcmp(url, "/metrics"))
		return http_error(c, MHD_HTTP_NOT_FOUND, "only /metrics here");
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return MHD_NO;
	write_metrics(o, f);
	procstat_write(f);
	fclose(f);
	return http_take(c, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len);
}

static int metrics_open(struct output *o, const char *listen)
{
	struct sockaddr_in sin;
	sigset_t all, old;

	if (http_parse_listen(listen, &sin)) {
		log_err("--metrics wants ADDR:PORT, got '%s'", listen);
		return -EINVAL;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	o->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
				  0, NULL, NULL, metrics_handler, o,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
				  MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!o->mhd) {
		log_err("cannot serve /metrics on %s", listen);
		return -EADDRINUSE;
	}
	log_info("agent metrics on http://%s/metrics", listen);
	return 0;
}

void output_close(struct output *o)
{
	if (!o)
		return;
	if (o->mhd)
		MHD_stop_daemon(o->mhd);
	if (o->f) {
		fflush(o->f);
		if (o->f != stdout)
			fclose(o->f);
	}
	if (o->ship) {
		seal(o);
		pthread_mutex_lock(&o->mu);
		/* A few seconds to ship what is left; the rest waits in the
		 * spool for the next start. */
		o->drain_until_ns = real_ns() + 5000000000LL;
		o->stopping = true;
		pthread_cond_broadcast(&o->cv);
		pthread_mutex_unlock(&o->mu);
	}
	if (o->thread_started)
		pthread_join(o->thread, NULL);
	if (o->ship) {
		fprintf(stderr,
			"{\"output\":\"server\",\"records\":%llu,"
			"\"batches\":%llu,\"shipped_records\":%llu,"
			"\"shipped_batches\":%llu,\"spooled_batches\":%zu,"
			"\"dropped_records\":%llu,\"rejected_records\":%llu,"
			"\"send_failures\":%llu}\n",
			(unsigned long long)o->records,
			(unsigned long long)o->sealed_batches,
			(unsigned long long)o->shipped_records,
			(unsigned long long)o->shipped_batches, o->qn,
			(unsigned long long)o->dropped_records,
			(unsigned long long)o->rejected_records,
			(unsigned long long)o->send_failures);
		curl_global_cleanup();
	}
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
	if (o->lock_fd >= 0)
		close(o->lock_fd);
	free(o->sensors_text);
	free(o->q);
	free(o->buf);
	free(o);
}
