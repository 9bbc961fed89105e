/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading a freed packet from kernel memory, for the kfree_skb program (bpf/kdrop.c) only: headers of that
 * program live in flowscope/kdrop/, apart from the tc datapath's (whose translation unit takes all of flowscope/).
 *
 * A tracepoint gets the sk_buff's address, not a packet context, so every read is a bpf_probe_read_kernel at an
 * offset the loader took from the running kernel's BTF (observer/datapath/kdrop_layout.py passes them as
 * -DFS_SKB_HEAD=192 and so on): kernel-internal layouts differ between kernels and configurations, and the
 * only headers on the machine are for another kernel. The fields we need from struct sk_buff are read in one
 * copy of its first FS_SKB_READ_LEN bytes.
 *
 * Packet bytes are read from the skb's linear part only (head .. head + tail): headers are always there by the
 * time the stack drops a packet, and bytes past `tail` belong to page fragments this program cannot follow.
 */
#ifndef FLOWSCOPE_KDROP_SKB_H
#define FLOWSCOPE_KDROP_SKB_H

#include "flowscope/event.h"

#if !defined(FS_SKB_HEAD) || !defined(FS_NET_INUM) || !defined(FS_SKB_READ_LEN)
#error "kdrop.c needs the kernel's struct offsets from BTF: load it through observer/datapath/kdrop.py"
#endif

#define FS_NO_HEADER 0xffff /* a mac/network/transport header offset the stack has not set */
#define FS_ETH_HLEN 14
#define FS_ETH_ALEN_2 12 /* destination and source MAC */

#define FS_ETH_P_IP 0x0800
#define FS_ETH_P_IPV6 0x86DD
#define FS_IPPROTO_ICMP 1
#define FS_IPPROTO_TCP 6
#define FS_IPPROTO_UDP 17
#define FS_IPPROTO_ICMPV6 58
#define FS_IPPROTO_SCTP 132
#define FS_IPV6_MAX_WALK 4 /* extension headers walked to find L4; more is rare, and then no ports */

#define fs_bswap16(x) __builtin_bswap16(x)

/* The sk_buff fields the program uses. */
struct fs_kdrop_skb {
	void *head;
	void *dev;
	void *sk;
	__u64 data_off; /* skb->data - skb->head */
	__u32 len;      /* bytes from skb->data on */
	__u32 hash;
	__u32 tail;     /* end of the linear data, from head */
	__u16 mac;      /* header offsets from head; FS_NO_HEADER when unset */
	__u16 network;
	__u16 transport;
	__u16 protocol; /* skb->protocol, network order */
};

#define FS_AT(buf, type, off) (*(type *)((buf) + (off)))

static __always_inline int fs_kdrop_read_skb(const void *skb, struct fs_kdrop_skb *out)
{
	__u64 raw[FS_SKB_READ_LEN / 8];
	const __u8 *b = (const __u8 *)raw;
	void *data;

	if (bpf_probe_read_kernel(raw, sizeof(raw), skb) < 0)
		return -1;
	out->head = FS_AT(b, void *, FS_SKB_HEAD);
	out->dev = FS_AT(b, void *, FS_SKB_DEV);
	out->sk = FS_AT(b, void *, FS_SKB_SK);
	out->len = FS_AT(b, __u32, FS_SKB_LEN);
	out->hash = FS_AT(b, __u32, FS_SKB_HASH);
	out->tail = FS_AT(b, __u32, FS_SKB_TAIL);
	out->mac = FS_AT(b, __u16, FS_SKB_MAC_HEADER);
	out->network = FS_AT(b, __u16, FS_SKB_NETWORK_HEADER);
	out->transport = FS_AT(b, __u16, FS_SKB_TRANSPORT_HEADER);
	out->protocol = FS_AT(b, __u16, FS_SKB_PROTOCOL);
	data = FS_AT(b, void *, FS_SKB_DATA);
	out->data_off = data >= out->head ? (__u64)(data - out->head) : 0;
	return 0;
}

/* The inode of the network namespace the packet was dropped in: its device's (dev->nd_net), or, without a
 * device (a locally made packet before routing), its socket's (sk->__sk_common.skc_net). 0 when neither reads:
 * such a drop belongs to nobody we know. */
static __always_inline __u32 fs_kdrop_netns(const struct fs_kdrop_skb *s)
{
	void *net = 0;
	__u32 inum = 0;

	if (s->dev && bpf_probe_read_kernel(&net, sizeof(net), s->dev + FS_NETDEV_NET) == 0 && net &&
	    bpf_probe_read_kernel(&inum, sizeof(inum), net + FS_NET_INUM) == 0 && inum)
		return inum;
	net = 0;
	if (s->sk && bpf_probe_read_kernel(&net, sizeof(net), s->sk + FS_SOCK_NET) == 0 && net &&
	    bpf_probe_read_kernel(&inum, sizeof(inum), net + FS_NET_INUM) == 0)
		return inum;
	return 0;
}

