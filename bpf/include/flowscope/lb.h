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

/* The source of a hairpin connection (fs_lb_hairpin) as the pod sees it. IPv4: Cilium's IPV4_LOOPBACK,
 * 169.254.42.1. IPv6: fd96::a9fe:2a01 (169.254.42.1 in the last 32 bits), a ULA beside the services' range
 * (fd96::/112 in the lab) that no pod, node or ClusterIP ever gets, so no connection of anyone else can share
 * its tuples. Not fe80::1, which Cilium first took (service_loopback_ipv6) and which cilium/cilium#42460 showed
 * failing: a link-local source makes the pod answer on-link, by neighbour discovery, instead of through its
 * default route (here fe80::1 is even that route's gateway, the host side of the pod's lxc); a global-scope
 * address outside the pod's /64 goes out through the lxc, where fs_lb_hairpin_reply finds it. */
static __always_inline void fs_lb_loopback(__u8 *addr, int ipv6)
{
	__u8 v4[16] __attribute__((aligned(8))) = {169, 254, 42, 1};
	__u8 v6[16] __attribute__((aligned(8))) = {0xfd, 0x96, [12] = 169, 254, 42, 1};

	fs_addr_copy(addr, ipv6 ? v6 : v4);
}

/* Hairpin, as Cilium does it: a pod whose connection to a frontend goes to itself would get its own address as
 * the source and answer itself in its own stack, never recognising the reply; the source becomes the loopback
 * address (fs_lb_loopback) instead, so the pod answers that, out through its from-container, where
 * fs_lb_hairpin_reply undoes both translations. 0, or -1 when the packet could not be written. */
