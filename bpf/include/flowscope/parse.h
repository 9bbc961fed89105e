/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsing what every packet has: the Ethernet header with up to two VLAN tags, and the L4 header once an IP
 * stage has found it. Headers are read in place when they lie in the skb's linear data (direct packet access,
 * bounds-checked against data_end: no helper call), and through bpf_skb_load_bytes otherwise, which also
 * reaches paged data and fails rather than reading past the packet. A header the packet ends inside marks the
 * event FS_F_TRUNCATED and leaves the fields that would have come from it zero.
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

/* Header offsets up to this are read in place when the linear data holds them (a bound the verifier needs). */
#define FS_DIRECT_MAX_OFF 1024

static __always_inline void fs_truncated(struct fs_state *st)
{
	st->ev.flags |= FS_F_TRUNCATED;
}

/* The `len` bytes at `off` of the packet: a pointer into the packet when its linear data holds them, else a
 * copy in `buf`; 0 when the packet ends before off + len. Never keep the pointer across a tail call. */
static __always_inline const void *fs_header(struct __sk_buff *skb, __u32 off, void *buf, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (off <= FS_DIRECT_MAX_OFF && data + off + len <= data_end)
		return data + off;
	if (bpf_skb_load_bytes(skb, off, buf, len) < 0)
		return 0;
	return buf;
}

/* Ethernet and VLAN tags: sets ethertype and l3_off, and returns the stage for that ethertype. A VLAN tag cut
 * short leaves the tag's ethertype (0x8100 or 0x88a8) in place and goes to FS_CALL_OTHER. */
static __always_inline __u32 fs_parse_l2(struct __sk_buff *skb, struct fs_state *st)
{
	struct ethhdr buf;
	const struct ethhdr *eth = fs_header(skb, 0, &buf, sizeof(buf));
	__u16 proto;
	__u32 off = sizeof(buf);

	if (!eth) {
		fs_truncated(st);
		return FS_CALL_OTHER;
	}
	proto = fs_ntohs(eth->h_proto);

#pragma unroll
	for (int i = 0; i < FS_VLAN_MAX_TAGS; i++) {
		__be16 tag_buf[2];
		const __be16 *tag; /* TCI, then the encapsulated ethertype */

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		tag = fs_header(skb, off, tag_buf, sizeof(tag_buf));
		if (!tag) {
			st->ev.ethertype = proto;
			fs_truncated(st);
			return FS_CALL_OTHER;
		}
		proto = fs_ntohs(tag[1]);
		off += sizeof(tag_buf);
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
	__u8 buf[FS_TCP_HDR_LEN];
	const __u8 *hdr;

	st->l4_off = off;
	switch (proto) {
	case IPPROTO_TCP:
		hdr = fs_header(skb, off, buf, FS_TCP_HDR_LEN);
		if (!hdr)
			break;
		fs_set_ports(st, hdr);
		st->ev.tcp_flags = hdr[FS_TCP_FLAGS_OFF];
		return;
	case IPPROTO_UDP:
		hdr = fs_header(skb, off, buf, FS_UDP_HDR_LEN);
		if (!hdr)
			break;
		fs_set_ports(st, hdr);
		return;
	case IPPROTO_SCTP:
		hdr = fs_header(skb, off, buf, FS_SCTP_HDR_LEN);
		if (!hdr)
			break;
		fs_set_ports(st, hdr);
		return;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		hdr = fs_header(skb, off, buf, FS_ICMP_HDR_LEN);
		if (!hdr)
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
