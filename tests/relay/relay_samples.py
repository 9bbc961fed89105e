"""Responses to feed a relay and read back: flows with a node and a time, and a clock tests move by hand."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import timestamp_pb2

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2

T0 = 1_800_000_000_000_000_000  # a wall-clock time in ns (2027), far from the test's real clock
MS = 1_000_000


def ts(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def flow(node: str, time_ns: int, port: int = 80, named: bool = True) -> observer_pb2.GetFlowsResponse:
    """A flow seen on `node` at `time_ns`; its destination port tells flows apart in assertions."""
    f = flow_pb2.Flow(node_name=node, verdict=flow_pb2.FORWARDED, Summary=f"TCP {port}")
    f.time.CopyFrom(ts(time_ns))
    f.IP.source, f.IP.destination = "10.200.1.11", "10.200.2.11"
    f.l4.TCP.source_port, f.l4.TCP.destination_port = 40000, port
    response = observer_pb2.GetFlowsResponse(flow=f, node_name=node if named else "")
    response.time.CopyFrom(f.time)
    return response


def raw(node: str, time_ns: int, port: int = 80) -> bytes:
    return flow(node, time_ns, port).SerializeToString()


def parse(data: bytes) -> observer_pb2.GetFlowsResponse:
    return observer_pb2.GetFlowsResponse.FromString(data)


def time_of(response: observer_pb2.GetFlowsResponse) -> int:
    return response.time.seconds * 1_000_000_000 + response.time.nanos


@dataclass
class FakeClock:
    """Wall clock and monotonic clock that move together, only when a test says so."""

    wall: int = T0
    mono: float = 1000.0

    def __call__(self) -> tuple[int, float]:
        return self.wall, self.mono

    def advance(self, ms: float) -> None:
        self.wall += int(ms * MS)
        self.mono += ms / 1000
