"""flowscope.trace.Tracer: packet-path sessions over gRPC (proto/trace/trace.proto).

A write service: a session changes what the datapath does, so it is served on the agent's unix socket and its
mutual-TLS control listener only (observer/server/serve.py), never on the read-only port. A request the
datapath cannot run (a filter on a field unknown when the packet enters, a pcap expression outside the subset,
too many terms) is INVALID_ARGUMENT with the reason; a node whose slots are all taken answers
RESOURCE_EXHAUSTED. When the client goes away, gRPC's callback ends the session at once: its slot, its
followed packets and (with the last session) the tracepoints go with it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grpc

from flowscope.api.trace import trace_pb2, trace_pb2_grpc
from flowscope.observer.server.serve import Service
from flowscope.observer.trace.filter import FilterError, PodAddresses, compile_filter
from flowscope.observer.trace.sessions import DEFAULT_COUNT, DEFAULT_DURATION_S, SessionManager, SessionsFull
from flowscope.observer.trace.terms import encode

SERVICE_NAME = trace_pb2.DESCRIPTOR.services_by_name["Tracer"].full_name


class TracerService(trace_pb2_grpc.TracerServicer):
    def __init__(self, sessions: SessionManager, node_name: str, pods: PodAddresses) -> None:
        self._sessions = sessions
        self._node = node_name
        self._pods = pods

    def Trace(self, request: trace_pb2.TraceRequest, context: grpc.ServicerContext) -> Iterator[trace_pb2.TraceEvent]:
        try:
            compiled = compile_filter(request.filters, request.pcap_filter, self._pods)
        except FilterError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        duration_s = request.duration.ToNanoseconds() / 1e9 if request.HasField("duration") else DEFAULT_DURATION_S
        if duration_s <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"duration must be positive, not {duration_s:g} s")
        try:
            session = self._sessions.open(
                encode(compiled.terms),
                len(compiled.terms),
                compiled.text,
                request.count or DEFAULT_COUNT,
                duration_s,
                request.payload,
            )
        except SessionsFull as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        cancelled = trace_pb2.SessionEnded.CANCELLED
        context.add_callback(lambda: self._sessions.close_session(session, cancelled))
        started = trace_pb2.SessionStarted(
            session_id=session.id,
            filter=compiled.text,
            count=session.count,
            kernel_hooks=session.kernel_hooks,
            notes=session.notes,
        )
        started.duration.FromNanoseconds(int(duration_s * 1e9))
        yield self._event(started=started)
        for hop in session.hops_until_end():
            yield self._event(hop=hop)
        yield self._event(ended=self._sessions.close_session(session, session.reason or cancelled))

    def _event(self, **which: object) -> trace_pb2.TraceEvent:
        event = trace_pb2.TraceEvent(node_name=self._node, **which)  # type: ignore[arg-type]
        event.time.GetCurrentTime()
        return event


def tracer_service(sessions: SessionManager, node_name: str, pods: PodAddresses) -> Service:
    """The service as ObserverServer takes it: it writes (it makes the datapath track packets)."""
    service = TracerService(sessions, node_name, pods)
    return Service(SERVICE_NAME, functools.partial(trace_pb2_grpc.add_TracerServicer_to_server, service))
