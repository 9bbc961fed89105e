/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Monitor aggregation: counting a connection's packets, and deciding which packets become events.
 *
 * Levels (config.aggregation, Cilium's meanings): none traces every packet at every point; lowest and low
 * silence the FROM_* points, since the TO_* point the packet leaves the node by traces it again (a packet for
 * the host itself is the exception: no TO_* point will see it); medium and maximum also make a connection
 * report only when something happens: its first packet each way, a TCP flag of config.report_flags seen for
 * the first time each way, a FIN or RST, every packet once both ways are closing, and the first packet after
 * config.report_interval_ms since the last report. A report carries the packets, bytes and TCP flags counted
 * since that direction's previous report (FS_F_AGGREGATE).
 *
 * Counts nobody reported yet wait in the entry; whoever reports claims them with an atomic exchange, so each
 * packet is reported exactly once. A connection that simply stops leaves some behind: the agent's sweep runs
 * ct_flush for entries whose last report is older than the interval, and fs_report_pending turns them into
 * the same kind of record (without packet bytes) in the same ring. Replacing a stale entry does the same.
 * Drops and policy verdicts are never aggregated.
 */
#ifndef FLOWSCOPE_AGGREGATE_H
#define FLOWSCOPE_AGGREGATE_H

#include "flowscope/conntrack.h"
#include "flowscope/identity.h"
#include "flowscope/report.h"
#include "flowscope/state.h"

/* Whether a packet at this observation point is traced at all at the configured level. */
static __always_inline int fs_trace_wanted(struct fs_state *st)
{
	if (st->cfg.aggregation == FS_AGG_NONE || !fs_point_is_rx(st->point))
		return 1;
	fs_identities(st, FS_ID_DST);
	return st->ev.dst_identity == FS_IDENTITY_HOST;
}

/* fs_trace_wanted() for a packet of a tracked connection: whether a direction's packets go to the host is
 * asked once (an ipcache lookup, a trie walk) and kept in the direction, not asked again for every packet. */
static __always_inline int fs_ct_trace_wanted(struct fs_ct_dir *d, struct fs_state *st)
{
	int wanted;

	if (st->cfg.aggregation == FS_AGG_NONE || !fs_point_is_rx(st->point))
		return 1;
	if (d->to_host)
		return d->to_host == FS_CT_TO_HOST_YES;
	wanted = fs_trace_wanted(st);
	d->to_host = wanted ? FS_CT_TO_HOST_YES : FS_CT_TO_HOST_NO;
	return wanted;
}

/* Count the packet in its connection and direction, and decide whether it becomes an event (st->emit);
 * a report also takes the direction's pending counts into the event. Per packet, this writes only the
 * direction's own cache line (maps.h), with two atomic additions. */
static __always_inline void fs_ct_account(struct fs_ct_entry *e, struct fs_state *st, __u64 now)
{
	__u8 dir = st->ct_dir & 1;
	struct fs_ct_dir *d = &e->dir[dir];
	__u64 len = st->ev.len_orig;
	__u8 flags = st->ev.l4_proto == IPPROTO_TCP ? st->ev.tcp_flags : 0;
	__u8 fresh_flags = flags & ~d->flags_seen;
	int first = !e->seen[dir];
	int closes = (flags & (FS_TCP_FIN | FS_TCP_RST)) && !e->closing[dir];
	__u64 expires;
	int report;

	if (first) {
		e->seen[dir] = 1;
		d->ifindex = st->ev.ifindex;
		d->point = st->point;
		d->sport = st->ev.sport;
		d->dport = st->ev.dport;
	}
	if (fresh_flags)
		d->flags_seen |= flags;
	if (flags & FS_TCP_RST) {
		e->closing[0] = 1;
		e->closing[1] = 1;
	} else if (closes) {
		e->closing[dir] = 1;
	}
	/* `expires` is in the line every packet of both directions reads: written when it moves closer (a closing
	 * connection), or by a second or more. */
	expires = now + fs_ct_lifetime_ns(e, st->ev.l4_proto);
	if (expires < e->expires || expires - e->expires >= FS_CT_EXPIRES_SLACK_NS)
		e->expires = expires;

	st->emit = fs_ct_trace_wanted(d, st);
	if (!st->emit || st->cfg.aggregation < FS_AGG_MEDIUM || st->ct_state == FS_CT_RELATED) {
		/* a trace of this one packet, or nothing: reported as it is (or never) */
		__sync_fetch_and_add(&d->packets, 1);
		__sync_fetch_and_add(&d->bytes, len);
		return;
	}

	__sync_fetch_and_add(&d->pend_packets, 1);
	__sync_fetch_and_add(&d->pend_bytes, len);
	if (flags & ~d->pend_flags) /* an atomic OR only for flags not pending already (an ACK rarely is new) */
		__sync_fetch_and_or(&d->pend_flags, flags);
	report = first || st->ct_state == FS_CT_NEW || (fresh_flags & st->cfg.report_flags) || closes ||
		 (e->closing[0] && e->closing[1]) || fs_age(now, d->last_report) >= fs_report_interval_ns(&st->cfg);
	if (!report) {
		st->emit = 0;
		return;
	}
	fs_claim(d, &st->ev, now);
}

#endif /* FLOWSCOPE_AGGREGATE_H */
