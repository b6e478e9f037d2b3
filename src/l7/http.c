#include "l7/http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const methods[] = {
	"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH",
	"CONNECT", "TRACE",
};

/* Is d[0..n) the start of "<METHOD> "? With fewer bytes than a method
 * needs, a matching prefix counts (the piece may be split there). */
static const char *method_prefix(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t ml = strlen(methods[i]);
		if (n > ml) {
			if (!memcmp(d, methods[i], ml) && d[ml] == ' ')
				return methods[i];
		} else if (n && !memcmp(d, methods[i], n)) {
			return methods[i];
		}
	}
	return NULL;
}

bool http_looks_request(const uint8_t *d, size_t n)
{
	const char *m = method_prefix(d, n);
	size_t ml;

	if (!m)
		return false;
	ml = strlen(m);
	/* "GET /x HTTP/1.1": the URI must start with / or be absolute or *
	 * (OPTIONS) or host:port (CONNECT); at least be printable. */
	return n <= ml + 1 || (d[ml + 1] > ' ' && d[ml + 1] < 0x7f);
}

bool http_looks_response(const uint8_t *d, size_t n)
{
	static const char pfx[] = "HTTP/1.";
	size_t k = n < 7 ? n : 7;

	return n > 0 && !memcmp(d, pfx, k);
}

bool http_redact_uri(const char *uri, char *out, size_t out_len)
{
	const char *q = strchr(uri, '?');

	if (!q) {
		snprintf(out, out_len, "%s", uri);
		return false;
	}
	snprintf(out, out_len, "%.*s?<redacted>", (int)(q - uri), uri);
	return true;
}

void http_stream_init(struct http_stream *s, bool requests,
		      const struct http_hooks *hooks, void *ctx)
{
	memset(s, 0, sizeof(*s));
	s->requests = requests;
	s->hooks = hooks;
	s->ctx = ctx;
	s->state = HS_IDLE;
}

static void begin_message(struct http_stream *s, uint64_t enter_ns,
			  uint64_t exit_ns)
{
	memset(&s->msg, 0, sizeof(s->msg));
	s->msg.is_request = s->requests;
	s->msg.content_length = -1;
	s->msg.first_enter_ns = enter_ns;
	s->msg.first_exit_ns = exit_ns;
	s->msg.last_exit_ns = exit_ns;
	s->line_len = 0;
	s->line_over = false;
	s->line_gap = false;
	s->state = HS_START;
}

static void finish(struct http_stream *s, uint64_t exit_ns)
{
	s->msg.last_exit_ns = exit_ns;
	s->messages++;
	if (s->msg.partial)
		s->partials++;
	if (s->hooks && s->hooks->on_done)
		s->hooks->on_done(s->ctx, &s->msg);
	s->state = HS_IDLE;
}

/* Ends the message in flight as partial and waits for the next one. */
static void lose_sync(struct http_stream *s, unsigned why, uint64_t ns)
{
	switch (s->state) {
	case HS_IDLE:
	case HS_LOST:
		break;
	default:
		s->msg.partial |= why;
		finish(s, ns ? ns : s->msg.last_exit_ns);
		break;
	}
	s->state = HS_LOST;
}

static bool parse_start_line(struct http_stream *s, const char *l)
{
	struct http_msg *m = &s->msg;

	if (s->requests) {
		const char *sp1 = strchr(l, ' '), *sp2;
		if (!sp1 || sp1 == l || (size_t)(sp1 - l) >= HTTP_METHOD_MAX)
			return false;
		for (const char *p = l; p < sp1; p++)
			if (!isupper((unsigned char)*p))
				return false;
		memcpy(m->method, l, (size_t)(sp1 - l));
		m->method[sp1 - l] = '\0';
		sp2 = strrchr(sp1 + 1, ' ');
		if (s->line_over) {
			/* The line was cut: we have the URI's beginning only;
			 * the version went with the rest. */
			m->partial |= HTTP_P_TRUNCATED;
			snprintf(m->uri, sizeof(m->uri), "%s", sp1 + 1);
			m->version = 11;
			return true;
		}
		if (!sp2 || sp2 == sp1 + 1)
			return false;
		if (!strcmp(sp2 + 1, "HTTP/1.1"))
			m->version = 11;
		else if (!strcmp(sp2 + 1, "HTTP/1.0"))
			m->version = 10;
		else
			return false;
		size_t ulen = (size_t)(sp2 - sp1 - 1);
		if (ulen >= sizeof(m->uri)) {
			ulen = sizeof(m->uri) - 1;
			m->partial |= HTTP_P_TRUNCATED;
		}
		memcpy(m->uri, sp1 + 1, ulen);
		m->uri[ulen] = '\0';
		return true;
	}
	/* "HTTP/1.1 200 OK" (reason phrase optional). */
	if (strncmp(l, "HTTP/1.", 7) || (l[7] != '0' && l[7] != '1') ||
	    l[8] != ' ')
		return false;
	m->version = l[7] == '1' ? 11 : 10;
	if (!isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
	    !isdigit((unsigned char)l[11]) || (l[12] != ' ' && l[12] != '\0'))
		return false;
	m->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	return m->status >= 100;
}

