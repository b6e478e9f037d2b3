// SPDX-License-Identifier: GPL-2.0
/* latency sensor, kernel side: one-way pod-to-pod latency from real traffic.
 *
 * Sender (sock_ops, attached to the node's cgroup root): for a connection
 * whose local address is a monitored pod's, ask for the TCP header-option
 * callbacks and add an RFC 6994 experimental option (kind 253, our ExID)
 * carrying the send time. The TCP timestamp option is never touched: PAWS
 * and RTT estimation keep working.
 *
 * Receiver (tc, in the node's netns): the VXLAN device's ingress (inner
 * frame, cross-node traffic) and the host-side veths' egress (towards the
 * pod: same-node traffic and the last hop) parse Ethernet / IPv4 / IPv6
 * (and its extension headers) / TCP options, keep packets between monitored pods, and add receive time -
 * send time to a per (source pod, destination pod, hop) log-scale histogram.
 *
 * Both sides read CLOCK_TAI: on real nodes the NTP/PTP-disciplined clock
 * that is comparable across machines (CLOCK_MONOTONIC is not); in the lab
 * every node shares one kernel, so the difference is exact. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "latency.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define IPPROTO_TCP 6
#define TC_ACT_UNSPEC (-1) /* let the next filter on the hook run too */
#define TCP_MAX_OPT 40
/* IPv6 extension headers that may come before TCP. */
#define IPV6_HOPOPTS 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_AH 51
#define IPV6_DSTOPTS 60
#define IPV6_MAX_EXT 4 /* headers walked; a longer chain is not measured */

/* Set by user space before load: stamp one segment in lat_sample. */
const volatile __u32 lat_sample = 1;
/* Test aid (agent --latency-test-skew-ns): added to every clock read of
 * this object, the sender's stamps and the receivers' arrival times alike,
 * so the node behaves as if its clock ran this far ahead. Lab nodes share
 * one kernel clock; this is how a test gives one of them a known offset
 * for the pairwise offset estimate to recover. 0 outside tests. */
const volatile __s64 lat_test_skew_ns = 0;
/* Changed by user space at run time (skeleton .bss). */
__u8 lat_gen = 0;
__u8 lat_filter_ports = 0;

/* Sender: local addresses of the monitored pods of this node. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct lat_addr);
	__type(value, __u8);
} tx_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lat_sock);
} tx_socks SEC(".maps");

/* Receiver: monitored pods on this node (destinations), monitored pods
 * anywhere (sources), with their listening ports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct lat_addr);
	__type(value, struct lat_pod);
} rx_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lat_addr);
	__type(value, struct lat_pod);
} rx_src SEC(".maps");

/* Per-CPU histograms: no atomics on the packet path; user space sums. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct lat_key);
	__type(value, struct lat_hist);
} lat_hists SEC(".maps");

/* A zeroed histogram to create entries from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} lat_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LAT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lat_counters SEC(".maps");

static __always_inline __u64 clock_ns(void)
{
	return bpf_ktime_get_tai_ns() + (__u64)lat_test_skew_ns;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lat_counters, &idx);

	if (v)
		*v += 1;
}

/* ---- sender */

static __always_inline bool local_monitored(struct bpf_sock_ops *skops)
{
	struct lat_addr a = {};

	if (skops->family == AF_INET) {
		__u32 ip = skops->local_ip4;
		__builtin_memcpy(a.addr, &ip, 4);
		a.family = 4;
	} else if (skops->family == AF_INET6) {
		__u32 w[4] = { skops->local_ip6[0], skops->local_ip6[1],
			       skops->local_ip6[2], skops->local_ip6[3] };
		/* An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 pod. */
		if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
			__builtin_memcpy(a.addr, &w[3], 4);
			a.family = 4;
		} else {
			__builtin_memcpy(a.addr, w, 16);
			a.family = 6;
		}
	} else {
		return false;
	}
	return bpf_map_lookup_elem(&tx_local, &a) != NULL;
}

struct lat_opt {
	__u8 kind;
	__u8 len;
	__be16 exid;
	__be64 ts_ns;
} __attribute__((packed));

/* Has this skb room for the option without exceeding the path MTU?
 * mss_cache already excludes the timestamp option. SACK blocks, if any, come
 * before us: with timestamps and our 12 bytes, at most 16 bytes of option
 * space are left for them (more and our reservation fails with ENOSPC, no
 * harm), so 16 bytes of margin is exact for the worst case. GSO skbs
 * (longer than one MSS) never fit: their segments are full-size. */
