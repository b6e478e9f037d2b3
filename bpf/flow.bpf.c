// SPDX-License-Identifier: GPL-2.0
/* flow sensor, kernel side.
 *
 * TCP: one entry per socket in tcp_flows, created at SYN_SENT/SYN_RECV by
 * sock:inet_sock_set_state and holding the lifecycle (state transitions with
 * times, pid/comm) and a copy of the socket's own cumulative counters
 * (struct tcp_sock: bytes_acked, bytes_received, segs_in/out, total_retrans,
 * srtt ...). The copy is refreshed by tcp:tcp_probe, which fires for every
 * segment an established socket receives (data at a receiver, ACKs at a
 * sender), and once more when the socket is destroyed. Counters are the
 * kernel's, so they are exact; user space reads the map every interval and
 * emits the differences. Open and close go through the ring buffer.
 *
 * UDP: cgroup_skb programs at the node's cgroup root count payload bytes and
 * datagrams per address pair (udp_flows).
 *
 * Drops: skb:kfree_skb with the kernel's drop reason, per (netns, reason,
 * addresses) in drop_flows.
 *
 * Tracepoints fire for every socket on the machine; lab nodes share one
 * kernel, and so do a real node's pods. The agent lists the network
 * namespaces of its node in netns_allow and we drop the rest before any
 * work. cgroup programs need no such filter: they only run for the node's
 * cgroup subtree. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "flow.h"
#include "flow_parse.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* Set by user space before load. */
const volatile bool filter_netns = true;
/* Emit the close record from tcp:tcp_destroy_sock (after resets that
 * close() sends once the state is already CLOSE); without that hook, at
 * the CLOSE transition. */
const volatile bool close_at_destroy = false;

/* The interval number, bumped by user space at every flush: selects the
 * RTT slot the kernel writes. */
volatile __u32 rtt_epoch;

/* Network namespaces (inode numbers) of the agent's node and its pods. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} netns_allow SEC(".maps");

/* LRU: a socket whose end we never see (sensor restarted) cannot fill it;
 * evictions = inserts - deletes - live entries (user space counts them). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* socket address: unique while the socket lives */
	__type(value, struct flow_tcp);
} tcp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_udp_key);
	__type(value, struct flow_udp);
} udp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct flow_drop_key);
	__type(value, struct flow_drop);
} drop_flows SEC(".maps");

/* Room to build a new entry: struct flow_tcp is too big for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_tcp);
} tcp_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} flow_events SEC(".maps");

#define FLOW_RB_WAKEUP_BYTES (256 * 1024)

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

static __always_inline void remember_task(struct flow_tcp *f)
{
	f->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(f->comm, sizeof(f->comm));
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

/* The socket's cumulative counters, read through probe reads so that the
 * classic-tracepoint fallback (an untyped socket address) works too. */
static __always_inline void snapshot_core(struct flow_tcp *f,
					  const struct sock *sk, __u64 now)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	f->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	f->bytes_received = BPF_CORE_READ(tp, bytes_received);
	f->bytes_sent = BPF_CORE_READ(tp, bytes_sent);
	f->bytes_retrans = BPF_CORE_READ(tp, bytes_retrans);
	f->segs_in = BPF_CORE_READ(tp, segs_in);
	f->segs_out = BPF_CORE_READ(tp, segs_out);
	f->data_segs_in = BPF_CORE_READ(tp, data_segs_in);
	f->data_segs_out = BPF_CORE_READ(tp, data_segs_out);
	f->total_retrans = BPF_CORE_READ(tp, total_retrans);
	f->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	f->min_rtt_us = BPF_CORE_READ(tp, rtt_min.s[0].v);
	f->last_ns = now;
}

static __always_inline void add_transition(struct flow_tcp *f, __u64 now,
					   int oldstate, int newstate)
{
	__u32 n = f->ntrans;

	f->state = newstate;
	if (n >= FLOW_MAX_TRANS) {
		count(FLOW_CNT_TRANS_TRUNCATED);
		return;
	}
	n &= FLOW_MAX_TRANS - 1;
	f->trans[n].ts_ns = now;
	f->trans[n].oldstate = oldstate;
	f->trans[n].newstate = newstate;
	f->ntrans = n + 1;
}