/* Header names compared case-insensitively; values trimmed. */
static const char *header_value(const char *l, const char *name)
{
	size_t n = strlen(name);

	if (strncasecmp(l, name, n) || l[n] != ':')
		return NULL;
	l += n + 1;
	while (*l == ' ' || *l == '\t')
		l++;
	return l;
}

static bool parse_header(struct http_stream *s, const char *l)
{
	struct http_msg *m = &s->msg;
	const char *v;

	if ((v = header_value(l, "Content-Length"))) {
		char *end;
		if (!isdigit((unsigned char)*v))
			return false;
		unsigned long long cl = strtoull(v, &end, 10);
		while (*end == ' ' || *end == '\t')
			end++;
		if (*end || cl > (1ULL << 62))
			return false;
		/* Two different lengths: no safe framing (RFC 9112 6.3). */
		if (m->content_length >= 0 && (uint64_t)m->content_length != cl)
			return false;
		m->content_length = (int64_t)cl;
	} else if ((v = header_value(l, "Transfer-Encoding"))) {
		/* chunked must be the last coding. */
		size_t vl = strlen(v);
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		m->chunked = vl >= 7 && !strncasecmp(v + vl - 7, "chunked", 7);
	} else if ((v = header_value(l, "Connection"))) {
		m->close = strcasestr(v, "close") != NULL;
	}
	return true;
}

/* The blank line after the headers: choose how the body is delimited. */
static void head_complete(struct http_stream *s, uint64_t exit_ns)
{
	struct http_msg *m = &s->msg;
	bool body = true;

	m->head_done = true;
	if (s->line_gap)
		m->partial |= HTTP_P_GAP;
	if (s->hooks && s->hooks->on_head)
		body = s->hooks->on_head(s->ctx, m);
	if (!m->is_request &&
	    (m->status < 200 || m->status == 204 || m->status == 304))
		body = false;
	if (!body) {
		finish(s, exit_ns);
		return;
	}
	if (m->chunked) {
		s->state = HS_CHUNK_SIZE;
	} else if (m->content_length > 0) {
		s->remaining = (uint64_t)m->content_length;
		s->state = HS_BODY_LEN;
	} else if (m->content_length == 0 || m->is_request) {
		/* A request without length or chunking has no body. */
		finish(s, exit_ns);
	} else {
		s->state = HS_BODY_EOF;
	}
}

static bool parse_chunk_size(struct http_stream *s, const char *l)
{
	uint64_t v = 0;
	int digits = 0;

	for (; isxdigit((unsigned char)*l); l++, digits++) {
		if (digits >= 15)
			return false;
		v = v * 16 + (uint64_t)(isdigit((unsigned char)*l)
						? *l - '0'
						: (tolower((unsigned char)*l) - 'a' + 10));
	}
	if (!digits || (*l && *l != ';' && *l != ' ' && *l != '\t'))
		return false;
	s->remaining = v;
	return true;
}

/* A whole line (without CR LF) in a line-oriented state. */
static void on_line(struct http_stream *s, uint64_t exit_ns)
{
	char *l = s->line;
	size_t n = s->line_len;

	if (n && l[n - 1] == '\r')
		n--;
	l[n] = '\0';
	switch (s->state) {
	case HS_START:
		if (!parse_start_line(s, l)) {
			s->msg.partial |= HTTP_P_MALFORMED;
			lose_sync(s, HTTP_P_MALFORMED, exit_ns);
			return;
		}
		s->state = HS_HEADERS;
		break;
	case HS_HEADERS:
		if (n == 0 && !s->line_over) {
			head_complete(s, exit_ns);
			return;
		}
		/* An over-long header is one we need not read (its name is
		 * kept, and framing headers are short). */
		if (!s->line_over && !parse_header(s, l)) {
			lose_sync(s, HTTP_P_MALFORMED, exit_ns);
			return;
		}
		break;
	case HS_CHUNK_SIZE:
		if (s->line_over || !parse_chunk_size(s, l)) {
			lose_sync(s, HTTP_P_MALFORMED, exit_ns);
			return;
		}
		s->state = s->remaining ? HS_CHUNK_DATA : HS_TRAILERS;
		break;
	case HS_CHUNK_CRLF:
		if (n != 0 || s->line_over) {
			lose_sync(s, HTTP_P_MALFORMED, exit_ns);
			return;
		}
		s->state = HS_CHUNK_SIZE;
		break;
	case HS_TRAILERS:
		if (n == 0 && !s->line_over) {
			finish(s, exit_ns);
			return;
		}
		break;
	default:
		break;
	}
}

