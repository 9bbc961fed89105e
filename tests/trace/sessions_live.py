"""Running packet-path sessions on a real lab's agents, the way a script would: flowscope.trace.Tracer over each
node's unix socket, every node's stream on its own thread, until every session has ended."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from waiting import wait_for

from flowscope.api.trace import trace_pb2, trace_pb2_grpc
from flowscope.lab import Lab

END_TIMEOUT_S = 30.0


class NodeStream(threading.Thread):
    def __init__(self, lab: Lab, node: str, request: trace_pb2.TraceRequest) -> None:
        super().__init__(name=f"trace {node}", daemon=True)
        self.channel = grpc.insecure_channel(f"unix://{lab.agent_socket(node)}")
        self.call = trace_pb2_grpc.TracerStub(self.channel).Trace(request)
        self.events: list[trace_pb2.TraceEvent] = []
        self.error: grpc.RpcError | None = None

    def run(self) -> None:
        try:
            for event in self.call:
                self.events.append(event)
        except grpc.RpcError as exc:
            self.error = exc

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("event")) for e in self.events]


class LiveSession:
    """One session on every node of a lab; `events` once all of them ended."""

    def __init__(self, lab: Lab, request: trace_pb2.TraceRequest) -> None:
        self.streams = [NodeStream(lab, node.name, request) for node in lab.nodes]

    @property
    def started(self) -> bool:
        return all("started" in s.kinds() for s in self.streams)

    @property
    def ended(self) -> bool:
        return all(not s.is_alive() for s in self.streams)

    def events(self) -> list[trace_pb2.TraceEvent]:
        wait_for(lambda: self.ended, END_TIMEOUT_S)
        for stream in self.streams:
            assert stream.error is None, stream.error
        return [event for stream in self.streams for event in stream.events]

    def cancel(self) -> None:
        for stream in self.streams:
            stream.call.cancel()
            stream.channel.close()


@contextmanager
def live_session(lab: Lab, **request: object) -> Iterator[LiveSession]:
    """A session on every node, started (every node said so) before the block runs; cancelled after it."""
    session = LiveSession(lab, trace_pb2.TraceRequest(**request))  # type: ignore[arg-type]
    for stream in session.streams:
        stream.start()
    try:
        wait_for(lambda: session.started or any(s.error for s in session.streams), 10.0)
        for stream in session.streams:
            assert stream.error is None, stream.error
        yield session
    finally:
        session.cancel()


def hops(events: list[trace_pb2.TraceEvent], node: str | None = None) -> list[trace_pb2.Hop]:
    return [e.hop for e in events if e.WhichOneof("event") == "hop" and (node is None or e.node_name == node)]
