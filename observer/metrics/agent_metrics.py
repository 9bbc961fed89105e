"""The agent's own metrics, read when Prometheus scrapes: what it ingested and lost, how full its stores are,
who reads its flows, and what its BPF programs cost.

- flowscope_events_ingested_total{source, type}: events the ingest loop handed on, by ring buffer (datapath,
  kernel-drops, l7) and event type
- flowscope_events_lost_total{source}: events lost, by where (kernel_buffer, agent_queue, ring_overrun,
  rate_limited: observer/counts.py); and hubble_lost_events_total{source}, which Hubble always exports, with
  its sources (perf_event_ring_buffer, observer_events_queue, hubble_ring_buffer)
- flowscope_flow_ring_flows / flowscope_flow_ring_capacity, flowscope_l7_store_entries / _capacity / _bytes
- flowscope_getflows_streams: flow streams (GetFlows calls) open now
- flowscope_bpf_program_runs_total{program} / flowscope_bpf_program_run_seconds_total{program}: the kernel's
  run counters of the agent's programs, which count only while BPF statistics are on (`--metrics-bpf-stats`
  holds them on: every program run then pays two clock reads)
- flowscope_exporter_*{exporter, kind}: each flow log's and the ClickHouse history's figures (exporters.py)

Each is read from the object that keeps it at scrape time: nothing is counted twice, and nothing costs the
ingest thread anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowscope.api.observer import observer_pb2
from flowscope.observer.counts import IngestCounts
from flowscope.observer.datapath.bpfsys import prog_info
from flowscope.observer.datapath.inventory import held_objects
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.l7.store import L7Store
from flowscope.observer.metrics.exporters import exporter_metrics
from flowscope.observer.metrics.subscriber import IngestedCounts

# flowscope's loss counters and the LostEventSource Hubble's metric names them by (lower case, as Hubble).
HUBBLE_LOST_SOURCES = {
    "kernel_buffer": "perf_event_ring_buffer",
    "agent_queue": "observer_events_queue",
    "ring_overrun": "hubble_ring_buffer",
}


@dataclass
class AgentParts:
    """What the collector reads; None for a part the agent runs without."""

    counts: IngestCounts
    ring: FlowRing
    ingested: IngestedCounts | None = None
    l7_store: L7Store | None = None
    open_streams: Callable[[], int] | None = None
    bpf_programs: bool = True
    exporters: Callable[[], list[observer_pb2.ExporterStatus]] | None = None


class AgentCollector(Collector):
    def __init__(self, parts: AgentParts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        parts = self.parts
        yield from self._events()
        ring = GaugeMetricFamily("flowscope_flow_ring_flows", "Flows (and lost-event records) in the flow ring")
        ring.add_metric([], len(parts.ring))
        yield ring
        capacity = GaugeMetricFamily("flowscope_flow_ring_capacity", "Records the flow ring holds")
        capacity.add_metric([], parts.ring.capacity)
        yield capacity
        if parts.l7_store is not None:
            yield from self._l7(parts.l7_store)
        if parts.open_streams is not None:
            streams = GaugeMetricFamily("flowscope_getflows_streams", "GetFlows calls streaming flows now")
            streams.add_metric([], parts.open_streams())
            yield streams
        if parts.bpf_programs:
            yield from self._programs()
        if parts.exporters is not None:
            yield from exporter_metrics(parts.exporters)

    def _events(self) -> Iterator[Metric]:
        parts = self.parts
        if parts.ingested is not None:
            ingested = CounterMetricFamily(
                "flowscope_events_ingested", "Events ingested, by ring buffer and event type", labels=["source", "type"]
            )
            for (source, event_type), count in sorted(parts.ingested.snapshot().items()):
                ingested.add_metric([source, event_type], count)
            yield ingested
        counts = parts.counts.lost
        lost = {f.name: getattr(counts, f.name) for f in fields(counts) if not f.name.startswith("_")}
        ours = CounterMetricFamily("flowscope_events_lost", "Events lost, by where", labels=["source"])
        hubble = CounterMetricFamily("hubble_lost_events", "Number of lost events", labels=["source"])
        for source, count in sorted(lost.items()):
            ours.add_metric([source], count)
            if source in HUBBLE_LOST_SOURCES:
                hubble.add_metric([HUBBLE_LOST_SOURCES[source]], count)
        yield ours
        yield hubble

    @staticmethod
    def _l7(store: L7Store) -> Iterator[Metric]:
        entries = GaugeMetricFamily("flowscope_l7_store_entries", "L7 messages kept in the L7 store")
        entries.add_metric([], len(store))
        yield entries
        capacity = GaugeMetricFamily("flowscope_l7_store_capacity", "L7 messages the L7 store keeps")
        capacity.add_metric([], store.capacity)
        yield capacity
        size = GaugeMetricFamily("flowscope_l7_store_bytes", "Memory the L7 store's messages take, estimated")
        size.add_metric([], store.memory_bytes())
        yield size

    @staticmethod
    def _programs() -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "flowscope_bpf_program_runs",
            "Runs of the agent's BPF programs while statistics were on",
            labels=["program"],
        )
        seconds = CounterMetricFamily(
            "flowscope_bpf_program_run_seconds",
            "Time the agent's BPF programs ran while statistics were on",
            labels=["program"],
        )
        totals: dict[str, tuple[int, int]] = {}
        with held_objects() as (programs, _maps):
            for fd in programs.values():
                with contextlib.suppress(OSError):
                    info = prog_info(fd)
                    count, ns = totals.get(info.name, (0, 0))
                    totals[info.name] = (count + info.run_cnt, ns + info.run_time_ns)
        for name, (count, ns) in sorted(totals.items()):
            runs.add_metric([name], count)
            seconds.add_metric([name], ns / 1e9)
        yield runs
        yield seconds
