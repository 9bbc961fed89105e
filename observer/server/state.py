"""What the gRPC services read from the running agent, gathered in one place.

The services never reach into the agent's threads; the agent fills this object (ring, decoder, registry,
counters) and the services read it. Counters are plain ints updated under one lock: they change at most once
per batch, not per packet.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder

VERSION = "flowscope 0.1.0"
RATE_WINDOW_S = 60.0


@dataclass
class LostCounts:
    """Events lost so far, by where they were lost (reported in ServerStatus and as LostEvents)."""

    kernel_buffer: int = 0
    agent_queue: int = 0
    ring_overrun: int = 0
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, source: str, count: int) -> None:
        with self._lock:
            setattr(self, source, getattr(self, source) + count)


class FlowRate:
    """Flows per second over the last minute, from (time, seen) samples the ingest loop records."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def sample(self, seen: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._samples.append((now, seen))
            while len(self._samples) > 2 and now - self._samples[1][0] > RATE_WINDOW_S:
                self._samples.popleft()

    def rate(self) -> float:
        with self._lock:
            if len(self._samples) < 2:
                return 0.0
            (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass
class NodeState:
    node_name: str
    cluster_name: str
    address: str
    ring: FlowRing
    decoder: FlowDecoder
    registry: EndpointRegistry
    started_ns: int = field(default_factory=time.time_ns)
    seen_flows: int = 0
    lost: LostCounts = field(default_factory=LostCounts)
    rate: FlowRate = field(default_factory=FlowRate)
    stopping: threading.Event = field(default_factory=threading.Event)
    tls_enabled: bool = False

    @property
    def uptime_ns(self) -> int:
        return time.time_ns() - self.started_ns
