"""Flows into ClickHouse: the sink an ExportSubscriber (observer/exporter/core.py) hands its batches to.

The exporter's thread only encodes a batch's flows into RowBinary rows and appends them to a bounded buffer;
a sender thread of this writer's own sends them, up to `batch_rows` rows or every `interval_s`, one INSERT
each, so neither the ingest nor the exporter's queue waits for ClickHouse. While ClickHouse is down the sender
retries the same batch with exponential backoff (0.1 s doubling up to 30 s); what arrives meanwhile waits in
the buffer, and what does not fit in it (`max_rows`) is counted as undelivered and logged as lost: memory
stays bounded whatever ClickHouse does. Lost-event responses are not flows; they are counted, not stored.

The writer applies the schema at its start (observer/history/migrate.py, idempotent) and, given a retention,
drops partitions older than it every hour.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowscope.api.observer import observer_pb2
from flowscope.common.counters import Counters
from flowscope.observer.history import retention
from flowscope.observer.history.clickhouse import ClickHouse, ClickHouseError
from flowscope.observer.history.migrate import migrate, table_for
from flowscope.observer.history.record_rows import EncodedRows
from flowscope.observer.history.rows import COLUMN_NAMES, row_binary

log = logging.getLogger(__name__)

BATCH_ROWS = 10_000
INTERVAL_S = 1.0
MAX_ROWS = 200_000  # ~100 MB at ~500 bytes a row, ~20 s of a busy node's flows while ClickHouse is away
BACKOFF_S = (0.1, 30.0)


@dataclass
class WriterCounts(Counters):
    """Flows stored, not stored because the buffer was full (lost), insert attempts that failed, lost events
    seen in the stream (not stored)."""

    delivered: int = 0
    undelivered: int = 0
    failed_inserts: int = 0
    lost_events: int = 0

    def add(self, **counts: int) -> None:
        self._add(**counts)


@dataclass(frozen=True)
class WriterOptions:
    cluster: bool = False  # write into the Distributed table (schema/cluster/)
    retention_days: int | None = None
    batch_rows: int = BATCH_ROWS
    interval_s: float = INTERVAL_S
    max_rows: int = MAX_ROWS


class ClickHouseWriter:
    """An Exporter (messages) that stores flow responses in ClickHouse's flows table."""

    messages = True

    def __init__(
        self, url: str, options: WriterOptions = WriterOptions(), on_lost: Callable[[int], None] | None = None
    ) -> None:
        """`on_lost(n)`: told of every n flows given up (the agent counts them as its queue's lost events, so
        `flowscope status` and GetFlows' LostEvents show them)."""
        self.url = url
        self.options = options
        self.counts = WriterCounts()
        self._on_lost = on_lost
        self._client = ClickHouse.connect(url)
        self._insert = f"INSERT INTO {table_for(options.cluster)} ({', '.join(COLUMN_NAMES)}) FORMAT RowBinary"
        self._rows: deque[bytes] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._drain_until = 0.0
        self._migrated = False
        self._next_retention = 0.0
        self._reported_loss = 0
        self._sending = False
        self._thread = threading.Thread(target=self._run, name="clickhouse writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._ready:
            return len(self._rows)

    def export(self, responses: Sequence[Any]) -> None:
        """On the exporter's thread: encode the flows and queue them; never waits for ClickHouse. An agent's
        flows come already encoded (record_rows.EncodedRows), a relay's as responses."""
        rows: list[bytes] = []
        lost = 0
        for response in responses:
            if isinstance(response, EncodedRows):
                rows.extend(response.rows)
            elif response.HasField("flow"):
                rows.append(row_binary(response))
            elif response.HasField("lost_events"):
                lost += 1
        if lost:
            self.counts.add(lost_events=lost)
        with self._ready:
            room = max(0, self.options.max_rows - len(self._rows))
            self._rows.extend(rows[:room])
            if len(self._rows) >= self.options.batch_rows:
                self._ready.notify()
        if len(rows) > room:
            self._lose(len(rows) - room)

    def describe(self, status: observer_pb2.ExporterStatus) -> None:
        """Its figures in an ExporterStatus (the exporter's status: `flowscope status`, the metrics)."""
        counts = self.counts
        status.kind, status.target = "clickhouse", self.url
        status.rows_stored, status.rows_buffered, status.rows_lost = counts.delivered, self.pending, counts.undelivered
        status.failed_inserts = counts.failed_inserts

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is stored (True) or `timeout` passed."""
        deadline = time.monotonic() + timeout
        with self._ready:
            self._ready.notify()
        while time.monotonic() < deadline:
            if self.pending == 0 and not self._sending:
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to `timeout`), then stop; what is left is counted undelivered."""
        with self._ready:
            self._closing = True
            self._drain_until = time.monotonic() + timeout
            self._ready.notify()
        self._thread.join(timeout + 1.0)
        self._client.close()

    def _run(self) -> None:
        delay = BACKOFF_S[0]
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._housekeeping()
                if batch:
                    self._send(batch)
                delay = BACKOFF_S[0]
            except ClickHouseError as exc:
                self.counts.add(failed_inserts=1)
                log.warning("history: ClickHouse at %s: %s; retrying in %.1fs", self.url, exc, delay)
                if self._closing and time.monotonic() > self._drain_until:
                    self._give_up(len(batch))
                    return
                self._requeue(batch)
                self._wait(delay)
                delay = min(delay * 2, BACKOFF_S[1])
            finally:
                self._sending = False
            self._report_loss()

    def _next_batch(self) -> list[bytes] | None:
        """Up to batch_rows rows, once there are that many, interval_s passed, or on closing; None: done."""
        with self._ready:
            deadline = time.monotonic() + self.options.interval_s
            while not self._closing and len(self._rows) < self.options.batch_rows:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            if self._closing and (not self._rows or time.monotonic() > self._drain_until):
                self._give_up(len(self._rows))
                self._rows.clear()
                return None
            count = min(len(self._rows), self.options.batch_rows)
            self._sending = count > 0
            return [self._rows.popleft() for _ in range(count)]

    def _send(self, batch: list[bytes]) -> None:
        self._client.execute(self._insert, b"".join(batch))
        self.counts.add(delivered=len(batch))

    def _requeue(self, batch: list[bytes]) -> None:
        """A failed batch goes back to the front; what no longer fits is undelivered (newest rows dropped)."""
        with self._ready:
            self._rows.extendleft(reversed(batch))
            excess = len(self._rows) - self.options.max_rows
            for _ in range(max(0, excess)):
                self._rows.pop()
        if excess > 0:
            self._lose(excess)

    def _housekeeping(self) -> None:
        """The schema once (ClickHouse may have been down at start), retention every hour."""
        if not self._migrated:
            migrate(self._client, self.options.cluster)
            self._migrated = True
        days = self.options.retention_days
        if days is not None and time.monotonic() >= self._next_retention:
            retention.drop_older(self._client, days)
            self._next_retention = time.monotonic() + retention.CHECK_EVERY_S

    def _wait(self, seconds: float) -> None:
        """The backoff; cut short by close (but not past its drain deadline)."""
        with self._ready:
            if self._closing:
                seconds = min(seconds, max(0.0, self._drain_until - time.monotonic()))
                time.sleep(seconds)
            else:
                self._ready.wait(seconds)

    def _give_up(self, rows: int) -> None:
        if rows:
            self._lose(rows)
            log.error("history: %d flows not delivered to ClickHouse at %s (closing)", rows, self.url)

    def _lose(self, flows: int) -> None:
        self.counts.add(undelivered=flows)
        if self._on_lost is not None:
            self._on_lost(flows)

    def _report_loss(self) -> None:
        lost = self.counts.undelivered
        if lost != self._reported_loss:
            log.error(
                "history: %d flows lost so far: the buffer of %d rows was full while ClickHouse at %s was away",
                lost,
                self.options.max_rows,
                self.url,
            )
            self._reported_loss = lost
