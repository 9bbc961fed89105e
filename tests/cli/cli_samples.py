"""Hand-built flows and events, one of each kind the printers must render."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import BoolValue, Int32Value

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2

# 2024-01-01T00:00:00.123456789Z, printed "Jan  1 00:00:00.123" in StampMilli.
SECONDS = 1704067200
NANOS = 123456789


def stamp(offset: int = 0) -> Timestamp:
    return Timestamp(seconds=SECONDS + offset, nanos=NANOS)


def pod(namespace: str, name: str, identity: int) -> flow_pb2.Endpoint:
    return flow_pb2.Endpoint(namespace=namespace, pod_name=name, identity=identity, labels=[f"app={name}"])


def tcp_flow(reply: bool | None = False, offset: int = 0) -> flow_pb2.Flow:
    """default/client:34567 -> default/server:80, SYN, forwarded to the endpoint."""
    flow = flow_pb2.Flow(
        time=stamp(offset),
        node_name="node-1",
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source="10.0.1.5", destination="10.0.2.7", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(source_port=34567, destination_port=80, flags=flow_pb2.TCPFlags(SYN=True))),
        source=pod("default", "client", 12345),
        destination=pod("default", "server", 23456),
        Type=flow_pb2.L3_L4,
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=0),
        trace_observation_point=flow_pb2.TO_ENDPOINT,
        traffic_direction=flow_pb2.INGRESS,
        Summary="TCP Flags: SYN",
    )
    if reply is not None:
        flow.is_reply.CopyFrom(BoolValue(value=reply))
    return flow


def tcp_reply() -> flow_pb2.Flow:
    """The server's SYN-ACK back: the wire has server -> client, the line shows client <- server."""
    flow = flow_pb2.Flow(
        time=stamp(),
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source="10.0.2.7", destination="10.0.1.5", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(
            TCP=flow_pb2.TCP(source_port=80, destination_port=34567, flags=flow_pb2.TCPFlags(SYN=True, ACK=True))
        ),
        source=pod("default", "server", 23456),
        destination=pod("default", "client", 12345),
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=5),
        is_reply=BoolValue(value=True),
        Summary="TCP Flags: SYN, ACK",
    )
    return flow


def udp_dns_flow() -> flow_pb2.Flow:
    """A DNS query to kube-system/coredns over UDP, direction unknown (no is_reply)."""
    return flow_pb2.Flow(
        time=stamp(),
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source="10.0.1.5", destination="10.0.0.10", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=53000, destination_port=53)),
        source=pod("default", "client", 12345),
        destination=pod("kube-system", "coredns-x", 5678),
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=0),
    )


def icmp4_world() -> flow_pb2.Flow:
    """A ping to an address outside the cluster: the world identity, no pod, no ports."""
    return flow_pb2.Flow(
        time=stamp(),
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source="10.0.1.5", destination="1.1.1.1", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(ICMPv4=flow_pb2.ICMPv4(type=8, code=0)),
        source=pod("default", "client", 12345),
        destination=flow_pb2.Endpoint(identity=2),
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=11),
        is_reply=BoolValue(value=False),
    )


def icmp6_host() -> flow_pb2.Flow:
    """An ICMPv6 echo reply from the host, addresses only."""
    return flow_pb2.Flow(
        time=stamp(),
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source="fd00::1", destination="fd00::5", ipVersion=flow_pb2.IPv6),
        l4=flow_pb2.Layer4(ICMPv6=flow_pb2.ICMPv6(type=129, code=0)),
        source=flow_pb2.Endpoint(identity=1),
        destination=flow_pb2.Endpoint(identity=300),
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=2),
        is_reply=BoolValue(value=False),
    )


