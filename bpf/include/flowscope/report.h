/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reports of a connection's counts: claiming what a direction counted since its last report into an event,
 * and making a record of its own for counts no packet will report (aggregate.h tells when each happens).
 */
#ifndef FLOWSCOPE_REPORT_H
#define FLOWSCOPE_REPORT_H

#include "flowscope/emit.h"
#include "flowscope/maps.h"
#include "flowscope/parse.h"

static __always_inline __u64 fs_report_interval_ns(const struct fs_config *cfg)
{
	__u32 ms = cfg->report_interval_ms ? cfg->report_interval_ms : FS_REPORT_INTERVAL_MS_DEFAULT;

	return (__u64)ms * 1000000ULL;
}

/* How long ago `then` was at `now`; 0 when `then` is later: the times in an entry come from two clocks (fs_now:
 * the coarse one is up to a tick behind the precise one) and from several CPUs. */
static __always_inline __u64 fs_age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

/* Move a direction's pending counts into an event: they are then reported, and join the reported counts. */
static __always_inline void fs_claim(struct fs_ct_dir *d, struct fs_event *ev, __u64 now)
{
	d->last_report = now;
	ev->packets = __sync_lock_test_and_set(&d->pend_packets, 0);
	ev->bytes = __sync_lock_test_and_set(&d->pend_bytes, 0);
	ev->tcp_flags_seen = __sync_lock_test_and_set(&d->pend_flags, 0);
	ev->flags |= FS_F_AGGREGATE;
	__sync_fetch_and_add(&d->packets, ev->packets);
	__sync_fetch_and_add(&d->bytes, ev->bytes);
}

/* Report one direction's pending counts as a trace record of its own (no packet bytes): for a connection
 * that went quiet, or an entry about to be replaced. */
static __always_inline int fs_report_dir(const union fs_ct_key *key, int ipv6, struct fs_ct_entry *e, __u8 dir,
					 __u64 now)
{
	struct fs_ct_dir *d = &e->dir[dir & 1];
	__u8 from_end = (e->initiator ^ dir) & 1;
	struct fs_event *ev;
	__u8 proto;

	ev = events.ringbuf_reserve(sizeof(struct fs_event));
	if (!ev) {
		fs_count_lost();
		return 0;
	}
	__builtin_memset(ev, 0, FS_EVENT_HDR_LEN);
	ev->ts = bpf_ktime_get_ns(); /* `now` may be the coarse clock (fs_now); an event has the precise one */
	ev->type = FS_EVENT_TRACE;
	ev->subtype = d->point;
	ev->version = FS_EVENT_VERSION;
	if (ipv6) {
		fs_addr_copy(ev->saddr, key->v6.addr[from_end]);
		fs_addr_copy(ev->daddr, key->v6.addr[from_end ^ 1]);
		proto = key->v6.proto;
		ev->ep_id = key->v6.scope;
	} else {
		/* two words read, then placed: the verifier refuses an index into a key on the stack */
		__u32 a0 = *(const __u32 *)key->v4.addr[0], a1 = *(const __u32 *)key->v4.addr[1];

		*(__u32 *)ev->saddr = from_end ? a1 : a0;
		*(__u32 *)ev->daddr = from_end ? a0 : a1;
		proto = key->v4.proto;
		ev->ep_id = key->v4.scope;
	}
	ev->flags = ipv6 ? FS_F_IPV6 : 0;
	if (!(e->flags & FS_CT_F_MIDSTREAM)) /* a connection first seen mid-stream has no known direction */
		ev->flags |= FS_F_REPLY_KNOWN | (dir ? FS_F_REPLY : 0);
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP || proto == IPPROTO_ICMP ||
	    proto == IPPROTO_ICMPV6)
		ev->flags |= FS_F_L4;
	ev->ifindex = d->ifindex;
	ev->src_identity = e->identity[dir & 1];
	ev->dst_identity = e->identity[(dir & 1) ^ 1];
	ev->ethertype = ipv6 ? ETH_P_IPV6 : ETH_P_IP;
	ev->l4_proto = proto;
	ev->sport = d->sport;
	ev->dport = d->dport;
	if (!(e->flags & FS_CT_F_MIDSTREAM))
		ev->trace_reason = dir ? FS_REASON_REPLY : FS_REASON_ESTABLISHED;
	ev->verdict = FS_VERDICT_FORWARDED;
	ev->cpu = bpf_get_smp_processor_id();
	fs_claim(d, ev, now);
	if (!ev->packets) { /* a packet of the connection claimed them meanwhile */
		events.ringbuf_discard(ev, BPF_RB_NO_WAKEUP);
		return 0;
	}
	events.ringbuf_submit(ev, fs_wakeup_flag());
	return 1;
}

/* Report what both directions counted and nobody reported, where the last report is at least `min_age_ns`
 * old; how many records that made. */
static __always_inline int fs_report_pending(const union fs_ct_key *key, int ipv6, struct fs_ct_entry *e,
					     __u64 now, __u64 min_age_ns)
{
	int made = 0;

#pragma unroll
	for (int dir = 0; dir < 2; dir++) {
		struct fs_ct_dir *d = &e->dir[dir];

		if (d->pend_packets && fs_age(now, d->last_report) >= min_age_ns)
			made += fs_report_dir(key, ipv6, e, dir, now);
	}
	return made;
}

#endif /* FLOWSCOPE_REPORT_H */