static __always_inline bool has_room(struct bpf_sock_ops *skops)
{
	return skops->skb_len + LAT_OPT_LEN + 16 <= skops->mss_cache;
}

static __always_inline void reserve(struct bpf_sock_ops *skops)
{
	if (bpf_reserve_hdr_opt(skops, LAT_OPT_LEN, 0))
		count(LAT_CNT_TX_RESERVE_FAIL);
}

SEC("sockops")
int lat_sockops(struct bpf_sock_ops *skops)
{
	struct lat_sock *st;
	struct lat_opt opt;
	struct bpf_sock *sk;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (!local_monitored(skops))
			break;
		bpf_sock_ops_cb_flags_set(skops,
					  skops->bpf_sock_ops_cb_flags |
						  BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		count(LAT_CNT_TX_SOCKS);
		break;

	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		if (lat_sample <= 1) {
			/* Every segment: reserve also when the kernel computes
			 * the MSS (no skb), so full-size segments shrink by
			 * the option instead of exceeding the MTU. */
			reserve(skops);
			break;
		}
		if (skops->args[0] & BPF_WRITE_HDR_TCP_CURRENT_MSS)
			break; /* sampled: the MSS stays whole */
		sk = skops->sk;
		if (!sk)
			break;
		st = bpf_sk_storage_get(&tx_socks, sk, 0,
					BPF_SK_STORAGE_GET_F_CREATE);
		if (!st)
			break;
		st->stamp = 0;
		if (st->segments++ % lat_sample) {
			count(LAT_CNT_TX_NOT_SAMPLED);
			break;
		}
		if (!has_room(skops)) {
			count(LAT_CNT_TX_NO_ROOM);
			/* Try the next segment rather than wait N more. */
			st->segments = 0;
			break;
		}
		st->stamp = 1;
		reserve(skops);
		break;

	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		if (lat_sample > 1) {
			/* Write only where we reserved: another program's
			 * reservation is not ours to fill. */
			sk = skops->sk;
			if (!sk)
				break;
			st = bpf_sk_storage_get(&tx_socks, sk, 0, 0);
			if (!st || !st->stamp)
				break;
			st->stamp = 0;
		}
		opt.kind = LAT_OPT_KIND;
		opt.len = LAT_OPT_LEN;
		opt.exid = bpf_htons(LAT_OPT_EXID);
		opt.ts_ns = bpf_cpu_to_be64(clock_ns());
		if (bpf_store_hdr_opt(skops, &opt, sizeof(opt), 0))
			count(LAT_CNT_TX_STORE_FAIL);
		else
			count(LAT_CNT_TX_STAMPED);
		break;
	}
	return 1;
}

/* ---- receiver */

enum opt_result {
	OPT_NONE = 0,
	OPT_OURS,
	OPT_OTHER_EXID,
	OPT_TRUNCATED,
};

/* opts[i] with an index the verifier can bound: the mask is done in an
 * instruction the compiler may not drop (it proves i < 40 elsewhere, on a
 * copy the verifier does not connect). */
static __always_inline __u8 opt_at(const __u8 *opts, __u32 i)
{
	asm volatile("%0 &= 63" : "+r"(i));
	return opts[i];
}

struct opt_walk {
	__u8 opts[64];
	__u32 optlen;
	__u32 i;
	__u64 ts;
	__u8 other; /* saw kind 253 with another ExID */
	__u8 result; /* enum opt_result, once decided */
};

/* One option per call (bpf_loop): the verifier checks the body once
 * instead of every path through 40 unrolled iterations. A malformed length
 * (below 2, or running past the header) or our ExID with a wrong length is
 * "truncated": never read as a time. Returns 1 to stop. */
