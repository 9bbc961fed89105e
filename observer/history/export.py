"""The agent's (or relay's) history export: every flow, whole, to ClickHouse, through the exporter pipeline.

An agent puts it behind an ExportSubscriber like any flow log (selection without filters, no field mask: a
history read must give back complete flows); the relay feeds the writer its merged stream directly
(relay/history.py).
"""

from __future__ import annotations

from collections.abc import Callable

from flowscope.observer.counts import LostCounts
from flowscope.observer.exporter.core import ExportSpec, ExportSubscriber, Selection
from flowscope.observer.history.writer import ClickHouseWriter, WriterOptions
from flowscope.observer.parser import FlowDecoder


def history_subscriber(
    url: str, options: WriterOptions, decoder: FlowDecoder, written: Callable[[], int], lost: LostCounts
) -> ExportSubscriber:
    """An ingest subscriber that stores every flow of this agent in ClickHouse at `url`."""
    writer = ClickHouseWriter(url, options, on_lost=lambda flows: lost.add("agent_queue", flows))
    return ExportSubscriber("clickhouse", Selection(ExportSpec(), decoder), writer, written, lost)