/* Bytes of the current message consumed by the counters. */
static void account(struct http_stream *s, uint64_t n)
{
	if (s->msg.head_done)
		s->msg.body_bytes += n;
	else
		s->msg.head_bytes += n;
}

void http_stream_feed(struct http_stream *s, const uint8_t *data, size_t cap,
		      size_t len, uint64_t enter_ns, uint64_t exit_ns)
{
	size_t i = 0;
	uint64_t gap;

	if (cap > len)
		cap = len;
	gap = len - cap;

	if (s->state == HS_LOST) {
		/* Resynchronise only at a piece boundary that starts a
		 * message: a syscall usually starts where a message does. */
		bool starts = cap && (s->requests ? http_looks_request(data, cap)
						  : http_looks_response(data, cap));
		if (!starts)
			return;
		s->resyncs++;
		s->state = HS_IDLE;
	}

	while (i < cap) {
		uint8_t c = data[i];

		switch (s->state) {
		case HS_IDLE:
			/* Stray CRLF between messages is allowed. */
			if (c == '\r' || c == '\n') {
				i++;
				continue;
			}
			begin_message(s, enter_ns, exit_ns);
			continue;
		case HS_BODY_LEN:
		case HS_CHUNK_DATA: {
			uint64_t n = cap - i;
			if (n > s->remaining)
				n = s->remaining;
			s->remaining -= n;
			account(s, n);
			i += n;
			s->msg.last_exit_ns = exit_ns;
			if (!s->remaining) {
				if (s->state == HS_BODY_LEN)
					finish(s, exit_ns);
				else
					s->state = HS_CHUNK_CRLF;
			}
			continue;
		}
		case HS_BODY_EOF:
			account(s, cap - i);
			s->msg.last_exit_ns = exit_ns;
			i = cap;
			continue;
		case HS_LOST:
			/* A malformed line in this piece: drop the rest. */
			return;
		default:
			break;
		}
		/* Line-oriented states: find the end of the line. */
		const uint8_t *nl = memchr(data + i, '\n', cap - i);
		size_t take = nl ? (size_t)(nl - (data + i)) : cap - i;
		size_t room = sizeof(s->line) - 1 - s->line_len;
		if (take > room) {
			s->line_over = true;
			memcpy(s->line + s->line_len, data + i, room);
			s->line_len += room;
		} else {
			memcpy(s->line + s->line_len, data + i, take);
			s->line_len += take;
		}
		account(s, take + (nl ? 1 : 0));
		s->msg.last_exit_ns = exit_ns;
		i += take + (nl ? 1 : 0);
		if (nl) {
			on_line(s, exit_ns);
			s->line_len = 0;
			s->line_over = false;
		}
	}

	if (!gap)
		return;
	/* Bytes we know of but did not see. */
	switch (s->state) {
	case HS_IDLE:
		/* A whole message we cannot see: say so, then resync. */
		begin_message(s, enter_ns, exit_ns);
		account(s, gap);
		s->msg.partial |= HTTP_P_GAP;
		lose_sync(s, HTTP_P_GAP, exit_ns);
		return;
	case HS_BODY_LEN:
	case HS_CHUNK_DATA: {
		uint64_t n = gap < s->remaining ? gap : s->remaining;
		s->remaining -= n;
		account(s, n);
		gap -= n;
		s->msg.last_exit_ns = exit_ns;
		if (!s->remaining) {
			if (s->state == HS_BODY_LEN)
				finish(s, exit_ns);
			else
				s->state = HS_CHUNK_CRLF;
		}
		if (gap) {
			/* The gap runs past this body into framing we need. */
			if (s->state != HS_IDLE)
				lose_sync(s, HTTP_P_GAP, exit_ns);
			else
				s->state = HS_LOST;
		}
		return;
	}
	case HS_BODY_EOF:
		account(s, gap);
		s->msg.last_exit_ns = exit_ns;
		return;
	case HS_LOST:
		return;
	default:
		/* Inside a head or chunk framing. */
		account(s, gap);
		lose_sync(s, HTTP_P_GAP, exit_ns);
		return;
	}
}

void http_stream_lost(struct http_stream *s)
{
	lose_sync(s, HTTP_P_LOST, 0);
}

void http_stream_end(struct http_stream *s, uint64_t ns)
{
	(void)ns;
	if (s->state == HS_BODY_EOF) {
		finish(s, s->msg.last_exit_ns);
		return;
	}
	if (s->state != HS_IDLE && s->state != HS_LOST) {
		s->msg.partial |= HTTP_P_EOF;
		finish(s, s->msg.last_exit_ns);
	}
	s->state = HS_IDLE;
}
