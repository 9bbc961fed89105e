"""The ingest loop's subscribers: every batch to each in order, the ring first; a blocked queued subscriber
never slows ingest, and what it drops is counted and reported as events lost in an agent queue."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from waiting import wait_for

from flowscope.api.observer import observer_pb2
from flowscope.common.names import EVENT_DEBUG, EVENT_LOST, LOST_AGENT_QUEUE, LOST_KERNEL_BUFFER
from flowscope.observer.counts import IngestCounts
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.events import event_dtype
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.ingest import FULL_PASS, Ingest
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.server.service import ObserverService
from flowscope.observer.server.state import NodeState
from flowscope.observer.subscribers import QueuedSubscriber, Subscriber

DTYPE = event_dtype()


class ListSource:
    """Hands out the batches it was given, one a read, then waits like an idle ring buffer."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches = batches
        self.drained = threading.Event()

    def read_batch(self, timeout: float) -> np.ndarray:
        if self._batches:
            return self._batches.pop(0)
        self.drained.set()
        time.sleep(timeout)
        return np.empty(0, dtype=DTYPE)


def batches(count: int, size: int) -> list[np.ndarray]:
    """`count` batches whose records' ts count up from 1 across all of them."""
    out = []
    for i in range(count):
        batch = np.zeros(size, dtype=DTYPE)
        batch["ts"] = np.arange(1 + i * size, 1 + (i + 1) * size)
        out.append(batch)
    return out


def run_until_drained(ingest: Ingest, source: ListSource) -> None:
    ingest.start()
    assert source.drained.wait(10)
    ingest.stop()
    ingest.join(timeout=2)


def test_every_batch_goes_to_each_subscriber_in_order_the_ring_first() -> None:
    ring = FlowRing(1023, DTYPE)
    calls: list[tuple[str, int, int]] = []  # (subscriber, first ts, what the ring held when it was called)

    def subscriber(name: str) -> Subscriber:
        def receive(batch: np.ndarray) -> None:
            calls.append((name, int(batch["ts"][0]), ring.written))
            with pytest.raises(ValueError, match="read-only"):
                batch["ts"] += 1  # shared by every subscriber: nobody may change it

        return receive

    source = ListSource(batches(3, 10))
    ingest = Ingest(source, ring, IngestCounts(), list, DTYPE, subscribers=[subscriber("a"), subscriber("b")])
    run_until_drained(ingest, source)
    stored = ring.read(0, 30).records["ts"]
    assert stored[0] > 1_600_000_000 * 10**9  # stamped with wall-clock time before anyone saw it
    firsts = [int(stored[0]), int(stored[10]), int(stored[20])]
    assert calls == [(name, ts, held) for ts, held in zip(firsts, (10, 20, 30), strict=True) for name in "ab"]


def test_a_blocked_queued_subscriber_does_not_slow_ingest_and_its_drops_are_lost_events() -> None:
    ring = FlowRing(1023, DTYPE)
    counts = IngestCounts()
    release, delivered = threading.Event(), list[np.ndarray]()

    def stuck(batch: np.ndarray) -> None:
        release.wait()
        delivered.append(batch)

    queued = QueuedSubscriber(stuck, counts.lost, depth=4, name="stuck")
    source = ListSource(batches(20, FULL_PASS))  # full passes: ingest goes again at once
    ingest = Ingest(source, ring, counts, list, DTYPE, subscribers=[queued])
    began = time.monotonic()
    ingest.start()
    try:
        assert source.drained.wait(5)
        assert ring.written == 20 * FULL_PASS  # all of it stored while the subscriber is still stuck
        assert time.monotonic() - began < 3
        assert 15 <= queued.dropped_batches <= 16  # one in its hands, four queued
        assert queued.dropped_events == queued.dropped_batches * FULL_PASS
        assert counts.lost.agent_queue == queued.dropped_events

        deadline = time.monotonic() + 3  # the next tick reports them to the ring's readers
        while EVENT_LOST not in ring.read(20 * FULL_PASS, ring.written).records["type"]:
            assert time.monotonic() < deadline, "no LostEvent record for the agent queue"
            time.sleep(0.05)
    finally:
        ingest.stop()
        ingest.join(timeout=2)
        release.set()
        queued.close()
    lost = ring.read(20 * FULL_PASS, ring.written).records
    assert list(lost["subtype"]) == [LOST_AGENT_QUEUE]
    assert int(lost["bytes"][0]) == queued.dropped_events

    assert len(delivered) + queued.dropped_batches == 20
    firsts = [int(batch["ts"][0]) for batch in delivered]
    assert firsts == sorted(firsts)  # what got through, in order

    registry = EndpointRegistry("node1")
    state = NodeState("node1", "c", "", ring, FlowDecoder("node1", registry, b"i"), registry, counts=counts)
    status = ObserverService(state).ServerStatus(observer_pb2.ServerStatusRequest(), None)
    assert status.flowscope_lost.agent_queue == queued.dropped_events
    assert status.seen_flows == 20 * FULL_PASS