static __always_inline void emit(__u8 type, __u64 key, int oldstate,
				 int newstate, __u64 now,
				 const struct flow_tcp *f, const struct sock *sk,
				 __u32 netns)
{
	struct flow_event *e = bpf_ringbuf_reserve(&flow_events, sizeof(*e), 0);

	if (!e) {
		count(FLOW_CNT_RINGBUF_FULL);
		return;
	}
	e->ts_ns = now;
	e->key = key;
	e->type = type;
	e->oldstate = oldstate;
	e->newstate = newstate;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	if (f) {
		e->tracked = 1;
		__builtin_memcpy(&e->f, f, sizeof(e->f));
	} else {
		e->tracked = 0;
		__builtin_memset(&e->f, 0, sizeof(e->f));
		read_tuple(sk, &e->f.tuple);
		e->f.netns = netns;
		e->f.state = newstate;
	}
	/* Waking the agent for every event costs more than the event; wake
	 * it once a batch has piled up. It also drains at every interval. */
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&flow_events, BPF_RB_AVAIL_DATA) >=
				      FLOW_RB_WAKEUP_BYTES
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP);
	count(FLOW_CNT_EVENTS);
}

static __always_inline struct flow_tcp *new_flow(__u64 key, __u64 now,
						 __u32 netns, __u8 side,
						 int oldstate, int newstate)
{
	__u32 zero = 0;
	struct flow_tcp *nf = bpf_map_lookup_elem(&tcp_scratch, &zero);

	if (!nf)
		return NULL;
	__builtin_memset(nf, 0, sizeof(*nf));
	nf->start_ns = side == FLOW_SIDE_UNKNOWN ? 0 : now;
	nf->netns = netns;
	nf->side = side;
	nf->rtt[0].epoch = ~0u;
	nf->rtt[1].epoch = ~0u;
	add_transition(nf, now, oldstate, newstate);
	if (bpf_map_update_elem(&tcp_flows, &key, nf, BPF_ANY)) {
		count(FLOW_CNT_TRACK_FULL);
		return NULL;
	}
	count(FLOW_CNT_TCP_INSERTS);
	return bpf_map_lookup_elem(&tcp_flows, &key);
}

static __always_inline void finish(__u64 key, struct flow_tcp *f,
				   const struct sock *sk, __u64 now)
{
	snapshot_core(f, sk, now);
	emit(FLOW_EV_CLOSE, key, f->close_old, TCP_CLOSE, now, f, sk,
	     f->netns);
	if (bpf_map_delete_elem(&tcp_flows, &key) == 0)
		count(FLOW_CNT_TCP_DELETES);
}

static __always_inline int handle_state(const struct sock *sk, int oldstate,
					int newstate)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u64 key = (__u64)sk;
	struct flow_tcp *f;
	__u32 netns;
	__u64 now;

	if (family != AF_INET && family != AF_INET6)
		return 0;
	netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (filter_netns && !bpf_map_lookup_elem(&netns_allow, &netns))
		return 0;
	now = bpf_ktime_get_ns();

	if (newstate == TCP_SYN_SENT) {
		/* connect(): we run in the calling task, so pid/comm are the
		 * client process. */
		f = new_flow(key, now, netns, FLOW_SIDE_CLIENT, oldstate,
			     newstate);
		if (f)
			remember_task(f);
		return 0;
	}
	if (newstate == TCP_SYN_RECV) {
		/* A child socket cloned from a listener, in softirq: the
		 * current task is unrelated, the owner is learnt at close. */
		new_flow(key, now, netns, FLOW_SIDE_SERVER, oldstate, newstate);
		return 0;
	}
	/* A listener closing is not a connection ending. */
	if (oldstate == TCP_LISTEN || newstate == TCP_LISTEN)
		return 0;

	f = bpf_map_lookup_elem(&tcp_flows, &key);
	if (!f && newstate == TCP_ESTABLISHED)
		/* Handshake began before the sensor: track from here. */
		f = new_flow(key, now, netns, FLOW_SIDE_UNKNOWN, oldstate,
			     newstate);
	else if (f)
		add_transition(f, now, oldstate, newstate);

	switch (newstate) {
	case TCP_ESTABLISHED:
		if (f) {
			f->established_ns = now;
			read_tuple(sk, &f->tuple);
			snapshot_core(f, sk, now);
		}
		emit(FLOW_EV_OPEN, key, oldstate, newstate, now, f, sk, netns);
		return 0;
	case TCP_FIN_WAIT1:
	case TCP_LAST_ACK:
		/* Entered from close()/shutdown() by the owning process (or
		 * from a timer for orphans, which leaves pid unknown). */
		if (f && !f->pid && (bpf_get_current_pid_tgid() >> 32))
			remember_task(f);
		return 0;
	case TCP_CLOSE:
		if (!f) {
			count(FLOW_CNT_UNTRACKED_END);
			emit(FLOW_EV_CLOSE, key, oldstate, newstate, now, NULL,
			     sk, netns);
			return 0;
		}
		f->close_old = oldstate;
		if (close_at_destroy)
			snapshot_core(f, sk, now); /* finished at destroy */
		else
			finish(key, f, sk, now);
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

/* The socket is freed: its counters are final, including a reset that
 * close() sends after the CLOSE transition. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(flow_destroy_btf, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct flow_tcp *f = bpf_map_lookup_elem(&tcp_flows, &key);

	if (!f)
		return 0;
	/* The close time is that of the CLOSE transition, not now. */
	finish(key, f, sk, f->state == TCP_CLOSE ? f->last_ns
						 : bpf_ktime_get_ns());
	return 0;
}

