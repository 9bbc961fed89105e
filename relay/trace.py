"""flowscope.trace.Tracer through the relay: one packet-path session on every node, streamed as one.

The request goes to every node unchanged (each node picks up to `count` packets itself, as it would asked
directly), and each node's events reach the client as they arrive: they already name their node, and a client
orders hops by each node's own clock (cli/trace/paths.py), so the relay does not hold them back to sort them.

A session changes what a node's datapath does, so the relay asks each agent on its write side, never on the
read-only port it reads flows from (`WriteSide`): the agent's unix socket when the relay dials agents that way
(a lab's relay), otherwise the agent's control listener, `<node's host>:<--peer-control-port>`, with the
relay's client certificate (the listener demands mutual TLS). Cilium's relay has nothing like it: Hubble's
agents serve no write service.

A node whose session cannot start, or breaks off, is named in the stream (a NodeStatusEvent, as GetFlows names
nodes) and the other nodes' sessions go on. Only when every node refuses does the call fail, with their code
and reason: INVALID_ARGUMENT for a filter the datapath cannot run, exactly as an agent answers it. When the
client goes away, every node's call is cancelled, and each agent ends its session at once.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from flowscope.api.relay import relay_pb2
from flowscope.api.trace import trace_pb2, trace_pb2_grpc
from flowscope.common.tls import ClientTLS
from flowscope.common.write_side import Service
from flowscope.relay.dial import Dialer, is_unix
from flowscope.relay.pool import Connection, PeerPool

log = logging.getLogger(__name__)

SERVICE_NAME = trace_pb2.DESCRIPTOR.services_by_name["Tracer"].full_name
CONTROL_PORT_FLAG = "--peer-control-port"
SETTLE_S = 1.0  # how long a session waits for nodes still making their first connection
OPEN_S = 5.0  # how long the relay holds the first events back for every node's session to start or refuse
TAKE_S = 0.25  # how often the handler looks at whether its client is still there

UNREACHABLE = (  # under common/statuses.py's LIMIT, so that it arrives whole
    f"the relay cannot reach the agents' write side for sessions: give it {CONTROL_PORT_FLAG} PORT "
    "(the agents' --control-listen-address port, mutual TLS)"
)


def check_peer_control(port: int | None, tls: ClientTLS | None) -> None:
    """The agents' control listeners demand a client certificate: a control port needs the relay's."""
    if port is not None and (tls is None or tls.cert is None):
        raise ValueError(
            f"{CONTROL_PORT_FLAG} needs --tls-client-cert-file and --tls-client-key-file (and the agents' CAs in "
            "--tls-hubble-server-ca-files): the agents' control listeners demand mutual TLS"
        )


@dataclass(frozen=True)
class WriteSide:
    """Where each agent's write side is, seen from the relay, and how to dial it."""

    dialer: Dialer
    control_port: int | None = None

    def target(self, connection: Connection) -> str | None:
        """The agent's unix socket when the relay reads it there, else its control listener; None: neither."""
        if is_unix(connection.target):
            return connection.target
        if self.control_port is None:
            return None
        host = connection.target.rpartition(":")[0]  # "[fd77::1]" keeps its brackets
        return f"{host}:{self.control_port}"

    def channel(self, connection: Connection, target: str) -> grpc.Channel:
        """A channel of its own: a session's calls end with it, and closing it closes only them."""
        return self.dialer.channel(target, connection.peer.server_name)


@dataclass(frozen=True)
class NodeEnd:
    """A node's call ended: by itself (code None) or failing."""

    node: str
    code: grpc.StatusCode | None = None
    reason: str = ""


class NodeTrace(threading.Thread):
    """One node's session: its events go into the shared inbox, then a NodeEnd."""

    def __init__(self, node: str, channel: grpc.Channel, request: trace_pb2.TraceRequest, inbox: queue.Queue) -> None:
        super().__init__(name=f"trace-{node}", daemon=True)
        self.node = node
        self._channel = channel
        self._request = request
        self._inbox = inbox
        self._lock = threading.Lock()
        self._call: grpc.Call | None = None
        self._cancelled = False

    def run(self) -> None:
        try:
            with self._lock:
                if self._cancelled:
                    return
                self._call = call = trace_pb2_grpc.TracerStub(self._channel).Trace(self._request)
            for event in call:
                if not event.node_name:
                    event.node_name = self.node
                self._inbox.put(event)
            self._inbox.put(NodeEnd(self.node))
        except grpc.RpcError as exc:
            self._inbox.put(NodeEnd(self.node, exc.code(), exc.details() or exc.code().name))
        finally:
            self._channel.close()

    def cancel(self) -> None:
        """End the node's call: its agent ends the session when the call goes."""
        with self._lock:
            self._cancelled = True
            call = self._call
        if call is not None:
            call.cancel()


