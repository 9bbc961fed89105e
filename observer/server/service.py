"""The node's observer.Observer service, as Hubble's agent serves it.

GetFlows answers in wire bytes (FlowReader.wire), which its handler sends as they are: `add_observer_service`
puts the service on a server that way; every other method keeps its generated handler.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import cast

import grpc

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.api.relay import relay_pb2
from flowscope.common.streams import FlowStreams
from flowscope.observer.filters import FilterContext
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.server.events import EventSelection, select_events
from flowscope.observer.server.getflows import FlowReader, InvalidRequest, select
from flowscope.observer.server.state import VERSION, NodeState


class ObserverService(observer_pb2_grpc.ObserverServicer):
    def __init__(self, state: NodeState, streams: FlowStreams | None = None) -> None:
        self._state = state
        self._streams = streams or FlowStreams()

    def GetFlows(self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        state = self._state
        ctx = FilterContext(
            node_name=state.node_name,
            cluster_name=state.cluster_name,
            snapshot=state.registry.snapshot,
            instance=state.decoder.instance,
            decoder=state.decoder,
            snapshots=lambda: state.registry.snapshot,
            names=state.decoder.name_sets,
            l7=state.decoder.l7,
        )
        try:
            selection = select(request, ctx)
        except InvalidRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        reader = FlowReader(
            state.ring,
            state.decoder,
            selection,
            state.node_name,
            on_overrun=lambda n: state.counts.lost.add("ring_overrun", n),
        )
        yield from self._streams.serve(reader.wire(lambda: self._active(context)), context)

    def GetAgentEvents(
        self, request: observer_pb2.GetAgentEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetAgentEventsResponse]:
        state = self._state
        selection = self._events_selection(request, context)
        for event in select_events(state.agent_events.ring, selection, lambda: self._active(context)):
            response = observer_pb2.GetAgentEventsResponse(agent_event=event.message, node_name=state.node_name)
            response.time.FromNanoseconds(event.time_ns)
            yield response

    def GetDebugEvents(
        self, request: observer_pb2.GetDebugEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetDebugEventsResponse]:
        state = self._state
        selection = self._events_selection(request, context)
        for event in select_events(state.debug_events, selection, lambda: self._active(context)):
            response = observer_pb2.GetDebugEventsResponse(debug_event=event.message, node_name=state.node_name)
            response.time.FromNanoseconds(event.time_ns)
            yield response

    @staticmethod
    def _events_selection(
        request: observer_pb2.GetAgentEventsRequest | observer_pb2.GetDebugEventsRequest, context: grpc.ServicerContext
    ) -> EventSelection:
        try:
            return EventSelection.of(request)
        except InvalidRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raised already; its stub does not say so

    def _active(self, context: grpc.ServicerContext) -> bool:
        return context.is_active() and not self._state.stopping.is_set()

    def ServerStatus(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext
    ) -> observer_pb2.ServerStatusResponse:
        state = self._state
        lost = state.counts.lost
        return observer_pb2.ServerStatusResponse(
            num_flows=len(state.ring),
            max_flows=state.ring.capacity,
            seen_flows=state.counts.seen_flows,
            uptime_ns=state.uptime_ns,
            version=VERSION,
            flows_rate=state.counts.rate.rate(),
            flowscope_lost=observer_pb2.LostCounts(
                kernel_buffer=lost.kernel_buffer,
                agent_queue=lost.agent_queue,
                ring_overrun=lost.ring_overrun,
                rate_limited=lost.rate_limited,
            ),
            flowscope_l7=l7_status(state.decoder),
            flowscope_exporters=exporter_statuses(state),
        )

    def GetNodes(
        self, request: observer_pb2.GetNodesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNodesResponse:
        """A node's own observer knows one node: itself."""
        state = self._state
        node = observer_pb2.Node(
            name=state.node_name,
            version=VERSION,
            address=state.address,
            state=relay_pb2.NODE_CONNECTED,
            tls=observer_pb2.TLS(enabled=state.tls_enabled),
            uptime_ns=state.uptime_ns,
            num_flows=len(state.ring),
            max_flows=state.ring.capacity,
            seen_flows=state.counts.seen_flows,
        )
        return observer_pb2.GetNodesResponse(nodes=[node])

    def GetNamespaces(
        self, request: observer_pb2.GetNamespacesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNamespacesResponse:
        state = self._state
        names = sorted(state.registry.snapshot.namespaces())
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(cluster=state.cluster_name, namespace=n) for n in names]
        )


def l7_status(decoder: FlowDecoder) -> observer_pb2.L7Status:
    """What became of the node's L7 messages, and its L7 store's fill (empty when the agent makes none)."""
    counts, store = decoder.l7_counts, decoder.l7
    status = observer_pb2.L7Status()
    if counts is not None:
        status.messages, status.not_l7, status.unpaired = counts.messages, counts.not_l7, counts.unpaired
        status.dropped, status.evicted = counts.dropped, counts.evicted
    if store is not None:
        status.stored, status.capacity, status.memory_bytes = len(store), store.capacity, store.memory_bytes()
    return status


def exporter_statuses(state: NodeState) -> list[observer_pb2.ExporterStatus]:
    """The node's exporters as they are now, each named with the node (a relay lists every node's)."""
    statuses = state.exporters()
    for status in statuses:
        status.node_name = state.node_name
    return statuses


def add_observer_service(service: ObserverService, server: grpc.Server) -> None:
    """Serve `service` on `server`: the generated handlers, but GetFlows's with no serializer, since its
    responses are already bytes."""
    handlers = dict(_generated_handlers(service))
    handlers["GetFlows"] = grpc.unary_stream_rpc_method_handler(
        service.GetFlows, request_deserializer=observer_pb2.GetFlowsRequest.FromString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_registered_method_handlers(_SERVICE, handlers)


_SERVICE = "observer.Observer"


class _Handlers:
    """Stands in for a server to take the method handlers the generated code would register (so a method
    added to the proto is served without a change here)."""

    def __init__(self) -> None:
        self.handlers: Mapping[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """The generic form of the same handlers: not needed here."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self.handlers = handlers


def _generated_handlers(service: ObserverService) -> Mapping[str, grpc.RpcMethodHandler]:
    recorder = _Handlers()
    observer_pb2_grpc.add_ObserverServicer_to_server(service, cast(grpc.Server, recorder))
    return recorder.handlers
