/* l7 sensor family, user side: loads bpf/l7.bpf.c, rebuilds each socket's
 * two byte streams from its events, recognises HTTP/1.x and DNS by content
 * (any port), and writes one "http" record per request/response exchange
 * and one "dns" record per query (answered or timed out).
 *
 * Pairing: HTTP/1.x answers requests in order on a connection, so requests
 * wait in a per-connection FIFO (pipelining) until their response ends.
 * DNS pairs a response with the query of the same socket, transaction id,
 * peer and question. Whatever could not be followed exactly is written with
 * "partial": true and the reasons, never guessed. */
#include "agent/agent.h"
#include "agent/bpfmap.h"
#include "agent/sensor.h"
#include "l7.h"
#include "l7.skel.h"
#include "l7/dns.h"
#include "l7/http.h"
#include "lib/log.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define CONN_BUCKETS 4096
#define CONN_MAX 65536
#define PENDING_MAX 16		/* pipelined requests kept per connection */
#define DNS_PENDING_MAX 8192
#define DNS_TIMEOUT_NS (5ULL * 1000000000ULL)
#define CONN_IDLE_NS (120ULL * 1000000000ULL)
#define CLASSIFY_TRIES 64	/* pieces looked at before giving up */
#define PRE_MAX 64		/* bytes kept per direction until then */

enum conn_kind { CK_UNKNOWN = 0, CK_HTTP, CK_DNS_TCP, CK_OTHER };

struct l7_sensor;

/* A request waiting for its response. */
struct pending_req {
	char method[HTTP_METHOD_MAX];
	char uri[HTTP_URI_MAX];
	int version;
	uint64_t first_enter_ns, first_exit_ns, last_exit_ns;
	uint64_t bytes;
	unsigned partial;
	bool done;
};

struct http_conn {
	struct http_stream req, resp;
	struct pending_req q[PENDING_MAX];
	unsigned head, count;
	bool cur_pushed; /* the request in flight is already queued */
};

struct conn {
	struct conn *next;
	struct l7_sensor *s;
	uint64_t sk;
	enum conn_kind kind;
	bool client;	/* this socket sends the requests / queries */
	int tries;
	bool seq_seen[2];
	uint32_t seq_next[2];
	uint64_t last_ns;
	/* Until the protocol is known: the first bytes of each direction
	 * (a server may read a 2-byte DNS length, then the message) and the
	 * times of the piece that brought the first of them. */
	uint8_t pre[2][PRE_MAX];
	uint16_t prelen[2];
	uint64_t pre_enter[2], pre_exit[2];
	/* Endpoints and process, from the latest event. */
	struct l7_event id;
	struct http_conn *http;
	struct dns_dir *dns[2];
};

struct dns_pending {
	uint64_t sk;
	uint16_t txid, qtype;
	bool client;
	uint8_t raddr[16];
	uint16_t rport;
	uint64_t start_ns;
	char qname[DNS_NAME_MAX];
	struct l7_event id; /* header only: endpoints and process */
	bool tcp;
};

struct l7_sensor {
	struct agent *agent;
	struct l7_bpf *skel;
	struct ring_buffer *rb;
	int ncpus;
	bool redact;
	struct conn *buckets[CONN_BUCKETS];
	size_t nconns;
	struct dns_pending *dns;
	size_t ndns;
	uint64_t last_event_ns;
	/* counters for the status line */
	uint64_t http_records, http_partial, dns_records, dns_timeouts,
		dns_partial, seq_holes, conn_table_full, dns_table_full,
		pipeline_overflow, malformed;
};

/* ---- records */

static int family_of(const struct l7_event *e)
{
	return e->family == AF_INET6 ? AF_INET6 : AF_INET;
}

static void set_process(json_t *rec, const struct l7_event *e)
{
	char comm[L7_COMM_LEN + 1];

	memcpy(comm, e->comm, L7_COMM_LEN);
	comm[L7_COMM_LEN] = '\0';
	json_object_set_new(rec, "pid", json_integer(e->tgid));
	json_object_set_new(rec, "comm", json_string(comm));
	json_object_set_new(rec, "netns", json_integer(e->netns));
}

