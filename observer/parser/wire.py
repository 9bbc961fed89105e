"""GetFlowsResponse wire bytes, made around a flow's own bytes instead of by building the response message.

The agent sends one GetFlowsResponse per flow, and what surrounds the flow is almost the same every time: the
node's name, and the flow's time again (Hubble's responses carry it even when a field mask left it out of the
flow). Building a GetFlowsResponse message, copying the Flow into it and letting gRPC serialize it cost ~8 us a
flow, about a fifth of the agent's work for a flow; writing the few surrounding bytes next to the serialized
flow costs well under one. The bytes are those protobuf itself writes (fields in number order: flow = 1,
node_name = 1000, time = 1001), so any Hubble client reads the same response (tests/parser/test_parser_wire.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from google.protobuf.message import Message

from flowscope.api.flow import flow_pb2
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
    body = _seconds(seconds) + (_NANOS_TAG + varint(nanos) if nanos else b"")
    return varint(len(body)) + body


@lru_cache(maxsize=64)
def _seconds(seconds: int) -> bytes:
    """Timestamp.seconds, as a field: the flows of a read mostly share their second, whose varint is 5 bytes."""
    return _SECONDS + varint(seconds) if seconds else b""


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


_FLOW_FIELDS = flow_pb2.Flow.DESCRIPTOR.fields_by_name
_L4 = _FLOW_FIELDS["l4"].number
_UUID = _FLOW_FIELDS["uuid"].number
_UUID_TAG = varint(_UUID << 3 | 2)
_L4_TAG = varint(_L4 << 3 | 2)
_PORTS = 2  # source_port = 1, destination_port = 2 in TCP, UDP and SCTP alike


class FlowPieces:
    """A flow's bytes around what differs from flow to flow of one shape: its time, uuid and ports.

    Protobuf writes a message's fields in field-number order (tests/parser/test_parser_wire.py checks it), so the
    bytes of a flow are its time (field 1), the shape's fields 2-5, its l4 (6), the shape's fields 7-33, its
    uuid (34) and the shape's fields from 35 on. The shape's parts are serialized once, by protobuf; each flow
    writes only the time, the uuid and the ports of its l4 around them. `time`, `uuid`: whether the flow has
    them (a field mask may leave them out); `ports`: the Layer4 field (TCP, UDP, SCTP) whose ports are the
    flow's own, or "" when the shape's l4 is the flow's as it is.
    """

    def __init__(self, shape: flow_pb2.Flow, *, time: bool, uuid: bool, ports: str) -> None:
        self._time, self._uuid = time, uuid
        self._head = _fields(shape, lambda number: number < _L4)
        self._middle = _fields(shape, lambda number: _L4 < number < _UUID)
        self._tail = _fields(shape, lambda number: number > _UUID)
        self._l4 = b"" if ports else _fields(shape, lambda number: number == _L4)
        self._ported_tag = b""
        self._ported_rest = b""
        if ports:
            field = flow_pb2.Layer4.DESCRIPTOR.fields_by_name[ports]
            self._ported_tag = varint(field.number << 3 | 2)
            self._ported_rest = _fields(getattr(shape.l4, ports), lambda number: number > _PORTS)

    def flow(self, ts_ns: int, uuid: str, sport: int, dport: int) -> bytes:
        """The flow's bytes: the shape's with this flow's time, uuid and (when they are its own) ports."""
        l4 = self._l4
        if self._ported_tag:
            ported = b"".join(
                (
                    b"\x08" + varint(sport) if sport else b"",
                    b"\x10" + varint(dport) if dport else b"",
                    self._ported_rest,
                )
            )
            inner = b"".join((self._ported_tag, varint(len(ported)), ported))
            l4 = b"".join((_L4_TAG, varint(len(inner)), inner))
        time = _FLOW_TIME + timestamp(ts_ns) if self._time else b""
        if not self._uuid:
            return b"".join((time, self._head, l4, self._middle, self._tail))
        return b"".join((time, self._head, l4, self._middle, _UUID_TAG, varint(len(uuid)), uuid.encode(), self._tail))


def _fields(message: Message, wanted: Callable[[int], bool]) -> bytes:
    """The bytes of the fields of `message` whose numbers are `wanted`: a part of its serialized bytes."""
    part = type(message)()
    part.CopyFrom(message)
    for field, _ in part.ListFields():
        if not wanted(field.number):
            part.ClearField(field.name)
    return part.SerializeToString()
