/* The flow sensor's UDP parser (bpf/flow_parse.h) as the kernel runs it:
 * the real cgroup_skb programs from the skeleton, fed hand-built packets
 * through BPF_PROG_TEST_RUN, checked by what they leave in udp_flows and
 * flow_counters. Needs root (loading BPF); skipped otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "flow.h"
#include "flow.skel.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct flow_bpf *skel;

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	libbpf_set_print(NULL);
	skel = flow_bpf__open();
	if (!skel)
		return -1;
	/* Only the programs under test: the tracepoint ones need hooks this
	 * test does not exercise. */
	struct bpf_program *p;
	bpf_object__for_each_program(p, skel->obj)
		bpf_program__set_autoload(p, false);
	bpf_program__set_autoload(skel->progs.flow_udp_egress, true);
	bpf_program__set_autoload(skel->progs.flow_udp_ingress, true);
	return flow_bpf__load(skel) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	flow_bpf__destroy(skel);
	return 0;
}

static void clear_flows(void)
{
	int fd = bpf_map__fd(skel->maps.udp_flows);
	struct flow_udp_key k;

	while (bpf_map_get_next_key(fd, NULL, &k) == 0)
		bpf_map_delete_elem(fd, &k);
}

static uint64_t counter(uint32_t idx)
{
	int n = libbpf_num_possible_cpus();
	uint64_t v[n], sum = 0;

	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.flow_counters),
					     &idx, v),
			 0);
	for (int i = 0; i < n; i++)
		sum += v[i];
	return sum;
}

/* The only entry in udp_flows; fails when there is not exactly one. */
static int only_flow(struct flow_udp_key *k, struct flow_udp *v)
{
	int fd = bpf_map__fd(skel->maps.udp_flows);
	struct flow_udp_key next;
	int n = 0;
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		*k = next;
		prev = k;
		n++;
	}
	if (n == 1)
		assert_int_equal(bpf_map_lookup_elem(fd, k, v), 0);
	return n;
}

static void run(struct bpf_program *prog, const void *pkt, size_t len,
		uint32_t gso_segs)
{
	struct __sk_buff ctx = { .gso_segs = gso_segs };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = len,
		    .ctx_in = gso_segs ? &ctx : NULL,
		    .ctx_size_in = gso_segs ? sizeof(ctx) : 0, .repeat = 1);

	assert_int_equal(bpf_prog_test_run_opts(bpf_program__fd(prog), &opts), 0);
	assert_int_equal(opts.retval, 1); /* never drops */
}

/* Ethernet + IPv4 (ihl words) + UDP + payload bytes. Headers are built in
 * aligned locals and copied: in the frame, IP sits at offset 14. */
static size_t build4(uint8_t *buf, int ihl, uint8_t proto, uint16_t frag,
		     uint16_t udp_len, size_t payload)
{
	struct ethhdr eth = { .h_proto = htons(ETH_P_IP) };
	struct iphdr ip = { 0 };
	struct udphdr udp = { 0 };
	size_t iplen = (size_t)ihl * 4;
	size_t total = iplen + sizeof(udp) + payload;

	memset(buf, 0, sizeof(eth) + total);
	ip.version = 4;
	ip.ihl = ihl;
	ip.ttl = 64;
	ip.protocol = proto;
	ip.tot_len = htons(total);
	ip.frag_off = htons(frag);
	ip.saddr = inet_addr("10.244.1.5");
	ip.daddr = inet_addr("10.244.2.7");
	udp.source = htons(40000);
	udp.dest = htons(53);
	udp.len = htons(udp_len ? udp_len : sizeof(udp) + payload);
	memcpy(buf, &eth, sizeof(eth));
	memcpy(buf + sizeof(eth), &ip, sizeof(ip));
	memcpy(buf + sizeof(eth) + iplen, &udp, sizeof(udp));
	return sizeof(eth) + total;
}

static void udp4_egress(void **state)
{
	uint8_t pkt[256];
	struct flow_udp_key k;
	struct flow_udp v;
	size_t len = build4(pkt, 5, IPPROTO_UDP, 0, 0, 100);

	(void)state;
	if (!skel)
		skip();
	clear_flows();
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 1);
	assert_int_equal(k.tuple.family, 2);
	assert_memory_equal(k.tuple.laddr, "\x0a\xf4\x01\x05", 4);
	assert_memory_equal(k.tuple.raddr, "\x0a\xf4\x02\x07", 4);
	assert_int_equal(k.tuple.lport, 40000);
	assert_int_equal(k.tuple.rport, 53);
	assert_int_equal(v.bytes_out, 200);
	assert_int_equal(v.dgrams_out, 2);
	assert_int_equal(v.dgrams_in, 0);
	assert_int_equal(v.first_egress, 1);
}

