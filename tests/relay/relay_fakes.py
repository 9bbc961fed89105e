"""Stand-in agents for relay tests: the real wire API (Observer, Peer, health) with canned answers.

A FakeAgent serves a node's stored flows (honouring `number`, `first` and `since`), then, in follow mode,
whatever the test `push`es to every open stream; it records each GetFlows request, can be stopped and
started again on the same address (a node that dies and comes back), and can serve peer.Peer with a list
of peers the test changes.

    with FakeAgent("node1", short_tmp / "n1.sock") as agent:
        agent.history = [flow("node1", T0)]
        agent.push(flow("node1", T0 + 1))
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.api.peer import peer_pb2, peer_pb2_grpc

HEALTH_SERVICE = "hubble.server.Observer"


def _time(response: observer_pb2.GetFlowsResponse) -> int:
    return response.time.seconds * 1_000_000_000 + response.time.nanos


class _Observer(observer_pb2_grpc.ObserverServicer):
    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent

    def GetFlows(
        self, request: observer_pb2.GetFlowsRequest, context: grpc.ServicerContext
    ) -> Iterator[observer_pb2.GetFlowsResponse]:
        agent = self.agent
        agent.requests.append(request)
        if agent.abort is not None:
            context.abort(*agent.abort)
        inbox: queue.Queue[observer_pb2.GetFlowsResponse] = queue.Queue()
        if request.follow:
            with agent.lock:
                agent.inboxes.append(inbox)
        try:
            yield from agent.stored(request)
            while request.follow and context.is_active():
                try:
                    yield inbox.get(timeout=0.05)
                except queue.Empty:
                    continue
        finally:
            with agent.lock:
                if inbox in agent.inboxes:
                    agent.inboxes.remove(inbox)

    def ServerStatus(
        self, request: observer_pb2.ServerStatusRequest, context: grpc.ServicerContext
    ) -> observer_pb2.ServerStatusResponse:
        return self.agent.status

    def GetNodes(
        self, request: observer_pb2.GetNodesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNodesResponse:
        return observer_pb2.GetNodesResponse()

    def GetNamespaces(
        self, request: observer_pb2.GetNamespacesRequest, context: grpc.ServicerContext
    ) -> observer_pb2.GetNamespacesResponse:
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(cluster="lab", namespace=n) for n in self.agent.namespaces]
        )


class _Peer(peer_pb2_grpc.PeerServicer):
    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent

    def Notify(
        self, request: peer_pb2.NotifyRequest, context: grpc.ServicerContext
    ) -> Iterator[peer_pb2.ChangeNotification]:
        agent = self.agent
        inbox: queue.Queue[peer_pb2.ChangeNotification] = queue.Queue()
        with agent.lock:
            current = list(agent.peers)
            agent.peer_inboxes.append(inbox)
        try:
            for name, address in current:
                yield peer_pb2.ChangeNotification(name=name, address=address, type=peer_pb2.PEER_ADDED)
            while context.is_active():
                try:
                    yield inbox.get(timeout=0.05)
                except queue.Empty:
                    continue
        finally:
            with agent.lock:
                agent.peer_inboxes.remove(inbox)


class FakeAgent:
    def __init__(self, name: str, address: Path | str, credentials: grpc.ServerCredentials | None = None) -> None:
        self.name = name
        self.address = address
        self.credentials = credentials
        self.history: list[observer_pb2.GetFlowsResponse] = []
        self.requests: list[observer_pb2.GetFlowsRequest] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.status = observer_pb2.ServerStatusResponse(num_flows=10, max_flows=4095, seen_flows=20, version="fake")
        self.namespaces: list[str] = []
        self.peers: list[tuple[str, str]] = []  # (name, address) announced by its peer service
        self.lock = threading.Lock()
        self.inboxes: list[queue.Queue[observer_pb2.GetFlowsResponse]] = []
        self.peer_inboxes: list[queue.Queue[peer_pb2.ChangeNotification]] = []
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        if isinstance(self.address, Path):
            return f"unix://{self.address}"
        return f"{self.address.rsplit(':', 1)[0]}:{self.port}"

    def stored(self, request: observer_pb2.GetFlowsRequest) -> list[observer_pb2.GetFlowsResponse]:
        """What a ring would give: everything (since `since`), or the first or last `number`."""
        flows = list(self.history)
        if request.HasField("since"):
            flows = [f for f in flows if _time(f) >= request.since.ToNanoseconds()]
        if request.follow and not request.number and not request.HasField("since"):
            return []
        if request.number and request.number < len(flows):
            count = int(request.number)
            flows = flows[:count] if request.first else flows[-count:]
        return flows

    def push(self, *responses: observer_pb2.GetFlowsResponse) -> None:
        """Send to every follow stream open now."""
        with self.lock:
            for inbox in self.inboxes:
                for response in responses:
                    inbox.put(response)

    def following(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until `count` follow streams are open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.inboxes) >= count:
                    return True
            time.sleep(0.01)
        return False

    def announce(self, change: peer_pb2.ChangeNotification) -> None:
        with self.lock:
            if change.type == peer_pb2.PEER_DELETED:
                self.peers = [p for p in self.peers if p[0] != change.name]
            else:
                self.peers = [p for p in self.peers if p[0] != change.name] + [(change.name, change.address)]
            for inbox in self.peer_inboxes:
                inbox.put(change)

    def start(self) -> FakeAgent:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        observer_pb2_grpc.add_ObserverServicer_to_server(_Observer(self), server)
        peer_pb2_grpc.add_PeerServicer_to_server(_Peer(self), server)
        service = health.HealthServicer()
        service.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(service, server)
        bound = f"unix://{self.address}" if isinstance(self.address, Path) else self.address
        if isinstance(self.address, str) and self.port:
            bound = f"{self.address.rsplit(':', 1)[0]}:{self.port}"  # a restart keeps its port
        if self.credentials is None:
            self.port = server.add_insecure_port(bound)
        else:
            self.port = server.add_secure_port(bound, self.credentials)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Die: every stream breaks, the socket closes."""
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        if isinstance(self.address, Path):
            self.address.unlink(missing_ok=True)

    def __enter__(self) -> FakeAgent:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
