/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one record the datapath sends to user space.
 *
 * Every event has the same size, so the agent can read a whole batch out of the ring buffer as one array
 * (observer/events.py mirrors this layout as a numpy dtype; tests/test_event_layout.py checks that both agree).
 * The header carries what filters scan (addresses, ports, protocol, observation point, verdict, identities)
 * already parsed, so the agent never parses a packet it is not asked to show; the packet's first bytes follow
 * for the full decode. Type and subtype use Cilium's monitor numbering, so they go on the wire as
 * flow.event_type unchanged. The numbers defined here (and in drop.h, maps.h, policy.h) that the wire shares
 * have their Python twins in common/names.py; tests/common/test_common_names.py checks that they are equal.
 */
#ifndef FLOWSCOPE_EVENT_H
#define FLOWSCOPE_EVENT_H

#ifndef FS_CAPLEN
#define FS_CAPLEN 128 /* packet bytes captured per event; the agent passes -DFS_CAPLEN */
#endif

#ifndef FS_L7_CAPLEN
#define FS_L7_CAPLEN 1024 /* packet bytes an L7 capture can carry (l7.h); the agent passes -DFS_L7_CAPLEN */
#endif

#define FS_EVENT_VERSION 1

/* type: Cilium's monitor message types. */
#define FS_EVENT_DROP 1
#define FS_EVENT_DEBUG 2 /* a datapath debug event (lb.h: a new service translation), routed to GetDebugEvents */
#define FS_EVENT_TRACE 4
#define FS_EVENT_POLICY_VERDICT 5
#define FS_EVENT_L7 129   /* Cilium's MessageTypeAccessLog: a DNS or HTTP message's packet, in the L7 ring (l7.h) */
#define FS_EVENT_LOST 255 /* made by the agent, never by the kernel: a LostEvent stored in the flow ring */

/* subtype of FS_EVENT_TRACE: Cilium's trace observation points (enum trace_point). */
#define FS_TRACE_TO_LXC 0
#define FS_TRACE_TO_PROXY 1
#define FS_TRACE_TO_HOST 2
#define FS_TRACE_TO_STACK 3
#define FS_TRACE_TO_OVERLAY 4
#define FS_TRACE_FROM_LXC 5
#define FS_TRACE_FROM_PROXY 6
#define FS_TRACE_FROM_HOST 7
#define FS_TRACE_FROM_STACK 8
#define FS_TRACE_FROM_OVERLAY 9
#define FS_TRACE_FROM_NETWORK 10
#define FS_TRACE_TO_NETWORK 11

/* flags */
#define FS_F_IPV6 0x01        /* saddr/daddr are IPv6; else IPv4 in their first 4 bytes (when ethertype is IP) */
#define FS_F_REPLY 0x02       /* the packet goes against its connection's original direction */
#define FS_F_REPLY_KNOWN 0x04 /* FS_F_REPLY is meaningful (conntrack knew the connection) */
#define FS_F_L4 0x08          /* sport/dport (or ICMP type/code) were read from the packet */
#define FS_F_FRAGMENT 0x10    /* a non-first IP fragment: no L4 header in this packet */
#define FS_F_TRUNCATED 0x20   /* the packet ended inside a header; fields after it are zero */
#define FS_F_KERNEL_DROP 0x40 /* drop_reason is the kernel's enum skb_drop_reason, not a Cilium code */
#define FS_F_AGGREGATE 0x80   /* a monitor-aggregation report: packets/bytes count since the last one */

/* verdict: flow.Verdict wire values. */
#define FS_VERDICT_FORWARDED 1
#define FS_VERDICT_DROPPED 2

/* trace_reason: flow.TraceReason wire values. */
#define FS_REASON_UNKNOWN 0
#define FS_REASON_NEW 1
#define FS_REASON_ESTABLISHED 2
#define FS_REASON_REPLY 3
#define FS_REASON_RELATED 4

/* The header every record of the datapath starts with (120 bytes): the event (fs_event) and the L7 capture
 * (fs_l7_event, l7.h) share it, so the agent reads both with one dtype of the caplen it was compiled with
 * (observer.events.event_dtype) and the two layouts cannot drift apart. */
