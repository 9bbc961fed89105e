"""Flow.tunnel from the outer headers an overlay event carries (observer/parser/tunnel.py), and only from those."""

from __future__ import annotations

import pytest

from flowscope.api.flow import flow_pb2
from flowscope.common.names import EVENT_DROP, EVENT_TRACE, TRACE_FROM_OVERLAY, TRACE_TO_NETWORK, TRACE_TO_OVERLAY
from flowscope.observer.parser.tunnel import VXLAN_PORT, fill_tunnel

# location as the datapath stores it: the outer source's bytes, then the destination's, read as a little-endian u64
OUTER = int.from_bytes(bytes([10, 77, 0, 1, 10, 77, 0, 2]), "little")


@pytest.mark.parametrize("point", [TRACE_TO_OVERLAY, TRACE_FROM_OVERLAY])
def test_overlay_points_show_the_outer_headers(point: int) -> None:
    flow = flow_pb2.Flow()
    fill_tunnel(flow, EVENT_TRACE, point, OUTER, bytes([0x01, 0x02, 0x03]))
    assert flow.tunnel == flow_pb2.Tunnel(
        protocol=flow_pb2.Tunnel.VXLAN,
        IP=flow_pb2.IP(source="10.77.0.1", destination="10.77.0.2", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(destination_port=VXLAN_PORT)),
        vni=0x010203,
    )


@pytest.mark.parametrize(
    ("event_type", "subtype", "location"),
    [
        (EVENT_TRACE, TRACE_TO_NETWORK, OUTER),  # another point: location means nothing there
        (EVENT_DROP, TRACE_TO_OVERLAY, OUTER),  # a drop's subtype is its reason, and location a kernel address
        (EVENT_TRACE, TRACE_TO_OVERLAY, 0),  # no tunnel key (a swept report of counts, an IPv6 underlay)
    ],
)
def test_other_events_have_no_tunnel(event_type: int, subtype: int, location: int) -> None:
    flow = flow_pb2.Flow()
    fill_tunnel(flow, event_type, subtype, location, bytes(3))
    assert not flow.HasField("tunnel")