/* Every segment an established socket receives: refresh the counters and
 * take one RTT sample (the RTT of the latest acknowledged segment, RACK's
 * rtt_us, which is what srtt is smoothed from). The map lookup is the
 * filter: only sockets of the node's monitored netns have an entry. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(flow_probe_btf, struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)sk;
	struct flow_tcp *f = bpf_map_lookup_elem(&tcp_flows, &key);
	struct tcp_sock *tp;
	struct flow_rtt_slot *slot;
	__u32 epoch, rtt, tlp;

	if (!f)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	f->bytes_acked = tp->bytes_acked;
	f->bytes_received = tp->bytes_received;
	f->bytes_sent = tp->bytes_sent;
	f->bytes_retrans = tp->bytes_retrans;
	f->segs_in = tp->segs_in;
	f->segs_out = tp->segs_out;
	f->data_segs_in = tp->data_segs_in;
	f->data_segs_out = tp->data_segs_out;
	f->total_retrans = tp->total_retrans;
	f->srtt_us = tp->srtt_us >> 3;
	f->min_rtt_us = tp->rtt_min.s[0].v;
	f->last_ns = bpf_ktime_get_ns();

	/* A tail-loss probe sets tlp_high_seq (to snd_nxt) until it is
	 * resolved; a new non-zero value means a new probe was sent. */
	tlp = tp->tlp_high_seq;
	if (tlp && tlp != f->tlp_high_seq)
		f->tlp++;
	f->tlp_high_seq = tlp;

	rtt = tp->rack.rtt_us;
	if (!rtt)
		return 0;
	epoch = rtt_epoch;
	slot = &f->rtt[epoch & 1];
	if (slot->epoch != epoch) {
		slot->epoch = epoch;
		slot->samples = 0;
		slot->min_us = rtt;
		slot->max_us = rtt;
	}
	slot->samples++;
	if (rtt < slot->min_us)
		slot->min_us = rtt;
	if (rtt > slot->max_us)
		slot->max_us = rtt;
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(flow_send_reset_btf, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct flow_tcp *f;

	/* A reset for a segment no socket wanted has no flow. */
	if (!sk)
		return 0;
	f = bpf_map_lookup_elem(&tcp_flows, &key);
	if (f)
		f->rst_sent++;
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(flow_receive_reset_btf, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct flow_tcp *f = bpf_map_lookup_elem(&tcp_flows, &key);

	if (f)
		f->rst_received++;
	return 0;
}

/* ---- UDP: cgroup_skb at the node's cgroup root */

static __always_inline int count_udp(struct __sk_buff *skb, bool egress)
{
	struct flow_udp_key key = {};
	struct udp_dgrams d;
	struct flow_udp *u;
	__u64 now;
	int ret = flow_parse_udp(skb, egress, &key.tuple, &d);

	if (ret < 0)
		count(FLOW_CNT_UDP_UNPARSED);
	if (ret <= 0)
		return 1;
	key.cgroup_id = bpf_skb_cgroup_id(skb);
	now = bpf_ktime_get_ns();
	u = bpf_map_lookup_elem(&udp_flows, &key);
	if (!u) {
		struct flow_udp nu = { .first_ns = now,
				       .first_egress = egress };
		if (bpf_map_update_elem(&udp_flows, &key, &nu, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&udp_flows, &key)) {
			count(FLOW_CNT_UDP_TRACK_FULL);
			return 1;
		}
		u = bpf_map_lookup_elem(&udp_flows, &key);
		if (!u)
			return 1;
		count(FLOW_CNT_UDP_INSERTS);
	}
	if (egress) {
		__sync_fetch_and_add(&u->bytes_out, d.bytes);
		__sync_fetch_and_add(&u->dgrams_out, d.count);
	} else {
		__sync_fetch_and_add(&u->bytes_in, d.bytes);
		__sync_fetch_and_add(&u->dgrams_in, d.count);
	}
	u->last_ns = now;
	return 1; /* observe only: never drop */
}

SEC("cgroup_skb/egress")
int flow_udp_egress(struct __sk_buff *skb)
{
	return count_udp(skb, true);
}

SEC("cgroup_skb/ingress")
int flow_udp_ingress(struct __sk_buff *skb)
{
	return count_udp(skb, false);
}

/* ---- drops: skb:kfree_skb carries the kernel's drop reason */

SEC("tp_btf/kfree_skb")
int BPF_PROG(flow_drop_btf, struct sk_buff *skb, void *location,
	     enum skb_drop_reason reason)
{
	struct flow_drop_key key = {};
	struct net_device *dev;
	struct sock *sk;
	struct flow_drop *d;
	unsigned char *head;
	__u16 proto, nh;
	__u8 ihl_ver;
	__u64 now;

	if (reason <= SKB_CONSUMED)
		return 0;
	dev = skb->dev;
	sk = skb->sk;
	if (dev)
		key.netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	else if (sk)
		key.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (!key.netns ||
	    (filter_netns && !bpf_map_lookup_elem(&netns_allow, &key.netns)))
		return 0;
	key.reason = reason;
	key.ifindex = dev ? BPF_CORE_READ(dev, ifindex) : 0;

	head = skb->head;
	nh = skb->network_header;
	proto = bpf_ntohs(skb->protocol);
	if (proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return 0;
		ihl_ver = ((__u8 *)&ip)[0];
		if ((ihl_ver >> 4) != 4)
			return 0;
		key.tuple.family = AF_INET;
		key.proto = ip.protocol;
		__builtin_memcpy(key.tuple.laddr, &ip.saddr, 4);
		__builtin_memcpy(key.tuple.raddr, &ip.daddr, 4);
		nh += (ihl_ver & 0xf) * 4;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return 0;
		key.tuple.family = AF_INET6;
		key.proto = ip6.nexthdr;
		__builtin_memcpy(key.tuple.laddr, &ip6.saddr, 16);
		__builtin_memcpy(key.tuple.raddr, &ip6.daddr, 16);
		nh += sizeof(ip6);
	} else {
		return 0;
	}
	if (key.proto == IPPROTO_TCP || key.proto == 17) {
		__be16 ports[2];
		if (!bpf_probe_read_kernel(ports, sizeof(ports), head + nh)) {
			key.tuple.lport = bpf_ntohs(ports[0]);
			key.tuple.rport = bpf_ntohs(ports[1]);
		}
	}
	now = bpf_ktime_get_ns();
	d = bpf_map_lookup_elem(&drop_flows, &key);
	if (!d) {
		struct flow_drop nd = { .first_ns = now };
		if (bpf_map_update_elem(&drop_flows, &key, &nd, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&drop_flows, &key)) {
			count(FLOW_CNT_DROP_TRACK_FULL);
			return 0;
		}
		d = bpf_map_lookup_elem(&drop_flows, &key);
		if (!d)
			return 0;
	}
	__sync_fetch_and_add(&d->packets, 1);
	__sync_fetch_and_add(&d->bytes, skb->len);
	d->last_ns = now;
	count(FLOW_CNT_DROPS);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
