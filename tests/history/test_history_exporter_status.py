"""The agent's ClickHouse exporter reports what it stored, buffered and lost (ExporterStatus, what `flowscope
status` and the metrics show): against a real ClickHouse, and against a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest
from history_server import clickhouse, fresh_database, needs_clickhouse
from records import TS, lab_registry, lost_record, record, tcp4
from waiting import wait_for

from flowscope.common import names
from flowscope.lab.history import ClickHouse
from flowscope.observer.counts import LostCounts
from flowscope.observer.exporter.core import ExportSubscriber
from flowscope.observer.flow_ring import FlowRing
from flowscope.observer.history.export import history_subscriber
from flowscope.observer.history.writer import WriterOptions
from flowscope.observer.parser import FlowDecoder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouse]:
    with clickhouse(tmp_path_factory.mktemp("clickhouse")) as running:
        yield running


class Agent:
    """What the agent does with a batch: the flow ring first, then the history exporter."""

    def __init__(self, url: str, options: WriterOptions) -> None:
        self.ring = FlowRing(1023, record().dtype)
        self.lost = LostCounts()
        decoder = FlowDecoder("node1", lab_registry(), b"instance")
        self.exporter: ExportSubscriber = history_subscriber(
            url, options, decoder, lambda: self.ring.written, self.lost
        )

    def ingest(self, batch: np.ndarray) -> None:
        batch.flags.writeable = False
        self.ring.write(batch)
        self.exporter(batch)


def flows_and_a_loss(count: int, lost: int) -> np.ndarray:
    batch = np.concatenate([record(tcp4(sport=40000 + i)) for i in range(count)])
    batch["ts"] = TS + np.arange(count) * 1000
    return np.concatenate([batch, lost_record(names.LOST_KERNEL_BUFFER, count=lost, cpu=0)])


@needs_clickhouse
def test_rows_stored_and_lost_events_counted(server: ClickHouse) -> None:
    url = fresh_database(server, "exporter_status")
    agent = Agent(url, WriterOptions(interval_s=0.1))
    try:
        agent.ingest(flows_and_a_loss(12, lost=5))
        wait_for(lambda: agent.exporter.status().rows_stored == 12, timeout=30)
        status = agent.exporter.status()
        assert (status.name, status.kind, status.target) == ("clickhouse", "clickhouse", url)
        assert (status.flows_exported, status.lost_events, status.rows_buffered, status.rows_lost) == (12, 5, 0, 0)
        assert status.failed_inserts == 0 and not status.stopped
    finally:
        agent.exporter.close()


def test_rows_wait_in_the_buffer_while_clickhouse_is_away_and_what_does_not_fit_is_lost() -> None:
    with socket.socket() as closed:  # a port nobody listens on: every insert fails, and is retried
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        agent = Agent(url, WriterOptions(interval_s=0.05, max_rows=8))
        try:
            agent.ingest(flows_and_a_loss(12, lost=1))

            def waiting() -> bool:  # between two attempts (a batch being sent is out of the buffer)
                status = agent.exporter.status()
                return status.failed_inserts >= 1 and (status.rows_stored, status.rows_buffered, status.rows_lost) == (
                    0,
                    8,
                    4,
                )

            wait_for(waiting, timeout=10)
            assert agent.lost.agent_queue == 4  # the agent's own count of the loss, as before
        finally:
            agent.exporter.close(timeout=0.5)