class Exporter:
    """A subscriber that asks for lost-event records, as the exporters do."""

    sees_lost_events = True

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> None:
        self.batches.append(batch)


def test_kernel_buffer_losses_reach_the_ring_and_the_exporters_but_no_counting_subscriber() -> None:
    ring = FlowRing(1023, DTYPE)
    counts = IngestCounts()
    kernel = [0, 0]
    exporter, counter = Exporter(), list[np.ndarray]()
    source = ListSource(batches(2, 10))
    ingest = Ingest(source, ring, counts, lambda: list(kernel), DTYPE, subscribers=[counter.append, exporter])
    ingest.start()
    try:
        assert source.drained.wait(10)
        kernel[:] = [3, 4]  # both CPUs' buffers overflowed; reported at the next tick (once a second)
        wait_for(lambda: counts.lost.kernel_buffer == 7, timeout=5)
    finally:
        ingest.stop()
        ingest.join(timeout=2)
    lost = ring.read(20, ring.written).records
    assert list(zip(lost["subtype"], lost["cpu"], lost["bytes"], strict=True)) == [
        (LOST_KERNEL_BUFFER, 0, 3),
        (LOST_KERNEL_BUFFER, 1, 4),
    ]
    assert len(exporter.batches) == 3 and exporter.batches[-1].tobytes() == lost.tobytes()  # one batch, as stored
    assert [len(batch) for batch in counter] == [10, 10]
    assert EVENT_LOST not in np.concatenate(counter)["type"]


def test_a_pass_stores_its_sources_events_in_time_order() -> None:
    """A SYN's NO_SOCKET drop (the kernel drop program's ring buffer, read second) before the RST it caused."""
    ring = FlowRing(1023, DTYPE)
    datapath, kernel_drops = np.zeros(2, dtype=DTYPE), np.zeros(1, dtype=DTYPE)
    datapath["ts"], kernel_drops["ts"] = [200, 300], [100]
    first = ListSource([datapath])
    ingest = Ingest([first, ListSource([kernel_drops])], ring, IngestCounts(), list, DTYPE)
    run_until_drained(ingest, first)
    stored = ring.read(0, 3).records["ts"]
    assert list(stored - stored[0]) == [0, 100, 200]


def test_debug_records_go_to_debug_and_never_to_the_ring_or_subscribers() -> None:
    ring = FlowRing(1023, DTYPE)
    mixed, only_debug = batches(2, 6)
    mixed["type"][[1, 4]] = EVENT_DEBUG
    only_debug["type"] = EVENT_DEBUG
    seen: list[int] = []
    debug: list[int] = []
    source = ListSource([mixed, only_debug])
    ingest = Ingest(
        source,
        ring,
        IngestCounts(),
        list,
        DTYPE,
        subscribers=[lambda b: seen.extend(int(t) for t in b["type"])],
        debug=lambda b: debug.extend(int(t) for t in b["type"]),
    )
    run_until_drained(ingest, source)
    assert ring.written == 4 and seen == [0, 0, 0, 0]
    assert debug == [EVENT_DEBUG] * 8
