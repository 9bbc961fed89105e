/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet-path sessions: picking packets with a session's filter as they enter the datapath, then following
 * each picked packet through every tc hook, tail-call stage and kernel tracepoint it crosses (docs/trace.md).
 *
 * Cost without a session: nothing but a test of `cfg.trace_active`, which the entry program reads with the
 * config it reads anyway; no map lookup at all. With one:
 *   - the entry program looks the skb up in `trace_packets` (one lookup); a packet already tracked (it was
 *     picked at an earlier hook of this node: same sk_buff, the address survives veth and namespace crossings)
 *     is followed at once; another is offered to the sessions' filters once its headers are parsed;
 *   - a picked or followed packet writes one `struct fs_trace_hop` into `trace_events` per hook, per stage, and
 *     when it passes or is dropped; never into `events`: a tracked packet's flows and monitor aggregation stay
 *     exactly what they would be without the session (hops are never flows).
 * The kernel tracepoints (pathtrace.c) are attached only while a session runs; they follow only what is in
 * `trace_packets`, and forget a packet when the kernel frees it or it leaves the node's namespaces.
 *
 * Packet identity, as retis keys it: the time the packet was first seen and its skb->head then. The skb address
 * alone is no id: the slab hands a freed sk_buff to the next packet at once (docs/reference/packet-path.md).
 */
#ifndef FLOWSCOPE_TRACE_H
#define FLOWSCOPE_TRACE_H

#include <uapi/linux/in.h>

#include "flowscope/calls.h"
#include "flowscope/event.h"
#include "flowscope/state.h"

#ifndef FS_PATH_RINGBUF_PAGES
#define FS_PATH_RINGBUF_PAGES 1024 /* `trace_events`, in pages: 4 MiB, ~14,000 hops: a whole 1000-packet session */
#endif
#define FS_PATH_SESSIONS_MAX 8   /* sessions at once; cfg.trace_active has a bit per slot */
#define FS_PATH_TERMS_MAX 24     /* filter terms a session has, its clauses' separators included */
#define FS_PATH_PACKETS_MAX 4096 /* packets followed at once (an LRU: the oldest goes first) */
/* A tracked entry last seen longer ago than this is a freed packet's whose free no tracepoint saw (the kernel
 * frees some packets without a tracepoint): the skb address now belongs to a new packet. */
#define FS_PATH_STALE_NS 1000000000ULL

/* hop kinds: trace.proto's HopKind */
#define FS_HOP_ENTRY 1  /* an entry program took the packet (stage: 0) */
#define FS_HOP_STAGE 2  /* a tail-call stage ran (stage: its FS_CALL_* slot) */
#define FS_HOP_DROP 3   /* the datapath drops it: ev.drop_reason */
#define FS_HOP_PASS 4   /* the datapath passes it on */
#define FS_HOP_KERNEL 5 /* a kernel tracepoint (stage: FS_HOP_TP_*) */

/* stage of an FS_HOP_KERNEL hop: which tracepoint (bpf/pathtrace.c) */
#define FS_HOP_TP_NETIF_RECEIVE 1 /* net:netif_receive_skb: a device hands the packet to the stack */
#define FS_HOP_TP_DEV_QUEUE 2     /* net:net_dev_queue: queued to a device (after tc egress) */
#define FS_HOP_TP_DEV_XMIT 3      /* net:net_dev_xmit: the driver took it (action: its return code) */
#define FS_HOP_TP_KFREE 4         /* skb:kfree_skb: dropped (ev.drop_reason: the kernel's reason; action 1: no loss) */
#define FS_HOP_TP_CONSUME 5       /* skb:consume_skb: freed as done with: delivered, or a copy's end */

/* filter term fields; a term tests the packet's parsed header (st->ev) */
#define FS_TF_OR 0        /* ends a clause: the packet matches when every term of some clause does */
#define FS_TF_SRC_ADDR 1  /* addr under mask, of family `family` (4 or 6) */
#define FS_TF_DST_ADDR 2
#define FS_TF_ANY_ADDR 3  /* source or destination */
#define FS_TF_SRC_PORT 4  /* lo..hi, TCP/UDP/SCTP */
#define FS_TF_DST_PORT 5
#define FS_TF_ANY_PORT 6
#define FS_TF_PROTO 7     /* IP protocol == lo */
#define FS_TF_TCP_FLAGS 8 /* TCP, and (flags & lo) == hi */
#define FS_TF_FAMILY 9    /* IPv4 (lo 4) or IPv6 (lo 6) */

