/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Services: ICMP errors about a translated connection, translated back (lb.h has the tables and what every
 * translation needs; lb_nat.h the translations of the packets themselves).
 */
#ifndef FLOWSCOPE_LB_ICMP_H
#define FLOWSCOPE_LB_ICMP_H

#include "flowscope/lb.h"

/* To-container: an ICMP error about a translated connection (a UDP datagram to a ClusterIP whose backend has no
 * socket on the port: port unreachable) is translated back as a reply is, or the client's kernel, which matches
 * the quoted packet against its sockets, would find none connected to the backend and the error would be lost:
 * the quote names the frontend again (its destination address and port), and an error the backend itself sent
 * comes from the frontend (one from a router on the way keeps its source). Checksums follow every change: the
 * quoted IPv4 header's, and the ICMP checksum, which covers the quote (ICMPv6's the outer addresses too). The
 * quoted TCP/UDP checksum stays as it was, as Cilium leaves it: the quote may be cut short, and receivers read
 * only its ports. Conntrack still sees the backend in the quote (fs_lb_unquote). Returns a drop reason, or 0. */
static __always_inline __u32 fs_lb_reverse_icmp(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_lb_reverse_key rkey = {};
	struct fs_lb_reverse *rev;
	__u32 quote = st->l4_off + FS_LB_ICMP_QUOTE, csum_off = st->l4_off + 2, addr_off, l4;
	__u16 old_port, new_port, old_csum, new_csum;
	__u8 ports[4];
	__s64 diff;

	if (st->ev.flags & FS_F_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, quote, &ip6, sizeof(ip6)) < 0)
			return 0;
		__builtin_memcpy(rkey.client, &ip6.saddr, 16);
		__builtin_memcpy(rkey.backend, &ip6.daddr, 16);
		rkey.proto = ip6.nexthdr;
		rkey.family = 6;
		addr_off = quote + 24;
		l4 = quote + sizeof(ip6);
	} else {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, quote, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
			return 0;
		__builtin_memcpy(rkey.client, &ip.saddr, 4);
		__builtin_memcpy(rkey.backend, &ip.daddr, 4);
		rkey.proto = ip.protocol;
		rkey.family = 4;
		addr_off = quote + 16;
		l4 = quote + ip.ihl * 4;
	}
	if ((rkey.proto != IPPROTO_TCP && rkey.proto != IPPROTO_UDP) ||
	    bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) < 0)
		return 0;
	rkey.client_port = ((__u16)ports[0] << 8) | ports[1];
	rkey.backend_port = ((__u16)ports[2] << 8) | ports[3];
	rev = lb_reverse.lookup(&rkey);
	if (!rev)
		return 0;
	fs_addr_copy(st->lb_addr, rev->addr);
	st->lb_port = rev->port;
	st->lb_frontend = rev->id;
	fs_addr_copy(st->lb_backend, rkey.backend);
	st->lb_backend_port = rkey.backend_port;
	st->lb_xlate = FS_LB_RNAT_ICMP;

	if (rkey.family == 6) {
		diff = bpf_csum_diff((__be32 *)rkey.backend, 16, (__be32 *)st->lb_addr, 16, 0);
		if (bpf_skb_store_bytes(skb, addr_off, st->lb_addr, 16, 0) < 0 ||
		    bpf_l4_csum_replace(skb, csum_off, 0, diff, 0) < 0)
			return FS_DROP_WRITE_ERROR;
		if (fs_lb_addr_eq(st->ev.saddr, rkey.backend) &&
		    (bpf_skb_store_bytes(skb, st->l3_off + 8, st->lb_addr, 16, 0) < 0 ||
		     bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR) < 0))
			return FS_DROP_WRITE_ERROR;
	} else {
		/* the quoted header's checksum changes with its address: the ICMP checksum covers both */
		diff = bpf_csum_diff((__be32 *)rkey.backend, 4, (__be32 *)st->lb_addr, 4, 0);
		if (bpf_skb_load_bytes(skb, quote + 10, &old_csum, sizeof(old_csum)) < 0 ||
		    bpf_skb_store_bytes(skb, addr_off, st->lb_addr, 4, 0) < 0 ||
		    bpf_l3_csum_replace(skb, quote + 10, 0, diff, 0) < 0 ||
		    bpf_skb_load_bytes(skb, quote + 10, &new_csum, sizeof(new_csum)) < 0 ||
		    bpf_l4_csum_replace(skb, csum_off, 0, diff, 0) < 0 ||
		    bpf_l4_csum_replace(skb, csum_off, old_csum, new_csum, sizeof(__u16)) < 0)
			return FS_DROP_WRITE_ERROR;
		if (fs_lb_addr_eq(st->ev.saddr, rkey.backend) &&
		    (bpf_skb_store_bytes(skb, st->l3_off + 12, st->lb_addr, 4, 0) < 0 ||
		     bpf_l3_csum_replace(skb, st->l3_off + 10, 0, diff, 0) < 0))
			return FS_DROP_WRITE_ERROR;
	}
	old_port = fs_ntohs(rkey.backend_port);
	new_port = fs_ntohs(st->lb_port);
	if (old_port != new_port &&
	    (bpf_skb_store_bytes(skb, l4 + 2, &new_port, sizeof(new_port), 0) < 0 ||
	     bpf_l4_csum_replace(skb, csum_off, old_port, new_port, sizeof(__u16)) < 0))
		return FS_DROP_WRITE_ERROR;
	return 0;
}

#endif /* FLOWSCOPE_LB_ICMP_H */
