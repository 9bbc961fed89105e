/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IPv4: addresses (into the first 4 bytes of saddr/daddr), protocol, and the L4 header unless this is a
 * non-first fragment, which carries none.
 */
#ifndef FLOWSCOPE_IPV4_H
#define FLOWSCOPE_IPV4_H

#include <uapi/linux/ip.h>

#include "flowscope/parse.h"

#define FS_IP_OFFSET_MASK 0x1fff /* fragment offset, in 8-byte units; IP_MF/IP_DF are the bits above */

/* Returns 0 when the addresses were read, -1 when the packet ends inside the fixed header. */
static __always_inline int fs_parse_ipv4(struct __sk_buff *skb, struct fs_state *st)
{
	struct iphdr buf;
	const struct iphdr *ip;
	__u32 off = st->l3_off;
	__u32 hdr_len;
	__u8 proto;

	ip = fs_header(skb, off, &buf, sizeof(buf));
	if (!ip) {
		fs_truncated(st);
		return -1;
	}
	__builtin_memcpy(st->ev.saddr, &ip->saddr, 4);
	__builtin_memcpy(st->ev.daddr, &ip->daddr, 4);
	st->addrs = 1;
	st->ev.l4_proto = proto = ip->protocol;
	hdr_len = ip->ihl * 4;

	if (hdr_len < sizeof(buf) || off + hdr_len > skb->len) {
		fs_truncated(st); /* options cut short (or an impossible header length): the L4 header is not there */
		return 0;
	}
	if (fs_ntohs(ip->frag_off) & FS_IP_OFFSET_MASK) {
		st->ev.flags |= FS_F_FRAGMENT;
		return 0;
	}
	fs_parse_l4(skb, st, off + hdr_len, proto);
	return 0;
}

#endif /* FLOWSCOPE_IPV4_H */
