/* Record layout shared by flow.bpf.c (kernel) and src/agent/flow.c (user).
 * Fixed-width types and explicit padding: both compilers must agree on every
 * offset, which the _Static_assert below pins. */
#ifndef SONDE_FLOW_H
#define SONDE_FLOW_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define FLOW_COMM_LEN 16

enum flow_event_type {
	FLOW_EV_OPEN = 1,  /* the connection reached ESTABLISHED */
	FLOW_EV_CLOSE = 2, /* the socket reached CLOSE */
};

enum flow_side {
	FLOW_SIDE_UNKNOWN = 0, /* first seen after the handshake */
	FLOW_SIDE_CLIENT = 1,  /* this socket called connect() */
	FLOW_SIDE_SERVER = 2,  /* this socket was accepted from a listener */
};

/* Per-CPU counters, indices into the flow_counters map. */
enum flow_counter {
	FLOW_CNT_EVENTS = 0,	 /* events written to the ring buffer */
	FLOW_CNT_RINGBUF_FULL,	 /* events lost: ring buffer full */
	FLOW_CNT_TRACK_FULL,	 /* births not tracked: map update failed */
	FLOW_CNT_UNTRACKED_END,	 /* closes of sockets born before the sensor */
	FLOW_CNT_MAX,
};

struct flow_event {
	__u64 ts_ns;	      /* CLOCK_MONOTONIC, when the event happened */
	__u64 start_ns;	      /* SYN_SENT / SYN_RECV time; 0 = before sensor */
	__u64 established_ns; /* ESTABLISHED time; 0 = never / unknown */
	__u32 netns;	      /* inode number of the socket's network namespace */
	__u32 pid;	      /* tgid that connected or closed; 0 = unknown */
	__u8 laddr[16];	      /* local address; IPv4 in the first 4 bytes */
	__u8 raddr[16];	      /* remote address */
	__u16 lport;	      /* host byte order */
	__u16 rport;	      /* host byte order */
	__u16 family;	      /* AF_INET or AF_INET6 */
	__u8 type;	      /* enum flow_event_type */
	__u8 side;	      /* enum flow_side */
	__u8 oldstate;	      /* TCP state before the transition */
	__u8 newstate;	      /* TCP state after it */
	__u8 pad[4];
	char comm[FLOW_COMM_LEN];
};

_Static_assert(sizeof(struct flow_event) == 96, "flow_event layout");

#endif