/* src = the requesting side, dst = the answering side. */
static void set_ends(struct l7_sensor *s, json_t *rec, const struct l7_event *e,
		     const uint8_t *raddr, uint16_t rport, bool client)
{
	struct agent *a = s->agent;
	json_t *local = agent_endpoint(a, family_of(e), e->laddr, e->lport,
				       &e->netns);
	json_t *remote = agent_endpoint(a, family_of(e), raddr, rport, NULL);

	if (client)
		agent_backend(a, remote, e->proto, family_of(e), e->laddr,
			      e->lport, raddr, rport);
	json_object_set_new(rec, "side", json_string(client ? "client"
							     : "server"));
	json_object_set_new(rec, "src", client ? local : remote);
	json_object_set_new(rec, "dst", client ? remote : local);
}

static void set_partial(json_t *rec, unsigned bits)
{
	static const struct {
		unsigned bit;
		const char *name;
	} reasons[] = {
		{ HTTP_P_GAP, "not_captured" },
		{ HTTP_P_LOST, "events_lost" },
		{ HTTP_P_TRUNCATED, "uri_truncated" },
		{ HTTP_P_EOF, "connection_ended" },
		{ HTTP_P_MALFORMED, "malformed" },
		{ HTTP_P_NO_REQUEST, "request_not_seen" },
		{ HTTP_P_NO_RESPONSE, "no_response" },
	};
	json_t *list;

	json_object_set_new(rec, "partial", json_boolean(bits != 0));
	if (!bits)
		return;
	list = json_array();
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (bits & reasons[i].bit)
			json_array_append_new(list, json_string(reasons[i].name));
	json_object_set_new(rec, "partial_reasons", list);
}

static void emit_http(struct conn *c, const struct pending_req *rq,
		      const struct http_msg *rs, unsigned extra)
{
	struct l7_sensor *s = c->s;
	unsigned partial = extra | (rq ? rq->partial : HTTP_P_NO_REQUEST) |
			   (rs ? rs->partial : HTTP_P_NO_RESPONSE);
	/* Client: from the first write of the request to the read that
	 * completed the response. Server: from the read that brought the
	 * request's first byte to the write that completed the response. */
	uint64_t start = 0, first = 0, end = 0;
	json_t *rec;

	if (rq)
		start = c->client ? rq->first_enter_ns : rq->first_exit_ns;
	else if (rs)
		start = rs->first_enter_ns;
	if (rs) {
		first = c->client ? rs->first_exit_ns : rs->first_enter_ns;
		end = rs->last_exit_ns;
	}
	rec = agent_record(s->agent, "http", start);
	set_ends(s, rec, &c->id, c->id.raddr, c->id.rport, c->client);
	json_object_set_new(rec, "proto", json_string("http"));
	if (rq) {
		char uri[HTTP_URI_MAX + 16];
		bool cut = false;
		json_object_set_new(rec, "method", json_string(rq->method));
		if (s->redact)
			cut = http_redact_uri(rq->uri, uri, sizeof(uri));
		else
			snprintf(uri, sizeof(uri), "%s", rq->uri);
		json_object_set_new(rec, "uri", json_string(uri));
		if (cut)
			json_object_set_new(rec, "query_redacted", json_true());
		json_object_set_new(rec, "version",
				    json_string(rq->version == 10 ? "HTTP/1.0"
								  : "HTTP/1.1"));
		json_object_set_new(rec, "request_bytes",
				    json_integer((json_int_t)rq->bytes));
	}
	if (rs) {
		if (rs->head_done)
			json_object_set_new(rec, "status",
					    json_integer(rs->status));
		json_object_set_new(rec, "response_bytes",
				    json_integer((json_int_t)(rs->head_bytes +
							      rs->body_bytes)));
		if (rs->head_done && rs->chunked)
			json_object_set_new(rec, "chunked", json_true());
	}
	if (rq && rs && end >= start) {
		json_object_set_new(rec, "duration_ns",
				    json_integer((json_int_t)(end - start)));
		if (first >= start)
			json_object_set_new(rec, "ttfb_ns",
					    json_integer((json_int_t)(first -
								      start)));
	}
	set_partial(rec, partial);
	set_process(rec, &c->id);
	agent_emit(s->agent, rec);
	s->http_records++;
	if (partial)
		s->http_partial++;
}

