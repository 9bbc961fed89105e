"""From a stored event record to a `flow.Flow`, the way Hubble's L3/L4 parser fills it.

The agent keeps raw records and decodes only the flows a client asks for (docs/reference/design-notes.md,
"Storage"), so this runs once per flow sent, and its cost is per-flow latency for every `hubble observe`. It
reads the record's fields in one go (`record.item()`, or a batch's `tolist()`), parses the captured bytes in
plain Python, and makes what flows share (endpoints, node, interface, event type, addresses, Summary: the
flow's shape) once per snapshot and key. A flow is then its shape's bytes with its own time, uuid, ports and
counts written between them (wire.FlowPieces); only a flow with rarer fields of its own becomes a message to fill.
Setting every field of a message from Python was most of the cost (~17 us a flow against ~1).
"""

from __future__ import annotations

import builtins
import socket
from collections.abc import Callable, Mapping
from functools import cache
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar, cast

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.names import (
    EVENT_L7,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    TRACE_FROM_LXC,
    TRACE_TO_LXC,
    XLATED_FLAG,
)
from flowscope.observer import events
from flowscope.observer.endpoints import EndpointInfo, EndpointRegistry, Snapshot
from flowscope.observer.l7.tls import TlsHello, parse_client_hello
from flowscope.observer.parser.direction import IS_REPLY, REPLY_UNKNOWN, reply_state, traffic_direction
from flowscope.observer.parser.endpoint_index import EndpointIndex, index_of
from flowscope.observer.parser.fieldmask import FieldTree, keeps_whole, prune, restrict
from flowscope.observer.parser.packet import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Packet,
    complete_from_header,
    parse_packet,
)
from flowscope.observer.parser.services import fill_services, frontend_of
from flowscope.observer.parser.summary import summarize
from flowscope.observer.parser.tunnel import fill_tunnel
from flowscope.observer.parser.uuids import FlowIds
from flowscope.observer.parser.wire import FlowPieces

if TYPE_CHECKING:
    from flowscope.observer.l7.counts import L7Counts
    from flowscope.observer.l7.names import NameSets
    from flowscope.observer.l7.store import L7Store
    from flowscope.observer.policy import RuleOrigin
    from flowscope.observer.service_table import FrontendInfo

