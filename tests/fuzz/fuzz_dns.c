/* libFuzzer target for the l7 DNS parser and the DNS-over-TCP framing.
 * A parsed message must have a printable name that fits, counts that hold
 * and at most DNS_MAX_ADDRS addresses; the TCP framing must deliver the
 * same messages whatever the cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "l7/dns.h"

struct sink {
	int n;
	size_t lens[64];
};

static void on_msg(void *ctx, const uint8_t *m, size_t kept, size_t len,
		   bool gap, uint64_t enter_ns, uint64_t exit_ns)
{
	struct sink *s = ctx;
	struct dns_msg d;

	(void)gap, (void)enter_ns, (void)exit_ns;
	if (kept > len || kept > DNS_TCP_KEEP)
		abort();
	dns_parse(m, kept, &d);
	if (s->n < 64)
		s->lens[s->n] = len;
	s->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dns_tcp_stream t;
	struct sink a = { 0 }, b = { 0 };
	struct dns_msg d;
	unsigned seed = size ? data[0] : 0;

	if (dns_parse(data, size, &d) == 0) {
		size_t l = strnlen(d.qname, sizeof(d.qname));
		if (l == sizeof(d.qname) || l == 0)
			abort();
		for (size_t i = 0; i < l; i++)
			if (d.qname[i] <= ' ' || d.qname[i] >= 0x7f)
				abort();
		if (d.naddrs < 0 || d.naddrs > DNS_MAX_ADDRS ||
		    d.naddrs > d.ancount)
			abort();
	}
	(void)dns_looks_like(data, size);

	dns_tcp_init(&t, on_msg, &a);
	dns_tcp_feed(&t, data, size, size, 1, 2);
	dns_tcp_init(&t, on_msg, &b);
	for (size_t i = 0, k; i < size; i += k) {
		seed = seed * 1103515245u + 12345u;
		k = 1 + (seed >> 16) % 40;
		if (k > size - i)
			k = size - i;
		dns_tcp_feed(&t, data + i, k, k, 1, 2);
	}
	if (a.n != b.n)
		abort();
	for (int i = 0; i < a.n && i < 64; i++)
		if (a.lens[i] != b.lens[i])
			abort();
	return 0;
}
