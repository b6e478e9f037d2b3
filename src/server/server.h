/* `sonde server`: collector (ingest -> store -> query API, /metrics). The
 * main thread runs an epoll loop (signals, timers) that other parts (the
 * Kubernetes controller) join by adding their fds; HTTP runs on
 * libmicrohttpd's threads, the store writer on its own thread. */
#ifndef SONDE_SERVER_H
#define SONDE_SERVER_H

#include <stdint.h>

struct server;

/* Adds fd to the main loop; cb runs on the main thread when it is
 * readable. Returns 0 or negative errno. */
int server_watch_fd(struct server *s, int fd,
		    void (*cb)(struct server *s, int fd, void *ctx), void *ctx);

/* Time helpers shared with the CLI: "5m" -> now - 5 min; a bare integer
 * is an absolute UTC time in ns. */
int server_parse_time(const char *text, int64_t now_ns, int64_t *out_ns);
int64_t server_now_ns(void);

#endif
