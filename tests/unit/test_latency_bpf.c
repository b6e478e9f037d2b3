/* The latency receiver's packet parser, run in the kernel on packets built
 * here (BPF_PROG_TEST_RUN): a stamped IPv4 and IPv6 packet is measured once,
 * with the delay we put in the stamp; packets without the option, with a
 * truncated or malformed option, or with another ExID are counted and never
 * measured; packets between unmonitored pods or ports are left alone. Also
 * the histogram's bucket scheme (pure C, shared with the kernel side).
 * Needs root and BPF: skipped otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* An IPv6 frame as build() makes it, with `ext` (extlen bytes of extension
 * headers, their own next-header fields set by the caller) inserted between
 * the fixed header and TCP; the fixed header's next header becomes `first`. */
static size_t build6_ext(uint8_t *buf, uint8_t first, const uint8_t *ext,
			 size_t extlen, const uint8_t *opts, size_t optlen)
{
	size_t len = build(buf, 1, SRC6, DST6, 43210, 9080, opts, optlen, 0);
	size_t tcp = 14 + 40, plen = len - tcp + extlen;

	memmove(buf + tcp + extlen, buf + tcp, len - tcp);
	memcpy(buf + tcp, ext, extlen);
	buf[14 + 4] = (uint8_t)(plen >> 8);
	buf[14 + 5] = (uint8_t)plen;
	buf[14 + 6] = first;
	return len + extlen;
}

/* A generic extension header (hop-by-hop, routing, destination options) of
 * 8 * (1 + units) bytes, padded with PadN. */
static size_t ext_generic(uint8_t *p, uint8_t next, uint8_t units)
{
	size_t n = 8 * (1 + (size_t)units);

	memset(p, 0, n);
	p[0] = next;
	p[1] = units;
	p[2] = 1; /* PadN over the rest */
	p[3] = (uint8_t)(n - 4);
	return n;
}

static size_t ext_fragment(uint8_t *p, uint8_t next, uint16_t offset8, int more)
{
	memset(p, 0, 8);
	p[0] = next;
	p[2] = (uint8_t)((offset8 << 3) >> 8);
	p[3] = (uint8_t)(((offset8 << 3) & 0xf8) | (more ? 1 : 0));
	p[7] = 0x2a; /* identification */
	return 8;
}

/* The frame as the underlay carries it: Ethernet, IPv4, UDP to 8472,
 * VXLAN (VNI 1), then `inner` (what flannel.1 delivers after decap). */
static size_t wrap_vxlan(uint8_t *out, const uint8_t *inner, size_t innerlen)
{
	size_t udplen = 8 + 8 + innerlen;

	memset(out, 0, 14 + 20 + udplen);
	out[12] = 0x08;
	out[14] = 0x45;
	out[14 + 2] = (uint8_t)((20 + udplen) >> 8);
	out[14 + 3] = (uint8_t)(20 + udplen);
	out[14 + 8] = 64;
	out[14 + 9] = 17; /* UDP */
	inet_pton(AF_INET, "192.168.77.2", out + 14 + 12);
	inet_pton(AF_INET, "192.168.77.1", out + 14 + 16);
	out[34 + 0] = 0xa1; /* source port, any */
	out[34 + 2] = 0x21; /* 8472 */
	out[34 + 3] = 0x18;
	out[34 + 4] = (uint8_t)(udplen >> 8);
	out[34 + 5] = (uint8_t)udplen;
	out[42] = 0x08; /* VXLAN: VNI present, VNI 1 */
	out[42 + 6] = 1;
	memcpy(out + 50, inner, innerlen);
	return 50 + innerlen;
}

/* Adds one 802.1Q tag after the MAC addresses. */
static size_t add_vlan(uint8_t *buf, size_t len)
{
	memmove(buf + 16, buf + 12, len - 12);
	buf[12] = 0x81;
	buf[13] = 0x00;
	buf[14] = 0x00;
	buf[15] = 0x05;
	return len + 4;
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
static uint64_t hist_hop(int v6, const char *src, const char *dst, uint8_t hop,
			 int64_t *min, int64_t *max, uint32_t *bucket)
{
	struct lat_key key = { .hop = hop };
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
		if (!n || h->min_ns < *min)
			*min = h->min_ns;
		if (!n || h->max_ns > *max)
			*max = h->max_ns;
		n += h->count;
		for (uint32_t b = 0; b < LAT_NBUCKETS; b++)
			if (h->buckets[b])
				*bucket = b;
	}
	free(vals);
	return n;
}

