/* `sonde lab delayer`: the lab's delay injector. This kernel has no netem,
 * so an iptables NFQUEUE rule hands every packet leaving a node's uplink to
 * this process, which holds it for a fixed delay and then accepts it.
 *
 * Precision comes from holding each packet to its own deadline (arrival +
 * delay) with an absolute CLOCK_MONOTONIC timerfd and a 1 ns timer slack,
 * instead of polling: FACTS.md measured +0.97 ms for a 1 ms poll against
 * +0.2 ms for deadline holding at 20 ms. With one delay for every packet,
 * arrival order is deadline order, so the hold queue is a FIFO (holdq.h) and
 * packets leave in the order they came.
 *
 * On this VM an idle vCPU wakes from a timer about 95 us late (p99 ~180 us,
 * with rare multi-ms spikes from the host), so the timer is armed --spin
 * early and the last stretch is busy-polled (epoll_wait with timeout 0, which
 * also keeps reading arrivals). Dense traffic would keep us inside that window
 * all the time and burn a core the overlay needs, so spinning has a budget:
 * SPIN_BUDGET_PCT of each SPIN_WINDOW_NS; past it, plain timer wakeups.
 *
 * Verdicts are NFQNL_MSG_VERDICT_BATCH messages: "accept every queued packet
 * with an id up to N". The kernel numbers packets in queue order and we see
 * them in that order, so the packets due at one instant are exactly the ids
 * up to the newest due one: one message per timer expiry, whatever the burst.
 * It also covers packets whose message we never saw (see delayer_receive). */
#include "lab/delayer.h"
#include "lab/hist.h"
#include "lab/holdq.h"
#include "lab/lab.h"
#include "lib/log.h"
#include "lib/opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC 1000000000ULL

/* The kernel's queue limit, in packets. At 11 Gbit/s (the overlay's iperf3
 * figure) a 20 ms delay holds about 19000 full-size packets, or a few hundred
 * GSO super-frames: 100000 leaves room for longer delays before the kernel
 * starts dropping (counted as queue_dropped in the stats). */
#define DELAYER_QUEUE_MAXLEN 100000
/* Receive buffer for packet messages we have not read yet (SO_RCVBUFFORCE
 * ignores net.core.rmem_max; the kernel doubles the value). A packet whose
 * message does not fit is dropped by the kernel and we get ENOBUFS. */
#ifndef DELAYER_RCVBUF
#define DELAYER_RCVBUF (16 << 20)
#endif
/* Bytes of each packet copied to us: none are needed, but the kernel only
 * reports a packet's length (NFQA_CAP_LEN) in copy-packet mode, so copy the
 * smallest useful range instead of copy-meta. */
#define DELAYER_COPY_RANGE 64
#define RX_BATCH 64
#define RX_SLOT 1024
#define RX_BUDGET 16 /* recvmmsg calls per wakeup before verdicts run again */
/* When a verdict could not be sent, try again this soon. */
#define RETRY_NS 100000ULL
#define SPIN_WINDOW_NS 100000000ULL
#define SPIN_BUDGET_PCT 10

enum { EV_NL = 1, EV_TIMER, EV_SIGNAL };

struct delayer {
	struct mnl_socket *nl;
	int fd, tfd, sfd, epfd;
	unsigned int portid;
	unsigned int seq;
	uint16_t queue;
	uint64_t delay_ns;
	const char *stats_path;

	struct holdq q;
	uint64_t rx_now;    /* arrival time stamped on the current batch */
	uint32_t last_seen; /* newest packet id received */
	bool seen_any;
	/* The absolute time the timerfd is armed for, 0 when disarmed. */
	uint64_t timer_at;
	/* Wake this long before a deadline, then poll up to it. */
	uint64_t spin_ns;
	/* The head is due within spin_ns: poll, do not sleep. */
	bool spinning;
	uint64_t win_start, win_spin, spin_total;
	/* A verdict failed: released packets are still queued. */
	bool retry;
	uint32_t retry_id;

