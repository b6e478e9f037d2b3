/* What a sensor family may use of the agent that runs it: the node, the
 * monitored pods, attribution of addresses to pods and services, and the
 * one place records leave through. */
#ifndef SONDE_AGENT_H
#define SONDE_AGENT_H

#include "agent/meta.h"
#include "agent/node.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent;

/* Settings common to every family, from `sonde agent`'s options. */
struct agent_config {
	const char *btf_path;	/* NULL: the running kernel's BTF */
	uint64_t interval_ns;	/* aggregation/flush period (--interval) */
	bool all_netns;		/* watch every netns, not only the targets' */
	bool no_redact;		/* l7: keep URIs' query strings (--no-redact) */
	const char *cgroup_root; /* this node's cgroup v2 root (its pods below) */
	const char *netns_path;	 /* this node's network namespace */
	uint32_t latency_sample; /* latency: stamp 1 segment in N (--latency-sample) */
	int64_t latency_test_skew_ns; /* test aid: pretend this node's clock is ahead */
};

const struct agent_config *agent_config(const struct agent *a);
const char *agent_node_name(const struct agent *a);
/* Add to a CLOCK_MONOTONIC (bpf_ktime_get_ns) time to get UTC ns. */
int64_t agent_mono_to_real(const struct agent *a);
const struct node_view *agent_view(const struct agent *a);
/* The node's cgroup v2 root: where cgroup programs (sock_ops, cgroup_skb)
 * attach so that they see this node's pods and nothing else. */
const char *agent_cgroup_root(const struct agent *a);
const struct meta *agent_meta(const struct agent *a);
/* The network namespaces (inode numbers) the sensors must watch: those of
 * the selected pods, plus the node's own when no pod selection is given.
 * Called from a family's retarget, it answers that family's set (under a
 * plan, --control, each family has its pods). */
const uint32_t *agent_target_netns(const struct agent *a, size_t *n);

/* An endpoint object {"ip","port", "pod","namespace","workload","service"
 * ...}. The local end (local_netns != NULL) is attributed by the netns that
 * owns the socket; a remote end by its address (pod IP or cluster IP). */
json_t *agent_endpoint(struct agent *a, int family, const void *addr,
		       uint16_t port, const uint32_t *local_netns);
/* When `remote` (an agent_endpoint) is a service's cluster IP: adds
 * "backend", the endpoint of the pod kube-proxy's DNAT sent this
 * connection to, from the node's conntrack (agent/nat.h). proto is
 * IPPROTO_TCP or IPPROTO_UDP; addresses in network order, ports in host
 * order; laddr/lport are the socket's own end. Nothing when conntrack does
 * not know the connection. */
void agent_backend(struct agent *a, json_t *remote, uint8_t proto,
		   int family, const void *laddr, uint16_t lport,
		   const void *raddr, uint16_t rport);
/* The same lookup, for callers that write endpoints as text: 0 and the
 * backend's address (4 or 16 bytes) and port, or -ENOENT. */
int agent_backend_addr(struct agent *a, uint8_t proto, int family,
		       const void *laddr, uint16_t lport, const void *raddr,
		       uint16_t rport, void *baddr, uint16_t *bport);
/* Starts a record with the fields every record has: kind, time (UTC ns),
 * node. */
json_t *agent_record(struct agent *a, const char *kind, uint64_t mono_ns);
/* Writes a record out and drops the reference. */
void agent_emit(struct agent *a, json_t *rec);
/* Writes a record already formatted as one line of JSON (no newline): for
 * families that format their own high-rate records (l7). */
void agent_emit_line(struct agent *a, const char *line);

/* For the control API (control.c). A family by name: 1 running, 0
 * unavailable (*why says why), -ENOENT not in this agent. */
int agent_family_state(const struct agent *a, const char *name,
		       const char **why);
/* The applied plan changed: rediscover and retarget now. */
void agent_plan_changed(struct agent *a);

#endif
