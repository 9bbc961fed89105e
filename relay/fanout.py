"""One GetFlows request through the relay: the same request to every node, the answers merged in time order.

The request goes to each node unchanged (filters, field mask, `number`, which is therefore per node, as in
Hubble). The client first hears which nodes answer (NODE_CONNECTED) and which do not (NODE_UNAVAILABLE), then
the merged flows. In follow mode the request outlives nodes: a node whose stream breaks is named at once
(NODE_ERROR, with gRPC's reason); when it answers again (the pool notices within its reconnection schedule)
its stream is reopened from just after the last flow the client got from it (`since`), and the client hears
NODE_CONNECTED again. Nodes that join the cluster meanwhile are added the same way; nodes that leave it are
named (NODE_GONE).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import grpc

from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.common.h2grpc.client import Stream
from flowscope.relay import wire
from flowscope.relay.backoff import Backoff
from flowscope.relay.merge import Merger
from flowscope.relay.pool import Connection, PeerPool

log = logging.getLogger(__name__)

SETTLE_S = 1.0  # how long a request waits for nodes still making their first connection
TAKE_S = 0.25  # how often the handler looks at whether its client is still there


def has_history(request: observer_pb2.GetFlowsRequest) -> bool:
    """Whether a node first sends stored flows (anything but a plain follow from now on)."""
    return not request.follow or bool(request.number) or request.HasField("since")


def past_until(request: observer_pb2.GetFlowsRequest) -> bool:
    """Whether a follow request with `until` is over (its node streams then end, as they should)."""
    return request.HasField("until") and time.time_ns() > request.until.ToNanoseconds()


def resumed(request: observer_pb2.GetFlowsRequest, since_ns: int) -> observer_pb2.GetFlowsRequest:
    """The request that picks a follow stream up again from since_ns (no `number`: that was the start)."""
    again = observer_pb2.GetFlowsRequest()
    again.CopyFrom(request)
    again.number = 0
    again.first = False
    if not request.HasField("since") or request.since.ToNanoseconds() < since_ns:
        again.since.CopyFrom(wire.timestamp(since_ns))
    return again


# Errors that will not go away by asking again: the node is not retried for this request.
FINAL = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
STABLE_S = 2.0  # a stream that lasted this long counts as a success: the next failure backs off from the start


class NodeStream(threading.Thread):
    """Reads one node's stream into the merger; in follow mode, reopens it whenever the node is back."""

    def __init__(self, fanout: Fanout, name: str, connected: bool) -> None:
        super().__init__(name=f"flows-{name}", daemon=True)
        self.node = name
        self._fanout = fanout
        self._announce_connect = not connected  # the start-of-stream events already named it otherwise
        self._stop_event = threading.Event()
        self._call: Stream | None = None
        self.final_error: grpc.StatusCode | None = None  # why it gave up, when it did
        self.final_message = ""

    def stop(self) -> None:
        self._stop_event.set()
        call = self._call
        if call is not None:
            call.cancel()

    @property
    def stopped(self) -> bool:
        return self._stop_event.is_set()

    @property
    def reading(self) -> bool:
        """Whether its node's stream is open now (the relay's metrics show it per node)."""
        return self._call is not None

    def run(self) -> None:
        fanout, request = self._fanout, self._fanout.request
        backoff = Backoff()
        while not self.stopped:
            connection = self._wait_ready()
            if connection is None:
                return
            last = fanout.last_ns.get(self.node)
            again = last is not None or self._announce_connect
            attempt = request
            if again and request.follow:
                attempt = resumed(request, last + 1 if last is not None else fanout.started_ns)
            opened = time.monotonic()
            code = self._read(connection, attempt, history=has_history(request) and not again)
            ended = code is None and (not request.follow or past_until(request))
            if self.stopped or self.final_error is not None or ended:
                return
            self._announce_connect = True
            if time.monotonic() - opened >= STABLE_S:
                backoff.reset()
            self._stop_event.wait(backoff.next())

    def _wait_ready(self) -> Connection | None:
        """The node's connection once it is ready; None when this stream stops or the node left the cluster."""
        pool = self._fanout.pool
        while not self.stopped:
            connection = pool.wait_ready(self.node, 0.5)
            if connection is not None:
                return connection
            if self.node not in pool.names():
                return None
        return None

    def _read(
        self, connection: Connection, request: observer_pb2.GetFlowsRequest, history: bool
    ) -> grpc.StatusCode | None:
        """Stream the node's responses into the merger; None when it ended well, else the error's code.

        A failure is named to the client (NODE_ERROR) before the node stops holding the merge back, so the
        client hears it before the stream can end.
        """
        fanout, merger = self._fanout, self._fanout.merger
        call = connection.get_flows(request)
        self._call = call
        if self.stopped:
            call.cancel()
        merger.open(self.node, history, ends=not request.follow)
        if self._announce_connect:
            fanout.announce(relay_pb2.NODE_CONNECTED, [self.node])
            self._announce_connect = False
        suffix = wire.name_suffix(self.node)
        try:
            for batch in call.batches():
                self._merge(batch, suffix)
            if request.follow and not self.stopped and not past_until(request):
                fanout.announce(relay_pb2.NODE_ERROR, [self.node], "the node ended the stream")
                return grpc.StatusCode.UNAVAILABLE
            return None
        except grpc.RpcError as exc:
            code, why = exc.code(), exc.details() or exc.code().name
            if "too_many_pings" in why:
                connection.calm_down()
            if self.stopped:
                return code
            if code in FINAL or not request.follow:
                self.final_error, self.final_message = code, why
            fanout.announce(relay_pb2.NODE_ERROR, [self.node], why)
            return code
        finally:
            self._call = None
            merger.close(self.node)

    def _merge(self, batch: list[bytes], suffix: bytes) -> None:
        """One read's responses into the merger, together (one hold of its lock); a node status (the node is
        itself a relay) goes out between the flows before and after it."""
        merger, flows = self._fanout.merger, list[tuple[int, bytes]]()
        for raw in batch:
            try:
                scanned = wire.scan(raw)
            except wire.DecodeError:
                log.warning("node %s sent a response that is not a GetFlowsResponse", self.node)
                continue
            if not scanned.named:
                raw += suffix
            if scanned.kind == wire.NODE_STATUS:
                self._push(flows)
                flows = []
                merger.announce(raw)
                continue
            # No time (or a zero one, as a field mask without `time` can leave): order it as it arrives.
            flows.append((scanned.time_ns or time.time_ns(), raw))
        self._push(flows)

    def _push(self, flows: list[tuple[int, bytes]]) -> None:
        if not flows:
            return
        fanout = self._fanout
        fanout.merger.push_many(self.node, flows, self._stop_event.is_set)
        newest = max(time_ns for time_ns, _ in flows)
        fanout.last_ns[self.node] = max(newest, fanout.last_ns.get(self.node, newest))


