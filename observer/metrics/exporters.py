"""The exporters' metrics: what each flow log and the ClickHouse history did with the flows it was handed.

They are read at scrape time from the exporters' status (observer/exporter/core.py: ExporterStatus), the same
snapshot `flowscope status` shows, so the two never disagree. Hubble has no metrics of its exporter, so these
are flowscope's own, labelled by exporter name and kind (file, clickhouse); a kind's own figures (a file's
bytes and rotations, ClickHouse's rows) appear only for exporters of that kind:

- flowscope_exporter_flows_total{exporter, kind, outcome}: flows exported, filtered (left out by the
  exporter's filters), failed (its sink could not take them) or dropped (its queue was full)
- flowscope_exporter_lost_events_total{exporter, kind}: events its output reported lost (lost-event lines)
- flowscope_exporter_stopped{exporter, kind}: 1 once it met an error it cannot get past (a full disk)
- flowscope_exporter_bytes_total / flowscope_exporter_file_rotations_total: a file exporter's bytes written
  and files rotated
- flowscope_exporter_rows_stored_total / _rows_lost_total / _rows_buffered / _failed_inserts_total:
  ClickHouse's rows stored, given up (its buffer was full), waiting in its buffer, and inserts that failed
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from flowscope.api.observer import observer_pb2

LABELS = ["exporter", "kind"]
OUTCOMES = {
    "exported": "flows_exported",
    "filtered": "flows_filtered",
    "failed": "flows_failed",
    "dropped": "flows_dropped",
}


@dataclass(frozen=True)
class Figure:
    """One ExporterStatus field as a metric: its name (a counter's without _total), help, and the kind of
    exporter that has it ("" for every kind)."""

    field: str
    name: str
    help: str
    counter: bool = True
    kind: str = ""


FIGURES = (
    Figure("lost_events", "flowscope_exporter_lost_events", "Events an exporter's output reported lost"),
    Figure("stopped", "flowscope_exporter_stopped", "1 when an exporter stopped on an error", counter=False),
    Figure("bytes_written", "flowscope_exporter_bytes", "Bytes a file exporter wrote", kind="file"),
    Figure("rotations", "flowscope_exporter_file_rotations", "Files a file exporter rotated", kind="file"),
    Figure("rows_stored", "flowscope_exporter_rows_stored", "Rows stored in ClickHouse", kind="clickhouse"),
    Figure("rows_lost", "flowscope_exporter_rows_lost", "Rows given up: the buffer was full", kind="clickhouse"),
    Figure(
        "rows_buffered",
        "flowscope_exporter_rows_buffered",
        "Rows waiting in the buffer for ClickHouse",
        counter=False,
        kind="clickhouse",
    ),
    Figure(
        "failed_inserts",
        "flowscope_exporter_failed_inserts",
        "Inserts ClickHouse refused or did not answer (each retried)",
        kind="clickhouse",
    ),
)


def exporter_metrics(statuses: Callable[[], list[observer_pb2.ExporterStatus]]) -> Iterator[Metric]:
    """Every exporter's figures now, one family per figure (none at all when the agent exports nothing)."""
    exporters = statuses()
    if not exporters:
        return
    flows = CounterMetricFamily(
        "flowscope_exporter_flows", "Flows an exporter was handed, by what became of them", labels=[*LABELS, "outcome"]
    )
    for status in exporters:
        for outcome, field in OUTCOMES.items():
            flows.add_metric([status.name, status.kind, outcome], getattr(status, field))
    yield flows
    for figure in FIGURES:
        family = CounterMetricFamily if figure.counter else GaugeMetricFamily
        metric = family(figure.name, figure.help, labels=LABELS)
        for status in exporters:
            if figure.kind in ("", status.kind):
                metric.add_metric([status.name, status.kind], float(getattr(status, figure.field)))
        yield metric
