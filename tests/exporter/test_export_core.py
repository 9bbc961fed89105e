"""The export pipeline over real records and a real flow ring: what it selects, the uuids it gives, its counts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from records import TS, lab_registry, lost_record, record, tcp4, udp4
from waiting import wait_for

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common import names
from flowscope.observer.counts import LostCounts
from flowscope.observer.exporter.core import ExportFailed, ExportSpec, ExportSubscriber, Selection
from flowscope.observer.filters import FilterContext
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.server.getflows import FlowReader, select

REGISTRY = lab_registry()


class ListSink:
    """Keeps what it is given; fails (and stops) when told to."""

    def __init__(self, messages: bool = False) -> None:
        self.messages = messages
        self.batches: list[list[Any]] = []
        self.fail: ExportFailed | None = None
        self.gate = threading.Event()
        self.gate.set()

    def export(self, responses: Sequence[Any]) -> None:
        self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(responses))

    def close(self) -> None:
        pass

    def describe(self, status: observer_pb2.ExporterStatus) -> None:
        status.kind, status.target = "list", "memory"

    def responses(self) -> list[observer_pb2.GetFlowsResponse]:
        return [
            r if isinstance(r, observer_pb2.GetFlowsResponse) else observer_pb2.GetFlowsResponse.FromString(r)
            for batch in self.batches
            for r in batch
        ]


def pipeline(spec: ExportSpec, sink: ListSink, depth: int = 8) -> tuple[FlowRing, ExportSubscriber, LostCounts]:
    decoder = FlowDecoder("node1", REGISTRY, b"instance")
    ring = FlowRing(1023, record().dtype)
    lost = LostCounts()
    subscriber = ExportSubscriber("test", Selection(spec, decoder), sink, lambda: ring.written, lost, depth)
    return ring, subscriber, lost


def ingest(ring: FlowRing, subscriber: ExportSubscriber, batch: np.ndarray) -> None:
    """What the ingest loop does with a batch: the ring first, then the subscribers."""
    batch.flags.writeable = False
    ring.write(batch)
    subscriber(batch)


def mixed() -> np.ndarray:
    tcp = [record(tcp4(sport=40000 + i)) for i in range(3)]
    dns = [record(udp4(sport=50000 + i)) for i in range(2)]
    batch = np.concatenate([tcp[0], dns[0], tcp[1], dns[1], tcp[2]])
    batch["ts"] = TS + np.arange(len(batch)) * 1000
    return batch


def test_exported_flows_are_what_getflows_sends_for_the_same_records() -> None:
    for messages in (False, True):
        sink = ListSink(messages)
        ring, subscriber, _ = pipeline(ExportSpec(), sink)
        ingest(ring, subscriber, mixed())
        ingest(ring, subscriber, mixed())
        subscriber.close()
        exported = sink.responses()
        ctx = FilterContext(node_name="node1", snapshot=REGISTRY.snapshot, instance=b"instance")
        reader = FlowReader(ring, subscriber._selection._decoder, select(observer_pb2.GetFlowsRequest(), ctx), "node1")
        served = list(reader.responses(lambda: True))
        assert exported == served  # same flows, same uuids (from the ring's sequence numbers), same times
        assert subscriber.counts.exported == 10 and subscriber.counts.filtered == 0


def test_allowlist_is_ored_and_denylist_excludes_with_the_field_mask_applied() -> None:
    allow = (flow_pb2.FlowFilter(protocol=["udp"]), flow_pb2.FlowFilter(source_port=["40001", "40002"]))
    deny = (flow_pb2.FlowFilter(source_port=["40002"]),)
    sink = ListSink()
    ring, subscriber, _ = pipeline(ExportSpec(allow, deny, ("time", "l4")), sink)
    ingest(ring, subscriber, mixed())
    subscriber.close()
    flows = [r.flow for r in sink.responses()]
    assert [f.l4.UDP.source_port or f.l4.TCP.source_port for f in flows] == [50000, 40001, 50001]
    assert all(f.HasField("time") and not f.HasField("source") and not f.uuid for f in flows)
    assert all(r.node_name == "node1" and r.time == r.flow.time for r in sink.responses())
    assert (subscriber.counts.exported, subscriber.counts.filtered) == (3, 2)


def test_lost_events_are_exported_and_so_are_the_queues_own_drops() -> None:
    sink = ListSink()
    ring, subscriber, lost = pipeline(ExportSpec(allow=(flow_pb2.FlowFilter(protocol=["icmp"]),)), sink, depth=1)
    sink.gate.clear()  # the sink blocks: the queue fills and the next batch is dropped
    batch = np.concatenate([record(tcp4()), lost_record(names.LOST_KERNEL_BUFFER, count=5)])
    ingest(ring, subscriber, batch)  # taken by the exporter thread, which waits at the gate
    wait_for(lambda: subscriber._queue._queue.empty())
    ingest(ring, subscriber, mixed())  # queued
    ingest(ring, subscriber, mixed())  # dropped
    assert subscriber.counts.dropped == 5 and lost.agent_queue == 5
    sink.gate.set()
    subscriber.close()
    events = [r.lost_events for r in sink.responses()]
    assert [(e.source, e.num_events_lost) for e in events] == [
        (flow_pb2.PERF_EVENT_RING_BUFFER, 5),
        (flow_pb2.OBSERVER_EVENTS_QUEUE, 5),
    ]


def test_lost_records_its_queue_drops_are_reported_under_their_source_and_are_no_dropped_flows() -> None:
    sink = ListSink()
    ring, subscriber, lost = pipeline(ExportSpec(), sink, depth=1)
    sink.gate.clear()
    ingest(ring, subscriber, mixed())  # taken by the exporter thread, which waits at the gate
    wait_for(lambda: subscriber._queue._queue.empty())
    ingest(ring, subscriber, mixed())  # queued
    ingest(ring, subscriber, lost_record(names.LOST_KERNEL_BUFFER, count=7, cpu=1))  # dropped
    assert subscriber.counts.dropped == 0 and lost.agent_queue == 0  # the kernel's loss, counted there already
    sink.gate.set()
    subscriber.close()
    events = [
        (r.lost_events.source, r.lost_events.num_events_lost) for r in sink.responses() if r.HasField("lost_events")
    ]
    assert events == [(flow_pb2.PERF_EVENT_RING_BUFFER, 7)]
    status = subscriber.status()
    assert (status.name, status.kind, status.target) == ("test", "list", "memory")
    assert (status.flows_exported, status.flows_dropped, status.lost_events) == (10, 0, 7)


def test_a_sink_that_stops_stops_the_exporter_and_everything_after_counts_as_failed() -> None:
    sink = ListSink()
    sink.fail = ExportFailed("disk full", stop=True)
    ring, subscriber, _ = pipeline(ExportSpec(), sink)
    ingest(ring, subscriber, mixed())
    wait_for(lambda: subscriber.stopped)
    sink.fail = None
    ingest(ring, subscriber, mixed())
    subscriber.close()
    assert sink.batches == [] and subscriber.counts.failed == 10 and subscriber.counts.exported == 0


def test_nothing_after_the_end_time_is_exported_but_lost_events_are() -> None:
    sink = ListSink()
    ring, subscriber, _ = pipeline(ExportSpec(end_ns=TS + 1500), sink)
    batch = np.concatenate([mixed(), lost_record(ts=TS + 9000)])
    ingest(ring, subscriber, batch)
    subscriber.close()
    responses = sink.responses()
    assert [r.WhichOneof("response_types") for r in responses] == ["flow", "flow", "lost_events"]
    assert (subscriber.counts.exported, subscriber.counts.filtered) == (2, 3)
