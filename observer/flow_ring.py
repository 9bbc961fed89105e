"""The flow ring: the last N events, stored as the raw records the kernel sent.

Why raw records: a decoded `flow.Flow` costs ~3 KB of memory and ~9 us to build, a record 248 bytes and
nothing to keep (docs/reference/design-notes.md, "Storage"). The ring is one preallocated numpy array; flows
are decoded only when a client asks for them.

One writer (the agent's ingest thread) appends batches; any number of readers copy out ranges by sequence
number without ever blocking it. Every stored event has a sequence number (its position in the stream since
the agent started); slot = seq & mask. A reader that was too slow finds its next sequence number already
overwritten and is told how many it missed, which its stream reports as a LostEvent.

Capacity is 2^n - 1 like Hubble's ring: the array has 2^n slots, one of them always being the next to write.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


def check_capacity(capacity: int) -> None:
    """Hubble's rule: 2^n - 1, from 1 to 65535 upwards (flowscope allows larger)."""
    if capacity < 1 or (capacity + 1) & capacity:
        raise ValueError(f"ring capacity must be 2^n-1 (1, 3, 7, ..., 65535), not {capacity}")


@dataclass(frozen=True)
class Chunk:
    """Records copied out of the ring: seq of the first, the records, and how many were lost before them."""

    first_seq: int
    records: np.ndarray
    lost: int = 0

    @property
    def end_seq(self) -> int:
        return self.first_seq + len(self.records)


class FlowRing:
    def __init__(self, capacity: int, dtype: np.dtype) -> None:
        check_capacity(capacity)
        self.capacity = capacity
        self._slots = np.zeros(capacity + 1, dtype=dtype)
        self._mask = capacity
        self._written = 0  # sequence number of the next record to be published
        self._reserved = 0  # sequence number up to which the writer may be overwriting slots
        self._changed = threading.Condition()

    # --- writer side -------------------------------------------------------------------------------------

    def write(self, batch: np.ndarray) -> None:
        """Append a batch; the oldest records make room. Only one thread may write."""
        n = len(batch)
        if n == 0:
            return
        start = self._written
        if n > self.capacity:  # only the newest fit; the rest are skipped, and readers count them as lost
            batch = batch[n - self.capacity :]
            start += n - self.capacity
        self._reserved = self._written + n
        slot = start & self._mask
        first = min(len(batch), len(self._slots) - slot)
        self._slots[slot : slot + first] = batch[:first]
        if first < len(batch):
            self._slots[: len(batch) - first] = batch[first:]
        with self._changed:
            self._written = self._written + n
            self._changed.notify_all()

    # --- reader side -------------------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Sequence number the next record will get: every record so far has a smaller one."""
        return self._written

    @property
    def oldest(self) -> int:
        """Sequence number of the oldest record still stored."""
        return max(0, self._written - self.capacity)

    def __len__(self) -> int:
        return min(self._written, self.capacity)

    def read(self, start: int, end: int) -> Chunk:
        """Copy records [start, end) out, clipped to what is stored; `lost` counts those overwritten."""
        end = min(end, self._written)
        lost = 0
        if start < self.oldest:
            # Only what this read asked for is lost to it, and the next read starts where this one ended: a
            # reader lapped by more than one read's worth counts every record it missed, one read at a time.
            skipped_to = min(self.oldest, end)
            lost = skipped_to - start
            start = skipped_to
        if end <= start:
            return Chunk(first_seq=max(start, end), records=self._slots[:0].copy(), lost=lost)
        records = self._take(start, end)
        # The writer may have overwritten the front of what we copied while we copied it: drop those.
        safe = self._reserved - self.capacity
        if safe > start:
            cut = min(safe, end) - start
            lost += cut
            records = records[cut:]
            start += cut
        return Chunk(first_seq=start, records=records, lost=lost)

    def _take(self, start: int, end: int) -> np.ndarray:
        slot = start & self._mask
        count = end - start
        if slot + count <= len(self._slots):
            return self._slots[slot : slot + count].copy()
        head = len(self._slots) - slot
        return np.concatenate((self._slots[slot:], self._slots[: count - head]))

    def column(self, name: str) -> np.ndarray:
        """One column of every stored record, oldest first (a copy; cheap, for statistics)."""
        seqs = np.arange(self.oldest, self._written, dtype=np.int64)
        return self._slots[name][seqs & self._mask]

    def wait(self, seq: int, timeout: float) -> bool:
        """Block until a record with sequence number >= seq is published, or the timeout passes."""
        with self._changed:
            return self._changed.wait_for(lambda: self._written > seq, timeout)

    def wake_all(self) -> None:
        """Wake every waiting reader (at shutdown), so follow streams can notice and end."""
        with self._changed:
            self._changed.notify_all()
