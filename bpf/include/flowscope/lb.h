/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Services: load-balancing in the datapath, as Cilium's kube-proxy replacement does without socket LB: per
 * packet, at the tc hooks (docs/reference/cilium-datapath.md, lb4/lb6 and reverse NAT).
 *
 * A packet leaving a pod (from-container) to a frontend (a ClusterIP and port) gets one of the frontend's
 * backends as its destination: the backend is a hash of the packet's 5-tuple modulo the backend count, so every
 * packet of a connection goes to the same backend as long as the backend set does not change (no per-connection
 * memory of the choice: a changed set may move a connection). `lb_reverse` remembers the translation under the
 * tuple the reply carries; the reply, arriving at the client's to-container, gets the frontend back as its
 * source. Conntrack and policy see the backend both ways (the packet as it is on the node's wire); the event
 * shows the frontend where the translation happened (see fs_lb_event).
 *
 * Cost: nothing for a packet while no frontend exists (`cfg.services_active` 0: the parse stages skip
 * stage_lb); otherwise one hash lookup per TCP/UDP/SCTP packet at from-container (lb_frontends) and at
 * to-container (lb_reverse); at the node's device, one or two (nodeport.h: np_reverse, then lb_frontends coming
 * in); an ICMP error at to-container, one (lb_reverse, by its quote: fs_lb_reverse_icmp); other points and
 * other protocols skip the stage (ICMP echo too: services are L4). A new translation sends one debug event
 * (fs_lb_debug).
 *
 * This file: the tables, what every translation needs, and what the other stages ask (the event's encoding,
 * conntrack's view); the translations themselves are lb_nat.h's (ClusterIP, hairpin), lb_icmp.h's (ICMP errors)
 * and nodeport.h's.
 */
#ifndef FLOWSCOPE_LB_H
#define FLOWSCOPE_LB_H

#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

#include "flowscope/drop.h"
#include "flowscope/maps.h"
#include "flowscope/parse.h"
#include "flowscope/state.h"

#define FS_LB_FRONTENDS_MAX 1024 /* frontends (address, port, protocol) at once; the agent validates against it */
#define FS_LB_BACKENDS_MAX 64    /* backends per frontend */
#ifndef FS_LB_REVERSE_MAX
#define FS_LB_REVERSE_MAX 65536 /* translated connections remembered for their replies (an LRU) */
#endif

/* An event of a translated packet: policy_flags (otherwise only a policy verdict's) carries this bit, and rule
 * (likewise) the frontend id. common/names.py XLATED_FLAG mirrors it. */
#define FS_PF_XLATED 0x80

#define FS_LB_NODEPORT 0x80 /* fs_lb_key.family: a NodePort frontend (looked up at from-netdev) */
/* fs_lb_frontend.flags: which generation of slots holds its backends. The agent writes a changed backend set
 * into the other generation, then flips this bit, then deletes the old slots: a packet sees one set whole. */
#define FS_LB_F_GEN 0x01
#define FS_LB_SLOT_GEN 0x8000 /* fs_lb_backend_key.slot: the generation bit */

/* st->lb_xlate: what stage_lb did to the packet */
#define FS_LB_NONE 0
#define FS_LB_FRONTEND 1 /* it went to a frontend without backends: dropped, untranslated */
#define FS_LB_DNAT 2     /* destination translated here: st->lb_addr/lb_port hold the frontend it went to */
#define FS_LB_RNAT 3     /* source translated back here: st->lb_addr/lb_port hold the frontend it now comes from */
#define FS_LB_CONN 4     /* a packet of a connection this node translated, past the hook that did (its conntrack
                          * entry keeps the frontend): its events carry the frontend too, addresses as they are */
#define FS_LB_RNAT_ICMP 5 /* an ICMP error about a translated connection, translated back here: its quote names
                           * the frontend (st->lb_addr/lb_port), no longer the backend (st->lb_backend/_port) */

#define FS_LB_ICMP_QUOTE 8 /* an ICMP error quotes the offending packet this far into its own header */

/* Ports in host order; addresses as in the event (IPv4 in the first 4 bytes, the rest zero). */
struct fs_lb_key {
	__u8 addr[16];
	__u16 port;
	__u8 proto;
	__u8 family; /* 4 or 6, | FS_LB_NODEPORT */
};

struct fs_lb_frontend {
	__u16 id;    /* the agent's frontend id, 1..65535: carried in events */
	__u16 count; /* backends; 0: SERVICE_BACKEND_NOT_FOUND */
	__u32 flags; /* FS_LB_F_* */
};

