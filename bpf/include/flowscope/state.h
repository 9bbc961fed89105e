/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-packet state that travels between tail calls, in one place: a per-CPU scratch slot.
 *
 * An entry program resets it and fills what it knows (observation point, interface, endpoint, L2); each stage
 * it tail-calls adds to it; the emitting stage copies the event header out of it. That is safe because a tc
 * program and the tail calls it makes run to completion on one CPU without another tc program in between.
 * Programs of other kinds (a kfree_skb tracepoint can fire in any context) must not use this slot.
 */
#ifndef FLOWSCOPE_STATE_H
#define FLOWSCOPE_STATE_H

#include "flowscope/event.h"

struct fs_state {
	struct fs_event ev; /* the event being built; ev.data stays unused: packet bytes go straight to the ring */
	__u32 l3_off;       /* offset of the L3 header from the start of the packet (after any VLAN tags) */
	__u32 l4_off;       /* offset of the L4 header; 0 when it was not reached */
	__u32 ep_identity;  /* identity of the endpoint behind this interface; 0 when it is not an endpoint */
	__u32 point;        /* the observation point (FS_TRACE_*), kept apart from ev.subtype which a drop reuses */
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

#endif /* FLOWSCOPE_STATE_H */
