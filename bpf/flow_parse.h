/* Packet parsing for the flow sensor's cgroup_skb programs: where a UDP
 * datagram's addresses and payload length are. Kept apart from the programs
 * so that its cases (IPv4 options, fragments, IPv6, GSO) are visible and
 * covered by tests/unit/test_flow_bpf.c through BPF_PROG_TEST_RUN. */
#ifndef SONDE_FLOW_PARSE_H
#define SONDE_FLOW_PARSE_H

#define FLOW_IPPROTO_UDP 17
#define FLOW_IP_MF 0x2000
#define FLOW_IP_OFFMASK 0x1fff
#define FLOW_IP6_MAX_EXT 4

struct udp_dgrams {
	__u64 bytes; /* UDP payload bytes */
	__u64 count; /* datagrams */
};

/* cgroup_skb sees the packet from its IP header on, both ways. Fills the
 * tuple oriented from the socket's side (egress: local = source). Returns 1
 * for a UDP datagram (or a GSO batch of them), 0 for anything else or a
 * non-first fragment (no UDP header: its bytes are in the first fragment's
 * UDP length), -1 when the headers cannot be read (or IPv6 has more than
 * FLOW_IP6_MAX_EXT extension headers). */
static __always_inline int flow_parse_udp(struct __sk_buff *skb, bool egress,
					  struct flow_tuple *t,
					  struct udp_dgrams *d)
{
	__u8 *src = egress ? t->laddr : t->raddr;
	__u8 *dst = egress ? t->raddr : t->laddr;
	__u32 l4, len = skb->len;
	__u16 udp_len;
	__be16 ports[2];
	bool whole = true; /* not a first fragment */
	__u8 first;

	if (bpf_skb_load_bytes(skb, 0, &first, 1))
		return -1;
	if ((first >> 4) == 4) {
		struct iphdr ip;
		__u16 frag;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return -1;
		if (ip.protocol != FLOW_IPPROTO_UDP)
			return 0;
		frag = bpf_ntohs(ip.frag_off);
		if (frag & FLOW_IP_OFFMASK)
			return 0;
		whole = !(frag & FLOW_IP_MF);
		l4 = (first & 0xf) * 4;
		if (l4 < sizeof(ip))
			return -1;
		t->family = 2; /* AF_INET */
		__builtin_memcpy(src, &ip.saddr, 4);
		__builtin_memcpy(dst, &ip.daddr, 4);
	} else if ((first >> 4) == 6) {
		struct ipv6hdr ip6;
		__u8 next;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return -1;
		next = ip6.nexthdr;
		l4 = sizeof(ip6);
		/* Walk a few extension headers (hop-by-hop: BIG TCP's jumbo
		 * option; routing; destination options; fragment). */
#pragma unroll
		for (int i = 0; i < FLOW_IP6_MAX_EXT; i++) {
			__u8 ext[4];

			if (next != 0 && next != 43 && next != 44 && next != 60)
				break;
			if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext)))
				return -1;
			if (next == 44) {
				__u16 off = ((__u16)ext[2] << 8 | ext[3]) & 0xfff8;
				if (off)
					return 0; /* not the first fragment */
				whole = !(ext[3] & 1);
				l4 += 8;
			} else {
				l4 += 8 + (__u32)ext[1] * 8;
			}
			next = ext[0];
		}
		if (next == 0 || next == 43 || next == 44 || next == 60)
			return -1; /* more extension headers than we walk */
		if (next != FLOW_IPPROTO_UDP)
			return 0;
		t->family = 10; /* AF_INET6 */
		__builtin_memcpy(src, &ip6.saddr, 16);
		__builtin_memcpy(dst, &ip6.daddr, 16);
	} else {
		return 0;
	}
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) ||
	    bpf_skb_load_bytes(skb, l4 + 4, &udp_len, sizeof(udp_len)))
		return -1;
	t->lport = bpf_ntohs(egress ? ports[0] : ports[1]);
	t->rport = bpf_ntohs(egress ? ports[1] : ports[0]);
	udp_len = bpf_ntohs(udp_len);
	if (!whole) {
		/* First fragment: the UDP length covers the whole datagram. */
		if (udp_len < 8)
			return -1;
		d->bytes = udp_len - 8;
		d->count = 1;
		return 1;
	}
	/* A GSO skb (UDP_SEGMENT) carries gso_segs datagrams behind one
	 * IP and UDP header: the headers are copied per segment later. */
	d->count = skb->gso_segs > 1 ? skb->gso_segs : 1;
	if (len < l4 + 8)
		return -1;
	d->bytes = len - l4 - 8;
	return 1;
}

#endif
