"""Flows for `flowscope map` tests: TCP/UDP flows between named workloads, stamped with a time of our choosing."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import BoolValue

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2


def endpoint(name: str) -> flow_pb2.Endpoint:
    """`ns/app` as a pod of that app (pod `app-1`), or `world` for the world's identity."""
    if name == "world":
        return flow_pb2.Endpoint(identity=2, labels=["reserved:world"])
    namespace, _, app = name.partition("/")
    return flow_pb2.Endpoint(
        namespace=namespace, pod_name=f"{app}-1", labels=[f"k8s:app={app}"], identity=1000 + len(name)
    )


def flow(
    source: str,
    destination: str,
    port: int,
    when: float,
    *,
    udp: bool = False,
    verdict: int = flow_pb2.FORWARDED,
    reply: bool = False,
    service: str = "",
) -> flow_pb2.Flow:
    layer4 = flow_pb2.Layer4()
    ports = (port, 40000) if reply else (40000, port)
    if udp:
        layer4.UDP.CopyFrom(flow_pb2.UDP(source_port=ports[0], destination_port=ports[1]))
    else:
        layer4.TCP.CopyFrom(flow_pb2.TCP(source_port=ports[0], destination_port=ports[1]))
    made = flow_pb2.Flow(
        time=Timestamp(seconds=int(when), nanos=int((when % 1) * 1e9)),
        verdict=verdict,  # type: ignore[arg-type]
        IP=flow_pb2.IP(source="10.0.0.1", destination="10.0.0.2", ipVersion=flow_pb2.IPv4),
        l4=layer4,
        source=endpoint(source),
        destination=endpoint(destination),
        Type=flow_pb2.L3_L4,
        node_name="node-1",
        is_reply=BoolValue(value=reply),
    )
    if service:
        namespace, _, name = service.partition("/")
        made.destination_service.CopyFrom(flow_pb2.Service(namespace=namespace, name=name))
    return made


def response(made: flow_pb2.Flow) -> observer_pb2.GetFlowsResponse:
    return observer_pb2.GetFlowsResponse(flow=made, node_name=made.node_name, time=made.time)