/* ---- HTTP pairing */

static void push_request(struct conn *c, const struct http_msg *m)
{
	struct http_conn *h = c->http;
	struct pending_req *p;

	if (h->count == PENDING_MAX) {
		/* More pipelined requests than we hold: the oldest is
		 * written out unanswered rather than dropped silently. */
		c->s->pipeline_overflow++;
		emit_http(c, &h->q[h->head], NULL, 0);
		h->head = (h->head + 1) % PENDING_MAX;
		h->count--;
	}
	p = &h->q[(h->head + h->count) % PENDING_MAX];
	memset(p, 0, sizeof(*p));
	snprintf(p->method, sizeof(p->method), "%s", m->method);
	snprintf(p->uri, sizeof(p->uri), "%s", m->uri);
	p->version = m->version;
	p->first_enter_ns = m->first_enter_ns;
	p->first_exit_ns = m->first_exit_ns;
	p->last_exit_ns = m->last_exit_ns;
	p->bytes = m->head_bytes + m->body_bytes;
	p->partial = m->partial;
	h->count++;
}

static bool on_req_head(void *ctx, struct http_msg *m)
{
	struct conn *c = ctx;

	push_request(c, m);
	c->http->cur_pushed = true;
	return true;
}

static void on_req_done(void *ctx, struct http_msg *m)
{
	struct conn *c = ctx;
	struct http_conn *h = c->http;

	if (!m->head_done) {
		/* Never got a whole head: still queue it so that the
		 * responses that follow stay paired with their requests. */
		c->s->malformed++;
		if (!m->method[0])
			snprintf(m->method, sizeof(m->method), "?");
		m->partial |= HTTP_P_MALFORMED;
		if (!h->cur_pushed)
			push_request(c, m);
	} else if (h->count) {
		struct pending_req *p =
			&h->q[(h->head + h->count - 1) % PENDING_MAX];
		p->last_exit_ns = m->last_exit_ns;
		p->bytes = m->head_bytes + m->body_bytes;
		p->partial |= m->partial;
		p->done = true;
	}
	h->cur_pushed = false;
}

static bool on_resp_head(void *ctx, struct http_msg *m)
{
	struct conn *c = ctx;
	struct http_conn *h = c->http;

	(void)m;
	return !(h->count && !strcmp(h->q[h->head].method, "HEAD"));
}

static void on_resp_done(void *ctx, struct http_msg *m)
{
	struct conn *c = ctx;
	struct http_conn *h = c->http;

	/* The first response bytes of a connection picked up in the middle
	 * (the tail of an answer whose request we never saw): no head, so
	 * it answers nothing; do not pair it with the request now waiting. */
	if (!m->head_done && h->resp.messages == 1) {
		c->s->malformed++;
		return;
	}
	/* An interim 1xx answer is not the response. */
	if (m->head_done && m->status >= 100 && m->status < 200 &&
	    m->status != 101)
		return;
	if (!h->count) {
		emit_http(c, NULL, m, 0);
		return;
	}
	emit_http(c, &h->q[h->head], m, 0);
	h->head = (h->head + 1) % PENDING_MAX;
	h->count--;
}

static const struct http_hooks req_hooks = {
	.on_head = on_req_head,
	.on_done = on_req_done,
};
static const struct http_hooks resp_hooks = {
	.on_head = on_resp_head,
	.on_done = on_resp_done,
};

