/* A growable, always NUL-terminated byte buffer: HTTP answers collected by
 * libcurl, request bodies built piece by piece. */
#ifndef SONDE_BUF_H
#define SONDE_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *p;     /* NULL until something is added */
	size_t len;
	size_t cap;
	bool oom;    /* an allocation failed: later adds are ignored */
};

void buf_add(struct buf *b, const void *data, size_t n);
/* CURLOPT_WRITEFUNCTION appending to the struct buf in CURLOPT_WRITEDATA;
 * stops the transfer when memory runs out. */
size_t buf_curl_write(char *data, size_t size, size_t n, void *ctx);
void buf_free(struct buf *b);

#endif
