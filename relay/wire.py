"""GetFlowsResponse on the wire: what the relay reads from the bytes it forwards, without decoding a flow.

The relay passes every node's responses to its clients as they came, byte for byte; all it needs from one is
its time (to put it in order), which kind of response it is, and whether the node named itself. Those are
top-level fields, so the relay parses the message as one whose flow is opaque bytes (`scan`): decoding the flow
and encoding it again would cost several times as much for nothing, and moving these bytes is a relay's whole
job. Messages the relay makes itself (node status, lost events) are built with protobuf as usual.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.common.protowire import varint

__all__ = ["DecodeError", "Scanned", "lost_events", "name_suffix", "node_status", "scan", "timestamp"]

# GetFlowsResponse field numbers (docs/reference/hubble-api.md, "package `observer`").
FLOW = 1
NODE_STATUS = 2
LOST_EVENTS = 3
NODE_NAME = 1000
TIME = 1001
_LEN = 2


def _head_class() -> type[Message]:
    """A message with GetFlowsResponse's numbers whose flow, node_status and lost_events are plain bytes.

    Parsing it (in upb's C) copies the flow's bytes instead of decoding them: about half the cost of parsing
    the real message on a typical flow, and less the richer the flow. It is built from a descriptor at run
    time because it is the relay's private view of the wire, not part of the API in proto/.
    """
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    field = descriptor_pb2.FieldDescriptorProto
    head = descriptor_pb2.DescriptorProto(name="Head")
    head.oneof_decl.add(name="response_types")  # as in GetFlowsResponse: asking which is set copies nothing
    for name, number in (("flow", FLOW), ("node_status", NODE_STATUS), ("lost_events", LOST_EVENTS)):
        head.field.add(name=name, number=number, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL, oneof_index=0)
    head.field.add(name="node_name", number=NODE_NAME, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    head.field.add(
        name="time",
        number=TIME,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".google.protobuf.Timestamp",
    )
    file = descriptor_pb2.FileDescriptorProto(
        name="flowscope_relay_head.proto",
        package="flowscope.relay",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
        message_type=[head],
    )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("flowscope.relay.Head"))


_Head = _head_class()


class Scanned(NamedTuple):  # a tuple: made for every flow the relay forwards
    kind: int  # FLOW, NODE_STATUS, LOST_EVENTS, or 0 when the response carries none of them
    time_ns: int | None  # None when the response has no time at all
    named: bool  # node_name is set


_KINDS = {"flow": FLOW, "node_status": NODE_STATUS, "lost_events": LOST_EVENTS, None: 0}


def scan(raw: bytes) -> Scanned:
    """The kind, time and naming of a serialized GetFlowsResponse; DecodeError if it is not one.

    The time is the response's own `time` (1001), which flowscope and Hubble fill on every response; failing
    that, the flow's time or the lost event's `last`.
    """
    head: Any = _Head.FromString(raw)
    kind = _KINDS[head.WhichOneof("response_types")]
    if head.HasField("time"):
        time = head.time
        return Scanned(kind, time.seconds * 1_000_000_000 + time.nanos, bool(head.node_name))
    full = observer_pb2.GetFlowsResponse.FromString(raw)
    time_ns = None
    if full.HasField("flow") and full.flow.HasField("time"):
        time_ns = full.flow.time.ToNanoseconds()
    elif full.HasField("lost_events") and full.lost_events.HasField("last"):
        time_ns = full.lost_events.last.ToNanoseconds()
    return Scanned(kind, time_ns, bool(head.node_name))


def name_suffix(node: str) -> bytes:
    """Bytes that, appended to a response without a node_name, set it (a later field wins in protobuf)."""
    name = node.encode()
    return varint(NODE_NAME << 3 | _LEN) + varint(len(name)) + name


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def node_status(state: relay_pb2.NodeState, nodes: list[str], relay_name: str, now_ns: int, message: str = "") -> bytes:
    """A NodeStatusEvent response (NODE_CONNECTED, NODE_UNAVAILABLE, NODE_GONE or NODE_ERROR)."""
    response = observer_pb2.GetFlowsResponse(
        node_status=relay_pb2.NodeStatusEvent(state_change=state, node_names=sorted(nodes), message=message),
        node_name=relay_name,
        time=timestamp(now_ns),
    )
    return response.SerializeToString()


def lost_events(count: int, first_ns: int, last_ns: int, relay_name: str) -> bytes:
    """A LostEvent for responses this relay dropped because its client did not keep up."""
    lost = flow_pb2.LostEvent(
        source=flow_pb2.OBSERVER_EVENTS_QUEUE,
        num_events_lost=count,
        first=timestamp(first_ns),
        last=timestamp(last_ns),
    )
    response = observer_pb2.GetFlowsResponse(lost_events=lost, node_name=relay_name, time=timestamp(last_ns))
    return response.SerializeToString()
