/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Network policy at an endpoint: egress at from-container, ingress at to-container, judged once per
 * connection (its first packet) and again whenever the policy revision changed since.
 *
 * A subject identity is in default-deny in a direction when `policy_enforce` says so; then the `policy` map
 * must allow the peer. Keys are tried from the most specific to the least, as Cilium does:
 *   1. peer/proto/port  2. any/proto/port  3. peer/proto/any  4. any/proto/any  5. peer/any/any  6. any/any/any
 * The first entry found decides; the agent's compiler (observer/policy/) adds deny entries wherever a deny
 * rule overlaps an allow rule, so that first entry is a deny whenever any deny rule matches. Nothing found
 * is POLICY_DENIED (133); a deny entry is POLICY_DENY (181).
 */
#ifndef FLOWSCOPE_POLICY_H
#define FLOWSCOPE_POLICY_H

#include "flowscope/aggregate.h"
#include "flowscope/drop.h"
#include "flowscope/emit.h"
#include "flowscope/maps.h"
#include "flowscope/state.h"
#include "flowscope/tailcall.h"

#define FS_POLICY_INGRESS 1
#define FS_POLICY_EGRESS 2

/* Policy match types: Cilium's numbers, which Hubble shows as flow.policy_match_type. */
#define FS_MATCH_NONE 0
#define FS_MATCH_L3_ONLY 1
#define FS_MATCH_L3_L4 2
#define FS_MATCH_L4_ONLY 3
#define FS_MATCH_ALL 4
#define FS_MATCH_L3_PROTO 5
#define FS_MATCH_PROTO_ONLY 6

/* fs_event.policy_flags of a policy verdict event, as Cilium's policy_verdict_notify.flags */
#define FS_PV_IPV6 0x04
#define FS_PV_MATCH_SHIFT 3

struct fs_verdict {
	__u8 enforced; /* the subject is in default-deny in this direction */
	__u8 allowed;
	__u8 match;    /* FS_MATCH_* */
	__u8 pad;
	__u32 rule;
	__u32 drop_reason; /* when denied */
};

static __always_inline int fs_policy_try(struct fs_policy_key *key, __u32 peer, __u8 proto, __u16 dport,
					 __u8 match, struct fs_verdict *out)
{
	struct fs_policy_value *value;

	key->peer = peer;
	key->proto = proto;
	key->dport = dport;
	value = policy.lookup(key);
	if (!value)
		return 0;
	out->match = match;
	out->rule = value->rule;
	out->allowed = !value->deny;
	out->drop_reason = value->deny ? FS_DROP_POLICY_DENY : 0;
	return 1;
}

/* The verdict of the policy in force (revision `rev`) on `subject` exchanging `proto`/`dport` with `peer`. */
static __always_inline void fs_policy_decide(__u32 subject, __u32 peer, __u8 proto, __u16 dport, __u8 direction,
					     __u32 rev, struct fs_verdict *out)
{
	struct fs_policy_enforce_key ekey = {.subject = subject, .gen = rev & 1};
	struct fs_policy_enforce_value *enforce;
	struct fs_policy_key key = {.subject = subject, .dir_gen = direction | ((rev & 1) << 7)};

	__builtin_memset(out, 0, sizeof(*out));
	out->allowed = 1;
	if (!rev || !subject)
		return;
	enforce = policy_enforce.lookup(&ekey);
	if (!enforce || !(enforce->directions & direction))
		return;
	out->enforced = 1;
	if (fs_policy_try(&key, peer, proto, dport, FS_MATCH_L3_L4, out) ||
	    fs_policy_try(&key, 0, proto, dport, FS_MATCH_L4_ONLY, out) ||
	    fs_policy_try(&key, peer, proto, 0, FS_MATCH_L3_PROTO, out) ||
	    fs_policy_try(&key, 0, proto, 0, FS_MATCH_PROTO_ONLY, out) ||
	    fs_policy_try(&key, peer, 0, 0, FS_MATCH_L3_ONLY, out) || fs_policy_try(&key, 0, 0, 0, FS_MATCH_ALL, out))
		return;
	out->allowed = 0;
	out->match = FS_MATCH_NONE;
	out->drop_reason = FS_DROP_POLICY_DENIED;
}