/* ---- DNS */

static void emit_dns(struct l7_sensor *s, const struct dns_pending *q,
		     const struct dns_msg *r, uint64_t end_ns, bool partial,
		     const char *why)
{
	json_t *rec = agent_record(s->agent, "dns", q->start_ns);
	const struct l7_event *id = &q->id;
	char buf[24];

	set_ends(s, rec, id, q->raddr, q->rport, q->client);
	json_object_set_new(rec, "proto", json_string(q->tcp ? "tcp" : "udp"));
	json_object_set_new(rec, "txid", json_integer(q->txid));
	json_object_set_new(rec, "qname", json_string(q->qname));
	json_object_set_new(rec, "qtype",
			    json_string(dns_type_name(q->qtype, buf,
						      sizeof(buf))));
	if (r) {
		json_object_set_new(rec, "rcode",
				    json_string(dns_rcode_name(r->rcode, buf,
							       sizeof(buf))));
		json_object_set_new(rec, "answers", json_integer(r->ancount));
		json_t *addrs = json_array();
		for (int i = 0; i < r->naddrs; i++)
			json_array_append_new(addrs, json_string(r->addrs[i]));
		json_object_set_new(rec, "addrs", addrs);
		if (r->truncated)
			json_object_set_new(rec, "tc", json_true());
		json_object_set_new(rec, "duration_ns",
				    json_integer((json_int_t)(end_ns -
							      q->start_ns)));
		json_object_set_new(rec, "timeout", json_false());
		partial |= r->partial;
	} else if (!why) {
		json_object_set_new(rec, "rcode", json_string("TIMEOUT"));
		json_object_set_new(rec, "timeout", json_true());
		s->dns_timeouts++;
	}
	json_object_set_new(rec, "partial", json_boolean(partial || why));
	if (why) {
		json_t *list = json_array();
		json_array_append_new(list, json_string(why));
		json_object_set_new(rec, "partial_reasons", list);
	} else if (partial) {
		json_t *list = json_array();
		json_array_append_new(list, json_string("not_captured"));
		json_object_set_new(rec, "partial_reasons", list);
	}
	set_process(rec, id);
	agent_emit(s->agent, rec);
	s->dns_records++;
	if (partial || why)
		s->dns_partial++;
}

/* One whole DNS message moved by socket `e->sock` in direction `e->dir`. */
static void on_dns_message(struct l7_sensor *s, const struct l7_event *e,
			   int dir, const uint8_t *m, size_t kept, bool gap,
			   bool tcp, uint64_t enter_ns, uint64_t exit_ns)
{
	struct dns_msg d;
	bool out = dir == L7_DIR_OUT;

	if (dns_parse(m, kept, &d)) {
		s->malformed++;
		return;
	}
	if (gap)
		d.partial = true;
	if (!d.response) {
		/* Sent: we are the client, the query leaves now. Received:
		 * we are the server, it arrived when the read returned. */
		if (s->ndns == DNS_PENDING_MAX) {
			s->dns_table_full++;
			return;
		}
		struct dns_pending *q = &s->dns[s->ndns++];
		memset(q, 0, sizeof(*q));
		q->sk = e->sock;
		q->txid = d.id;
		q->qtype = d.qtype;
		q->client = out;
		memcpy(q->raddr, e->raddr, sizeof(q->raddr));
		q->rport = e->rport;
		q->start_ns = out ? enter_ns : exit_ns;
		q->tcp = tcp;
		snprintf(q->qname, sizeof(q->qname), "%s", d.qname);
		memcpy(&q->id, e, L7_EVENT_HDR);
		return;
	}
	for (size_t i = 0; i < s->ndns; i++) {
		struct dns_pending *q = &s->dns[i];
		if (q->sk != e->sock || q->txid != d.id || q->qtype != d.qtype ||
		    q->client == out || q->rport != e->rport ||
		    memcmp(q->raddr, e->raddr, sizeof(q->raddr)) ||
		    strcasecmp(q->qname, d.qname))
			continue;
		emit_dns(s, q, &d, exit_ns, d.partial, NULL);
		s->dns[i] = s->dns[--s->ndns];
		return;
	}
	/* A response to a query we did not see (sensor started between
	 * them, or the query was lost): not recorded, counted. */
	s->malformed++;
}

