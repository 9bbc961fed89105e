"""The ingest loop: kernel ring buffers → flow ring and other subscribers, one batch at a time, on one thread.

There are several sources (the tc datapath's ring buffer, the kernel drop program's), all read by this one
thread, because the flow ring has one writer. Each pass waits on the first source only (up to READ_TIMEOUT_S)
and then takes whatever the others have without waiting: the kernel drop program never wakes its reader, so
its events wait at most one pass. Each batch goes to the subscribers in order, the flow ring first
(observer/subscribers.py says what a subscriber may do, and how one that may block is queued).

Per batch it does three vectorised things and nothing per event: stamp wall-clock time, hand it to the
subscribers, count. That work costs about the same for ten events as for a thousand, so the loop lets events
gather: after a pass that found less than FULL_PASS events it rests until READ_INTERVAL_S after the pass began
(a flow reaches readers at most a few tens of ms after its packet). Read on every wakeup instead, the agent
spent half a CPU at 170k events/s. A busy pass (the kernel buffer filling) goes again at once.

Once a second it turns the kernel's per-CPU "could not reserve" counters, and the events queued subscribers
dropped, into LostEvent records in the ring (so every reader sees them in order), adds the drops the kernel
drop program rate-limited to the `rate_limited` count, refreshes the clock offset and samples the flow rate.
LostEvent records tell readers what they will never see, so they go where there are readers of flows: the
ring, and the subscribers that say `sees_lost_events` (the exporters: a flow log marks its holes as Hubble's
does). The kernel buffer's records go to both, as one batch a second at most (one record per CPU that lost
any), so exporters pay nothing while nothing is lost. The agent queue's go to the ring alone: each exporter
reports what its own queue dropped, and another exporter's drops are no hole in its output. Counting
subscribers (metrics) never see lost records: they count flows, and the losses are counted where they happen.

Debug records (EVENT_DEBUG: the datapath's debug events, observer/debug_events.py) share the kernel's ring
buffer with flows but are no flows: each batch hands them to `debug` and the rest to the subscribers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from flowscope.common.names import EVENT_DEBUG, EVENT_LOST, LOST_AGENT_QUEUE, LOST_KERNEL_BUFFER
from flowscope.observer.counts import IngestCounts
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.subscribers import Subscriber
from flowscope.observer.wallclock import WallClock

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.02
READ_INTERVAL_S = 0.01
FULL_PASS = 4096
TICK_S = 1.0
NO_CPU = 0xFF


class BatchSource(Protocol):
    def read_batch(self, timeout: float) -> np.ndarray: ...


def lost_record(dtype: np.dtype, source: int, count: int, cpu: int = NO_CPU) -> np.ndarray:
    """A one-record batch standing for `count` events lost at `source` (flow.LostEventSource)."""
    record = np.zeros(1, dtype=dtype)
    record["ts"] = time.time_ns()
    record["type"] = EVENT_LOST
    record["subtype"] = source
    record["cpu"] = cpu
    record["bytes"] = count
    return record


class Ingest(threading.Thread):
    def __init__(
        self,
        source: BatchSource | Sequence[BatchSource],
        ring: FlowRing,
        counts: IngestCounts,
        kernel_lost: Callable[[], list[int]],
        dtype: np.dtype,
        rate_limited: Callable[[], list[int]] | None = None,
        subscribers: Sequence[Subscriber] = (),
        debug: Callable[[np.ndarray], None] | None = None,
        annotate: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        """`kernel_lost` and `rate_limited` give cumulative per-CPU counts, summed over every source. Batches go
        to the ring, then to `subscribers` in order; their debug records to `debug` (dropped without one).
        `annotate` may write each batch's agent-owned columns (the name-set ids) before anyone sees it."""
        super().__init__(name="ingest", daemon=True)
        self._sources = list(source) if isinstance(source, Sequence) else [source]
        if not self._sources:
            raise ValueError("ingest needs at least one source")
        self._ring = ring
        self._subscribers = (ring.write, *subscribers)
        self._lost_subscribers = (ring.write, *(s for s in subscribers if getattr(s, "sees_lost_events", False)))
        self._counts = counts
        self._debug = debug
        self._annotate = annotate
        self._kernel_lost = kernel_lost
        self._dtype = dtype
        self._clock = WallClock()
        self._lost_seen: list[int] = []
        self._rate_limited = rate_limited
        self._rate_limited_seen = 0
        self._agent_queue_seen = 0
        self._stopping = threading.Event()
        self.first_event_at: float | None = None  # monotonic time of the first event (start-up benchmark)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            began = time.monotonic()
            batches = [source.read_batch(READ_TIMEOUT_S if i == 0 else 0) for i, source in enumerate(self._sources)]
            read = self._store(in_time_order(batches))
            now = time.monotonic()
            if now >= next_tick:
                self._tick()
                next_tick = now + TICK_S
            if read < FULL_PASS:
                self._stopping.wait(max(0.0, began + READ_INTERVAL_S - time.monotonic()))
        self._store(in_time_order([source.read_batch(0) for source in self._sources]))  # what arrived while stopping

    def _store(self, batch: np.ndarray) -> int:
        """Stamp the batch with wall-clock time and hand it to every subscriber; how many events it held."""
        if not len(batch):
            return 0
        if self.first_event_at is None:
            self.first_event_at = time.monotonic()
        batch["ts"] += np.uint64(self._clock.offset_ns)
        debug = batch["type"] == EVENT_DEBUG
        if debug.any():
            if self._debug is not None:
                self._debug(batch[debug])
            batch = batch[~debug]
            if not len(batch):
                return 0
        if self._annotate is not None:
            self._annotate(batch)
        batch.flags.writeable = False  # one array for every subscriber: none may change it under the others
        for subscriber in self._subscribers:
            subscriber(batch)
        self._counts.seen_flows += len(batch)
        return len(batch)

    def _tick(self) -> None:
        self._clock.refresh()
        self._report_kernel_lost()
        self._report_agent_queue()
        self._report_rate_limited()
        self._counts.rate.sample(self._counts.seen_flows)

    def _report_kernel_lost(self) -> None:
        counts = self._kernel_lost()
        if not self._lost_seen:
            self._lost_seen = [0] * len(counts)
        records = []
        for cpu, (now, before) in enumerate(zip(counts, self._lost_seen, strict=True)):
            if now > before:
                log.warning("kernel buffer full: %d events lost on CPU %d", now - before, cpu)
                records.append(lost_record(self._dtype, LOST_KERNEL_BUFFER, now - before, cpu))
                self._counts.lost.add("kernel_buffer", now - before)
        self._lost_seen = counts
        if records:
            batch = np.concatenate(records)
            batch.flags.writeable = False
            for subscriber in self._lost_subscribers:
                subscriber(batch)

    def _report_agent_queue(self) -> None:
        """Events queued subscribers dropped (they add them to `agent_queue` as they drop them)."""
        dropped = self._counts.lost.agent_queue
        if dropped > self._agent_queue_seen:
            log.warning("agent queue full: %d events lost", dropped - self._agent_queue_seen)
            self._ring.write(lost_record(self._dtype, LOST_AGENT_QUEUE, dropped - self._agent_queue_seen))
            self._agent_queue_seen = dropped

    def _report_rate_limited(self) -> None:
        """Drops the kernel reported only as a count (in a later report's `packets`), for ServerStatus."""
        if self._rate_limited is None:
            return
        total = sum(self._rate_limited())
        if total > self._rate_limited_seen:
            self._counts.lost.add("rate_limited", total - self._rate_limited_seen)
            self._rate_limited_seen = total


def in_time_order(batches: list[np.ndarray]) -> np.ndarray:
    """One pass's batches as one, in time order: a kernel drop (its own ring buffer, read second) must come
    before what it caused (a SYN's NO_SOCKET drop before the RST the datapath saw leave). Most passes have
    events from one source only, and pay nothing for this."""
    full = [batch for batch in batches if len(batch)]
    if len(full) <= 1:
        return full[0] if full else batches[0]
    merged = np.concatenate(full)
    return merged[np.argsort(merged["ts"], kind="stable")]
