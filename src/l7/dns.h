/* DNS message parsing (RFC 1035) for the l7 sensor: the header, the first
 * question and the A/AAAA answers; and the 2-byte length framing of DNS
 * over TCP. Every read is bounds-checked against what was captured, and a
 * message cut short by the capture limit is parsed as far as it goes and
 * flagged, never guessed. */
#ifndef SONDE_L7_DNS_H
#define SONDE_L7_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX 256
#define DNS_MAX_ADDRS 8
#define DNS_TCP_KEEP 4096 /* bytes of one TCP DNS message kept */

struct dns_msg {
	uint16_t id;
	bool response;	 /* QR bit */
	uint8_t opcode;
	uint8_t rcode;
	bool truncated;	 /* TC bit */
	uint16_t qdcount, ancount, nscount, arcount;
	char qname[DNS_NAME_MAX]; /* dotted, "." for the root */
	uint16_t qtype, qclass;
	/* A and AAAA answers, as text. */
	char addrs[DNS_MAX_ADDRS][46];
	int naddrs;
	bool partial;	 /* the answers could not all be read */
};

/* Parses msg[0..len). Returns 0, or -1 when this is not a DNS message we
 * can vouch for (header or question malformed or missing). */
int dns_parse(const uint8_t *msg, size_t len, struct dns_msg *out);

/* Content detection: a plausible query or response (one question, sane
 * counts, a well-formed name, class IN/ANY/CH). */
bool dns_looks_like(const uint8_t *msg, size_t len);

const char *dns_type_name(uint16_t type, char *buf, size_t len);
const char *dns_rcode_name(uint8_t rcode, char *buf, size_t len);

/* One direction of a DNS-over-TCP stream: length-prefixed messages. */
struct dns_tcp_stream {
	uint8_t lenbuf[2];
	int lenhave;	  /* bytes of the length prefix read (0..2) */
	uint32_t msglen;  /* current message's length */
	uint32_t have;	  /* bytes of it seen (captured or gap) */
	uint32_t kept;	  /* bytes of it kept in buf */
	bool gap;	  /* part of it was not captured */
	bool lost;	  /* out of sync: give up on this stream */
	uint64_t first_enter_ns, first_exit_ns;
	uint8_t buf[DNS_TCP_KEEP];
	/* Called per complete message with what was kept of it. */
	void (*on_msg)(void *ctx, const uint8_t *m, size_t kept, size_t len,
		       bool gap, uint64_t enter_ns, uint64_t exit_ns);
	void *ctx;
};

void dns_tcp_init(struct dns_tcp_stream *s,
		  void (*on_msg)(void *, const uint8_t *, size_t, size_t, bool,
				 uint64_t, uint64_t),
		  void *ctx);
void dns_tcp_feed(struct dns_tcp_stream *s, const uint8_t *data, size_t cap,
		  size_t len, uint64_t enter_ns, uint64_t exit_ns);

#endif
