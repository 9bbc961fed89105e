"""Counts per row in one-second buckets, and rates over 2, 10 and 40 s from them: the one mechanism behind
the rate columns of every view of `flowscope top`, and behind its sparklines (the last minute, second by second).

The buckets are one numpy matrix (a ring of RING seconds by rows), so the rates of 10,000 rows are one gather
and three sums across seconds, not a Python loop. Buckets go by the flow's own time, so a backfill lands in the
seconds it happened in. Not thread-safe on its own: its table's lock guards it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WINDOWS = (2, 10, 40)  # seconds of the rate columns
HISTORY = 60  # whole seconds a sparkline shows
RING = HISTORY + 2  # the sparkline's minute (it covers the longest window), the current second, and one spare
_RATE_SECONDS = WINDOWS[-1] + 1  # the longest window and the partial second at its far end


class Buckets:
    """Per-row counts of the last RING seconds."""

    def __init__(self, capacity: int) -> None:
        self._counts = np.zeros((RING, capacity), np.int32)  # second-major: a second's counts are contiguous
        self.head: int | None = None  # the newest second the buckets hold

    def make_room(self, rows: int) -> None:
        """Room for `rows` rows: the matrix doubles when full (10,000 rows cost four copies)."""
        capacity = self._counts.shape[1]
        if rows > capacity:
            counts = np.zeros((RING, max(rows, 2 * capacity)), np.int32)
            counts[:, :capacity] = self._counts
            self._counts = counts

    def count(self, row: int, stamp: float) -> None:
        """One more in `row` at `stamp` (seconds); older than every window, it counts in no rate."""
        second = math.floor(stamp)
        if self.head is None or second > self.head:
            self.advance(second)
        elif self.head - second >= RING - 1:
            return
        self._counts[second % RING, row] += 1

    def advance(self, second: int) -> None:
        """Move the newest second forward, emptying the buckets of the seconds it passes over."""
        if self.head is not None:
            if second <= self.head:
                return
            passed = min(second - self.head, RING)
            self._counts[[(self.head + step) % RING for step in range(1, passed + 1)]] = 0
        self.head = second

    def rates(self, rows: int, now: float) -> np.ndarray:
        """(len(WINDOWS), rows) counts per second over each window ending now: the current (partial) second,
        the whole seconds before it, and the part of the oldest second the window still covers, so rates
        glide, not jump."""
        rates = np.zeros((len(WINDOWS), rows))
        if self.head is None or rows == 0:
            return rates
        self.advance(math.floor(now))
        second = math.floor(now)
        fraction = now - second
        newest_first = [(second - back) % RING for back in range(_RATE_SECONDS)]
        counts = self._counts[newest_first, :rows]
        for index, window in enumerate(WINDOWS):
            whole = counts[:window].sum(axis=0, dtype=np.int64)  # vector additions across seconds, not a row loop
            rates[index] = (whole + (1.0 - fraction) * counts[window]) / window
        return rates

    def history(self, rows: int, now: float) -> History:
        """The last HISTORY whole seconds of every row, for the sparklines of the rows a frame shows: a copy of
        the ring (one contiguous copy per second, ~0.1 ms for 10,000 rows), read later without the lock."""
        second = math.floor(now)
        if self.head is not None:
            self.advance(second)  # the seconds passed since the last flow are empty, not last minute's
        return History(self._counts[:, :rows].copy(), second)


@dataclass(frozen=True)
class History:
    """Per-second counts of the last minute, as they were at a snapshot."""

    counts: np.ndarray  # (RING, rows), second s at s % RING
    second: int  # the current (partial) second, left out: its count is still growing

    def of(self, row: int) -> np.ndarray:
        """The row's counts of the HISTORY whole seconds before the current one, oldest first."""
        return self.of_rows(np.array([row]))[:, 0]

    def of_rows(self, rows: np.ndarray) -> np.ndarray:
        """(HISTORY, len(rows)) counts of those rows, oldest second first: a frame's visible rows at once."""
        seconds = np.array([(self.second - back) % RING for back in range(HISTORY, 0, -1)])
        return self.counts[seconds[:, None], rows]