/* Ingress: the socket is the destination; IP options move the UDP header. */
static void udp4_ingress_options(void **state)
{
	uint8_t pkt[256];
	struct flow_udp_key k;
	struct flow_udp v;
	size_t len = build4(pkt, 6, IPPROTO_UDP, 0, 0, 33);

	(void)state;
	if (!skel)
		skip();
	clear_flows();
	run(skel->progs.flow_udp_ingress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 1);
	assert_memory_equal(k.tuple.laddr, "\x0a\xf4\x02\x07", 4);
	assert_int_equal(k.tuple.lport, 53);
	assert_int_equal(k.tuple.rport, 40000);
	assert_int_equal(v.bytes_in, 33);
	assert_int_equal(v.dgrams_in, 1);
	assert_int_equal(v.first_egress, 0);
}

/* A first fragment counts the whole datagram (its UDP length); the later
 * fragments have no UDP header and count nothing. */
static void udp4_fragments(void **state)
{
	uint8_t pkt[256];
	struct flow_udp_key k;
	struct flow_udp v;
	size_t len;

	(void)state;
	if (!skel)
		skip();
	clear_flows();
	len = build4(pkt, 5, IPPROTO_UDP, 0x2000 /* MF */, 3008, 100);
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	len = build4(pkt, 5, IPPROTO_UDP, 0x2000 | 185, 0, 100);
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	len = build4(pkt, 5, IPPROTO_UDP, 370, 0, 100);
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 1);
	assert_int_equal(v.bytes_out, 3000);
	assert_int_equal(v.dgrams_out, 1);
}

static void not_udp_ignored(void **state)
{
	uint8_t pkt[256];
	struct flow_udp_key k;
	struct flow_udp v;
	uint64_t unparsed;
	size_t len = build4(pkt, 5, IPPROTO_TCP, 0, 0, 100);

	(void)state;
	if (!skel)
		skip();
	unparsed = counter(FLOW_CNT_UDP_UNPARSED);
	clear_flows();
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 0);
	assert_int_equal(counter(FLOW_CNT_UDP_UNPARSED), unparsed);
}

/* A packet cut before its UDP header is counted as unparsed, not as a
 * datagram. */
static void truncated_unparsed(void **state)
{
	uint8_t pkt[256];
	struct flow_udp_key k;
	struct flow_udp v;
	uint64_t unparsed;
	size_t len = build4(pkt, 5, IPPROTO_UDP, 0, 0, 0);

	(void)state;
	if (!skel)
		skip();
	unparsed = counter(FLOW_CNT_UDP_UNPARSED);
	clear_flows();
	run(skel->progs.flow_udp_egress, pkt, len - 6, 0);
	assert_int_equal(only_flow(&k, &v), 0);
	assert_int_equal(counter(FLOW_CNT_UDP_UNPARSED), unparsed + 1);
}

/* UDP GSO: one skb, gso_segs datagrams behind one pair of headers. */
static void udp4_gso(void **state)
{
	uint8_t pkt[2048];
	struct flow_udp_key k;
	struct flow_udp v;
	size_t len = build4(pkt, 5, IPPROTO_UDP, 0, 308, 4 * 300);

	(void)state;
	if (!skel)
		skip();
	clear_flows();
	run(skel->progs.flow_udp_egress, pkt, len, 4);
	assert_int_equal(only_flow(&k, &v), 1);
	assert_int_equal(v.dgrams_out, 4);
	assert_int_equal(v.bytes_out, 1200);
}

/* Ethernet + IPv6 + the given extension header bytes + UDP + payload. */
static size_t build6(uint8_t *buf, uint8_t nexthdr, const uint8_t *ext,
		     size_t ext_len, uint16_t udp_len, size_t payload)
{
	struct ethhdr eth = { .h_proto = htons(ETH_P_IPV6) };
	struct ipv6hdr ip6 = { 0 };
	struct udphdr udp = { 0 };
	size_t off = sizeof(eth) + sizeof(ip6);

	memset(buf, 0, off + ext_len + sizeof(udp) + payload);
	ip6.version = 6;
	ip6.nexthdr = nexthdr;
	ip6.hop_limit = 64;
	ip6.payload_len = htons(ext_len + sizeof(udp) + payload);
	inet_pton(AF_INET6, "fd00::1", &ip6.saddr);
	inet_pton(AF_INET6, "fd00::2", &ip6.daddr);
	udp.source = htons(5353);
	udp.dest = htons(5201);
	udp.len = htons(udp_len ? udp_len : sizeof(udp) + payload);
	memcpy(buf, &eth, sizeof(eth));
	memcpy(buf + sizeof(eth), &ip6, sizeof(ip6));
	if (ext_len)
		memcpy(buf + off, ext, ext_len);
	memcpy(buf + off + ext_len, &udp, sizeof(udp));
	return off + ext_len + sizeof(udp) + payload;
}

