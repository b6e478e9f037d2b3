/* Record layout shared by l7.bpf.c (kernel) and src/agent/l7.c (user).
 *
 * The kernel side does no protocol work: it reports, per socket syscall of
 * a monitored process, which socket, which direction, how many bytes moved
 * and a bounded prefix of those bytes. User space reassembles each socket's
 * two byte streams and parses HTTP/1.x and DNS from them (src/l7/). */
#ifndef SONDE_L7_H
#define SONDE_L7_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bytes of payload carried per event (per buffer or iovec). Bytes past it
 * are reported as a gap of known length, which the parsers can skip while
 * they are inside a body of known length. */
#define L7_CAP 4096
/* iovecs of one readv/writev/sendmsg/recvmsg looked at; the rest of the
 * syscall's bytes become one gap. */
#define L7_MAX_IOV 64
/* Events one syscall may produce before the rest becomes a gap, and loop
 * steps spent filling them (one per iovec or per L7_CAP piece). */
#define L7_MAX_CHUNKS 8
#define L7_MAX_STEPS 96
/* Messages of one sendmmsg/recvmmsg looked at. */
#define L7_MAX_MMSG 4
#define L7_COMM_LEN 16

enum l7_dir {
	L7_DIR_IN = 0,	  /* bytes read from the socket */
	L7_DIR_OUT = 1,	  /* bytes written to it */
	L7_DIR_CLOSE = 2, /* the TCP socket reached CLOSE: no data */
};

enum l7_flags {
	L7_F_MSG_ADDR = 1, /* raddr/rport come from the syscall's sockaddr
			    * (unconnected UDP), not from the socket */
	L7_F_MSG_END = 2,  /* last piece of one datagram / syscall */
};

/* Per socket (key: struct sock address), in the l7_socks map. */
struct l7_sock {
	__u32 seq[2];	/* next sequence number, per direction */
	__u16 gen;	/* random, set when the entry is made */
	__u8 ignore;	/* user space found no HTTP/DNS here: capture nothing */
	__u8 pad;
};

/* Per-CPU counters, indices into the l7_counters map. */
enum l7_counter {
	L7_CNT_EVENTS = 0,	/* events written to the ring buffer */
	L7_CNT_RINGBUF_FULL,	/* events lost: ring buffer full */
	L7_CNT_STASH_FULL,	/* syscalls lost: enter->exit map full */
	L7_CNT_TRUNCATED,	/* events whose payload exceeded L7_CAP or
				 * whose iovecs exceeded L7_MAX_IOV */
	L7_CNT_READ_FAULT,	/* payload not readable from user memory */
	L7_CNT_IGNORED,		/* syscalls of sockets found uninteresting */
	L7_CNT_MAX,
};

struct l7_event {
	__u64 ts_ns;	/* CLOCK_MONOTONIC at syscall exit */
	__u64 enter_ns; /* CLOCK_MONOTONIC at syscall entry */
	__u64 sock;	/* kernel address of the struct sock: connection id */
	__u32 tgid;
	__u32 netns;	/* inode of the socket's network namespace */
	__u32 len;	/* stream bytes this event stands for */
	__u32 cap;	/* bytes of data[] present (<= len, <= L7_CAP) */
	__u32 seq;	/* per socket and direction: a hole means lost events */
	__u16 lport;	/* host byte order */
	__u16 rport;	/* host byte order */
	__u8 laddr[16]; /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
	__u16 family;	/* AF_INET or AF_INET6 */
	__u8 dir;	/* enum l7_dir */
	__u8 proto;	/* IPPROTO_TCP or IPPROTO_UDP */
	__u8 flags;	/* enum l7_flags */
	__u8 pad;
	__u16 sk_gen;	/* the kernel's per-socket entry this came from:
			 * tells a reused socket address from the old one */
	char comm[L7_COMM_LEN];
	__u8 data[L7_CAP];
};

#define L7_EVENT_HDR 104
_Static_assert(__builtin_offsetof(struct l7_event, data) == L7_EVENT_HDR,
	       "l7_event layout");

#endif
