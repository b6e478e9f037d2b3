/* The l7 DNS parser: header, question and A/AAAA answers (compressed names
 * included), refusal of what is not DNS, partial answers flagged, and the
 * TCP length framing across any split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "l7/dns.h"

/* ratings.bookinfo.svc.cluster.local A, answered 10.96.3.4, the answer
 * name compressed to the question (0xc00c). */
static size_t build(uint8_t *m, uint16_t id, bool resp, uint8_t rcode,
		    uint16_t qtype, int answers)
{
	static const uint8_t qname[] = "\x07ratings\x08"
				       "bookinfo\x03svc\x07"
				       "cluster\x05local";
	size_t o = 0;

	m[o++] = id >> 8;
	m[o++] = id & 0xff;
	m[o++] = resp ? 0x81 : 0x01;
	m[o++] = resp ? (0x80 | rcode) : 0;
	m[o++] = 0, m[o++] = 1;		 /* qdcount */
	m[o++] = 0, m[o++] = (uint8_t)answers; /* ancount */
	m[o++] = 0, m[o++] = 0, m[o++] = 0, m[o++] = 0;
	memcpy(m + o, qname, sizeof(qname)); /* includes the final 0 */
	o += sizeof(qname);
	m[o++] = qtype >> 8, m[o++] = qtype & 0xff;
	m[o++] = 0, m[o++] = 1;
	for (int i = 0; i < answers; i++) {
		m[o++] = 0xc0, m[o++] = 0x0c;
		m[o++] = 0, m[o++] = 1, m[o++] = 0, m[o++] = 1;
		m[o++] = 0, m[o++] = 0, m[o++] = 0, m[o++] = 5;
		m[o++] = 0, m[o++] = 4;
		m[o++] = 10, m[o++] = 96, m[o++] = 3, m[o++] = (uint8_t)(4 + i);
	}
	return o;
}

static void test_query_and_answer(void **state)
{
	uint8_t m[512];
	struct dns_msg d;
	size_t n;
	(void)state;

	n = build(m, 0x1234, false, 0, 1, 0);
	assert_int_equal(dns_parse(m, n, &d), 0);
	assert_false(d.response);
	assert_int_equal(d.id, 0x1234);
	assert_string_equal(d.qname, "ratings.bookinfo.svc.cluster.local");
	assert_int_equal(d.qtype, 1);
	assert_true(dns_looks_like(m, n));

	n = build(m, 0x1234, true, 0, 1, 2);
	assert_int_equal(dns_parse(m, n, &d), 0);
	assert_true(d.response);
	assert_int_equal(d.ancount, 2);
	assert_int_equal(d.naddrs, 2);
	assert_string_equal(d.addrs[0], "10.96.3.4");
	assert_string_equal(d.addrs[1], "10.96.3.5");
	assert_false(d.partial);

	/* Cut inside the answers: header and question stay, flagged. */
	assert_int_equal(dns_parse(m, n - 3, &d), 0);
	assert_true(d.partial);
	assert_int_equal(d.naddrs, 1);

	n = build(m, 7, true, 3, 33, 0);
	assert_int_equal(dns_parse(m, n, &d), 0);
	char buf[16];
	assert_string_equal(dns_rcode_name(d.rcode, buf, sizeof(buf)), "NXDOMAIN");
	assert_string_equal(dns_type_name(d.qtype, buf, sizeof(buf)), "SRV");
	assert_string_equal(dns_type_name(999, buf, sizeof(buf)), "TYPE999");
}

static void test_not_dns(void **state)
{
	uint8_t m[512];
	struct dns_msg d;
	size_t n;
	(void)state;

	assert_false(dns_looks_like((const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18));
	n = build(m, 1, false, 0, 1, 0);
	/* Question cut short. */
	assert_int_equal(dns_parse(m, 20, &d), -1);
	/* A compression loop in the question. */
	m[12] = 0xc0, m[13] = 12;
	assert_int_equal(dns_parse(m, n, &d), -1);
	/* Two questions: not what resolvers send. */
	n = build(m, 1, false, 0, 1, 0);
	m[5] = 2;
	assert_false(dns_looks_like(m, n));
}

struct tcp_sink {
	int n;
	size_t lens[8];
	bool gaps[8];
	struct dns_msg last;
};

static void on_msg(void *ctx, const uint8_t *m, size_t kept, size_t len,
		   bool gap, uint64_t enter_ns, uint64_t exit_ns)
{
	struct tcp_sink *s = ctx;
	(void)enter_ns, (void)exit_ns;
	if (s->n < 8) {
		s->lens[s->n] = len;
		s->gaps[s->n] = gap;
	}
	s->n++;
	assert_int_equal(dns_parse(m, kept, &s->last), 0);
}

static void test_tcp_framing_any_split(void **state)
{
	uint8_t stream[1024];
	size_t o = 0, n;
	(void)state;

	for (int k = 0; k < 3; k++) {
		n = build(stream + o + 2, (uint16_t)k, k > 0, 0, 1, k);
		stream[o] = (uint8_t)(n >> 8), stream[o + 1] = n & 0xff;
		o += n + 2;
	}
	for (size_t step = 1; step <= o; step++) {
		struct tcp_sink s = { 0 };
		struct dns_tcp_stream *t = malloc(sizeof(*t));
		dns_tcp_init(t, on_msg, &s);
		for (size_t i = 0; i < o; i += step) {
			size_t k = o - i < step ? o - i : step;
			dns_tcp_feed(t, stream + i, k, k, i, i);
		}
		assert_int_equal(s.n, 3);
		assert_false(s.gaps[2]);
		assert_int_equal(s.last.id, 2);
		assert_int_equal(s.last.naddrs, 2);
		free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_and_answer),
		cmocka_unit_test(test_not_dns),
		cmocka_unit_test(test_tcp_framing_any_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