	uint64_t start_ns;
	uint64_t packets, bytes, gso_packets, released_at_exit;
	uint64_t enobufs, truncated, nomem, verdict_errors, send_errors;
	/* Added delay = verdict time - arrival; kept as lateness past the
	 * nominal delay so the histogram's relative precision applies to the
	 * error, not to the 20 ms. */
	struct hist late;
	char *rxbuf;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- netlink */

/* Sends a config message and waits for its ack. Packet messages arriving
 * meanwhile (a rule may already feed the queue) are held like any other. */
static int packet_cb(const struct nlmsghdr *nlh, void *data);

static int nfq_config(struct delayer *d, struct nlmsghdr *nlh)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	unsigned int seq = ++d->seq;

	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	if (mnl_socket_sendto(d->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(d->nl, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		d->rx_now = mono_ns();
		int rc = mnl_cb_run(buf, (size_t)n, seq, d->portid, packet_cb,
				    d);
		if (rc == MNL_CB_ERROR)
			return errno ? -errno : -EIO;
		if (rc == MNL_CB_STOP)
			return 0;
	}
}

static int nfq_bind(struct delayer *d)
{
	char buf[MNL_SOCKET_BUFFER_SIZE] __attribute__((aligned(4)));
	struct nlmsghdr *nlh;
	int err, rcvbuf = DELAYER_RCVBUF;

	d->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!d->nl)
		return -errno;
	if (mnl_socket_bind(d->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		return -errno;
	d->portid = mnl_socket_get_portid(d->nl);
	d->fd = mnl_socket_get_fd(d->nl);
	if (setsockopt(d->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf,
		       sizeof(rcvbuf)) < 0)
		log_warn("delayer: SO_RCVBUFFORCE: %s (bursts may hit ENOBUFS)",
			 strerror(errno));

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, d->queue);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	err = nfq_config(d, nlh);
	if (err) {
		/* The kernel answers EPERM both to a queue another socket
		 * owns and to a caller without CAP_NET_ADMIN. */
		if (err == -EPERM || err == -EBUSY)
			log_err("delayer: cannot bind NFQUEUE %u: another "
				"process holds it in this network namespace%s",
				d->queue,
				err == -EPERM ? ", or we lack CAP_NET_ADMIN" :
						"");
		return err;
	}

	/* NFQA_CFG_F_GSO: hand us GSO super-frames whole instead of having
	 * the kernel segment them before queueing. We never look at or change
	 * the payload, so a super-frame is held and released as one unit:
	 * its segments would have left back to back anyway. This keeps the
	 * delay from changing what downstream sees (without the flag, the
	 * receiver's tc programs would get ~1400-byte segments instead of the
	 * super-frames they get without a delay: FACTS.md), saves the kernel's
	 * segmentation and checksum work, and cuts queue entries, netlink
	 * messages and the ENOBUFS risk by up to 45x at full TCP load.
	 * FAIL_OPEN stays off while running: a packet that finds the queue
	 * full is dropped (queue_dropped), like a tail drop at a bottleneck,
	 * rather than sent at once, which would reorder it ahead of held
	 * packets and deliver it undelayed. */
	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, d->queue);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, DELAYER_COPY_RANGE);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, DELAYER_QUEUE_MAXLEN);
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK,
			 htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
	err = nfq_config(d, nlh);
	if (err) {
		log_err("delayer: configuring NFQUEUE %u: %s", d->queue,
			strerror(-err));
		return err;
	}

	int fl = fcntl(d->fd, F_GETFL);
	if (fl < 0 || fcntl(d->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int send_verdict(struct delayer *d, uint32_t max_id)
{
	char buf[256] __attribute__((aligned(4)));
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT_BATCH,
					     d->queue);

	nfq_nlmsg_verdict_put(nlh, (int)max_id, NF_ACCEPT);
	if (mnl_socket_sendto(d->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	return 0;
}

/* One queued packet: note its arrival and deadline. */
static int packet_cb(const struct nlmsghdr *nlh, void *data)
{
	struct delayer *d = data;
	struct nlattr *attr[NFQA_MAX + 1];
	struct holdq_entry e;

	if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
		return MNL_CB_OK;
	memset(attr, 0, sizeof(attr));
	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return MNL_CB_OK;

	const struct nfqnl_msg_packet_hdr *ph =
		mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);

	e.id = ntohl(ph->packet_id);
	e.arrival_ns = d->rx_now;
	e.deadline_ns = d->rx_now + d->delay_ns;
	if (attr[NFQA_CAP_LEN])
		e.len = ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN]));
	else if (attr[NFQA_PAYLOAD])
		e.len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
	else
		e.len = 0;
	if (attr[NFQA_SKB_INFO] &&
	    (ntohl(mnl_attr_get_u32(attr[NFQA_SKB_INFO])) & NFQA_SKB_GSO))
		d->gso_packets++;
	d->last_seen = e.id;
	d->seen_any = true;
	/* Without memory to hold it, the packet still leaves in order: the
	 * batch verdict for the next packet due after it covers its id. */
	if (holdq_push(&d->q, &e) && d->nomem++ == 0)
		log_err("delayer: out of memory holding packets");
	return MNL_CB_OK;
}

