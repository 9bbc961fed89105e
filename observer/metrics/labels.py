"""A label's values over a batch, as numbers: what lets a batch be counted without a Python step per flow.

A `Column` is one label of every record of a batch: an integer code per record and the table of strings the
codes stand for. Columns are made from record columns with numpy (a lookup table indexed by a small number,
or `np.unique` over a wide one) and combined the same way, so only the distinct values of a batch ever become
Python strings. `LabelledCounter` then counts a batch's rows by their distinct label sets: one `np.unique`
over the stacked codes and one counter increment per distinct set, however many flows share it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

DEFAULT_LABEL_SETS = 10_000  # distinct label sets one metric may have: a bound on the agent's memory and scrape
_BINCOUNT_LIMIT = 1 << 16  # numbers small enough to count in an array indexed by them, instead of sorting
_RADIX_LIMIT = 1 << 62


@dataclass(frozen=True)
class Column:
    """A label over a batch: `values[codes[i]]` is record i's value."""

    codes: np.ndarray
    values: Sequence[str]

    @classmethod
    def constant(cls, value: str, length: int) -> Column:
        return cls(np.zeros(length, dtype=np.int64), (value,))

    @classmethod
    def of(cls, raw: np.ndarray, name: Callable[[int], str]) -> Column:
        """A label named from an integer column: each distinct number named once."""
        raw = np.asarray(raw)
        if len(raw) and 0 <= raw.min() and raw.max() < _BINCOUNT_LIMIT:  # small numbers: no sort needed
            present = np.flatnonzero(np.bincount(raw))
            lookup = np.zeros(int(present[-1]) + 1, dtype=np.int64)
            lookup[present] = np.arange(len(present))
            return cls(lookup[raw], [name(number) for number in present.tolist()])
        distinct, codes = np.unique(raw, return_inverse=True)
        return cls(codes.reshape(-1), [name(int(number)) for number in distinct.tolist()])

    @classmethod
    def table(cls, raw: np.ndarray, names: Sequence[str]) -> Column:
        """A label from a small integer column and the names of its possible values, indexed by it."""
        return cls(np.asarray(raw, dtype=np.int64), names)

    def rows(self, rows: np.ndarray) -> Column:
        return Column(self.codes[rows], self.values)

    def is_empty(self) -> np.ndarray:
        """Which records' value is "" (what a context option gives when it knows nothing)."""
        empty = np.fromiter((value == "" for value in self.values), dtype=bool, count=len(self.values))
        return empty[self.codes]

    def otherwise(self, fallback: Column) -> Column:
        """This column where it has a value, `fallback` where it is "" (the `|` of a context option)."""
        offset = len(self.values)
        codes = np.where(self.is_empty(), fallback.codes + offset, self.codes)
        return Column(codes, [*self.values, *fallback.values])


def distinct_rows(columns: Sequence[Column]) -> list[tuple[tuple[int, ...], int]]:
    """The distinct code tuples of the columns' rows, and how many rows have each.

    The codes are combined into one number per row (mixed radix: each column's codes times the product of the
    sizes of the columns after it), so the distinct rows are the distinct numbers: counted with bincount when
    the sets are few enough, else with a one-dimensional np.unique; a structured np.unique (axis=0) sorts
    several times slower."""
    sizes = [max(1, len(column.values)) for column in columns]
    total = 1
    for size in sizes:
        total *= size
    if total >= _RADIX_LIMIT:
        stacked = np.stack([column.codes for column in columns], axis=1)
        rows, counts = np.unique(stacked, axis=0, return_counts=True)
        return [(tuple(row), count) for row, count in zip(rows.tolist(), counts.tolist(), strict=True)]
    number = np.zeros(len(columns[0].codes), dtype=np.int64)
    for column, size in zip(columns, sizes, strict=True):
        number *= size
        number += column.codes
    if total <= _BINCOUNT_LIMIT:
        tally = np.bincount(number, minlength=total)
        present = np.flatnonzero(tally)
        numbers, counts = present.tolist(), tally[present].tolist()
    else:
        distinct, tallies = np.unique(number, return_counts=True)
        numbers, counts = distinct.tolist(), tallies.tolist()
    result = []
    for value, count in zip(numbers, counts, strict=True):
        codes = []
        for size in reversed(sizes):
            value, code = divmod(value, size)
            codes.append(code)
        result.append((tuple(reversed(codes)), count))
    return result


class LabelledCounter:
    """A prometheus Counter (or Histogram) with a bound on its label sets, counted a batch at a time.

    Beyond `limit` distinct label sets, new ones are not made: their flows are added to `overflow` (labelled
    with the metric's name) and a line is logged once, so a context such as `ip` on a busy node cannot grow
    the agent's memory and every scrape without end."""

    def __init__(
        self,
        metric: Counter | Histogram,
        name: str,
        overflow: Counter,
        limit: int = DEFAULT_LABEL_SETS,
    ) -> None:
        self._metric = metric
        self.name = name
        self._overflow = overflow.labels(name)
        self._limit = limit
        self._children: dict[tuple[str, ...], object] = {}
        self._warned = False
        self._lock = threading.Lock()

    def add(self, columns: Sequence[Column]) -> None:
        """Count every row of the columns (all of one length) under its label set."""
        if not len(columns[0].codes):
            return
        for codes, count in distinct_rows(columns):
            child = self.child(tuple(column.values[code] for column, code in zip(columns, codes, strict=True)))
            if child is not None:
                child.inc(count)  # type: ignore[attr-defined]
            else:
                self._overflow.inc(count)

    def observe(self, values: tuple[str, ...], amount: float) -> None:
        """One observation of a histogram (per L7 message, which are few)."""
        child = self.child(values)
        if child is None:
            self._overflow.inc()
        else:
            child.observe(amount)  # type: ignore[attr-defined]

    def inc(self, values: tuple[str, ...], amount: int = 1) -> None:
        child = self.child(values)
        if child is None:
            self._overflow.inc(amount)
        else:
            child.inc(amount)  # type: ignore[attr-defined]

    def child(self, values: tuple[str, ...]) -> object | None:
        """The metric's child for one label set, made on first use; None once the bound is reached."""
        child = self._children.get(values)
        if child is not None:
            return child
        with self._lock:
            if len(self._children) >= self._limit:
                if not self._warned:
                    log.warning(
                        "metric %s reached %d label sets: flows with new label sets are counted in"
                        " flowscope_metrics_label_sets_overflow_total{metric=%r} instead",
                        self.name,
                        self._limit,
                        self.name,
                    )
                    self._warned = True
                return None
            child = self._children[values] = self._metric.labels(*values)
        return child
