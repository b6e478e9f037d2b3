/* Cluster IP -> backend pod through conntrack (libnetfilter_conntrack: the
 * packaged netlink client; docs/libraries.md). See nat.h for why. */
#include "agent/nat.h"
#include "lib/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Direct-mapped: a collision only costs one more netlink round trip. The
 * cache serves the many records of one keep-alive connection (an http
 * record per request); it is short-lived because a closed client socket's
 * tuple can be reused at once by a new connection that kube-proxy may send
 * to another pod (the client, when it is the passive closer, keeps no
 * TIME_WAIT to hold the tuple). */
#define NAT_CACHE 1024
#define NAT_TTL_NS (1000000000ull)

struct nat_key {
	uint8_t proto, family;
	uint16_t sport, dport;
	uint8_t saddr[16], daddr[16];
};

struct nat_entry {
	struct nat_key key;
	uint64_t at_ns; /* 0: empty */
	uint8_t baddr[16];
	uint16_t bport;
};

struct nat {
	struct nfct_handle *h;
	struct nat_entry cache[NAT_CACHE];
	struct nat_stats stats;
};

struct answer {
	int family;
	bool found;
	uint8_t addr[16];
	uint16_t port;
};

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
	return n;
}

void nat_close(struct nat *n)
{
	if (!n)
		return;
	nfct_close(n->h);
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

static size_t slot_of(const struct nat_key *k)
{
	/* FNV-1a over the key's bytes. */
	const uint8_t *p = (const uint8_t *)k;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 16777619u;
	return h % NAT_CACHE;
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
	struct nat_entry *e = &n->cache[slot_of(&key)];
	if (e->at_ns && now - e->at_ns < NAT_TTL_NS &&
	    !memcmp(&e->key, &key, sizeof(key))) {
		n->stats.cached++;
		memcpy(baddr, e->baddr, alen);
		*bport = e->bport;
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
	e->key = key;
	e->at_ns = now;
	memcpy(e->baddr, ans.addr, alen);
	e->bport = ans.port;
	memcpy(baddr, ans.addr, alen);
	*bport = ans.port;
	return 0;
}
