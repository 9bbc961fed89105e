/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flowscope's datapath: tc programs that observe packets and report them as struct fs_event records.
 *
 * Entry programs (one per hook, like Cilium's) parse the L2 header and tail-call the stage for the ethertype;
 * the IP stages parse L3/L4 and resolve identities; then conntrack (state, direction, counters), policy (at
 * endpoints: verdict events, drops) and the trace stage (monitor aggregation decides what is emitted). Programs
 * only read the packet, except a service's: stage_lb translates its addresses (lb.h). They drop it for a policy that denies it, and when a tail call misses (reported as a
 * MISSED_TAIL_CALL drop). Three more programs are run by the agent with BPF_PROG_TEST_RUN, never attached:
 * ct_flush (reports a quiet connection's last counts), policy_query (`flowscope policy check`) and
 * clock_sample (the tick count and the clock, read together).
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
#include "flowscope/lb.h"
#include "flowscope/lb_nat.h"
#include "flowscope/nodeport.h"
#include "flowscope/conntrack.h"
#include "flowscope/aggregate.h"
#include "flowscope/policy.h"
#include "flowscope/overlay.h"
#include "flowscope/trace.h"
#include "flowscope/l7.h"

/* Start a packet's state at observation point `point`: who is behind this interface, what the L2 header says,
 * and on to the stage for its ethertype. */
static __always_inline int fs_entry(struct __sk_buff *skb, __u8 point)
{
	struct fs_state *st = fs_state_get();
	struct fs_endpoint *ep;
	struct fs_config *cfg;
	__u32 ifindex = skb->ifindex;
	__u32 zero = 0;

	if (!st)
		return TC_ACT_OK; /* cannot happen: a one-slot per-CPU array always has its slot */
	fs_state_reset(st);
	cfg = config.lookup(&zero);
	if (cfg)
		st->cfg = *cfg;
	else
		__builtin_memset(&st->cfg, 0, sizeof(st->cfg));
	st->point = point;
	st->ev.type = FS_EVENT_TRACE;
	st->ev.subtype = point;
	st->ev.version = FS_EVENT_VERSION;
	st->ev.verdict = FS_VERDICT_FORWARDED;
	st->ev.ifindex = ifindex;
	st->ev.len_orig = skb->len;
	st->ev.packets = 1;
	st->ev.bytes = skb->len;

	ep = fs_endpoint_of(ifindex);
	if (ep) {
		st->ev.ep_id = ep->ep_id;
		st->ep_identity = ep->identity;
		fs_endpoint_identity(st);
	}
	fs_overlay_outer(skb, st); /* at to/from-overlay only: the tunnel's outer headers */
	fs_trace_entry(skb, st);
	/* a call site per slot, so that each is a direct jump */
	switch (fs_parse_l2(skb, st)) {
	case FS_CALL_IPV4:
		fs_jump(skb, FS_CALL_IPV4);
		break;
	case FS_CALL_IPV6:
		fs_jump(skb, FS_CALL_IPV6);
		break;
	default:
		fs_jump(skb, FS_CALL_OTHER);
		break;
	}
	return fs_drop(skb, st, FS_DROP_MISSED_TAIL_CALL);
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

/* On the node's tunnel device (Cilium's cilium_vxlan), tc ingress: decapsulated packets from other nodes. */
int from_overlay(struct __sk_buff *skb)
{
	return fs_entry(skb, FS_TRACE_FROM_OVERLAY);
}

/* On the node's tunnel device, tc egress: packets to other nodes, before they are encapsulated. */
int to_overlay(struct __sk_buff *skb)
{
	return fs_entry(skb, FS_TRACE_TO_OVERLAY);
}

/* FS_CALL_IPV4 */
int stage_ipv4(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	fs_parse_ipv4(skb, st);
	fs_trace_pick(skb, st);
	fs_trace_stage(skb, st, FS_CALL_IPV4);
	return fs_after_parse(skb, st);
}

/* FS_CALL_IPV6 */
int stage_ipv6(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	fs_parse_ipv6(skb, st);
	fs_trace_pick(skb, st);
	fs_trace_stage(skb, st, FS_CALL_IPV6);
	return fs_after_parse(skb, st);
}

/* FS_CALL_OTHER: nothing more to parse, no addresses to look up; only the endpoint's side has an identity. */
int stage_other(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	fs_trace_pick(skb, st);
	fs_trace_stage(skb, st, FS_CALL_OTHER);
	return fs_after_parse(skb, st);
}

/* FS_CALL_LB: services (lb.h). Leaving a pod, a packet to a frontend goes to one of its backends; entering one,
 * a reply from a backend comes from the frontend again. Only packets fs_lb_wanted() lets through come here. */
int stage_lb(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();
	__u32 reason;

	if (!st)
		return TC_ACT_OK;
	if (st->point == FS_TRACE_TO_LXC)
		reason = fs_lb_reverse_nat(skb, st);
	else if (st->point == FS_TRACE_FROM_LXC)
		reason = fs_lb_dnat(skb, st);
	else
		reason = fs_np_stage(skb, st); /* the node's device: NodePort */
	fs_trace_stage(skb, st, FS_CALL_LB);
	if (!reason) {
		fs_jump(skb, FS_NEXT_AFTER_LB);
		reason = FS_DROP_MISSED_TAIL_CALL;
	}
	return fs_drop(skb, st, reason); /* one drop for every reason: it is a lot of code */
}

/* FS_CALL_CT: the packet's connection, state and direction; a tracked packet whose verdict is settled is
 * counted here (and the aggregation decision taken), the others after their verdict. */
int stage_ct(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();
	struct fs_ct_entry *e = 0;
	int at_endpoint, trackable;
	__u64 now;

	if (!st)
		return TC_ACT_OK;
	now = fs_now(st);
	at_endpoint = fs_state_from_endpoint(st) || fs_state_to_endpoint(st);
	trackable = fs_ct_trackable(st);
	if (trackable)
		e = fs_ct_lookup(skb, st, now);
	if (!e) {
		st->ct_state = FS_CT_UNTRACKED;
		st->emit = fs_trace_wanted(st);
		if (at_endpoint && fs_ct_is_ip(st) && (trackable || (st->ev.flags & (FS_F_FRAGMENT | FS_F_TRUNCATED)))) {
			/* an IP packet no connection vouches for: an enforcing endpoint cannot judge it */
			st->policy_todo = FS_POLICY_UNTRACKED;
			st->drop_reason = (st->ev.flags & FS_F_FRAGMENT)   ? FS_DROP_FRAG_NOSUPPORT
					  : (st->ev.flags & FS_F_TRUNCATED) ? FS_DROP_CT_INVALID_HDR
									    : FS_DROP_CT_MAP_INSERTION_FAILED;
		}
	} else if (at_endpoint && st->ct_state != FS_CT_RELATED &&
		   (!(e->flags & FS_CT_F_JUDGED) || e->policy_rev != st->cfg.policy_rev)) {
		st->policy_todo = FS_POLICY_JUDGE;
	} else if (at_endpoint && (e->flags & FS_CT_F_DENIED)) {
		st->policy_todo = FS_POLICY_DROP;
		st->drop_reason = e->drop_reason;
	} else {
		fs_ct_account(e, st, now);
	}
	if (e && st->cfg.services_active)
		fs_lb_remember(st, e);
	if (st->cfg.l7_active) { /* the only cost to other packets while no L7 port is configured */
		fs_l7_decide(skb, st);
		if (st->l7_kind == FS_L7_TLS && e && st->policy_todo == FS_POLICY_PASS) /* counted just above */
			fs_l7_report(e, st);
	}
	if (st->traced) {
		if (e)
			fs_trace_verdict_of(st, e);
		fs_trace_stage(skb, st, FS_CALL_CT);
	}
	return fs_after_ct(skb, st);
}

/* FS_CALL_POLICY: at an endpoint, the network policy's verdict on the packet's connection. */
int stage_policy(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();
	struct fs_verdict v;
	__u32 reason = 0;
	__u8 direction;

	if (!st)
		return TC_ACT_OK;
	switch (st->policy_todo) {
	case FS_POLICY_JUDGE:
		reason = fs_policy_judge(skb, st);
		break;
	case FS_POLICY_DROP:
		reason = st->drop_reason;
		break;
	case FS_POLICY_UNTRACKED:
		/* no ports to judge by: pass only where the endpoint does not enforce a policy */
		direction = fs_state_from_endpoint(st) ? FS_POLICY_EGRESS : FS_POLICY_INGRESS;
		fs_policy_decide(st->ep_identity, 0, 0, 0, direction, st->cfg.policy_rev, &v);
		if (st->traced)
			fs_trace_verdict(st, v.rule, v.match, v.allowed, v.enforced);
		if (v.enforced)
			reason = st->drop_reason;
		break;
	default:
		break;
	}
	fs_trace_stage(skb, st, FS_CALL_POLICY); /* what the stage decided, before the packet goes on or is dropped */
	if (reason)
		goto drop;
	if (fs_after_policy(skb, st) == TC_ACT_OK)
		return TC_ACT_OK; /* nothing to send: the trace stage would only pass it */
	reason = FS_DROP_MISSED_TAIL_CALL;
drop: /* one drop for every reason: it is a lot of code */
	return fs_drop(skb, st, reason);
}

/* FS_CALL_SEND_TRACE: the last stage of a packet that passes; emits it if aggregation decided so, and its L7
 * record if stage_ct chose it for one. */
int stage_send_trace(struct __sk_buff *skb)
{
	struct fs_state *st = fs_state_get();

	if (!st)
		return TC_ACT_OK;
	if (st->l7_kind)
		fs_l7_send(skb, st); /* its event and its L7 record (l7.h) */
	else if (st->emit)
		fs_emit(skb, st);
	fs_trace_stage(skb, st, FS_CALL_SEND_TRACE);
	return fs_trace_done(skb, st, TC_ACT_OK);
}

/* What the agent's sweep asks ct_flush, after an Ethernet header's worth of padding. */
struct fs_ct_flush_request {
	union fs_ct_key key;
	__u32 ipv6;       /* the key is ct6's (else ct4's) */
	__u32 pad;
	__u64 min_age_ns; /* report the pending counts of a direction whose last report is at least this old */
};

/* Run by the agent's sweep (BPF_PROG_TEST_RUN), never attached: report what one connection counted and nobody
 * reported yet, where its last report is old enough (all of it, and remove the entry, when the entry is
 * stale). Returns how many records it made. */
int ct_flush(struct __sk_buff *skb)
{
	struct fs_ct_flush_request req;
	struct fs_ct_entry *e;
	__u64 now = bpf_ktime_get_ns();
	int made;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &req, sizeof(req)) < 0)
		return 0;
	e = fs_ct_find(&req.key, req.ipv6);
	if (!e)
		return 0;
	if (e->expires < now) {
		made = fs_report_pending(&req.key, req.ipv6, e, now, 0);
		fs_ct_remove(&req.key, req.ipv6);
		return made;
	}
	return fs_report_pending(&req.key, req.ipv6, e, now, req.min_age_ns);
}

