/* The latency receiver's packet parser, run in the kernel on packets built
 * here (BPF_PROG_TEST_RUN): a stamped IPv4 and IPv6 packet is measured once,
 * with the delay we put in the stamp; packets without the option, with a
 * truncated or malformed option, or with another ExID are counted and never
 * measured; packets between unmonitored pods or ports are left alone. Also
 * the histogram's bucket scheme (pure C, shared with the kernel side).
 * Needs root and BPF: skipped otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "latency.h"
#include "latency.skel.h"

#define SRC4 "10.244.2.2"
#define DST4 "10.244.1.3"
#define SRC6 "fd00:244:2::2"
#define DST6 "fd00:244:1::3"
#define DELAY_NS 1000000ull /* the stamp is this far in the past */

static struct latency_bpf *skel;
static int ncpus;

static uint64_t tai_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_TAI, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Option areas (padded by the builder to a multiple of 4 with EOL). */
static size_t opt_ours(uint8_t *o, uint16_t exid, uint8_t len)
{
	size_t n = 0;

	o[n++] = 1; /* NOP NOP timestamps, as Linux sends them */
	o[n++] = 1;
	o[n++] = 8;
	o[n++] = 10;
	memset(o + n, 0x11, 8);
	n += 8;
	o[n++] = LAT_OPT_KIND;
	o[n++] = len;
	o[n++] = (uint8_t)(exid >> 8);
	o[n++] = (uint8_t)exid;
	put_be64(o + n, tai_now() - DELAY_NS);
	n += len >= 4 ? (size_t)len - 4 : 0;
	return n;
}

static size_t opt_ts_only(uint8_t *o)
{
	o[0] = 1;
	o[1] = 1;
	o[2] = 8;
	o[3] = 10;
	memset(o + 4, 0x22, 8);
	return 12;
}

/* Ethernet + IPv4/IPv6 + TCP with `opts` (optlen bytes, a multiple of 4
 * unless doff_override says otherwise). Returns the frame length. */
static size_t build(uint8_t *buf, int v6, const char *src, const char *dst,
		    uint16_t sport, uint16_t dport, const uint8_t *opts,
		    size_t optlen, int doff_override)
{
	size_t off = 14, padded = (optlen + 3) & ~(size_t)3;
	size_t tcplen = 20 + padded;

	memset(buf, 0, 14 + 40 + tcplen + 16);
	buf[12] = v6 ? 0x86 : 0x08;
	buf[13] = v6 ? 0xdd : 0x00;
	if (v6) {
		buf[off] = 0x60;
		buf[off + 4] = (uint8_t)(tcplen >> 8);
		buf[off + 5] = (uint8_t)tcplen;
		buf[off + 6] = 6;
		buf[off + 7] = 64;
		inet_pton(AF_INET6, src, buf + off + 8);
		inet_pton(AF_INET6, dst, buf + off + 24);
		off += 40;
	} else {
		buf[off] = 0x45;
		buf[off + 2] = (uint8_t)((20 + tcplen) >> 8);
		buf[off + 3] = (uint8_t)(20 + tcplen);
		buf[off + 8] = 64;
		buf[off + 9] = 6;
		inet_pton(AF_INET, src, buf + off + 12);
		inet_pton(AF_INET, dst, buf + off + 16);
		off += 20;
	}
	buf[off] = (uint8_t)(sport >> 8);
	buf[off + 1] = (uint8_t)sport;
	buf[off + 2] = (uint8_t)(dport >> 8);
	buf[off + 3] = (uint8_t)dport;
	buf[off + 12] = (uint8_t)((doff_override ? doff_override
						 : (int)(tcplen / 4))
				  << 4);
	buf[off + 13] = 0x10; /* ACK */
	memcpy(buf + off + 20, opts, optlen);
	return off + tcplen;
}

static uint64_t counter(enum lat_counter c)
{
	uint64_t vals[256] = { 0 }, sum = 0;
	uint32_t key = c;

	assert_true(ncpus <= 256);
	assert_int_equal(bpf_map_lookup_elem(
				 bpf_map__fd(skel->maps.lat_counters), &key, vals),
			 0);
	for (int i = 0; i < ncpus; i++)
		sum += vals[i];
	return sum;
}