static long opt_step(__u32 n, struct opt_walk *w)
{
	__u32 i = w->i, optlen = w->optlen;
	__u8 kind, len;

	if (i >= optlen || i >= TCP_MAX_OPT)
		return 1;
	kind = opt_at(w->opts, i);
	if (kind == 0) /* end of option list */
		return 1;
	if (kind == 1) { /* NOP */
		w->i = i + 1;
		return 0;
	}
	if (i + 1 >= optlen) {
		w->result = OPT_TRUNCATED;
		return 1;
	}
	len = opt_at(w->opts, i + 1);
	if (len < 2 || i + len > optlen) {
		w->result = OPT_TRUNCATED;
		return 1;
	}
	if (kind == LAT_OPT_KIND) {
		__u16 exid;

		if (len < 4) {
			w->result = OPT_TRUNCATED;
			return 1;
		}
		exid = ((__u16)opt_at(w->opts, i + 2) << 8) |
		       opt_at(w->opts, i + 3);
		if (exid == LAT_OPT_EXID) {
			__u64 v = 0;

			if (len != LAT_OPT_LEN) {
				w->result = OPT_TRUNCATED;
				return 1;
			}
			for (int k = 0; k < 8; k++)
				v = (v << 8) | opt_at(w->opts, i + 4 + k);
			w->ts = v;
			w->result = OPT_OURS;
			return 1;
		}
		w->other = 1;
	}
	w->i = i + len;
	return 0;
}

static __always_inline bool port_listed(const struct lat_pod *p, __u16 port)
{
	for (int i = 0; i < 4; i++)
		if (p->ports[i] && p->ports[i] == port)
			return true;
	return false;
}

static __always_inline void add_sample(struct lat_key *key, __s64 d)
{
	struct lat_hist *h;
	__u32 zero = 0, b;
	void *z;

	h = bpf_map_lookup_elem(&lat_hists, key);
	if (!h) {
		z = bpf_map_lookup_elem(&lat_zero, &zero);
		if (!z)
			return;
		if (bpf_map_update_elem(&lat_hists, key, z, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&lat_hists, key)) {
			count(LAT_CNT_RX_MAP_FULL);
			return;
		}
		h = bpf_map_lookup_elem(&lat_hists, key);
		if (!h)
			return;
	}
	if (h->count == 0 || d < h->min_ns)
		h->min_ns = d;
	if (h->count == 0 || d > h->max_ns)
		h->max_ns = d;
	h->count++;
	count(LAT_CNT_RX_MEASURED);
	if (d < 0) {
		h->negative++;
		count(LAT_CNT_RX_NEGATIVE);
		return;
	}
	h->sum_ns += (__u64)d;
	b = lat_bucket_of((__u64)d);
	if (b < LAT_NBUCKETS)
		h->buckets[b]++;
}

/* Walks the IPv6 extension headers between the fixed header (ending at
 * `off`) and TCP: hop-by-hop, routing and destination options (length in
 * 8-byte units, not counting the first 8), fragment (8 bytes; only the
 * first fragment holds the TCP header) and AH (4-byte units, plus 2).
 * Sets *tcp_off and returns 0 when TCP follows within IPV6_MAX_EXT
 * headers; -1 for anything else (another protocol, ESP, a non-first
 * fragment, a longer chain, a header cut short): not measured. */
static __always_inline int skip_ipv6_ext(struct __sk_buff *skb, __u32 off,
					 __u8 next, __u32 *tcp_off)
{
	__u8 h[4];

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT; i++) {
		if (next == IPPROTO_TCP)
			break;
		if (bpf_skb_load_bytes(skb, off, h, sizeof(h)))
			return -1;
		switch (next) {
		case IPV6_HOPOPTS:
		case IPV6_ROUTING:
		case IPV6_DSTOPTS:
			off += ((__u32)h[1] + 1) * 8;
			break;
		case IPV6_FRAGMENT:
			if ((((__u16)h[2] << 8) | h[3]) & 0xfff8)
				return -1; /* offset != 0: no TCP header here */
			off += 8;
			break;
		case IPV6_AH:
			off += ((__u32)h[1] + 2) * 4;
			break;
		default:
			return -1;
		}
		next = h[0];
	}
	if (next != IPPROTO_TCP)
		return -1;
	*tcp_off = off;
	return 0;
}

/* Where rx() finds the TCP header, once the IP header is parsed. */
struct rx_hdrs {
	struct lat_key key;
	__u16 sport, dport; /* host order */
	__u32 opt_off; /* first option byte, from the Ethernet header */
	__u32 optlen;
};

enum parse_result {
	PARSE_TCP = 0,
	PARSE_NOT_IP, /* ARP and friends: not counted */
	PARSE_NOT_TCP, /* counted as not TCP */
	PARSE_SLOW, /* not in the linear area, or a rare layout: parse_copy() */
};

/* The common case read in place (direct packet access): untagged Ethernet,
 * IPv4 or IPv6 without extension headers, TCP, all in the skb's linear
 * area. Copying every header with bpf_skb_load_bytes() was a helper call
 * per header on every packet of the node, monitored or not. Anything
 * else is left to parse_copy(), which gives the same answers. */
