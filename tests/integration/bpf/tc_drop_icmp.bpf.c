// SPDX-License-Identifier: GPL-2.0
/* Test fixture for flow_udp_drop.sh: a tc direct-action classifier that
 * drops IPv4 ICMP. This kernel has no act_gact (tc's "action drop"), so the
 * drop a pod's packets suffer comes from this program; the kernel frees
 * them with SKB_DROP_REASON_TC_EGRESS, which the flow sensor must report. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int drop_icmp(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	return ip->protocol == IPPROTO_ICMP ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
