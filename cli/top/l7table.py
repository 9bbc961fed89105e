"""The L7 rows of `flowscope top`: DNS and HTTP messages counted per (client, server, protocol/port, what was
asked), with their answers by status and the latency of the answers.

Requests make the rates and the REQS column (a row's requests per second is what a person asks of a service);
responses make the status counts (HTTP by class, 2xx/4xx/5xx; DNS by rcode) and the latency percentiles, from
the `latency_ns` the agent paired each response with. Latencies go into a histogram per row with four buckets
per doubling (from 1 µs to 4 min), so p50 and p95 of every row are one cumulative sum over a small matrix,
never a sort of samples, and a row costs the same however many answers it had; a percentile is the bucket's
middle, within 10% of the true one. They cover the row's whole life in this view (since top started or the
filter changed), where the rates cover the last 2/10/40 s. A snapshot recomputes them only for the rows that
had an answer since the one before, so a frame's cost follows what changed, not how many rows there are.

Not thread-safe on its own: FlowTable calls it under its lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flowscope.cli.top.buckets import Buckets
from flowscope.cli.top.grouping import L7Key, L7Message

Connection = tuple[str, str, str]  # source, destination, protocol/port: what an L7 row and a connection share

STATUS_SLOTS = 7  # HTTP: code // 100 (0: no valid code); DNS: rcode 0-5, 6 any other
STEPS_PER_DOUBLING = 4
LATENCY_BINS = 2 + 28 * STEPS_PER_DOUBLING  # under 1 µs, then 1 µs .. 2^28 µs (4.5 min), the last one open
# Each bin's middle (geometric), in nanoseconds: what a percentile falling in it is shown as.
_BIN_MIDDLE_NS = np.array(
    [500.0] + [1000.0 * 2 ** ((index - 0.5) / STEPS_PER_DOUBLING) for index in range(1, LATENCY_BINS)]
)


def latency_bin(latency_ns: int) -> int:
    if latency_ns < 1000:
        return 0
    return min(1 + int(math.log2(latency_ns / 1000.0) * STEPS_PER_DOUBLING), LATENCY_BINS - 1)


def percentiles(histogram: np.ndarray, quantiles: tuple[float, ...]) -> list[np.ndarray]:
    """Each quantile of each row's latencies (ns; NaN for a row without any), for every row at once."""
    cumulative = np.cumsum(histogram, axis=1)
    counts = cumulative[:, -1] if histogram.shape[0] else np.zeros(0, np.int64)
    results = []
    for quantile in quantiles:
        wanted = np.maximum(np.ceil(quantile * counts), 1)
        bins = np.minimum((cumulative < wanted[:, None]).sum(axis=1), LATENCY_BINS - 1)
        results.append(np.where(counts > 0, _BIN_MIDDLE_NS[bins], np.nan))
    return results


@dataclass(frozen=True)
class L7Snapshot:
    """Every L7 row's numbers at one moment (the L7 view's rows), read unlocked by the screen."""

    now: float
    keys: list[L7Key]
    rates: np.ndarray  # (len(WINDOWS), rows) requests per second
    total: np.ndarray  # requests per row
    responses: np.ndarray
    errors: np.ndarray  # responses that were HTTP 4xx/5xx or DNS rcodes other than NOERROR
    status: np.ndarray  # (rows, STATUS_SLOTS) responses by status slot
    p50: np.ndarray  # latency of responses, ns (NaN: none paired)
    p95: np.ndarray
    last_seen: np.ndarray
    drop: np.ndarray  # rows with errors: what the `d` sort puts first
    messages: int  # L7 flows counted
    by_connection: dict[Connection, list[int]]  # the rows of each client → server, protocol/port (may name rows
    # added after this snapshot: read through `of_connection`)

    def of_connection(self, connection: Connection) -> list[int]:
        """This snapshot's L7 rows of a connection (source, destination, protocol/port as top's rows say them)."""
        return [row for row in self.by_connection.get(connection, ()) if row < len(self.keys)]

    def __len__(self) -> int:
        return len(self.keys)

    def slowest_first(self, window: int) -> np.ndarray:
        """Row indexes by p95 latency, slowest first, rows without latency last (then by rate, then arrival)."""
        arrival = np.arange(len(self))
        slowness = np.nan_to_num(self.p95, nan=-1.0)
        return np.lexsort([arrival, -self.rates[window], -slowness])


class L7Table:
    """L7 messages grouped by L7Key."""

    def __init__(self, capacity: int = 64) -> None:
        self._index: dict[L7Key, int] = {}
        self._keys: list[L7Key] = []
        self._buckets = Buckets(capacity)
        self._latency = np.zeros((capacity, LATENCY_BINS), np.int32)
        self._status = np.zeros((capacity, STATUS_SLOTS), np.int64)
        self._total: list[int] = []
        self._responses: list[int] = []
        self._errors: list[int] = []
        self._last_seen: list[float] = []
        self._p50 = np.full(capacity, np.nan)
        self._p95 = np.full(capacity, np.nan)
        self._answered: set[int] = set()  # rows with a latency since the last snapshot: their percentiles moved
        self._by_connection: dict[Connection, list[int]] = {}  # for the connection view's L7 column
        self.messages = 0

    @property
    def head(self) -> int | None:
        return self._buckets.head

    def add(self, message: L7Message, stamp: float) -> None:
        row = self._index.get(message.key)
        if row is None:
            row = self._new_row(message.key)
        if message.response:
            self._responses[row] += 1
            if message.status >= 0:
                self._status[row, message.status] += 1
            self._errors[row] += message.error
            if message.latency_ns > 0:
                self._latency[row, latency_bin(message.latency_ns)] += 1
                self._answered.add(row)
        else:
            self._buckets.count(row, stamp)
            self._total[row] += 1
        if stamp > self._last_seen[row]:
            self._last_seen[row] = stamp
        self.messages += 1

    def _new_row(self, key: L7Key) -> int:
        row = len(self._keys)
        self._buckets.make_room(row + 1)
        if row == self._latency.shape[0]:
            self._latency = np.concatenate([self._latency, np.zeros_like(self._latency)])
            self._status = np.concatenate([self._status, np.zeros_like(self._status)])
            self._p50 = np.concatenate([self._p50, np.full(row, np.nan)])
            self._p95 = np.concatenate([self._p95, np.full(row, np.nan)])
        self._index[key] = row
        self._keys.append(key)
        self._by_connection.setdefault((key.source, key.destination, key.protocol), []).append(row)
        self._total.append(0)
        self._responses.append(0)
        self._errors.append(0)
        self._last_seen.append(0.0)
        return row

    def snapshot(self, now: float) -> L7Snapshot:
        """The numbers of every L7 row at `now`: numpy over the rows, no Python loop."""
        rows = len(self._keys)
        errors = np.array(self._errors, np.int64)
        if self._answered:
            answered = np.fromiter(self._answered, np.int64, len(self._answered))
            self._p50[answered], self._p95[answered] = percentiles(self._latency[answered], (0.50, 0.95))
            self._answered.clear()
        return L7Snapshot(
            now=now,
            keys=self._keys[:rows],
            rates=self._buckets.rates(rows, now),
            total=np.array(self._total, np.int64),
            responses=np.array(self._responses, np.int64),
            errors=errors,
            status=self._status[:rows].copy(),
            p50=self._p50[:rows].copy(),
            p95=self._p95[:rows].copy(),
            last_seen=np.array(self._last_seen, np.float64),
            drop=errors > 0,
            messages=self.messages,
            by_connection=dict(self._by_connection),  # the lists only grow, and only past `rows`
        )