static void dns_expire(struct l7_sensor *s, uint64_t now, bool stopping)
{
	for (size_t i = 0; i < s->ndns;) {
		struct dns_pending *q = &s->dns[i];
		bool old = now > q->start_ns && now - q->start_ns > DNS_TIMEOUT_NS;
		if (old || stopping) {
			emit_dns(s, q, NULL, now, false,
				 old ? NULL : "agent_stopped");
			s->dns[i] = s->dns[--s->ndns];
			continue;
		}
		i++;
	}
}

/* One direction of a DNS-over-TCP connection. */
struct dns_dir {
	struct dns_tcp_stream st;
	struct conn *c;
	int dir;
};

static void on_dns_tcp_msg(void *ctx, const uint8_t *m, size_t kept,
			   size_t len, bool gap, uint64_t enter_ns,
			   uint64_t exit_ns)
{
	struct dns_dir *dd = ctx;
	(void)len;
	on_dns_message(dd->c->s, &dd->c->id, dd->dir, m, kept, gap, true,
		       enter_ns, exit_ns);
}

/* ---- connections */

static struct conn **bucket(struct l7_sensor *s, uint64_t sk)
{
	uint64_t h = sk * 0x9e3779b97f4a7c15ULL;
	return &s->buckets[(h >> 40) % CONN_BUCKETS];
}

static struct conn *conn_find(struct l7_sensor *s, uint64_t sk, bool create)
{
	struct conn **b = bucket(s, sk), *c;

