// SPDX-License-Identifier: GPL-2.0
/* flow sensor, kernel side: TCP connection lifecycle from the
 * sock:inet_sock_set_state tracepoint. One record when a connection becomes
 * ESTABLISHED and one when its socket reaches CLOSE, each carrying the
 * socket's netns so that user space can attribute it to a pod.
 *
 * The tracepoint fires for every socket on the machine; lab nodes share one
 * kernel, and so do a real node's pods. The agent therefore lists the
 * network namespaces of its node in netns_allow and we drop the rest here,
 * before any work or ring-buffer traffic. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "flow.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Set by user space before load. */
const volatile bool filter_netns = true;

/* Network namespaces (inode numbers) of the agent's node and its pods. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} netns_allow SEC(".maps");

/* The connection's addresses, read once it is ESTABLISHED: at CLOSE the
 * kernel has already released the local port (it reads as 0). */
struct flow_tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u16 family;
	__u16 pad;
};

/* What we learnt at a connection's birth, until its close. LRU so that
 * sockets whose close we never see (sensor restarted) cannot fill it. */
struct flow_birth {
	__u64 start_ns;
	__u64 established_ns;
	__u32 pid;
	__u8 side;
	__u8 pad[3];
	char comm[FLOW_COMM_LEN];
	struct flow_tuple tuple;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket address: unique while the socket lives */
	__type(value, struct flow_birth);
} flow_births SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} flow_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOW_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} flow_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&flow_counters, &idx);

	if (v)
		(*v)++;
}

static __always_inline void remember_task(struct flow_birth *b)
{
	b->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(b->comm, sizeof(b->comm));
}

static __always_inline void read_tuple(const struct sock *sk,
				       struct flow_tuple *t)
{
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (t->family == AF_INET) {
		bpf_core_read(t->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(t->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

static __always_inline void emit(const struct sock *sk, __u32 netns,
				 __u8 type, int oldstate, int newstate,
				 __u64 now, const struct flow_birth *b)
{
	struct flow_event *e = bpf_ringbuf_reserve(&flow_events, sizeof(*e), 0);
	struct flow_tuple t = {};

	if (!e) {
		count(FLOW_CNT_RINGBUF_FULL);
		return;
	}
	if (b && b->established_ns)
		t = b->tuple;
	else
		read_tuple(sk, &t);
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	e->netns = netns;
	e->type = type;
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->family = t.family;
	e->lport = t.lport;
	e->rport = t.rport;
	__builtin_memcpy(e->laddr, t.laddr, sizeof(e->laddr));
	__builtin_memcpy(e->raddr, t.raddr, sizeof(e->raddr));
	if (b) {
		e->start_ns = b->start_ns;
		e->established_ns = b->established_ns;
		e->pid = b->pid;
		e->side = b->side;
		__builtin_memcpy(e->comm, b->comm, sizeof(e->comm));
	}
	bpf_ringbuf_submit(e, 0);
	count(FLOW_CNT_EVENTS);
}

static __always_inline int handle_state(const struct sock *sk, int oldstate,
					int newstate)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u64 key = (__u64)sk;
	struct flow_birth *b;
	__u32 netns;
	__u64 now;

	if (family != AF_INET && family != AF_INET6)
		return 0;
	netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (filter_netns && !bpf_map_lookup_elem(&netns_allow, &netns))
		return 0;
	now = bpf_ktime_get_ns();

	switch (newstate) {
	case TCP_SYN_SENT: {
		/* connect(): we run in the calling task, so pid/comm are the
		 * client process. */
		struct flow_birth nb = { .start_ns = now,
					 .side = FLOW_SIDE_CLIENT };
		remember_task(&nb);
		if (bpf_map_update_elem(&flow_births, &key, &nb, BPF_ANY))
			count(FLOW_CNT_TRACK_FULL);
		return 0;
	}
	case TCP_SYN_RECV: {
		/* A child socket cloned from a listener, in softirq: the
		 * current task is unrelated, the owner is learnt at close. */
		struct flow_birth nb = { .start_ns = now,
					 .side = FLOW_SIDE_SERVER };
		if (bpf_map_update_elem(&flow_births, &key, &nb, BPF_ANY))
			count(FLOW_CNT_TRACK_FULL);
		return 0;
	}
	case TCP_ESTABLISHED:
		b = bpf_map_lookup_elem(&flow_births, &key);
		if (b) {
			b->established_ns = now;
			read_tuple(sk, &b->tuple);
		}
		emit(sk, netns, FLOW_EV_OPEN, oldstate, newstate, now, b);
		return 0;
	case TCP_FIN_WAIT1:
	case TCP_LAST_ACK:
		/* Entered from close()/shutdown() by the owning process (or
		 * from a timer for orphans, which leaves pid unknown). */
		b = bpf_map_lookup_elem(&flow_births, &key);
		if (b && !b->pid && (bpf_get_current_pid_tgid() >> 32))
			remember_task(b);
		return 0;
	case TCP_CLOSE:
		/* A listener closing is not a connection ending. */
		if (oldstate == TCP_LISTEN)
			return 0;
		b = bpf_map_lookup_elem(&flow_births, &key);
		if (!b)
			count(FLOW_CNT_UNTRACKED_END);
		emit(sk, netns, FLOW_EV_CLOSE, oldstate, newstate, now, b);
		if (b)
			bpf_map_delete_elem(&flow_births, &key);
		return 0;
	}
	return 0;
}

/* Preferred: BTF-typed raw tracepoint, no tracefs needed, cheapest. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(flow_state_btf, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	return handle_state(sk, oldstate, newstate);
}

/* Fallback for kernels without BTF for this tracepoint. */
SEC("tracepoint/sock/inet_sock_set_state")
int flow_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	return handle_state((const struct sock *)ctx->skaddr, ctx->oldstate,
			    ctx->newstate);
}

char LICENSE[] SEC("license") = "GPL";