struct fs_trace_term {
	__u8 field;  /* FS_TF_* */
	__u8 negate; /* the term holds when the test fails */
	__u8 family; /* addresses: 4 or 6 */
	__u8 pad;
	__u16 lo;
	__u16 hi;
	__u8 addr[16]; /* already masked */
	__u8 mask[16];
};

struct fs_trace_session {
	__u32 id;     /* the agent's session id; 0: the slot is free */
	__u32 count;  /* packets to pick */
	__u32 picked; /* packets picked so far (may run past count by a packet or two: see fs_trace_pick) */
	__u32 nterms;
	__u64 lost;   /* hops of this session the ring buffer had no room for */
	struct fs_trace_term terms[FS_PATH_TERMS_MAX];
};

/* A packet being followed, by its sk_buff's address. */
struct fs_trace_packet {
	__u64 first_ts;   /* packet id: when it was picked ... */
	__u64 first_head; /* ... and its skb->head then */
	__u64 last_ts;    /* its last hop */
	__u8 session;     /* slot */
	__u8 pad[7];
};

/* The record a hop writes into `trace_events`; observer/trace/hops.py mirrors it. */
struct fs_trace_hop {
	__u64 skb;        /*  0: the sk_buff's address */
	__u64 first_ts;   /*  8: packet id */
	__u64 first_head; /* 16 */
	__u64 head;       /* 24: skb->head at this hop (0: unknown) */
	__u32 netns;      /* 32: kernel hops: the namespace's inode; 0 at tc hooks (the hook's device says) */
	__u8 kind;        /* 36: FS_HOP_* */
	__u8 point;       /* 37: tc hops: the observation point (FS_TRACE_*); ev.subtype is a drop's reason */
	__u8 session;     /* 38: slot */
	__u8 stage;       /* 39: FS_HOP_STAGE: the FS_CALL_* slot; FS_HOP_KERNEL: FS_HOP_TP_* */
	__u8 ct_state;    /* 40: FS_CT_* (stage_ct on) */
	__u8 ct_dir;      /* 41 */
	__u8 policy_todo; /* 42: FS_POLICY_* as stage_ct left it */
	__u8 emit;        /* 43: monitor aggregation's decision: the flow stream gets an event here */
	__s32 action;     /* 44: FS_HOP_PASS/DROP: the tc action; net_dev_xmit: the driver's return code */
	struct fs_event ev; /* 48: the packet as seen here (header and first bytes); ev.ts is the hop's time; policy:
	                     * ev.rule, ev.policy_flags (match << 3); kernel: ev.location, ev.drop_reason */
};

BPF_RINGBUF_OUTPUT(trace_events, FS_PATH_RINGBUF_PAGES);
BPF_ARRAY(trace_sessions, struct fs_trace_session, FS_PATH_SESSIONS_MAX);
BPF_TABLE("lru_hash", __u64, struct fs_trace_packet, trace_packets, FS_PATH_PACKETS_MAX);
BPF_HASH(trace_netns, __u32, __u32, 1024); /* this node's namespaces: inode -> endpoint id (0: the node) */
/* How many packets trace_packets holds (entries the LRU pushed out are not taken off: then it only errs on the
 * side of looking): the kernel hops return at once when it is 0. */
BPF_ARRAY(trace_followed, __s64, 1);

static __always_inline int fs_trace_following(void)
{
	__u32 zero = 0;
	__s64 *n = trace_followed.lookup(&zero);

	return n && *n > 0;
}

static __always_inline void fs_trace_count(__s64 change)
{
	__u32 zero = 0;
	__s64 *n = trace_followed.lookup(&zero);

	if (n)
		__sync_fetch_and_add(n, change);
}

/* Stop following the packet at `key` (if it was followed). */
static __always_inline void fs_trace_forget(__u64 key)
{
	if (trace_packets.delete(&key) == 0)
		fs_trace_count(-1);
}

static __always_inline void fs_trace_lost(__u8 slot)
{
	__u32 key = slot;
	struct fs_trace_session *s = trace_sessions.lookup(&key);

	if (s)
		__sync_fetch_and_add(&s->lost, 1);
}

/* skb->head of a tc program's packet: the context is the kernel's sk_buff (verified: docs/reference/packet-path.md). */
static __always_inline __u64 fs_trace_head(struct __sk_buff *skb)
{
	__u64 head = 0;

#ifdef FS_SKB_HEAD
	bpf_probe_read_kernel(&head, sizeof(head), (void *)skb + FS_SKB_HEAD);
#endif
	return head;
}

/* Write a hop of the tracked packet in `st` at a tc hook or stage: the event header built so far and the
 * packet's first bytes. */
