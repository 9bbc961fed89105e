/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who sent and who receives: the endpoint behind the interface is known for sure (its identity comes with its
 * `endpoints` entry); the far side, or both sides on a node device, are looked up by address in the ipcache.
 */
#ifndef FLOWSCOPE_IDENTITY_H
#define FLOWSCOPE_IDENTITY_H

#include "flowscope/maps.h"
#include "flowscope/state.h"

/* The identity owning `addr` (16 bytes for IPv6, else 4), world when no prefix covers it. */
static __always_inline __u32 fs_ipcache_identity(const __u8 *addr, int ipv6)
{
	struct fs_ipcache_key key = {.prefixlen = 128};
	struct fs_ipcache_value *value;

	if (ipv6) {
		__builtin_memcpy(key.addr, addr, 16);
	} else {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], addr, 4);
	}
	value = ipcache.lookup(&key);
	return value ? value->identity : FS_IDENTITY_WORLD;
}

/* The endpoint's own side, known from its `endpoints` entry before anything is parsed. */
static __always_inline void fs_endpoint_identity(struct fs_state *st)
{
	if (fs_state_from_endpoint(st))
		st->ev.src_identity = st->ep_identity;
	else if (fs_state_to_endpoint(st))
		st->ev.dst_identity = st->ep_identity;
}

/* The sides the endpoint does not already answer for, by the packet's addresses (once they were read). */
static __always_inline void fs_resolve_identities(struct fs_state *st)
{
	int ipv6 = st->ev.flags & FS_F_IPV6;

	if (!fs_state_from_endpoint(st))
		st->ev.src_identity = fs_ipcache_identity(st->ev.saddr, ipv6);
	if (!fs_state_to_endpoint(st))
		st->ev.dst_identity = fs_ipcache_identity(st->ev.daddr, ipv6);
}

#endif /* FLOWSCOPE_IDENTITY_H */
