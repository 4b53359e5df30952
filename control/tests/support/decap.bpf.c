/*
 * A test backend's tunnel end, as an XDP program: takes the outer headers off what
 * vipgate sends, so that the backend's kernel sees the client's packet as the client sent
 * it (to a VIP the backend has on its loopback) and answers it directly.
 *
 * Outer IPv4 (no options are assumed: the header length is read) or IPv6 (no extension
 * headers), carrying
 *   - IPIP: IPv4 in IPv4 (protocol 4, RFC 2003) or IPv6 in IPv6 (next header 41,
 *     RFC 2473), and the two mixed;
 *   - GRE (47, RFC 2784): a 4-byte header with no checksum, key or sequence number, its
 *     protocol type the inner EtherType;
 *   - GUE (UDP to GUE_PORT, draft-ietf-intarea-gue): version 0, a 4-byte header of
 *     hlen 0, its protocol the inner IP protocol (4 or 41).
 * Anything else passes untouched. The Ethernet header is kept (its EtherType set to the
 * inner packet's) and moved in front of the inner packet.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define GUE_PORT 6080

static __always_inline int inner_ethertype(__u8 ip_protocol)
{
	if (ip_protocol == IPPROTO_IPIP)
		return ETH_P_IP;
	if (ip_protocol == IPPROTO_IPV6)
		return ETH_P_IPV6;
	return 0;
}

/* How many bytes of tunnel header follow the outer IP header (at `l4`), with the inner
 * EtherType in *ethertype; -1 when it is no tunnel of ours. */
static __always_inline int tunnel(__u8 protocol, void *l4, void *end, int *ethertype)
{
	if (protocol == IPPROTO_IPIP || protocol == IPPROTO_IPV6) {
		*ethertype = inner_ethertype(protocol);
		return 0;
	}
	if (protocol == IPPROTO_GRE) {
		__u8 *gre = l4;
		if ((void *)(gre + 4) > end)
			return -1;
		/* No checksum, routing, key or sequence bits; version 0. */
		if (gre[0] != 0 || (gre[1] & 0x07) != 0)
			return -1;
		*ethertype = bpf_ntohs(*(__be16 *)(gre + 2));
		return 4;
	}
	if (protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > end || udp->dest != bpf_htons(GUE_PORT))
			return -1;
		__u8 *gue = (__u8 *)(udp + 1);
		if ((void *)(gue + 4) > end)
			return -1;
		/* Version 0, a data message (C clear), no extension fields. */
		if (gue[0] != 0)
			return -1;
		*ethertype = inner_ethertype(gue[1]);
		return sizeof(*udp) + 4;
	}
	return -1;
}

SEC("xdp")
int decap(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int outer, extra, ethertype = 0;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return XDP_PASS;
		outer = ip->ihl * 4;
		extra = tunnel(ip->protocol, (__u8 *)ip + outer, end, &ethertype);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		outer = sizeof(*ip);
		extra = tunnel(ip->nexthdr, ip + 1, end, &ethertype);
	} else {
		return XDP_PASS;
	}
	if (extra < 0 || (ethertype != ETH_P_IP && ethertype != ETH_P_IPV6))
		return XDP_PASS;
	struct ethhdr keep = *eth;
	keep.h_proto = bpf_htons(ethertype);
	if (bpf_xdp_adjust_head(ctx, outer + extra))
		return XDP_PASS;
	eth = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(eth, &keep, sizeof(keep));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
