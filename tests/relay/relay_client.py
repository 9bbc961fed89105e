"""A client of the relay for tests: it reads a GetFlows stream in the background, so a test can wait for what
it expects with a deadline and see everything that came before."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import grpc

from flowscope.api.observer import observer_pb2, observer_pb2_grpc


class Follower:
    """Reads a GetFlows stream on a thread; each response is kept with the time it arrived."""

    def __init__(self, channel: grpc.Channel, request: observer_pb2.GetFlowsRequest) -> None:
        self.call = observer_pb2_grpc.ObserverStub(channel).GetFlows(request)
        self.received: queue.Queue[tuple[float, observer_pb2.GetFlowsResponse]] = queue.Queue()
        self.seen: list[observer_pb2.GetFlowsResponse] = []
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.received.put((time.monotonic(), response))
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def until(
        self, wanted: Callable[[observer_pb2.GetFlowsResponse], bool], timeout: float = 5.0
    ) -> tuple[float, observer_pb2.GetFlowsResponse]:
        """Wait for the first response `wanted` accepts; every response read meanwhile goes to `seen`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not received within {timeout}s; got {[_short(r) for r in self.seen]}")
            try:
                at, response = self.received.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(response)
            if wanted(response):
                return at, response

    def cancel(self) -> None:
        self.call.cancel()


def _short(response: observer_pb2.GetFlowsResponse) -> str:
    kind = response.WhichOneof("response_types")
    if kind == "node_status":
        return f"status {response.node_status.state_change} {list(response.node_status.node_names)}"
    if kind == "flow":
        return f"flow {response.node_name} {response.flow.l4.TCP.destination_port}"
    return f"{kind} {response.node_name}"
