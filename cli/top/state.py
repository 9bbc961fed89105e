"""The aggregated state behind `flowscope top`: flows counted into rows, and snapshots of it for frames.

The ingest thread calls `add` once per response and only bumps counters; the screen takes a `Snapshot` 4-10
times a second. Counts per row are kept in one numpy matrix of one-second buckets (a ring of RING seconds), so
the rates over 2, 10 and 40 s of 10,000 rows are one gather and three sums across seconds, not a Python loop;
a flow costs a dict lookup and a few scalar increments.

Buckets go by the flow's own time, so a backfill (`--since 40s`) lands in the seconds it happened in and the
40 s column is right at once. "Now" is our clock, moved forward when flows arrive from the future (a server
clock ahead of ours: by the largest flow time − arrival time seen, so they still count as live). It is never
moved back for flows that look old: in a quiet stream or a backfill that is what they are, and taking them
for a slow server clock would show stale flows as current. A server behind ours shows its flows as old as
they look.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.top.grouping import RowKey, row_key

WINDOWS = (2, 10, 40)  # seconds of the rate columns
RING = WINDOWS[-1] + 2  # the longest window, the partial second at its far end, and the current second


@dataclass
class Nodes:
    """What the relay said about its nodes (NodeStatusEvents), and the nodes flows came from."""

    connected: set[str] = field(default_factory=set)
    unavailable: dict[str, str] = field(default_factory=dict)  # node → why ("unavailable" or the error)
    seen: set[str] = field(default_factory=set)
    relayed: bool = False  # any NodeStatusEvent at all: the server is a relay

    def update(self, status: relay_pb2.NodeStatusEvent) -> None:
        self.relayed = True
        for node in status.node_names:
            if status.state_change == relay_pb2.NODE_CONNECTED:
                self.connected.add(node)
                self.unavailable.pop(node, None)
            elif status.state_change in (relay_pb2.NODE_UNAVAILABLE, relay_pb2.NODE_ERROR):
                self.connected.discard(node)
                self.unavailable[node] = status.message or "unavailable"
            elif status.state_change == relay_pb2.NODE_GONE:
                self.connected.discard(node)
                self.unavailable.pop(node, None)

    def copy(self) -> Nodes:
        return Nodes(set(self.connected), dict(self.unavailable), set(self.seen), self.relayed)


@dataclass(frozen=True)
class Snapshot:
    """Every row's numbers at one moment, copied out so a frame (or a paused screen) reads them unlocked."""

    now: float
    keys: list[RowKey]
    rates: np.ndarray  # (len(WINDOWS), rows) flows per second
    total: np.ndarray  # flows per row
    packets: np.ndarray  # packets and bytes carried by the row's aggregated flows
    bytes: np.ndarray
    aggregated: np.ndarray  # the row had aggregated flows (its packets and bytes mean something)
    last_seen: np.ndarray  # flow time of the newest flow, seconds
    drop: np.ndarray
    flows: int
    drops: int
    lost: int
    nodes: Nodes
    error: str | None

    def __len__(self) -> int:
        return len(self.keys)


