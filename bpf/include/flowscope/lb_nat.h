/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Services: the translations stage_lb makes (lb.h has the tables and what every translation needs): a packet to a
 * ClusterIP goes to a backend (fs_lb_dnat), with hairpin when the backend is the pod itself, and each new
 * translation is a debug event; a reply gets the frontend back as its source (fs_lb_reverse_nat), an ICMP error
 * about the connection its quote too (lb_icmp.h). NodePort is nodeport.h's.
 */
#ifndef FLOWSCOPE_LB_NAT_H
#define FLOWSCOPE_LB_NAT_H

#include "flowscope/lb.h"
#include "flowscope/lb_icmp.h"

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

#endif /* FLOWSCOPE_LB_NAT_H */
