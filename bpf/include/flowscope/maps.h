/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps every datapath program shares, and the layouts of their keys and values. The agent fills
 * `endpoints`, `ipcache`, `config` and the policy maps, reads `events`, `lost`, `ct4` and `ct6`; `calls` holds
 * the stages (observer/datapath/ mirrors these layouts).
 *
 * Declared with bcc's macros: bcc rewrites `map.lookup()` and friends into map references, which it only
 * does in its main file, so the loader inlines these headers into the one translation unit it compiles.
 */
#ifndef FLOWSCOPE_MAPS_H
#define FLOWSCOPE_MAPS_H

#include "flowscope/calls.h"
#include "flowscope/config.h"
#include "flowscope/event.h"

/* endpoints_direct and endpoints: the host-side interface of an endpoint (its ifindex) -> who is behind it.
 * Every packet asks, so the answer is an array slot for the indexes a network namespace hands out first (an
 * array lookup is an address computed in line; a hash lookup cost a packet ~45 ns of ~220 in a test run), and
 * a hash entry for the rare higher ones (a namespace's indexes only grow, so a node that has made tens of
 * thousands of interfaces reaches them). fs_endpoint_of() asks the right one. */
struct fs_endpoint {
	__u16 ep_id;     /* the endpoint id; reported as fs_event.ep_id */
	__u16 flags;     /* FS_EP_F_* */
	__u32 identity;  /* the endpoint's own security identity */
};

#define FS_EP_F_PRESENT 0x0001 /* an array slot that holds an endpoint (an empty one is all zero) */

/* ipcache: address prefix -> identity. IPv4 is stored v4-mapped (::ffff:a.b.c.d) and prefixlen counts over the
 * 128 bits, so 10.0.0.0/8 is prefixlen 104. A miss means world. */
struct fs_ipcache_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct fs_ipcache_value {
	__u32 identity;
	__u16 ep_id;  /* the endpoint owning the address, when it is on this node; else 0 */
	__u16 flags;  /* reserved */
};

#define FS_IDENTITY_UNKNOWN 0
#define FS_IDENTITY_HOST 1
#define FS_IDENTITY_WORLD 2

/* ct4 and ct6: one connection as one observation side sees it, a table per address family (as Cilium has):
 * every packet of a connection hashes and compares its key, and an IPv4 key is 16 bytes where an IPv6 one is
 * 40. The tables are hash tables in arrays (cttable.h says why and how). The side (`scope`) is the endpoint
 * whose device the hooks sit on (both its hooks share the entry), or 0 for the node's device. Each direction of
 * an entry is seen at exactly one hook of its side (leaving the pod at from-container, entering at
 * to-container), so counting at every hook into its own side's entry never counts a packet twice in one entry.
 *
 * The key is the same for both directions: of the two (address, port) ends, the one that sorts lower comes
 * first, and the entry remembers which end opened the connection. Both keys have the same fields in the same
 * order (words to hash and compare); only the addresses' size differs. */
struct fs_ct4_key {
	__u8 addr[2][4];
	__u16 port[2];    /* host order; ICMP echo: the identifier on the requester's end, 0 on the other */
	__u8 proto;
	__u8 family;      /* 4 */
	__u16 scope;      /* endpoint id of the side keeping the entry; 0: the node's device */
};

struct fs_ct6_key {
	__u8 addr[2][16];
	__u16 port[2];
	__u8 proto;
	__u8 family;      /* 6 */
	__u16 scope;
};

/* A connection's key of either family: which one is in use goes with it (FS_F_IPV6 of the packet's event). */
union fs_ct_key {
	struct fs_ct4_key v4;
	struct fs_ct6_key v6;
};

#define FS_CT_ORIGINAL 0 /* the direction the connection was opened in */
#define FS_CT_REPLY 1

/* One direction of a connection: 64 bytes, a cache line of the entry to itself (see fs_ct_entry). Counters
 * that several CPUs may update together are 64-bit and updated with atomic operations. A packet adds to the
 * pending counts where it may be reported (medium and above, at points that report), else to the reported
 * ones; whoever reports (a packet of the connection, or the agent's sweep through ct_flush) claims the pending
 * counts with an atomic exchange and adds them to the reported ones, so every packet is reported exactly once
 * and a direction's total is always packets + pend_packets. */