static uint64_t hist(int v6, const char *src, const char *dst, int64_t *min,
		     int64_t *max, uint32_t *bucket)
{
	return hist_hop(v6, src, dst, LAT_HOP_VXLAN, min, max, bucket);
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

/* Timestamps, ours, then a SACK block (a stamped segment carrying SACK):
 * measured. rx() reads the usual layouts in place and walks the others;
 * this one takes the in-place path, with options after ours. */
static void test_ours_then_sack(void **state)
{
	uint8_t o[40], pkt[256];
	(void)state;
	NEED_BPF();
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);
	size_t n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);

	o[n++] = 1;
	o[n++] = 1;
	o[n++] = 5; /* SACK, one block */
	o[n++] = 10;
	memset(o + n, 0x33, 8);
	n += 8;
	run(pkt, build(pkt, 0, SRC4, DST4, 43210, 9080, o, n, 0));
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured + 1);
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

/* IPv6 packets that must not be measured are counted like IPv4 ones. */
static void test_ipv6_ignored(void **state)
{
	uint8_t o[40], pkt[256];
	(void)state;
	NEED_BPF();
	uint64_t none = counter(LAT_CNT_RX_NO_OPTION);
	uint64_t trunc = counter(LAT_CNT_RX_TRUNCATED);
	uint64_t other = counter(LAT_CNT_RX_OTHER_EXID);
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);

	run(pkt, build(pkt, 1, SRC6, DST6, 43210, 9080, o, 0, 0));
	run(pkt, build(pkt, 1, SRC6, DST6, 43210, 9080, o, opt_ts_only(o), 0));
	opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	run(pkt, build(pkt, 1, SRC6, DST6, 43210, 9080, o, 16, 0)); /* cut */
	size_t n = opt_ours(o, LAT_OPT_EXID, 8);
	run(pkt, build(pkt, 1, SRC6, DST6, 43210, 9080, o, n, 0)); /* short */
	n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	run(pkt, build(pkt, 1, SRC6, DST6, 43210, 9080, o, n, 15)); /* doff */
	n = opt_ours(o, 0x1234, LAT_OPT_LEN);
	run(pkt, build(pkt, 1, SRC6, DST6, 43210, 9080, o, n, 0));
	assert_int_equal(counter(LAT_CNT_RX_NO_OPTION), none + 2);
	assert_int_equal(counter(LAT_CNT_RX_TRUNCATED), trunc + 3);
	assert_int_equal(counter(LAT_CNT_RX_OTHER_EXID), other + 1);
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured);
}

/* TCP behind IPv6 extension headers is found (hop-by-hop, destination
 * options, routing, a first fragment, AH); a non-first fragment, ESP, a
 * chain longer than the parser walks, or a header cut by the end of the
 * packet is counted as not TCP and never measured. */
static void test_ipv6_ext_headers(void **state)
{
	uint8_t o[40], pkt[512], ext[128];
	int64_t min = 0, max = 0;
	uint32_t b = 0;
	size_t e, n;
	(void)state;
	NEED_BPF();
	n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	uint64_t before = hist(1, SRC6, DST6, &min, &max, &b);
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);
	uint64_t not_tcp = counter(LAT_CNT_RX_NOT_TCP);

	/* hop-by-hop (8) -> destination options (16) -> fragment (first,
	 * more to come) -> TCP */
	e = ext_generic(ext, 60, 0);
	e += ext_generic(ext + e, 44, 1);
	e += ext_fragment(ext + e, 6, 0, 1);
	run(pkt, build6_ext(pkt, 0, ext, e, o, n));
	/* routing (24) -> AH (4 * (2 + 4) = 24 bytes) -> TCP */
	e = ext_generic(ext, 51, 2);
	memset(ext + e, 0, 24);
	ext[e] = 6;
	ext[e + 1] = 4;
	e += 24;
	run(pkt, build6_ext(pkt, 43, ext, e, o, n));
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured + 2);
	assert_int_equal(hist(1, SRC6, DST6, &min, &max, &b), before + 2);
	assert_true(min >= (int64_t)DELAY_NS);
	assert_true(max < (int64_t)(DELAY_NS + 1000000000ull));

	/* a non-first fragment: its payload is not a TCP header */
	e = ext_fragment(ext, 6, 185, 0);
	run(pkt, build6_ext(pkt, 44, ext, e, o, n));
	/* ESP: encrypted, nothing to read */
	memset(ext, 0, 8);
	run(pkt, build6_ext(pkt, 50, ext, 8, o, n));
	/* five headers: more than the parser walks */
	e = 0;
	for (int i = 0; i < 5; i++)
		e += ext_generic(ext + e, i == 4 ? 6 : 60, 0);
	run(pkt, build6_ext(pkt, 60, ext, e, o, n));
	/* a destination-options header claiming 2 KiB the packet has not */
	ext_generic(ext, 6, 0);
	ext[1] = 255;
	size_t len = build6_ext(pkt, 60, ext, 8, o, 0);
	run(pkt, len);
	assert_int_equal(counter(LAT_CNT_RX_NOT_TCP), not_tcp + 4);
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured + 2);
}

