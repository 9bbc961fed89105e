/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing what every packet has: the Ethernet header with up to two VLAN tags, and the L4 header once an IP
 * stage has found it. Every read goes through bpf_skb_load_bytes, which fails rather than reading past the
 * packet (and works on non-linear skbs); a failed read marks the event FS_F_TRUNCATED and leaves the fields
 * that would have come from it zero.
 */
#ifndef FLOWSCOPE_PARSE_H
#define FLOWSCOPE_PARSE_H

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/in6.h>

#include "flowscope/calls.h"
#include "flowscope/state.h"

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define fs_ntohs(x) __builtin_bswap16(x)
#else
#define fs_ntohs(x) (x)
#endif

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

#define FS_TCP_HDR_LEN 20  /* the fixed part; options follow */
#define FS_UDP_HDR_LEN 8
#define FS_SCTP_HDR_LEN 12 /* the common header */
#define FS_ICMP_HDR_LEN 4  /* type, code, checksum; the rest depends on the type */
#define FS_TCP_FLAGS_OFF 13

/* TCP flags, as in the flags byte (and fs_event.tcp_flags). */
#define FS_TCP_FIN 0x01
#define FS_TCP_SYN 0x02
#define FS_TCP_RST 0x04
#define FS_TCP_ACK 0x10

static __always_inline void fs_truncated(struct fs_state *st)
{
	st->ev.flags |= FS_F_TRUNCATED;
}

/* Ethernet and VLAN tags: sets ethertype and l3_off, and returns the stage for that ethertype. A VLAN tag cut
 * short leaves the tag's ethertype (0x8100 or 0x88a8) in place and goes to FS_CALL_OTHER. */
static __always_inline __u32 fs_parse_l2(struct __sk_buff *skb, struct fs_state *st)
{
	struct ethhdr eth;
	__u16 proto;
	__u32 off = sizeof(eth);

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0) {
		fs_truncated(st);
		return FS_CALL_OTHER;
	}
	proto = fs_ntohs(eth.h_proto);

#pragma unroll
	for (int i = 0; i < FS_VLAN_MAX_TAGS; i++) {
		__be16 tag[2]; /* TCI, then the encapsulated ethertype */

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (bpf_skb_load_bytes(skb, off, tag, sizeof(tag)) < 0) {
			st->ev.ethertype = proto;
			fs_truncated(st);
			return FS_CALL_OTHER;
		}
		proto = fs_ntohs(tag[1]);
		off += sizeof(tag);
	}

	st->ev.ethertype = proto;
	st->l3_off = off;
	switch (proto) {
	case ETH_P_IP:
		return FS_CALL_IPV4;
	case ETH_P_IPV6:
		return FS_CALL_IPV6;
	default:
		return FS_CALL_OTHER;
	}
}

static __always_inline void fs_set_ports(struct fs_state *st, const __u8 *hdr)
{
	st->ev.sport = ((__u16)hdr[0] << 8) | hdr[1];
	st->ev.dport = ((__u16)hdr[2] << 8) | hdr[3];
	st->ev.flags |= FS_F_L4;
}

/* The L4 header at `off`: ports (ICMP: type into sport, code into dport) and TCP's flags byte. Protocols
 * without ports leave them zero and FS_F_L4 clear. */
static __always_inline void fs_parse_l4(struct __sk_buff *skb, struct fs_state *st, __u32 off, __u8 proto)
{
	__u8 hdr[FS_TCP_HDR_LEN];
	int err;

	st->l4_off = off;
	switch (proto) {
	case IPPROTO_TCP:
		err = bpf_skb_load_bytes(skb, off, hdr, FS_TCP_HDR_LEN);
		if (err < 0)
			break;
		fs_set_ports(st, hdr);
		st->ev.tcp_flags = hdr[FS_TCP_FLAGS_OFF];
		return;
	case IPPROTO_UDP:
		err = bpf_skb_load_bytes(skb, off, hdr, FS_UDP_HDR_LEN);
		if (err < 0)
			break;
		fs_set_ports(st, hdr);
		return;
	case IPPROTO_SCTP:
		err = bpf_skb_load_bytes(skb, off, hdr, FS_SCTP_HDR_LEN);
		if (err < 0)
			break;
		fs_set_ports(st, hdr);
		return;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		err = bpf_skb_load_bytes(skb, off, hdr, FS_ICMP_HDR_LEN);
		if (err < 0)
			break;
		st->ev.sport = hdr[0];
		st->ev.dport = hdr[1];
		st->ev.flags |= FS_F_L4;
		return;
	default:
		return;
	}
	fs_truncated(st);
}

#endif /* FLOWSCOPE_PARSE_H */
