"""An in-process Observer + health server that serves canned responses, for testing clients end to end.

It speaks the real wire API (observer.Observer and grpc.health.v1.Health) on a unix socket (or TCP, with TLS
if asked), records every GetFlows request, can fail a call with any status, and in follow mode keeps the
stream open and sends whatever the test `push`es, so a test can watch lines arrive one by one.

    with FakeServer(tmp_path / "hubble.sock", flows=[...]) as server:
        subprocess.run(["flowscope", "observe", "--server", server.target])
        server.requests[-1]   # the GetFlowsRequest the client sent
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowscope.api.observer import observer_pb2, observer_pb2_grpc

OBSERVER_SERVICE = "hubble.server.Observer"


class FakeObserver(observer_pb2_grpc.ObserverServicer):
    """Canned answers; `abort` makes GetFlows fail with (code, details) instead, and `refuse` refuses the requests
    it returns a reason for with INVALID_ARGUMENT, as a real server refuses a filter it cannot apply."""

    def __init__(self, flows: list[observer_pb2.GetFlowsResponse] | None = None) -> None:
        self.flows = list(flows or [])
        self.requests: list[observer_pb2.GetFlowsRequest] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.refuse: Callable[[observer_pb2.GetFlowsRequest], str | None] = lambda request: None
        self.status = observer_pb2.ServerStatusResponse()
        self.nodes = observer_pb2.GetNodesResponse()
        self.namespaces = observer_pb2.GetNamespacesResponse()
        self.live: queue.Queue[observer_pb2.GetFlowsResponse] = queue.Queue()
        self.following = threading.Event()

    def GetFlows(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetFlowsResponse]:
        self.requests.append(request)
        if self.abort is not None:
            context.abort(*self.abort)
        reason = self.refuse(request)
        if reason is not None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)
        yield from self._selected(request)
        if request.follow:
            self.following.set()
            while context.is_active():
                try:
                    yield self.live.get(timeout=0.05)
                except queue.Empty:
                    continue

    def _selected(self, request: observer_pb2.GetFlowsRequest) -> list[observer_pb2.GetFlowsResponse]:
        """Roughly what a ring would give: the first or last `number` flows (other responses ride along)."""
        if request.follow and not request.number:
            return []
        if not request.number or request.number >= len(self.flows):
            return list(self.flows)
        count = int(request.number)
        return self.flows[:count] if request.first else self.flows[-count:]

    def ServerStatus(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext
    ) -> observer_pb2.ServerStatusResponse:
        return self.status

    def GetNodes(
        self, request: observer_pb2.GetNodesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNodesResponse:
        return self.nodes

    def GetNamespaces(
        self, request: observer_pb2.GetNamespacesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNamespacesResponse:
        return self.namespaces


class FakeServer:
    """Serves a FakeObserver and a health service on `address`: a socket path, or host:port for TCP."""

    def __init__(
        self,
        address: Path | str,
        flows: list[observer_pb2.GetFlowsResponse] | None = None,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.observer = FakeObserver(flows)
        self.health = health.HealthServicer()
        self.health.set(OBSERVER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        observer_pb2_grpc.add_ObserverServicer_to_server(self.observer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        if isinstance(address, Path):
            self.target = f"unix://{address}"
            bound = f"unix://{address}"
        else:
            bound = address
        if credentials is None:
            port = self._server.add_insecure_port(bound)
        else:
            port = self._server.add_secure_port(bound, credentials)
        if not isinstance(address, Path):
            self.target = f"{address.rsplit(':', 1)[0]}:{port}"

    @property
    def requests(self) -> list[observer_pb2.GetFlowsRequest]:
        return self.observer.requests

    def push(self, response: observer_pb2.GetFlowsResponse) -> None:
        """Send one more response to clients that follow."""
        self.observer.live.put(response)

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set(OBSERVER_SERVICE, status)

    def start(self) -> FakeServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
