/* An incremental HTTP/1.x message parser for one direction of a TCP stream,
 * as the l7 sensor sees it: bytes in syscall-sized pieces, some of which
 * arrive only as a length (a "gap": sendfile bodies, bytes past the capture
 * limit, lost events).
 *
 * Why our own and not http-parser: http-parser needs every byte; here a
 * body of known length must be skippable without its bytes, a lost piece
 * must mark the message partial and resynchronise on the next message, and
 * memory must stay bounded per connection whatever the header sizes (lines
 * are parsed one by one, only the start line and the few framing headers
 * are kept). */
#ifndef SONDE_L7_HTTP_H
#define SONDE_L7_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_METHOD_MAX 16
#define HTTP_URI_MAX 1024
/* Longest header line kept whole; longer lines are skipped (their value is
 * not needed) or, for the start line, truncate the URI. */
#define HTTP_LINE_MAX 2048

/* Why a message is partial: bits of http_msg.partial. */
enum http_partial {
	HTTP_P_GAP = 1,	      /* head bytes were not captured */
	HTTP_P_LOST = 2,      /* events of this stream were lost */
	HTTP_P_TRUNCATED = 4, /* start line longer than kept: URI cut */
	HTTP_P_EOF = 8,	      /* stream ended before the message did */
	HTTP_P_MALFORMED = 16, /* framing could not be followed */
	HTTP_P_NO_REQUEST = 32, /* a response whose request was not seen */
	HTTP_P_NO_RESPONSE = 64, /* a request that got no response */
};

struct http_msg {
	bool is_request;
	bool head_done;	     /* the start line and headers were parsed */
	char method[HTTP_METHOD_MAX];
	char uri[HTTP_URI_MAX];
	int version;	     /* 10 or 11 (HTTP/1.0, HTTP/1.1) */
	int status;	     /* responses */
	bool chunked;
	int64_t content_length; /* -1: none given */
	bool close;	     /* Connection: close */
	uint64_t head_bytes; /* start line + headers + blank line */
	uint64_t body_bytes; /* body as on the wire (chunk framing included) */
	/* Times (CLOCK_MONOTONIC ns) of the piece holding the first byte
	 * (its syscall's entry and exit) and of the piece holding the last. */
	uint64_t first_enter_ns, first_exit_ns, last_exit_ns;
	unsigned partial;    /* enum http_partial bits; 0 = complete */
};

struct http_stream;

struct http_hooks {
	/* The head of a message was parsed. For a response, return false
	 * when it has no body whatever its headers say (answer to HEAD). */
	bool (*on_head)(void *ctx, struct http_msg *m);
	/* The message ended (complete, or partial with the reason). */
	void (*on_done)(void *ctx, struct http_msg *m);
};

enum http_state {
	HS_IDLE,	/* between messages */
	HS_START,	/* in the start line */
	HS_HEADERS,
	HS_BODY_LEN,
	HS_CHUNK_SIZE,
	HS_CHUNK_DATA,
	HS_CHUNK_CRLF,
	HS_TRAILERS,
	HS_BODY_EOF,	/* response delimited by the connection's end */
	HS_LOST,	/* out of sync: wait for a piece that starts a message */
};

struct http_stream {
	bool requests; /* this direction carries requests (else responses) */
	enum http_state state;
	struct http_msg msg;
	uint64_t remaining; /* body or chunk bytes still to come */
	char line[HTTP_LINE_MAX];
	size_t line_len;
	bool line_over;	    /* the current line was longer than kept */
	bool line_gap;	    /* a gap fell inside the current head */
	uint64_t messages, partials, resyncs;
	const struct http_hooks *hooks;
	void *ctx;
};

void http_stream_init(struct http_stream *s, bool requests,
		      const struct http_hooks *hooks, void *ctx);
/* One piece of the stream: `len` bytes, of which the first `cap` are in
 * `data` (cap <= len); the rest is a gap. */
void http_stream_feed(struct http_stream *s, const uint8_t *data, size_t cap,
		      size_t len, uint64_t enter_ns, uint64_t exit_ns);
/* Some pieces of this stream were lost (sequence hole). */
void http_stream_lost(struct http_stream *s);
/* The connection ended: a body delimited by it completes, anything else
 * in flight ends partial. */
void http_stream_end(struct http_stream *s, uint64_t ns);

/* Content detection on a stream's first bytes. */
bool http_looks_request(const uint8_t *d, size_t n);
bool http_looks_response(const uint8_t *d, size_t n);

/* Writes the URI with its query string replaced by "?<redacted>" (the
 * fragment-free path is kept). Returns true when something was cut. */
bool http_redact_uri(const char *uri, char *out, size_t out_len);

#endif
