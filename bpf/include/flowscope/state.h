/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-packet state that travels between tail calls, in one place: a per-CPU scratch slot.
 *
 * An entry program resets it and fills what it knows (observation point, interface, endpoint, L2, the runtime
 * config); each stage it tail-calls adds to it; the emitting stage copies the event header out of it. That is
 * safe because a tc program and the tail calls it makes run to completion on one CPU without another tc
 * program in between. Programs of other kinds (a kfree_skb tracepoint can fire in any context, a test run can
 * be interrupted by a softirq) must not use this slot.
 *
 * Resetting it is part of every packet's cost, so only what a packet may read before writing it is reset:
 * the fields from `drop_reason` to the end of the event header (the config is copied over, the connection
 * key is written whole before it is used, and the event's data[] is never used here).
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

/* ids: the identities in the event that are final (the endpoint's own side, or looked up in the ipcache) */
#define FS_ID_SRC 0x01
#define FS_ID_DST 0x02

struct fs_state {
	struct fs_config cfg;     /* the runtime config, read once by the entry program */
	union fs_ct_key ct_key;   /* the connection (when ct_state is not FS_CT_UNTRACKED) */
	__u64 now;                /* the time of the connection's bookkeeping (fs_now), read by stage_ct */
	/* packet-path sessions (trace.h): set by the entry program whenever a session is active */
	__u64 trace_first_ts;     /* the followed packet's id */
	__u64 trace_first_head;
	__u32 trace_rule;         /* the policy rule and match behind the connection's verdict, for its hops */
	__u8 trace_match;
	__u8 traced;              /* 0, or the session slot + 1 that follows this packet */
	__u8 trace_pick;          /* offer the packet to the sessions' filters once it is parsed */
	__u8 trace_pad;
	__u8 lb_addr[16];         /* lb_xlate DNAT or RNAT: the service frontend's address (lb.h) */
	__u8 lb_backend[16];      /* lb_xlate RNAT_ICMP: the backend an ICMP error's quote named before (lb.h) */
	__u16 lb_backend_port;    /* lb_xlate RNAT_ICMP: its port, host order */
	__u8 lb_pad[6];
	__u8 lb_peer[16];         /* lb_snat: the client, whose source a NodePort SNAT replaced (nodeport.h) */
	__u16 lb_peer_port;       /* lb_snat: its port, host order */
	__u8 lb_peer_pad[6];
	/* reset by the entry program from here on */
	__u32 drop_reason;        /* FS_POLICY_DROP: why */
	__u32 l3_off;             /* offset of the L3 header from the start of the packet (after any VLAN tags) */
	__u32 l4_off;             /* offset of the L4 header; 0 when it was not reached */
	__u32 ep_identity;        /* identity of the endpoint behind this interface; 0 when it is not an endpoint */
	__u32 point;              /* the observation point (FS_TRACE_*), kept apart from ev.subtype which a drop reuses */
	__u8 ct_state;            /* FS_CT_* */
	__u8 ct_dir;              /* FS_CT_ORIGINAL or FS_CT_REPLY: this packet's direction in its connection */
	__u8 policy_todo;         /* FS_POLICY_* */
	__u8 emit;                /* stage_send_trace emits the event (set by the aggregation decision) */
	__u8 addrs;               /* ev.saddr/daddr were read from the packet */
	__u8 ids;                 /* FS_ID_*: which of ev.src_identity/dst_identity are final (identity.h) */
	__u8 lb_xlate;            /* FS_LB_*: what stage_lb did (lb.h) */
	__u8 lb_snat;             /* a NodePort SNAT: the source was translated too (st->lb_peer, nodeport.h) */
	__u16 lb_frontend;        /* lb_xlate set: the frontend's id */
	__u16 lb_port;            /* lb_xlate DNAT or RNAT: the frontend's port, host order */
	__u16 l7_len;             /* l7_kind set: bytes the L7 capture wants (payload offset + the kind's caplen) */
	__u8 l7_kind;             /* FS_L7_*: stage_ct chose the packet for the L7 ring (l7.h); 0: not */
	__u8 l7_pad[5];
	struct fs_event ev;       /* the event being built: its header only (data[] stays unused: packet bytes go
	                           * straight to the ring), so it comes last */
};

BPF_PERCPU_ARRAY(scratch, struct fs_state, 1);

/* The bytes of the event header: everything up to the captured packet. */
#define FS_EVENT_HDR_LEN __builtin_offsetof(struct fs_event, data)
_Static_assert(__builtin_offsetof(struct fs_event, data) == 120, "fs_event header layout changed");

/* What the entry program resets: from drop_reason to the end of the event header. */
#define FS_STATE_RESET_OFF __builtin_offsetof(struct fs_state, drop_reason)
#define FS_STATE_RESET_LEN (__builtin_offsetof(struct fs_state, ev) + FS_EVENT_HDR_LEN - FS_STATE_RESET_OFF)
_Static_assert(__builtin_offsetof(struct fs_state, ev) % 8 == 0 && FS_STATE_RESET_OFF % 8 == 0 &&
		       FS_STATE_RESET_LEN % 8 == 0,
	       "fs_state: the reset range must be whole words");

/* Copy a 16-byte address between 8-byte aligned places (event, state, ct key) as two words: the compiler cannot
 * know the alignment of a map value, and copies it byte by byte when asked for a memcpy. */
static __always_inline void fs_addr_copy(__u8 *dst, const __u8 *src)
{
	((__u64 *)dst)[0] = ((const __u64 *)src)[0];
	((__u64 *)dst)[1] = ((const __u64 *)src)[1];
}

/* Reset what a packet may read before it writes it (see above), a word at a time. */
static __always_inline void fs_state_reset(struct fs_state *st)
{
	__u64 *word = (__u64 *)&st->drop_reason;

#pragma unroll
	for (int i = 0; i < FS_STATE_RESET_LEN / 8; i++)
		word[i] = 0;
}

static __always_inline struct fs_state *fs_state_get(void)
{
	__u32 zero = 0;

	return scratch.lookup(&zero);
}

/* The time conntrack keeps a packet's connection by (expiry, last report), read once a packet. Reading the
 * clock is one of the dearest things a packet does here (bpf_ktime_get_coarse_ns: 25-30 ns of ~200 in a test
 * run), so it is the tick count, converted: jiffies times the tick, plus the offset that makes it
 * CLOCK_MONOTONIC, both measured by the agent at start (observer/datapath/tick_clock.py). Like the coarse clock it
 * is within a tick (4 ms at HZ=250), which the bookkeeping does not mind (fs_age). Until the agent has
 * measured them (jiffy_ns 0) it is the coarse clock. At aggregation none every packet is an event, which
 * needs the clock itself (CLOCK_MONOTONIC), so that read serves both. The event's own time (ev.ts) is always
 * the clock itself: fs_emit reads it when it is not there yet. */
static __always_inline __u64 fs_now(struct fs_state *st)
{
	if (st->cfg.aggregation == FS_AGG_NONE)
		st->now = st->ev.ts = bpf_ktime_get_ns();
	else if (st->cfg.jiffy_ns)
		st->now = bpf_jiffies64() * st->cfg.jiffy_ns + st->cfg.jiffies_offset_ns;
	else
		st->now = bpf_ktime_get_coarse_ns();
	return st->now;
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