class AllRefused(Exception):
    """Every node refused the session: the call fails with their code and reason."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SessionMerge:
    """What one session through the relay has heard of each node, and the events it turns that into."""

    def __init__(self, relay_name: str, nodes: list[str], refused: dict[str, NodeEnd]) -> None:
        self._relay = relay_name
        self.running = set(nodes)  # nodes whose call has not ended
        self.waiting = set(nodes)  # nodes whose session neither started nor failed yet
        self.refused = dict(refused)  # nodes whose session failed, by name

    def take(self, item: trace_pb2.TraceEvent | NodeEnd) -> trace_pb2.TraceEvent | None:
        """The event to send the client for what a node's call produced (None: nothing to say)."""
        self.waiting.discard(item.node if isinstance(item, NodeEnd) else item.node_name)
        if isinstance(item, trace_pb2.TraceEvent):
            return item
        self.running.discard(item.node)
        if item.code is None or item.code == grpc.StatusCode.CANCELLED:
            return None
        self.refused[item.node] = item
        return self.status(item)

    def status(self, end: NodeEnd) -> trace_pb2.TraceEvent:
        state = relay_pb2.NODE_UNAVAILABLE if end.code == grpc.StatusCode.UNAVAILABLE else relay_pb2.NODE_ERROR
        assert end.code is not None
        status = relay_pb2.NodeStatusEvent(
            state_change=state, node_names=[end.node], message=f"{end.node}: {end.code.name}: {end.reason}"
        )
        event = trace_pb2.TraceEvent(node_name=self._relay, node_status=status)
        event.time.GetCurrentTime()
        return event

    def check_any_started(self, nodes: int) -> None:
        """AllRefused when every node refused: one code and reason when they agree, each node's otherwise."""
        if len(self.refused) < nodes:
            return
        codes = {end.code for end in self.refused.values() if end.code is not None}
        reasons = list(dict.fromkeys(end.reason for end in self.refused.values()))
        code = codes.pop() if len(codes) == 1 else grpc.StatusCode.UNAVAILABLE
        if len(reasons) == 1:
            raise AllRefused(code, reasons[0])
        each = "; ".join(f"{end.node}: {end.reason}" for _, end in sorted(self.refused.items()))
        raise AllRefused(code, f"no node started the session: {each}")


class RelayTracer:
    """flowscope.trace.Tracer, answered by every node's agent."""

    def __init__(self, pool: PeerPool, write_side: WriteSide, relay_name: str, stopping: threading.Event) -> None:
        self._pool = pool
        self._write_side = write_side
        self._relay = relay_name
        self._stopping = stopping

    def trace(self, request: trace_pb2.TraceRequest, context: grpc.ServicerContext) -> Iterator[trace_pb2.TraceEvent]:
        self._pool.settle(SETTLE_S)
        connections = self._pool.connections()
        if not connections:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the relay knows no node to trace on yet")
        inbox: queue.Queue[trace_pb2.TraceEvent | NodeEnd] = queue.Queue()
        nodes: list[NodeTrace] = []
        refused: dict[str, NodeEnd] = {}
        for connection in connections:
            target = self._write_side.target(connection)
            if target is None:
                refused[connection.name] = NodeEnd(connection.name, grpc.StatusCode.FAILED_PRECONDITION, UNREACHABLE)
            else:
                channel = self._write_side.channel(connection, target)
                nodes.append(NodeTrace(connection.name, channel, request, inbox))

        def cancel() -> None:
            for node in nodes:
                node.cancel()

        context.add_callback(cancel)
        for node in nodes:
            node.start()
        merge = SessionMerge(self._relay, [node.node for node in nodes], refused)
        log.info("trace session for %s on %d nodes", context.peer(), len(nodes))
        try:
            yield from self._events(merge, len(connections), inbox, lambda: self._active(context))
        except AllRefused as exc:
            context.abort(exc.code, exc.reason)
        finally:
            cancel()

    def _events(
        self,
        merge: SessionMerge,
        nodes: int,
        inbox: queue.Queue[trace_pb2.TraceEvent | NodeEnd],
        active: Callable[[], bool],
    ) -> Iterator[trace_pb2.TraceEvent]:
        """Hold the first events until every node's session started or refused (or OPEN_S passed), so a
        session no node runs is one error; then every event as it comes, until every node's call ended."""
        held: list[trace_pb2.TraceEvent] = []
        deadline = time.monotonic() + OPEN_S
        while merge.waiting and time.monotonic() < deadline and active():
            event = _take(inbox, merge)
            if event is not None and event.WhichOneof("event") != "node_status":
                held.append(event)
        merge.check_any_started(nodes)
        yield from (merge.status(end) for _, end in sorted(merge.refused.items()))
        yield from held
        while merge.running and active():
            event = _take(inbox, merge)
            if event is not None:
                yield event

    def _active(self, context: grpc.ServicerContext) -> bool:
        return context.is_active() and not self._stopping.is_set()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Trace": grpc.unary_stream_rpc_method_handler(
                    self.trace,
                    request_deserializer=trace_pb2.TraceRequest.FromString,
                    response_serializer=trace_pb2.TraceEvent.SerializeToString,
                )
            },
        )


def _take(inbox: queue.Queue[trace_pb2.TraceEvent | NodeEnd], merge: SessionMerge) -> trace_pb2.TraceEvent | None:
    try:
        return merge.take(inbox.get(timeout=TAKE_S))
    except queue.Empty:
        return None


def tracer_service(tracer: RelayTracer) -> Service:
    """The service as the relay's servers take it: it writes (it starts sessions on every node)."""
    return Service(SERVICE_NAME, functools.partial(_add, tracer))


def _add(tracer: RelayTracer, server: grpc.Server) -> None:
    server.add_generic_rpc_handlers((tracer.handler(),))
