"""Names and identities: what the decoder derives from one registry snapshot (endpoint messages, address texts,
the flows' shapes), and a flow's two endpoints, named from it.
"""

from __future__ import annotations

import socket
from typing import cast

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import EndpointInfo, Snapshot
from flowscope.observer.parser.bounded import bounded
from flowscope.observer.parser.direction import traffic_direction
from flowscope.observer.parser.endpoint_index import EndpointIndex, index_of
from flowscope.observer.parser.fieldmask import FieldTree
from flowscope.observer.parser.packet import Packet
from flowscope.observer.parser.record import Record
from flowscope.observer.parser.shapes import Masked, Shape


class SnapshotNames:
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
        self.shapes: dict[tuple[object, ...], Shape] = {}
        self._masks: dict[int, Masked] = {}

    def endpoint(self, entry: int, identity: int) -> flow_pb2.Endpoint:
        """The Endpoint message of an entry (EndpointIndex.entry_of: by address, else by the datapath's
        identity); the datapath's identity wins when it has one, as what it decided with."""
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
            bounded(self._endpoints)[key] = message
        return message

    def address(self, packed: bytes) -> str:
        text = self._addresses.get(packed)
        if text is None:
            family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
            text = socket.inet_ntop(family, packed)
            bounded(self._addresses)[packed] = text
        return text

    def masked(self, fields: FieldTree) -> Masked:
        """The pruned shapes of one field mask: of one compiled plan, which every request with the same paths
        shares (compile_field_mask)."""
        masked = self._masks.get(id(fields))
        if masked is None or masked.fields is not fields:
            masked = bounded(self._masks, 16)[id(fields)] = Masked(fields)
        return masked


def fill_endpoints(flow: flow_pb2.Flow, r: Record, packet: Packet, names: SnapshotNames) -> None:
    """Who sent and who received it, and so which way it went. A side is named by its address, or by the
    datapath's identity where nobody owns the address (a pod's fe80::), exactly as the filters name it."""
    index = names.index
    src_entry = index.entry_of(packet.src_ip, r.src_identity)
    flow.source.CopyFrom(names.endpoint(src_entry, r.src_identity))
    flow.destination.CopyFrom(names.endpoint(index.entry_of(packet.dst_ip, r.dst_identity), r.dst_identity))
    source_is_endpoint = r.ep_id != 0 and index.entries[src_entry].id == r.ep_id
    direction = traffic_direction(r.type, r.subtype, r.flags, r.ep_id, r.policy_flags, source_is_endpoint)
    flow.traffic_direction = cast(flow_pb2.TrafficDirection, direction)