static __always_inline void fs_trace_hop(struct __sk_buff *skb, struct fs_state *st, __u8 kind, __u8 stage,
					 __s32 action)
{
	struct fs_trace_hop *hop;
	__u64 caplen;

	hop = trace_events.ringbuf_reserve(sizeof(struct fs_trace_hop));
	if (!hop) {
		fs_trace_lost(st->traced - 1);
		return;
	}
	hop->skb = (__u64)(long)skb;
	hop->first_ts = st->trace_first_ts;
	hop->first_head = st->trace_first_head;
	hop->head = fs_trace_head(skb);
	hop->netns = 0;
	hop->kind = kind;
	hop->point = st->point;
	hop->session = st->traced - 1;
	hop->stage = stage;
	hop->ct_state = st->ct_state;
	hop->ct_dir = st->ct_dir;
	hop->policy_todo = st->policy_todo;
	hop->emit = st->emit;
	hop->action = action;
	__builtin_memcpy(&hop->ev, &st->ev, FS_EVENT_HDR_LEN);
	hop->ev.ts = bpf_ktime_get_ns();
	hop->ev.cpu = bpf_get_smp_processor_id();
	hop->ev.rule = st->trace_rule;
	hop->ev.policy_flags = st->trace_match;
	caplen = skb->len < FS_CAPLEN ? skb->len : FS_CAPLEN;
	asm volatile("" : "+r"(caplen)); /* keep the bounds check on the register the helper gets */
	hop->ev.len_cap = 0;
	if (caplen > 0 && caplen <= FS_CAPLEN && bpf_skb_load_bytes(skb, 0, hop->ev.data, caplen) == 0)
		hop->ev.len_cap = caplen;
	trace_events.ringbuf_submit(hop, 0);
}

/* At an entry program, with a session active: is this packet one we follow? Else its headers are offered to the
 * filters once parsed (fs_trace_pick). */
static __always_inline void fs_trace_entry(struct __sk_buff *skb, struct fs_state *st)
{
	__u64 key = (__u64)(long)skb;
	struct fs_trace_packet *p;
	__u64 now;

	st->traced = 0;
	st->trace_rule = 0;
	st->trace_match = 0;
	if (!st->cfg.trace_active)
		return;
	st->trace_pick = 1;
	p = trace_packets.lookup(&key);
	if (!p)
		return;
	now = bpf_ktime_get_ns();
	if (now - p->last_ts > FS_PATH_STALE_NS || !(st->cfg.trace_active & (1U << (p->session & 7)))) {
		fs_trace_forget(key); /* a stale entry, or its session ended */
		return;
	}
	p->last_ts = now;
	st->trace_pick = 0;
	st->traced = p->session + 1;
	st->trace_first_ts = p->first_ts;
	st->trace_first_head = p->first_head;
	fs_trace_hop(skb, st, FS_HOP_ENTRY, 0, 0);
}

static __always_inline int fs_trace_addr_match(const struct fs_trace_term *t, const __u8 *addr)
{
	const __u64 *a = (const __u64 *)addr, *m = (const __u64 *)t->mask, *want = (const __u64 *)t->addr;

	return (a[0] & m[0]) == want[0] && (a[1] & m[1]) == want[1];
}

static __always_inline int fs_trace_port_match(const struct fs_trace_term *t, __u16 port)
{
	return port >= t->lo && port <= t->hi;
}

/* Whether one term holds for the parsed packet in `st`. */
static __always_inline int fs_trace_term_match(const struct fs_trace_term *t, const struct fs_state *st)
{
	const struct fs_event *ev = &st->ev;
	__u8 family = !st->addrs ? 0 : (ev->flags & FS_F_IPV6) ? 6 : 4;
	__u8 ports = (ev->flags & FS_F_L4) &&
		     (ev->l4_proto == IPPROTO_TCP || ev->l4_proto == IPPROTO_UDP || ev->l4_proto == IPPROTO_SCTP);
	int hit = 0;

	switch (t->field) {
	case FS_TF_SRC_ADDR:
		hit = family == t->family && fs_trace_addr_match(t, ev->saddr);
		break;
	case FS_TF_DST_ADDR:
		hit = family == t->family && fs_trace_addr_match(t, ev->daddr);
		break;
	case FS_TF_ANY_ADDR:
		hit = family == t->family && (fs_trace_addr_match(t, ev->saddr) || fs_trace_addr_match(t, ev->daddr));
		break;
	case FS_TF_SRC_PORT:
		hit = ports && fs_trace_port_match(t, ev->sport);
		break;
	case FS_TF_DST_PORT:
		hit = ports && fs_trace_port_match(t, ev->dport);
		break;
	case FS_TF_ANY_PORT:
		hit = ports && (fs_trace_port_match(t, ev->sport) || fs_trace_port_match(t, ev->dport));
		break;
	case FS_TF_PROTO:
		hit = family && ev->l4_proto == t->lo;
		break;
	case FS_TF_TCP_FLAGS:
		hit = (ev->flags & FS_F_L4) && ev->l4_proto == IPPROTO_TCP && (ev->tcp_flags & t->lo) == t->hi;
		break;
	case FS_TF_FAMILY:
		hit = family == t->lo;
		break;
	}
	return hit != t->negate;
}

