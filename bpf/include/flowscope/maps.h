/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps every datapath program shares, and the layouts of their keys and values. The agent fills
 * `endpoints`, `ipcache` and `config`, reads `events` and `lost`; `calls` holds the stages
 * (observer/datapath/ mirrors these layouts).
 *
 * Declared with bcc's macros: bcc rewrites `map.lookup()` and friends into map references, which it only
 * does in its main file, so the loader inlines these headers into the one translation unit it compiles.
 */
#ifndef FLOWSCOPE_MAPS_H
#define FLOWSCOPE_MAPS_H

#include "flowscope/calls.h"
#include "flowscope/config.h"
#include "flowscope/event.h"

/* endpoints: the host-side interface of an endpoint (its ifindex) -> who is behind it. */
struct fs_endpoint {
	__u16 ep_id;     /* the endpoint id; reported as fs_event.ep_id */
	__u16 flags;     /* reserved */
	__u32 identity;  /* the endpoint's own security identity */
};

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
#define FS_IDENTITY_WORLD 2

BPF_RINGBUF_OUTPUT(events, FS_RINGBUF_PAGES);  /* struct fs_event records to the agent */
BPF_PERCPU_ARRAY(lost, __u64, 1);              /* events not emitted because `events` was full */
BPF_PERCPU_ARRAY(emit_count, __u32, 1);        /* events emitted on this CPU, to pace reader wakeups */
BPF_HASH(endpoints, __u32, struct fs_endpoint, FS_ENDPOINTS_MAX);
BPF_LPM_TRIE(ipcache, struct fs_ipcache_key, struct fs_ipcache_value, FS_IPCACHE_MAX);
BPF_PROG_ARRAY(calls, FS_CALLS_MAX);
BPF_ARRAY(config, struct fs_config, 1);

#endif /* FLOWSCOPE_MAPS_H */
