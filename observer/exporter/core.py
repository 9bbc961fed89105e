"""The export pipeline every exporter shares: select, decode, mask, hand to a sink; never on the ingest thread.

Hubble's exporter is a hook on each decoded event: it filters (allowlist OR'ed, denylist excludes), applies a
field mask and writes. flowscope ingests records in batches, so the same steps work on a batch: the allow/deny
FlowFilters are the GetFlows filters, vectorised on the record columns (observer/filters); only the selected
records are decoded (FlowDecoder, as GetFlows does), already pruned by the field mask; each becomes a
GetFlowsResponse (flow, node_name, time). Its wire bytes are also an ExportEvent's (the fields a flow or lost
event response uses have the same numbers in both), so a sink that writes bytes never builds a message.

On the ingest thread an ExportSubscriber only notes where the batch sits in the flow ring and queues it
(subscribers.QueuedSubscriber: a full queue drops the batch, counted as an agent_queue loss like every other
queued subscriber's). The sequence number matters: a flow's uuid derives from it, so an exported flow has the
uuid GetFlows gives the same flow. Everything else runs on the exporter's own thread.

LostEvent records in a batch are exported as lost_events responses, as Hubble's exporter writes them: the ingest
loop hands an exporter the kernel buffer's (PERF_EVENT_RING_BUFFER) as it writes them to the flow ring. So is
what this exporter's own queue dropped (OBSERVER_EVENTS_QUEUE), before the next batch it does export; a lost
event record its queue dropped is reported then under its own source. A flow log says where it has holes.

What an exporter did is counted (ExportCounts, and its sink's own figures) and read as an ExporterStatus
message: by ServerStatus (`flowscope status`) and by the agent's Prometheus metrics, from the same snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common.counters import Counters
from flowscope.common.names import EVENT_LOST
from flowscope.observer.counts import LostCounts
from flowscope.observer.filters import Batch, FilterContext, Predicate, compile_filters
from flowscope.observer.parser import FieldTree, FlowDecoder, compile_field_mask
from flowscope.observer.parser.fieldmask import keeps_whole
from flowscope.observer.parser.wire import ResponseWriter
from flowscope.observer.subscribers import QUEUE_DEPTH, QueuedSubscriber

log = logging.getLogger(__name__)

Response = bytes | observer_pb2.GetFlowsResponse


class ExportFailed(Exception):
    """A sink could not take a batch. `stop`: it never will (a full disk, a file it may not write): the
    exporter stops exporting and counts what it no longer exports as failed; otherwise only this batch failed."""

    def __init__(self, message: str, *, stop: bool = False) -> None:
        super().__init__(message)
        self.stop = stop


class Exporter(Protocol):
    """Where exported responses go. `messages`: the sink wants GetFlowsResponse messages; otherwise their wire
    bytes (an ExportEvent's too). `export` runs on the exporter's thread, may block, raises ExportFailed.
    `describe` fills in the sink's kind, where it writes and its own counts (any thread)."""

    messages: bool

    def export(self, responses: Sequence[Any]) -> None: ...

    def describe(self, status: observer_pb2.ExporterStatus) -> None: ...

    def close(self) -> None: ...


@dataclass
class ExportCounts(Counters):
    """Per exporter: flows written, left out by its filters, that its sink could not take, dropped by its queue;
    events its lost-event responses reported."""

    exported: int = 0
    filtered: int = 0
    failed: int = 0
    dropped: int = 0
    lost_events: int = 0

    def add(self, **counts: int) -> None:
        self._add(**counts)


@dataclass(frozen=True)
class ExportSpec:
    """What one exporter selects: Hubble's include (allow) and exclude (deny) FlowFilters and a field mask."""

    allow: tuple[flow_pb2.FlowFilter, ...] = ()
    deny: tuple[flow_pb2.FlowFilter, ...] = ()
    field_mask: tuple[str, ...] = ()
    end_ns: int | None = None  # stop exporting flows after this time (Hubble's `end`); None: never

    def field_tree(self) -> FieldTree | None:
        """The compiled field mask; ValueError naming a field Flow does not have."""
        return compile_field_mask(self.field_mask) if self.field_mask else None


def filter_context(decoder: FlowDecoder, cluster_name: Callable[[], str] = lambda: "") -> FilterContext:
    """What an exporter's filters resolve names against: the decoder's registry, followed as it changes."""
    registry = decoder.registry
    return FilterContext(
        node_name=decoder.node_name,
        cluster_name=cluster_name(),
        snapshot=registry.snapshot,
        instance=decoder.instance,
        decoder=decoder,
        snapshots=lambda: registry.snapshot,
        names=decoder.name_sets,
        l7=decoder.l7,
    )


class Selection:
    """An ExportSpec compiled: which records of a batch are exported, and their responses."""

    def __init__(self, spec: ExportSpec, decoder: FlowDecoder, ctx: FilterContext | None = None) -> None:
        """Raises FilterError for a filter that cannot be applied, ValueError for a bad field mask."""
        self._decoder = decoder
        self._fields = spec.field_tree()
        self._whole_time = keeps_whole(self._fields, "time")
        self._predicate: Predicate = compile_filters(spec.allow, spec.deny, ctx or filter_context(decoder))
        self._end_ns = spec.end_ns
        self._writer = ResponseWriter(decoder.node_name)

    def rows(self, records: np.ndarray, first_seq: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows to export (in order) and which of them are lost events; lost events are always exported."""
        seqs = np.arange(first_seq, first_seq + len(records), dtype=np.uint64)
        lost = records["type"] == EVENT_LOST
        wanted = self._predicate(Batch(records, seqs)) | lost
        if self._end_ns is not None:
            wanted &= (records["ts"] <= self._end_ns) | lost
        rows = np.flatnonzero(wanted)
        return rows, lost[rows]

    def wire(self, records: np.ndarray, rows: np.ndarray, lost: np.ndarray, first_seq: int) -> list[bytes]:
        """The responses of `rows` as wire bytes, made as GetFlows makes them (observer/parser/wire.py)."""
        encode, fields, writer = self._decoder.encode_values, self._fields, self._writer
        frame = writer.timed_flow if self._whole_time else writer.flow
        return [
            self.lost_response(self._decoder.decode_lost(records[row])).SerializeToString()
            if is_lost
            else frame(encode(values, first_seq + row, fields), values[0])
            for row, is_lost, values in zip(rows.tolist(), lost.tolist(), records[rows].tolist(), strict=True)
        ]

    def messages(
        self, records: np.ndarray, rows: np.ndarray, lost: np.ndarray, first_seq: int
    ) -> list[observer_pb2.GetFlowsResponse]:
        """The same responses as messages, for sinks that read their fields."""
        responses = []
        for row, is_lost, values in zip(rows.tolist(), lost.tolist(), records[rows].tolist(), strict=True):
            if is_lost:
                responses.append(self.lost_response(self._decoder.decode_lost(records[row])))
                continue
            flow = self._decoder.decode_values(values, first_seq + row, self._fields)
            response = observer_pb2.GetFlowsResponse(flow=flow, node_name=self._decoder.node_name)
            response.time.FromNanoseconds(values[0])
            responses.append(response)
        return responses

    def lost_response(self, lost: flow_pb2.LostEvent) -> observer_pb2.GetFlowsResponse:
        response = observer_pb2.GetFlowsResponse(lost_events=lost, node_name=self._decoder.node_name)
        if lost.HasField("last"):
            response.time.CopyFrom(lost.last)
        else:
            response.time.GetCurrentTime()
        return response


@dataclass
class _Held:
    """What the ingest thread noted of each queued batch: the sequence number of its first record."""

    first_seqs: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ExportSubscriber:
    """One exporter as an ingest subscriber: queued on the ingest thread, selected and written on its own.

    `written` gives the flow ring's sequence number of the next record (FlowRing.written); the subscriber must
    come after the ring's own write among the ingest's subscribers, so a batch's first record is `written() -
    len(batch)` when it is handed over.
    """

    sees_lost_events = True  # the ingest loop hands it the kernel buffer's LostEvent records (observer/ingest.py)

    def __init__(
        self,
        name: str,
        selection: Selection,
        sink: Exporter,
        written: Callable[[], int],
        lost: LostCounts,
        depth: int = QUEUE_DEPTH,
    ) -> None:
        self.name = name
        self.counts = ExportCounts()
        self.stopped = False
        self._selection = selection
        self._sink = sink
        self._written = written
        self._held = _Held()
        self._unreported: dict[int, int] = {}  # events lost out of sight of the sink, by LostEventSource
        self._queue = QueuedSubscriber(self._export, lost, depth, name=f"exporter {name}")

    def __call__(self, batch: np.ndarray) -> None:
        """On the ingest thread: note the batch's place in the ring and queue it; never blocks."""
        key = id(batch)  # unique while the batch is queued: the queue holds it
        with self._held.lock:
            self._held.first_seqs[key] = self._written() - len(batch)
        dropped = self._queue.dropped_batches
        self._queue(batch)
        if self._queue.dropped_batches != dropped:
            lost = batch["type"] == EVENT_LOST
            flows = len(batch) - int(np.count_nonzero(lost))
            with self._held.lock:
                del self._held.first_seqs[key]
                self._unreport(flow_pb2.OBSERVER_EVENTS_QUEUE, flows)
                for source, count in zip(batch["subtype"][lost].tolist(), batch["bytes"][lost].tolist(), strict=True):
                    self._unreport(source, count)
            self.counts.add(dropped=flows)

    def status(self) -> observer_pb2.ExporterStatus:
        """What this exporter did so far, and its sink's own figures."""
        counts = self.counts
        status = observer_pb2.ExporterStatus(
            name=self.name,
            stopped=self.stopped,
            flows_exported=counts.exported,
            flows_filtered=counts.filtered,
            flows_failed=counts.failed,
            flows_dropped=counts.dropped,
            lost_events=counts.lost_events,
        )
        self._sink.describe(status)
        return status

    def close(self, timeout: float = 2.0) -> None:
        """Export what is queued (up to `timeout`), then close the sink."""
        self._queue.close(timeout)
        try:
            self._sink.close()
        except Exception:
            log.exception("exporter %s: closing its sink failed", self.name)
        counts = self.counts
        log.info(
            "exporter %s closed: %d flows exported, %d filtered out, %d failed, %d dropped",
            self.name,
            counts.exported,
            counts.filtered,
            counts.failed,
            counts.dropped,
        )

    def _export(self, batch: np.ndarray) -> None:
        with self._held.lock:
            first_seq = self._held.first_seqs.pop(id(batch))
        flows = int(np.count_nonzero(batch["type"] != EVENT_LOST))
        if self.stopped:
            self.counts.add(failed=flows)
            return
        rows, lost = self._selection.rows(batch, first_seq)
        exported_flows = len(rows) - int(np.count_nonzero(lost))
        with self._held.lock:
            unreported, self._unreported = self._unreported, {}
        head: list[Any] = []
        for source, count in unreported.items():
            report = self._selection.lost_response(_lost_here(source, count))
            head.append(report if self._sink.messages else report.SerializeToString())
        made = self._selection.messages if self._sink.messages else self._selection.wire
        responses = [*head, *made(batch, rows, lost, first_seq)]
        reported = sum(unreported.values()) + int(batch["bytes"][rows[lost]].sum())
        try:
            self._sink.export(responses)
        except ExportFailed as exc:
            self.counts.add(failed=exported_flows, filtered=flows - exported_flows)
            if exc.stop:
                self.stopped = True
                log.error("exporter %s stopped: %s", self.name, exc)
            else:
                log.warning("exporter %s: a batch of %d failed: %s", self.name, len(responses), exc)
            return
        self.counts.add(exported=exported_flows, filtered=flows - exported_flows, lost_events=reported)

    def _unreport(self, source: int, count: int) -> None:
        """Note `count` events of `source` lost before the sink saw them, reported before its next batch (called
        under the held lock)."""
        if count:
            self._unreported[source] = self._unreported.get(source, 0) + count


def _lost_here(source: int, count: int) -> flow_pb2.LostEvent:
    """A LostEvent for `count` events of `source` the exporter found lost just now."""
    lost = flow_pb2.LostEvent(source=cast(flow_pb2.LostEventSource, source), num_events_lost=count)
    now = Timestamp()
    now.GetCurrentTime()
    lost.first.CopyFrom(now)
    lost.last.CopyFrom(now)
    return lost
