/* One-way latency: what bpf/latency.bpf.c (sender sock_ops, receiver tc)
 * and src/agent/latency.c (user side) share: the TCP option's layout, the
 * map keys and values, the histogram's bucket scheme and the counters.
 * Fixed-width types and explicit padding; _Static_assert pins the sizes. */
#ifndef SONDE_LATENCY_H
#define SONDE_LATENCY_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* RFC 6994 shared experimental option: kind 253, length, 16-bit ExID, then
 * our payload, the sender's CLOCK_TAI in ns (network byte order). 12 bytes:
 * a multiple of 4, so no padding is needed after it. */
#define LAT_OPT_KIND 253
#define LAT_OPT_LEN 12
#define LAT_OPT_EXID 0x534e /* "SN"; not in IANA's ExID registry */

/* Histogram: values below 2^LAT_SUB_BITS ns are exact; above, each power of
 * two is split into 2^LAT_SUB_BITS buckets (relative width <= 1/128, so a
 * percentile read at a bucket's middle is within 0.4 % of the true value).
 * The last bucket holds everything from 2^LAT_MAX_EXP ns (~69 s) up. */
#define LAT_SUB_BITS 7
#define LAT_SUB (1u << LAT_SUB_BITS)
#define LAT_MAX_EXP 36
#define LAT_NBUCKETS (LAT_SUB + (LAT_MAX_EXP - LAT_SUB_BITS) * LAT_SUB)

/* Where the receiver saw the packet. */
enum lat_hop {
	LAT_HOP_VXLAN = 0,   /* ingress of the node's VXLAN device (inner frame) */
	LAT_HOP_POD_VETH = 1, /* the receiving pod's host-side veth, towards the pod */
	LAT_HOP_MAX,
};

/* An address: IPv4 in the first 4 bytes, the rest zero. */
struct lat_addr {
	__u8 addr[16];
	__u16 family; /* 4 or 6 (IP version, not AF_*) */
	__u16 pad;
};

/* Aggregation key. gen alternates at every flush, so user space reads and
 * deletes one generation while the kernel fills the other. */
struct lat_key {
	struct lat_addr src; /* the pod that sent (stamped) the packet */
	struct lat_addr dst; /* the pod it was sent to */
	__u8 hop;	     /* enum lat_hop */
	__u8 gen;
	__u8 pad[2];
};

struct lat_hist {
	__u64 count;
	__u64 sum_ns;	   /* of non-negative samples */
	__s64 min_ns;
	__s64 max_ns;
	__u64 negative;	   /* receive before send: clocks disagree */
	__u32 buckets[LAT_NBUCKETS];
};

/* Receiver filter values (maps keyed by struct lat_addr). */
struct lat_pod {
	__u16 ports[4]; /* listening ports; all 0 (unknown): any port as destination */
};

/* Sender per-socket state (sk_storage). */
struct lat_sock {
	__u32 segments; /* seen by the length callback, for 1-in-N sampling */
	__u8 stamp;	/* this skb got our reservation: write it */
	__u8 pad[3];
};

/* Per-CPU counters, indices into lat_counters. */
enum lat_counter {
	/* sender (sock_ops) */
	LAT_CNT_TX_SOCKS = 0,	/* connections that got the option callbacks */
	LAT_CNT_TX_STAMPED,	/* options written */
	LAT_CNT_TX_NOT_SAMPLED, /* segments skipped by 1-in-N sampling */
	LAT_CNT_TX_NO_ROOM,	/* sampled, but the segment had no room */
	LAT_CNT_TX_RESERVE_FAIL,
	LAT_CNT_TX_STORE_FAIL,
	/* receiver (tc) */
	LAT_CNT_RX_TCP,		/* TCP packets parsed */
	LAT_CNT_RX_FILTERED,	/* TCP, but not between monitored pods */
	LAT_CNT_RX_NO_OPTION,	/* monitored, without any kind-253 option */
	LAT_CNT_RX_TRUNCATED,	/* an option running past the header, or ours too short */
	LAT_CNT_RX_OTHER_EXID,	/* kind 253 with another ExID (and none of ours) */
	LAT_CNT_RX_MEASURED,	/* samples added to a histogram */
	LAT_CNT_RX_NEGATIVE,	/* of which receive < send */
	LAT_CNT_RX_MAP_FULL,	/* samples lost: aggregation map full */
	LAT_CNT_RX_NOT_TCP,	/* IP packets of other protocols, or bad headers */
	LAT_CNT_MAX,
};

_Static_assert(sizeof(struct lat_addr) == 20, "lat_addr layout");
_Static_assert(sizeof(struct lat_key) == 44, "lat_key layout");
_Static_assert(sizeof(struct lat_hist) == 40 + 4 * LAT_NBUCKETS,
	       "lat_hist layout");

/* Bucket of a non-negative value, and the smallest value of a bucket. Plain
 * C, used by both sides (and the unit tests). */
static inline __u32 lat_log2(__u64 v)
{
	__u32 e = 0;

	if (v >> 32) { e += 32; v >>= 32; }
	if (v >> 16) { e += 16; v >>= 16; }
	if (v >> 8) { e += 8; v >>= 8; }
	if (v >> 4) { e += 4; v >>= 4; }
	if (v >> 2) { e += 2; v >>= 2; }
	if (v >> 1) { e += 1; }
	return e;
}

static inline __u32 lat_bucket_of(__u64 v)
{
	__u32 e;

	if (v < LAT_SUB)
		return (__u32)v;
	if (v >= (1ull << LAT_MAX_EXP))
		return LAT_NBUCKETS - 1;
	e = lat_log2(v); /* LAT_SUB_BITS .. LAT_MAX_EXP - 1 */
	return LAT_SUB + (e - LAT_SUB_BITS) * LAT_SUB +
	       (__u32)((v >> (e - LAT_SUB_BITS)) & (LAT_SUB - 1));
}

static inline __u64 lat_bucket_low(__u32 b)
{
	__u32 e;

	if (b < LAT_SUB)
		return b;
	e = (b - LAT_SUB) / LAT_SUB + LAT_SUB_BITS;
	return ((__u64)(LAT_SUB + (b - LAT_SUB) % LAT_SUB)) << (e - LAT_SUB_BITS);
}

#endif
