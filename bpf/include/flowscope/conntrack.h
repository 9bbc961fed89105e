/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tracking: which connection a packet belongs to, which way it goes, and in what state.
 *
 * Entries live in the `ct4` and `ct6` tables (cttable.h), one per connection and observation side (maps.h says
 * why). The key puts the lower (address, port) end first, so both directions find the entry with one lookup;
 * the entry remembers which end opened the connection. ICMP echo is keyed by its identifier; an ICMP error
 * quoting a packet of a tracked connection is RELATED to it. TCP entries close on FIN or RST (a short lifetime
 * follows) and a new SYN on a closing or stale entry starts the connection over. Counting and reporting are
 * aggregate.h's part.
 */
#ifndef FLOWSCOPE_CONNTRACK_H
#define FLOWSCOPE_CONNTRACK_H

#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

#include "flowscope/cttable.h"
#include "flowscope/identity.h"
#include "flowscope/lb.h"
#include "flowscope/maps.h"
#include "flowscope/parse.h"
#include "flowscope/report.h"
#include "flowscope/state.h"

#define FS_ICMP_ECHO_REPLY 0
#define FS_ICMP_ECHO_REQUEST 8
#define FS_ICMP6_ECHO_REQUEST 128
#define FS_ICMP6_ECHO_REPLY 129
#define FS_ICMP_ERROR_QUOTE 8 /* an ICMP error quotes the offending IP header this far into its own header */

/* The end (0 or 1) the source sorts to: any consistent total order over (address, port) will do, so the
 * addresses are compared as host-order words. IPv4: 4-byte addresses, 4-byte aligned. */
static __always_inline __u8 fs_ct4_source_end(const __u8 *src, __u16 sport, const __u8 *dst, __u16 dport)
{
	__u32 s = *(const __u32 *)src, d = *(const __u32 *)dst;

	if (s != d)
		return s < d ? 0 : 1;
	return sport <= dport ? 0 : 1;
}

/* IPv6: 16-byte addresses, 8-byte aligned. */
static __always_inline __u8 fs_ct6_source_end(const __u8 *src, __u16 sport, const __u8 *dst, __u16 dport)
{
	__u64 s0 = ((const __u64 *)src)[0], d0 = ((const __u64 *)dst)[0];
	__u64 s1 = ((const __u64 *)src)[1], d1 = ((const __u64 *)dst)[1];

	if (s0 != d0)
		return s0 < d0 ? 0 : 1;
	if (s1 != d1)
		return s1 < d1 ? 0 : 1;
	return sport <= dport ? 0 : 1;
}

/* Fill `key` (IPv6 when `ipv6`) for a packet from (src, sport) to (dst, dport); returns the end its source
 * took. Addresses are as in the event: 16 bytes, 8-byte aligned, IPv4 in the first 4. */
static __always_inline __u8 fs_ct_key_fill(union fs_ct_key *key, int ipv6, const __u8 *src, __u16 sport,
					   const __u8 *dst, __u16 dport, __u8 proto, __u16 scope)
{
	__u8 end;

	if (ipv6) {
		struct fs_ct6_key *k = &key->v6;

		end = fs_ct6_source_end(src, sport, dst, dport);
		fs_addr_copy(k->addr[end], src);
		fs_addr_copy(k->addr[end ^ 1], dst);
		k->port[end] = sport;
		k->port[end ^ 1] = dport;
		k->proto = proto;
		k->family = 6;
		k->scope = scope;
	} else {
		struct fs_ct4_key *k = &key->v4;

		end = fs_ct4_source_end(src, sport, dst, dport);
		*(__u32 *)k->addr[end] = *(const __u32 *)src;
		*(__u32 *)k->addr[end ^ 1] = *(const __u32 *)dst;
		k->port[end] = sport;
		k->port[end ^ 1] = dport;
		k->proto = proto;
		k->family = 4;
		k->scope = scope;
	}
	return end;
}

static __always_inline int fs_icmp_is_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4; /* ICMPv6: unreachable, too big, time exceeded, parameter problem */
}

/* ICMPv6 that keeps IPv6 itself working (MLD 130-132, neighbour discovery 133-137, MLDv2 143): not a
 * connection, and never subject to policy, as in Cilium. */
static __always_inline int fs_icmp6_is_control(__u8 type)
{
	return (type >= 130 && type <= 137) || type == 143;
}