	for (c = *b; c; c = c->next)
		if (c->sk == sk)
			return c;
	if (!create)
		return NULL;
	if (s->nconns >= CONN_MAX) {
		s->conn_table_full++;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->s = s;
	c->sk = sk;
	c->next = *b;
	*b = c;
	s->nconns++;
	return c;
}

/* Ends what is in flight on the connection and frees it. */
static void conn_close(struct l7_sensor *s, struct conn *c, uint64_t now)
{
	struct conn **pp = bucket(s, c->sk);

	if (c->http) {
		struct http_conn *h = c->http;
		http_stream_end(&h->req, now);
		http_stream_end(&h->resp, now);
		while (h->count) {
			emit_http(c, &h->q[h->head], NULL, 0);
			h->head = (h->head + 1) % PENDING_MAX;
			h->count--;
		}
		free(h);
	}
	free(c->dns[0]);
	free(c->dns[1]);
	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
	s->nconns--;
	free(c);
}

/* Looks at the first bytes of a direction (d[0..n)); sets c->kind. */
static void classify(struct conn *c, const uint8_t *d, size_t n, int dir)
{
	if (!n)
		return;
	if (http_looks_request(d, n)) {
		if (n < 8)
			return; /* too little to be sure: next piece */
		c->kind = CK_HTTP;
		c->client = dir == L7_DIR_OUT;
		c->http = calloc(1, sizeof(*c->http));
		if (!c->http) {
			c->kind = CK_OTHER;
			return;
		}
		http_stream_init(&c->http->req, true, &req_hooks, c);
		http_stream_init(&c->http->resp, false, &resp_hooks, c);
		return;
	}
	/* DNS over TCP: a 2-byte length, then a message. */
	if (n >= 14 && (size_t)(d[0] << 8 | d[1]) + 2 >= n &&
	    dns_looks_like(d + 2, n - 2)) {
		c->kind = CK_DNS_TCP;
		for (int i = 0; i < 2; i++) {
			c->dns[i] = calloc(1, sizeof(*c->dns[i]));
			if (!c->dns[i]) {
				c->kind = CK_OTHER;
				return;
			}
			c->dns[i]->c = c;
			c->dns[i]->dir = i;
			dns_tcp_init(&c->dns[i]->st, on_dns_tcp_msg, c->dns[i]);
		}
		return;
	}
	/* A response first (we started mid-connection) or anything else:
	 * wait for a piece that opens a request. */
}

static void feed_conn(struct conn *c, int dir, const uint8_t *data, size_t cap,
		      size_t len, uint64_t enter_ns, uint64_t exit_ns)
{
	switch (c->kind) {
	case CK_HTTP: {
		bool reqdir = (dir == L7_DIR_OUT) == c->client;
		http_stream_feed(reqdir ? &c->http->req : &c->http->resp, data,
				 cap, len, enter_ns, exit_ns);
		break;
	}
	case CK_DNS_TCP:
		dns_tcp_feed(&c->dns[dir]->st, data, cap, len, enter_ns,
			     exit_ns);
		break;
	default:
		break;
	}
}

/* Could d[0..n) be the first bytes of a request or of a DNS-over-TCP
 * message, with more to come? */
static bool may_start(const uint8_t *d, size_t n)
{
	if (http_looks_request(d, n))
		return true;
	/* DNS over TCP: a length, then a header; too short to check yet. */
	return n < 14;
}

/* An unclassified connection's piece: classify on what this direction
 * brought so far; once known, replay the kept bytes, then the piece.
 * Pieces that cannot open a message (a connection first seen in the middle,
 * e.g. a keep-alive connection older than the agent: a response or a
 * body) are skipped until one that opens a request comes. */
static void classify_event(struct conn *c, const struct l7_event *e)
{
	int dir = e->dir;
	uint8_t buf[PRE_MAX + L7_CAP];
	size_t n = c->prelen[dir];

	if (++c->tries > CLASSIFY_TRIES) {
		c->kind = CK_OTHER;
		return;
	}
	if (e->cap < e->len) {
		/* Part of this piece was not captured: not a start we can
		 * use, and any bytes kept before it no longer lead on. */
		c->prelen[dir] = 0;
		return;
	}
	memcpy(buf, c->pre[dir], n);
	memcpy(buf + n, e->data, e->cap);
	classify(c, buf, n + e->cap, dir);
	if (c->kind == CK_UNKNOWN) {
		if (n + e->cap > PRE_MAX || !may_start(buf, n + e->cap)) {
			/* Not a beginning: forget it, wait for the next. */
			c->prelen[dir] = 0;
			return;
		}
		if (!n) {
			c->pre_enter[dir] = e->enter_ns;
			c->pre_exit[dir] = e->ts_ns;
		}
		memcpy(c->pre[dir] + n, e->data, e->cap);
		c->prelen[dir] = (uint16_t)(n + e->cap);
		return;
	}
	if (c->kind == CK_OTHER)
		return;
	/* The other direction's kept bytes came first in time. */
	int other = !dir;
	if (c->prelen[other])
		feed_conn(c, other, c->pre[other], c->prelen[other],
			  c->prelen[other], c->pre_enter[other],
			  c->pre_exit[other]);
	if (n)
		feed_conn(c, dir, c->pre[dir], n, n, c->pre_enter[dir],
			  c->pre_exit[dir]);
	c->prelen[0] = c->prelen[1] = 0;
	feed_conn(c, dir, e->data, e->cap, e->len, e->enter_ns, e->ts_ns);
}

static void on_event(struct l7_sensor *s, const struct l7_event *e)
{
	struct conn *c;

	if (e->ts_ns > s->last_event_ns)
		s->last_event_ns = e->ts_ns;
	if (e->dir == L7_DIR_CLOSE) {
		c = conn_find(s, e->sock, false);
		if (c)
			conn_close(s, c, e->ts_ns);
		return;
	}
	if (e->dir > L7_DIR_OUT)
		return;
	if (e->proto == IPPROTO_UDP) {
		/* Each datagram stands alone: DNS by content, any port. */
		if (e->cap >= 12 && dns_looks_like(e->data, e->cap))
			on_dns_message(s, e, e->dir, e->data, e->cap,
				       e->cap < e->len, false, e->enter_ns,
				       e->ts_ns);
		return;
	}

	c = conn_find(s, e->sock, true);
	if (!c)
		return;
	/* Sequence back at 0: the kernel forgot this socket (its close, which
	 * we missed, or an LRU eviction) and the address may be a new socket.
	 * End the old one (what was in flight is written partial). */
	if (c->seq_seen[e->dir] && e->seq == 0 && c->seq_next[e->dir] != 0) {
		conn_close(s, c, e->ts_ns);
		c = conn_find(s, e->sock, true);
		if (!c)
			return;
	}
	/* Sequence holes: pieces of this direction were lost. */
	if (c->seq_seen[e->dir] && e->seq != c->seq_next[e->dir]) {
		s->seq_holes++;
		if (c->kind == CK_HTTP) {
			bool reqdir = (e->dir == L7_DIR_OUT) == c->client;
			http_stream_lost(reqdir ? &c->http->req : &c->http->resp);
		} else if (c->kind == CK_DNS_TCP) {
			c->dns[e->dir]->st.lost = true;
		}
	}
	c->seq_seen[e->dir] = true;
	c->seq_next[e->dir] = e->seq + 1;
	c->last_ns = e->ts_ns;
	memcpy(&c->id, e, L7_EVENT_HDR);

	if (c->kind == CK_UNKNOWN)
		classify_event(c, e);
	else
		feed_conn(c, e->dir, e->data, e->cap, e->len, e->enter_ns,
			  e->ts_ns);
}

static int on_ring_record(void *ctx, void *data, size_t len)
{
	const struct l7_event *e = data;

	if (len < L7_EVENT_HDR || len < L7_EVENT_HDR + e->cap)
		return 0;
	on_event(ctx, e);
	return 0;
}

/* ---- family operations */

static void l7_stop(void *state)
{
	struct l7_sensor *s = state;

	if (!s)
		return;
	for (size_t b = 0; b < CONN_BUCKETS; b++)
		while (s->buckets[b])
			conn_close(s, s->buckets[b], s->last_event_ns);
	if (s->dns)
		dns_expire(s, s->last_event_ns, true);
	ring_buffer__free(s->rb);
	l7_bpf__destroy(s->skel);
	free(s->dns);
	free(s);
}

static int l7_start(struct agent *a, void **state, char *why, size_t why_len)
{
	const struct agent_config *cfg = agent_config(a);
	LIBBPF_OPTS(bpf_object_open_opts, open_opts,
		    .btf_custom_path = cfg->btf_path);
	struct l7_sensor *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->agent = a;
	s->redact = !cfg->no_redact;
	s->dns = calloc(DNS_PENDING_MAX, sizeof(*s->dns));
	s->ncpus = libbpf_num_possible_cpus();
	if (!s->dns || s->ncpus <= 0) {
		err = -ENOMEM;
		snprintf(why, why_len, "out of memory");
		goto fail;
	}
	s->skel = l7_bpf__open_opts(&open_opts);
	if (!s->skel) {
		err = -errno;
		snprintf(why, why_len, "open BPF object: %s", strerror(-err));
		goto fail;
	}
	s->skel->rodata->filter_netns = !cfg->all_netns;
	err = l7_bpf__load(s->skel);
	if (err) {
		snprintf(why, why_len,
			 "load (tp_btf sys_enter/sys_exit): %s", strerror(-err));
		goto fail;
	}
	err = l7_bpf__attach(s->skel);
	if (err) {
		snprintf(why, why_len, "attach (tp_btf sys_enter/sys_exit): %s",
			 strerror(-err));
		goto fail;
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.l7_events),
				 on_ring_record, s, NULL);
	if (!s->rb) {
		err = -errno;
		snprintf(why, why_len, "ring buffer: %s", strerror(-err));
		goto fail;
	}
	log_info("l7 sensor attached to raw syscalls (tp_btf sys_enter/exit) "
		 "and sock:inet_sock_set_state; query strings %s",
		 s->redact ? "redacted" : "kept");
	*state = s;
	return 0;
fail:
	l7_stop(s);
	return err;
}