static void parse_datagram(struct delayer *d, const char *buf, size_t len)
{
	const struct nlmsghdr *nlh = (const void *)buf;
	int rem = (int)len;

	for (; mnl_nlmsg_ok(nlh, rem); nlh = mnl_nlmsg_next(nlh, &rem)) {
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
			/* No acks are asked for: this is a failed verdict
			 * (ENOENT: its packets were flushed, e.g. the device
			 * went down). */
			if (e->error && d->verdict_errors++ < 5)
				log_warn("delayer: verdict failed: %s",
					 strerror(-e->error));
			continue;
		}
		packet_cb(nlh, d);
	}
}

/* ---------------------------------------------------------------- holding */

static bool spin_allowed(struct delayer *d, uint64_t now)
{
	if (!d->spin_ns)
		return false;
	if (now - d->win_start >= SPIN_WINDOW_NS) {
		d->win_start = now;
		d->win_spin = 0;
	}
	return d->win_spin < SPIN_WINDOW_NS * SPIN_BUDGET_PCT / 100;
}

/* Arms the timer for the head's deadline (or spin_ns before it), or sets
 * d->spinning when we are already inside the spin window. */
static void arm_timer(struct delayer *d, uint64_t now)
{
	const struct holdq_entry *head = holdq_peek(&d->q);
	uint64_t want = head ? head->deadline_ns : 0;

	d->spinning = false;
	if (want && spin_allowed(d, now)) {
		want = want > d->spin_ns ? want - d->spin_ns : 1;
		if (want <= now) {
			d->spinning = true;
			want = 0;
		}
	}
	if (d->retry && (!want || want > now + RETRY_NS))
		want = now + RETRY_NS;
	if (want == d->timer_at)
		return;

	struct itimerspec its = { 0 };
	its.it_value.tv_sec = (time_t)(want / NSEC_PER_SEC);
	its.it_value.tv_nsec = (long)(want % NSEC_PER_SEC);
	/* An all-zero it_value disarms; a deadline already past fires at
	 * once. */
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
		log_err("delayer: timerfd_settime: %s", strerror(errno));
		return;
	}
	d->timer_at = want;
}

