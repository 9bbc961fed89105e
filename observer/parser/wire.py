"""GetFlowsResponse wire bytes, made around a flow's own bytes instead of by building the response message.

The agent sends one GetFlowsResponse per flow, and what surrounds the flow is almost the same every time: the
node's name, and the flow's time again (Hubble's responses carry it even when a field mask left it out of the
flow). Building a GetFlowsResponse message, copying the Flow into it and letting gRPC serialize it cost ~8 us a
flow, about a fifth of the agent's work for a flow; writing the few surrounding bytes next to the serialized
flow costs well under one. The bytes are those protobuf itself writes (fields in number order: flow = 1,
node_name = 1000, time = 1001), so any Hubble client reads the same response (tests/parser/test_parser_wire.py).
"""

from __future__ import annotations

from flowscope.common.protowire import varint

_NANOS = 1_000_000_000
_FLOW = b"\x0a"  # field 1 (flow), length-delimited
_NODE_NAME = b"\xc2\x3e"  # field 1000 (node_name), length-delimited
_TIME = b"\xca\x3e"  # field 1001 (time), length-delimited
_SECONDS = b"\x08"  # Timestamp.seconds, varint
_NANOS_TAG = b"\x10"  # Timestamp.nanos, varint
_FLOW_TIME = b"\x0a"  # Flow.time: field 1, length-delimited


def timestamp(ts_ns: int) -> bytes:
    """The body of a google.protobuf.Timestamp (wall-clock ns >= 0); zero fields are left out, as protobuf does."""
    seconds, nanos = divmod(ts_ns, _NANOS)
    body = (_SECONDS + varint(seconds) if seconds else b"") + (_NANOS_TAG + varint(nanos) if nanos else b"")
    return varint(len(body)) + body


class ResponseWriter:
    """The GetFlowsResponse bytes of one node's flows: a serialized Flow in, the response's bytes out."""

    def __init__(self, node_name: str) -> None:
        name = node_name.encode()
        self._node = _NODE_NAME + varint(len(name)) + name if name else b""

    def flow(self, flow: bytes, ts_ns: int) -> bytes:
        """The response carrying `flow` (a Flow's serialized bytes) seen at `ts_ns`."""
        return b"".join((_FLOW, varint(len(flow)), flow, self._node, _TIME, timestamp(ts_ns)))

    def timed_flow(self, flow: bytes, ts_ns: int) -> bytes:
        """The response `flow` makes, for a flow holding its whole time (no field mask kept a part of Flow.time).

        That time comes first in the flow's bytes (Flow.time is field 1) as the very Timestamp the response
        repeats, so it is taken from there (a length byte and at most 11 bytes of body) instead of encoded again.
        """
        time = flow[1 : flow[1] + 2] if flow[:1] == _FLOW_TIME else timestamp(ts_ns)
        return b"".join((_FLOW, varint(len(flow)), flow, self._node, _TIME, time))
