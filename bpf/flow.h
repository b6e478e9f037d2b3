/* Record layout shared by flow.bpf.c (kernel) and src/agent/flow.c (user).
 * Fixed-width types and explicit padding: both compilers must agree on every
 * offset, which the _Static_asserts below pin. */
#ifndef SONDE_FLOW_H
#define SONDE_FLOW_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define FLOW_COMM_LEN 16
/* State transitions kept per TCP flow (the first ones: a connection's
 * handshake and close fit; a longer history is truncated and counted). */
#define FLOW_MAX_TRANS 8

enum flow_event_type {
	FLOW_EV_OPEN = 1,  /* the connection reached ESTABLISHED */
	FLOW_EV_CLOSE = 2, /* the socket reached CLOSE: totals */
};

enum flow_side {
	FLOW_SIDE_UNKNOWN = 0, /* first seen after the handshake */
	FLOW_SIDE_CLIENT = 1,  /* this socket called connect() */
	FLOW_SIDE_SERVER = 2,  /* this socket was accepted from a listener */
};

/* Per-CPU counters, indices into the flow_counters map. */
enum flow_counter {
	FLOW_CNT_EVENTS = 0,	   /* events written to the ring buffer */
	FLOW_CNT_RINGBUF_FULL,	   /* events lost: ring buffer full */
	FLOW_CNT_TRACK_FULL,	   /* flows not tracked: map update failed */
	FLOW_CNT_UNTRACKED_END,	   /* closes of sockets born before the sensor */
	FLOW_CNT_TCP_INSERTS,	   /* entries created in tcp_flows */
	FLOW_CNT_TCP_DELETES,	   /* entries deleted at close */
	FLOW_CNT_UDP_INSERTS,	   /* entries created in udp_flows */
	FLOW_CNT_UDP_TRACK_FULL,   /* UDP datagrams not counted: update failed */
	FLOW_CNT_UDP_UNPARSED,	   /* UDP skbs whose headers we could not read */
	FLOW_CNT_TRANS_TRUNCATED,  /* state transitions beyond FLOW_MAX_TRANS */
	FLOW_CNT_DROPS,		   /* kfree_skb drops counted in drop_flows */
	FLOW_CNT_DROP_TRACK_FULL,  /* drops not counted: update failed */
	FLOW_CNT_MAX,
};

struct flow_tuple {
	__u8 laddr[16]; /* local address; IPv4 in the first 4 bytes */
	__u8 raddr[16]; /* remote address */
	__u16 lport;	/* host byte order */
	__u16 rport;	/* host byte order */
	__u16 family;	/* AF_INET or AF_INET6 */
	__u16 pad;
};

struct flow_trans {
	__u64 ts_ns; /* CLOCK_MONOTONIC */
	__u8 oldstate;
	__u8 newstate;
	__u8 pad[6];
};

/* RTT samples of one interval. Two slots indexed by the interval number's
 * parity: the kernel writes slot epoch&1 (resetting it when its epoch is
 * stale) while user space reads the other, finished one. */
struct flow_rtt_slot {
	__u32 epoch;
	__u32 samples;
	__u32 min_us;
	__u32 max_us;
};

/* One TCP flow (socket) as the kernel aggregates it: identity, lifecycle
 * and the socket's own cumulative counters, copied from struct tcp_sock at
 * every received segment and at close. User space diffs the counters
 * between intervals. */
struct flow_tcp {
	__u64 start_ns;	      /* SYN_SENT / SYN_RECV time; 0 = before sensor */
	__u64 established_ns; /* ESTABLISHED time; 0 = never / unknown */
	__u64 last_ns;	      /* last counter snapshot */
	__u64 bytes_acked;    /* tcp_sock counters (RFC 4898 names) */
	__u64 bytes_received;
	__u64 bytes_sent;     /* includes retransmitted bytes */
	__u64 bytes_retrans;
	__u32 segs_in;
	__u32 segs_out;
	__u32 data_segs_in;
	__u32 data_segs_out;
	__u32 total_retrans;  /* retransmitted segments (TcpRetransSegs) */
	__u32 tlp;	      /* tail-loss probes seen sent */
	__u32 tlp_high_seq;   /* last seen, to detect a new probe */
	__u32 srtt_us;	      /* smoothed RTT, us */
	__u32 min_rtt_us;     /* kernel's windowed minimum RTT */
	__u32 rst_sent;
	__u32 rst_received;
	__u32 netns;	      /* inode number of the socket's netns */
	__u32 pid;	      /* tgid that connected or closed; 0 = unknown */
	__u8 side;	      /* enum flow_side */
	__u8 state;	      /* current TCP state */
	__u8 ntrans;	      /* transitions recorded in trans[] */
	__u8 close_old;	      /* the state CLOSE was entered from */
	__u8 pad[4];
	__u32 pad2;
	char comm[FLOW_COMM_LEN];
	struct flow_tuple tuple;
	struct flow_rtt_slot rtt[2];
	struct flow_trans trans[FLOW_MAX_TRANS];
};

/* Ring-buffer event: open and close of a TCP flow. */
struct flow_event {
	__u64 ts_ns;	/* CLOCK_MONOTONIC, when the event happened */
	__u64 key;	/* the flow's key in tcp_flows */
	__u8 type;	/* enum flow_event_type */
	__u8 oldstate;	/* TCP state before the transition */
	__u8 newstate;	/* TCP state after it */
	__u8 tracked;	/* 0: no birth seen, only tuple/netns are valid */
	__u8 pad[4];
	struct flow_tcp f;
};

/* UDP: one entry per (netns, local, remote) address pair, counted by
 * cgroup_skb programs at the node's cgroup root. */
struct flow_udp_key {
	struct flow_tuple tuple;
	__u64 cgroup_id; /* the socket's cgroup: which pod, on this node */
};

struct flow_udp {
	__u64 first_ns;
	__u64 last_ns;
	__u64 bytes_out; /* UDP payload bytes */
	__u64 bytes_in;
	__u64 dgrams_out;
	__u64 dgrams_in;
	__u32 first_egress; /* the first datagram seen was sent: local = src */
	__u32 pad;
};

/* Drops: skb:kfree_skb aggregated per (netns, reason, addresses). */
struct flow_drop_key {
	struct flow_tuple tuple; /* as in the packet: laddr = source */
	__u32 netns;		 /* netns of the device (or socket) */
	__u32 reason;		 /* enum skb_drop_reason */
	__u32 ifindex;
	__u8 proto;		 /* IPPROTO_* */
	__u8 pad[3];
};

struct flow_drop {
	__u64 first_ns;
	__u64 last_ns;
	__u64 packets;
	__u64 bytes;
};

_Static_assert(sizeof(struct flow_tuple) == 40, "flow_tuple layout");
_Static_assert(sizeof(struct flow_tcp) == 336, "flow_tcp layout");
_Static_assert(sizeof(struct flow_event) == 360, "flow_event layout");
_Static_assert(sizeof(struct flow_udp_key) == 48, "flow_udp_key layout");
_Static_assert(sizeof(struct flow_drop_key) == 56, "flow_drop_key layout");

#endif
