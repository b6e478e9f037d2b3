#include "l7/dns.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Reads a possibly compressed name at *off; advances *off past it in the
 * message (not past the pointer target). Returns 0 or -1. */
static int read_name(const uint8_t *m, size_t len, size_t *off, char *out,
		     size_t out_len)
{
	size_t pos = *off, o = 0;
	bool jumped = false;
	int hops = 0;

	if (out_len)
		out[0] = '\0';
	for (;;) {
		if (pos >= len)
			return -1;
		uint8_t l = m[pos];
		if ((l & 0xc0) == 0xc0) {
			if (pos + 1 >= len || ++hops > 16)
				return -1;
			size_t target = (size_t)(l & 0x3f) << 8 | m[pos + 1];
			if (!jumped)
				*off = pos + 2;
			jumped = true;
			if (target >= len)
				return -1;
			pos = target;
			continue;
		}
		if (l & 0xc0)
			return -1; /* reserved label types */
		if (l == 0) {
			if (!jumped)
				*off = pos + 1;
			break;
		}
		if (pos + 1 + l > len)
			return -1;
		/* label + dot + NUL must fit; the wire limit is 255. */
		if (o + l + 2 > out_len || o + l + 1 > 255)
			return -1;
		for (size_t i = 0; i < l; i++) {
			uint8_t c = m[pos + 1 + i];
			/* Keep records printable: escape the rest. */
			out[o++] = (c > ' ' && c < 0x7f && c != '.' && c != '\\')
					   ? (char)c
					   : '?';
		}
		out[o++] = '.';
		out[o] = '\0';
		pos += 1 + l;
	}
	if (o == 0)
		snprintf(out, out_len, ".");
	else
		out[o - 1] = '\0'; /* no trailing dot */
	return 0;
}

int dns_parse(const uint8_t *m, size_t len, struct dns_msg *d)
{
	size_t off = 12;

	memset(d, 0, sizeof(*d));
	if (len < 12)
		return -1;
	d->id = rd16(m);
	d->response = m[2] & 0x80;
	d->opcode = (m[2] >> 3) & 0xf;
	d->truncated = m[2] & 0x02;
	d->rcode = m[3] & 0xf;
	d->qdcount = rd16(m + 4);
	d->ancount = rd16(m + 6);
	d->nscount = rd16(m + 8);
	d->arcount = rd16(m + 10);
	if (d->qdcount != 1)
		return -1;
	if (read_name(m, len, &off, d->qname, sizeof(d->qname)) ||
	    off + 4 > len)
		return -1;
	d->qtype = rd16(m + off);
	d->qclass = rd16(m + off + 2);
	off += 4;
	for (unsigned i = 0; i < d->ancount; i++) {
		char name[DNS_NAME_MAX];
		if (read_name(m, len, &off, name, sizeof(name)) ||
		    off + 10 > len) {
			d->partial = true;
			break;
		}
		uint16_t type = rd16(m + off);
		uint16_t rdlen = rd16(m + off + 8);
		off += 10;
		if (off + rdlen > len) {
			d->partial = true;
			break;
		}
		if (d->naddrs < DNS_MAX_ADDRS &&
		    ((type == 1 && rdlen == 4) || (type == 28 && rdlen == 16)))
			inet_ntop(type == 1 ? AF_INET : AF_INET6, m + off,
				  d->addrs[d->naddrs++], sizeof(d->addrs[0]));
		off += rdlen;
	}
	return 0;
}

bool dns_looks_like(const uint8_t *m, size_t len)
{
	struct dns_msg d;

	if (dns_parse(m, len, &d))
		return false;
	if (d.opcode > 5 || d.ancount > 256 || d.nscount > 256 ||
	    d.arcount > 256)
		return false;
	/* IN, CH, HS, ANY */
	return d.qclass == 1 || d.qclass == 3 || d.qclass == 4 ||
	       d.qclass == 255;
}

const char *dns_type_name(uint16_t type, char *buf, size_t len)
{
	switch (type) {
	case 1: return "A";
	case 2: return "NS";
	case 5: return "CNAME";
	case 6: return "SOA";
	case 12: return "PTR";
	case 15: return "MX";
	case 16: return "TXT";
	case 28: return "AAAA";
	case 33: return "SRV";
	case 41: return "OPT";
	case 64: return "SVCB";
	case 65: return "HTTPS";
	case 255: return "ANY";
	}
	snprintf(buf, len, "TYPE%u", type);
	return buf;
}

const char *dns_rcode_name(uint8_t rcode, char *buf, size_t len)
{
	static const char *const names[] = {
		"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
		"NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
		"NXRRSET", "NOTAUTH", "NOTZONE",
	};
	if (rcode < sizeof(names) / sizeof(names[0]))
		return names[rcode];
	snprintf(buf, len, "RCODE%u", rcode);
	return buf;
}

void dns_tcp_init(struct dns_tcp_stream *s,
		  void (*on_msg)(void *, const uint8_t *, size_t, size_t, bool,
				 uint64_t, uint64_t),
		  void *ctx)
{
	memset(s, 0, sizeof(*s));
	s->on_msg = on_msg;
	s->ctx = ctx;
}

void dns_tcp_feed(struct dns_tcp_stream *s, const uint8_t *data, size_t cap,
		  size_t len, uint64_t enter_ns, uint64_t exit_ns)
{
	size_t i = 0, gap;

	if (s->lost)
		return;
	if (cap > len)
		cap = len;
	gap = len - cap;
	while (i < cap || gap) {
		if (s->lenhave < 2) {
			if (i >= cap) {
				/* A gap inside a length prefix: cannot frame. */
				s->lost = true;
				return;
			}
			if (s->lenhave == 0) {
				s->first_enter_ns = enter_ns;
				s->first_exit_ns = exit_ns;
			}
			s->lenbuf[s->lenhave++] = data[i++];
			if (s->lenhave == 2) {
				s->msglen = rd16(s->lenbuf);
				s->have = s->kept = 0;
				s->gap = false;
				if (s->msglen < 12) {
					s->lost = true;
					return;
				}
			}
			continue;
		}
		size_t want = s->msglen - s->have;
		if (i < cap) {
			size_t n = cap - i < want ? cap - i : want;
			size_t room = sizeof(s->buf) - s->kept;
			size_t k = n < room ? n : room;
			if (!s->gap) {
				memcpy(s->buf + s->kept, data + i, k);
				s->kept += (uint32_t)k;
			}
			s->have += (uint32_t)n;
			i += n;
		} else {
			size_t n = gap < want ? gap : want;
			s->have += (uint32_t)n;
			s->gap = true;
			gap -= n;
		}
		if (s->have == s->msglen) {
			if (s->on_msg)
				s->on_msg(s->ctx, s->buf, s->kept, s->msglen,
					  s->gap || s->kept < s->msglen,
					  s->first_enter_ns, exit_ns);
			s->lenhave = 0;
		}
	}
}
