#include "lab/loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int json_escape(char *buf, size_t len, size_t *pos, const char *text)
{
	static const char hex[] = "0123456789abcdef";
	size_t p = *pos;

	for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
		char esc = 0;

		switch (*c) {
		case '"': esc = '"'; break;
		case '\\': esc = '\\'; break;
		case '\n': esc = 'n'; break;
		case '\r': esc = 'r'; break;
		case '\t': esc = 't'; break;
		}
		if (esc) {
			if (p + 2 > len)
				return -ENOSPC;
			buf[p++] = '\\';
			buf[p++] = esc;
		} else if (*c < 0x20) {
			if (p + 6 > len)
				return -ENOSPC;
			memcpy(buf + p, "\\u00", 4);
			buf[p + 4] = hex[*c >> 4];
			buf[p + 5] = hex[*c & 15];
			p += 6;
		} else {
			if (p + 1 > len)
				return -ENOSPC;
			buf[p++] = (char)*c;
		}
	}
	*pos = p;
	return 0;
}

/* snprintf at buf[*pos], advancing *pos; -ENOSPC when it does not fit. */
static int put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*pos >= len)
		return -ENOSPC;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len - *pos)
		return -ENOSPC;
	*pos += (size_t)n;
	return 0;
}

int reqlog_format(char *buf, size_t len, const struct reqlog_rec *r)
{
	size_t p = 0;
	uint64_t start_us = r->start_unix_ns / 1000;
	uint64_t due_us = r->due_unix_ns / 1000;

	if (put(buf, len, &p,
		"{\"start\":%" PRIu64 ".%06" PRIu64 ",\"due\":%" PRIu64
		".%06" PRIu64 ",\"status\":%ld,\"total_ms\":%" PRIu64
		".%03" PRIu64 ",\"connect_ms\":%" PRIu64 ".%03" PRIu64
		",\"ttfb_ms\":%" PRIu64 ".%03" PRIu64
		",\"pretransfer_ms\":%" PRIu64 ".%03" PRIu64 ",\"bytes\":%" PRIu64
		",\"error\":",
		start_us / 1000000, start_us % 1000000, due_us / 1000000,
		due_us % 1000000, r->status, r->total_us / 1000,
		r->total_us % 1000, r->connect_us / 1000, r->connect_us % 1000,
		r->ttfb_us / 1000, r->ttfb_us % 1000, r->pretransfer_us / 1000,
		r->pretransfer_us % 1000, r->bytes))
		return -ENOSPC;
	if (!r->error) {
		if (put(buf, len, &p, "null}\n"))
			return -ENOSPC;
	} else if (put(buf, len, &p, "\"") ||
		   json_escape(buf, len, &p, r->error) ||
		   put(buf, len, &p, "\"}\n")) {
		return -ENOSPC;
	}
	return (int)p;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int reqlog_open(struct reqlog *l, const char *path, size_t cap)
{
	struct stat st;
	char last;

	memset(l, 0, sizeof(*l));
	/* Read access only to check the last byte. */
	l->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (l->fd < 0)
		return -errno;
	l->buf = malloc(cap);
	if (!l->buf) {
		close(l->fd);
		l->fd = -1;
		return -ENOMEM;
	}
	l->cap = cap;
	if (fstat(l->fd, &st) == 0 && st.st_size > 0 &&
	    pread(l->fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
		write_all(l->fd, "\n", 1);
	return 0;
}

int reqlog_flush(struct reqlog *l)
{
	int err = 0;

	if (l->len) {
		err = write_all(l->fd, l->buf, l->len);
		/* On failure (disk full) the lines are dropped: a load
		 * generator that blocks on its log stops being open-loop. */
		if (err)
			l->write_errors++;
	}
	l->len = 0;
	l->oldest_ns = 0;
	return err;
}

int reqlog_add(struct reqlog *l, const struct reqlog_rec *r, uint64_t now_ns)
{
	/* Room for libcurl's longest error message (CURL_ERROR_SIZE, 256)
	 * even with every byte escaped. */
	char line[2048];
	int n = reqlog_format(line, sizeof(line), r);

	if (n < 0)
		return n;
	if (l->len + (size_t)n > l->cap)
		reqlog_flush(l);
	l->lines++;
	if ((size_t)n > l->cap)
		return write_all(l->fd, line, (size_t)n);
	memcpy(l->buf + l->len, line, (size_t)n);
	l->len += (size_t)n;
	if (!l->oldest_ns)
		l->oldest_ns = now_ns ? now_ns : 1;
	return 0;
}

bool reqlog_flush_due(const struct reqlog *l, uint64_t now_ns)
{
	return l->len && now_ns >= l->oldest_ns + REQLOG_FLUSH_NS;
}

uint64_t reqlog_flush_deadline(const struct reqlog *l)
{
	return l->len ? l->oldest_ns + REQLOG_FLUSH_NS : 0;
}

void reqlog_close(struct reqlog *l)
{
	if (l->fd >= 0) {
		reqlog_flush(l);
		close(l->fd);
	}
	free(l->buf);
	memset(l, 0, sizeof(*l));
	l->fd = -1;
}
