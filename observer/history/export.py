"""The agent's (or relay's) history export: every flow, whole, to ClickHouse, through the exporter pipeline.

An agent puts it behind an ExportSubscriber like any flow log (selection without filters, no field mask: a
history read must give back complete flows); the relay feeds the writer its merged stream directly
(relay/history.py).

The agent's flows reach the writer as rows already (record_rows.py: columns from the batch's records, not from
a Flow message per flow, which cost most of what storing a flow did); its lost events as responses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flowscope.observer.counts import LostCounts
from flowscope.observer.exporter.core import ExportSpec, ExportSubscriber, Selection
from flowscope.observer.history.record_rows import EncodedRows, RecordRows
from flowscope.observer.history.writer import ClickHouseWriter, WriterOptions
from flowscope.observer.parser import FlowDecoder

# Batches the exporter's queue holds: ~2.5 s of the ingest loop's passes. At 100,000 events/s its thread keeps
# up on average (~6.5 µs a flow) but on a busy machine stalls for longer than the default queue's half second,
# and the default queue then dropped 15-20% of the flows (bench/history_bench.py agent). Memory when it is full:
# ~64 MB at 100,000 events/s (batches of ~1,000 records of 248 bytes), at most 256 full passes (~260 MB).
HISTORY_QUEUE_DEPTH = 256


def history_subscriber(
    url: str, options: WriterOptions, decoder: FlowDecoder, written: Callable[[], int], lost: LostCounts
) -> ExportSubscriber:
    """An ingest subscriber that stores every flow of this agent in ClickHouse at `url`."""
    writer = ClickHouseWriter(url, options, on_lost=lambda flows: lost.add("agent_queue", flows))
    return ExportSubscriber("clickhouse", _RowSelection(decoder), writer, written, lost, depth=HISTORY_QUEUE_DEPTH)


class _RowSelection(Selection):
    """Every flow, as the writer's rows: the exporter hands the writer what `messages` gives (it wants messages
    for the relay's flows), so here that is the batch's lost events as responses and its flows as rows."""

    def __init__(self, decoder: FlowDecoder) -> None:
        super().__init__(ExportSpec(), decoder)
        self._rows = RecordRows(decoder)

    def messages(self, records: np.ndarray, rows: np.ndarray, lost: np.ndarray, first_seq: int) -> list[Any]:
        responses: list[Any] = super().messages(records, rows[lost], lost[lost], first_seq) if lost.any() else []
        responses.append(EncodedRows(self._rows.rows(records, rows[~lost], first_seq)))
        return responses
