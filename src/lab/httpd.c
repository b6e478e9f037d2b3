/* `sonde lab httpd`: a small HTTP/1.1 server whose access log has
 * microsecond request times, a finer ground truth for the l7 sensor than
 * nginx's.
 *
 * Why: nginx's $request_time is whole milliseconds of a clock cached when
 * its event loop wakes (before the read that brings the request, and before
 * the write that ends the response), so it cannot check a duration to
 * within 1 ms. This server reads CLOCK_MONOTONIC right after the read()
 * that returned a request's first byte and right after the write() that
 * sent its response's last byte, the same points the sensor takes in the
 * kernel, and logs the difference in microseconds. What it measures is the
 * server's own view; the sensor's is computed from syscall tracepoints, by
 * other code.
 *
 * A user-space clock read can still be late: on a busy machine the thread
 * may be preempted on its way back from the syscall, after the kernel's
 * tracepoint and before clock_gettime(). The server sees that happen (its
 * involuntary context-switch count moved across the syscall and the clock
 * read) and marks the line "preempted": true, so that a check can leave
 * that line's duration out instead of blaming the sensor.
 *
 * One thread, epoll, keep-alive, pipelining; GET/HEAD only, no request
 * bodies. Every request is answered 200 with a small JSON body. Log line:
 * {"start":unix s.us,"end":..,"request_time_us":N,"remote_addr":"ip",
 *  "remote_port":N,"method":"GET","uri":"/x","status":200,"bytes":N,
 *  "preempted":false} */
#include "lab/lab.h"
#include "lab/loadgen.h"
#include "lib/log.h"
#include "lib/opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTPD_HEAD_MAX 8192
#define HTTPD_MAX_EVENTS 64
#define HTTPD_LOG_BUF (256 * 1024)

struct hconn {
	int fd;
	char head[HTTPD_HEAD_MAX];
	size_t len;	 /* bytes of head[] held (this request and after) */
	uint64_t start;	 /* mono ns of the read that brought byte 0 */
	uint64_t last_read; /* mono ns of the latest read */
	bool last_read_late;
	uint64_t resp_start; /* start of the request being answered */
	bool start_late;     /* preempted around the read that set start */
	bool resp_start_late;
	bool end_late;	     /* preempted around the response's writes */
	long end_mark;	     /* nivcsw right after the last write */
	char out[1024];
	size_t out_len, out_off;
	char method[16], uri[1024];
	char peer[INET6_ADDRSTRLEN];
	uint16_t peer_port;
	bool closing;
};

struct httpd {
	int epfd, lfd, sfd;
	int64_t mono_to_unix;
	struct reqlog log;
	bool logging;
	uint64_t requests;
};

