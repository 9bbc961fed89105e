"""A node for reliability tests and benchmarks: a real agent server (in this process, over its own unix socket)
on a real flow ring that a writer thread fills with real records, and clients that read in the background."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np
from records import TS, lab_registry, record, tcp4

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.observer import events
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.server.serve import ObserverServer
from flowscope.observer.server.state import NodeState
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayConfig, RelayServer

MARK_PORT = 9999  # the source port of the flow a test writes to see that every client got it


def rss_bytes() -> int:
    """This process's resident memory (the agent and relay here run in it)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class Node:
    """An agent server on a ring; `write` adds flows as the ingest loop would."""

    def __init__(self, name: str = "node1", capacity: int = 65535, stall_s: float = 30.0) -> None:
        self.name = name
        self._dir = Path(tempfile.mkdtemp(prefix="fs-rel-"))
        self.socket = self._dir / f"{name}.sock"
        registry = lab_registry(name)
        self.ring = FlowRing(capacity, events.event_dtype())
        state = NodeState(name, "default", "", self.ring, FlowDecoder(name, registry, b"instance"), registry)
        self.server = ObserverServer(state, self.socket, None, stall_s=stall_s)
        self._template = np.concatenate([record(tcp4(sport=40000 + i)) for i in range(256)])
        self._ts = TS

    @property
    def target(self) -> str:
        return f"unix://{self.socket}"

    def write(self, count: int = 256) -> None:
        """`count` (at most 256) TCP flows, a microsecond apart."""
        self._write(self._template[:count].copy())

    def mark(self) -> None:
        """One flow from MARK_PORT: whoever gets it got everything written before."""
        self._write(record(tcp4(sport=MARK_PORT)))

    def _write(self, batch: np.ndarray) -> None:
        count = len(batch)
        batch["ts"] = self._ts + np.arange(count) * 1000
        self._ts += count * 1000
        self.ring.write(batch)

    def feed_until(self, condition: Callable[[], bool], per_second: int = 3200, timeout: float = 60.0) -> None:
        """Write flows at a steady rate (as traffic would come) until `condition` holds; fail past `timeout`."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            self.write(64)
            time.sleep(64 / per_second)  # the pace of the traffic, not a wait for a condition

    def relay(self, **config: object) -> RelayServer:
        relay_config = RelayConfig(listen_address="localhost:0", name="relay", peers=[Peer(self.name, self.target)])
        for key, value in config.items():
            setattr(relay_config, key, value)
        return RelayServer(relay_config)

    def __enter__(self) -> Node:
        self.server.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.stop(grace=0.1)
        shutil.rmtree(self._dir, ignore_errors=True)


class Reader:
    """A follow client that reads on a thread and counts what it got; `stuck` ones never read."""

    def __init__(self, channel: grpc.Channel, stuck: bool = False, **request: object) -> None:
        self.call = observer_pb2_grpc.ObserverStub(channel).GetFlows(
            observer_pb2.GetFlowsRequest(follow=True, **request)  # type: ignore[arg-type]
        )
        self.flows = 0
        self.lost = 0
        self.marked = threading.Event()
        self.ended = threading.Event()
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self.read, daemon=True)
        if not stuck:
            self.thread.start()

    def read(self) -> None:
        try:
            for response in self.call:
                if response.HasField("lost_events"):
                    self.lost += response.lost_events.num_events_lost
                elif response.HasField("flow"):
                    self.flows += 1
                    if response.flow.l4.TCP.source_port == MARK_PORT:
                        self.marked.set()
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def close(self) -> None:
        self.call.cancel()