/* Send a policy verdict event (type 5) for the packet in `st`, leaving st's event as it was. */
static __always_inline void fs_emit_verdict(struct __sk_buff *skb, struct fs_state *st, const struct fs_verdict *v,
					    __u8 direction)
{
	__u8 type = st->ev.type, subtype = st->ev.subtype, reason = st->ev.trace_reason, verdict = st->ev.verdict;

	st->ev.type = FS_EVENT_POLICY_VERDICT;
	st->ev.subtype = 0;
	st->ev.trace_reason = 0;
	st->ev.verdict = v->allowed ? FS_VERDICT_FORWARDED : FS_VERDICT_DROPPED;
	st->ev.drop_reason = v->allowed ? 0 : v->drop_reason;
	st->ev.policy_flags = direction | (v->match << FS_PV_MATCH_SHIFT) | ((st->ev.flags & FS_F_IPV6) ? FS_PV_IPV6 : 0);
	st->ev.rule = v->rule;
	fs_emit(skb, st);
	st->ev.type = type;
	st->ev.subtype = subtype;
	st->ev.trace_reason = reason;
	st->ev.verdict = verdict;
	st->ev.drop_reason = 0;
	st->ev.policy_flags = 0;
	st->ev.rule = 0;
}

/* Take the connection's verdict again: egress when the endpoint opened it, ingress when its peer did. The
 * verdict is about the connection's original direction, whichever way this packet goes. Sends the verdict event
 * when there is news, counts an allowed packet; returns the drop reason of a denied one, else 0. */
static __always_inline __u32 fs_policy_judge(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_ct_entry *e = fs_ct_find(&st->ct_key, st->ev.flags & FS_F_IPV6);
	struct fs_verdict v;
	__u64 now = st->now; /* read by stage_ct */
	__u8 reply = st->ct_dir == FS_CT_REPLY;
	__u8 egress = fs_state_from_endpoint(st) != reply; /* opened by the endpoint: it sent the first packet */
	__u8 direction = egress ? FS_POLICY_EGRESS : FS_POLICY_INGRESS;
	__u32 opener, answerer;
	__u16 dport = reply ? st->ev.sport : st->ev.dport;
	__u8 denied, changed = 1;

	fs_identities(st, FS_ID_SRC | FS_ID_DST);
	opener = reply ? st->ev.dst_identity : st->ev.src_identity;
	answerer = reply ? st->ev.src_identity : st->ev.dst_identity;
	if (st->ev.l4_proto == IPPROTO_ICMP || st->ev.l4_proto == IPPROTO_ICMPV6 || !(st->ev.flags & FS_F_L4))
		dport = 0;
	fs_policy_decide(st->ep_identity, egress ? answerer : opener, st->ev.l4_proto, dport, direction,
			 st->cfg.policy_rev, &v);
	denied = v.allowed ? 0 : FS_CT_F_DENIED;
	if (e) {
		changed = !(e->flags & FS_CT_F_JUDGED) || (e->flags & FS_CT_F_DENIED) != denied;
		e->identity[FS_CT_ORIGINAL] = opener;
		e->identity[FS_CT_REPLY] = answerer;
		e->policy_rev = st->cfg.policy_rev;
		e->rule = v.rule;
		e->match = v.match;
		e->drop_reason = v.drop_reason;
		e->flags = (e->flags & FS_CT_F_MIDSTREAM) | FS_CT_F_JUDGED | denied;
	}
	if (st->traced)
		fs_trace_verdict(st, v.rule, v.match, v.allowed, v.enforced);
	if (v.enforced && changed)
		fs_emit_verdict(skb, st, &v, direction);
	if (denied)
		return v.drop_reason;
	if (e)
		fs_ct_account(e, st, now);
	return 0;
}

#endif /* FLOWSCOPE_POLICY_H */
