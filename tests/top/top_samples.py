"""Flows for `flowscope top` tests, built on the CLI tests' samples but stamped with a time of our choosing."""

from __future__ import annotations

import cli_samples
from google.protobuf.timestamp_pb2 import Timestamp

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2


def at(flow: flow_pb2.Flow, when: float) -> flow_pb2.Flow:
    """The flow, copied, with its time set to `when` (seconds since the epoch)."""
    stamped = flow_pb2.Flow()
    stamped.CopyFrom(flow)
    stamped.time.CopyFrom(Timestamp(seconds=int(when), nanos=int((when % 1) * 1e9)))
    return stamped


def response(flow: flow_pb2.Flow, when: float, node: str = "node-1") -> observer_pb2.GetFlowsResponse:
    stamped = at(flow, when)
    stamped.node_name = node
    return observer_pb2.GetFlowsResponse(flow=stamped, node_name=node, time=stamped.time)


def connection(source: str, destination: str, port: int, verdict: int = flow_pb2.FORWARDED) -> flow_pb2.Flow:
    """A TCP flow default/<source> -> default/<destination>:<port>."""
    flow = cli_samples.tcp_flow()
    flow.source.pod_name, flow.destination.pod_name = source, destination
    flow.l4.TCP.destination_port = port
    flow.verdict = verdict
    return flow
