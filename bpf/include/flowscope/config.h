/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Settings of the datapath: compile-time defines the loader passes (-D...), and the runtime knobs the agent
 * writes into the `config` map without recompiling. The defaults here let the sources compile on their own.
 */
#ifndef FLOWSCOPE_CONFIG_H
#define FLOWSCOPE_CONFIG_H

#ifndef FS_RINGBUF_PAGES
#define FS_RINGBUF_PAGES 1024 /* size of the `events` ring buffer in pages; a power of two */
#endif

#ifndef FS_L7_RINGBUF_PAGES
#define FS_L7_RINGBUF_PAGES 1024 /* size of the `l7_events` ring buffer in pages (l7.h); a power of two */
#endif

#ifndef FS_WAKEUP_EVERY
#define FS_WAKEUP_EVERY 64 /* wake the reader on every N-th event of a CPU: a wakeup per event costs ~7 us */
#endif

#ifndef FS_ENDPOINTS_MAX
#define FS_ENDPOINTS_MAX 4096 /* endpoints whose interface index is FS_ENDPOINTS_DIRECT or more */
#endif

#ifndef FS_ENDPOINTS_DIRECT
#define FS_ENDPOINTS_DIRECT 65536 /* interface indexes below this find their endpoint in an array slot */
#endif

#ifndef FS_IPCACHE_MAX
#define FS_IPCACHE_MAX 65536
#endif

#ifndef FS_CT_SEED
#define FS_CT_SEED 0 /* where connections live in ct4 and ct6 (cttable.h): the loader compiles in a random one */
#endif

#ifndef FS_CT_MAX
#define FS_CT_MAX 65536 /* slots per address family, a power of two; when full, see cttable.h */
#endif

#ifndef FS_POLICY_MAX
#define FS_POLICY_MAX 65536 /* policy map entries, both generations together */
#endif

#ifndef FS_POLICY_SUBJECTS_MAX
#define FS_POLICY_SUBJECTS_MAX 16384 /* endpoint identities a policy selects, both generations together */
#endif

#define FS_VLAN_MAX_TAGS 2    /* 802.1ad outer + 802.1Q inner */
#define FS_IPV6_MAX_EXTHDRS 8 /* extension headers walked before giving up on finding the L4 header */

/* Connection lifetimes without a packet, as Cilium's defaults (seconds). */
#define FS_CT_LIFETIME_TCP 21600 /* established TCP: 6 hours */
#define FS_CT_LIFETIME_NONTCP 60
#define FS_CT_SYN_TIMEOUT 60   /* TCP before the reply was seen */
#define FS_CT_CLOSE_TIMEOUT 10 /* TCP after FIN or RST */
/* An entry's expiry is moved later only by this much at least (ns): at most this early, it saves most writes. */
#define FS_CT_EXPIRES_SLACK_NS 1000000000ULL

/* fs_ct_dir.to_host: whether a direction's packets go to the host (asked once, at an rx point). */
#define FS_CT_TO_HOST_NO 1
#define FS_CT_TO_HOST_YES 2

/* Monitor aggregation levels, Cilium's numbers (pkg/option/monitor.go). */
#define FS_AGG_NONE 0    /* a trace for every packet at every observation point */
#define FS_AGG_LOWEST 1  /* no traces at FROM_* points (the TO_* point of the same node reports the packet) */
#define FS_AGG_LOW 2     /* as lowest */
#define FS_AGG_MEDIUM 3  /* and a connection reports only on open, new flags, each interval and close */
#define FS_AGG_MAXIMUM 4 /* as medium */

#define FS_REPORT_INTERVAL_MS_DEFAULT 5000

/* The one value of the `config` array. Zero everywhere means "the defaults" (capture FS_CAPLEN bytes, no
 * aggregation, no policy), so a datapath whose config was never written behaves as a plain per-packet tracer.
 * No implicit padding: the agent sets the fields by name (observer/datapath/maps.py RuntimeConfig). */
struct fs_config {
	__u32 capture_len;        /* packet bytes copied into an event, 1..FS_CAPLEN; 0 means FS_CAPLEN */
	__u32 policy_rev;         /* revision of the policy in force (its low bit selects the maps' generation);
	                           * 0: no policy was ever loaded, nothing is enforced */
	__u32 report_interval_ms; /* medium and above: report a busy connection this often; 0 means 5 s */
	__u16 aggregation;        /* FS_AGG_* */
	__u16 report_flags;       /* medium and above: TCP flags whose first sighting in a direction is reported */
	__u32 jiffy_ns;           /* the kernel's tick in ns (1e9 / HZ), as the agent measured it; 0: unknown */
	__u32 trace_active;       /* a bit per packet-path session slot in use (trace.h); 0: no session */
	__u64 jiffies_offset_ns;  /* CLOCK_MONOTONIC = jiffies * jiffy_ns + this (mod 2^64): see fs_now() */
	__u32 services_active;    /* 1 while some service frontend exists (lb.h); 0: packets skip stage_lb */
	__u32 l7_active;          /* 1 while some port is configured for L7 capture (l7.h); 0: no packet looks */
};

#endif /* FLOWSCOPE_CONFIG_H */
