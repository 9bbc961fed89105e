/* SPDX-License-Identifier: Apache-2.0 */
/*
 * L7 without a proxy: the packets whose payload the agent parses as DNS, HTTP/1.x or a TLS ClientHello go, with
 * more of their bytes than an event has (FS_L7_CAPLEN), into a ring buffer of their own, `l7_events`.
 *
 * Which packets: the agent configures ports (`l7_ports`, a slot per port: the kind and the payload bytes wanted
 * for UDP and for TCP). stage_ct decides (conntrack knows the packet's direction by then), only at a pod's hooks,
 * for a TCP or UDP packet with its L4 header read, no fragment, a payload, and a configured port. Each message
 * is captured once in the cluster, and a request and its response on the same node (so the agent can pair them
 * for latency): on the client's side (its request leaving at from-container, the response entering at
 * to-container), and on the server's side only when the client is no pod (a reserved identity below 256: host,
 * world, remote node ...), which no agent would capture on its side. A packet whose reply state conntrack does
 * not know counts as a request. The payload's first bytes must look like the kind: HTTP a capital letter (a
 * method, or "HTTP/"), TLS a handshake record holding a ClientHello; DNS anything (the agent's parser judges).
 *
 * What is sent: stage_send_trace, for a packet that passed (a dropped packet never gets there), sends the record
 * after the packet's event, whatever the monitor aggregation decided: a struct fs_l7_event whose header is the
 * event's with type FS_EVENT_L7 (Cilium's access-log message type) and subtype the observation point, and the
 * packet from its Ethernet header on, len_cap = min(packet, payload offset + the kind's caplen, FS_L7_CAPLEN).
 * A TLS ClientHello is an ordinary packet to show (its server name is read by the agent's decoder): its record is
 * the packet's trace event itself (FS_EVENT_TRACE), sent to `l7_events` instead of `events`, never to both.
 *
 * Cost for other packets: one test of cfg.l7_active while no port is configured; otherwise two array lookups for
 * a TCP or UDP packet at a pod's hook, nothing at the node's devices.
 */
#ifndef FLOWSCOPE_L7_H
#define FLOWSCOPE_L7_H

#include <uapi/linux/in.h>

#include "flowscope/aggregate.h"
#include "flowscope/config.h"
#include "flowscope/emit.h"
#include "flowscope/event.h"
#include "flowscope/identity.h"
#include "flowscope/lb.h"
#include "flowscope/parse.h"
#include "flowscope/report.h"
#include "flowscope/state.h"

/* What a port carries (fs_l7_port.udp, .tcp); common/l7_ports.py names them. */
#define FS_L7_NONE 0
#define FS_L7_DNS 1
#define FS_L7_HTTP 2
#define FS_L7_TLS 3

#define FS_L7_PORTS 65536
#define FS_RESERVED_IDENTITY_MAX 256 /* identities below this are reserved ones (host, world, ...), never a pod's */

#define FS_TLS_HANDSHAKE 0x16       /* TLS record type */
#define FS_TLS_CLIENT_HELLO 0x01    /* handshake type, the byte after the 5-byte record header */

/* l7_ports: a slot per port number: the kind of each protocol's payload on it and the payload bytes wanted. */
struct fs_l7_port {
	__u8 udp;          /* FS_L7_* */
	__u8 tcp;
	__u16 udp_caplen;  /* L4 payload bytes to capture */
	__u16 tcp_caplen;
	__u16 pad;
};

_Static_assert(FS_L7_CAPLEN >= FS_CAPLEN && FS_L7_CAPLEN % 8 == 0 && FS_L7_CAPLEN < 65536,
	       "FS_L7_CAPLEN: a multiple of 8, at least FS_CAPLEN (fs_lb_event edits an L7 record as an event)");
_Static_assert(__builtin_offsetof(struct fs_l7_event, data) == __builtin_offsetof(struct fs_event, data),
	       "fs_l7_event and fs_event share their header");

BPF_ARRAY(l7_ports, struct fs_l7_port, FS_L7_PORTS);
BPF_RINGBUF_OUTPUT(l7_events, FS_L7_RINGBUF_PAGES); /* struct fs_l7_event records to the agent */
BPF_PERCPU_ARRAY(l7_lost, __u64, 1);                 /* L7 records not sent because `l7_events` was full */

/* The kind configured for `port` and the packet's protocol, with its caplen; FS_L7_NONE when there is none. */
static __always_inline __u8 fs_l7_port_kind(__u16 port, int tcp, __u16 *caplen)
{
	__u32 key = port;
	struct fs_l7_port *p = l7_ports.lookup(&key);

	if (!p)
		return FS_L7_NONE;
	*caplen = tcp ? p->tcp_caplen : p->udp_caplen;
	return tcp ? p->tcp : p->udp;
}

/* Whether this hook captures the packet: the client's side always, the server's only for a client that is no
 * pod (its identity: the source of a request entering the server, the destination of a response leaving it). */
static __always_inline int fs_l7_side(struct fs_state *st, int reply)
{
	if ((st->point == FS_TRACE_FROM_LXC) != reply)
		return 1;
	if (st->point == FS_TRACE_TO_LXC) {
		fs_identities(st, FS_ID_SRC);
		return st->ev.src_identity < FS_RESERVED_IDENTITY_MAX;
	}
	fs_identities(st, FS_ID_DST);
	return st->ev.dst_identity < FS_RESERVED_IDENTITY_MAX;
}

/* Whether the payload's first bytes at `off` look like `kind`: DNS always (its parser judges), HTTP a capital
 * letter, TLS a handshake record with a ClientHello. */
