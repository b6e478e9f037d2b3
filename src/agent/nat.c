/* Cluster IP -> backend pod through conntrack (libnetfilter_conntrack: the
 * packaged netlink client; docs/libraries.md). See nat.h for why. */
#include "agent/nat.h"
#include "lib/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnfnetlink/libnfnetlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Direct-mapped: a collision only costs one more netlink round trip.
 *
 * Two sources fill it. conntrack's NEW events (every connection the node's
 * netns translates, read in batches when a lookup misses): a service called
 * with a new connection per request (Bookinfo's nginx, 3 per page) would
 * otherwise cost a netlink query and answer per connection. And the query
 * itself, for connections whose event we missed (opened before the agent,
 * or dropped when the event socket overflowed).
 *
 * An answer from a query lives a second: a closed client socket's tuple
 * can be reused at once by a new connection that kube-proxy may send to
 * another pod. One from an event lives longer, because a reused tuple is a
 * new connection and its own NEW event replaces the entry; only an event
 * lost to an overflow (counted) could leave a stale one for that time. */
#define NAT_CACHE 16384
#define NAT_TTL_NS (1000000000ull)
#define NAT_EVENT_TTL_NS (10000000000ull)
#define NAT_EVENT_RCVBUF (4u << 20)

struct nat_key {
	uint8_t proto, family;
	uint16_t sport, dport;
	uint8_t saddr[16], daddr[16];
};

struct nat_entry {
	struct nat_key key;
	uint64_t at_ns;	 /* 0: empty */
	uint64_t ttl_ns;
	uint8_t baddr[16];
	uint16_t bport;
};

struct nat {
	struct nfct_handle *h;
	struct nfct_handle *ev; /* NEW events, non-blocking; NULL: queries only */
	uint64_t drained_ns;	/* last drain of ev */
	struct nat_entry cache[NAT_CACHE];
	struct nat_stats stats;
};

struct answer {
	int family;
	bool found;
	uint8_t addr[16];
	uint16_t port;
};

static size_t slot_of(const struct nat_key *k)
{
	/* FNV-1a over the key's bytes. */
	const uint8_t *p = (const uint8_t *)k;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 16777619u;
	return h % NAT_CACHE;
}

static void put(struct nat *n, const struct nat_key *k, const uint8_t *baddr,
		uint16_t bport, uint64_t now, uint64_t ttl)
{
	struct nat_entry *e = &n->cache[slot_of(k)];

	e->key = *k;
	e->at_ns = now;
	e->ttl_ns = ttl;
	memcpy(e->baddr, baddr, sizeof(e->baddr));
	e->bport = bport;
}

/* One NEW event: keep it when the destination was rewritten. */
static int on_new(enum nf_conntrack_msg_type type, struct nf_conntrack *ct,
		  void *data)
{
	struct nat *n = data;
	struct nat_key k;
	uint8_t baddr[16] = { 0 };
	uint16_t bport;
	size_t alen;

	(void)type;
	memset(&k, 0, sizeof(k)); /* padding too: the key is hashed */
	k.family = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
	k.proto = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
	if ((k.family != AF_INET && k.family != AF_INET6) ||
	    (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP))
		return NFCT_CB_CONTINUE;
	if (k.family == AF_INET) {
		uint32_t s = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_SRC);
		uint32_t d = nfct_get_attr_u32(ct, ATTR_ORIG_IPV4_DST);
		uint32_t b = nfct_get_attr_u32(ct, ATTR_REPL_IPV4_SRC);
		memcpy(k.saddr, &s, 4);
		memcpy(k.daddr, &d, 4);
		memcpy(baddr, &b, 4);
		alen = 4;
	} else {
		const void *s = nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC);
		const void *d = nfct_get_attr(ct, ATTR_ORIG_IPV6_DST);
		const void *b = nfct_get_attr(ct, ATTR_REPL_IPV6_SRC);
		if (!s || !d || !b)
			return NFCT_CB_CONTINUE;
		memcpy(k.saddr, s, 16);
		memcpy(k.daddr, d, 16);
		memcpy(baddr, b, 16);
		alen = 16;
	}
	k.sport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
	k.dport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
	bport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
	if (!memcmp(baddr, k.daddr, alen) && bport == k.dport)
		return NFCT_CB_CONTINUE; /* not translated */
	put(n, &k, baddr, bport, (uint64_t)mono_ns(), NAT_EVENT_TTL_NS);
	n->stats.events++;
	return NFCT_CB_CONTINUE;
}

/* Reads every NEW event waiting. An overflowed socket (ENOBUFS) lost some:
 * counted, and the queries cover them. */
static void drain(struct nat *n, uint64_t now)
{
	n->drained_ns = now;
	for (int i = 0; n->ev && i < 1024; i++) {
		if (nfct_catch(n->ev) >= 0)
			continue;
		if (errno == ENOBUFS) {
			n->stats.event_overruns++;
			continue;
		}
		break; /* EAGAIN: drained */
	}
}

static bool cached(struct nat *n, const struct nat_key *k, uint64_t now,
		   void *baddr, uint16_t *bport, size_t alen)
{
	struct nat_entry *e = &n->cache[slot_of(k)];

	if (!e->at_ns || now - e->at_ns >= e->ttl_ns ||
	    memcmp(&e->key, k, sizeof(*k)))
		return false;
	memcpy(baddr, e->baddr, alen);
	*bport = e->bport;
	return true;
}

struct nat *nat_open(const char *netns_path)
{
	struct nat *n = calloc(1, sizeof(*n));
	int self = -1, target = -1, err = 0;