/* Makes the kernel's netns filter exactly the agent's targets. */
static void l7_retarget(void *state)
{
	struct l7_sensor *s = state;
	size_t n;
	const uint32_t *netns = agent_target_netns(s->agent, &n);

	netns_filter_sync(bpf_map__fd(s->skel->maps.netns_allow), netns, n,
			  "l7");
}

static int l7_poll_fd(void *state)
{
	return ring_buffer__epoll_fd(((struct l7_sensor *)state)->rb);
}

static void l7_consume(void *state)
{
	ring_buffer__consume(((struct l7_sensor *)state)->rb);
}

/* Every interval: DNS queries past their timeout, connections idle for
 * long (their close was not seen: UDP, or sockets born before us). */
static void l7_tick(void *state)
{
	struct l7_sensor *s = state;
	struct timespec ts;
	uint64_t now;

	/* The kernel wakes us only when much is waiting: drain the rest. */
	ring_buffer__consume(s->rb);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	dns_expire(s, now, false);
	for (size_t b = 0; b < CONN_BUCKETS; b++) {
		struct conn *c = s->buckets[b], *next;
		for (; c; c = next) {
			next = c->next;
			if (now > c->last_ns && now - c->last_ns > CONN_IDLE_NS)
				conn_close(s, c, now);
		}
	}
}