/* VXLAN: flannel.1's ingress sees the inner frame after decapsulation (own
 * MACs, possibly a VLAN tag): an inner IPv6 packet is measured. The same
 * frame still wrapped in the underlay's IPv4/UDP/VXLAN headers (where the
 * program is not attached, but nothing stops an operator) is UDP: counted
 * as not TCP, never read as a stamp, although our option bytes are inside. */
static void test_vxlan_inner_ipv6(void **state)
{
	uint8_t o[40], inner[256], pkt[512];
	int64_t min = 0, max = 0;
	uint32_t b = 0;
	(void)state;
	NEED_BPF();
	size_t n = opt_ours(o, LAT_OPT_EXID, LAT_OPT_LEN);
	size_t ilen = build(inner, 1, SRC6, DST6, 43210, 9080, o, n, 0);
	uint64_t before = hist(1, SRC6, DST6, &min, &max, &b);
	uint64_t measured = counter(LAT_CNT_RX_MEASURED);
	uint64_t not_tcp = counter(LAT_CNT_RX_NOT_TCP);

	memset(inner, 0x02, 12); /* flannel.1's MACs */
	run(pkt, wrap_vxlan(pkt, inner, ilen));
	assert_int_equal(counter(LAT_CNT_RX_NOT_TCP), not_tcp + 1);
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured);

	run(inner, ilen);
	memcpy(pkt, inner, ilen);
	run(pkt, add_vlan(pkt, ilen));
	assert_int_equal(counter(LAT_CNT_RX_MEASURED), measured + 2);
	assert_int_equal(hist(1, SRC6, DST6, &min, &max, &b), before + 2);
	assert_true(min >= (int64_t)DELAY_NS);
	assert_true(max < (int64_t)(DELAY_NS + 1000000000ull));
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

/* The cgroup v2 mount (not always /sys/fs/cgroup: hybrid hosts). */
static int cgroup2_mount(char *out, size_t len)
{
	char dev[256], dir[256], type[64];
	FILE *f = fopen("/proc/mounts", "r");
	int found = -1;

	if (!f)
		return -1;
	while (fscanf(f, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3)
		if (!strcmp(type, "cgroup2")) {
			snprintf(out, len, "%s", dir);
			found = 0;
			break;
		}
	fclose(f);
	return found;
}

/* The child of test_ipv6_sockops_loopback, in its own network namespace
 * and the test cgroup: the receiver on lo's ingress, then a TCP connection
 * over ::1 exchanging `msgs` small messages each way. Exit status 0 when
 * everything went through. */
static int ipv6_loopback_child(const char *cgroup, int msgs)
{
	struct sockaddr_in6 addr = { .sin6_family = AF_INET6,
				     .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t alen = sizeof(addr);
	struct ifreq ifr = { .ifr_name = "lo" };
	char path[600], pid[32], buf[64];
	int fd, sk, ls, cs, as;

	if (unshare(CLONE_NEWNET))
		return 10;
	sk = socket(AF_INET, SOCK_DGRAM, 0);
	if (sk < 0 || ioctl(sk, SIOCGIFFLAGS, &ifr))
		return 11;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sk, SIOCSIFFLAGS, &ifr))
		return 12;
	close(sk);
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)if_nametoindex("lo"),
		    .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, topts,
		    .prog_fd = bpf_program__fd(skel->progs.lat_rx_veth));
	if (bpf_tc_hook_create(&hook) || bpf_tc_attach(&hook, &topts))
		return 13;
	snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
	snprintf(pid, sizeof(pid), "%d", getpid());
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, pid, strlen(pid)) < 0)
		return 14;
	close(fd);
	/* Sockets made from here on belong to the cgroup: sock_ops runs. */
	ls = socket(AF_INET6, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&addr, sizeof(addr)) ||
	    listen(ls, 1) || getsockname(ls, (struct sockaddr *)&addr, &alen))
		return 15;
	cs = socket(AF_INET6, SOCK_STREAM, 0);
	if (cs < 0 || connect(cs, (struct sockaddr *)&addr, sizeof(addr)))
		return 16;
	as = accept(ls, NULL, NULL);
	if (as < 0)
		return 17;
	for (int i = 0; i < msgs; i++) {
		/* one request, one reply, as an RPC would */
		if (send(cs, "ping", 4, 0) != 4 ||
		    recv(as, buf, 4, MSG_WAITALL) != 4 ||
		    send(as, "pong", 4, 0) != 4 ||
		    recv(cs, buf, 4, MSG_WAITALL) != 4)
			return 18;
		usleep(2000);
	}
	close(cs);
	close(as);
	close(ls);
	return 0;
}