/* Sums a histogram over CPUs; 0 when the key has none. */
static uint64_t hist(int v6, const char *src, const char *dst, int64_t *min,
		     int64_t *max, uint32_t *bucket)
{
	struct lat_key key = { .hop = LAT_HOP_VXLAN };
	size_t vsize = (sizeof(struct lat_hist) + 7) & ~(size_t)7;
	char *vals = calloc((size_t)ncpus, vsize);
	uint64_t n = 0;

	assert_non_null(vals);
	key.src.family = key.dst.family = v6 ? 6 : 4;
	inet_pton(v6 ? AF_INET6 : AF_INET, src, key.src.addr);
	inet_pton(v6 ? AF_INET6 : AF_INET, dst, key.dst.addr);
	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.lat_hists), &key, vals)) {
		free(vals);
		return 0;
	}
	for (int c = 0; c < ncpus; c++) {
		const struct lat_hist *h = (const void *)(vals + (size_t)c * vsize);
		if (!h->count)
			continue;
		n += h->count;
		*min = h->min_ns;
		*max = h->max_ns;
		for (uint32_t b = 0; b < LAT_NBUCKETS; b++)
			if (h->buckets[b])
				*bucket = b;
	}
	free(vals);
	return n;
}

static void run(const uint8_t *pkt, size_t len)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt,
		    .data_size_in = (uint32_t)len, .repeat = 1);

	assert_int_equal(bpf_prog_test_run_opts(
				 bpf_program__fd(skel->progs.lat_rx_vxlan), &opts),
			 0);
	/* TC_ACT_UNSPEC: the packet always goes on, and so do other filters. */
	assert_int_equal((int)opts.retval, -1);
}

static void allow(int v6, const char *ip, int is_dst, uint16_t port)
{
	struct lat_addr a = { .family = v6 ? 6 : 4 };
	struct lat_pod p = { .ports = { port } };

	inet_pton(v6 ? AF_INET6 : AF_INET, ip, a.addr);
	assert_int_equal(bpf_map_update_elem(
				 bpf_map__fd(is_dst ? skel->maps.rx_dst
						    : skel->maps.rx_src),
				 &a, &p, BPF_ANY),
			 0);
}

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	skel = latency_bpf__open_and_load();
	if (!skel)
		return 0;
	ncpus = libbpf_num_possible_cpus();
	allow(0, SRC4, 0, 0);
	allow(0, DST4, 1, 9080);
	allow(1, SRC6, 0, 0);
	allow(1, DST6, 1, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	latency_bpf__destroy(skel);
	return 0;
}

#define NEED_BPF()                                                     \
	do {                                                           \
		if (!skel)                                             \
			skip(); /* not root, or no BPF: nothing to run */ \
	} while (0)

static void test_good_ipv4(void **state)
{
	uint8_t o[40], pkt[256];
	int64_t min = 0, max = 0;
	uint32_t b = 0;
	(void)state;
	NEED_BPF();
	uint64_t before = counter(LAT_CNT_RX_MEASURED);
	size_t n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, n, 0));

	assert_int_equal(counter(LAT_CNT_RX_MEASURED), before + 1);
	assert_int_equal(hist(0, SRC4, DST4, &min, &max, &b), 1);
	/* The stamp was DELAY_NS old when built; the run took < 1 s. */
	assert_true(min >= (int64_t)DELAY_NS);
	assert_true(min < (int64_t)(DELAY_NS + 1000000000ull));
	assert_int_equal(min, max);
	assert_true(lat_bucket_low(b) <= (uint64_t)min);
	assert_true(lat_bucket_low(b + 1) > (uint64_t)min);
}

static void test_reply_direction_by_source_port(void **state)
{
	uint8_t o[40], pkt[256];
	int64_t min = 0, max = 0;
	uint32_t b = 0;
	(void)state;
	NEED_BPF();
	/* DST4 -> SRC4 is a reply only if SRC4... here: the destination
	 * (DST4) listens on 9080; a packet to it on another port from a
	 * source without ports is not a monitored connection when the port
	 * filter is on. */
	skel->bss->lat_filter_ports = 1;
	uint64_t filtered = counter(LAT_CNT_RX_FILTERED);
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);
	size_t n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 8080, o, n, 0));
	assert_int_equal(counter(LAT_CNT_RX_FILTERED), filtered + 1);
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured);
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, n, 0));
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured + 1);
	skel->bss->lat_filter_ports = 0;
	assert_int_equal(hist(0, SRC4, DST4, &min, &max, &b), 2);
}

