"""The state behind `flowscope map`: flows counted on the edges between boxes, and snapshots for frames.

`MapTable` is top's FlowTable (so the footer's flows, drops, lost events and node status, and top's reading
thread, cli/top/stream.Stream, come with it) that also counts each flow on one edge of the graph. Each flow
counts once: a flow to a service's address (no backend chosen yet) on client → service, a flow that reached a
backend through a service on service → backend, any other on source → destination. A reply is turned around
as top turns it (its connection's direction, with the server's port), so both directions are one edge.

Per-edge counts are kept in one-second buckets (top's Buckets), so rates and shares over a window are a few
numpy sums per frame whatever the number of edges. L7 flows (DNS, HTTP) count only towards an edge's L7 error
share (HTTP 5xx, DNS NXDOMAIN and SERVFAIL among its answers), never in its flows/s: the datapath reports an
L7 message's packet as an L3/L4 flow too.

Boxes keep the column they were first seen in (`layer`): a source first seen is a source (column 0), a
destination goes one column right of the source it was first seen with. Nodes and edges are only ever
appended, so indexes are stable and the layout can keep every box where it was.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.cli.map.nodes import Node, endpoint_node, service_node
from flowscope.cli.printer import fields
from flowscope.cli.top.buckets import Buckets
from flowscope.cli.top.state import FlowTable, Snapshot

MAX_LAYER = 3  # columns: sources, then up to three hops right of them
RATE_WINDOW = 1  # index into buckets.WINDOWS: flows/s over 10 s, steady enough to read
SHARE_WINDOW = 2  # drop and error shares over 40 s: a rare drop stays visible long enough to be seen
RECENT = 2000  # latest flows kept for the focus view
_DROPPING = (flow_pb2.DROPPED, flow_pb2.ERROR)
_DNS_ERRORS = (2, 3)  # SERVFAIL, NXDOMAIN


class Edge(NamedTuple):
    source: int  # node indexes
    destination: int
    protocol: str  # `TCP/9000`, `UDP/53`, `ICMPv4`


class Recent(NamedTuple):
    """One flow as the focus view lists it."""

    stamp: float
    source: int
    destination: int
    protocol: str
    verdict: str
    detail: str  # drop reason, or the L7 summary


@dataclass(frozen=True)
class MapSnapshot:
    """The graph at one moment, copied out so a frame (or a paused screen) reads it unlocked."""

    nodes: list[Node]
    layers: list[int]
    edges: list[Edge]
    rate: np.ndarray  # flows/s per edge
    drop_share: np.ndarray  # dropped flows / flows per edge (0 without flows)
    error_share: np.ndarray  # L7 error answers / answers per edge
    total: np.ndarray  # flows per edge since the stream started
    recent: list[Recent]
    table: Snapshot  # top's numbers, for the footer

    def node_rates(self) -> np.ndarray:
        """Flows/s in and out of each node: how busy a box is, to choose which to collapse."""
        busy = np.zeros(len(self.nodes))
        if self.edges:
            ends = np.array([edge[:2] for edge in self.edges], np.int64)
            np.add.at(busy, ends[:, 0], self.rate)
            np.add.at(busy, ends[:, 1], self.rate)
        return busy


class MapTable(FlowTable):
    """Flows counted on edges (and in top's rows, for the footer). One writer thread, snapshots from the screen."""

    def __init__(self, by: str = "app", clock: Callable[[], float] = time.time, capacity: int = 256) -> None:
        super().__init__(clock)
        self.by = by
        self._map_node_index: dict[Node, int] = {}
        self._map_nodes: list[Node] = []
        self._map_layers: list[int] = []
        self._map_edge_index: dict[Edge, int] = {}
        self._map_edges: list[Edge] = []
        self._edge_total: list[int] = []
        self._edge_flows = Buckets(capacity)
        self._edge_drops = Buckets(capacity)
        self._edge_answers = Buckets(capacity)
        self._edge_errors = Buckets(capacity)
        self._edge_recent: deque[Recent] = deque(maxlen=RECENT)
        self._map_pods: dict[tuple[str, str, int], Node] = {}  # by namespace, pod and identity (a relabelled pod's
        # identity changes with its labels, so it gets a new entry)

    def add_flow(self, flow: flow_pb2.Flow) -> None:
        super().add_flow(flow)
        source, destination, protocol, reply = self._ends(flow)
        stamp = flow.time.seconds + flow.time.nanos / 1e9 if flow.HasField("time") else self._clock()
        layer7 = flow.Type == flow_pb2.L7
        dropped = flow.verdict in _DROPPING
        answer = error = False
        if layer7 and flow.HasField("l7") and flow.l7.type == flow_pb2.RESPONSE:
            record = flow.l7.WhichOneof("record")
            answer = record in ("http", "dns")
            error = (record == "http" and flow.l7.http.code >= 500) or (
                record == "dns" and flow.l7.dns.rcode in _DNS_ERRORS
            )
        detail = fields.summary(flow) if layer7 else (fields.drop_reason(flow) if dropped else "")
        verdict = flow_pb2.Verdict.Name(flow.verdict) if flow.verdict else ""
        with self._lock:
            edge = self._edge(source, destination, protocol, reply)
            if not layer7:
                self._edge_flows.count(edge, stamp)
                self._edge_total[edge] += 1
                if dropped:
                    self._edge_drops.count(edge, stamp)
            if answer:
                self._edge_answers.count(edge, stamp)
                if error:
                    self._edge_errors.count(edge, stamp)
            ends = self._map_edges[edge]
            self._edge_recent.append(Recent(stamp, ends.source, ends.destination, protocol, verdict, detail))

    def _ends(self, flow: flow_pb2.Flow) -> tuple[Node, Node, str, bool]:
        """The edge's two boxes and protocol/port, in the connection's direction (outside the lock)."""
        source = self._endpoint(flow.source, flow.IP.source)
        destination = self._endpoint(flow.destination, flow.IP.destination)
        source_port, destination_port = fields.ports(flow)
        reply = flow.HasField("is_reply") and flow.is_reply.value
        service = flow.destination_service if flow.HasField("destination_service") else None
        if reply:
            source, destination, destination_port = destination, source, source_port
            service = flow.source_service if flow.HasField("source_service") else None
        if service is not None and service.name:
            entry = service_node(service)
            # A backend is known by its address, so it has a pod name. The service's own address carries the
            # chosen backend's identity and so its namespace and labels, but no pod name: that flow has not
            # reached a backend yet.
            backend = (flow.source if reply else flow.destination).pod_name
            if backend and destination.kind == "workload":  # reached a backend: the service → backend leg
                source = entry
            else:  # to the service's address: the client → service leg
                destination = entry
        kind = flow.l4.WhichOneof("protocol") or ("" if flow.IP.source else "ARP")  # no IP: a link's ARP
        protocol = f"{kind}/{destination_port}" if destination_port and destination_port != "0" else kind
        return source, destination, protocol, reply

    def _endpoint(self, endpoint: flow_pb2.Endpoint, address: str) -> Node:
        """endpoint_node, remembered per pod: a pod's labels do not change between its flows, and reading them
        again is most of what a flow costs here. Addresses are not remembered (the world has too many)."""
        if not endpoint.pod_name:
            return endpoint_node(endpoint, address, self.by)
        key = (endpoint.namespace, endpoint.pod_name, endpoint.identity)
        node = self._map_pods.get(key)
        if node is None:
            node = self._map_pods[key] = endpoint_node(endpoint, address, self.by)
        return node

    def _edge(self, source: Node, destination: Node, protocol: str, reply: bool) -> int:
        """The edge's index, made on first sight with its boxes (called under the lock)."""
        first = self._node(source, None)
        second = self._node(destination, self._map_layers[first])
        key = Edge(first, second, protocol)
        edge = self._map_edge_index.get(key)
        if edge is None:
            edge = self._map_edge_index[key] = len(self._map_edges)
            self._map_edges.append(key)
            self._edge_total.append(0)
            for buckets in (self._edge_flows, self._edge_drops, self._edge_answers, self._edge_errors):
                buckets.make_room(edge + 1)
        return edge

    def _node(self, node: Node, after: int | None) -> int:
        index = self._map_node_index.get(node)
        if index is None:
            index = self._map_node_index[node] = len(self._map_nodes)
            self._map_nodes.append(node)
            self._map_layers.append(0 if after is None else min(after + 1, MAX_LAYER))
        return index

    def map_snapshot(self) -> MapSnapshot:
        """Every edge's numbers now: O(edges) numpy work, no Python loop over edges."""
        table = self.snapshot()
        with self._lock:
            edges = len(self._map_edges)
            now = table.now
            rates = self._edge_flows.rates(edges, now)
            rate, flows = rates[RATE_WINDOW], rates[SHARE_WINDOW]
            drops = self._edge_drops.rates(edges, now)[SHARE_WINDOW]
            answers, errors = (
                self._edge_answers.rates(edges, now)[SHARE_WINDOW],
                self._edge_errors.rates(edges, now)[SHARE_WINDOW],
            )
            snapshot = MapSnapshot(
                nodes=self._map_nodes[:],
                layers=self._map_layers[:],
                edges=self._map_edges[:edges],
                rate=rate,
                drop_share=np.divide(drops, flows, out=np.zeros(edges), where=flows > 0),
                error_share=np.divide(errors, answers, out=np.zeros(edges), where=answers > 0),
                total=np.array(self._edge_total, np.int64),
                recent=list(self._edge_recent),
                table=table,
            )
        return snapshot