def tcp6_flow() -> flow_pb2.Flow:
    """IPv6 TCP between addresses with no pod: ports print after bracketed addresses."""
    return flow_pb2.Flow(
        time=stamp(),
        verdict=flow_pb2.FORWARDED,
        IP=flow_pb2.IP(source="fd00::5", destination="fd00::7", ipVersion=flow_pb2.IPv6),
        l4=flow_pb2.Layer4(
            TCP=flow_pb2.TCP(source_port=40000, destination_port=443, flags=flow_pb2.TCPFlags(ACK=True, PSH=True))
        ),
        source=flow_pb2.Endpoint(identity=2),
        destination=flow_pb2.Endpoint(identity=2),
        event_type=flow_pb2.CiliumEventType(type=4, sub_type=3),
        is_reply=BoolValue(value=False),
    )


def cilium_drop() -> flow_pb2.Flow:
    """A policy drop (Cilium drop code 133)."""
    flow = tcp_flow()
    flow.verdict = flow_pb2.DROPPED
    flow.event_type.CopyFrom(flow_pb2.CiliumEventType(type=1, sub_type=133))
    flow.drop_reason_desc = flow_pb2.POLICY_DENIED
    return flow


def kernel_drop() -> flow_pb2.Flow:
    """UDP to a closed port, freed by the kernel with reason NO_SOCKET."""
    flow = flow_pb2.Flow(
        time=stamp(),
        verdict=flow_pb2.DROPPED,
        IP=flow_pb2.IP(source="10.0.1.5", destination="10.0.2.7", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(source_port=40000, destination_port=9999)),
        source=pod("default", "client", 12345),
        destination=pod("default", "server", 23456),
        event_type=flow_pb2.CiliumEventType(type=1, sub_type=0),
        is_reply=BoolValue(value=False),
        Summary="UDP",
    )
    flow.flowscope.kernel_drop_reason = "NO_SOCKET"
    return flow


def policy_verdict(allowed: bool = False) -> flow_pb2.Flow:
    flow = tcp_flow()
    flow.verdict = flow_pb2.FORWARDED if allowed else flow_pb2.DROPPED
    flow.event_type.CopyFrom(flow_pb2.CiliumEventType(type=5))
    flow.policy_match_type = 2
    flow.traffic_direction = flow_pb2.INGRESS
    return flow


def aggregated_flow() -> flow_pb2.Flow:
    flow = tcp_flow()
    flow.Summary = ""
    flow.flowscope.aggregated = True
    flow.flowscope.packets = 12
    flow.flowscope.bytes = 3456
    flow.flowscope.tcp_flags_seen.CopyFrom(flow_pb2.TCPFlags(ACK=True, PSH=True))
    return flow


def response(flow: flow_pb2.Flow, node: str = "node-1") -> observer_pb2.GetFlowsResponse:
    return observer_pb2.GetFlowsResponse(flow=flow, node_name=node, time=flow.time)


def lost_event() -> observer_pb2.GetFlowsResponse:
    lost = flow_pb2.LostEvent(source=flow_pb2.HUBBLE_RING_BUFFER, num_events_lost=1, cpu=Int32Value(value=0))
    return observer_pb2.GetFlowsResponse(lost_events=lost, node_name="node-1", time=stamp())


def node_status(
    state: relay_pb2.NodeState = relay_pb2.NODE_UNAVAILABLE, nodes: tuple[str, ...] = ("node-2", "node-3")
) -> observer_pb2.GetFlowsResponse:
    status = relay_pb2.NodeStatusEvent(state_change=state, node_names=list(nodes), message="")
    return observer_pb2.GetFlowsResponse(node_status=status, node_name="relay", time=stamp())


def canned() -> list[observer_pb2.GetFlowsResponse]:
    """A little of everything, in time order."""
    return [
        response(tcp_flow()),
        response(tcp_reply()),
        response(udp_dns_flow()),
        response(icmp4_world()),
        response(icmp6_host()),
        response(cilium_drop()),
        response(kernel_drop()),
        response(policy_verdict()),
        lost_event(),
        node_status(),
    ]