static void test_no_option(void **state)
{
	uint8_t o[40], pkt[256];
	(void)state;
	NEED_BPF();
	uint64_t none = counter(LAT_CNT_RX_NO_OPTION);
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);

	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, 0, 0));
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, opt_ts_only(o), 0));
	assert_int_equal(counter(LAT_CNT_RX_NO_OPTION), none + 2);
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured);
}

static void test_truncated_option(void **state)
{
	uint8_t o[40], pkt[256];
	(void)state;
	NEED_BPF();
	uint64_t trunc = counter(LAT_CNT_RX_TRUNCATED);
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);

	/* Our option cut by the end of the header: the option area is 16
	 * bytes (timestamps + 4 bytes of ours) but ours says 12. */
	opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, 16, 0));
	/* Our ExID with a length too short for a time. */
	size_t n = opt_ours(o, LAT_OPT_EXID, 8);
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, n, 0));
	/* A data offset claiming more header than the packet has. */
	n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	size_t len = build(pkt, 0, SRC4, DST4, 43210, 9080, o, n, 15);
	run(pkt, len);
	/* A kind-253 option whose length (1) cannot even hold itself. */
	memset(o, 0, sizeof(o));
	o[0] = LAT_OPT_KIND;
	o[1] = 1;
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, 4, 0));
	assert_int_equal(counter(LAT_CNT_RX_TRUNCATED), trunc + 4);
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured);
}

static void test_other_exid(void **state)
{
	uint8_t o[40], pkt[256];
	(void)state;
	NEED_BPF();
	uint64_t other = counter(LAT_CNT_RX_OTHER_EXID);
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);

	size_t n = opt_ours(o, 0x1234, LAT_OPT_LEN);
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, n, 0));
	assert_int_equal(counter(LAT_CNT_RX_OTHER_EXID), other + 1);
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured);
}

static void test_good_ipv6(void **state)
{
	uint8_t o[40], pkt[256];
	int64_t min = 0, max = 0;
	uint32_t b = 0;
	(void)state;
	NEED_BPF();
	size_t n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);

	run(pkt, build(pkt, 1, SRC6, DST6, 43210, 9080, o, n, 0));
	assert_int_equal(hist(1, SRC6, DST6, &min, &max, &b), 1);
	assert_true(min >= (int64_t)DELAY_NS);
	assert_true(min < (int64_t)(DELAY_NS + 1000000000ull));
}

static void test_unmonitored(void **state)
{
	uint8_t o[40], pkt[256];
	int64_t min, max;
	uint32_t b;
	(void)state;
	NEED_BPF();
	uint64_t filtered = counter(LAT_CNT_RX_FILTERED);
	size_t n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);

	/* Unknown source, and a destination that is no monitored pod. */
	run(pkt, build(pkt, 0, "10.244.9.9", DST4, 43210, 9080, o, n, 0));
	run(pkt, build(pkt, 0, SRC4, "10.244.9.9", 43210, 9080, o, n, 0));
	assert_int_equal(counter(LAT_CNT_RX_FILTERED), filtered + 2);
	assert_int_equal(hist(0, "10.244.9.9", DST4, &min, &max, &b), 0);
}

/* Buckets: exact below 128 ns, contiguous, each at most 1/128 wide. */
static void test_buckets(void **state)
{
	(void)state;
	for (uint64_t v = 0; v < LAT_SUB; v++)
		assert_int_equal(lat_bucket_of(v), v);
	for (uint32_t b = 0; b + 1 < LAT_NBUCKETS; b++) {
		uint64_t lo = lat_bucket_low(b), hi = lat_bucket_low(b + 1);
		assert_true(hi > lo);
		assert_int_equal(lat_bucket_of(lo), b);
		assert_int_equal(lat_bucket_of(hi - 1), b);
		if (b >= LAT_SUB)
			assert_true((hi - lo) * 128 <= lo);
	}
	assert_int_equal(lat_bucket_of(20000000), lat_bucket_of(20000001));
	assert_int_equal(lat_bucket_of(UINT64_MAX), LAT_NBUCKETS - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_good_ipv4),
		cmocka_unit_test(test_reply_direction_by_source_port),
		cmocka_unit_test(test_no_option),
		cmocka_unit_test(test_truncated_option),
		cmocka_unit_test(test_other_exid),
		cmocka_unit_test(test_good_ipv6),
		cmocka_unit_test(test_unmonitored),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
