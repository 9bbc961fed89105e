"""Flow.tunnel: the outer headers of a packet seen at the overlay's observation points.

At to-overlay and from-overlay (tc on the node's tunnel device) the packet has no outer headers as bytes: the
kernel keeps them as the packet's tunnel metadata, which the datapath reads and carries in the event's
`location` (outer IPv4 source and destination) and `vni` fields (bpf/include/flowscope/overlay.h). Everywhere
else the event has none, and a flow without them has no tunnel: the underlay device's packets are the outer
UDP datagrams themselves, node to node, and show as such.

The metadata holds addresses and the VNI, not the outer UDP ports: the destination port is the tunnel
device's (common/overlay.py); the source port is a hash of the inner flow
that the device picks while encapsulating, after to-overlay, and is gone by from-overlay, so it stays 0.
"""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.common.names import EVENT_TRACE, TRACE_FROM_OVERLAY, TRACE_TO_OVERLAY
from flowscope.common.overlay import VXLAN_PORT

_OVERLAY_POINTS = frozenset((TRACE_TO_OVERLAY, TRACE_FROM_OVERLAY))


def fill_tunnel(flow: flow_pb2.Flow, event_type: int, subtype: int, location: int, vni: bytes) -> None:
    """Set flow.tunnel from an overlay trace event that carries outer headers; leave it unset otherwise."""
    if event_type != EVENT_TRACE or subtype not in _OVERLAY_POINTS or not location:
        return
    outer = location.to_bytes(8, "little")  # the bytes as the datapath stored them: source, then destination
    tunnel = flow.tunnel
    tunnel.protocol = flow_pb2.Tunnel.VXLAN
    tunnel.IP.source = _ipv4(outer[:4])
    tunnel.IP.destination = _ipv4(outer[4:])
    tunnel.IP.ipVersion = flow_pb2.IPv4
    tunnel.l4.UDP.destination_port = VXLAN_PORT
    tunnel.vni = int.from_bytes(vni, "big")


def _ipv4(packed: bytes) -> str:
    return ".".join(str(b) for b in packed)