	if (!n)
		return NULL;
	/* A netlink socket belongs to the namespace it was created in: enter
	 * the node's namespace on this thread only for the socket() call. */
	if (netns_path) {
		self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		target = open(netns_path, O_RDONLY | O_CLOEXEC);
		if (self < 0 || target < 0 || setns(target, CLONE_NEWNET)) {
			err = errno;
			goto out;
		}
	}
	n->h = nfct_open(CONNTRACK, 0);
	if (!n->h)
		err = errno ? errno : EIO;
	/* Events are an optimisation: without them (no permission for the
	 * multicast group, say) every lookup is a query, as before. */
	if (n->h)
		n->ev = nfct_open(CONNTRACK, NF_NETLINK_CONNTRACK_NEW);
	if (netns_path && setns(self, CLONE_NEWNET))
		abort(); /* the thread would stay in the node's namespace */
out:
	if (self >= 0)
		close(self);
	if (target >= 0)
		close(target);
	if (!n->h) {
		free(n);
		errno = err;
		return NULL;
	}
	if (n->ev && (fcntl(nfct_fd(n->ev), F_SETFL, O_NONBLOCK) ||
		      nfct_callback_register(n->ev, NFCT_T_NEW, on_new, n))) {
		nfct_close(n->ev);
		n->ev = NULL;
	}
	if (n->ev)
		nfnl_rcvbufsiz(nfct_nfnlh(n->ev), NAT_EVENT_RCVBUF);
	return n;
}

void nat_close(struct nat *n)
{
	if (!n)
		return;
	nfct_close(n->h);
	if (n->ev)
		nfct_close(n->ev);
	free(n);
}

void nat_stats(const struct nat *n, struct nat_stats *out)
{
	*out = n->stats;
}

static int on_ct(enum nf_conntrack_msg_type type, struct nf_conntrack *ct,
		 void *data)
{
	struct answer *a = data;

	(void)type;
	if (a->family == AF_INET) {
		uint32_t v = nfct_get_attr_u32(ct, ATTR_REPL_IPV4_SRC);
		memcpy(a->addr, &v, 4);
	} else {
		const void *p = nfct_get_attr(ct, ATTR_REPL_IPV6_SRC);
		if (!p)
			return NFCT_CB_CONTINUE;
		memcpy(a->addr, p, 16);
	}
	a->port = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
	a->found = true;
	/* CONTINUE, not STOP: the kernel's ACK follows the entry, and a
	 * stopped reader would leave it in the socket, where the next query
	 * would take it for its own (empty) answer. */
	return NFCT_CB_CONTINUE;
}

int nat_backend(struct nat *n, uint8_t proto, int family, const void *saddr,
		uint16_t sport, const void *daddr, uint16_t dport, void *baddr,
		uint16_t *bport)
{
	size_t alen = family == AF_INET6 ? 16 : 4;
	struct nat_key key;
	struct answer ans = { .family = family };
	struct nf_conntrack *ct;
	uint64_t now = (uint64_t)mono_ns();
	int rc;

	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	memset(&key, 0, sizeof(key)); /* padding too: the key is hashed */
	key.proto = proto;
	key.family = (uint8_t)family;
	key.sport = sport;
	key.dport = dport;
	memcpy(key.saddr, saddr, alen);
	memcpy(key.daddr, daddr, alen);

	n->stats.lookups++;
	/* Also drained every 100 ms while lookups come, so that hits alone
	 * do not let the socket overflow. */
	if (now - n->drained_ns > 100000000ull)
		drain(n, now);
	if (cached(n, &key, now, baddr, bport, alen)) {
		n->stats.cached++;
		return 0;
	}
	/* A miss: the connection's NEW event may be waiting. */
	drain(n, now);
	if (cached(n, &key, now, baddr, bport, alen)) {
		n->stats.cached++;
		return 0;
	}

	ct = nfct_new();
	if (!ct) {
		n->stats.errors++;
		return -ENOMEM;
	}
	nfct_set_attr_u8(ct, ATTR_L3PROTO, (uint8_t)family);
	if (family == AF_INET) {
		uint32_t s, d;
		memcpy(&s, saddr, 4);
		memcpy(&d, daddr, 4);
		nfct_set_attr_u32(ct, ATTR_IPV4_SRC, s);
		nfct_set_attr_u32(ct, ATTR_IPV4_DST, d);
	} else {
		nfct_set_attr(ct, ATTR_IPV6_SRC, saddr);
		nfct_set_attr(ct, ATTR_IPV6_DST, daddr);
	}
	nfct_set_attr_u8(ct, ATTR_L4PROTO, proto);
	nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(sport));
	nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(dport));

	nfct_callback_register(n->h, NFCT_T_ALL, on_ct, &ans);
	rc = nfct_query(n->h, NFCT_Q_GET, ct);
	nfct_callback_unregister(n->h);
	nfct_destroy(ct);
	if (rc < 0) {
		if (errno != ENOENT)
			n->stats.errors++;
		return errno == ENOENT ? -ENOENT : -errno;
	}
	/* Not rewritten (no DNAT): the reply comes from where we sent. */
	if (!ans.found ||
	    (!memcmp(ans.addr, daddr, alen) && ans.port == dport))
		return -ENOENT;
	n->stats.found++;
	put(n, &key, ans.addr, ans.port, now, NAT_TTL_NS);
	memcpy(baddr, ans.addr, alen);
	*bport = ans.port;
	return 0;
}