/* Accepts every held packet whose deadline has come, in one batch verdict. */
static void release_due(struct delayer *d)
{
	uint64_t now = mono_ns();
	const struct holdq_entry *head = holdq_peek(&d->q);
	struct holdq_entry done[256];
	size_t n = 0;

	if (d->retry || (head && head->deadline_ns <= now)) {
		uint32_t max_id = d->retry_id;
		bool any = d->retry;

		/* The verdict time is stamped just before the verdict goes
		 * out: the kernel reinjects the packets inside sendmsg(),
		 * which can also run the peer's receive softirq, tens of us
		 * that are not delay we add. Chunks keep the stamp of a long
		 * burst's tail honest. */
		for (;;) {
			n = 0;
			while (n < sizeof(done) / sizeof(done[0]) &&
			       holdq_pop_due(&d->q, now, &done[n])) {
				max_id = done[n].id;
				any = true;
				n++;
			}
			if (!any)
				break;
			uint64_t t = mono_ns();
			int err = send_verdict(d, max_id);
			if (err) {
				if (d->send_errors++ < 5)
					log_warn("delayer: sending verdict: %s",
						 strerror(-err));
				d->retry = true;
				d->retry_id = max_id;
			} else {
				d->retry = false;
			}
			for (size_t i = 0; i < n; i++) {
				uint64_t added = t - done[i].arrival_ns;
				d->packets++;
				d->bytes += done[i].len;
				hist_add(&d->late, added > d->delay_ns ?
							   added - d->delay_ns :
							   0);
			}
			if (n < sizeof(done) / sizeof(done[0]) || err)
				break;
			any = false;
		}
	}
	arm_timer(d, now);
}

static int receive(struct delayer *d)
{
	struct mmsghdr msgs[RX_BATCH];
	struct iovec iov[RX_BATCH];

	for (int round = 0; round < RX_BUDGET; round++) {
		for (int i = 0; i < RX_BATCH; i++) {
			iov[i].iov_base = d->rxbuf + (size_t)i * RX_SLOT;
			iov[i].iov_len = RX_SLOT;
			memset(&msgs[i], 0, sizeof(msgs[i]));
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int n = recvmmsg(d->fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* Our receive buffer overflowed: the kernel
				 * dropped the packets whose messages did not
				 * fit (user_dropped). Nothing is left
				 * dangling: a dropped packet is never
				 * queued. */
				if (d->enobufs++ < 5)
					log_warn("delayer: ENOBUFS: packets "
						 "dropped, receive buffer "
						 "full");
				continue;
			}
			return -errno;
		}
		d->rx_now = mono_ns();
		for (int i = 0; i < n; i++) {
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
				d->truncated++;
			parse_datagram(d, iov[i].iov_base, msgs[i].msg_len);
		}
		/* Verdicts due meanwhile go first, even during a flood. */
		release_due(d);
		if (n < RX_BATCH)
			return 0;
	}
	return 0;
}

/* Graceful exit: release everything, never black-hole traffic. Closing the
 * socket would make the kernel drop whatever is still queued, so first
 * accept every queued packet, then switch the queue to fail-open with room
 * for none, so that packets arriving from now on pass at once instead of
 * being queued, then accept the few that slipped in between. */
static void release_all(struct delayer *d)
{
	char buf[MNL_SOCKET_BUFFER_SIZE] __attribute__((aligned(4)));
	struct holdq_entry e;
	uint32_t all = nfq_all_ids(d->last_seen);
	struct nlmsghdr *nlh;

	while (holdq_pop(&d->q, &e))
		d->released_at_exit++;
	send_verdict(d, all);
	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, d->queue);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, 0);
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
	if (mnl_socket_sendto(d->nl, nlh, nlh->nlmsg_len) < 0)
		log_warn("delayer: switching the queue to fail-open: %s",
			 strerror(errno));
	send_verdict(d, all);
}

/* ---------------------------------------------------------------- stats */

struct kqueue_stats {
	bool found;
	unsigned long total, dropped, user_dropped, id_seq;
};

/* The kernel's own counters for our queue (in this network namespace). */
static struct kqueue_stats read_kernel_stats(uint16_t queue)
{
	struct kqueue_stats ks = { 0 };
	FILE *f = fopen("/proc/net/netfilter/nfnetlink_queue", "re");
	char line[256];