class RejectedRequest(ValueError):
    """Every node refused the request as invalid: the client hears it as INVALID_ARGUMENT."""


class Fanout:
    """A request's node streams, its merger, and the node status events in between."""

    def __init__(self, request: observer_pb2.GetFlowsRequest, pool: PeerPool, merger: Merger) -> None:
        self.request = request
        self.pool = pool
        self.merger = merger
        self.started_ns = time.time_ns()
        if request.HasField("since"):
            self.started_ns = min(self.started_ns, request.since.ToNanoseconds())
        self.last_ns: dict[str, int] = {}  # per node, the time of the last response merged from it
        self.delivered = 0  # responses handed to the client's call, counted a batch at a time
        self.node_events: Counter[str] = Counter()  # node status events sent, by state (NODE_CONNECTED, ...)
        self._streams: dict[str, NodeStream] = {}
        self._lock = threading.Lock()
        self._closed = False

    def announce(self, state: relay_pb2.NodeState, nodes: list[str], message: str = "") -> None:
        self.node_events[relay_pb2.NodeState.Name(state)] += 1
        self.merger.announce(wire.node_status(state, nodes, self.merger.relay_name, time.time_ns(), message))

    def responses(self, active: Callable[[], bool]) -> Iterator[bytes]:
        """The merged stream, until it is over or `active()` turns false; every node stream stops after."""
        unsubscribe = self.pool.subscribe(self._on_pool) if self.request.follow else None
        try:
            self.merger.client_reading()
            self._start()
            while active():
                if self.request.follow and past_until(self.request) and not self._running():
                    self.merger.finish()
                batch = self.merger.take(TAKE_S)
                rejection = self._rejected()
                if rejection is not None:
                    raise RejectedRequest(rejection)
                if batch is None:
                    return
                self.delivered += len(batch)
                yield from batch
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self.close()

    def _start(self) -> None:
        self.pool.settle(SETTLE_S)
        connections = self.pool.connections()
        connected = [c.name for c in connections if c.ready]
        unavailable = [c.name for c in connections if not c.ready]
        if connected:
            self.announce(relay_pb2.NODE_CONNECTED, connected)
        if unavailable:
            self.announce(relay_pb2.NODE_UNAVAILABLE, unavailable)
        with self._lock:
            for connection in connections:
                if connection.ready or self.request.follow:
                    self._add(connection.name, connection.ready)
        if not self.request.follow:
            self.merger.finish()

    def reading(self) -> list[str]:
        """The nodes whose streams are open now."""
        with self._lock:
            return [name for name, stream in self._streams.items() if stream.reading]

    def _running(self) -> bool:
        with self._lock:
            return any(stream.is_alive() for stream in self._streams.values())

    def _rejected(self) -> str | None:
        """The nodes' reason when every node refused the request as invalid before sending anything."""
        with self._lock:
            streams = list(self._streams.values())
        if not streams or self.last_ns or any(s.final_error != grpc.StatusCode.INVALID_ARGUMENT for s in streams):
            return None
        return streams[0].final_message

    def _add(self, name: str, connected: bool) -> None:
        if self._closed or name in self._streams:
            return
        if connected:  # it holds the merge back from now on, not from when its thread gets going
            self.merger.open(name, has_history(self.request), ends=not self.request.follow)
        stream = self._streams[name] = NodeStream(self, name, connected)
        stream.start()

    def _on_pool(self, event: str, name: str) -> None:
        """Follow requests take in nodes that join, and name the ones that leave."""
        with self._lock:
            if self._closed:
                return
            if event == "removed":
                stream = self._streams.pop(name, None)
                if stream is not None:
                    stream.stop()
                    self.announce(relay_pb2.NODE_GONE, [name])
            elif event == "added":
                self._add(name, connected=False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            stream.stop()
        deadline = time.monotonic() + 1.0
        for stream in streams:
            stream.join(timeout=max(0.0, deadline - time.monotonic()))
