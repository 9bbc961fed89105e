"""GetFlows over the ring: Hubble's selection rules, and what a reader the ring overtook is told."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from records import TS, lab_registry, lost_record, record, tcp4

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common import names
from flowscope.observer import events
from flowscope.observer.filters import FilterContext
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.server.getflows import FlowReader, select

REGISTRY = lab_registry()
DECODER = FlowDecoder("node1", REGISTRY, b"instance")


def flows(count: int, first_ts: int = TS, sport: int = 40000) -> np.ndarray:
    """`count` TCP records, a microsecond apart, source ports counting up from `sport`."""
    batch = np.concatenate([record(tcp4(sport=sport + i)) for i in range(count)])
    batch["ts"] = first_ts + np.arange(count) * 1000
    return batch


def reader(ring: FlowRing, **request: object) -> tuple[FlowReader, list[int]]:
    overruns: list[int] = []
    ctx = FilterContext(node_name="node1", snapshot=REGISTRY.snapshot, instance=DECODER.instance)
    selection = select(observer_pb2.GetFlowsRequest(**request), ctx)  # type: ignore[arg-type]
    return FlowReader(ring, DECODER, selection, "node1", on_overrun=overruns.append), overruns


def ports(responses: Iterator[observer_pb2.GetFlowsResponse] | list[observer_pb2.GetFlowsResponse]) -> list[int]:
    return [r.flow.l4.TCP.source_port for r in responses if r.HasField("flow")]


def test_last_n_walks_back_from_the_newest_and_sends_oldest_first() -> None:
    ring = FlowRing(63, events.event_dtype())
    ring.write(flows(10))
    responses = list(reader(ring, number=3)[0].responses(lambda: True))
    assert ports(responses) == [40007, 40008, 40009]
    assert all(r.node_name == "node1" and r.time.ToNanoseconds() == r.flow.time.ToNanoseconds() for r in responses)


def test_first_n_reads_forward_from_the_oldest() -> None:
    ring = FlowRing(63, events.event_dtype())
    ring.write(flows(10))
    assert ports(reader(ring, first=True, number=2)[0].responses(lambda: True)) == [40000, 40001]


def test_since_and_until_bound_by_time() -> None:
    ring = FlowRing(63, events.event_dtype())
    ring.write(flows(10))
    since, until = observer_pb2.GetFlowsRequest().since, observer_pb2.GetFlowsRequest().until
    since.FromNanoseconds(TS + 2000)
    until.FromNanoseconds(TS + 4000)
    got = ports(reader(ring, since=since, until=until)[0].responses(lambda: True))
    assert got == [40002, 40003, 40004]


def test_lost_records_reach_the_client_and_do_not_count_toward_number() -> None:
    ring = FlowRing(63, events.event_dtype())
    ring.write(flows(2))
    ring.write(lost_record(source=names.LOST_KERNEL_BUFFER, count=5, cpu=1, ts=TS + 5000))
    ring.write(flows(2, first_ts=TS + 6000, sport=40100))
    responses = list(reader(ring, number=3)[0].responses(lambda: True))
    assert ports(responses) == [40001, 40100, 40101]
    [lost] = [r.lost_events for r in responses if r.HasField("lost_events")]
    assert (lost.source, lost.num_events_lost, lost.cpu.value) == (flow_pb2.PERF_EVENT_RING_BUFFER, 5, 1)


def test_a_reader_the_ring_overtook_gets_a_lost_event_with_the_count() -> None:
    ring = FlowRing(15, events.event_dtype())
    ring.write(flows(10))
    flow_reader, overruns = reader(ring, number=10, follow=True)
    got: list[observer_pb2.GetFlowsResponse] = []
    stream = flow_reader.responses(lambda: not got or got[-1].flow.l4.TCP.source_port != 41039)
    got.append(next(stream))  # the reader holds its first chunk (the 10 stored) while the writer laps it
    ring.write(flows(40, first_ts=TS + 100_000, sport=41000))  # 50 written, 15 kept
    got += stream
    [lost] = [r.lost_events for r in got if r.HasField("lost_events")]
    assert lost.source == flow_pb2.HUBBLE_RING_BUFFER
    assert lost.num_events_lost == 25  # seqs 10..34, overwritten before the reader came to them
    assert sum(overruns) == 25
    assert ports(got) == [*range(40000, 40010), *range(41025, 41040)]


def test_a_request_is_not_told_of_losses_after_its_end() -> None:
    ring = FlowRing(15, events.event_dtype())
    ring.write(flows(10))
    stream = reader(ring, first=True)[0].responses(lambda: True)
    first = next(stream)
    ring.write(flows(40, first_ts=TS + 100_000, sport=41000))  # all written after the request came
    rest = list(stream)
    assert [r for r in rest if r.HasField("lost_events")] == []
    assert ports([first, *rest]) == list(range(40000, 40010))


def test_first_n_ends_at_its_nth_flow_with_the_lost_events_before_it() -> None:
    ring = FlowRing(63, events.event_dtype())
    ring.write(flows(2))
    ring.write(lost_record(ts=TS + 5000))
    ring.write(flows(2, first_ts=TS + 6000, sport=40100))
    ring.write(lost_record(ts=TS + 9000))
    responses = list(reader(ring, first=True, number=3)[0].responses(lambda: True))
    assert [r.WhichOneof("response_types") for r in responses] == ["flow", "flow", "lost_events", "flow"]
    assert ports(responses) == [40000, 40001, 40100]