static __always_inline int parse_direct(struct __sk_buff *skb,
					struct rx_hdrs *h)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *tcp;
	__u32 off;

	if ((void *)(eth + 1) > data_end)
		return PARSE_SLOW;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return PARSE_SLOW;
		if (ip->ihl < 5 || ip->protocol != IPPROTO_TCP ||
		    (ip->frag_off & bpf_htons(0x1fff)))
			return PARSE_NOT_TCP;
		__builtin_memcpy(h->key.src.addr, &ip->saddr, 4);
		__builtin_memcpy(h->key.dst.addr, &ip->daddr, 4);
		h->key.src.family = h->key.dst.family = 4;
		off = sizeof(*eth) + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return PARSE_SLOW; /* extension headers: walked there */
		__builtin_memcpy(h->key.src.addr, &ip6->saddr, 16);
		__builtin_memcpy(h->key.dst.addr, &ip6->daddr, 16);
		h->key.src.family = h->key.dst.family = 6;
		off = sizeof(*eth) + sizeof(*ip6);
	} else if (eth->h_proto == bpf_htons(ETH_P_8021Q)) {
		return PARSE_SLOW;
	} else {
		return PARSE_NOT_IP;
	}
	tcp = data + off;
	if ((void *)(tcp + 1) > data_end)
		return PARSE_SLOW;
	if (tcp->doff < 5)
		return PARSE_NOT_TCP;
	h->sport = bpf_ntohs(tcp->source);
	h->dport = bpf_ntohs(tcp->dest);
	h->opt_off = off + sizeof(*tcp);
	h->optlen = tcp->doff * 4 - sizeof(*tcp);
	return PARSE_TCP;
}

/* Every layout rx() measures (VLAN tag, IPv6 extension headers, headers
 * beyond the linear area), copying each header out. */
static __always_inline int parse_copy(struct __sk_buff *skb, struct rx_hdrs *h)
{
	struct tcphdr tcp;
	__u32 off = 14;
	__u16 proto;

	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return PARSE_NOT_IP;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		if (bpf_skb_load_bytes(skb, 16, &proto, 2))
			return PARSE_NOT_IP;
		off += 4;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) ||
		    ip.ihl < 5)
			return PARSE_NOT_TCP;
		/* Only first fragments carry the TCP header. */
		if (ip.protocol != IPPROTO_TCP ||
		    (ip.frag_off & bpf_htons(0x1fff)))
			return PARSE_NOT_TCP;
		__builtin_memcpy(h->key.src.addr, &ip.saddr, 4);
		__builtin_memcpy(h->key.dst.addr, &ip.daddr, 4);
		h->key.src.family = h->key.dst.family = 4;
		off += ip.ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) ||
		    skip_ipv6_ext(skb, off + sizeof(ip6), ip6.nexthdr, &off))
			return PARSE_NOT_TCP;
		__builtin_memcpy(h->key.src.addr, &ip6.saddr, 16);
		__builtin_memcpy(h->key.dst.addr, &ip6.daddr, 16);
		h->key.src.family = h->key.dst.family = 6;
	} else {
		return PARSE_NOT_IP;
	}
	if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) || tcp.doff < 5)
		return PARSE_NOT_TCP;
	h->sport = bpf_ntohs(tcp.source);
	h->dport = bpf_ntohs(tcp.dest);
	h->opt_off = off + sizeof(tcp);
	h->optlen = tcp.doff * 4 - sizeof(tcp);
	return PARSE_TCP;
}

/* What Linux sends on an established connection with timestamps: NOP, NOP,
 * timestamp (kind 8, length 10), then our option if the segment is
 * stamped. */
#define OPT_NOP_NOP_TS 0x0101080a

/* The options of the two layouts nearly every monitored packet has, read
 * in place: timestamps alone (12 bytes: no option of ours, the same
 * answer as the walk) and timestamps then ours (24 or more bytes; the walk
 * would stop at ours too, whatever follows). Returns OPT_NONE or OPT_OURS
 * (*ts set) when it decided, -1 to leave it to the walk. */
