/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IPv6: addresses, then a bounded walk over the extension headers (hop-by-hop, routing, fragment, destination
 * options, AH) to the upper-layer protocol and its header. A fragment header with a non-zero offset means a
 * non-first fragment: the protocol is known (its next header) but there is no L4 header to read.
 */
#ifndef FLOWSCOPE_IPV6_H
#define FLOWSCOPE_IPV6_H

#include <uapi/linux/ipv6.h>

#include "flowscope/parse.h"

#define FS_IP6_OFFSET_MASK 0xfff8 /* fragment offset in the fragment header's frag_off; M flag is bit 0 */

/* Length of the extension header `nexthdr` whose length byte is `hdrlen`; 0 when it is not one. */
static __always_inline __u32 fs_ipv6_ext_len(__u8 nexthdr, __u8 hdrlen)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
		return ((__u32)hdrlen + 1) * 8;
	case IPPROTO_AH:
		return ((__u32)hdrlen + 2) * 4;
	case IPPROTO_FRAGMENT:
		return 8;
	default:
		return 0;
	}
}

/* Returns 0 when the addresses were read, -1 when the packet ends inside the fixed header. */
static __always_inline int fs_parse_ipv6(struct __sk_buff *skb, struct fs_state *st)
{
	struct ipv6hdr buf;
	const struct ipv6hdr *ip6;
	__u32 off = st->l3_off;
	__u8 nexthdr;

	st->ev.flags |= FS_F_IPV6;
	ip6 = fs_header(skb, off, &buf, sizeof(buf));
	if (!ip6) {
		fs_truncated(st);
		return -1;
	}
	__builtin_memcpy(st->ev.saddr, &ip6->saddr, 16);
	__builtin_memcpy(st->ev.daddr, &ip6->daddr, 16);
	st->addrs = 1;
	nexthdr = ip6->nexthdr;
	off += sizeof(buf);

#pragma unroll
	for (int i = 0; i < FS_IPV6_MAX_EXTHDRS; i++) {
		__u8 ext_buf[4];
		const __u8 *ext; /* next header, length, and (fragment header) the offset field */
		__u32 len;

		if (!fs_ipv6_ext_len(nexthdr, 0))
			break;
		ext = fs_header(skb, off, ext_buf, sizeof(ext_buf));
		if (!ext) {
			fs_truncated(st);
			return 0;
		}
		len = fs_ipv6_ext_len(nexthdr, ext[1]);
		if (off + len > skb->len) {
			fs_truncated(st);
			return 0;
		}
		if (nexthdr == IPPROTO_FRAGMENT && ((((__u16)ext[2] << 8) | ext[3]) & FS_IP6_OFFSET_MASK)) {
			st->ev.l4_proto = ext[0];
			st->ev.flags |= FS_F_FRAGMENT;
			return 0;
		}
		nexthdr = ext[0];
		off += len;
	}

	st->ev.l4_proto = nexthdr;
	fs_parse_l4(skb, st, off, nexthdr);
	return 0;
}

#endif /* FLOWSCOPE_IPV6_H */
