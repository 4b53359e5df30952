/*
 * vipgate's XDP filter: the frames vipgate's workers take go to the AF_XDP socket of the
 * queue they arrived on; every other frame goes on to the kernel.
 *
 * Taken (redirected to the queue's socket in vg_xsks):
 *   - IPv4 or IPv6 packets whose destination is in a VIP subnet (vg_vips4, vg_vips6),
 *     or is one of the addresses vipgate answers for (the same maps, as /32 and /128);
 *   - ICMP and ICMPv6 errors whose quoted packet came from such an address (an error
 *     about a packet a backend sent from a VIP, whatever it is addressed to);
 *   - ARP requests and neighbour solicitations for such an address.
 * Everything else (the host's own traffic: BGP, SSH, health-check replies, ARP for the
 * host's address) passes. A queue with no socket passes too (bpf_redirect_map's
 * fallback), so a vipgate that died leaves the kernel all the traffic.
 *
 * Counts (vg_counts, per CPU): 0 taken, 1 passed.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_QUEUES 256
#define MAX_PREFIXES 16384

struct v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} vg_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, __u8);
} vg_vips4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_key);
	__type(value, __u8);
} vg_vips6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} vg_counts SEC(".maps");

/* The ARP header of an Ethernet/IPv4 request (RFC 826). */
struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline int v4_taken(__be32 addr)
{
	struct v4_key k = { .prefixlen = 32, .addr = addr };
	return bpf_map_lookup_elem(&vg_vips4, &k) != NULL;
}

static __always_inline int v6_taken(const struct in6_addr *addr)
{
	struct v6_key k = { .prefixlen = 128 };
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&vg_vips6, &k) != NULL;
}

static __always_inline int count(__u32 what, int action)
{
	__u64 *n = bpf_map_lookup_elem(&vg_counts, &what);
	if (n)
		*n += 1;
	return action;
}

static __always_inline int take(struct xdp_md *ctx)
{
	count(0, 0);
	return bpf_redirect_map(&vg_xsks, ctx->rx_queue_index, XDP_PASS);
}

static __always_inline int ipv4(struct xdp_md *ctx, void *l3, void *end)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return 0;
	if (v4_taken(ip->daddr))
		return 1;
	/* An ICMP error (destination unreachable 3, time exceeded 11, parameter problem 12)
	 * about a packet from a VIP: the quoted header after the 8-byte ICMP header. */
	if (ip->protocol != IPPROTO_ICMP || ip->ihl < 5)
		return 0;
	__u8 *icmp = (__u8 *)ip + ip->ihl * 4;
	if ((void *)(icmp + 8) > end)
		return 0;
	if (icmp[0] != 3 && icmp[0] != 11 && icmp[0] != 12)
		return 0;
	struct iphdr *quoted = (struct iphdr *)(icmp + 8);
	if ((void *)(quoted + 1) > end)
		return 0;
	return v4_taken(quoted->saddr);
}

static __always_inline int ipv6(struct xdp_md *ctx, void *l3, void *end)
{
	struct ipv6hdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return 0;
	if (v6_taken(&ip->daddr))
		return 1;
	/* ICMPv6 right after the fixed header only. */
	if (ip->nexthdr != IPPROTO_ICMPV6)
		return 0;
	__u8 *icmp = (__u8 *)(ip + 1);
	if ((void *)(icmp + 8) > end)
		return 0;
	/* Errors: destination unreachable 1, packet too big 2, time exceeded 3, parameter
	 * problem 4, quoting the packet after 8 bytes. */
	if (icmp[0] >= 1 && icmp[0] <= 4) {
		struct ipv6hdr *quoted = (struct ipv6hdr *)(icmp + 8);
		if ((void *)(quoted + 1) > end)
			return 0;
		return v6_taken(&quoted->saddr);
	}
	/* A neighbour solicitation (135): its target after 8 bytes. */
	if (icmp[0] == 135) {
		struct in6_addr *target = (struct in6_addr *)(icmp + 8);
		if ((void *)(target + 1) > end)
			return 0;
		return v6_taken(target);
	}
	return 0;
}

static __always_inline int arp(void *l3, void *end)
{
	struct arp_ipv4 *a = l3;
	if ((void *)(a + 1) > end)
		return 0;
	if (a->htype != bpf_htons(1) || a->ptype != bpf_htons(ETH_P_IP) || a->oper != bpf_htons(1))
		return 0;
	return v4_taken(a->tpa);
}

SEC("xdp")
int vipgate_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return count(1, XDP_PASS);
	__be16 proto = eth->h_proto;
	void *l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_tag *tag = l3;
		if ((void *)(tag + 1) > end)
			return count(1, XDP_PASS);
		proto = tag->proto;
		l3 = tag + 1;
	}
	int taken = 0;
	if (proto == bpf_htons(ETH_P_IP))
		taken = ipv4(ctx, l3, end);
	else if (proto == bpf_htons(ETH_P_IPV6))
		taken = ipv6(ctx, l3, end);
	else if (proto == bpf_htons(ETH_P_ARP))
		taken = arp(l3, end);
	if (taken)
		return take(ctx);
	return count(1, XDP_PASS);
}

/* vipgate's license; the program calls no helper the kernel keeps for GPL programs. */
char LICENSE[] SEC("license") = "Apache-2.0";
