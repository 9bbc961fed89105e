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

#ifndef FS_WAKEUP_EVERY
#define FS_WAKEUP_EVERY 64 /* wake the reader on every N-th event of a CPU: a wakeup per event costs ~7 us */
#endif

#ifndef FS_ENDPOINTS_MAX
#define FS_ENDPOINTS_MAX 4096
#endif

#ifndef FS_IPCACHE_MAX
#define FS_IPCACHE_MAX 65536
#endif

#define FS_VLAN_MAX_TAGS 2    /* 802.1ad outer + 802.1Q inner */
#define FS_IPV6_MAX_EXTHDRS 8 /* extension headers walked before giving up on finding the L4 header */

/* The one value of the `config` array. Zero everywhere means "the defaults", so a datapath whose config was
 * never written behaves sensibly. Later stages add their knobs at the end. */
struct fs_config {
	__u32 capture_len; /* packet bytes copied into an event, 1..FS_CAPLEN; 0 means FS_CAPLEN */
};

#endif /* FLOWSCOPE_CONFIG_H */
