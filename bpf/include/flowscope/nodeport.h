/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodePort, as Cilium's kube-proxy replacement serves it at cil_from_netdev (docs/reference/cilium-datapath.md):
 * a packet from the network to one of this node's addresses at a NodePort frontend (lb_frontends, key family
 * | FS_LB_NODEPORT: the agent writes one per node address) goes to one of the frontend's backends.
 *
 * - A backend on this node (the ipcache names its endpoint): DNAT only. The reply leaves the pod and then this
 *   node by its device, where to-network gives it the node address and NodePort back as its source.
 * - A backend on another node: DNAT and SNAT, the source becoming the node address the client asked (with the
 *   client's port when no other connection to that backend holds it, else another), so that the backend answers
 *   this node. The reply, from-network (or from-overlay), gets both back: the node address and NodePort as its
 *   source, the client as its destination; the kernel forwards it to the client.
 *
 * Two LRU maps remember NodePort connections: `np_reverse` as their replies carry them (from the backend to the
 * client, or to the SNAT address and port), `np_snat` the SNAT port a client's connection was given, so that
 * all its packets keep it. Conntrack sees the packets as they are on the way to and from the backend.
 */
#ifndef FLOWSCOPE_NODEPORT_H
#define FLOWSCOPE_NODEPORT_H

#include "flowscope/identity.h"
#include "flowscope/lb.h"

#ifndef FS_NP_CONNS_MAX
#define FS_NP_CONNS_MAX 65536 /* NodePort connections remembered (each map, an LRU) */
#endif
#define FS_NP_PORT_TRIES 8      /* SNAT ports tried: the client's, then others from the ephemeral range */
#define FS_NP_PORT_MIN 32768    /* SNAT ports other than the client's: [FS_NP_PORT_MIN, + FS_NP_PORT_SPAN) */
#define FS_NP_PORT_SPAN 28232

/* A NodePort connection as its reply carries it: from the backend to `peer`, the client (local backend) or this
 * node's address and SNAT port (remote backend). */
struct fs_np_key {
	__u8 backend[16];
	__u8 peer[16];
	__u16 backend_port;
	__u16 peer_port;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct fs_np_entry {
	__u8 client[16];
	__u8 frontend[16]; /* the node address the client asked */
	__u16 client_port;
	__u16 frontend_port;
	__u16 id;
	__u8 snat; /* the source was translated too: the reply comes to this node's address */
	__u8 pad;
};

/* A client's connection to a NodePort frontend, as it arrives, for the SNAT port it was given. */
struct fs_np_conn {
	__u8 client[16];
	__u8 frontend[16];
	__u16 client_port;
	__u16 frontend_port;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

BPF_TABLE("lru_hash", struct fs_np_key, struct fs_np_entry, np_reverse, FS_NP_CONNS_MAX);
BPF_TABLE("lru_hash", struct fs_np_conn, __u16, np_snat, FS_NP_CONNS_MAX);

static __always_inline void fs_np_key_of(struct fs_np_key *key, const __u8 *backend, __u16 backend_port,
					 const __u8 *peer, __u16 peer_port, const struct fs_state *st)
{
	fs_addr_copy(key->backend, backend);
	fs_addr_copy(key->peer, peer);
	key->backend_port = backend_port;
	key->peer_port = peer_port;
	key->proto = st->ev.l4_proto;
	key->family = (st->ev.flags & FS_F_IPV6) ? 6 : 4;
}

/* Whether the address is a pod on this node. */
static __always_inline int fs_np_local(const __u8 *addr, int ipv6)
{
	struct fs_ipcache_value *value = fs_ipcache_lookup(addr, ipv6);

	return value && value->ep_id;
}

/* The SNAT port of the client's connection (`conn`) to `be`: the one it was given, else the first of the
 * client's port and a few others that no other connection to that backend holds; 0 when all are held. */
static __always_inline __u16 fs_np_snat_port(const struct fs_state *st, struct fs_np_conn *conn,
					     const struct fs_lb_backend *be)
{
	struct fs_np_key key = {};
	struct fs_np_entry *held;
	__u16 *given = np_snat.lookup(conn);
	__u16 port = st->ev.sport;
	__u32 hash = fs_lb_slot(st, 0xffff);

	if (given)
		return *given;
	fs_np_key_of(&key, be->addr, be->port, st->ev.daddr, 0, st);
#pragma unroll
	for (int i = 0; i < FS_NP_PORT_TRIES; i++) {
		key.peer_port = port;
		held = np_reverse.lookup(&key);
		if (!held)
			return port;
		port = FS_NP_PORT_MIN + (hash + i * 7919) % FS_NP_PORT_SPAN;
	}
	return 0;
}

/* From-network: a packet to a NodePort frontend of this node goes to a backend (and, when that is remote, comes
 * from this node). Returns a drop reason, or 0. */
static __always_inline __u32 fs_np_dnat(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_lb_key key = {};
	struct fs_np_key rkey = {};
	struct fs_np_entry entry = {};
	struct fs_np_conn conn = {};
	struct fs_lb_frontend *fe;
	struct fs_lb_backend *be;
	int ipv6 = st->ev.flags & FS_F_IPV6;
	__u16 port = 0;

	fs_addr_copy(key.addr, st->ev.daddr);
	key.port = st->ev.dport;
	key.proto = st->ev.l4_proto;
	key.family = (ipv6 ? 6 : 4) | FS_LB_NODEPORT;
	fe = lb_frontends.lookup(&key);
	if (!fe)
		return 0;
	st->lb_frontend = fe->id;
	st->lb_xlate = FS_LB_FRONTEND;
	be = fs_lb_pick(st, fe);
	if (!be)
		return FS_DROP_SERVICE_BACKEND_NOT_FOUND;

	fs_addr_copy(entry.client, st->ev.saddr);
	fs_addr_copy(entry.frontend, st->ev.daddr);
	entry.client_port = st->ev.sport;
	entry.frontend_port = st->ev.dport;
	entry.id = fe->id;
	if (!fs_np_local(be->addr, ipv6)) {
		fs_addr_copy(conn.client, st->ev.saddr);
		fs_addr_copy(conn.frontend, st->ev.daddr);
		conn.client_port = st->ev.sport;
		conn.frontend_port = st->ev.dport;
		conn.proto = st->ev.l4_proto;
		conn.family = ipv6 ? 6 : 4;
		port = fs_np_snat_port(st, &conn, be);
		if (!port)
			return FS_DROP_NAT_NO_MAPPING;
		entry.snat = 1;
	}
	if (fs_lb_rewrite(skb, st, 1, st->ev.daddr, st->ev.dport, be->addr, be->port) < 0)
		return FS_DROP_WRITE_ERROR;
	if (entry.snat && fs_lb_rewrite(skb, st, 0, st->ev.saddr, st->ev.sport, st->ev.daddr, port) < 0)
		return FS_DROP_WRITE_ERROR;

	fs_addr_copy(st->lb_addr, st->ev.daddr);
	st->lb_port = st->ev.dport;
	st->lb_xlate = FS_LB_DNAT;
	fs_addr_copy(st->ev.daddr, be->addr);
	st->ev.dport = be->port;
	st->ids &= ~FS_ID_DST;
	if (entry.snat) {
		st->lb_snat = 1;
		fs_addr_copy(st->lb_peer, st->ev.saddr);
		st->lb_peer_port = st->ev.sport;
		fs_addr_copy(st->ev.saddr, st->lb_addr);
		st->ev.sport = port;
		np_snat.update(&conn, &port);
	}
	fs_np_key_of(&rkey, be->addr, be->port, st->ev.saddr, st->ev.sport, st);
	np_reverse.update(&rkey, &entry);
	return 0;
}

/* The reply of a NodePort connection: at to-network from a local backend (source back to the node address and
 * NodePort), at from-network or from-overlay from a remote one (and destination back to the client). Conntrack
 * sees the reply as it arrived; the event shows it as it leaves (fs_lb_event). Returns a drop reason, or 0. */
static __always_inline __u32 fs_np_reverse_nat(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_np_key key = {};
	struct fs_np_entry *entry;
	int snat = st->point != FS_TRACE_TO_NETWORK;

	fs_np_key_of(&key, st->ev.saddr, st->ev.sport, st->ev.daddr, st->ev.dport, st);
	entry = np_reverse.lookup(&key);
	if (!entry || entry->snat != snat)
		return 0;
	fs_addr_copy(st->lb_addr, entry->frontend);
	st->lb_port = entry->frontend_port;
	st->lb_frontend = entry->id;
	if (fs_lb_rewrite(skb, st, 0, st->ev.saddr, st->ev.sport, st->lb_addr, st->lb_port) < 0)
		return FS_DROP_WRITE_ERROR;
	if (snat) {
		fs_addr_copy(st->lb_peer, entry->client);
		st->lb_peer_port = entry->client_port;
		if (fs_lb_rewrite(skb, st, 1, st->ev.daddr, st->ev.dport, st->lb_peer, st->lb_peer_port) < 0)
			return FS_DROP_WRITE_ERROR;
		st->lb_snat = 1;
	}
	st->lb_xlate = FS_LB_RNAT;
	return 0;
}

/* stage_lb at the node's device: a reply to translate back first, else a new packet to a NodePort frontend. */
static __always_inline __u32 fs_np_stage(struct __sk_buff *skb, struct fs_state *st)
{
	__u32 reason = fs_np_reverse_nat(skb, st);

	if (reason || st->lb_xlate || st->point == FS_TRACE_TO_NETWORK || st->point == FS_TRACE_FROM_OVERLAY)
		return reason;
	return fs_np_dnat(skb, st);
}

#endif /* FLOWSCOPE_NODEPORT_H */