#define FS_EVENT_HEADER                                                                                        \
	__u64 ts;            /*   0: bpf_ktime_get_ns(); the agent rewrites it to wall-clock ns since the epoch */    \
	__u8 type;           /*   8: FS_EVENT_* */                                                                    \
	__u8 subtype;        /*   9: trace: observation point; drop: reason (low byte of drop_reason) */              \
	__u8 version;        /*  10: FS_EVENT_VERSION */                                                              \
	__u8 flags;          /*  11: FS_F_* */                                                                        \
	__u32 ifindex;       /*  12: the device at the observation point */                                           \
	__u32 len_orig;      /*  16: the packet's length (skb->len) */                                                \
	__u16 len_cap;       /*  20: bytes valid in data[] */                                                         \
	__u16 ep_id;         /*  22: endpoint at the observation point; 0 for the node's own devices */               \
	__u32 hash;          /*  24: skb hash */                                                                      \
	__u32 src_identity;  /*  28: numeric security identity of the source, from the ipcache */                     \
	__u32 dst_identity;  /*  32: ... of the destination */                                                        \
	__u16 ethertype;     /*  36: host order, after any VLAN tags */                                               \
	__u8 l4_proto;       /*  38: IPPROTO_*, 0 when there is none */                                               \
	__u8 tcp_flags;      /*  39: this packet's TCP flags byte (FIN 0x01 ... CWR 0x80) */                          \
	__u16 sport;         /*  40: host order; ICMP: type */                                                        \
	__u16 dport;         /*  42: host order; ICMP: code */                                                        \
	__u8 trace_reason;   /*  44: FS_REASON_* (connection state) */                                                \
	__u8 verdict;        /*  45: FS_VERDICT_* */                                                                  \
	__u8 policy_flags;   /*  46: policy verdict: direction (bits 0-1), match type (bits 3-5) */                   \
	__u8 cpu;            /*  47: CPU that emitted the event */                                                    \
	__u32 drop_reason;   /*  48: Cilium drop code (130..), or kernel skb_drop_reason with FS_F_KERNEL_DROP */     \
	__u8 tcp_flags_seen; /*  52: aggregate: TCP flags seen on the connection direction since the last report */   \
	__u8 vni[3];         /*  53: overlay points: the tunnel's VNI, network order (overlay.h) */                   \
	__u32 packets;       /*  56: aggregate: packets since the last report (1 for a single packet) */              \
	__u32 rule;          /*  60: policy verdict: the rule that decided (agent's rule table); 0 none */            \
	__u64 bytes;         /*  64: aggregate: bytes since the last report */                                        \
	__u64 location;      /*  72: kernel drop: the address that freed the packet; overlay points (to-overlay,      \
	                      *      from-overlay): the outer IPv4 source (bytes 0-3) and destination (4-7), network  \
	                      *      order, 0 when the packet had no tunnel key (overlay.h); an L7 record's copy in   \
	                      *      the flow ring (the agent's): its L7 store sequence number (observer/l7/)         \
	                      */                                                                                      \
	__u8 saddr[16];      /*  80 */                                                                                \
	__u8 daddr[16];      /*  96 */                                                                                \
	__u32 src_names;     /* 112: the agent's, never the datapath's (which writes 0): the DNS names (or TLS server \
	                      *      name) known for saddr, as a name-set id the agent assigns when it stores the     \
	                      *      record (observer/l7/names.py); 0 none */                                         \
	__u32 dst_names;     /* 116: ... for daddr */

struct fs_event {
	FS_EVENT_HEADER
	__u8 data[FS_CAPLEN]; /* 120: the packet's first len_cap bytes, from the Ethernet header on */
};

/* An L7 capture (l7.h): the same header, more of the packet (from the Ethernet header on, len_cap bytes). */
struct fs_l7_event {
	FS_EVENT_HEADER
	__u8 data[FS_L7_CAPLEN]; /* 120 */
};

#endif /* FLOWSCOPE_EVENT_H */