/* Whether a session's filter (clauses of terms, separated by FS_TF_OR) picks the packet. */
static __always_inline int fs_trace_filter(const struct fs_trace_session *s, const struct fs_state *st)
{
	int clause = 1;

	for (__u32 i = 0; i < FS_PATH_TERMS_MAX; i++) {
		const struct fs_trace_term *t = &s->terms[i];

		if (i >= s->nterms)
			break;
		if (t->field == FS_TF_OR) {
			if (clause)
				return 1;
			clause = 1;
		} else if (clause && !fs_trace_term_match(t, st)) {
			clause = 0;
		}
	}
	return clause;
}

/* After the parse stage, for a packet not followed yet: the first active session whose filter picks it, while it
 * has packets left to pick, follows it from here. */
static __always_inline void fs_trace_pick(struct __sk_buff *skb, struct fs_state *st)
{
	struct fs_trace_packet p = {};
	struct fs_trace_session *s;
	__u64 skb_key = (__u64)(long)skb;

	if (!st->trace_pick)
		return;
	st->trace_pick = 0;
	for (__u32 slot = 0; slot < FS_PATH_SESSIONS_MAX; slot++) {
		__u32 key = slot; /* the lookup's key on the stack, the counter in a register the verifier follows */

		if (!(st->cfg.trace_active & (1U << slot)))
			continue;
		s = trace_sessions.lookup(&key);
		if (!s || !s->id || s->picked >= s->count || !fs_trace_filter(s, st))
			continue;
		/* bcc's LLVM cannot use an atomic add's old value: two CPUs may both take the last one, and the agent
		 * keeps only the first `count` packets it hears of */
		__sync_fetch_and_add(&s->picked, 1);
		p.first_ts = bpf_ktime_get_ns();
		p.first_head = fs_trace_head(skb);
		p.last_ts = p.first_ts;
		p.session = slot;
		if (trace_packets.insert(&skb_key, &p) == 0)
			fs_trace_count(1);
		else
			trace_packets.update(&skb_key, &p);
		st->traced = slot + 1;
		st->trace_first_ts = p.first_ts;
		st->trace_first_head = p.first_head;
		fs_trace_hop(skb, st, FS_HOP_ENTRY, 0, 0);
		return;
	}
}

/* The policy verdict a followed packet's hops show (hop ev.policy_flags): the match type in bits 0-2. */
#define FS_PATH_V_KNOWN 0x20    /* a verdict was taken (else: no policy question for this packet) */
#define FS_PATH_V_ALLOWED 0x40
#define FS_PATH_V_ENFORCED 0x80 /* the endpoint is in default-deny in that direction */

static __always_inline void fs_trace_verdict(struct fs_state *st, __u32 rule, __u8 match, __u8 allowed, __u8 enforced)
{
	st->trace_rule = rule;
	st->trace_match = (match & 7) | FS_PATH_V_KNOWN | (allowed ? FS_PATH_V_ALLOWED : 0) |
			  (enforced ? FS_PATH_V_ENFORCED : 0);
}

/* The verdict a connection's entry keeps, once it was taken. */
static __always_inline void fs_trace_verdict_of(struct fs_state *st, const struct fs_ct_entry *e)
{
	if (e->flags & FS_CT_F_JUDGED)
		fs_trace_verdict(st, e->rule, e->match, !(e->flags & FS_CT_F_DENIED), 1);
}

/* A stage of a followed packet ran. */
static __always_inline void fs_trace_stage(struct __sk_buff *skb, struct fs_state *st, __u8 stage)
{
	if (st->traced)
		fs_trace_hop(skb, st, FS_HOP_STAGE, stage, 0);
}

/* The datapath is done with a followed packet at this hook: it passes (TC_ACT_OK) or is dropped. */
static __always_inline int fs_trace_done(struct __sk_buff *skb, struct fs_state *st, int action)
{
	if (st->traced)
		fs_trace_hop(skb, st, action == TC_ACT_OK ? FS_HOP_PASS : FS_HOP_DROP, 0, action);
	return action;
}

#endif /* FLOWSCOPE_TRACE_H */
