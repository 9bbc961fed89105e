"""What the ingest loop counts for the server to report: flows seen, their rate, and events lost by where.

The ingest loop (and the queues behind it) write these; the gRPC services only read them. They live here, not
in the server package, because ingest sits below the server and must not import it. Counters are plain ints
updated under one lock: they change at most once per batch, not per packet.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from flowscope.common.counters import Counters

RATE_WINDOW_S = 60.0


@dataclass
class LostCounts(Counters):
    """Events lost so far, by where they were lost (reported in ServerStatus and as LostEvents)."""

    kernel_buffer: int = 0
    agent_queue: int = 0
    ring_overrun: int = 0
    rate_limited: int = 0

    def add(self, source: str, count: int) -> None:
        self._add(**{source: count})


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
class IngestCounts:
    """Everything the ingest loop counts, in one object the agent hands to both ingest and the server."""

    seen_flows: int = 0
    lost: LostCounts = field(default_factory=LostCounts)
    rate: FlowRate = field(default_factory=FlowRate)