struct fs_lb_backend_key {
	__u16 id;
	__u16 slot; /* 0..count-1, | FS_LB_SLOT_GEN for generation 1 */
};

struct fs_lb_backend {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 pad;
};

/* A translated connection as its reply carries it: from the backend to the client. */
struct fs_lb_reverse_key {
	__u8 backend[16];
	__u8 client[16];
	__u16 backend_port;
	__u16 client_port;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct fs_lb_reverse {
	__u8 addr[16]; /* the frontend the client asked for */
	__u16 port;
	__u16 id;
	__u32 pad;
};

/* A new translation as a debug event (FS_EVENT_DEBUG, Cilium's MessageTypeDebug), subtype Cilium's
DBG_LB4/LB6_LOOKUP_BACKEND_SLOT_SUCCESS: the header holds the connection as the client sent it (source, the
frontend as destination, the frontend id in `rule`), the data this: the backend chosen. */
#define FS_DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS 25
#define FS_DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS 33

struct fs_lb_debug {
	__u8 backend[16];
	__u16 backend_port; /* host order */
	__u16 pad[3];
};

BPF_HASH(lb_frontends, struct fs_lb_key, struct fs_lb_frontend, FS_LB_FRONTENDS_MAX);
BPF_HASH(lb_backends, struct fs_lb_backend_key, struct fs_lb_backend, 2 * FS_LB_FRONTENDS_MAX * FS_LB_BACKENDS_MAX);
BPF_TABLE("lru_hash", struct fs_lb_reverse_key, struct fs_lb_reverse, lb_reverse, FS_LB_REVERSE_MAX);

/* ICMP errors whose quote stage_lb may translate back: destination unreachable (port unreachable is the one a
 * UDP client waits for), fragmentation needed and time exceeded; ICMPv6's unreachable, packet too big and
 * time exceeded. ICMP's `type` as parse.h leaves it in ev.sport. Echo, like any other ICMP, is no service's:
 * services are L4 (Cilium's lb4/lb6 look up no ICMP), so an echo to a ClusterIP passes untranslated. */
static __always_inline int fs_lb_icmp_error(__u8 proto, __u16 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 3 || type == 11;
	return type >= 1 && type <= 3;
}

/* Whether stage_lb has anything to do with the packet: a TCP, UDP or SCTP packet with ports, leaving a pod
 * (a frontend?) or entering one (a reply to translate back?), or an ICMP error entering one (about a translated
 * connection?), while some frontend exists. */
static __always_inline int fs_lb_wanted(const struct fs_state *st)
{
	__u8 proto = st->ev.l4_proto;

	if (!st->cfg.services_active || !(st->ev.flags & FS_F_L4))
		return 0;
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return st->point == FS_TRACE_TO_LXC && fs_lb_icmp_error(proto, st->ev.sport);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		return 0;
	return st->point == FS_TRACE_FROM_LXC || st->point == FS_TRACE_TO_LXC ||
	       st->point == FS_TRACE_FROM_NETWORK || st->point == FS_TRACE_TO_NETWORK ||
	       st->point == FS_TRACE_FROM_OVERLAY; /* NodePort (nodeport.h) */
}

/* The backend slot of a connection: its 5-tuple hashed (seeded as the conntrack tables are, so a restarted agent
 * that continues them keeps the choice) modulo the backend count. */
static __always_inline __u16 fs_lb_slot(const struct fs_state *st, __u16 count)
{
	const __u64 *s = (const __u64 *)st->ev.saddr, *d = (const __u64 *)st->ev.daddr;
	__u64 words[5] = {s[0], s[1], d[0], d[1], ((__u64)st->ev.sport << 24) | ((__u64)st->ev.dport << 8) | st->ev.l4_proto};
	__u64 h = FS_CT_SEED;

#pragma unroll
	for (int i = 0; i < 5; i++) {
		h = (h ^ words[i]) * 0x9E3779B97F4A7C15ULL;
		h ^= h >> 29;
	}
	return (__u32)(h >> 32) % count;
}

/* The backend of the packet's connection among the frontend's; NULL when it has none (the agent writes slots
 * before the count, so a counted slot is always there). */
static __always_inline struct fs_lb_backend *fs_lb_pick(const struct fs_state *st, const struct fs_lb_frontend *fe)
{
	struct fs_lb_backend_key bkey;

	if (!fe->count)
		return NULL;
	bkey.id = fe->id;
	bkey.slot = fs_lb_slot(st, fe->count) | ((fe->flags & FS_LB_F_GEN) ? FS_LB_SLOT_GEN : 0);
	return lb_backends.lookup(&bkey);
}

/* Put `to_addr`:`to_port` (host order) in place of the packet's destination (`dst`) or source, whose current
 * values are `from_addr`:`from_port`, and correct the checksums: the IPv4 header's, and TCP's or UDP's over the
 * pseudo-header and the port (BPF_F_PSEUDO_HDR keeps a CHECKSUM_PARTIAL packet right; a UDP checksum of 0,
 * "none", stays 0). SCTP's CRC32c covers no addresses; its ports are never translated (the agent refuses it).
 * 0, or -1 when the packet could not be written. */
static __always_inline int fs_lb_rewrite(struct __sk_buff *skb, struct fs_state *st, int dst, const __u8 *from_addr,
					 __u16 from_port, const __u8 *to_addr, __u16 to_port)
{
	int ipv6 = st->ev.flags & FS_F_IPV6;
	__u32 addr_off = st->l3_off + (ipv6 ? (dst ? 24 : 8) : (dst ? 16 : 12));
	__u32 port_off = st->l4_off + (dst ? 2 : 0);
	__u16 old_port = fs_ntohs(from_port), new_port = fs_ntohs(to_port); /* network order */
	__u64 mangled = 0;
	__u32 csum_off = 0;
	__s64 diff;

	switch (st->ev.l4_proto) {
	case IPPROTO_TCP:
		csum_off = st->l4_off + 16;
		break;
	case IPPROTO_UDP:
		csum_off = st->l4_off + 6;
		mangled = BPF_F_MARK_MANGLED_0;
		break;
	}
	if (ipv6) {
		diff = bpf_csum_diff((__be32 *)from_addr, 16, (__be32 *)to_addr, 16, 0);
		if (bpf_skb_store_bytes(skb, addr_off, (void *)to_addr, 16, 0) < 0)
			return -1;
	} else {
		diff = bpf_csum_diff((__be32 *)from_addr, 4, (__be32 *)to_addr, 4, 0);
		if (bpf_skb_store_bytes(skb, addr_off, (void *)to_addr, 4, 0) < 0 ||
		    bpf_l3_csum_replace(skb, st->l3_off + 10, 0, diff, 0) < 0)
			return -1;
	}
	if (csum_off && bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR | mangled) < 0)
		return -1;
	if (old_port == new_port)
		return 0;
	if (csum_off && bpf_l4_csum_replace(skb, csum_off, old_port, new_port, sizeof(__u16) | mangled) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0) < 0 ? -1 : 0;
}

