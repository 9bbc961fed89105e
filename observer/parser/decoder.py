"""From a stored event record to a `flow.Flow`, the way Hubble's L3/L4 parser fills it.

The agent keeps raw records and decodes only the flows a client asks for (docs/reference/design-notes.md,
"Storage"), so this runs once per flow sent, and its cost is per-flow latency for every `hubble observe`. It
reads the record's fields in one go (record.py), parses the captured bytes in plain Python, and makes what flows
share (endpoints, node, interface, event type, addresses, Summary: the flow's shape, shapes.py) once per
snapshot and key (names.py). A flow is then its shape's bytes with its own time, uuid, ports and counts written
between them (wire.FlowPieces); only a flow with rarer fields of its own becomes a message to fill.
Setting every field of a message from Python was most of the cost (~17 us a flow against ~1).

This module is the core that joins them; each part of a flow is filled by the module of its concern: layers.py
(Ethernet, IP, L4), names.py (endpoints), tunnel.py, drops.py, policy.py, services.py and layer7.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.names import EVENT_L7, EVENT_POLICY_VERDICT, EVENT_TRACE, XLATED_FLAG
from flowscope.observer import events
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.l7.tls import TlsHello
from flowscope.observer.parser.bounded import bounded
from flowscope.observer.parser.direction import IS_REPLY, REPLY_UNKNOWN, reply_state
from flowscope.observer.parser.drops import DropReasons
from flowscope.observer.parser.fieldmask import FieldTree, prune
from flowscope.observer.parser.layer7 import client_hello, fill_l7, server_name
from flowscope.observer.parser.layers import fill_packet, fill_tcp_flags
from flowscope.observer.parser.names import SnapshotNames, fill_endpoints
from flowscope.observer.parser.packet import Packet
from flowscope.observer.parser.policy import Rules, fill_policy
from flowscope.observer.parser.record import Record, packet_of
from flowscope.observer.parser.services import fill_services, frontend_of
from flowscope.observer.parser.shapes import PORTED, Shape, shape_key
from flowscope.observer.parser.tunnel import fill_tunnel
from flowscope.observer.parser.uuids import FlowIds

if TYPE_CHECKING:
    from flowscope.observer.l7.counts import L7Counts
    from flowscope.observer.l7.names import NameSets
    from flowscope.observer.l7.store import L7Store
    from flowscope.observer.service_table import FrontendInfo

_TO_ENDPOINT = flow_pb2.TO_ENDPOINT  # Cilium's TO_LXC (0) on the wire: 0 means "unknown" there
_NO_CPU = 0xFF
_NANOS = 1_000_000_000


class FlowDecoder:
    """Decodes this node's stored records into flows.

    `instance` distinguishes this run of the agent (it seeds the flows' uuids). `kernel_drop_reasons` names
    the running kernel's `enum skb_drop_reason` values ({3: "NO_SOCKET", ...}); `locate` turns a kernel
    drop's address into "symbol+offset" when it can.
    """

    def __init__(
        self,
        node_name: str,
        registry: EndpointRegistry,
        instance: bytes,
        kernel_drop_reasons: Mapping[int, str] | None = None,
        locate: Callable[[int], str | None] | None = None,
    ) -> None:
        self.node_name = node_name
        self.registry = registry
        self.instance = instance
        self.ids = FlowIds(instance)
        self._drops = DropReasons(kernel_drop_reasons, locate)
        self.rules: Rules | None = None  # what the datapath's rule numbers stand for (the agent's policy)
        self.name_sets: NameSets | None = None  # what the records' src_names/dst_names ids stand for
        self.l7: L7Store | None = None  # the entries behind L7 records (type 129: location = the entry's seq)
        self.l7_counts: L7Counts | None = None  # counts L7 flows sent after their entry was overwritten
        self._names = SnapshotNames(registry.snapshot)

    def _current_names(self) -> SnapshotNames:
        names = self._names
        snapshot = self.registry.snapshot
        if names.snapshot is not snapshot:
            names = self._names = SnapshotNames(snapshot)
        return names

    def decode(self, record: np.void, seq: int, fields: FieldTree | None = None) -> flow_pb2.Flow:
        """The flow of one stored record; `fields` (compile_field_mask) keeps only the fields asked for.

        Most of a flow repeats from flow to flow: the endpoints, node, interface, event type, addresses, verdict
        and Summary of a connection's packets are the same. So a flow is made in two parts: its shape, made once
        per distinct key of what it is made of (`shape_key`) and kept serialized, whole and in pieces, and
        what is its own: the time, uuid, ports and (aggregated reports) counts, written as bytes between the
        pieces, and the names, ClientHello, service, policy rule and L7 some flows have, written into the message
        made from those bytes (`_fill_rare`).
        """
        return self.decode_values(cast(tuple[Any, ...], record.item()), seq, fields)  # a structured record: a tuple

    def decode_values(self, values: tuple[Any, ...], seq: int, fields: FieldTree | None = None) -> flow_pb2.Flow:
        """`decode` for a record's fields as Python values, as `record.item()` gives them (a batch of records'
        `tolist()` gives them for less per record)."""
        made = self._made(values, seq, fields)
        return made if isinstance(made, flow_pb2.Flow) else flow_pb2.Flow.FromString(made)

    def encode_values(self, values: tuple[Any, ...], seq: int, fields: FieldTree | None = None) -> bytes:
        """The serialized flow of `decode_values`, byte for byte, made without a message for most flows."""
        made = self._made(values, seq, fields)
        return made if isinstance(made, bytes) else made.SerializeToString()

    def _made(self, values: tuple[Any, ...], seq: int, fields: FieldTree | None) -> bytes | flow_pb2.Flow:
        """The flow's bytes, or its message when it has rare fields of its own (names, a TLS ClientHello, a
        service, a policy rule, L7): those are written into the message made from the bytes."""
        r = Record._make(values)
        packet = packet_of(r)
        names = self._current_names()
        key = shape_key(r, packet)
        shape = names.shapes.get(key)
        if shape is None:
            ports = PORTED.get(packet.protocol, "") if packet.l4 else ""
            counts = bool(r.flags & events.F_AGGREGATE)
            shape = bounded(names.shapes)[key] = Shape(self._shape(r, packet, names), ports, counts)
        hello = client_hello(r.data, r.len_cap, packet.l4_offset) if shape.ports == "TCP" else None
        frontend = frontend_of(names.services, r) if names.services is not None else None
        rare = (
            hello is not None
            or frontend is not None
            or r.type == EVENT_L7
            or ((r.src_names or r.dst_names) and self.name_sets is not None)
            or (r.rule and self.rules is not None and not r.policy_flags & XLATED_FLAG)
        )
        uuid = self.ids.uuid(seq)
        masked = None if fields is None else names.masked(fields)
        pieces = shape.pieces if masked is None else masked.pieces(key, shape)
        if pieces is None:  # the mask keeps a part of what the pieces write: the whole flow, pruned as a message
            assert masked is not None
            flow = flow_pb2.Flow.FromString(
                shape.pieces.flow(r.ts, uuid, packet.sport, packet.dport, r.packets, r.bytes)
            )
            if rare:
                self._fill_rare(flow, r, shape, hello, frontend)
            prune(flow, masked.fields)
            return flow
        data = pieces.flow(r.ts, uuid, packet.sport, packet.dport, r.packets, r.bytes)
        if not rare:
            return data
        flow = flow_pb2.Flow.FromString(data)
        self._fill_rare(flow, r, shape, hello, frontend)
        if masked is not None:
            prune(flow, masked.rare)
        return flow

    def _shape(self, r: Record, packet: Packet, names: SnapshotNames) -> flow_pb2.Flow:
        """What a flow shares with every flow of its key: all but its time and uuid, the ports and counts
        FlowPieces writes, and what `_fill_rare` writes. (Its ports are those of the record it is made from.)"""
        flow = flow_pb2.Flow()
        self._fill_event(flow, r, names)
        flow.node_labels.extend(names.node_labels)
        fill_packet(flow, packet, names)
        fill_tunnel(flow, r.type, r.subtype, r.location, r.vni)
        fill_endpoints(flow, r, packet, names)
        if r.verdict == flow_pb2.DROPPED:
            self._drops.fill(flow, r)
        if r.flags & events.F_AGGREGATE:
            extra = flow.flowscope
            extra.aggregated = True
            fill_tcp_flags(extra.tcp_flags_seen, r.tcp_flags_seen)
        if packet.truncated:
            flow.flowscope.truncated = True
        return flow

    def _fill_rare(
        self,
        flow: flow_pb2.Flow,
        r: Record,
        shape: Shape,
        hello: TlsHello | None,
        frontend: FrontendInfo | None,
    ) -> None:
        """What only some flows have of their own, written into the message: only fields in shapes.RARE_FIELDS."""
        if (r.src_names or r.dst_names) and self.name_sets is not None:
            flow.source_names.extend(self.name_sets.names(r.src_names))
            flow.destination_names.extend(self.name_sets.names(r.dst_names))
        if hello is not None:
            name = hello.server_name or server_name(r, self.name_sets)
            flow.Summary += f" (TLS ClientHello SNI {name})" if name else " (TLS ClientHello)"
        if frontend is not None:
            fill_services(flow, frontend, r)
        if r.rule and self.rules is not None and not r.policy_flags & XLATED_FLAG:
            fill_policy(flow, r.rule, self.rules, r.verdict, shape.direction)
        if r.type == EVENT_L7:
            fill_l7(flow, r.location, self.l7, self.l7_counts)

    def _fill_event(self, flow: flow_pb2.Flow, r: Record, names: SnapshotNames) -> None:
        """What the event says beyond the packet: where, what kind, and the datapath's verdict (its time and
        uuid are each flow's own)."""
        flow.verdict = cast(flow_pb2.Verdict, r.verdict)
        flow.Type = flow_pb2.L3_L4
        flow.node_name = self.node_name
        cilium_type = flow.event_type
        cilium_type.type, cilium_type.sub_type = r.type, r.subtype
        if r.type == EVENT_TRACE:
            flow.trace_observation_point = cast(flow_pb2.TraceObservationPoint, r.subtype or _TO_ENDPOINT)
        elif r.type == EVENT_POLICY_VERDICT:
            flow.policy_match_type = (r.policy_flags >> 3) & 0x7
        if r.trace_reason:
            flow.trace_reason = cast(flow_pb2.TraceReason, r.trace_reason)
        reply = reply_state(r.flags)
        if reply != REPLY_UNKNOWN:
            flow.is_reply.value = flow.reply = reply == IS_REPLY
        if r.ifindex:
            interface = flow.interface
            interface.index = r.ifindex
            interface.name = names.snapshot.interface_name(r.ifindex)

    def decode_lost(self, record: np.void) -> flow_pb2.LostEvent:
        """A LostEvent from an EVENT_LOST record: subtype = source, bytes = how many, cpu (0xff: none), ts."""
        source = cast(flow_pb2.LostEventSource, int(record["subtype"]))
        lost = flow_pb2.LostEvent(source=source, num_events_lost=int(record["bytes"]))
        cpu = int(record["cpu"])
        if cpu != _NO_CPU:
            lost.cpu.value = cpu
        seconds, nanos = divmod(int(record["ts"]), _NANOS)
        lost.first.seconds = lost.last.seconds = seconds
        lost.first.nanos = lost.last.nanos = nanos
        return lost
