"""GetFlows: which stored events a request selects, in what order, and what it is told it missed.

Hubble's semantics (docs/reference/hubble-api.md, "GetFlows semantics"; docs/reference/hubble-behaviour.md,
"How selectors read the ring"): `first` reads forward from the oldest flow; `follow` with no number starts at
the newest; otherwise walk back from the newest until `number` flows match (or `since` is passed), then send
them oldest first, and go on following if asked. Lost events never count toward `number`. A reader the ring
overtook gets a LostEvent (HUBBLE_RING_BUFFER) with the count, at most once a second.

Filtering works on whole chunks of records at once (observer.filters); only the flows that are sent are decoded.
This module knows nothing of gRPC: it yields responses (as messages, or as the wire bytes the server sends) and
raises InvalidRequest, so it is easy to test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from google.protobuf import timestamp_pb2

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.common.flow_requests import time_window
from flowscope.common.names import EVENT_LOST
from flowscope.observer.filters import Batch, FilterContext, FilterError, Predicate, compile_filters
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.parser import FieldTree, FlowDecoder, compile_field_mask
from flowscope.observer.parser.fieldmask import keeps_whole
from flowscope.observer.parser.wire import ResponseWriter

CHUNK = 4096
BATCH = 256  # responses made at once, then sent
LOST_EVENT_INTERVAL_S = 1.0
FOLLOW_POLL_S = 0.25

T = TypeVar("T")


class InvalidRequest(ValueError):
    """The request cannot be served as asked; the message says why (sent as INVALID_ARGUMENT)."""


@dataclass
class Selection:
    """A validated request: where to start and when to stop."""

    predicate: Predicate
    number: int
    first: bool
    follow: bool
    since_ns: int | None
    until_ns: int | None
    fields: FieldTree | None  # what the field mask keeps; None: everything


def select(request: observer_pb2.GetFlowsRequest, ctx: FilterContext) -> Selection:
    """Check a request and compile its filters; raises InvalidRequest with the reason."""
    try:
        since, until = time_window(request)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    fields = None
    if request.HasField("field_mask") and request.field_mask.paths:
        try:
            fields = compile_field_mask(request.field_mask.paths)
        except ValueError as exc:
            raise InvalidRequest(f"field_mask: {exc}") from exc
    try:
        predicate = compile_filters(list(request.whitelist), list(request.blacklist), ctx)
    except FilterError as exc:
        raise InvalidRequest(str(exc)) from exc
    return Selection(predicate, request.number, request.first, request.follow, since, until, fields)


class FlowReader:
    """Serves one GetFlows request from the ring."""

    def __init__(
        self,
        ring: FlowRing,
        decoder: FlowDecoder,
        selection: Selection,
        node_name: str,
        on_overrun: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._ring = ring
        self._decoder = decoder
        self._sel = selection
        self._node = node_name
        self._writer = ResponseWriter(node_name)
        self._whole_time = keeps_whole(selection.fields, "time")  # the response's time can be the flow's bytes
        self._on_overrun = on_overrun
        self._lost_pending = 0
        self._lost_sent_at = 0.0

    # --- where to start ----------------------------------------------------------------------------------

    def _matches(self, records: np.ndarray, first_seq: int) -> np.ndarray:
        """Which records are flows the request wants (lost-event records excluded)."""
        seqs = np.arange(first_seq, first_seq + len(records), dtype=np.uint64)
        wanted = self._sel.predicate(Batch(records, seqs)) & (records["type"] != EVENT_LOST)
        if self._sel.since_ns is not None:
            wanted &= records["ts"] >= self._sel.since_ns
        if self._sel.until_ns is not None:
            wanted &= records["ts"] <= self._sel.until_ns
        return wanted

    def _start(self, newest: int) -> int:
        """The sequence number to start from; `newest` is ring.written when the request came."""
        ring, sel = self._ring, self._sel
        if sel.first:
            return ring.oldest
        if sel.follow and sel.number == 0 and sel.since_ns is None:
            return newest
        if sel.number == 0:  # everything stored (within since/until)
            return ring.oldest
        # Walk back from the newest until `number` matches, or until we pass `since`.
        pos, needed = newest, sel.number
        while pos > ring.oldest:
            chunk = ring.read(max(ring.oldest, pos - CHUNK), pos)
            if len(chunk.records) == 0:
                break
            hits = np.flatnonzero(self._matches(chunk.records, chunk.first_seq))
            if len(hits) >= needed:
                return chunk.first_seq + int(hits[len(hits) - needed])
            needed -= len(hits)
            pos = chunk.first_seq
            if sel.since_ns is not None and int(chunk.records["ts"].min()) < sel.since_ns:
                break
        return ring.oldest

    # --- the stream --------------------------------------------------------------------------------------

    def responses(self, active: Callable[[], bool]) -> Iterator[observer_pb2.GetFlowsResponse]:
        """The stream as messages (tests, and whoever wants to look at the responses)."""
        return self._stream(active, self._flow_message, self._wrap_lost)

    def wire(self, active: Callable[[], bool]) -> Iterator[bytes]:
        """The same stream as GetFlowsResponse wire bytes, ready for gRPC to send as they are: what the server
        sends (observer/parser/wire.py says why)."""
        return self._stream(active, self._flow_bytes, lambda lost: self._wrap_lost(lost).SerializeToString())

    def _stream(
        self,
        active: Callable[[], bool],
        flow_out: Callable[[tuple[Any, ...], int], T],
        lost_out: Callable[[flow_pb2.LostEvent], T],
    ) -> Iterator[T]:
        """The selected records in order, each made into a response by `flow_out` (a flow record's values, as
        `record.item()` gives them, and its sequence number) or `lost_out` (a lost event)."""
        sel, ring = self._sel, self._ring
        newest = ring.written
        pos = self._start(newest)
        end = None if sel.follow else newest
        limit = sel.number if sel.first else 0
        sent = 0
        while active():
            upto = pos + CHUNK if end is None else min(end, pos + CHUNK)
            chunk = ring.read(pos, upto)
            if chunk.lost:
                self._lost_pending += chunk.lost
                self._on_overrun(chunk.lost)
            lost = self._lost_event(force=end is not None and chunk.end_seq >= end)
            if lost is not None:
                yield lost_out(lost)
            if len(chunk.records) == 0:
                if end is not None and chunk.first_seq >= end:
                    return
                if sel.until_ns is not None and time.time_ns() > sel.until_ns:
                    return
                ring.wait(chunk.first_seq, FOLLOW_POLL_S)
                pos = chunk.first_seq
                continue
            records = chunk.records
            lost_rows = records["type"] == EVENT_LOST
            rows = np.flatnonzero(self._matches(records, chunk.first_seq) | lost_rows)
            if limit:
                rows = _up_to(rows, ~lost_rows[rows], limit - sent)
            # Responses are made BATCH at a time before the first of them is sent: making each between gRPC's
            # sends costs about a third more CPU (bench/RESULTS.md, "Fast reads"); BATCH bounds what that delays
            # the first flow of a burst by (a few ms).
            # A batch's records become Python values in one call (tolist), not one record at a time.
            first_seq, decode_lost = chunk.first_seq, self._decoder.decode_lost
            for start in range(0, len(rows), BATCH):
                batch = rows[start : start + BATCH]
                yield from [
                    lost_out(decode_lost(records[i])) if lost_rows[i] else flow_out(values, first_seq + i)
                    for i, values in zip(batch.tolist(), records[batch].tolist(), strict=True)
                ]
            sent += int(np.count_nonzero(~lost_rows[rows]))
            if limit and sent >= limit:
                return
            if sel.until_ns is not None and int(records["ts"].max()) > sel.until_ns and sel.follow:
                return
            pos = chunk.end_seq

    def _flow_message(self, values: tuple[Any, ...], seq: int) -> observer_pb2.GetFlowsResponse:
        """The response carries the flow's time even when the field mask left it out of the flow."""
        flow = self._decoder.decode_values(values, seq, self._sel.fields)
        response = observer_pb2.GetFlowsResponse(flow=flow, node_name=self._node)
        response.time.FromNanoseconds(values[0])  # the record's ts, its first field
        return response

    def _flow_bytes(self, values: tuple[Any, ...], seq: int) -> bytes:
        flow = self._decoder.encode_values(values, seq, self._sel.fields)
        if self._whole_time:
            return self._writer.timed_flow(flow, values[0])
        return self._writer.flow(flow, values[0])

    def _wrap_lost(self, lost: flow_pb2.LostEvent) -> observer_pb2.GetFlowsResponse:
        response = observer_pb2.GetFlowsResponse(lost_events=lost, node_name=self._node)
        response.time.CopyFrom(lost.last if lost.HasField("last") else _now())
        return response

    def _lost_event(self, force: bool) -> flow_pb2.LostEvent | None:
        """What the ring overwrote before this reader got to it, if it is time to say so (at most once a second)."""
        now = time.monotonic()
        if not self._lost_pending or not (force or now - self._lost_sent_at >= LOST_EVENT_INTERVAL_S):
            return None
        lost = flow_pb2.LostEvent(source=flow_pb2.HUBBLE_RING_BUFFER, num_events_lost=self._lost_pending)
        lost.last.CopyFrom(_now())
        self._lost_pending = 0
        self._lost_sent_at = now
        return lost


def _up_to(rows: np.ndarray, is_flow: np.ndarray, flows: int) -> np.ndarray:
    """`rows` up to and including the one that makes `flows` flows (all of them when they make fewer)."""
    counted = np.cumsum(is_flow)
    if len(rows) == 0 or counted[-1] < flows:
        return rows
    return rows[: int(np.searchsorted(counted, flows)) + 1]


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts
