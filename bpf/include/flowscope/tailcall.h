/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Handing a packet to the next stage. A tail call that finds its slot empty returns to the caller; the
 * packet is then reported as a MISSED_TAIL_CALL drop and dropped, never passed unobserved.
 */
#ifndef FLOWSCOPE_TAILCALL_H
#define FLOWSCOPE_TAILCALL_H

#include "flowscope/calls.h"
#include "flowscope/emit.h"

static __always_inline int fs_tail_call(struct __sk_buff *skb, struct fs_state *st, __u32 slot)
{
	calls.call(skb, slot);
	return fs_drop(skb, st, FS_DROP_MISSED_TAIL_CALL);
}

#endif /* FLOWSCOPE_TAILCALL_H */
