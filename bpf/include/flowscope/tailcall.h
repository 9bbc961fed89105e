/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Handing a packet to the next stage. A tail call that finds its slot empty returns to the caller; the
 * packet is then reported as a MISSED_TAIL_CALL drop and dropped, never passed unobserved.
 *
 * Call sites pass a constant slot: the JIT then patches a direct jump into the program in it, where a slot
 * known only at run time costs an indirect jump (a retpoline on this kind of machine).
 */
#ifndef FLOWSCOPE_TAILCALL_H
#define FLOWSCOPE_TAILCALL_H

#include "flowscope/calls.h"
#include "flowscope/emit.h"
#include "flowscope/lb.h"
#include "flowscope/state.h"
#include "flowscope/trace.h"

/* Tail call into `slot`, a constant: returns only when the slot is empty. The empty asm names the slot as an
 * immediate, so the compiler cannot merge calls into different slots into one call with a variable slot (an
 * indirect jump), and so several calls can share one missed-call drop (which is a lot of code). */
static __always_inline void fs_jump(struct __sk_buff *skb, const __u32 slot)
{
	calls.call(skb, slot);
	asm volatile("" : : "i"(slot));
}

static __always_inline int fs_tail_call(struct __sk_buff *skb, struct fs_state *st, const __u32 slot)
{
	fs_jump(skb, slot);
	return fs_drop(skb, st, FS_DROP_MISSED_TAIL_CALL);
}

/* A packet with nothing left for the next stages skips them, as long as those are the stages that come next (a
 * stage put between them through FS_NEXT_AFTER_* sees every packet): stage_policy has nothing to do with a packet
 * whose connection's verdict is current (FS_POLICY_PASS), stage_send_trace nothing with one the aggregation
 * silenced and no L7 capture wants, which then passes at once. Each tail call skipped is a good part of the cost of
 * a packet of an established connection. */

/* After a parse stage: on to stage_lb, or past it to conntrack when the packet has nothing for it (no service
 * exists, or it is not a TCP/UDP/SCTP packet at a pod's hook): a cluster without services pays no tail call. */
static __always_inline int fs_after_parse(struct __sk_buff *skb, struct fs_state *st)
{
#if FS_NEXT_AFTER_PARSE == FS_CALL_LB && FS_NEXT_AFTER_LB == FS_CALL_CT
	if (!fs_lb_wanted(st)) {
		fs_jump(skb, FS_CALL_CT);
		goto missed;
	}
#endif
	fs_jump(skb, FS_NEXT_AFTER_PARSE);
missed:
	return fs_drop(skb, st, FS_DROP_MISSED_TAIL_CALL);
}

/* After stage_policy (or in its place): on to the next stage. Returns TC_ACT_OK when the packet has nothing left
 * to do and passes, -1 when the slot is empty (the caller drops it as MISSED_TAIL_CALL). */
static __always_inline int fs_after_policy(struct __sk_buff *skb, struct fs_state *st)
{
#if FS_NEXT_AFTER_POLICY == FS_CALL_SEND_TRACE
	if (!st->emit && !st->l7_kind)
		return fs_trace_done(skb, st, TC_ACT_OK);
#endif
	fs_jump(skb, FS_NEXT_AFTER_POLICY);
	return -1;
}

/* After stage_ct: on to stage_policy, or past it when it has nothing to do. */
static __always_inline int fs_after_ct(struct __sk_buff *skb, struct fs_state *st)
{
#if FS_NEXT_AFTER_CT == FS_CALL_POLICY
	if (st->policy_todo == FS_POLICY_PASS) {
		if (fs_after_policy(skb, st) == TC_ACT_OK)
			return TC_ACT_OK;
		goto missed;
	}
#endif
	fs_jump(skb, FS_NEXT_AFTER_CT);
missed:
	return fs_drop(skb, st, FS_DROP_MISSED_TAIL_CALL);
}

#endif /* FLOWSCOPE_TAILCALL_H */
