"""Who sees the batches the ingest loop reads: subscribers, and the queue that keeps a slow one from slowing it.

A subscriber is any callable taking one batch of event records (a numpy structured array, wall-clock stamped
and read-only: every subscriber is handed the same array). The ingest loop calls its subscribers in order on
its own thread, so a subscriber there must be quick and must not block: the flow ring, metrics counters.

One that may block (an exporter writing to a file or a socket) goes behind a QueuedSubscriber: a bounded queue
and a thread of its own. When the queue is full, the batch is dropped rather than waited for, and its events
are counted as lost in an agent queue: OBSERVER_EVENTS_QUEUE, what Hubble reports when its own event queue
overflows (docs/reference/hubble-behaviour.md). The ingest loop reports them like every other loss.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import numpy as np

from flowscope.common.names import EVENT_LOST
from flowscope.observer.counts import LostCounts

log = logging.getLogger(__name__)

Subscriber = Callable[[np.ndarray], None]

QUEUE_DEPTH = 64  # batches: at the ingest loop's 100 passes a second, over half a second of a stalled subscriber


class QueuedSubscriber:
    """Hands batches to `subscriber` on a thread of its own, through a queue of `depth` batches; never blocks
    the caller. Counts what it had to drop, and adds it to `lost.agent_queue` (the events: a LostEvent record in
    a dropped batch stands for events lost elsewhere, counted there)."""

    def __init__(
        self, subscriber: Subscriber, lost: LostCounts, depth: int = QUEUE_DEPTH, name: str = "subscriber"
    ) -> None:
        self._subscriber = subscriber
        self._lost = lost
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(depth)
        self.dropped_batches = 0
        self.dropped_events = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __call__(self, batch: np.ndarray) -> None:
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            events = len(batch) - int(np.count_nonzero(batch["type"] == EVENT_LOST))  # a LostEvent record is none
            self.dropped_batches += 1
            self.dropped_events += events
            if events:
                self._lost.add("agent_queue", events)

    def close(self, timeout: float = 2.0) -> None:
        """Let the subscriber finish what is queued, then end the thread; a subscriber stuck for longer than
        `timeout` is left behind (its thread is a daemon)."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("%s: still blocked after %.1fs; leaving it", self._thread.name, timeout)
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                self._subscriber(batch)
            except Exception:  # one bad batch must not end every later one's delivery
                log.exception("%s failed on a batch of %d events", self._thread.name, len(batch))