/* The ports an ICMP message is keyed by: echo by its identifier (requester's end), the rest by none. */
static __always_inline void fs_icmp_ports(struct __sk_buff *skb, __u32 off, __u8 type, __u16 *sport, __u16 *dport)
{
	__u8 id[2];

	*sport = 0;
	*dport = 0;
	if (bpf_skb_load_bytes(skb, off + 4, id, sizeof(id)) < 0)
		return;
	if (type == FS_ICMP_ECHO_REQUEST || type == FS_ICMP6_ECHO_REQUEST)
		*sport = ((__u16)id[0] << 8) | id[1];
	else if (type == FS_ICMP_ECHO_REPLY || type == FS_ICMP6_ECHO_REPLY)
		*dport = ((__u16)id[0] << 8) | id[1];
}

/* The connection an ICMP error quotes, as a key; returns the end the quoted packet's source took, or -1 when
 * the quote is not a packet we could track. */
static __always_inline int fs_ct_quoted_key(struct __sk_buff *skb, const struct fs_state *st, union fs_ct_key *key)
{
	__u64 src[2] = {}, dst[2] = {};
	__u32 off = st->l4_off + FS_ICMP_ERROR_QUOTE;
	__u16 sport = 0, dport = 0;
	__u8 ports[4];
	__u8 proto;
	int ipv6 = st->ev.flags & FS_F_IPV6;

	if (ipv6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return -1;
		__builtin_memcpy(src, &ip6.saddr, 16);
		__builtin_memcpy(dst, &ip6.daddr, 16);
		proto = ip6.nexthdr;
		off += sizeof(ip6);
	} else {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
			return -1;
		__builtin_memcpy(src, &ip.saddr, 4);
		__builtin_memcpy(dst, &ip.daddr, 4);
		proto = ip.protocol;
		off += ip.ihl * 4;
	}
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
			return -1;
		sport = ((__u16)ports[0] << 8) | ports[1];
		dport = ((__u16)ports[2] << 8) | ports[3];
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (bpf_skb_load_bytes(skb, off, ports, 1) < 0)
			return -1;
		fs_icmp_ports(skb, off, ports[0], &sport, &dport);
		break;
	default:
		break;
	}
	fs_lb_unquote(st, (__u8 *)dst, &dport);
	return fs_ct_key_fill(key, ipv6, (const __u8 *)src, sport, (const __u8 *)dst, dport, proto, st->ev.ep_id);
}

static __always_inline int fs_ct_is_ip(const struct fs_state *st)
{
	return st->ev.ethertype == ETH_P_IP || st->ev.ethertype == ETH_P_IPV6;
}

/* Whether conntrack can follow the packet: IP with its whole L4 header (or a protocol without one). */
static __always_inline int fs_ct_trackable(const struct fs_state *st)
{
	if (!fs_ct_is_ip(st))
		return 0;
	if (st->ev.flags & (FS_F_FRAGMENT | FS_F_TRUNCATED))
		return 0;
	if (st->ev.l4_proto == IPPROTO_ICMPV6 && fs_icmp6_is_control(st->ev.sport))
		return 0;
	return 1;
}

static __always_inline __u64 fs_ct_lifetime_ns(const struct fs_ct_entry *e, __u8 proto)
{
	__u64 seconds = FS_CT_LIFETIME_NONTCP;

	if (proto == IPPROTO_TCP) {
		if (e->closing[0] || e->closing[1])
			seconds = FS_CT_CLOSE_TIMEOUT;
		else if (!e->seen[FS_CT_REPLY])
			seconds = FS_CT_SYN_TIMEOUT;
		else
			seconds = FS_CT_LIFETIME_TCP;
	}
	return seconds * 1000000000ULL;
}

/* Whether a TCP packet that makes a new entry is no opening (a SYN without ACK) but a packet of a connection
 * already going: one opened before the agent started, with no tables left behind, or whose entry was evicted.
 * Nothing in it says which end opened the connection (the entry takes this packet's source for the opener only
 * because it must take one), so its packets report no direction rather than maybe the wrong one. */
static __always_inline int fs_ct_midstream(const struct fs_state *st)
{
	return st->ev.l4_proto == IPPROTO_TCP && (st->ev.tcp_flags & (FS_TCP_SYN | FS_TCP_ACK)) != FS_TCP_SYN;
}