/* Involuntary context switches of this thread so far. */
static long nivcsw(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_THREAD, &ru) ? -1 : ru.ru_nivcsw;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void conn_free(struct httpd *h, struct hconn *c)
{
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static void log_request(struct httpd *h, struct hconn *c, uint64_t start,
			uint64_t end)
{
	char line[2048];
	size_t p = 0;
	uint64_t s_us = (uint64_t)((int64_t)start + h->mono_to_unix) / 1000;
	uint64_t e_us = (uint64_t)((int64_t)end + h->mono_to_unix) / 1000;
	int n;

	h->requests++;
	if (!h->logging)
		return;
	n = snprintf(line, sizeof(line),
		     "{\"start\":%" PRIu64 ".%06" PRIu64 ",\"end\":%" PRIu64
		     ".%06" PRIu64 ",\"request_time_us\":%" PRIu64
		     ",\"remote_addr\":\"%s\",\"remote_port\":%u,\"method\":\"",
		     s_us / 1000000, s_us % 1000000, e_us / 1000000,
		     e_us % 1000000, (end - start) / 1000, c->peer,
		     c->peer_port);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	p = (size_t)n;
	if (json_escape(line, sizeof(line), &p, c->method) ||
	    p + 9 > sizeof(line))
		return;
	memcpy(line + p, "\",\"uri\":\"", 9);
	p += 9;
	if (json_escape(line, sizeof(line), &p, c->uri))
		return;
	n = snprintf(line + p, sizeof(line) - p,
		     "\",\"status\":200,\"bytes\":%zu,\"preempted\":%s}\n",
		     c->out_len,
		     c->resp_start_late || c->end_late ? "true" : "false");
	if (n < 0 || (size_t)n >= sizeof(line) - p)
		return;
	p += (size_t)n;
	if (h->log.len + p > h->log.cap)
		reqlog_flush(&h->log);
	memcpy(h->log.buf + h->log.len, line, p);
	h->log.len += p;
}

/* Parses the head in c->head[0..head_len) and prepares its response.
 * Returns false when the connection must close (malformed). */
static bool parse_and_prepare(struct hconn *c, size_t head_len)
{
	char *sp1, *sp2, *eol;
	char body[256];
	int bl, n;

	eol = memchr(c->head, '\n', head_len);
	if (!eol)
		return false;
	sp1 = memchr(c->head, ' ', (size_t)(eol - c->head));
	if (!sp1 || sp1 - c->head >= (long)sizeof(c->method))
		return false;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 - sp1 - 1 >= (long)sizeof(c->uri))
		return false;
	memcpy(c->method, c->head, (size_t)(sp1 - c->head));
	c->method[sp1 - c->head] = '\0';
	memcpy(c->uri, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	c->uri[sp2 - sp1 - 1] = '\0';
	if (strcmp(c->method, "GET") && strcmp(c->method, "HEAD"))
		return false;
	c->closing = strncmp(sp2 + 1, "HTTP/1.1", 8) != 0;
	bl = snprintf(body, sizeof(body),
		      "{\"ratings\": {\"Reviewer1\": 5, \"Reviewer2\": 4}, "
		      "\"server\": \"sonde lab httpd\"}\n");
	n = snprintf(c->out, sizeof(c->out),
		     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		     "Content-Length: %d\r\n%s\r\n%s",
		     bl, c->closing ? "Connection: close\r\n" : "",
		     strcmp(c->method, "HEAD") ? body : "");
	if (n < 0 || (size_t)n >= sizeof(c->out))
		return false;
	c->out_len = (size_t)n;
	c->out_off = 0;
	return true;
}

/* Writes what is pending. Returns 1 when all is written, 0 on EAGAIN,
 * -1 on error. */
static int send_pending(struct hconn *c)
{
	while (c->out_off < c->out_len) {
		long before = nivcsw();
		ssize_t n = write(c->fd, c->out + c->out_off,
				  c->out_len - c->out_off);
		/* The end is read right after the last write: was the
		 * thread preempted between that write and the clock? */
		c->end_mark = nivcsw();
		c->end_late = c->end_mark != before;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		c->out_off += (size_t)n;
	}
	return 1;
}

/* Serves every whole request held; returns false to close. */
static bool serve(struct httpd *h, struct hconn *c)
{
	for (;;) {
		char *end;
		size_t hl;
		int r;

		if (c->out_len) {
			r = send_pending(c);
			if (r < 0)
				return false;
			if (!r) {
				struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT,
							  .data.ptr = c };
				epoll_ctl(h->epfd, EPOLL_CTL_MOD, c->fd, &ev);
				return true;
			}
			uint64_t t_end = mono_ns();
			if (nivcsw() != c->end_mark)
				c->end_late = true;
			log_request(h, c, c->resp_start, t_end);
			c->out_len = 0;
			if (c->closing)
				return false;
		}
		end = c->len >= 4 ? memmem(c->head, c->len, "\r\n\r\n", 4) : NULL;
		if (!end) {
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
			epoll_ctl(h->epfd, EPOLL_CTL_MOD, c->fd, &ev);
			return c->len < sizeof(c->head);
		}
		hl = (size_t)(end - c->head) + 4;
		if (!parse_and_prepare(c, hl))
			return false;
		c->resp_start = c->start;
		c->resp_start_late = c->start_late;
		memmove(c->head, c->head + hl, c->len - hl);
		c->len -= hl;
		/* Bytes left belong to the next (pipelined) request: they
		 * came with the latest read. */
		if (c->len) {
			c->start = c->last_read;
			c->start_late = c->last_read_late;
		}
	}
}

static void on_readable(struct httpd *h, struct hconn *c)
{
	for (;;) {
		ssize_t n;
		uint64_t now;
		long before;
		bool late;

		if (c->len == sizeof(c->head)) {
			conn_free(h, c);
			return;
		}
		before = nivcsw();
		n = read(c->fd, c->head + c->len, sizeof(c->head) - c->len);
		now = mono_ns();
		late = nivcsw() != before;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_free(h, c);
			return;
		}
		if (!c->len) {
			c->start = now;
			c->start_late = late;
		}
		c->last_read = now;
		c->last_read_late = late;
		c->len += (size_t)n;
		if (c->out_len)
			continue; /* a response is still going out */
		if (!serve(h, c)) {
			conn_free(h, c);
			return;
		}
		/* A request that is still incomplete keeps its start; one
		 * fully served left c->len == 0 for the next. */
	}
}

static void on_accept(struct httpd *h)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(h->lfd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct hconn *c;
		int one = 1;

		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s4->sin_addr, c->peer, sizeof(c->peer));
			c->peer_port = ntohs(s4->sin_port);
		} else {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, c->peer, sizeof(c->peer));
			c->peer_port = ntohs(s6->sin6_port);
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			free(c);
		}
	}
}

static long opt_port = 9081;
static const char *opt_log;
static uint64_t opt_duration;