static __always_inline int opts_direct(struct __sk_buff *skb,
				       const struct rx_hdrs *h, __u64 *ts)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 off = h->opt_off, optlen = h->optlen;
	struct lat_opt *o;
	__u8 *opts;

	/* Both are bounded whatever the parse (offset at most 14 + 4 + 60 +
	 * 4 * 2048 + 20); saying so lets the verifier accept the packet
	 * pointer arithmetic. */
	if (off > 16384 || optlen > TCP_MAX_OPT)
		return -1;
	opts = data + off;
	/* Options beyond the linear area, or beyond the packet (the walk
	 * calls that truncated). */
	if ((void *)(opts + optlen) > data_end)
		return -1;
	if ((void *)(opts + 4) > data_end ||
	    *(__be32 *)opts != bpf_htonl(OPT_NOP_NOP_TS))
		return -1;
	if (optlen == 12)
		return OPT_NONE;
	if (optlen < 24)
		return -1;
	o = (void *)(opts + 12);
	if ((void *)(o + 1) > data_end)
		return -1;
	if (o->kind != LAT_OPT_KIND || o->len != LAT_OPT_LEN ||
	    o->exid != bpf_htons(LAT_OPT_EXID))
		return -1;
	*ts = bpf_be64_to_cpu(o->ts_ns);
	return OPT_OURS;
}

/* Every other layout: the options copied out and walked one by one.
 * Returns the enum opt_result (*ts set for OPT_OURS). */
static __always_inline int opts_walk(struct __sk_buff *skb,
				     const struct rx_hdrs *h, __u64 *ts)
{
	struct opt_walk w;

	__builtin_memset(&w, 0, sizeof(w));
	w.optlen = h->optlen > TCP_MAX_OPT ? TCP_MAX_OPT : h->optlen;
	/* The header claims options the packet does not hold. */
	if (bpf_skb_load_bytes(skb, h->opt_off, w.opts, w.optlen))
		return OPT_TRUNCATED;
	bpf_loop(TCP_MAX_OPT, opt_step, &w, 0);
	if (w.result == OPT_NONE && w.other)
		return OPT_OTHER_EXID;
	*ts = w.ts;
	return w.result;
}

static __always_inline int rx(struct __sk_buff *skb, __u8 hop)
{
	struct lat_pod *dpod, *spod;
	struct rx_hdrs h = { .key.hop = hop };
	__u64 ts = 0;
	int r;

	r = parse_direct(skb, &h);
	if (r == PARSE_SLOW)
		r = parse_copy(skb, &h);
	if (r == PARSE_NOT_IP)
		return TC_ACT_UNSPEC;
	if (r != PARSE_TCP) {
		count(LAT_CNT_RX_NOT_TCP);
		return TC_ACT_UNSPEC;
	}
	count(LAT_CNT_RX_TCP);

	dpod = bpf_map_lookup_elem(&rx_dst, &h.key.dst);
	spod = dpod ? bpf_map_lookup_elem(&rx_src, &h.key.src) : NULL;
	if (!dpod || !spod) {
		count(LAT_CNT_RX_FILTERED);
		return TC_ACT_UNSPEC;
	}
	/* The connection must be to a monitored (pod, port), in either
	 * direction: to the destination's listening port, or a reply from
	 * the source's. A destination with no known ports takes any. */
	if (lat_filter_ports && dpod->ports[0] &&
	    !(port_listed(dpod, h.dport) || port_listed(spod, h.sport))) {
		count(LAT_CNT_RX_FILTERED);
		return TC_ACT_UNSPEC;
	}

	if (h.optlen == 0) {
		count(LAT_CNT_RX_NO_OPTION);
		return TC_ACT_UNSPEC;
	}
	r = opts_direct(skb, &h, &ts);
	if (r < 0)
		r = opts_walk(skb, &h, &ts);
	switch (r) {
	case OPT_OURS:
		break;
	case OPT_NONE:
		count(LAT_CNT_RX_NO_OPTION);
		return TC_ACT_UNSPEC;
	case OPT_TRUNCATED:
		count(LAT_CNT_RX_TRUNCATED);
		return TC_ACT_UNSPEC;
	default: /* OPT_OTHER_EXID */
		count(LAT_CNT_RX_OTHER_EXID);
		return TC_ACT_UNSPEC;
	}
	h.key.gen = lat_gen;
	add_sample(&h.key, (__s64)(clock_ns() - ts));
	return TC_ACT_UNSPEC;
}

SEC("tc")
int lat_rx_vxlan(struct __sk_buff *skb)
{
	return rx(skb, LAT_HOP_VXLAN);
}

SEC("tc")
int lat_rx_veth(struct __sk_buff *skb)
{
	return rx(skb, LAT_HOP_POD_VETH);
}

char LICENSE[] SEC("license") = "GPL";
