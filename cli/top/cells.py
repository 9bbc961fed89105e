"""The columns of `flowscope top` and the words in their cells: fixed widths, counts in 6 characters, rates,
ages and latencies, sparklines, and the layout that drops the least needed columns first on a narrow screen.

Every column has a fixed width except the names (and the L7 view's request), which share what is left, so a
row is one line of text cut and padded to those widths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.cells import cell_len, set_cell_size

MIN_NAME = 14  # narrowest shared column before the extra columns (40 s rate, packets, bytes, 2 s rate) go
NARROW_NAME = 8  # ... and before the reason, flows and last-seen columns go: at 80 columns they stay

Cell = tuple[str, str]  # text and style
BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Column:
    title: str
    width: int  # 0: shares what the fixed columns leave
    right: bool = False
    drop_rank: int = 0  # removed first when the screen is narrow (higher goes first); 0 stays
    min_name: int = MIN_NAME  # it gives way only while the names would be narrower than this
    share: int = 1  # of a shared column: how many names' widths it takes (the L7 request takes two)


def layout(width: int, candidates: Sequence[Column]) -> tuple[list[Column], int]:
    """The columns that fit `width` and the width of a name (a shared column takes `share` of those)."""
    columns = list(candidates)
    shared = max(1, sum(column.share for column in columns if not column.width))
    while True:
        fixed = sum(column.width + 1 for column in columns if column.width) + 2
        name_width = (width - fixed) // shared
        optional = [column for column in columns if column.drop_rank and name_width < column.min_name]
        if not optional:
            return columns, max(name_width, 6)
        columns.remove(max(optional, key=lambda column: column.drop_rank))


def human(value: float) -> str:
    """A count in at most 6 characters: 950, 12.3k, 4.5M, 1.2G."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def rate(value: float) -> Cell:
    """Flows per second, with two decimals below 1 (a connection seen once in 40 s is 0.03, not 0.0)."""
    if value <= 0:
        return ("·", "dim")
    if value < 1:
        return (f"{value:.2f}", "")
    return (f"{value:.1f}" if value < 100 else human(value), "")


def age(seconds: float) -> str:
    if seconds < 1:
        return "now"
    for limit, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= limit:
            return f"{seconds // limit:.0f}{unit}"
    return f"{seconds:.0f}s"


def duration(nanoseconds: float) -> Cell:
    """A latency in at most 6 characters (`850µs`, `12.3ms`, `1.20s`); `-` when there is none."""
    if math.isnan(nanoseconds):
        return ("-", "dim")
    for limit, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if nanoseconds >= limit:
            value = nanoseconds / limit
            return (
                f"{value:.2f}{unit}" if value < 10 else f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}",
                "",
            )
    return (f"{nanoseconds:.0f}ns", "")


def cut(text: str, width: int) -> str:
    """At most `width` terminal cells: cut short with an ellipsis, never padded."""
    return text if cell_len(text) <= width else set_cell_size(text, max(width - 1, 0)) + "…"


def fit(text: str, width: int, right: bool = False) -> str:
    """Exactly `width` terminal cells: cut short with an ellipsis, or padded."""
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…"
    padding = " " * (width - length)
    return padding + text if right else text + padding


def sparkline(counts: np.ndarray, width: int) -> str:
    """One row's counts per second (oldest first) in `width` characters: see `sparklines`."""
    return sparklines(counts.reshape(-1, 1), width)[0]


def sparklines(counts: np.ndarray, width: int) -> list[str]:
    """Counts per second of several rows (seconds x rows, oldest first) drawn in `width` characters each, a
    bar being the sum of an equal share of the seconds (60 s in 15: 4 s a bar); all rows at once, in numpy,
    since a frame draws one per visible row. Bars are scaled to the row's own busiest bar, since a row is read
    for its shape (steady, bursty, stopped) while the rate columns compare rows; a bar with no flows is blank,
    so one flow is never mistaken for silence."""
    seconds, rows = counts.shape
    if not seconds:
        return [" " * width] * rows
    edges = np.linspace(0, seconds, width + 1).astype(np.int64)[:-1]
    sums = np.add.reduceat(counts.astype(np.int64), edges, axis=0)  # (width, rows)
    top = np.maximum(sums.max(axis=0), 1)
    levels = np.ceil(sums * len(BARS) / top).astype(np.int64)  # 1..8 for any count above zero, 0 for none
    return ["".join(bars) for bars in _GLYPHS[levels].T.tolist()]


_GLYPHS = np.array([" ", *BARS])
