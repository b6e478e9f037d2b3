// SPDX-License-Identifier: GPL-2.0
/* l7 sensor, kernel side: the bytes that monitored processes move through
 * their TCP and UDP sockets, from the raw syscall tracepoints.
 *
 * Why syscalls and not packets: at the syscall the stream is already
 * reassembled and in order, one request's bytes are one or a few buffers,
 * and the time is the application's own (what its access log measures).
 * Packets would need TCP reassembly, retransmit handling and GSO splitting
 * in user space for the same result.
 *
 * The raw tracepoints sys_enter/sys_exit are used (tp_btf, no tracefs): the
 * per-syscall ones exist only through ftrace. Each program first keeps only
 * the socket syscalls it knows, then only tasks in a monitored network
 * namespace, then only fds that are inet sockets: the rest of the machine's
 * syscalls cost a compare and a map lookup.
 *
 * At entry the arguments (fd -> socket, buffer, iovec or msghdr) are stashed
 * per thread; at exit, knowing how many bytes really moved, one event per
 * buffer piece (at most L7_CAP bytes of payload each) goes to the ring. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "l7.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* x86_64 syscall numbers. */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_recvmmsg 299
#define NR_sendmmsg 307

const volatile bool filter_netns = true;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} netns_allow SEC(".maps");

enum call_kind { CALL_BUF = 1, CALL_IOV, CALL_MSG, CALL_MMSG, CALL_FILE };

/* What sys_enter saw, for sys_exit of the same thread. */
struct l7_call {
	__u64 enter_ns;
	__u64 sk;
	__u64 ptr;	/* buffer, iovec array, msghdr or mmsghdr array */
	__u64 addr;	/* sockaddr of sendto/recvfrom, or 0 */
	__u32 cnt;	/* iovcnt / vlen */
	__u32 nr;	/* syscall number: exit checks it is the same call */
	__u8 kind;	/* enum call_kind; 0: nothing stashed */
	__u8 dir;	/* L7_DIR_IN or L7_DIR_OUT */
	__u8 pad[6];
};

/* Per thread, from sys_enter to sys_exit. Task storage, not a hash keyed
 * by pid_tgid: no hashing, locking or element allocation per syscall (the
 * hash's update + delete were a large part of the per-syscall cost). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct l7_call);
} l7_calls SEC(".maps");

/* Per socket: sequence numbers and the user's verdict (struct l7_sock).
 * One lookup per syscall. LRU: sockets whose close we never see cannot
 * fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct l7_sock);
} l7_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} l7_events SEC(".maps");

/* The event being built, with room past data[] so that the verifier can
 * see every copy at offset < L7_CAP of length <= L7_CAP stays inside. */
struct l7_scratch {
	struct l7_event e;
	__u8 slack[L7_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_scratch);
} l7_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, L7_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} l7_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&l7_counters, &idx);

	if (v)
		(*v)++;
}

static __always_inline bool netns_watched(__u32 inum)
{
	return !filter_netns || bpf_map_lookup_elem(&netns_allow, &inum);
}

/* Typed, read-only view of a kernel address (kfunc, kernel >= 6.2): loads
 * through it are inlined (faults read as 0) instead of one helper call per
 * field as BPF_CORE_READ makes. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define kcast(type, p) \
	((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))

/* fd -> struct sock of the current task, or NULL when fd is not an inet
 * TCP/UDP socket. */