	if (!f)
		return ks;
	while (fgets(line, sizeof(line), f)) {
		unsigned int num, portid, mode, range;
		unsigned long total, dropped, udropped, seq;

		if (sscanf(line, "%u %u %lu %u %u %lu %lu %lu", &num, &portid,
			   &total, &mode, &range, &dropped, &udropped,
			   &seq) == 8 &&
		    num == queue) {
			ks = (struct kqueue_stats){ true, total, dropped,
						    udropped, seq };
			break;
		}
	}
	fclose(f);
	return ks;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double us(double ns)
{
	return ns / 1000.0;
}

static void set_int(json_t *o, const char *key, uint64_t v)
{
	json_object_set_new(o, key, json_integer((json_int_t)v));
}

static void set_real(json_t *o, const char *key, double v)
{
	json_object_set_new(o, key, json_real(v));
}

static json_t *stats_json(const struct delayer *d)
{
	json_t *o = json_object();
	json_t *a = json_object();
	struct kqueue_stats ks = read_kernel_stats(d->queue);
	const struct hist *h = &d->late;
	double dl = (double)d->delay_ns;

	set_int(o, "queue", d->queue);
	set_real(o, "delay_us", us(dl));
	set_real(o, "running_s", (double)(mono_ns() - d->start_ns) / 1e9);
	set_int(o, "packets", d->packets);
	set_int(o, "bytes", d->bytes);
	set_int(o, "gso_packets", d->gso_packets);
	set_int(o, "held", holdq_len(&d->q));
	set_int(o, "held_max", d->q.max_count);
	set_int(o, "released_at_exit", d->released_at_exit);
	set_int(o, "enobufs", d->enobufs);
	set_int(o, "truncated", d->truncated);
	set_int(o, "verdict_errors", d->verdict_errors + d->send_errors);
	set_real(o, "spin_s", (double)d->spin_total / 1e9);
	set_real(o, "cpu_s", cpu_seconds());
	if (ks.found) {
		json_t *k = json_object();
		set_int(k, "queue_total", ks.total);
		set_int(k, "queue_dropped", ks.dropped);
		set_int(k, "user_dropped", ks.user_dropped);
		set_int(k, "id_sequence", ks.id_seq);
		json_object_set_new(o, "kernel", k);
	}
	/* Verdict time - arrival time, per released packet. */
	if (h->count) {
		set_real(a, "min", us(dl + (double)h->min));
		set_real(a, "mean", us(dl + hist_mean(h)));
		set_real(a, "max", us(dl + (double)h->max));
		set_real(a, "stddev", us(hist_stddev(h)));
		set_real(a, "p50", us(dl + (double)hist_quantile(h, 0.5)));
		set_real(a, "p99", us(dl + (double)hist_quantile(h, 0.99)));
		set_real(a, "p999", us(dl + (double)hist_quantile(h, 0.999)));
	}
	json_object_set_new(o, "added_delay_us", a);
	return o;
}

/* Written to a temporary file and renamed: a reader never sees half. */
static void write_stats(const struct delayer *d)
{
	char tmp[4096];
	json_t *o;

	if (!d->stats_path)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->stats_path);
	o = stats_json(d);
	if (json_dump_file(o, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) ||
	    rename(tmp, d->stats_path))
		log_warn("delayer: cannot write %s: %s", d->stats_path,
			 strerror(errno));
	json_decref(o);
}

static void log_summary(const struct delayer *d)
{
	const struct hist *h = &d->late;
	double dl = (double)d->delay_ns;

	log_info("delayer: queue %u: %llu packets (%llu GSO), %llu bytes, "
		 "held max %zu, enobufs %llu, released at exit %llu",
		 d->queue, (unsigned long long)d->packets,
		 (unsigned long long)d->gso_packets,
		 (unsigned long long)d->bytes, d->q.max_count,
		 (unsigned long long)d->enobufs,
		 (unsigned long long)d->released_at_exit);
	if (h->count)
		log_info("delayer: added delay us: min %.1f mean %.1f max %.1f "
			 "(sd %.1f, p99 %.1f) for %.1f requested",
			 us(dl + (double)h->min), us(dl + hist_mean(h)),
			 us(dl + (double)h->max), us(hist_stddev(h)),
			 us(dl + (double)hist_quantile(h, 0.99)), us(dl));
}

