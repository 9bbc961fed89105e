/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-packet state that travels between tail calls, in one place: a per-CPU scratch slot.
 *
 * An entry program resets it and fills what it knows (observation point, interface, endpoint, L2, the runtime
 * config); each stage it tail-calls adds to it; the emitting stage copies the event header out of it. That is
 * safe because a tc program and the tail calls it makes run to completion on one CPU without another tc
 * program in between. Programs of other kinds (a kfree_skb tracepoint can fire in any context, a test run can
 * be interrupted by a softirq) must not use this slot.
 */
#ifndef FLOWSCOPE_STATE_H
#define FLOWSCOPE_STATE_H

#include "flowscope/event.h"
#include "flowscope/maps.h"

/* ct_state: what conntrack made of the packet (the FS_REASON_* numbers, and one for "not tracked"). */
#define FS_CT_UNTRACKED 0 /* not a connection's packet: no IP, a later fragment, headers cut short */
#define FS_CT_NEW FS_REASON_NEW
#define FS_CT_ESTABLISHED FS_REASON_ESTABLISHED
#define FS_CT_REPLY_STATE FS_REASON_REPLY
#define FS_CT_RELATED FS_REASON_RELATED

/* policy_todo: what stage_policy has to do with the packet. */
#define FS_POLICY_PASS 0  /* nothing: no endpoint here, or its connection's verdict is current and allows it */
#define FS_POLICY_JUDGE 1 /* take (or retake, after a policy change) the connection's verdict */
#define FS_POLICY_DROP 2  /* the connection's current verdict denies it: drop with drop_reason */
#define FS_POLICY_UNTRACKED 3 /* an IP packet conntrack could not follow: drop it if the endpoint enforces */

struct fs_state {
	struct fs_event ev;       /* the event being built; ev.data stays unused: packet bytes go straight to the ring */
	struct fs_config cfg;     /* the runtime config, read once by the entry program */
	struct fs_ct_key ct_key;  /* the connection (when ct_state is not FS_CT_UNTRACKED) */
	__u32 l3_off;             /* offset of the L3 header from the start of the packet (after any VLAN tags) */
	__u32 l4_off;             /* offset of the L4 header; 0 when it was not reached */
	__u32 ep_identity;        /* identity of the endpoint behind this interface; 0 when it is not an endpoint */
	__u32 point;              /* the observation point (FS_TRACE_*), kept apart from ev.subtype which a drop reuses */
	__u32 drop_reason;        /* FS_POLICY_DROP: why */
	__u8 ct_state;            /* FS_CT_* */
	__u8 ct_dir;              /* FS_CT_ORIGINAL or FS_CT_REPLY: this packet's direction in its connection */
	__u8 policy_todo;         /* FS_POLICY_* */
	__u8 emit;                /* stage_send_trace emits the event (set by the aggregation decision) */
};

BPF_PERCPU_ARRAY(scratch, struct fs_state, 1);

/* The bytes of the event header: everything up to the captured packet. */
#define FS_EVENT_HDR_LEN __builtin_offsetof(struct fs_event, data)
_Static_assert(__builtin_offsetof(struct fs_event, data) == 112, "fs_event header layout changed");

static __always_inline struct fs_state *fs_state_get(void)
{
	__u32 zero = 0;

	return scratch.lookup(&zero);
}

/* The endpoint side of the packet, when the hook sits on an endpoint's interface. */
static __always_inline int fs_state_from_endpoint(const struct fs_state *st)
{
	return st->ep_identity && st->point == FS_TRACE_FROM_LXC;
}

static __always_inline int fs_state_to_endpoint(const struct fs_state *st)
{
	return st->ep_identity && st->point == FS_TRACE_TO_LXC;
}

/* Whether the packet is seen where it arrives on the node (a FROM_* point): the point monitor aggregation
 * silences, as the TO_* point the packet leaves by reports it again. */
static __always_inline int fs_point_is_rx(__u32 point)
{
	return point >= FS_TRACE_FROM_LXC && point <= FS_TRACE_FROM_NETWORK;
}

#endif /* FLOWSCOPE_STATE_H */