static __always_inline struct sock *fd_to_sock(struct task_struct *task,
					       int fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file *file = NULL, **fds;
	struct socket *sock;
	struct sock *sk;
	__u16 family, proto;

	if (fd < 0 || !fdt || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	file = kcast(struct file, file);
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = kcast(struct socket, file->private_data);
	sk = sock->sk;
	if (!sk)
		return NULL;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	proto = sk->sk_protocol;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return NULL;
	return sk;
}

#define DIR_NONE 0xff

/* The socket I/O syscalls, the only ones either program looks further at,
 * and the direction of their bytes; DIR_NONE for every other syscall. */
static __always_inline __u8 io_dir(long id)
{
	switch (id) {
	case NR_read:
	case NR_recvfrom:
	case NR_readv:
	case NR_recvmsg:
	case NR_recvmmsg:
		return L7_DIR_IN;
	case NR_write:
	case NR_sendto:
	case NR_writev:
	case NR_sendmsg:
	case NR_sendmmsg:
	case NR_sendfile:
		return L7_DIR_OUT;
	}
	return DIR_NONE;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(l7_sys_enter, struct pt_regs *regs, long id)
{
	struct l7_call c = {}, *cp;
	struct task_struct *task;
	struct sock *sk;
	__u8 dir;

	dir = io_dir(id);
	if (dir == DIR_NONE)
		return 0;
	task = bpf_get_current_task_btf();
	if (!netns_watched(task->nsproxy->net_ns->ns.inum))
		return 0;
	sk = fd_to_sock(task, (int)regs->di);
	if (!sk)
		return 0;

	c.enter_ns = bpf_ktime_get_ns();
	c.sk = (__u64)sk;
	c.nr = (__u32)id;
	c.dir = dir;
	switch (id) {
	case NR_read:
	case NR_write:
		c.kind = CALL_BUF;
		c.ptr = regs->si;
		break;
	case NR_recvfrom:
	case NR_sendto:
		c.kind = CALL_BUF;
		c.ptr = regs->si;
		c.addr = regs->r8;
		break;
	case NR_readv:
	case NR_writev:
		c.kind = CALL_IOV;
		c.ptr = regs->si;
		c.cnt = (__u32)regs->dx;
		break;
	case NR_recvmsg:
	case NR_sendmsg:
		c.kind = CALL_MSG;
		c.ptr = regs->si;
		break;
	case NR_recvmmsg:
	case NR_sendmmsg:
		c.kind = CALL_MMSG;
		c.ptr = regs->si;
		c.cnt = (__u32)regs->dx;
		break;
	case NR_sendfile:
		/* sendfile(out_fd, in_fd, ...): the socket is out_fd; the
		 * bytes come from a file and are not captured. */
		c.kind = CALL_FILE;
		break;
	}
	cp = bpf_task_storage_get(&l7_calls, task, 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!cp) {
		count(L7_CNT_STASH_FULL);
		return 0;
	}
	*cp = c;
	return 0;
}

/* Fills the fields every event of this syscall shares. */
static __always_inline void event_header(struct l7_event *e,
					 const struct l7_call *c, __u64 now)
{
	struct sock *sk = kcast(struct sock, c->sk);

	e->ts_ns = now;
	e->enter_ns = c->enter_ns;
	e->sock = c->sk;
	e->tgid = bpf_get_current_pid_tgid() >> 32;
	e->netns = sk->__sk_common.skc_net.net->ns.inum;
	e->family = sk->__sk_common.skc_family;
	e->proto = sk->sk_protocol;
	e->lport = sk->__sk_common.skc_num;
	e->rport = __builtin_bswap16(sk->__sk_common.skc_dport);
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	if (e->family == AF_INET) {
		__u32 la = sk->__sk_common.skc_rcv_saddr;
		__u32 ra = sk->__sk_common.skc_daddr;
		__builtin_memcpy(e->laddr, &la, 4);
		__builtin_memcpy(e->raddr, &ra, 4);
	} else {
		bpf_core_read(e->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	e->dir = c->dir;
	e->flags = 0;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* Unconnected UDP (a DNS server's recvmsg/sendmsg): the peer is in the
 * syscall's sockaddr, not in the socket. */
static __always_inline void peer_from_sockaddr(struct l7_event *e, __u64 uaddr)
{
	struct sockaddr_in6 sa = {};

	/* TCP ignores the syscall's address (recvfrom does not even write
	 * it): the buffer may hold anything; the socket's peer is right. */
	if (e->proto != IPPROTO_UDP)
		return;
	if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), (void *)uaddr))
		return;
	if (sa.sin6_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
		__builtin_memset(e->raddr, 0, sizeof(e->raddr));
		__builtin_memcpy(e->raddr, &s4->sin_addr, 4);
		e->rport = __builtin_bswap16(s4->sin_port);
		e->flags |= L7_F_MSG_ADDR;
	} else if (sa.sin6_family == AF_INET6) {
		__builtin_memcpy(e->raddr, &sa.sin6_addr, 16);
		e->rport = __builtin_bswap16(sa.sin6_port);
		e->flags |= L7_F_MSG_ADDR;
	}
}

/* Waking the reader for every event costs a context switch per syscall
 * at high rates: wake it only once WAKEUP_BYTES are waiting; the agent
 * also drains the ring at every --interval tick, so a quiet socket's
 * events wait at most that long. */
#define WAKEUP_BYTES (256 * 1024)

static __always_inline __u64 wakeup_flag(void)
{
	return bpf_ringbuf_query(&l7_events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

/* Writes the event in the scratch buffer out: `len` stream bytes, of which
 * the first `cap` are in e->data. e->seq holds the socket direction's next
 * sequence number and is advanced (one writer per socket in practice: the
 * ring orders one thread's events; a race only costs a false "lost"). */
static __noinline void flush(struct l7_event *e, __u64 len, __u64 cap,
			    bool last)
{
	if (cap > L7_CAP)
		cap = L7_CAP;
	e->len = len;
	e->cap = cap;
	if (last)
		e->flags |= L7_F_MSG_END;
	if (bpf_ringbuf_output(&l7_events, e, L7_EVENT_HDR + cap, wakeup_flag()))
		count(L7_CNT_RINGBUF_FULL);
	else
		count(L7_CNT_EVENTS);
	e->seq++;
}

/* State of one capture walk. The step is a global function: the verifier
 * checks it once, on its own, instead of once per loop iteration and per
 * value the walk's fields can take (which exceeds its 1M-insn budget). */
struct walk {
	__u64 iov_ptr;
	__u64 cur;	/* user address being copied */
	__u64 rem;	/* bytes left in the current buffer */
	__u64 total;	/* bytes in the iovecs not yet opened */
	__u64 off;	/* bytes in the event being filled */
	__u32 cnt, i, chunks;
	bool fault;
};

__noinline int l7_walk_step(struct walk *w)
{
	struct l7_scratch *sc;
	struct l7_event *e;
	struct iovec iov;
	__u32 zero = 0;
	__u64 take, off;

	if (!w)
		return 1;
	if (!w->rem) {
		if (w->i >= w->cnt || w->i >= L7_MAX_IOV || !w->total)
			return 1;
		if (bpf_probe_read_user(&iov, sizeof(iov),
					(void *)(w->iov_ptr +
						 w->i * sizeof(iov))))
			return 1;
		w->i++;
		w->cur = (__u64)iov.iov_base;
		w->rem = iov.iov_len < w->total ? iov.iov_len : w->total;
		w->total -= w->rem;
		return 0;
	}
	sc = bpf_map_lookup_elem(&l7_scratch, &zero);
	if (!sc)
		return 1;
	e = &sc->e;
	if (w->off >= L7_CAP) {
		flush(e, w->off, w->off, false);
		w->off = 0;
		if (++w->chunks >= L7_MAX_CHUNKS)
			return 1;
	}
	off = w->off & (L7_CAP - 1);
	take = L7_CAP - off;
	if (take > w->rem)
		take = w->rem;
	if (take > L7_CAP)
		take = L7_CAP;
	if (take && bpf_probe_read_user(e->data + off, take, (void *)w->cur)) {
		w->fault = true;
		return 1;
	}
	w->off = off + take;
	w->cur += take;
	w->rem -= take;
	return 0;
}

/* Captures `total` bytes spread over an iovec array (iov_ptr, cnt), or
 * over one buffer (iov_ptr == 0: base). Small iovecs are packed into one
 * event (nginx writes a chunked answer as many small iovecs); a buffer
 * larger than L7_CAP is split over several events, up to L7_MAX_CHUNKS;
 * whatever is left is one gap event (counted as truncated). */
static __noinline void emit_bytes(struct l7_event *e, __u64 iov_ptr,
				  __u32 cnt, __u64 base, __u64 total)
{
	struct walk w = { .iov_ptr = iov_ptr, .cnt = cnt, .total = total };

	if (!iov_ptr) {
		w.cur = base;
		w.rem = total;
		w.total = 0;
		w.i = w.cnt = 1;
	}
	for (__u32 step = 0; step < L7_MAX_STEPS; step++)
		if (l7_walk_step(&w))
			break;
	if (w.fault)
		count(L7_CNT_READ_FAULT);
	total = w.total + w.rem;
	if (w.off)
		flush(e, w.off, w.off, !total);
	if (total) {
		count(L7_CNT_TRUNCATED);
		flush(e, total, 0, true);
	}
}

static __always_inline void emit_msg(struct l7_event *e,
				     __u64 msg_ptr, __u64 total)
{
	struct user_msghdr m;

	if (bpf_probe_read_user(&m, sizeof(m), (void *)msg_ptr)) {
		flush(e, total, 0, true);
		return;
	}
	peer_from_sockaddr(e, (__u64)m.msg_name);
	emit_bytes(e, (__u64)m.msg_iov, (__u32)m.msg_iovlen, 0, total);
}

/* The socket's entry in l7_socks, made on first sight. */
static __always_inline struct l7_sock *sock_state(__u64 sk)
{
	struct l7_sock *st = bpf_map_lookup_elem(&l7_socks, &sk), fresh = {};

	if (st)
		return st;
	fresh.gen = (__u16)bpf_get_prandom_u32();
	bpf_map_update_elem(&l7_socks, &sk, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&l7_socks, &sk);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(l7_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task;
	struct l7_call *cp, c;
	struct l7_scratch *sc;
	struct l7_sock *st;
	struct l7_event *e;
	__u32 zero = 0;

	/* Every syscall of the machine comes here: the ones sys_enter never
	 * stashes leave after one compare, before the task-storage lookup
	 * (BPF time per wrk request -4 %, bench/results/l7.md). */
	if (io_dir((long)regs->orig_ax) == DIR_NONE)
		return 0;
	task = bpf_get_current_task_btf();
	cp = bpf_task_storage_get(&l7_calls, task, 0, 0);
	if (!cp || !cp->kind)
		return 0;
	c = *cp;
	cp->kind = 0;
	/* A stash left by a call whose exit we did not see (a thread that
	 * exec'd): not this call's. */
	if (c.nr != (__u32)regs->orig_ax)
		return 0;
	if (ret <= 0)
		return 0;
	st = sock_state(c.sk);
	if (!st)
		return 0;
	if (st->ignore) {
		count(L7_CNT_IGNORED);
		return 0;
	}
	sc = bpf_map_lookup_elem(&l7_scratch, &zero);
	if (!sc)
		return 0;
	e = &sc->e;
	event_header(e, &c, bpf_ktime_get_ns());
	e->sk_gen = st->gen;
	e->seq = c.dir == L7_DIR_OUT ? st->seq[1] : st->seq[0];

	switch (c.kind) {
	case CALL_BUF:
		peer_from_sockaddr(e, c.addr);
		emit_bytes(e, 0, 0, c.ptr, (__u64)ret);
		break;
	case CALL_FILE:
		flush(e, (__u64)ret, 0, true);
		break;
	case CALL_IOV:
		emit_bytes(e, c.ptr, c.cnt, 0, (__u64)ret);
		break;
	case CALL_MSG:
		emit_msg(e, c.ptr, (__u64)ret);
		break;
	case CALL_MMSG: {
		/* ret is the number of messages; each has its own length. */
		struct mmsghdr mm;
		for (__u32 i = 0; i < L7_MAX_MMSG && i < (__u32)ret; i++) {
			__u64 p = c.ptr + i * sizeof(mm);
			if (bpf_probe_read_user(&mm, sizeof(mm), (void *)p))
				break;
			e->flags = 0;
			if (mm.msg_len)
				emit_msg(e, p, mm.msg_len);
		}
		break;
	}
	}
	if (c.dir == L7_DIR_OUT)
		st->seq[1] = e->seq;
	else
		st->seq[0] = e->seq;
	return 0;
}

/* A TCP socket we reported on reached CLOSE: user space may end what was
 * still open on it (a response delimited by the close) and forget it. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(l7_sock_state, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	__u64 key = (__u64)sk;
	struct l7_scratch *sc;
	struct l7_sock *st;
	struct l7_event *e;
	struct l7_call c = {};
	__u32 zero = 0;
	__u16 gen;
	bool ignored;

	if (newstate != TCP_CLOSE || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	st = bpf_map_lookup_elem(&l7_socks, &key);
	if (!st)
		return 0;
	gen = st->gen;
	ignored = st->ignore;
	bpf_map_delete_elem(&l7_socks, &key);
	if (ignored)
		return 0; /* user space gave it up already */
	sc = bpf_map_lookup_elem(&l7_scratch, &zero);
	if (!sc)
		return 0;
	e = &sc->e;
	c.sk = key;
	c.dir = L7_DIR_CLOSE;
	c.enter_ns = bpf_ktime_get_ns();
	event_header(e, &c, c.enter_ns);
	e->sk_gen = gen;
	e->len = 0;
	e->cap = 0;
	e->seq = 0;
	if (bpf_ringbuf_output(&l7_events, e, L7_EVENT_HDR, wakeup_flag()))
		count(L7_CNT_RINGBUF_FULL);
	else
		count(L7_CNT_EVENTS);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