/* ---------------------------------------------------------------- main */

static int write_ready(const char *path)
{
	char tmp[4096], pid[32];
	int fd, len;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (write(fd, pid, (size_t)len) != len) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return rename(tmp, path) ? -errno : 0;
}

static int setup_fds(struct delayer *d, sigset_t *mask)
{
	struct epoll_event ev = { .events = EPOLLIN };

	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	d->sfd = signalfd(-1, mask, SFD_NONBLOCK | SFD_CLOEXEC);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->tfd < 0 || d->sfd < 0 || d->epfd < 0)
		return -errno;
	ev.data.u32 = EV_NL;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->fd, &ev))
		return -errno;
	ev.data.u32 = EV_TIMER;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->tfd, &ev))
		return -errno;
	ev.data.u32 = EV_SIGNAL;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->sfd, &ev))
		return -errno;
	return 0;
}

/* Returns 1 to stop. */
static int on_signal(struct delayer *d)
{
	struct signalfd_siginfo si;

	while (read(d->sfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGUSR1) {
			write_stats(d);
			log_summary(d);
		} else {
			log_info("delayer: %s: releasing %zu held packets",
				 strsignal((int)si.ssi_signo),
				 holdq_len(&d->q));
			return 1;
		}
	}
	return 0;
}

static int run(struct delayer *d)
{
	for (;;) {
		struct epoll_event ev[4];
		bool spin = d->spinning;
		uint64_t t0 = spin ? mono_ns() : 0;
		int n = epoll_wait(d->epfd, ev, 4, spin ? 0 : -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			uint64_t ticks;
			int err;

			switch (ev[i].data.u32) {
			case EV_NL:
				err = receive(d);
				if (err) {
					log_err("delayer: receiving: %s",
						strerror(-err));
					return err;
				}
				break;
			case EV_TIMER:
				if (read(d->tfd, &ticks, sizeof(ticks)) > 0)
					d->timer_at = 0;
				break;
			case EV_SIGNAL:
				if (on_signal(d))
					return 0;
				break;
			}
		}
		if (spin) {
			uint64_t dt = mono_ns() - t0;
			d->win_spin += dt;
			d->spin_total += dt;
		}
		release_due(d);
	}
}

static long opt_queue = -1;
static uint64_t opt_delay = UINT64_MAX;
static const char *opt_ready;
static const char *opt_stats;
static uint64_t opt_spin = 200000;
static long opt_rt = 1;

static const struct opt delayer_opts[] = {
	{ "queue", 'q', OPT_INT, &opt_queue, "NUM",
	  "NFQUEUE number to bind, 0..65535 (required)" },
	{ "delay", 'd', OPT_DURATION, &opt_delay, "DUR",
	  "hold every packet this long, e.g. 20ms (required)" },
	{ "ready-file", 0, OPT_STRING, &opt_ready, "FILE",
	  "create FILE (holding the pid) once the queue is bound" },
	{ "stats", 0, OPT_STRING, &opt_stats, "FILE",
	  "write JSON statistics to FILE on SIGUSR1 and at exit" },
	{ "spin", 0, OPT_DURATION, &opt_spin, "DUR",
	  "wake this early and busy-poll to each deadline; 0 = never "
	  "(default 200us, at most 10% CPU)" },
	{ "rt-priority", 0, OPT_INT, &opt_rt, "N",
	  "SCHED_FIFO priority, 0 = normal scheduling (default 1)" },
	OPT_END,
};

static const struct cmd_spec delayer_spec = {
	"sonde lab delayer", "--queue NUM --delay DUR [OPTIONS]",
	"Hold every packet of an NFQUEUE for a fixed delay, then accept it "
	"(the lab's netem).",
	delayer_opts,
	"Feed it with e.g.\n"
	"  iptables-legacy -t mangle -A POSTROUTING -o eth0 -j NFQUEUE "
	"--queue-num NUM --queue-bypass\n"
	"after the ready file exists. SIGUSR1 writes the statistics; "
	"SIGTERM or SIGINT\nreleases every held packet, writes them and "
	"exits 0. The added delay in the\nstatistics is verdict time minus "
	"arrival time, per packet.",
};