_POD_POINTS = (TRACE_TO_LXC, TRACE_FROM_LXC)  # where the datapath captures L7 (and so ClientHellos)
_TO_ENDPOINT = flow_pb2.TO_ENDPOINT  # Cilium's TO_LXC (0) on the wire: 0 means "unknown" there
_NO_CPU = 0xFF
_NANOS = 1_000_000_000
_ENUM_MAX = 0x7FFF_FFFF  # protobuf enums are int32; the record's drop_reason is a __u32
_PORTED = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP", IPPROTO_SCTP: "SCTP"}  # Layer4's field for their ports
# The fields `FlowDecoder._fill_rare` writes into a flow made from its shape; a field mask prunes them once more.
_RARE_FIELDS = frozenset(
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


class _Record(NamedTuple):
    """One stored record's fields as Python values, in `struct fs_event` order (checked below)."""

    ts: int
    type: int
    subtype: int
    version: int
    flags: int
    ifindex: int
    len_orig: int
    len_cap: int
    ep_id: int
    hash: int
    src_identity: int
    dst_identity: int
    ethertype: int
    l4_proto: int
    tcp_flags: int
    sport: int
    dport: int
    trace_reason: int
    verdict: int
    policy_flags: int
    cpu: int
    drop_reason: int
    tcp_flags_seen: int
    vni: builtins.bytes  # overlay points: the tunnel's VNI, big-endian (observer/parser/tunnel.py)
    packets: int
    rule: int  # policy verdict: the rule that decided, in the agent's rule table; with XLATED_FLAG a frontend id
    bytes: int
    location: int
    saddr: builtins.bytes  # the field above is named `bytes`
    daddr: builtins.bytes
    src_names: int  # name-set ids the agent attached when it stored the record (observer/l7/names.py)
    dst_names: int
    data: builtins.bytes


assert _Record._fields == events.event_dtype().names, "decoder out of step with observer/events.py"


class Rules(Protocol):
    """What the decoder asks of the agent's policy rule table (observer/policy/rules.py)."""

    def name(self, number: int) -> str | None: ...
    def origin(self, number: int) -> RuleOrigin | None: ...


class _Names:
    """What the decoder derives from one registry snapshot: entry numbers, ready-made Endpoint messages, and the
    flows' shapes (`FlowDecoder.decode`). All of it goes with the snapshot: a pod's new labels, an interface's
    new name or a new node label are a new snapshot, so the next flow is made from them."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.index: EndpointIndex = index_of(snapshot)
        self.node_labels = snapshot.cluster.node_labels(snapshot.node_name)
        self.services = snapshot.services or None  # None: a plain test per flow while no service exists
        self._endpoints: dict[tuple[int, int], flow_pb2.Endpoint] = {}
        self._addresses: dict[bytes, str] = {}
        self.shapes: dict[tuple[object, ...], _Shape] = {}
        self._masks: dict[int, _Masked] = {}

    def endpoint(self, entry: int, identity: int) -> flow_pb2.Endpoint:
        """The Endpoint message of an entry; the datapath's identity wins when it has one."""
        key = (entry, identity)
        message = self._endpoints.get(key)
        if message is None:
            info: EndpointInfo = self.index.entries[entry]
            message = flow_pb2.Endpoint(
                ID=info.id,
                identity=identity or info.identity,
                namespace=info.namespace,
                labels=info.labels,
                pod_name=info.pod,
                cluster_name=info.cluster,
            )
            _bounded(self._endpoints)[key] = message
        return message

    def address(self, packed: bytes) -> str:
        text = self._addresses.get(packed)
        if text is None:
            family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
            text = socket.inet_ntop(family, packed)
            _bounded(self._addresses)[packed] = text
        return text

    def masked(self, fields: FieldTree) -> _Masked:
        """The pruned shapes of one field mask: of one compiled plan, which every request with the same paths
        shares (compile_field_mask)."""
        masked = self._masks.get(id(fields))
        if masked is None or masked.fields is not fields:
            masked = _bounded(self._masks, 16)[id(fields)] = _Masked(fields)
        return masked


class _Shape:
    """What flows of one key share (FlowDecoder.decode): its bytes, whole and in pieces. Kept as bytes, not as
    a message: ~1 KiB a shape, not ~2.5."""

    __slots__ = ("counts", "direction", "pieces", "ports", "serialized")

    def __init__(self, flow: flow_pb2.Flow, ports: str, counts: bool) -> None:
        self.serialized = flow.SerializeToString()
        self.ports = ports  # the Layer4 field whose ports are each flow's own ("": none)
        self.counts = counts  # an aggregated report's: its packet and byte counts are its own
        self.pieces = FlowPieces(flow, time=True, uuid=True, ports=ports, counts=counts)
        self.direction = flow.traffic_direction


_NOT_MADE = object()  # what _Masked.pieces has not made yet (None is one of its answers)


class _Masked:
    """The shapes' pieces as one field mask leaves them, and the mask's plan for the fields rare flows write."""

    def __init__(self, fields: FieldTree) -> None:
        self.fields = fields  # held, so that no other mask is given its id while this one is in use
        self.rare = restrict(fields, _RARE_FIELDS)
        self._kept = {name: keeps_whole(fields, name) for name in _PIECES_FIELDS}
        self._cleared = {name: name in fields.clear for name in _PIECES_FIELDS}
        self._pieces: dict[tuple[object, ...], FlowPieces | None] = {}

    def pieces(self, key: tuple[object, ...], shape: _Shape) -> FlowPieces | None:
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
        _bounded(self._pieces, 1024)[key] = pieces
        return pieces


_K = TypeVar("_K")
_V = TypeVar("_V")


def _bounded(cache: dict[_K, _V], limit: int = 4096) -> dict[_K, _V]:
    """`cache`, emptied first when it holds `limit` entries: a bound on memory that costs nothing per hit."""
    if len(cache) >= limit:
        cache.clear()
    return cache


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
        self._kernel_reasons = dict(kernel_drop_reasons or {})
        self._locate = locate
        self.rules: Rules | None = None  # what the datapath's rule numbers stand for (the agent's policy)
        self.name_sets: NameSets | None = None  # what the records' src_names/dst_names ids stand for
        self.l7: L7Store | None = None  # the entries behind L7 records (type 129: location = the entry's seq)
        self.l7_counts: L7Counts | None = None  # counts L7 flows sent after their entry was overwritten
        self._names = _Names(registry.snapshot)

    def _current_names(self) -> _Names:
        names = self._names
        snapshot = self.registry.snapshot
        if names.snapshot is not snapshot:
            names = self._names = _Names(snapshot)
        return names

    def decode(self, record: np.void, seq: int, fields: FieldTree | None = None) -> flow_pb2.Flow:
        """The flow of one stored record; `fields` (compile_field_mask) keeps only the fields asked for.

        Most of a flow repeats from flow to flow: the endpoints, node, interface, event type, addresses, verdict
        and Summary of a connection's packets are the same. So a flow is made in two parts: its shape, made once
        per distinct key of what it is made of (`_shape_key`) and kept serialized, whole and in pieces, and
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
        r = _Record._make(values)
        packet = _packet_of(r)
        names = self._current_names()
        key = _shape_key(r, packet)
        shape = names.shapes.get(key)
        if shape is None:
            ports = _PORTED.get(packet.protocol, "") if packet.l4 else ""
            counts = bool(r.flags & events.F_AGGREGATE)
            shape = _bounded(names.shapes)[key] = _Shape(self._shape(r, packet, names), ports, counts)
        hello = _client_hello(r.data, r.len_cap, packet.l4_offset) if shape.ports == "TCP" else None
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
                self._fill_rare(flow, r, names, shape, hello, frontend)
            prune(flow, masked.fields)
            return flow
        data = pieces.flow(r.ts, uuid, packet.sport, packet.dport, r.packets, r.bytes)
        if not rare:
            return data
        flow = flow_pb2.Flow.FromString(data)
        self._fill_rare(flow, r, names, shape, hello, frontend)
        if masked is not None:
            prune(flow, masked.rare)
        return flow

    def _shape(self, r: _Record, packet: Packet, names: _Names) -> flow_pb2.Flow:
        """What a flow shares with every flow of its key: all but its time and uuid, the ports and counts
        FlowPieces writes, and what `_fill_rare` writes. (Its ports are those of the record it is made from.)"""
        flow = flow_pb2.Flow()
        self._fill_event(flow, r, names)
        flow.node_labels.extend(names.node_labels)
        _fill_packet(flow, packet, names)
        fill_tunnel(flow, r.type, r.subtype, r.location, r.vni)
        _fill_endpoints(flow, r, packet, names)
        if r.verdict == flow_pb2.DROPPED:
            self._fill_drop(flow, r)
        if r.flags & events.F_AGGREGATE:
            extra = flow.flowscope
            extra.aggregated = True
            _fill_tcp_flags(extra.tcp_flags_seen, r.tcp_flags_seen)
        if packet.truncated:
            flow.flowscope.truncated = True
        return flow

    def _fill_rare(
        self,
        flow: flow_pb2.Flow,
        r: _Record,
        names: _Names,
        shape: _Shape,
        hello: TlsHello | None,
        frontend: FrontendInfo | None,
    ) -> None:
        """What only some flows have of their own, written into the message: only fields in _RARE_FIELDS."""
        if (r.src_names or r.dst_names) and self.name_sets is not None:
            flow.source_names.extend(self.name_sets.names(r.src_names))
            flow.destination_names.extend(self.name_sets.names(r.dst_names))
        if hello is not None:
            name = hello.server_name or self._server_name(r)
            flow.Summary += f" (TLS ClientHello SNI {name})" if name else " (TLS ClientHello)"
        if frontend is not None:
            fill_services(flow, frontend, r)
        if r.rule and self.rules is not None and not r.policy_flags & XLATED_FLAG:
            self._fill_policy(flow, r.rule, self.rules, r.verdict, shape.direction)
        if r.type == EVENT_L7:
            self._fill_l7(flow, r.location)

    def _fill_event(self, flow: flow_pb2.Flow, r: _Record, names: _Names) -> None:
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

    def _server_name(self, r: _Record) -> str:
        """The server name a ClientHello's record carries (observer/l7/source.py: its set id in `location`, which
        a trace record at a pod's hook has no other use for); "" for any other record."""
        if r.type != EVENT_TRACE or not r.location or r.subtype not in _POD_POINTS or self.name_sets is None:
            return ""
        names = self.name_sets.names(r.location)
        return names[0] if names else ""

    def _fill_l7(self, flow: flow_pb2.Flow, seq: int) -> None:
        """An L7 flow as Hubble's proxy flows are: Type L7, event type 129 with no sub-type, forwarded, its
        Layer7 message and Summary from the L7 store. An entry already overwritten leaves an L7 flow with its
        L3/L4 fields only, counted."""
        flow.Type = flow_pb2.L7
        flow.event_type.sub_type = 0
        flow.verdict = flow_pb2.FORWARDED
        entry = self.l7.get(seq) if self.l7 is not None else None
        if entry is None:
            if self.l7_counts is not None:
                self.l7_counts.add(evicted=1)
            return
        flow.l7.ParseFromString(entry.layer7)
        flow.is_reply.value = flow.reply = flow.l7.type == flow_pb2.RESPONSE
        flow.Summary = entry.summary
        if entry.truncated:
            flow.flowscope.truncated = True

    def _fill_policy(self, flow: flow_pb2.Flow, rule: int, rules: Rules, verdict: int, direction: int) -> None:
        """The rule behind a policy verdict: named in flowscope's part, and its policy where Hubble puts it, in
        the allowed_by or denied_by list of the verdict's direction (docs/reference/hubble-api.md, Flow)."""
        name = rules.name(rule)
        if name:
            flow.flowscope.policy_rule = name
        origin = rules.origin(rule)
        if origin is None or direction == flow_pb2.TRAFFIC_DIRECTION_UNKNOWN:
            return
        ingress = direction == flow_pb2.INGRESS
        if verdict == flow_pb2.FORWARDED:
            policies = flow.ingress_allowed_by if ingress else flow.egress_allowed_by
        elif verdict == flow_pb2.DROPPED:
            policies = flow.ingress_denied_by if ingress else flow.egress_denied_by
        else:
            return
        policies.add(
            name=origin.name,
            namespace=origin.namespace,
            labels=origin.labels,
            revision=origin.revision,
            kind=origin.kind,
        )

    def _fill_drop(self, flow: flow_pb2.Flow, r: _Record) -> None:
        """Why it was dropped: a Cilium reason on the wire, or the kernel's own, named, in flowscope's part."""
        if not r.flags & events.F_KERNEL_DROP:
            flow.drop_reason = r.drop_reason
            if r.drop_reason <= _ENUM_MAX:  # an enum is an int32 on the wire: a larger code stays unnamed (0)
                flow.drop_reason_desc = cast(flow_pb2.DropReason, r.drop_reason)
            return
        extra = flow.flowscope
        extra.kernel_drop_reason = self._kernel_reasons.get(r.drop_reason, str(r.drop_reason))
        if r.location:
            located = self._locate(r.location) if self._locate else None
            extra.drop_location = located or f"0x{r.location:x}"

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


def _packet_of(r: _Record) -> Packet:
    """What the record's captured bytes say, completed from its header where they stop short."""
    packet = parse_packet(r.data[: r.len_cap])
    if packet.truncated or not packet.l4:  # the bytes stopped short (or there is no L4): what does the header know?
        complete_from_header(packet, r.ethertype, r.flags, r.saddr, r.daddr, r.l4_proto, r.sport, r.dport, r.tcp_flags)
    if not r.len_cap:  # nothing captured (some kernel drops): the header alone says whether it was cut
        packet.truncated = bool(r.flags & events.F_TRUNCATED)
    return packet


# What `FlowDecoder._shape` reads of a record and of its packet (their `location` and ports: `_shape_key`).
_SHAPE_COLUMNS = itemgetter(
    *(
        _Record._fields.index(name)
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


def _shape_key(r: _Record, packet: Packet) -> tuple[object, ...]:
    """Everything `FlowDecoder._shape` reads, and so what a flow may share a shape by (a snapshot's names aside:
    the shapes go with the snapshot). The ports of TCP, UDP and SCTP are each flow's own; ICMP's type and code
    make its Summary, so they are part of its shape. An L7 record's `location` numbers its L7 entry, which the
    shape does not read."""
    ports = None if packet.protocol in _PORTED else (packet.sport, packet.dport)
    location = 0 if r.type == EVENT_L7 else r.location
    return (_SHAPE_COLUMNS(r), _SHAPE_PACKET(packet), location, ports)


def _fill_endpoints(flow: flow_pb2.Flow, r: _Record, packet: Packet, names: _Names) -> None:
    """Who sent and who received it, and so which way it went."""
    src_entry = names.index.entry_of(packet.src_ip)
    flow.source.CopyFrom(names.endpoint(src_entry, r.src_identity))
    flow.destination.CopyFrom(names.endpoint(names.index.entry_of(packet.dst_ip), r.dst_identity))
    source_is_endpoint = r.ep_id != 0 and names.index.entries[src_entry].id == r.ep_id
    direction = traffic_direction(r.type, r.subtype, r.flags, r.ep_id, r.policy_flags, source_is_endpoint)
    flow.traffic_direction = cast(flow_pb2.TrafficDirection, direction)


def _client_hello(data: bytes, len_cap: int, l4_offset: int) -> TlsHello | None:
    """The TLS ClientHello a TCP segment starts (handshake record, version 3.x, handshake type 1), as far as the
    captured bytes go; None for any other segment, after a test of three bytes. Its server name is usually past
    the bytes a flow record keeps: the record of the client's own hello carries it (`_server_name`)."""
    if len_cap < l4_offset + 13:
        return None
    start = l4_offset + (data[l4_offset + 12] >> 4) * 4
    if data[start : start + 2] != b"\x16\x03" or data[start + 5 : start + 6] != b"\x01" or start + 6 > len_cap:
        return None
    return parse_client_hello(data[start:len_cap])


def _fill_packet(flow: flow_pb2.Flow, packet: Packet, names: _Names) -> None:
    """Ethernet, IP and L4 (and the Summary), as far as the packet's bytes went."""
    flow.Summary = summarize(packet)
    # All-zero addresses on both ends: a header the kernel drop program made up for a packet that had none yet
    # (dropped on its way out of a pod's own stack), so there is no Ethernet to show.
    if packet.src_mac and (any(packet.src_mac) or any(packet.dst_mac)):
        flow.ethernet.source = packet.src_mac.hex(":")
        flow.ethernet.destination = packet.dst_mac.hex(":")
    if packet.src_ip:  # the destination too, unless the bytes (and the header) ended between the two
        ip = flow.IP
        ip.source = names.address(packet.src_ip)
        if packet.dst_ip:
            ip.destination = names.address(packet.dst_ip)
        ip.ipVersion = flow_pb2.IPv4 if len(packet.src_ip) == 4 else flow_pb2.IPv6
    if not packet.l4:
        return
    protocol = packet.protocol
    if protocol == IPPROTO_TCP:
        tcp = flow.l4.TCP
        tcp.source_port, tcp.destination_port = packet.sport, packet.dport
        if packet.tcp_flags is not None:
            _fill_tcp_flags(tcp.flags, packet.tcp_flags)
    elif protocol == IPPROTO_UDP:
        flow.l4.UDP.source_port, flow.l4.UDP.destination_port = packet.sport, packet.dport
    elif protocol == IPPROTO_SCTP:
        flow.l4.SCTP.source_port, flow.l4.SCTP.destination_port = packet.sport, packet.dport
    elif protocol == IPPROTO_ICMP:
        flow.l4.ICMPv4.type, flow.l4.ICMPv4.code = packet.sport, packet.dport
    elif protocol == IPPROTO_ICMPV6:
        flow.l4.ICMPv6.type, flow.l4.ICMPv6.code = packet.sport, packet.dport


_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


@cache
def _tcp_flags(bits: int) -> flow_pb2.TCPFlags:
    """The TCPFlags message for a flags value (FIN 0x01 ... CWR 0x80, NS 0x100), built once per value."""
    return flow_pb2.TCPFlags(**{name: True for i, name in enumerate(_FLAG_NAMES) if bits >> i & 1})


def _fill_tcp_flags(message: flow_pb2.TCPFlags, bits: int) -> None:
    """Set the flags that are on; the message is present even when none are (as Hubble's is)."""
    message.CopyFrom(_tcp_flags(bits))
    message.SetInParent()