static void udp6(void **state)
{
	uint8_t pkt[256], want[16];
	struct flow_udp_key k;
	struct flow_udp v;
	size_t len = build6(pkt, IPPROTO_UDP, NULL, 0, 0, 77);

	(void)state;
	if (!skel)
		skip();
	clear_flows();
	run(skel->progs.flow_udp_ingress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 1);
	assert_int_equal(k.tuple.family, 10);
	inet_pton(AF_INET6, "fd00::2", want);
	assert_memory_equal(k.tuple.laddr, want, 16);
	assert_int_equal(k.tuple.lport, 5201);
	assert_int_equal(v.bytes_in, 77);
}

/* Hop-by-hop options (16 bytes) then UDP: walked. */
static void udp6_hop_by_hop(void **state)
{
	uint8_t pkt[256];
	uint8_t hbh[16] = { IPPROTO_UDP, 1 /* (1 + 1) * 8 bytes */ };
	struct flow_udp_key k;
	struct flow_udp v;
	size_t len = build6(pkt, 0, hbh, sizeof(hbh), 0, 50);

	(void)state;
	if (!skel)
		skip();
	clear_flows();
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 1);
	assert_int_equal(k.tuple.lport, 5353);
	assert_int_equal(v.bytes_out, 50);
}

/* Fragment header: the first fragment counts the datagram's UDP length,
 * a later one nothing; TCP behind hop-by-hop is not UDP. */
static void udp6_fragments(void **state)
{
	uint8_t pkt[256];
	uint8_t first[8] = { IPPROTO_UDP, 0, 0x00, 0x01 /* offset 0, M */ };
	uint8_t later[8] = { IPPROTO_UDP, 0, 0x05, 0x00 /* offset 160 */ };
	uint8_t hbh_tcp[8] = { IPPROTO_TCP, 0 };
	struct flow_udp_key k;
	struct flow_udp v;
	uint64_t unparsed;
	size_t len;

	(void)state;
	if (!skel)
		skip();
	unparsed = counter(FLOW_CNT_UDP_UNPARSED);
	clear_flows();
	len = build6(pkt, 44, first, sizeof(first), 2008, 100);
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	len = build6(pkt, 44, later, sizeof(later), 0, 100);
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	len = build6(pkt, 0, hbh_tcp, sizeof(hbh_tcp), 0, 100);
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 1);
	assert_int_equal(v.bytes_out, 2000);
	assert_int_equal(v.dgrams_out, 1);
	assert_int_equal(counter(FLOW_CNT_UDP_UNPARSED), unparsed);
}

/* Five extension headers: more than the parser walks, counted unparsed. */
static void udp6_too_many_headers(void **state)
{
	uint8_t pkt[256];
	uint8_t ext[40] = { 60, 0, [8] = 60, [16] = 60, [24] = 60,
			    [32] = IPPROTO_UDP };
	struct flow_udp_key k;
	struct flow_udp v;
	uint64_t unparsed;
	size_t len = build6(pkt, 60, ext, sizeof(ext), 0, 10);

	(void)state;
	if (!skel)
		skip();
	unparsed = counter(FLOW_CNT_UDP_UNPARSED);
	clear_flows();
	run(skel->progs.flow_udp_egress, pkt, len, 0);
	assert_int_equal(only_flow(&k, &v), 0);
	assert_int_equal(counter(FLOW_CNT_UDP_UNPARSED), unparsed + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(udp4_egress),
		cmocka_unit_test(udp4_ingress_options),
		cmocka_unit_test(udp4_fragments),
		cmocka_unit_test(not_udp_ignored),
		cmocka_unit_test(truncated_unparsed),
		cmocka_unit_test(udp4_gso),
		cmocka_unit_test(udp6),
		cmocka_unit_test(udp6_hop_by_hop),
		cmocka_unit_test(udp6_fragments),
		cmocka_unit_test(udp6_too_many_headers),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