static __always_inline int fs_l7_looks_like(struct __sk_buff *skb, __u32 off, __u8 kind)
{
	__u8 buf[6];
	const __u8 *head;

	if (kind == FS_L7_DNS)
		return 1;
	head = fs_header(skb, off, buf, sizeof(buf));
	if (!head)
		return 0; /* under 6 bytes: no request line, status line or ClientHello starts in so little */
	if (kind == FS_L7_HTTP)
		return head[0] >= 'A' && head[0] <= 'Z';
	return kind == FS_L7_TLS && head[0] == FS_TLS_HANDSHAKE && head[5] == FS_TLS_CLIENT_HELLO;
}

/* stage_ct, while some port is configured: choose the packet for the L7 ring (st->l7_kind, st->l7_len). */
static __always_inline void fs_l7_decide(struct __sk_buff *skb, struct fs_state *st)
{
	__u8 tcp_buf[FS_TCP_HDR_LEN];
	const __u8 *tcp_hdr;
	__u16 caplen = 0;
	__u32 off, want;
	int tcp, reply;
	__u8 kind;

	if (st->point != FS_TRACE_FROM_LXC && st->point != FS_TRACE_TO_LXC)
		return;
	tcp = st->ev.l4_proto == IPPROTO_TCP;
	if (!tcp && st->ev.l4_proto != IPPROTO_UDP)
		return;
	if ((st->ev.flags & (FS_F_L4 | FS_F_FRAGMENT)) != FS_F_L4)
		return;
	/* conntrack's direction, also its guess for a connection first seen mid-stream (whose flows report none):
	 * which end a message came from is what finds the server's port */
	reply = st->ct_state != FS_CT_UNTRACKED && st->ct_dir == FS_CT_REPLY;
	/* the server's port first: a client's ephemeral port may happen to be a configured one */
	kind = fs_l7_port_kind(reply ? st->ev.sport : st->ev.dport, tcp, &caplen);
	if (!kind)
		kind = fs_l7_port_kind(reply ? st->ev.dport : st->ev.sport, tcp, &caplen);
	if (!kind)
		return;
	off = st->l4_off + FS_UDP_HDR_LEN;
	if (tcp) {
		tcp_hdr = fs_header(skb, st->l4_off, tcp_buf, FS_TCP_HDR_LEN);
		if (!tcp_hdr || (tcp_hdr[12] >> 4) < 5)
			return;
		off = st->l4_off + (tcp_hdr[12] >> 4) * 4;
	}
	if (off >= skb->len || !fs_l7_looks_like(skb, off, kind) || !fs_l7_side(st, reply))
		return;
	want = off + caplen;
	st->l7_len = want < FS_L7_CAPLEN ? want : FS_L7_CAPLEN;
	st->l7_kind = kind;
}

/* A ClientHello's record is its trace event, sent whatever the aggregation decided. Where the aggregation had
 * left the packet in its connection's pending counts (medium, at a point that reports), the record takes them,
 * as any report does: otherwise the packet would be reported twice, by its record and by the next report. */
static __always_inline void fs_l7_report(struct fs_ct_entry *e, struct fs_state *st)
{
	struct fs_ct_dir *d = &e->dir[st->ct_dir & 1];

	if (st->emit || st->cfg.aggregation < FS_AGG_MEDIUM || st->ct_state == FS_CT_RELATED)
		return; /* a report already, or counted as a packet traced on its own */
	if (!fs_ct_trace_wanted(d, st))
		return; /* a point the aggregation silences: counted as reported */
	fs_claim(d, &st->ev, st->now);
	st->emit = 1;
}

static __always_inline void fs_l7_count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = l7_lost.lookup(&zero);

	if (n)
		*n += 1;
}

/* Send the packet's L7 record (see the top of this file); -1 when `l7_events` was full (counted in l7_lost). */
static __always_inline int fs_l7_emit(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_l7_event *rec;
	__u64 len = st->l7_len;

	fs_event_prepare(skb, st);
	rec = l7_events.ringbuf_reserve(sizeof(struct fs_l7_event));
	if (!rec) {
		fs_l7_count_lost();
		return -1;
	}
	__builtin_memcpy(rec, &st->ev, FS_EVENT_HDR_LEN);
	if (st->l7_kind != FS_L7_TLS) { /* one message's packet, whatever the aggregation made of the event */
		rec->type = FS_EVENT_L7;
		rec->flags &= ~FS_F_AGGREGATE;
		rec->tcp_flags_seen = 0;
		rec->packets = 1;
		rec->bytes = skb->len;
	}
	if (skb->len < len)
		len = skb->len;
	asm volatile("" : "+r"(len)); /* keep the bounds checks on the register the helper gets (see fs_emit) */
	rec->len_cap = 0;
	if (len > 0 && len <= FS_L7_CAPLEN && bpf_skb_load_bytes(skb, 0, rec->data, len) == 0)
		rec->len_cap = len;
	if (st->lb_xlate)
		fs_lb_event(st, (struct fs_event *)rec, rec->len_cap);
	l7_events.ringbuf_submit(rec, fs_wakeup_flag());
	return 0;
}

/* stage_send_trace for a packet chosen for the L7 ring: its event (when the aggregation wants it), then its L7
 * record; a ClientHello's record is its event, which goes to `events` only when `l7_events` was full. */
static __always_inline void fs_l7_send(struct __sk_buff *skb, struct fs_state *st)
{
	if (st->l7_kind == FS_L7_TLS) {
		if (fs_l7_emit(skb, st) < 0 && st->emit)
			fs_emit(skb, st);
		return;
	}
	if (st->emit)
		fs_emit(skb, st);
	fs_l7_emit(skb, st);
}

#endif /* FLOWSCOPE_L7_H */