struct fs_ct_dir {
	__u64 packets;       /* reported (or traced one by one) */
	__u64 bytes;
	__u64 pend_packets;  /* counted but not yet reported */
	__u64 pend_bytes;
	__u64 pend_flags;    /* TCP flags seen since the last report */
	__u64 last_report;   /* bpf_ktime_get_ns() of the last report; 0: never */
	__u32 ifindex;       /* where this direction is observed */
	__u16 sport;         /* the event's ports for this direction (ICMP: type and code of its last packet) */
	__u16 dport;
	__u8 point;          /* observation point (FS_TRACE_*) of `ifindex` */
	__u8 flags_seen;     /* every TCP flag ever seen this way */
	__u8 to_host;        /* FS_CT_TO_HOST_*: whether this way's packets are for the host, once asked */
	__u8 pad;
	__u32 born_s;        /* FS_CT_ORIGINAL's: when the connection was first seen, seconds of fs_now() (its age) */
};

/* fs_ct_entry.flags */
#define FS_CT_F_JUDGED 0x01 /* the policy verdict below was taken (at revision policy_rev) */
#define FS_CT_F_DENIED 0x02 /* ... and it denies the connection: every packet is dropped */
#define FS_CT_F_MIDSTREAM 0x04 /* first seen mid-stream (a TCP packet other than a SYN): which end opened it is
				* not known, so its packets carry no reply flags (conntrack.h fs_ct_lookup) */

/* The two directions of a connection are counted on different CPUs more often than not (a TCP stream's data
 * where its sender runs, its ACKs where its receiver runs), so the entry is laid out by who writes what:
 * first what every packet reads and hardly anything writes, then each direction in a cache line of its own.
 * The header shares the key's cache line of the slot (fs_ct4_slot, fs_ct6_slot below) and dir[0] and dir[1]
 * each have one to themselves: a direction's packets never take a cache line away from the other direction's
 * CPU. */
struct fs_ct_entry {
	__u64 expires;            /* bpf_ktime_get_ns() after which the entry is stale */
	__u32 identity[2];        /* source identity of each direction's packets */
	__u32 policy_rev;         /* the policy revision the verdict was taken at */
	__u32 rule;               /* the rule that decided (agent's rule table); 0: none */
	__u32 drop_reason;        /* FS_DROP_POLICY_* when denied */
	__u8 initiator;           /* the key end (0 or 1) that opened the connection */
	__u8 flags;               /* FS_CT_F_* */
	__u8 match;               /* policy match type (FS_MATCH_*) of the verdict */
	__u8 seen[2];             /* per direction: 1 once a packet went this way */
	__u8 closing[2];          /* per direction: a FIN or RST went this way */
	__u8 lb_checked;          /* frontend below was looked for (lb.h fs_lb_remember) */
	__u16 frontend;           /* the service frontend this node translated the connection for (lb.h); 0: none */
	__u8 pad2[2];
	struct fs_ct_dir dir[2];  /* FS_CT_ORIGINAL, FS_CT_REPLY */
};
_Static_assert(sizeof(struct fs_ct_dir) == 64 && __builtin_offsetof(struct fs_ct_entry, dir) == 40 &&
		       sizeof(struct fs_ct_entry) == 168,
	       "fs_ct_entry: layout changed (observer/datapath/conntrack.py mirrors it)");

/* The slots of ct4 and ct6 (cttable.h): the key, whether a CPU is (re)writing the slot, the entry. An entry's
 * directions start cache lines: the tables are mappable arrays, whose values start on a page boundary and
 * follow each other at their size. */
struct fs_ct4_slot {
	struct fs_ct4_key key; /* family 0: an empty slot */
	__u64 busy;            /* 1 while one CPU takes or clears the slot (64 bits: the compare-and-exchange) */
	struct fs_ct_entry e;
};

struct fs_ct6_slot {
	struct fs_ct6_key key;
	__u64 busy;
	__u8 pad[40];
	struct fs_ct_entry e;
};
_Static_assert(sizeof(struct fs_ct4_slot) == 192 && sizeof(struct fs_ct6_slot) == 256 &&
		       (__builtin_offsetof(struct fs_ct4_slot, e) + __builtin_offsetof(struct fs_ct_entry, dir)) % 64 == 0 &&
		       (__builtin_offsetof(struct fs_ct6_slot, e) + __builtin_offsetof(struct fs_ct_entry, dir)) % 64 == 0,
	       "ct slots: an entry's directions must start cache lines");