static __always_inline int fs_lb_hairpin(struct __sk_buff *skb, struct fs_state *st)
{
	__u8 loopback[16] __attribute__((aligned(8)));

	if (!fs_lb_addr_eq(st->ev.saddr, st->ev.daddr))
		return 0;
	fs_lb_loopback(loopback, st->ev.flags & FS_F_IPV6);
	if (fs_lb_rewrite(skb, st, 0, st->ev.saddr, st->ev.sport, loopback, st->ev.sport) < 0)
		return -1;
	fs_addr_copy(st->lb_peer, st->ev.saddr);
	st->lb_peer_port = st->ev.sport;
	fs_addr_copy(st->ev.saddr, loopback);
	st->lb_snat = 1;
	st->ids &= ~FS_ID_SRC;
	return 0;
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

/* From-container, to the loopback address: a hairpin connection's reply, from the pod to itself. It comes from the
 * frontend again and goes to the pod; conntrack sees it as it left the pod. Returns a drop reason, or 0. */
static __always_inline __u32 fs_lb_hairpin_reply(struct __sk_buff *skb, struct fs_state *st)
{
	if (!fs_lb_reverse_of(st, 1))
		return 0;
	if (fs_lb_rewrite(skb, st, 0, st->ev.saddr, st->ev.sport, st->lb_addr, st->lb_port) < 0 ||
	    fs_lb_rewrite(skb, st, 1, st->ev.daddr, st->ev.dport, st->ev.saddr, st->ev.dport) < 0)
		return FS_DROP_WRITE_ERROR;
	fs_addr_copy(st->lb_peer, st->ev.saddr);
	st->lb_peer_port = st->ev.dport;
	st->lb_snat = 1;
	st->lb_xlate = FS_LB_RNAT;
	return 0;
}

/* The debug event of a new translation: once per connection (per reverse-NAT entry written), so it costs a
connection's first packet one more ring record and the others nothing. A full ring loses it silently: the flows
of the connection name the service anyway. */
static __always_inline void fs_lb_debug(const struct fs_state *st, const struct fs_lb_reverse_key *rkey)
{
	struct fs_event *ev = events.ringbuf_reserve(sizeof(struct fs_event));
	struct fs_lb_debug *dbg;

	if (!ev)
		return;
	__builtin_memcpy(ev, &st->ev, FS_EVENT_HDR_LEN);
	ev->ts = bpf_ktime_get_ns();
	ev->type = FS_EVENT_DEBUG;
	ev->subtype = (st->ev.flags & FS_F_IPV6) ? FS_DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS
						 : FS_DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS;
	ev->version = FS_EVENT_VERSION;
	ev->cpu = bpf_get_smp_processor_id();
	ev->rule = st->lb_frontend;
	fs_addr_copy(ev->daddr, st->lb_addr);
	ev->dport = st->lb_port;
	ev->len_cap = sizeof(*dbg);
	dbg = (struct fs_lb_debug *)ev->data;
	fs_addr_copy(dbg->backend, rkey->backend);
	dbg->backend_port = rkey->backend_port;
	dbg->pad[0] = dbg->pad[1] = dbg->pad[2] = 0;
	events.ringbuf_submit(ev, 0);
}

/* From-container: a packet to a frontend goes to one of its backends. Conntrack, policy and every later hook see
 * the backend; the reply finds its way back through lb_reverse. Returns a drop reason, or 0. */
static __always_inline __u32 fs_lb_dnat(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_lb_key key = {};
	struct fs_lb_reverse_key rkey = {};
	struct fs_lb_reverse rev = {};
	struct fs_lb_frontend *fe;
	struct fs_lb_backend *be;
	struct fs_lb_reverse *known;
	int ipv6 = st->ev.flags & FS_F_IPV6;

	fs_lb_loopback(key.addr, ipv6); /* the key's address holds the loopback until the frontend's is known */
	if (fs_lb_addr_eq(st->ev.daddr, key.addr))
		return fs_lb_hairpin_reply(skb, st);
	fs_addr_copy(key.addr, st->ev.daddr);
	key.port = st->ev.dport;
	key.proto = st->ev.l4_proto;
	key.family = ipv6 ? 6 : 4;
	fe = lb_frontends.lookup(&key);
	if (!fe)
		return 0;
	st->lb_frontend = fe->id;
	st->lb_xlate = FS_LB_FRONTEND;
	be = fs_lb_pick(st, fe);
	if (!be)
		return FS_DROP_SERVICE_BACKEND_NOT_FOUND;
	if (fs_lb_rewrite(skb, st, 1, st->ev.daddr, st->ev.dport, be->addr, be->port) < 0)
		return FS_DROP_WRITE_ERROR;

	fs_addr_copy(st->lb_addr, st->ev.daddr);
	st->lb_port = st->ev.dport;
	st->lb_xlate = FS_LB_DNAT;
	fs_addr_copy(st->ev.daddr, be->addr);
	st->ev.dport = be->port;
	st->ids &= ~FS_ID_DST; /* the backend's identity, when something asks */
	if (fs_lb_hairpin(skb, st) < 0)
		return FS_DROP_WRITE_ERROR;

	fs_addr_copy(rkey.backend, be->addr);
	fs_addr_copy(rkey.client, st->ev.saddr);
	rkey.backend_port = be->port;
	rkey.client_port = st->ev.sport;
	rkey.proto = st->ev.l4_proto;
	rkey.family = key.family;
	known = lb_reverse.lookup(&rkey); /* refreshes it in the LRU */
	if (!known || known->id != fe->id) {
		fs_addr_copy(rev.addr, st->lb_addr);
		rev.port = st->lb_port;
		rev.id = fe->id;
		lb_reverse.update(&rkey, &rev);
		fs_lb_debug(st, &rkey);
	}
	return 0;
}

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

/* Conntrack reads an ICMP error's quote to find the connection it is about: after fs_lb_reverse_icmp, the
 * connection's entry still holds the backend the quote named before. */
static __always_inline void fs_lb_unquote(const struct fs_state *st, __u8 *dst, __u16 *dport)
{
	if (st->lb_xlate != FS_LB_RNAT_ICMP)
		return;
	fs_addr_copy(dst, st->lb_backend);
	*dport = st->lb_backend_port;
}

/* To-container: a reply from a backend to a client that asked a frontend gets the frontend back as its source.
 * Conntrack and policy still see the backend (the client's connection entry is the translated one); the event
 * shows the frontend (fs_lb_event). Returns a drop reason, or 0. */
static __always_inline __u32 fs_lb_reverse_nat(struct __sk_buff *skb, struct fs_state *st)
{
	if (st->ev.l4_proto == IPPROTO_ICMP || st->ev.l4_proto == IPPROTO_ICMPV6)
		return fs_lb_reverse_icmp(skb, st);
	if (!fs_lb_reverse_of(st, 1))
		return 0;
	if (fs_lb_rewrite(skb, st, 0, st->ev.saddr, st->ev.sport, st->lb_addr, st->lb_port) < 0)
		return FS_DROP_WRITE_ERROR;
	st->lb_xlate = FS_LB_RNAT;
	return 0;
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
