"""Kernel timestamps to wall-clock time.

bpf_ktime_get_ns() counts CLOCK_MONOTONIC; flows carry wall-clock time. The offset between the two is read
together and refreshed every second, so a clock step or NTP slew reaches flows within a second.
"""

from __future__ import annotations

import time


class WallClock:
    def __init__(self) -> None:
        self.offset_ns = 0
        self.refresh()

    def refresh(self) -> None:
        """Read both clocks back to back (the smallest gap of a few tries) and keep their difference."""
        best_gap, offset = None, 0
        for _ in range(3):
            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            wall = time.time_ns()
            after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            gap = after - before
            if best_gap is None or gap < best_gap:
                best_gap, offset = gap, wall - (before + after) // 2
        self.offset_ns = offset