static __always_inline __u32 fs_kdrop_ifindex(const struct fs_kdrop_skb *s)
{
	__u32 ifindex = 0;

	if (s->dev)
		bpf_probe_read_kernel(&ifindex, sizeof(ifindex), s->dev + FS_NETDEV_IFINDEX);
	return ifindex;
}

/* Where the captured frame starts: at the MAC header when the stack set one that leaves room for Ethernet
 * before the network header; else at the network header, behind an Ethernet header we make up (zero MACs, the
 * ethertype), so the record's bytes always start with Ethernet as the decoder expects. */
struct fs_kdrop_frame {
	__u32 start;     /* offset from head */
	__u32 synthetic; /* 1: data[] starts with a made-up Ethernet header, then the bytes from `start` */
	__u32 len;       /* the frame's length, as a tc hook would have counted it */
	__u32 valid;
};

static __always_inline struct fs_kdrop_frame fs_kdrop_frame_of(const struct fs_kdrop_skb *s)
{
	struct fs_kdrop_frame f = {};

	if (s->mac != FS_NO_HEADER && (s->network == FS_NO_HEADER || s->network >= s->mac + FS_ETH_HLEN)) {
		f.start = s->mac;
	} else if (s->network != FS_NO_HEADER) {
		f.start = s->network;
		f.synthetic = 1;
	} else {
		f.len = s->len;
		return f;
	}
	f.valid = 1;
	f.len = s->len;
	if (s->data_off >= f.start)
		f.len += s->data_off - f.start;
	if (f.synthetic)
		f.len += FS_ETH_HLEN;
	return f;
}

/* Copy the frame's first bytes into ev->data (at most FS_CAPLEN, at most the linear data). */
static __always_inline void fs_kdrop_capture(struct fs_event *ev, const struct fs_kdrop_skb *s,
					     const struct fs_kdrop_frame *f)
{
	__u64 avail, n;

	if (!f->valid || s->tail <= f->start)
		return;
	avail = s->tail - f->start;
	if (!f->synthetic) {
		n = avail < FS_CAPLEN ? avail : FS_CAPLEN;
		asm volatile("" : "+r"(n)); /* keep the bounds check on the register the helper gets */
		if (n > 0 && n <= FS_CAPLEN && bpf_probe_read_kernel(ev->data, n, s->head + f->start) == 0)
			ev->len_cap = n;
		return;
	}
#if FS_CAPLEN > FS_ETH_HLEN /* else there is no room for more than the made-up header: capture nothing */
	n = avail < FS_CAPLEN - FS_ETH_HLEN ? avail : FS_CAPLEN - FS_ETH_HLEN;
	asm volatile("" : "+r"(n));
	if (n > 0 && n <= FS_CAPLEN - FS_ETH_HLEN &&
	    bpf_probe_read_kernel(ev->data + FS_ETH_HLEN, n, s->head + f->start) == 0) {
		__builtin_memset(ev->data, 0, FS_ETH_ALEN_2);
		ev->data[12] = ev->ethertype >> 8;
		ev->data[13] = ev->ethertype & 0xff;
		ev->len_cap = n + FS_ETH_HLEN;
	}
#endif
}

/* Read `size` bytes at `off` from head, only if they lie in the linear data. */
static __always_inline int fs_kdrop_load(const struct fs_kdrop_skb *s, __u32 off, void *dst, __u32 size)
{
	if (off + size > s->tail)
		return -1;
	return bpf_probe_read_kernel(dst, size, s->head + off);
}

/* Whether the packet is an ICMP or ICMPv6 echo reply (read through the transport header, which the ICMP handler
 * has set by the time it frees one). */
static __always_inline int fs_kdrop_is_echo_reply(const struct fs_kdrop_skb *s, __u16 ethertype)
{
	__u8 proto = 0, type = 0xff;

	if (s->network == FS_NO_HEADER || s->transport == FS_NO_HEADER || s->transport <= s->network)
		return 0;
	if (ethertype == FS_ETH_P_IP) {
		if (fs_kdrop_load(s, s->network + 9, &proto, 1) < 0 || proto != FS_IPPROTO_ICMP)
			return 0;
		return fs_kdrop_load(s, s->transport, &type, 1) == 0 && type == 0;
	}
	if (ethertype == FS_ETH_P_IPV6) {
		if (fs_kdrop_load(s, s->network + 6, &proto, 1) < 0 || proto != FS_IPPROTO_ICMPV6)
			return 0;
		return fs_kdrop_load(s, s->transport, &type, 1) == 0 && type == 129;
	}
	return 0;
}

/* Frees the kernel counts as drops that are no packet lost on the network:
 * - buffers that are no network packet at all (no protocol): AF_UNIX and netlink messages, whose reasons
 *   (UNIX_DISCONNECT, SOCKET_CLOSE, ...) share the enum;
 * - QUEUE_PURGE of a socket's own queue as the socket goes away: the stack had delivered those packets (a FIN
 *   left unread by an application that closed, say) or never sent them. A purged device or protocol queue (no
 *   socket) did lose packets in flight, and is reported;
 * - an echo reply freed as NO_SOCKET: the kernel does so with every echo reply no ping (datagram) socket wants,
 *   even when a raw socket (ping run by root uses one) has already received its copy. The two cannot be told
 *   apart from here, and an echo reply nobody reads is no network problem. */