static __always_inline int fs_lb_addr_eq(const __u8 *a, const __u8 *b)
{
	return ((const __u64 *)a)[0] == ((const __u64 *)b)[0] && ((const __u64 *)a)[1] == ((const __u64 *)b)[1];
}

/* The reverse-NAT entry of the packet's connection, the packet going from the backend to the client
 * (`from_backend`) or the other way; when found, st->lb_addr/lb_port/lb_frontend hold its frontend. */
static __always_inline struct fs_lb_reverse *fs_lb_reverse_of(struct fs_state *st, int from_backend)
{
	struct fs_lb_reverse_key rkey = {};
	struct fs_lb_reverse *rev;

	fs_addr_copy(rkey.backend, from_backend ? st->ev.saddr : st->ev.daddr);
	fs_addr_copy(rkey.client, from_backend ? st->ev.daddr : st->ev.saddr);
	rkey.backend_port = from_backend ? st->ev.sport : st->ev.dport;
	rkey.client_port = from_backend ? st->ev.dport : st->ev.sport;
	rkey.proto = st->ev.l4_proto;
	rkey.family = (st->ev.flags & FS_F_IPV6) ? 6 : 4;
	rev = lb_reverse.lookup(&rkey);
	if (rev) {
		fs_addr_copy(st->lb_addr, rev->addr);
		st->lb_port = rev->port;
		st->lb_frontend = rev->id;
	}
	return rev;
}

/* The debug event of a new translation: once per connection (per reverse-NAT entry written), so it costs a
connection's first packet one more ring record and the others nothing. A full ring loses it silently: the flows
of the connection name the service anyway. */
/* Conntrack reads an ICMP error's quote to find the connection it is about: after fs_lb_reverse_icmp, the
 * connection's entry still holds the backend the quote named before. */
