"""The aggregated state behind `flowscope top`: flows counted into rows, and snapshots of it for frames.

The ingest thread calls `add` once per response and only bumps counters; the screen takes a `Snapshot` 4-10
times a second. Counts per row are kept in one-second buckets (buckets.py), so the rates over 2, 10 and 40 s of
10,000 rows are a few numpy sums, not a Python loop; a flow costs a dict lookup and a few scalar increments.
L3/L4 flows count in connection rows (grouping.row_key); L7 flows (DNS, HTTP) in rows of their own (l7table.py),
never in both: the datapath reports an L7 message's packet as an L3/L4 flow too, and counting it twice would
double that connection's rate.

Buckets go by the flow's own time, so a backfill (`--since 40s`) lands in the seconds it happened in and the
40 s column is right at once. "Now" is our clock, moved forward when flows arrive from the future (a server
clock ahead of ours: by the largest flow time − arrival time seen, so they still count as live). It is never
moved back for flows that look old: in a quiet stream or a backfill that is what they are, and taking them
for a slow server clock would show stale flows as current. A server behind ours shows its flows as old as
they look. The same buckets, a minute of them, draw each row's sparkline.

The latest flows of one connection (Enter on its row) come from a ring of the last RECENT flows of every row,
taken when the row is opened, and from the flows of that row alone after it: a flow costs one append, and a
quiet connection opened in a busy stream still shows what came after (never more than SHOWN flows kept).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.top.buckets import WINDOWS, Buckets, History
from flowscope.cli.top.grouping import RowKey, l7_message, row_key
from flowscope.cli.top.l7table import L7Snapshot, L7Table

__all__ = ["WINDOWS", "FlowTable", "Nodes", "Snapshot", "sort_order"]

RECENT = 2048  # flows of every row kept, to open a row with the flows it already had
SHOWN = 50  # flows of the opened row kept


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
    l7: L7Snapshot  # the L7 rows, for the L7 view and the connections' L7 column
    history: History  # the last minute of every row, second by second: the sparklines

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
        self._buckets = Buckets(capacity)
        self._total: list[int] = []
        self._packets: list[int] = []
        self._bytes: list[int] = []
        self._aggregated: list[bool] = []
        self._last_seen: list[float] = []
        self._drop: list[bool] = []
        self.l7 = L7Table()
        self._offset = 0.0  # how far the server's clock is ahead of ours, as far as flows show
        self.flows = 0
        self.drops = 0
        self.lost = 0
        self.nodes = Nodes()
        self.error: str | None = None
        self._recent: deque[tuple[int, flow_pb2.Flow]] = deque(maxlen=RECENT)
        self._opened: RowKey | None = None  # the row whose flows are kept (Enter)
        self._opened_row = -1  # its index, once it has one
        self._opened_flows: deque[flow_pb2.Flow] = deque(maxlen=SHOWN)

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
        if flow.Type == flow_pb2.L7:
            self._add_l7(flow)
            return
        key = row_key(flow)  # the costly part, outside the lock
        stamp = flow.time.seconds + flow.time.nanos / 1e9 if flow.HasField("time") else None
        extra = flow.flowscope
        node = flow.node_name
        with self._lock:
            stamp = self._stamp(stamp)
            row = self._index.get(key)
            if row is None:
                row = self._new_row(key)
            self._buckets.count(row, stamp)
            self._total[row] += 1
            if stamp > self._last_seen[row]:
                self._last_seen[row] = stamp
            self._recent.append((row, flow))
            if row == self._opened_row:
                self._opened_flows.append(flow)
            if extra.aggregated:
                self._aggregated[row] = True
                self._packets[row] += extra.packets
                self._bytes[row] += extra.bytes
            self.flows += 1
            self.drops += key.drop
            if node:
                self.nodes.seen.add(node)
            self.error = None

    def _add_l7(self, flow: flow_pb2.Flow) -> None:
        message = l7_message(flow)  # outside the lock, as row_key
        stamp = flow.time.seconds + flow.time.nanos / 1e9 if flow.HasField("time") else None
        node = flow.node_name
        with self._lock:
            self.l7.add(message, self._stamp(stamp))
            self.flows += 1
            if node:
                self.nodes.seen.add(node)
            self.error = None

    def _stamp(self, stamp: float | None) -> float:
        """The flow's time, or now on the server's clock for a flow without one; a flow from the future moves
        the offset to the server's clock forward (called under the lock)."""
        arrival = self._clock()
        if stamp is None:
            return arrival + self._offset
        if stamp - arrival > self._offset:
            self._offset = stamp - arrival
        return stamp

    def open(self, key: RowKey | None) -> None:
        """Keep the flows of the row `key` (None: of none) from now on, starting with those of the last RECENT
        flows that were its."""
        with self._lock:
            self._opened = key
            self._opened_row = self._index.get(key, -1) if key is not None else -1
            row = self._opened_row
            self._opened_flows = deque((flow for seen, flow in self._recent if seen == row >= 0), maxlen=SHOWN)

    @property
    def opened(self) -> RowKey | None:
        return self._opened

    def opened_flows(self) -> list[flow_pb2.Flow]:
        """The opened row's latest flows, oldest first."""
        with self._lock:
            return list(self._opened_flows)

    def set_error(self, message: str) -> None:
        with self._lock:
            self.error = message

    def _new_row(self, key: RowKey) -> int:
        row = len(self._keys)
        self._buckets.make_room(row + 1)
        self._index[key] = row
        self._keys.append(key)
        if key == self._opened:
            self._opened_row = row  # opened before its first flow (a new filter's table)
        self._total.append(0)
        self._packets.append(0)
        self._bytes.append(0)
        self._aggregated.append(False)
        self._last_seen.append(0.0)
        self._drop.append(key.drop)
        return row

    def snapshot(self) -> Snapshot:
        """The numbers of every row now; O(rows) numpy work, no Python loop over rows."""
        with self._lock:
            rows = len(self._keys)
            now = self._clock() + self._offset
            heads = [float(head) for head in (self._buckets.head, self.l7.head) if head is not None]
            now = max([now, *heads])  # never behind the newest second counted
            rates = self._buckets.rates(rows, now)
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
                l7=self.l7.snapshot(now),
                history=self._buckets.history(rows, now),
            )
        return snapshot


class Rows(Protocol):
    """What ordering reads of a view's rows: a Snapshot (connections) or an L7Snapshot."""

    @property
    def rates(self) -> np.ndarray: ...
    @property
    def total(self) -> np.ndarray: ...
    @property
    def last_seen(self) -> np.ndarray: ...
    @property
    def drop(self) -> np.ndarray: ...  # rows to put first for `drops` (L7: rows with errors)

    def __len__(self) -> int: ...


def sort_order(snapshot: Rows, sort: str, window: int) -> np.ndarray:
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