class FlowTable:
    """Flows grouped by RowKey. Thread-safe: one writer (the ingest thread), snapshots from the screen.

    Per-row counters are Python lists (a list increment costs a tenth of a numpy scalar one, and there are
    several per flow), turned into arrays once per snapshot; the buckets are numpy, for the rates."""

    def __init__(self, clock: Callable[[], float] = time.time, capacity: int = 1024) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._index: dict[RowKey, int] = {}
        self._keys: list[RowKey] = []
        self._buckets = np.zeros((RING, capacity), np.int32)  # second-major: a second's counts are contiguous
        self._total: list[int] = []
        self._packets: list[int] = []
        self._bytes: list[int] = []
        self._aggregated: list[bool] = []
        self._last_seen: list[float] = []
        self._drop: list[bool] = []
        self._head: int | None = None  # the newest second the buckets hold
        self._offset = 0.0  # how far the server's clock is ahead of ours, as far as flows show
        self.flows = 0
        self.drops = 0
        self.lost = 0
        self.nodes = Nodes()
        self.error: str | None = None

    def add(self, response: observer_pb2.GetFlowsResponse) -> None:
        """Count one GetFlowsResponse: a flow into its row, lost events and node status into the footer."""
        kind = response.WhichOneof("response_types")
        if kind == "flow":
            self.add_flow(response.flow)
        elif kind == "lost_events":
            with self._lock:
                self.lost += response.lost_events.num_events_lost
                self.error = None
        elif kind == "node_status":
            with self._lock:
                self.nodes.update(response.node_status)
                self.error = None

    def add_flow(self, flow: flow_pb2.Flow) -> None:
        key = row_key(flow)  # the costly part, outside the lock
        stamp = flow.time.seconds + flow.time.nanos / 1e9 if flow.HasField("time") else None
        extra = flow.flowscope
        node = flow.node_name
        with self._lock:
            arrival = self._clock()
            if stamp is None:
                stamp = arrival + self._offset
            elif stamp - arrival > self._offset:
                self._offset = stamp - arrival
            row = self._index.get(key)
            if row is None:
                row = self._new_row(key)
            second = math.floor(stamp)
            if self._head is None or second > self._head:
                self._advance(second)
            elif self._head - second >= RING - 1:
                second = -1  # older than every window: counted in the total only
            if second >= 0:
                self._buckets[second % RING, row] += 1
            self._total[row] += 1
            if stamp > self._last_seen[row]:
                self._last_seen[row] = stamp
            if extra.aggregated:
                self._aggregated[row] = True
                self._packets[row] += extra.packets
                self._bytes[row] += extra.bytes
            self.flows += 1
            self.drops += key.drop
            if node:
                self.nodes.seen.add(node)
            self.error = None

    def set_error(self, message: str) -> None:
        with self._lock:
            self.error = message

    def _new_row(self, key: RowKey) -> int:
        row = len(self._keys)
        if row == self._buckets.shape[1]:  # double the buckets (amortised: 10,000 rows cost four copies)
            buckets = np.zeros((RING, 2 * row), np.int32)
            buckets[:, :row] = self._buckets
            self._buckets = buckets
        self._index[key] = row
        self._keys.append(key)
        self._total.append(0)
        self._packets.append(0)
        self._bytes.append(0)
        self._aggregated.append(False)
        self._last_seen.append(0.0)
        self._drop.append(key.drop)
        return row

    def _advance(self, second: int) -> None:
        """Move the newest second forward, emptying the buckets of the seconds it passes over."""
        if self._head is not None:
            passed = min(second - self._head, RING)
            seconds = [(self._head + step) % RING for step in range(1, passed + 1)]
            self._buckets[seconds] = 0
        self._head = second

    def snapshot(self) -> Snapshot:
        """The numbers of every row now; O(rows) numpy work, no Python loop over rows."""
        with self._lock:
            rows = len(self._keys)
            now = self._clock() + self._offset
            if self._head is not None:
                now = max(now, float(self._head))
                if math.floor(now) > self._head:
                    self._advance(math.floor(now))
            rates = self._rates(rows, now)
            snapshot = Snapshot(
                now=now,
                keys=self._keys[:rows],
                rates=rates,
                total=np.array(self._total, np.int64),
                packets=np.array(self._packets, np.int64),
                bytes=np.array(self._bytes, np.int64),
                aggregated=np.array(self._aggregated, bool),
                last_seen=np.array(self._last_seen, np.float64),
                drop=np.array(self._drop, bool),
                flows=self.flows,
                drops=self.drops,
                lost=self.lost,
                nodes=self.nodes.copy(),
                error=self.error,
            )
        return snapshot

    def _rates(self, rows: int, now: float) -> np.ndarray:
        """Flows per second over each window ending now: the current (partial) second, the whole seconds
        before it, and the part of the oldest second the window still covers, so rates glide, not jump."""
        rates = np.zeros((len(WINDOWS), rows))
        if self._head is None or rows == 0:
            return rates
        second = math.floor(now)
        fraction = now - second
        newest_first = [(second - back) % RING for back in range(RING)]
        counts = self._buckets[newest_first, :rows]
        for index, window in enumerate(WINDOWS):
            whole = counts[:window].sum(axis=0, dtype=np.int64)  # vector additions across seconds, not a row loop
            rates[index] = (whole + (1.0 - fraction) * counts[window]) / window
        return rates


def sort_order(snapshot: Snapshot, sort: str, window: int) -> np.ndarray:
    """Row indexes in display order for a sort key (`rate`, `last`, `drops`, `total`); ties keep the order
    rows first appeared in, so equal rows never swap places between frames."""
    rate = snapshot.rates[window]
    if sort == "last":
        primary: list[np.ndarray] = [-snapshot.last_seen]
    elif sort == "drops":
        primary = [~snapshot.drop, -rate, -snapshot.total]
    elif sort == "total":
        primary = [-snapshot.total]
    else:
        primary = [-rate, -snapshot.total]
    arrival = np.arange(len(snapshot))
    return np.lexsort([arrival, *reversed(primary)])
