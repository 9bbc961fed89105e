"""The relay's Prometheus metrics (`flowscope relay --metrics-address`), as Hubble Relay serves them, plus
flowscope's own: served by the agent's mechanism (observer/metrics/server.py), on a registry of the relay's.

Hubble Relay's:
- grpc_server_* {grpc_service, grpc_method, grpc_type[, grpc_code]}: calls started, handled by code, messages
  received and sent (common/grpc_metrics.py)
- hubble_relay_pool_peer_connection_status{status}: peers in each connection state (READY, CONNECTING, IDLE,
  TRANSIENT_FAILURE, SHUTDOWN), every state present, 0 when no peer is in it

flowscope's (the GetFlows figures of relay/tally.py, read at scrape time; nothing is counted per flow):
- flowscope_relay_getflows_streams: GetFlows calls streaming now
- flowscope_relay_responses_total{outcome}: responses handed to clients (delivered), released by the merge in
  time order (merged), of them out of order (late), dropped because a client did not keep up (dropped)
- flowscope_relay_lost_events_total{source}: LostEvents the relay made where it dropped responses
- flowscope_relay_node_status_events_total{state}: NodeStatusEvents sent to clients, by state
- flowscope_relay_peer_state{node, state}: 1 for each node's connection state now
- flowscope_relay_node_streams{node}: GetFlows streams reading the node now
- flowscope_exporter_*{exporter, kind}: the ClickHouse writer of --export-clickhouse (observer/metrics/exporters.py)
- process_*: the relay process's CPU, memory and file descriptors
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowscope.api.observer import observer_pb2
from flowscope.common.grpc_metrics import GrpcServerMetrics
from flowscope.observer.metrics.exporters import exporter_metrics
from flowscope.observer.metrics.server import MetricsServer
from flowscope.relay.pool import Connection, PeerPool, connectivity
from flowscope.relay.tally import FlowsTally

STATES = [state.name for state in grpc.ChannelConnectivity]  # IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN
OUTCOMES = ("delivered", "merged", "late", "dropped")
LOST_SOURCE = "observer_events_queue"  # the source of the relay's LostEvents (relay/wire.py), as Hubble names it


class RelayCollector(Collector):
    def __init__(
        self, pool: PeerPool, tally: FlowsTally, exporters: Callable[[], list[observer_pb2.ExporterStatus]]
    ) -> None:
        self._pool = pool
        self._tally = tally
        self._exporters = exporters

    def collect(self) -> Iterator[Metric]:
        yield from self._peers()
        yield from self._flows()
        yield from exporter_metrics(self._exporters)

    def _peers(self) -> Iterator[Metric]:
        """Each peer's channel state, read now."""
        states = {c.name: _state(c) for c in self._pool.connections()}
        pool = GaugeMetricFamily(
            "hubble_relay_pool_peer_connection_status",
            "Measures the connectivity status of all peers by counting the number of peers for each given "
            "connection status.",
            labels=["status"],
        )
        for status in STATES:
            pool.add_metric([status], sum(1 for state in states.values() if state == status))
        yield pool
        per_node = GaugeMetricFamily(
            "flowscope_relay_peer_state", "1 for the connection state each peer is in now", labels=["node", "state"]
        )
        for node, state in sorted(states.items()):
            per_node.add_metric([node, state], 1)
        yield per_node

    def _flows(self) -> Iterator[Metric]:
        reading = self._tally.read()
        totals = reading.totals
        streams = GaugeMetricFamily("flowscope_relay_getflows_streams", "GetFlows calls streaming now")
        streams.add_metric([], reading.streams)
        yield streams
        responses = CounterMetricFamily(
            "flowscope_relay_responses",
            "GetFlows responses: delivered to clients, merged in time order, late (out of order), dropped "
            "(a client did not keep up)",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            responses.add_metric([outcome], getattr(totals, outcome))
        yield responses
        lost = CounterMetricFamily(
            "flowscope_relay_lost_events", "LostEvents the relay made for responses it dropped", labels=["source"]
        )
        lost.add_metric([LOST_SOURCE], totals.lost_events)
        yield lost
        events = CounterMetricFamily(
            "flowscope_relay_node_status_events", "NodeStatusEvents sent to clients, by state", labels=["state"]
        )
        for state, count in sorted(totals.node_events.items()):
            events.add_metric([state], count)
        yield events
        nodes = GaugeMetricFamily(
            "flowscope_relay_node_streams", "GetFlows streams reading each node now", labels=["node"]
        )
        for node in sorted(self._pool.names()):
            nodes.add_metric([node], reading.reading.get(node, 0))
        yield nodes


def _state(connection: Connection) -> str:
    """The peer's channel state now, without asking an idle channel to connect; SHUTDOWN for a channel closed
    since the pool listed it (a peer removed or replaced meanwhile)."""
    try:
        return connectivity(connection.channel, try_to_connect=False).name
    except ValueError:
        return grpc.ChannelConnectivity.SHUTDOWN.name


class RelayMetrics:
    """The relay's registry, and its /metrics server from start() to close(); `grpc` is the interceptor the
    relay's gRPC servers install (made before them, served once the relay starts)."""

    def __init__(
        self,
        address: str,
        pool: PeerPool,
        tally: FlowsTally,
        exporters: Callable[[], list[observer_pb2.ExporterStatus]],
        getflows: str,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # GetFlows' responses are counted a batch at a time by its streams: msg_sent reads them there.
        self.grpc = GrpcServerMetrics(sent_counts={getflows: lambda: tally.read().totals.delivered})
        self.registry.register(self.grpc)
        self.registry.register(RelayCollector(pool, tally, exporters))
        ProcessCollector(registry=self.registry)
        self.address = address
        self._server: MetricsServer | None = None

    def start(self) -> None:
        self._server = MetricsServer(self.address, self.registry)

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else 0

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
