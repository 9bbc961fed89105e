"""Flow shapes: what flows of one key share, made once and kept as bytes (FlowDecoder.decode says why).

A shape's key is everything the shape is made from (`shape_key`); its flows differ only in what FlowPieces
writes between its bytes (time, uuid, ports, counts) and in the rare fields `FlowDecoder._fill_rare` writes into
a message. A field mask prunes the shapes once (`Masked`), not each flow.
"""

from __future__ import annotations

from operator import attrgetter, itemgetter
from typing import cast

from flowscope.api.flow import flow_pb2
from flowscope.common.names import EVENT_L7
from flowscope.observer.parser.bounded import bounded
from flowscope.observer.parser.fieldmask import FieldTree, keeps_whole, prune, restrict
from flowscope.observer.parser.packet import IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Packet
from flowscope.observer.parser.record import Record
from flowscope.observer.parser.wire import FlowPieces

PORTED = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP", IPPROTO_SCTP: "SCTP"}  # Layer4's field for their ports
# The fields `FlowDecoder._fill_rare` writes into a flow made from its shape; a field mask prunes them once more.
RARE_FIELDS = frozenset(
    {
        "source_names",
        "destination_names",
        "Summary",
        "source_service",
        "destination_service",
        "egress_allowed_by",
        "ingress_allowed_by",
        "egress_denied_by",
        "ingress_denied_by",
        "flowscope",
        "Type",
        "verdict",
        "event_type",
        "is_reply",
        "reply",
        "l7",
    }
)
_PIECES_FIELDS = ("time", "uuid", "l4", "flowscope")  # where FlowPieces writes each flow's own


class Shape:
    """What flows of one key share (FlowDecoder.decode): its bytes, whole and in pieces. Kept as bytes, not as
    a message: ~1 KiB a shape, not ~2.5."""

    __slots__ = ("counts", "direction", "pieces", "ports", "serialized")

    def __init__(self, flow: flow_pb2.Flow, ports: str, counts: bool) -> None:
        self.serialized = flow.SerializeToString()
        self.ports = ports  # the Layer4 field whose ports are each flow's own ("": none)
        self.counts = counts  # an aggregated report's: its packet and byte counts are its own
        self.pieces = FlowPieces(flow, time=True, uuid=True, ports=ports, counts=counts)
        self.direction = flow.traffic_direction


_NOT_MADE = object()  # what Masked.pieces has not made yet (None is one of its answers)


class Masked:
    """The shapes' pieces as one field mask leaves them, and the mask's plan for the fields rare flows write."""

    def __init__(self, fields: FieldTree) -> None:
        self.fields = fields  # held, so that no other mask is given its id while this one is in use
        self.rare = restrict(fields, RARE_FIELDS)
        self._kept = {name: keeps_whole(fields, name) for name in _PIECES_FIELDS}
        self._cleared = {name: name in fields.clear for name in _PIECES_FIELDS}
        self._pieces: dict[tuple[object, ...], FlowPieces | None] = {}

    def pieces(self, key: tuple[object, ...], shape: Shape) -> FlowPieces | None:
        """The pieces of a shape's flows under this mask; None when it keeps a part of a field the pieces write
        (`time.nanos`, `l4.TCP.source_port`...): those flows are pruned as messages."""
        known = self._pieces.get(key, _NOT_MADE)  # one lookup: another thread may empty the dict between two
        if known is not _NOT_MADE:
            return cast(FlowPieces | None, known)
        kept, cleared = self._kept, self._cleared
        written = ("time", "uuid", *(("l4",) if shape.ports else ()), *(("flowscope",) if shape.counts else ()))
        pieces = None
        if all(kept[name] or cleared[name] for name in written):
            pruned = flow_pb2.Flow.FromString(shape.serialized)
            prune(pruned, self.fields)
            ports = shape.ports if kept["l4"] else ""
            counts = shape.counts and kept["flowscope"]
            pieces = FlowPieces(pruned, time=kept["time"], uuid=kept["uuid"], ports=ports, counts=counts)
        bounded(self._pieces, 1024)[key] = pieces
        return pieces


# What `FlowDecoder._shape` reads of a record and of its packet (their `location` and ports: `shape_key`).
_SHAPE_COLUMNS = itemgetter(
    *(
        Record._fields.index(name)
        for name in (
            "type",
            "subtype",
            "flags",
            "ifindex",
            "ep_id",
            "src_identity",
            "dst_identity",
            "trace_reason",
            "verdict",
            "policy_flags",
            "drop_reason",
            "tcp_flags_seen",
            "vni",
        )
    )
)
_SHAPE_PACKET = attrgetter(
    "src_mac", "dst_mac", "ethertype", "ip_version", "src_ip", "dst_ip", "protocol", "l4", "tcp_flags", "truncated"
)


def shape_key(r: Record, packet: Packet) -> tuple[object, ...]:
    """Everything `FlowDecoder._shape` reads, and so what a flow may share a shape by (a snapshot's names aside:
    the shapes go with the snapshot). The ports of TCP, UDP and SCTP are each flow's own; ICMP's type and code
    make its Summary, so they are part of its shape. An L7 record's `location` numbers its L7 entry, which the
    shape does not read."""
    ports = None if packet.protocol in PORTED else (packet.sport, packet.dport)
    location = 0 if r.type == EVENT_L7 else r.location
    return (_SHAPE_COLUMNS(r), _SHAPE_PACKET(packet), location, ports)