static void l7_status(void *state, json_t *out)
{
	static const char *const names[L7_CNT_MAX] = {
		[L7_CNT_EVENTS] = "events",
		[L7_CNT_RINGBUF_FULL] = "lost_ringbuf_full",
		[L7_CNT_STASH_FULL] = "lost_syscall_map_full",
		[L7_CNT_TRUNCATED] = "truncated_captures",
		[L7_CNT_READ_FAULT] = "lost_read_fault",
	};
	struct l7_sensor *s = state;
	int fd = bpf_map__fd(s->skel->maps.l7_counters);

	json_object_set_new(out, "hook", json_string("tp_btf"));
	json_object_set_new(out, "http_records",
			    json_integer((json_int_t)s->http_records));
	json_object_set_new(out, "http_partial",
			    json_integer((json_int_t)s->http_partial));
	json_object_set_new(out, "dns_records",
			    json_integer((json_int_t)s->dns_records));
	json_object_set_new(out, "dns_timeouts",
			    json_integer((json_int_t)s->dns_timeouts));
	json_object_set_new(out, "dns_partial",
			    json_integer((json_int_t)s->dns_partial));
	json_object_set_new(out, "lost_seq_holes",
			    json_integer((json_int_t)s->seq_holes));
	json_object_set_new(out, "lost_conn_table_full",
			    json_integer((json_int_t)s->conn_table_full));
	json_object_set_new(out, "lost_dns_table_full",
			    json_integer((json_int_t)s->dns_table_full));
	json_object_set_new(out, "pipeline_overflow",
			    json_integer((json_int_t)s->pipeline_overflow));
	json_object_set_new(out, "unparsed_messages",
			    json_integer((json_int_t)s->malformed));
	percpu_counters_json(fd, s->ncpus, names, L7_CNT_MAX, out);
}

const struct sensor_family l7_family = {
	.name = "l7",
	.summary = "HTTP/1.x and DNS (UDP, TCP) by content, any port",
	.start = l7_start,
	.retarget = l7_retarget,
	.poll_fd = l7_poll_fd,
	.consume = l7_consume,
	.tick = l7_tick,
	.status = l7_status,
	.stop = l7_stop,
};
