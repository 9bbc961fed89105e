/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flowscope's datapath: tc programs that observe packets and report them as struct fs_event records.
 *
 * Entry programs (one per hook, like Cilium's) parse the L2 header and tail-call the stage for the ethertype;
 * the IP stages parse L3/L4 and resolve identities, then hand over to FS_NEXT_AFTER_PARSE, which for now is the
 * stage that emits the trace. Every program only reads the packet and lets it pass, except when a tail call
 * misses: then the packet is reported as a MISSED_TAIL_CALL drop and dropped.
 *
 * bpf/README.md tells which program attaches where; observer/datapath/ compiles and loads this file.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

#include "flowscope/event.h"
#include "flowscope/config.h"
#include "flowscope/maps.h"
#include "flowscope/state.h"
#include "flowscope/emit.h"
#include "flowscope/tailcall.h"
#include "flowscope/identity.h"
#include "flowscope/parse.h"
#include "flowscope/ipv4.h"
#include "flowscope/ipv6.h"

/* Start a packet's state at observation point `point`: who is behind this interface, what the L2 header says,
 * and on to the stage for its ethertype. */
static __always_inline int fs_entry(struct __sk_buff *skb, __u8 point)
{
	struct fs_state *st = fs_state_get();
	struct fs_endpoint *ep;
	__u32 ifindex = skb->ifindex;

	if (!st)
		return TC_ACT_OK; /* cannot happen: a one-slot per-CPU array always has its slot */
	__builtin_memset(st, 0, sizeof(*st));
	st->point = point;
	st->ev.type = FS_EVENT_TRACE;
	st->ev.subtype = point;
	st->ev.version = FS_EVENT_VERSION;
	st->ev.verdict = FS_VERDICT_FORWARDED;
	st->ev.ifindex = ifindex;
	st->ev.len_orig = skb->len;
	st->ev.packets = 1;
	st->ev.bytes = skb->len;

	ep = endpoints.lookup(&ifindex);
	if (ep) {
		st->ev.ep_id = ep->ep_id;
		st->ep_identity = ep->identity;
		fs_endpoint_identity(st);
	}
	return fs_tail_call(skb, st, fs_parse_l2(skb, st));
}

/* On an endpoint's host-side veth, tc ingress: packets leaving the pod. */
int from_container(struct __sk_buff *skb)
{
	return fs_entry(skb, FS_TRACE_FROM_LXC);
}

/* On an endpoint's host-side veth, tc egress: packets going into the pod. */
int to_container(struct __sk_buff *skb)
{
	return fs_entry(skb, FS_TRACE_TO_LXC);
}

/* On the node's network device, tc ingress: packets from the network. */
int from_netdev(struct __sk_buff *skb)
{
	return fs_entry(skb, FS_TRACE_FROM_NETWORK);
}

/* On the node's network device, tc egress: packets to the network. */
int to_netdev(struct __sk_buff *skb)
{
	return fs_entry(skb, FS_TRACE_TO_NETWORK);
}

/* FS_CALL_IPV4 */
int stage_ipv4(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	if (fs_parse_ipv4(skb, st) == 0)
		fs_resolve_identities(st);
	return fs_tail_call(skb, st, FS_NEXT_AFTER_PARSE);
}

/* FS_CALL_IPV6 */
int stage_ipv6(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	if (fs_parse_ipv6(skb, st) == 0)
		fs_resolve_identities(st);
	return fs_tail_call(skb, st, FS_NEXT_AFTER_PARSE);
}

/* FS_CALL_OTHER: nothing more to parse, no addresses to look up; only the endpoint's side has an identity. */
int stage_other(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	return fs_tail_call(skb, st, FS_NEXT_AFTER_PARSE);
}

/* FS_CALL_SEND_TRACE: the last stage of a packet that passes. */
int stage_send_trace(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	fs_emit(skb, st);
	return TC_ACT_OK;
}