/* The conntrack tables outlive the agent (a restarted one must still know which packets are replies): given a
 * folder in bpffs (FS_CT_PIN_DIR, from the loader) each is pinned there, or the one pinned there is used. The
 * loader checks first that pinned tables have this layout (their sizes, and ct_meta's FS_CT_LAYOUT), and takes
 * their seed, since a key's slot depends on it (cttable.h; observer/datapath/ct_pins.py). */
struct fs_ct_meta {
	__u32 layout; /* FS_CT_LAYOUT the tables were made with; 0: not written yet (a load that did not finish) */
	__u32 seed;   /* the FS_CT_SEED their keys were placed with */
};

#ifdef FS_CT_PIN_DIR
#define FS_CT_TABLE(leaf, name, entries) \
	BPF_TABLE_PINNED("array", __u32, leaf, name, entries, FS_CT_PIN_DIR "/" #name, BPF_F_MMAPABLE)
#else
#define FS_CT_TABLE(leaf, name, entries) BPF_F_TABLE("array", __u32, leaf, name, entries, BPF_F_MMAPABLE)
#endif

/* policy: what an endpoint identity (`subject`) may exchange with a peer identity, per direction. The agent
 * writes a whole policy into one generation, then flips config.policy_rev (whose low bit is the generation)
 * and removes the other generation: a packet never sees half of a policy. A zero peer, port or protocol is a
 * wildcard; the datapath tries the keys from the most specific to the least (Cilium's order, see policy.h),
 * and the agent's compiler makes sure the first match is a deny whenever any deny rule matches. */
struct fs_policy_key {
	__u32 subject;
	__u32 peer;
	__u16 dport;  /* host order */
	__u8 proto;
	__u8 dir_gen; /* FS_POLICY_INGRESS or FS_POLICY_EGRESS, | generation << 7 */
};

struct fs_policy_value {
	__u32 rule;   /* the rule that made the entry, for verdict events and `policy check` */
	__u8 deny;
	__u8 pad[3];
};

/* policy_enforce: the directions in which a subject is in default-deny (some rule selects it there). */
struct fs_policy_enforce_key {
	__u32 subject;
	__u32 gen;
};

struct fs_policy_enforce_value {
	__u32 directions; /* FS_POLICY_INGRESS | FS_POLICY_EGRESS bits */
};

BPF_RINGBUF_OUTPUT(events, FS_RINGBUF_PAGES);  /* struct fs_event records to the agent */
BPF_PERCPU_ARRAY(lost, __u64, 1);              /* events not emitted because `events` was full */
BPF_PERCPU_ARRAY(emit_count, __u32, 1);        /* events emitted on this CPU, to pace reader wakeups */
BPF_ARRAY(endpoints_direct, struct fs_endpoint, FS_ENDPOINTS_DIRECT);
BPF_HASH(endpoints, __u32, struct fs_endpoint, FS_ENDPOINTS_MAX);
BPF_LPM_TRIE(ipcache, struct fs_ipcache_key, struct fs_ipcache_value, FS_IPCACHE_MAX);
BPF_PROG_ARRAY(calls, FS_CALLS_MAX);
BPF_ARRAY(config, struct fs_config, 1);
FS_CT_TABLE(struct fs_ct4_slot, ct4, FS_CT_MAX);
FS_CT_TABLE(struct fs_ct6_slot, ct6, FS_CT_MAX);
/* ct_used: a bit per slot that holds a connection, ct4's slots first, then ct6's (cttable.h): the agent reads
 * 16 KiB to find the connections instead of every slot of both tables (28 MiB). */
FS_CT_TABLE(__u64, ct_used, 2 * FS_CT_MAX / 64);
/* ct_meta: what the tables above were made with, for the next agent to judge whether it can use them; only the
 * agent reads and writes it. */
FS_CT_TABLE(struct fs_ct_meta, ct_meta, 1);
BPF_HASH(policy, struct fs_policy_key, struct fs_policy_value, FS_POLICY_MAX);
BPF_HASH(policy_enforce, struct fs_policy_enforce_key, struct fs_policy_enforce_value, FS_POLICY_SUBJECTS_MAX);

/* The endpoint behind interface `ifindex`, or 0 when it is not an endpoint's. */
static __always_inline struct fs_endpoint *fs_endpoint_of(__u32 ifindex)
{
	struct fs_endpoint *ep;

	if (ifindex < FS_ENDPOINTS_DIRECT) {
		ep = endpoints_direct.lookup(&ifindex);
		return ep && (ep->flags & FS_EP_F_PRESENT) ? ep : 0;
	}
	return endpoints.lookup(&ifindex);
}

#endif /* FLOWSCOPE_MAPS_H */