/* Sender and receiver on real IPv6 packets: the sock_ops program attached
 * to a cgroup stamps a TCP connection over ::1 of a process in it (both
 * ends are monitored pods: ::1), and the tc receiver on lo measures the
 * stamped segments. Ground truth: the messages the child sent. */
static void test_ipv6_sockops_loopback(void **state)
{
	const int msgs = 20;
	char mount[256], cgroup[512];
	struct bpf_link *link;
	int64_t min = 0, max = 0;
	uint32_t b = 0;
	int cgfd, status = -1;
	pid_t child;
	(void)state;
	NEED_BPF();
	if (cgroup2_mount(mount, sizeof(mount)))
		skip();
	snprintf(cgroup, sizeof(cgroup), "%s/sonde-unit-latency-%d", mount,
		 getpid());
	assert_int_equal(mkdir(cgroup, 0755), 0);
	cgfd = open(cgroup, O_RDONLY | O_DIRECTORY);
	assert_true(cgfd >= 0);
	link = bpf_program__attach_cgroup(skel->progs.lat_sockops, cgfd);
	close(cgfd);
	assert_non_null(link);

	struct lat_addr lo6 = { .family = 6 };
	struct lat_pod any = { { 0 } };
	uint8_t one = 1;
	lo6.addr[15] = 1;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.tx_local),
					     &lo6, &one, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.rx_dst),
					     &lo6, &any, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.rx_src),
					     &lo6, &any, BPF_ANY), 0);
	uint64_t socks = counter(LAT_CNT_TX_SOCKS);
	uint64_t stamped = counter(LAT_CNT_TX_STAMPED);

	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(ipv6_loopback_child(cgroup, msgs));
	assert_int_equal(waitpid(child, &status, 0), child);
	bpf_link__destroy(link);
	rmdir(cgroup);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	/* Both ends stamp: the client's requests and the server's replies,
	 * plus ACKs and the FINs. */
	assert_int_equal(counter(LAT_CNT_TX_SOCKS), socks + 2);
	assert_true(counter(LAT_CNT_TX_STAMPED) >= stamped + 2 * (uint64_t)msgs);
	uint64_t n = hist_hop(1, "::1", "::1", LAT_HOP_POD_VETH, &min, &max, &b);
	print_message("::1 over lo: %llu segments stamped, %llu measured, "
		      "%lld..%lld ns\n",
		      (unsigned long long)(counter(LAT_CNT_TX_STAMPED) - stamped),
		      (unsigned long long)n, (long long)min, (long long)max);
	assert_true(n >= 2 * (uint64_t)msgs);
	assert_true(n <= counter(LAT_CNT_TX_STAMPED) - stamped);
	/* Loopback, same clock: between 0 and far below a second. */
	assert_true(min >= 0);
	assert_true(max < 1000000000);
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
		cmocka_unit_test(test_ours_then_sack),
		cmocka_unit_test(test_good_ipv6),
		cmocka_unit_test(test_ipv6_ignored),
		cmocka_unit_test(test_ipv6_ext_headers),
		cmocka_unit_test(test_vxlan_inner_ipv6),
		cmocka_unit_test(test_ipv6_sockops_loopback),
		cmocka_unit_test(test_unmonitored),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