/* What clock_sample answers, after an Ethernet header's worth of padding. */
struct fs_clock_sample {
	__u64 jiffies;
	__u64 monotonic_ns;
};

/* Run by the agent at start (BPF_PROG_TEST_RUN), never attached: the tick count and CLOCK_MONOTONIC read
 * together, from which it works out the conversion fs_now() uses. */
int clock_sample(struct __sk_buff *skb)
{
	struct fs_clock_sample sample;

	sample.jiffies = bpf_jiffies64();
	sample.monotonic_ns = bpf_ktime_get_ns();
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &sample, sizeof(sample), 0) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/* The question and answer of policy_query, after an Ethernet header's worth of padding. */
struct fs_policy_query {
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u8 ipv6;
	__u8 proto;
	__u16 dport;
	/* answers */
	__u32 src_identity;
	__u32 dst_identity;
	struct fs_verdict egress;  /* the source endpoint's egress policy */
	struct fs_verdict ingress; /* the destination endpoint's ingress policy */
};

/* Run by the agent for `flowscope policy check` (BPF_PROG_TEST_RUN), never attached: the datapath's own
 * ipcache and policy lookups answer whether a connection from saddr to daddr:dport would pass. */
int policy_query(struct __sk_buff *skb)
{
	struct fs_policy_query q;
	struct fs_config *cfg;
	__u32 zero = 0;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &q, sizeof(q)) < 0)
		return TC_ACT_SHOT;
	cfg = config.lookup(&zero);
	if (!cfg)
		return TC_ACT_SHOT;
	q.src_identity = fs_ipcache_identity(q.saddr, q.ipv6);
	q.dst_identity = fs_ipcache_identity(q.daddr, q.ipv6);
	fs_policy_decide(q.src_identity, q.dst_identity, q.proto, q.dport, FS_POLICY_EGRESS, cfg->policy_rev,
			 &q.egress);
	fs_policy_decide(q.dst_identity, q.src_identity, q.proto, q.dport, FS_POLICY_INGRESS, cfg->policy_rev,
			 &q.ingress);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &q, sizeof(q), 0) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

/* The kernel tracepoints of packet-path sessions: in this translation unit, to share its maps. */
#include "pathtrace.c"