/* A SYN without ACK on a connection that is closing starts it over. */
static __always_inline int fs_ct_reopens(const struct fs_ct_entry *e, const struct fs_state *st)
{
	__u8 flags = st->ev.tcp_flags;

	return st->ev.l4_proto == IPPROTO_TCP && (flags & FS_TCP_SYN) && !(flags & FS_TCP_ACK) &&
	       (e->closing[0] || e->closing[1]);
}

/* Start the connection `key` anew with this packet, whose source is key end `end`, in a slot of its window
 * (cttable.h): the connection that had the slot (this one, stale or closing and reopened, or another one)
 * first reports what it counted and never reported. 0 when another CPU has the slot. */
static __always_inline struct fs_ct_entry *fs_ct_create(struct fs_state *st, __u8 end, __u64 now)
{
	int ipv6 = st->ev.flags & FS_F_IPV6;
	struct fs_ct_slot_ref slot;
	union fs_ct_key old;
	struct fs_ct_entry *e;
	int taken;

	taken = fs_ct_take(&slot, &st->ct_key, ipv6, &old);
	if (!taken)
		return 0;
	e = slot.e;
	if (taken == 2)
		fs_report_pending(&old, ipv6, e, now, 0);
	fs_identities(st, FS_ID_SRC | FS_ID_DST);
	__builtin_memset(e, 0, sizeof(*e));
	e->initiator = end;
	e->identity[FS_CT_ORIGINAL] = st->ev.src_identity;
	e->identity[FS_CT_REPLY] = st->ev.dst_identity;
	e->expires = now + FS_CT_SYN_TIMEOUT * 1000000000ULL;
	e->dir[FS_CT_ORIGINAL].born_s = now / 1000000000ULL;
	fs_ct_publish(&slot, &st->ct_key, ipv6);
	return e;
}

/* Look the packet's connection up (creating it when new): sets ct_key, ct_state, ct_dir, the event's
 * trace_reason and reply flags. Returns the entry, or 0 when the packet is not tracked (or ct is full). */
static __always_inline struct fs_ct_entry *fs_ct_lookup(struct __sk_buff *skb, struct fs_state *st, __u64 now)
{
	struct fs_ct_entry *e;
	__u16 sport = st->ev.sport, dport = st->ev.dport;
	__u8 proto = st->ev.l4_proto;
	int ipv6 = st->ev.flags & FS_F_IPV6;
	int end;

	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		__u8 type = st->ev.sport;

		if (fs_icmp_is_error(proto, type)) {
			end = fs_ct_quoted_key(skb, st, &st->ct_key);
			e = end >= 0 ? fs_ct_find(&st->ct_key, ipv6) : 0;
			if (e) {
				/* the error goes back against the quoted packet */
				st->ct_dir = (end == e->initiator) ? FS_CT_REPLY : FS_CT_ORIGINAL;
				st->ct_state = FS_CT_RELATED;
				goto found;
			}
		}
		fs_icmp_ports(skb, st->l4_off, type, &sport, &dport);
	} else if (!(st->ev.flags & FS_F_L4)) {
		sport = 0; /* a protocol without ports: the address pair is the connection */
		dport = 0;
	}

	end = fs_ct_key_fill(&st->ct_key, ipv6, st->ev.saddr, sport, st->ev.daddr, dport, proto, st->ev.ep_id);
	e = fs_ct_find(&st->ct_key, ipv6);
	if (!e || e->expires < now || fs_ct_reopens(e, st)) {
		e = fs_ct_create(st, end, now);
		if (!e)
			return 0;
		if (fs_ct_midstream(st))
			e->flags = FS_CT_F_MIDSTREAM;
		st->ct_dir = FS_CT_ORIGINAL;
		st->ct_state = FS_CT_NEW;
	} else {
		st->ct_dir = (end == e->initiator) ? FS_CT_ORIGINAL : FS_CT_REPLY;
		st->ct_state = st->ct_dir == FS_CT_ORIGINAL ? FS_CT_ESTABLISHED : FS_CT_REPLY_STATE;
	}
found:
	if (e->flags & FS_CT_F_MIDSTREAM) /* no direction known: no reason that would tell one either */
		return e;
	st->ev.trace_reason = st->ct_state;
	st->ev.flags |= FS_F_REPLY_KNOWN | (st->ct_dir == FS_CT_REPLY ? FS_F_REPLY : 0);
	return e;
}

#endif /* FLOWSCOPE_CONNTRACK_H */