int lab_delayer_main(int argc, char **argv)
{
	struct delayer d = { .fd = -1, .tfd = -1, .sfd = -1, .epfd = -1 };
	sigset_t mask;
	int npos = 0, err;

	err = opts_parse(&delayer_spec, argc, argv, &npos);
	if (err)
		return err > 0 ? 0 : 2;
	if (npos || opt_queue < 0 || opt_queue > 65535 ||
	    opt_delay == UINT64_MAX) {
		fprintf(stderr, "Usage: %s %s\n", delayer_spec.path,
			delayer_spec.synopsis);
		return 2;
	}
	if (opt_rt < 0 || opt_rt > 99) {
		log_err("delayer: --rt-priority must be 0..99");
		return 2;
	}
	if (opt_delay > 60 * NSEC_PER_SEC) {
		log_err("delayer: --delay must be at most 60s");
		return 2;
	}
	d.queue = (uint16_t)opt_queue;
	d.delay_ns = opt_delay;
	d.stats_path = opt_stats;
	d.spin_ns = opt_spin < opt_delay ? opt_spin : opt_delay;
	hist_init(&d.late);

	/* Under bulk load the delayer competes with the traffic it delays
	 * (2 vCPUs): SCHED_FIFO cut p99 lateness at full TCP load from 2 ms
	 * to 0.3 ms. It is safe: every wakeup does bounded work, spinning has
	 * its budget, and the kernel's RT throttling backs both. A cgroup
	 * without RT runtime refuses it; then run at normal priority. */
	if (opt_rt > 0) {
		struct sched_param sp = { .sched_priority = (int)opt_rt };
		if (sched_setscheduler(0, SCHED_FIFO, &sp))
			log_info("delayer: SCHED_FIFO %ld refused (%s): normal "
				 "priority",
				 opt_rt, strerror(errno));
	}
	/* The default 50 us timer slack would be added to every deadline. */
	if (prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL))
		log_warn("delayer: PR_SET_TIMERSLACK: %s", strerror(errno));
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	d.rxbuf = malloc((size_t)RX_BATCH * RX_SLOT);
	err = d.rxbuf ? holdq_init(&d.q, 4096) : -ENOMEM;
	if (err)
		goto out;
	d.start_ns = mono_ns();
	err = nfq_bind(&d);
	if (err) {
		if (err != -EBUSY && err != -EPERM)
			log_err("delayer: binding NFQUEUE %u: %s", d.queue,
				strerror(-err));
		goto out;
	}
	err = setup_fds(&d, &mask);
	if (err) {
		log_err("delayer: %s", strerror(-err));
		goto out;
	}
	if (opt_ready) {
		err = write_ready(opt_ready);
		if (err) {
			log_err("delayer: cannot create %s: %s", opt_ready,
				strerror(-err));
			goto out;
		}
	}
	log_info("delayer: NFQUEUE %u bound, holding packets %.3f ms "
		 "(GSO frames whole, queue limit %d)",
		 d.queue, (double)d.delay_ns / 1e6, DELAYER_QUEUE_MAXLEN);

	release_due(&d); /* packets that came during the config exchange */
	err = run(&d);
	release_all(&d);
	log_summary(&d);
	write_stats(&d);
	if (opt_ready)
		unlink(opt_ready);
out:
	if (d.epfd >= 0)
		close(d.epfd);
	if (d.sfd >= 0)
		close(d.sfd);
	if (d.tfd >= 0)
		close(d.tfd);
	if (d.nl)
		mnl_socket_close(d.nl);
	holdq_free(&d.q);
	free(d.rxbuf);
	return err ? 1 : 0;
}
