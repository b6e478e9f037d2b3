/* Parser throughput per core for the l7 sensor: a keep-alive stream of
 * Bookinfo-like requests and responses (some chunked, as nginx's SSI
 * answers are), fed in syscall-sized pieces to the HTTP stream parser;
 * and DNS responses to the DNS parser. Prints JSON with MB/s and
 * messages/s of CPU time (CLOCK_PROCESS_CPUTIME_ID: one thread, one core). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "l7/dns.h"
#include "l7/http.h"

static uint64_t msgs;

static void on_done(void *ctx, struct http_msg *m)
{
	(void)ctx;
	if (m->partial)
		abort();
	msgs++;
}

static const struct http_hooks hooks = { .on_done = on_done };

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	static char req[65536], resp[65536];
	size_t rl = 0, sl = 0;
	struct http_stream st;

	for (int i = 0; i < 40; i++) {
		rl += (size_t)sprintf(req + rl,
			"GET /reviews/%d HTTP/1.1\r\nHost: reviews:9080\r\n"
			"User-Agent: sonde-loadgen\r\nAccept: */*\r\n"
			"X-Request-Id: 4f1c2a9e0b7d4c3f8e6a5b4c3d2e1f%02d\r\n\r\n", i, i);
		if (i % 2)
			sl += (size_t)sprintf(resp + sl,
				"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
				"Content-Type: application/json\r\nContent-Length: 180\r\n"
				"Connection: keep-alive\r\n\r\n%0180d", 7);
		else
			sl += (size_t)sprintf(resp + sl,
				"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
				"Content-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
				"64\r\n%0100d\r\n1f4\r\n%0500d\r\n0\r\n\r\n", 1, 2);
	}
	const size_t piece = 1448;
	double best_http = 0, best_msgs = 0;
	uint64_t bytes = 0;
	for (int rep = 0; rep < 3; rep++) {
		double t0 = cpu_now();
		msgs = 0;
		bytes = 0;
		http_stream_init(&st, true, &hooks, NULL);
		struct http_stream rs;
		http_stream_init(&rs, false, &hooks, NULL);
		while (cpu_now() - t0 < 1.0) {
			for (int k = 0; k < 50; k++) {
				for (size_t i = 0; i < rl; i += piece) {
					size_t n = rl - i < piece ? rl - i : piece;
					http_stream_feed(&st, (uint8_t *)req + i, n, n, 0, 0);
				}
				for (size_t i = 0; i < sl; i += piece) {
					size_t n = sl - i < piece ? sl - i : piece;
					http_stream_feed(&rs, (uint8_t *)resp + i, n, n, 0, 0);
				}
				bytes += rl + sl;
			}
		}
		double dt = cpu_now() - t0;
		if (bytes / dt / 1e6 > best_http) {
			best_http = bytes / dt / 1e6;
			best_msgs = msgs / dt;
		}
	}
	/* DNS: a response with two A answers. */
	static const uint8_t dnsmsg[] =
		"\x12\x34\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00"
		"\x07ratings\x08" "bookinfo\x03svc\x07" "cluster\x05local\x00\x00\x01\x00\x01"
		"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x60\x03\x04"
		"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x60\x03\x05";
	struct dns_msg d;
	uint64_t n = 0;
	double t0 = cpu_now();
	while (cpu_now() - t0 < 1.0)
		for (int k = 0; k < 10000; k++, n++)
			if (dns_parse(dnsmsg, sizeof(dnsmsg) - 1, &d) || d.naddrs != 2)
				abort();
	double dns_rate = n / (cpu_now() - t0);
	printf("{\"http_mb_per_s\": %.1f, \"http_msgs_per_s\": %.0f, "
	       "\"dns_msgs_per_s\": %.0f, \"piece_bytes\": %zu}\n",
	       best_http, best_msgs, dns_rate, piece);
	return 0;
}
