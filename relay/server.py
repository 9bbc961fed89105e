"""The relay's gRPC server: Hubble's Observer API for the whole cluster, and the standard health service.

Clients (`flowscope observe`, `hubble observe`, Hubble UI) cannot tell it from an agent, except that flows
come from every node and node status events say which nodes answer. GetFlows is served as bytes: each node's
responses go to the client as they came (relay/wire.py), only put in order (relay/merge.py).

flowscope's packet-path sessions (flowscope.trace.Tracer, relay/trace.py) are a write service, served as the
agent serves it (common/write_side.py): on the relay's unix socket, and on its listen address only when that
demands client certificates (mutual TLS); a plain or server-only-TLS listen address answers PERMISSION_DENIED.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowscope.api.observer import observer_pb2
from flowscope.common.addresses import listen_target
from flowscope.common.counters import Counters
from flowscope.common.flow_requests import time_window
from flowscope.common.h2grpc.server import Server
from flowscope.common.statuses import BriefStatuses
from flowscope.common.streams import STALL_S, FlowStreams
from flowscope.common.tls import ClientTLS, ServerTLS
from flowscope.common.write_side import Refusal, Service, claim, guard, mutual
from flowscope.observer.history.writer import WriterOptions
from flowscope.relay import status
from flowscope.relay.dial import KEEPALIVE_S, Dialer
from flowscope.relay.fanout import Fanout, RejectedRequest
from flowscope.relay.history import HistoryAnswers, RelayHistoryWriter, is_history_call
from flowscope.relay.merge import CLIENT_BUFFER, WINDOW_S, Merger
from flowscope.relay.peers import PeerServiceFollower
from flowscope.relay.pool import Peer, PeerPool
from flowscope.relay.tally import FlowsTally
from flowscope.relay.trace import RelayTracer, WriteSide, tracer_service

if TYPE_CHECKING:
    from flowscope.relay.metrics import RelayMetrics

log = logging.getLogger(__name__)

SERVICE = "observer.Observer"
HEALTH_SERVICE = "hubble.server.Observer"
DEFAULT_LISTEN_ADDRESS = "localhost:4245"


@dataclass
class RelayConfig:
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    peer_service: str | None = None  # an agent's address or unix socket serving peer.Peer
    peer_service_server_name: str = ""
    peers: list[Peer] = field(default_factory=list)  # a static list, besides (or instead of) the peer service
    socket_template: str | None = None  # dial peers at this unix socket ({name}) instead of their address
    server_tls: ServerTLS | None = None
    client_tls: ClientTLS | None = None
    window_s: float = WINDOW_S
    client_buffer: int = CLIENT_BUFFER
    ask_timeout_s: float = status.ASK_TIMEOUT_S
    keepalive_s: float = KEEPALIVE_S  # pings to each agent: how soon a node that stopped answering is named
    name: str = field(default_factory=socket.gethostname)  # node_name of the relay's own responses
    stall_s: float = STALL_S  # a client that reads nothing this long has its stream ended (common/streams.py)
    socket_path: Path | None = None  # a local unix socket, serving write services too (file permissions say who)
    peer_control_port: int | None = None  # the agents' control listeners (mutual TLS), for packet-path sessions
    export_clickhouse: str | None = None  # store the merged flows in ClickHouse here (relay/history.py)
    history_url: str | None = None  # answer GetFlows calls marked as history questions from ClickHouse here
    history: WriterOptions = field(default_factory=WriterOptions)  # the cluster table, retention
    metrics_address: str | None = None  # serve Prometheus metrics here (relay/metrics.py); None: none


@dataclass
class RelayStats(Counters):
    """What the relay did for its clients, summed over them (shown in logs and benchmarks)."""

    clients: int = 0
    merged: int = 0
    late: int = 0
    dropped: int = 0

    def add(self, merged: int = 0, late: int = 0, dropped: int = 0, clients: int = 0) -> None:
        self._add(merged=merged, late=late, dropped=dropped, clients=clients)


class RelayObserver:
    """observer.Observer, answered by asking every node."""

    def __init__(
        self, config: RelayConfig, pool: PeerPool, stopping: threading.Event, stats: RelayStats, streams: FlowStreams
    ) -> None:
        self._config = config
        self._streams = streams
        self._pool = pool
        self._stopping = stopping
        self._stats = stats
        self.tally = FlowsTally()  # every stream's figures, for the metrics
        self._started_ns = time.time_ns()
        self._last_drop_log = 0.0
        self.exporters: Callable[[], list[observer_pb2.ExporterStatus]] = list  # the relay's own (its history writer)

    def get_flows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            time_window(request)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if is_history_call(context.invocation_metadata()):
            yield from self._history(request, context)
            return
        config = self._config
        merger = Merger(config.name, config.window_s, config.client_buffer, on_drop=self._dropped)
        fanout = Fanout(request, self._pool, merger)
        self._stats.add(clients=1)
        self.tally.opened(fanout)
        try:
            yield from self._streams.serve(
                fanout.responses(lambda: context.is_active() and not self._stopping.is_set()), context
            )
        except RejectedRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            self._stats.add(merged=merger.stats.merged, late=merger.stats.late, clients=-1)
            self.tally.ended(fanout)

    def _history(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        """A history question, answered from ClickHouse (relay/history.py)."""
        from flowscope.observer.filters import FilterError
        from flowscope.observer.history.clickhouse import ClickHouseError

        url = self._config.history_url
        if url is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "this relay has no history (start it with --history URL)"
            )
            return
        try:
            yield from HistoryAnswers(url, self._config.history.cluster).answer(request)
        except (ValueError, FilterError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ClickHouseError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    def _dropped(self, count: int) -> None:
        self._stats.add(dropped=count)
        now = time.monotonic()
        if now - self._last_drop_log >= 1.0:
            self._last_drop_log = now
            log.warning("a client does not keep up: %d responses dropped so far", self._stats.dropped)

    def server_status(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext
    ) -> observer_pb2.ServerStatusResponse:
        answers = status.ask_all(self._pool.connections(), status.server_status_of, self._config.ask_timeout_s)
        return status.summarise(answers, self._started_ns, self.exporters())

    def get_nodes(
        self, request: observer_pb2.GetNodesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNodesResponse:
        answers = status.ask_all(self._pool.connections(), status.server_status_of, self._config.ask_timeout_s)
        return status.nodes(answers)

    def get_namespaces(
        self, request: observer_pb2.GetNamespacesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNamespacesResponse:
        answers = status.ask_all(self._pool.connections(), status.namespaces_of, self._config.ask_timeout_s)
        return status.namespaces(answers)

    def handler(self) -> grpc.GenericRpcHandler:
        o = observer_pb2
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                # No response serializer: GetFlows yields the bytes to send.
                "GetFlows": grpc.unary_stream_rpc_method_handler(
                    self.get_flows, request_deserializer=o.GetFlowsRequest.FromString
                ),
                "ServerStatus": grpc.unary_unary_rpc_method_handler(
                    self.server_status,
                    request_deserializer=o.ServerStatusRequest.FromString,
                    response_serializer=o.ServerStatusResponse.SerializeToString,
                ),
                "GetNodes": grpc.unary_unary_rpc_method_handler(
                    self.get_nodes,
                    request_deserializer=o.GetNodesRequest.FromString,
                    response_serializer=o.GetNodesResponse.SerializeToString,
                ),
                "GetNamespaces": grpc.unary_unary_rpc_method_handler(
                    self.get_namespaces,
                    request_deserializer=o.GetNamespacesRequest.FromString,
                    response_serializer=o.GetNamespacesResponse.SerializeToString,
                ),
            },
        )


class RelayServer:
    """The relay, from its config: start() discovers nodes and serves; stop() undoes it all."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.stats = RelayStats()
        self._stopping = threading.Event()
        self._servers: list[grpc.Server] = []
        self.history: RelayHistoryWriter | None = None
        dialer = Dialer(config.client_tls, config.socket_template, keepalive_s=config.keepalive_s)
        self.pool = PeerPool(dialer)
        self.follower = (
            PeerServiceFollower(config.peer_service, self.pool, dialer, config.peer_service_server_name)
            if config.peer_service
            else None
        )
        self.streams = FlowStreams(stall_s=config.stall_s)
        observer = RelayObserver(config, self.pool, self._stopping, self.stats, self.streams)
        observer.exporters = lambda: [self.history.status()] if self.history is not None else []
        self.metrics = self._metrics(observer) if config.metrics_address is not None else None
        tracer = RelayTracer(self.pool, WriteSide(dialer, config.peer_control_port), config.name, self._stopping)
        self._health = health.HealthServicer()
        read_only = [
            Service(HEALTH_SERVICE, self._add_health, writes=False),
            Service(SERVICE, lambda server: server.add_generic_rpc_handlers((observer.handler(),)), writes=False),
        ]
        writes = [tracer_service(tracer)]
        # Two gRPC servers when the listen address is read-only and there is a socket: a server serves every
        # service it has on every port (observer/server/serve.py says the same of the agent).
        trusted = mutual(config.server_tls)
        private = self._server([*read_only, *writes]) if trusted or config.socket_path else None
        listener = private if trusted and private is not None else self._server(read_only)
        if not trusted:
            listener.add_generic_rpc_handlers((Refusal(writes, self._where_writes_live()),))
        address = listen_target(config.listen_address)
        if config.server_tls is not None:
            self.port = listener.add_secure_port(address, config.server_tls)
        else:
            self.port = listener.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {config.listen_address} (in use?)")
        if config.socket_path is not None and private is not None:
            claim(config.socket_path)
            if private.add_insecure_port(f"unix://{config.socket_path}") == 0:
                raise OSError(f"cannot listen on {config.socket_path}")

    def _server(self, services: Sequence[Service]) -> grpc.Server:
        # common/h2grpc's server: merged flows leave in batches, not one gRPC send each; it never sets
        # SO_REUSEPORT, so a second relay on the same port fails to bind instead of silently sharing it.
        # The metrics' interceptor outermost: it sees the status the others leave.
        counting = [self.metrics.grpc] if self.metrics is not None else []
        server = Server(
            self.streams.executor("relay"),
            maximum_concurrent_rpcs=self.streams.max_rpcs,
            interceptors=[*counting, BriefStatuses()],
        )
        for service in services:
            service.add(server)
        self._servers.append(server)
        return server

    def _metrics(self, observer: RelayObserver) -> RelayMetrics:
        from flowscope.relay.metrics import RelayMetrics  # prometheus_client only for a relay that serves metrics

        assert self.config.metrics_address is not None
        getflows = f"/{SERVICE}/GetFlows"
        return RelayMetrics(self.config.metrics_address, self.pool, observer.tally, observer.exporters, getflows)

    def _add_health(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)

    def _where_writes_live(self) -> str:
        places = [f"the relay's socket {self.config.socket_path}"] if self.config.socket_path else []
        places.append("a mutual-TLS listen address")
        return " or ".join(places)

    def start(self) -> RelayServer:
        for peer in self.config.peers:
            self.pool.upsert(peer)
        if self.follower is not None:
            self.follower.start()
        for server in self._servers:
            server.start()
        if self.config.socket_path is not None:
            guard(self.config.socket_path)
        for name in (HEALTH_SERVICE, ""):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.metrics is not None:
            self.metrics.start()
        if self.config.export_clickhouse is not None:
            url, options = self.config.export_clickhouse, self.config.history
            self.history = RelayHistoryWriter(url, options, self.pool, self.config.name, self._stopping).start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        """End the streams, stop serving, close every connection."""
        self._health.enter_graceful_shutdown()
        self._stopping.set()
        if self.follower is not None:
            self.follower.stop()
        stopped = [server.stop(grace) for server in self._servers]
        for event in stopped:
            event.wait(grace + 1)
        self.streams.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.history is not None:
            self.history.close()
            self.history = None
        self.pool.close()
        if self.config.socket_path is not None:
            self.config.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> RelayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