static __always_inline int fs_kdrop_not_lost(__u32 reason, const struct fs_kdrop_skb *s, __u16 protocol)
{
	if (!protocol)
		return 1;
	if (reason == FS_SKB_DROP_REASON_QUEUE_PURGE)
		return s->sk != 0;
	if (reason == FS_SKB_DROP_REASON_NO_SOCKET)
		return fs_kdrop_is_echo_reply(s, protocol);
	return 0;
}

/* Ports (ICMP: type and code) and TCP flags from the L4 header at `off`. */
static __always_inline void fs_kdrop_l4(struct fs_event *ev, const struct fs_kdrop_skb *s, __u32 off)
{
	__u8 hdr[14]; /* TCP's flags are its 14th byte; the other protocols need their first 4 */
	int err;

	switch (ev->l4_proto) {
	case FS_IPPROTO_TCP:
	case FS_IPPROTO_UDP:
	case FS_IPPROTO_SCTP:
	case FS_IPPROTO_ICMP:
	case FS_IPPROTO_ICMPV6:
		break;
	default:
		return;
	}
	if (ev->l4_proto == FS_IPPROTO_TCP)
		err = fs_kdrop_load(s, off, hdr, 14);
	else
		err = fs_kdrop_load(s, off, hdr, 4);
	if (err < 0) {
		ev->flags |= FS_F_TRUNCATED;
		return;
	}
	if (ev->l4_proto == FS_IPPROTO_ICMP || ev->l4_proto == FS_IPPROTO_ICMPV6) {
		ev->sport = hdr[0];
		ev->dport = hdr[1];
	} else {
		ev->sport = (__u16)hdr[0] << 8 | hdr[1];
		ev->dport = (__u16)hdr[2] << 8 | hdr[3];
	}
	if (ev->l4_proto == FS_IPPROTO_TCP)
		ev->tcp_flags = hdr[13];
	ev->flags |= FS_F_L4;
}

static __always_inline void fs_kdrop_ipv4(struct fs_event *ev, const struct fs_kdrop_skb *s)
{
	__u8 ip[20];
	__u32 ihl;

	if (fs_kdrop_load(s, s->network, ip, sizeof(ip)) < 0 || (ip[0] >> 4) != 4) {
		ev->flags |= FS_F_TRUNCATED;
		return;
	}
	ev->l4_proto = ip[9];
	__builtin_memcpy(ev->saddr, ip + 12, 4);
	__builtin_memcpy(ev->daddr, ip + 16, 4);
	ihl = (ip[0] & 0x0f) * 4;
	if (ihl < sizeof(ip)) {
		ev->flags |= FS_F_TRUNCATED;
		return;
	}
	if (((__u16)(ip[6] & 0x1f) << 8 | ip[7]) != 0) {
		ev->flags |= FS_F_FRAGMENT;
		return;
	}
	fs_kdrop_l4(ev, s, s->network + ihl);
}

static __always_inline void fs_kdrop_ipv6(struct fs_event *ev, const struct fs_kdrop_skb *s)
{
	__u8 ip[40];
	__u8 ext[4];
	__u32 off = s->network + sizeof(ip);
	__u8 next;

	if (fs_kdrop_load(s, s->network, ip, sizeof(ip)) < 0 || (ip[0] >> 4) != 6) {
		ev->flags |= FS_F_TRUNCATED;
		return;
	}
	ev->flags |= FS_F_IPV6;
	__builtin_memcpy(ev->saddr, ip + 8, 16);
	__builtin_memcpy(ev->daddr, ip + 24, 16);
	next = ip[6];

#pragma unroll
	for (int i = 0; i < FS_IPV6_MAX_WALK; i++) {
		if (next != 0 && next != 43 && next != 44 && next != 51 && next != 60)
			break;
		if (fs_kdrop_load(s, off, ext, sizeof(ext)) < 0) {
			ev->l4_proto = next;
			ev->flags |= FS_F_TRUNCATED;
			return;
		}
		if (next == 44) { /* fragment: a fixed 8 bytes; only the first fragment has the L4 header */
			if ((((__u16)ext[2] << 8 | ext[3]) & 0xfff8) != 0) {
				ev->l4_proto = ext[0];
				ev->flags |= FS_F_FRAGMENT;
				return;
			}
			off += 8;
		} else if (next == 51) { /* AH counts in 4-byte words, minus 2 */
			off += ((__u32)ext[1] + 2) * 4;
		} else {
			off += ((__u32)ext[1] + 1) * 8;
		}
		next = ext[0];
	}
	ev->l4_proto = next;
	fs_kdrop_l4(ev, s, off);
}

#endif /* FLOWSCOPE_KDROP_SKB_H */
