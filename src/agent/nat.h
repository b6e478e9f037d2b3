/* The pod behind a service's cluster IP, from the node's conntrack table.
 *
 * A client socket only knows the cluster IP it connected to; kube-proxy
 * (iptables or IPVS mode) DNATs the connection in the node's network
 * namespace and conntrack keeps the translation for the connection's life
 * (and after, for TIME_WAIT/UDP timeouts). Asking conntrack for the
 * original tuple gives the reply tuple, whose source is the backend pod:
 * exactly the pod that served this connection, not a guess from the
 * service's endpoints. */
#ifndef SONDE_AGENT_NAT_H
#define SONDE_AGENT_NAT_H

#include <stdint.h>

struct nat;

/* Opens a conntrack handle in the network namespace at netns_path (NULL:
 * the caller's). NULL with errno set when conntrack cannot be reached. */
struct nat *nat_open(const char *netns_path);
void nat_close(struct nat *n);

/* The destination a connection (proto IPPROTO_TCP or IPPROTO_UDP, family
 * AF_INET or AF_INET6, addresses in network order, ports in host order) was
 * translated to: 0 and *baddr (4 or 16 bytes) / *bport filled when conntrack
 * has the connection and its destination was rewritten; -ENOENT when not
 * found or not translated. Answers are cached (docs in nat.c). Not
 * thread-safe: one handle per thread. */
int nat_backend(struct nat *n, uint8_t proto, int family, const void *saddr,
		uint16_t sport, const void *daddr, uint16_t dport, void *baddr,
		uint16_t *bport);

/* Lookups asked, answered from the cache (filled by queries and by
 * conntrack's NEW events), found by a query, and failed (netlink errors);
 * translated connections learnt from events, and event-socket overflows
 * (events lost, each costing queries instead). */
struct nat_stats {
	uint64_t lookups, cached, found, errors, events, event_overruns;
};
void nat_stats(const struct nat *n, struct nat_stats *out);

#endif