static __always_inline void fs_lb_unquote(const struct fs_state *st, __u8 *dst, __u16 *dport)
{
	if (st->lb_xlate != FS_LB_RNAT_ICMP)
		return;
	fs_addr_copy(dst, st->lb_backend);
	*dport = st->lb_backend_port;
}

/* Put an address and port (host order) back into the event's captured bytes, as the destination (`dst`) or the
 * source, where the capture reaches them. */
static __always_inline void fs_lb_capture_put(const struct fs_state *st, struct fs_event *ev, __u64 caplen, int dst,
					      const __u8 *addr, __u16 port)
{
	__u64 off = st->l3_off + ((ev->flags & FS_F_IPV6) ? (dst ? 24 : 8) : (dst ? 16 : 12));

	asm volatile("" : "+r"(off));
	if ((ev->flags & FS_F_IPV6) && off <= FS_CAPLEN - 16 && off + 16 <= caplen)
		__builtin_memcpy(ev->data + off, addr, 16);
	else if (!(ev->flags & FS_F_IPV6) && off <= FS_CAPLEN - 4 && off + 4 <= caplen)
		__builtin_memcpy(ev->data + off, addr, 4);
	off = st->l4_off + (dst ? 2 : 0);
	asm volatile("" : "+r"(off));
	if (off <= FS_CAPLEN - 2 && off + 2 <= caplen) {
		ev->data[off] = port >> 8;
		ev->data[off + 1] = port & 0xff;
	}
}

/* The event (trace or drop) of a packet stage_lb translated, or found a frontend for: FS_PF_XLATED and the
 * frontend id; at from-container the packet as it entered (the frontend as destination, in the header and in
 * the captured bytes up to `caplen`, checksums left as translated), at to-container as it leaves (the frontend
 * as source: the captured bytes are that already). A policy verdict is about the backend: left alone. */
static __always_inline void fs_lb_event(const struct fs_state *st, struct fs_event *ev, __u64 caplen)
{
	if (ev->type == FS_EVENT_POLICY_VERDICT)
		return;
	ev->policy_flags |= FS_PF_XLATED;
	ev->rule = st->lb_frontend;
	if (st->lb_xlate == FS_LB_CONN)
		return;
	if (st->lb_xlate == FS_LB_RNAT_ICMP) {
		if (fs_lb_addr_eq(ev->saddr, st->lb_backend))
			fs_addr_copy(ev->saddr, st->lb_addr);
		return;
	}
	if (st->lb_xlate == FS_LB_RNAT) {
		fs_addr_copy(ev->saddr, st->lb_addr);
		ev->sport = st->lb_port;
		if (st->lb_snat) { /* a NodePort reply (nodeport.h): back to the client, in the captured bytes already */
			fs_addr_copy(ev->daddr, st->lb_peer);
			ev->dport = st->lb_peer_port;
		}
		return;
	}
	if (st->lb_xlate != FS_LB_DNAT)
		return;
	fs_addr_copy(ev->daddr, st->lb_addr);
	ev->dport = st->lb_port;
	fs_lb_capture_put(st, ev, caplen, 1, st->lb_addr, st->lb_port);
	if (st->lb_snat) { /* a NodePort SNAT (nodeport.h): the client was the source */
		fs_addr_copy(ev->saddr, st->lb_peer);
		ev->sport = st->lb_peer_port;
		fs_lb_capture_put(st, ev, caplen, 0, st->lb_peer, st->lb_peer_port);
	}
}

/* Conntrack keeps the frontend of a connection translated on this node, so that the connection's other packets
 * on the node (to-network after the DNAT, the replies from the network before the reverse NAT: each hook's
 * conntrack entry of its own) name the service too. An entry looks the reverse-NAT map up once, when it first
 * sees a packet while services exist. */
static __always_inline void fs_lb_remember(struct fs_state *st, struct fs_ct_entry *e)
{
	if (st->lb_xlate == FS_LB_DNAT) {
		if (e->frontend != st->lb_frontend)
			e->frontend = st->lb_frontend;
		if (!e->lb_checked) /* the side's other hook keeps it (NodePort: from- and to-network share an entry) */
			e->lb_checked = 1;
		return;
	}
	if (st->lb_xlate)
		return;
	if (!e->lb_checked) {
		e->lb_checked = 1;
		e->frontend = fs_lb_reverse_of(st, st->ct_dir == FS_CT_REPLY) ? st->lb_frontend : 0;
	}
	if (e->frontend) {
		st->lb_xlate = FS_LB_CONN;
		st->lb_frontend = e->frontend;
	}
}

#endif /* FLOWSCOPE_LB_H */
