/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who sent and who receives: the endpoint behind the interface is known for sure (its identity comes with its
 * `endpoints` entry); the far side, or both sides on a node device, are looked up by address in the ipcache,
 * when something first needs them.
 */
#ifndef FLOWSCOPE_IDENTITY_H
#define FLOWSCOPE_IDENTITY_H

#include "flowscope/maps.h"
#include "flowscope/state.h"

/* The ipcache entry of the longest prefix covering `addr` (16 bytes for IPv6, else 4); 0 when none does. */
static __always_inline struct fs_ipcache_value *fs_ipcache_lookup(const __u8 *addr, int ipv6)
{
	struct fs_ipcache_key key = {.prefixlen = 128};

	/* word by word: `addr` is 8-byte aligned (in the state), the key's addr 4-byte aligned */
	if (ipv6) {
		__builtin_memcpy(key.addr, (const __u32 *)addr, 16);
	} else {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], (const __u32 *)addr, 4);
	}
	return ipcache.lookup(&key);
}

/* The identity owning `addr` (16 bytes for IPv6, else 4), world when no prefix covers it. */
static __always_inline __u32 fs_ipcache_identity(const __u8 *addr, int ipv6)
{
	struct fs_ipcache_value *value = fs_ipcache_lookup(addr, ipv6);

	return value ? value->identity : FS_IDENTITY_WORLD;
}

/* The endpoint's own side, known from its `endpoints` entry before anything is parsed. */
static __always_inline void fs_endpoint_identity(struct fs_state *st)
{
	if (fs_state_from_endpoint(st)) {
		st->ev.src_identity = st->ep_identity;
		st->ids |= FS_ID_SRC;
	} else if (fs_state_to_endpoint(st)) {
		st->ev.dst_identity = st->ep_identity;
		st->ids |= FS_ID_DST;
	}
}

/* Make the identities in `want` (FS_ID_SRC, FS_ID_DST) final: the sides the endpoint does not answer for are
 * looked up by the packet's addresses, once a packet and only when something needs them (an event, a policy
 * verdict, a new connection, the aggregation's "is it for the host"): an ipcache lookup is a good part of a
 * packet's cost, and most packets of a connection at monitor aggregation medium need none. Without addresses
 * (not IP, or cut short before them) the far side stays 0. */
static __always_inline void fs_identities(struct fs_state *st, __u8 want)
{
	__u8 todo = want & ~st->ids;
	int ipv6 = st->ev.flags & FS_F_IPV6;

	if (!todo)
		return;
	st->ids |= todo;
	if (!st->addrs)
		return;
	if (todo & FS_ID_SRC)
		st->ev.src_identity = fs_ipcache_identity(st->ev.saddr, ipv6);
	if (todo & FS_ID_DST)
		st->ev.dst_identity = fs_ipcache_identity(st->ev.daddr, ipv6);
}

#endif /* FLOWSCOPE_IDENTITY_H */