static const struct opt httpd_opts[] = {
	{ "port", 'p', OPT_INT, &opt_port, "PORT",
	  "TCP port to listen on, all IPv4 addresses (default 9081)" },
	{ "log", 'l', OPT_STRING, &opt_log, "FILE",
	  "append one JSON line per answered request to FILE" },
	{ "duration", 'd', OPT_DURATION, &opt_duration, "DUR",
	  "stop after DUR, e.g. 70s (default: run until SIGTERM/SIGINT)" },
	OPT_END,
};

static const struct cmd_spec httpd_spec = {
	"sonde lab httpd", "[--port PORT] [--log FILE]",
	"HTTP/1.1 server with a microsecond access log (l7 ground truth).",
	httpd_opts,
	"Answers every GET or HEAD with 200 and a small JSON body, keep-alive "
	"and\npipelining supported. Log line: {\"start\":unix s.us,\"end\":..,"
	"\n\"request_time_us\":N,\"remote_addr\":..,\"remote_port\":..,"
	"\"method\":..,\"uri\":..,\n\"status\":200,\"bytes\":N}: start is "
	"taken right after the read() that returned\nthe request's first "
	"byte, end right after the write() that sent the\nresponse's last "
	"byte; preempted: the thread was switched out between such a\n"
	"syscall and its clock read (that duration is not exact). Flushed "
	"at least\nevery second; SIGTERM/SIGINT stop.",
};

int lab_httpd_main(int argc, char **argv)
{
	struct httpd h = { .epfd = -1, .lfd = -1, .sfd = -1 };
	/* IPv4, as the lab's nginx listens: an AF_INET6 socket would see its
	 * IPv4 clients as ::ffff:a.b.c.d. */
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct timespec rt, mt;
	sigset_t mask;
	int npos = 0, err, one = 1, rc = 1;
	uint64_t last_flush, t0;

	err = opts_parse(&httpd_spec, argc, argv, &npos);
	if (err)
		return err > 0 ? 0 : 2;
	if (npos || opt_port < 1 || opt_port > 65535) {
		fprintf(stderr, "Usage: %s %s\n", httpd_spec.path,
			httpd_spec.synopsis);
		return 2;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (opt_log) {
		err = reqlog_open(&h.log, opt_log, HTTPD_LOG_BUF);
		if (err) {
			log_err("httpd: cannot open %s: %s", opt_log,
				strerror(-err));
			return 1;
		}
		h.logging = true;
	}
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mt);
	h.mono_to_unix = ((int64_t)rt.tv_sec - (int64_t)mt.tv_sec) *
				 1000000000LL +
			 (rt.tv_nsec - mt.tv_nsec);

	h.epfd = epoll_create1(EPOLL_CLOEXEC);
	h.sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	h.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	a.sin_port = htons((uint16_t)opt_port);
	if (h.epfd < 0 || h.sfd < 0 || h.lfd < 0 ||
	    setsockopt(h.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(h.lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(h.lfd, 512)) {
		log_err("httpd: listen on port %ld: %s", opt_port,
			strerror(errno));
		goto out;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &h.lfd };
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &h.sfd };
	if (epoll_ctl(h.epfd, EPOLL_CTL_ADD, h.lfd, &ev) ||
	    epoll_ctl(h.epfd, EPOLL_CTL_ADD, h.sfd, &sev)) {
		log_err("httpd: epoll: %s", strerror(errno));
		goto out;
	}
	log_info("httpd: listening on port %ld%s%s", opt_port,
		 opt_log ? ", log " : "", opt_log ? opt_log : "");
	last_flush = t0 = mono_ns();
	for (;;) {
		struct epoll_event evs[HTTPD_MAX_EVENTS];
		int n = epoll_wait(h.epfd, evs, HTTPD_MAX_EVENTS, 200);
		bool stop = false;

		if (n < 0 && errno != EINTR) {
			log_err("httpd: epoll_wait: %s", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &h.lfd) {
				on_accept(&h);
			} else if (p == &h.sfd) {
				stop = true;
			} else {
				struct hconn *c = p;
				if (c->out_len) {
					if (!serve(&h, c)) {
						conn_free(&h, c);
						continue;
					}
				}
				if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					on_readable(&h, c);
			}
		}
		if (h.logging && mono_ns() - last_flush >= 1000000000ULL) {
			reqlog_flush(&h.log);
			last_flush = mono_ns();
		}
		if (stop || (opt_duration && mono_ns() - t0 >= opt_duration))
			break;
	}
	rc = 0;
out:
	log_info("httpd: answered %" PRIu64 " requests", h.requests);
	if (h.logging)
		reqlog_close(&h.log);
	if (h.lfd >= 0)
		close(h.lfd);
	if (h.sfd >= 0)
		close(h.sfd);
	if (h.epfd >= 0)
		close(h.epfd);
	return rc;
}
