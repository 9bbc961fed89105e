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
_FLOWSCOPE = _FLOW_FIELDS["flowscope"].number
_UUID_TAG = varint(_UUID << 3 | 2)
_L4_TAG = varint(_L4 << 3 | 2)
_SOURCE_PORT = flow_pb2.TCP.DESCRIPTOR.fields_by_name["source_port"].number  # 1 in TCP, UDP and SCTP alike
_PACKETS = flow_pb2.FlowscopeFlow.DESCRIPTOR.fields_by_name["packets"].number  # bytes: the next


class FlowPieces:
    """A flow's bytes around what differs from flow to flow of one shape: its time, uuid, ports and counts.

    Protobuf writes a message's fields in field-number order (tests/parser/test_parser_wire.py checks it), so the
    bytes of a flow are its time (field 1), the shape's fields 2-5, its l4 (6), the shape's fields 7-33, its
    uuid (34), the shape's fields from 35 on and, last, flowscope's part (160000). The shape's parts are
    serialized once, by protobuf; each flow writes only its time, uuid, the ports in its l4 and the packet and
    byte counts in its flowscope part between them. `time`, `uuid`: whether the flow has them (a field mask may
    leave them out); `ports`: the Layer4 field (TCP, UDP, SCTP) whose ports are the flow's own, or "" when the
    shape's l4 is the flow's as it is; `counts`: whether the flow's flowscope part has counts of its own.
    """

    def __init__(self, shape: flow_pb2.Flow, *, time: bool, uuid: bool, ports: str, counts: bool) -> None:
        self._time, self._uuid = time, uuid
        self._head = _fields(shape, lambda number: number < _L4)
        self._l4 = b"" if ports else _fields(shape, lambda number: number == _L4)
        self._middle = _fields(shape, lambda number: _L4 < number < _UUID)
        self._tail = _fields(shape, lambda number: number > _UUID and not (counts and number >= _FLOWSCOPE))
        self._end = _fields(shape, lambda number: number > _FLOWSCOPE) if counts else b""
        self._ports = None
        if ports:
            tag = varint(flow_pb2.Layer4.DESCRIPTOR.fields_by_name[ports].number << 3 | 2)
            self._ports = _Pair(tag, getattr(shape.l4, ports), _SOURCE_PORT)
        self._counts = _Pair(varint(_FLOWSCOPE << 3 | 2), shape.flowscope, _PACKETS) if counts else None

    def flow(self, ts_ns: int, uuid: str, sport: int, dport: int, packets: int, byte_count: int) -> bytes:
        """The flow's bytes: the shape's with this flow's time, uuid and (when they are its own) ports and counts."""
        l4 = self._l4
        if self._ports is not None:
            ported = self._ports.field(sport, dport)
            l4 = b"".join((_L4_TAG, varint(len(ported)), ported))
        time = _FLOW_TIME + timestamp(ts_ns) if self._time else b""
        uuid_field = b"".join((_UUID_TAG, varint(len(uuid)), uuid.encode())) if self._uuid else b""
        counts = b"" if self._counts is None else self._counts.field(packets, byte_count)
        return b"".join((time, self._head, l4, self._middle, uuid_field, self._tail, counts, self._end))


class _Pair:
    """A field of the shape whose message holds two varint fields of each flow's own, one after the other (the
    ports of TCP, UDP and SCTP; flowscope's packet and byte counts): its bytes before and after them."""

    def __init__(self, tag: bytes, message: Message, first: int) -> None:
        self._tag = tag
        self._before = _fields(message, lambda number: number < first)
        self._after = _fields(message, lambda number: number > first + 1)
        self._first, self._second = varint(first << 3), varint((first + 1) << 3)

    def field(self, first: int, second: int) -> bytes:
        """The field with these two values (left out when 0, as protobuf does)."""
        body = b"".join(
            (
                self._before,
                self._first + varint(first) if first else b"",
                self._second + varint(second) if second else b"",
                self._after,
            )
        )
        return b"".join((self._tag, varint(len(body)), body))


def _fields(message: Message, wanted: Callable[[int], bool]) -> bytes:
    """The bytes of the fields of `message` whose numbers are `wanted`: a part of its serialized bytes."""
    part = type(message)()
    part.CopyFrom(message)
    for field, _ in part.ListFields():
        if not wanted(field.number):
            part.ClearField(field.name)
    return part.SerializeToString()
