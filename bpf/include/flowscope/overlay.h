/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The overlay's observation points (to-overlay, from-overlay: tc egress and ingress of the node's tunnel device,
 * Cilium's cilium_vxlan): the outer headers of the packet, which tc on the tunnel device never sees as bytes.
 *
 * The kernel keeps them as the packet's tunnel metadata instead, and bpf_skb_get_tunnel_key reads them at both
 * hooks: going out, the key the route put on the packet (the lab's routes carry it as lightweight-tunnel
 * encapsulation, lab/network.py), which the device then encapsulates with; coming in, what the device decapsulated.
 * The helper names the fields as a receiver sees them (remote_ipv4 is the key's source, local_ipv4 its
 * destination), which is the outer header's source and destination both ways. An IPv6 underlay, or a packet
 * without a key, reports no outer headers (fs_event.location stays 0).
 */
#ifndef FLOWSCOPE_OVERLAY_H
#define FLOWSCOPE_OVERLAY_H

#include "flowscope/event.h"
#include "flowscope/state.h"

static __always_inline int fs_point_is_overlay(__u32 point)
{
	return point == FS_TRACE_TO_OVERLAY || point == FS_TRACE_FROM_OVERLAY;
}

/* At an overlay point, the outer IPv4 addresses and the VNI into the event (event.h: location, vni). */
static __always_inline void fs_overlay_outer(struct __sk_buff *skb, struct fs_state *st)
{
	struct bpf_tunnel_key key = {};
	__u32 *outer = (__u32 *)&st->ev.location;

	if (!fs_point_is_overlay(st->point))
		return;
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return;
	outer[0] = __builtin_bswap32(key.remote_ipv4); /* network order, as the packet had them */
	outer[1] = __builtin_bswap32(key.local_ipv4);
	st->ev.vni[0] = key.tunnel_id >> 16;
	st->ev.vni[1] = key.tunnel_id >> 8;
	st->ev.vni[2] = key.tunnel_id;
}

#endif /* FLOWSCOPE_OVERLAY_H */
