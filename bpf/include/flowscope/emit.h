/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Emitting events: copy the header built in the scratch state and the packet's first bytes into one ring
 * buffer record. Counting what could not be emitted, and pacing reader wakeups, live here too.
 */
#ifndef FLOWSCOPE_EMIT_H
#define FLOWSCOPE_EMIT_H

#include "flowscope/drop.h"
#include "flowscope/identity.h"
#include "flowscope/lb.h"
#include "flowscope/maps.h"
#include "flowscope/state.h"
#include "flowscope/trace.h"

/* How many packet bytes to capture: the configured length, at most FS_CAPLEN, at most the packet. */
static __always_inline __u64 fs_capture_len(struct __sk_buff *skb, const struct fs_state *st)
{
	__u64 want = FS_CAPLEN;

	if (st->cfg.capture_len && st->cfg.capture_len < FS_CAPLEN)
		want = st->cfg.capture_len;
	if (skb->len < want)
		want = skb->len;
	return want;
}

/* Copy the packet's first `len` (8..FS_CAPLEN) bytes into `to` straight from the skb's linear data, a word at
 * a time, which costs less than a helper call; the last word ends at `len`, overlapping the one before it, so
 * nothing after `len` is written. -1 (nothing copied) when the linear data is shorter, or len below 8. */
static __always_inline int fs_capture(struct __sk_buff *skb, __u8 *to, __u64 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	const __u8 *last;
	__u64 off;

	if (len < 8 || data + len > data_end)
		return -1;
#pragma unroll
	for (int i = 0; i < FS_CAPLEN / 8; i++) {
		if ((i + 1) * 8 > len)
			break;
		if (data + (i + 1) * 8 > data_end) /* known by now, but the verifier wants to see it */
			return -1;
		((__u64 *)to)[i] = ((const __u64 *)data)[i];
	}
	if (len % 8) {
		off = len - 8;
		asm volatile("" : "+r"(off)); /* so that the bounds check below is on `last` itself */
		last = data + off;
		if ((void *)(last + 8) > data_end)
			return -1;
		*(__u64 *)(to + off) = *(const __u64 *)last;
	}
	return 0;
}

/* BPF_RB_FORCE_WAKEUP on every FS_WAKEUP_EVERY-th event of this CPU, BPF_RB_NO_WAKEUP otherwise: the reader
 * also polls with a timeout, so a quiet CPU's last few events wait at most that long. */
static __always_inline __u64 fs_wakeup_flag(void)
{
	__u32 zero = 0;
	__u32 *count = emit_count.lookup(&zero);

	if (!count)
		return BPF_RB_FORCE_WAKEUP;
	*count += 1; /* per-CPU and never preempted by another tc program: no atomics needed */
	if (*count >= FS_WAKEUP_EVERY) {
		*count = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void fs_count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = lost.lookup(&zero);

	if (n)
		*n += 1;
}

/* Complete the header in `st` with what only a record needs (both identities, the time, CPU, hash): once a
 * packet, before its first record (the event, or the L7 capture of l7.h), which both copy it. */
static __always_inline void fs_event_prepare(struct __sk_buff *skb, struct fs_state *st)
{
	fs_identities(st, FS_ID_SRC | FS_ID_DST);
	if (!st->ev.ts) /* conntrack read the clock already, unless the packet never got there */
		st->ev.ts = bpf_ktime_get_ns();
	st->ev.cpu = bpf_get_smp_processor_id();
	st->ev.hash = bpf_get_hash_recalc(skb);
}

/* Send the event in `st` with the packet's first bytes; count it in `lost` when the ring buffer is full. */
static __always_inline void fs_emit(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_event *ev;
	__u64 caplen;

	fs_event_prepare(skb, st);
	ev = events.ringbuf_reserve(sizeof(struct fs_event));
	if (!ev) {
		fs_count_lost();
		return;
	}
	__builtin_memcpy(ev, &st->ev, FS_EVENT_HDR_LEN);

	caplen = fs_capture_len(skb, st);
	/* Hide caplen's derivation from the compiler, so it keeps the checks the verifier needs to see on the very
	 * register passed to the helper (it would otherwise drop them as already implied). */
	asm volatile("" : "+r"(caplen));
	ev->len_cap = 0;
	if (caplen > 0 && caplen <= FS_CAPLEN &&
	    (fs_capture(skb, ev->data, caplen) == 0 || bpf_skb_load_bytes(skb, 0, ev->data, caplen) == 0))
		ev->len_cap = caplen;
	if (st->lb_xlate) /* a service's packet: one branch for all the others */
		fs_lb_event(st, ev, ev->len_cap);

	events.ringbuf_submit(ev, fs_wakeup_flag());
}

/* Report the packet as dropped for `reason` (a Cilium drop code) and tell tc to drop it. Drops are never
 * aggregated: every dropped packet is an event. */
static __always_inline int fs_drop(struct __sk_buff *skb, struct fs_state *st, __u32 reason)
{
	st->ev.type = FS_EVENT_DROP;
	st->ev.subtype = reason & 0xff;
	st->ev.verdict = FS_VERDICT_DROPPED;
	st->ev.drop_reason = reason;
	fs_emit(skb, st);
	return fs_trace_done(skb, st, TC_ACT_SHOT);
}

#endif /* FLOWSCOPE_EMIT_H */
