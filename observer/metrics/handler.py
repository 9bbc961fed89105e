"""What every metric handler shares: its options checked, its context labels, its metrics made and counted.

A handler is Hubble's: one `--metrics` name, one or a few metric families under `hubble_`, a test of which
flows it counts and the labels it counts them by. Here it works on a whole batch (`count(batch)`): it picks
its rows with a boolean mask, makes its own label columns for those rows, and hands them with the context
labels to a LabelledCounter, which increments once per distinct label set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from flowscope.api.flow import flow_pb2
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.context import CONTEXT_KEYS, UNSUPPORTED_KEYS, ContextOptions
from flowscope.observer.metrics.labels import DEFAULT_LABEL_SETS, Column, LabelledCounter
from flowscope.observer.metrics.options import MetricsOptionError

NAMESPACE = "hubble"
# flow.Verdict's names for every value a record's byte can hold (a number Go's String() would print as such).
VERDICTS = tuple(flow_pb2.Verdict.Name(n) if n in flow_pb2.Verdict.values() else str(n) for n in range(256))


class Handler:
    """A metric handler: `name` is its `--metrics` word, `option_keys` the options it takes beyond context."""

    name: ClassVar[str]
    option_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        options: Mapping[str, str],
        registry: CollectorRegistry,
        overflow: Counter,
        limit: int = DEFAULT_LABEL_SETS,
    ) -> None:
        for key in options:
            if key not in (*CONTEXT_KEYS, *UNSUPPORTED_KEYS, *self.option_keys):
                accepted = ", ".join((*CONTEXT_KEYS, *self.option_keys))
                raise MetricsOptionError(f"--metrics: {self.name} has no option {key!r} (it takes {accepted})")
        self.options = dict(options)
        self.context = ContextOptions(options, self.name)
        self._registry = registry
        self._overflow = overflow
        self._limit = limit
        self.setup()

    def setup(self) -> None:
        """Make the handler's metrics (with `counter` and `histogram`) and read its own options."""
        raise NotImplementedError

    def counter(self, name: str, documentation: str, labels: Sequence[str]) -> LabelledCounter:
        """A counter `hubble_<name>` labelled with the context labels, then `labels`."""
        metric = Counter(
            name, documentation, [*self.context.names, *labels], namespace=NAMESPACE, registry=self._registry
        )
        return LabelledCounter(metric, f"{NAMESPACE}_{name}", self._overflow, self._limit)

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> LabelledCounter:
        metric = Histogram(
            name,
            documentation,
            [*self.context.names, *labels],
            namespace=NAMESPACE,
            registry=self._registry,
            buckets=buckets,
        )
        return LabelledCounter(metric, f"{NAMESPACE}_{name}", self._overflow, self._limit)

    def count(self, batch: MetricsBatch) -> None:
        raise NotImplementedError

    def add(self, metric: LabelledCounter, batch: MetricsBatch, rows: np.ndarray, columns: Sequence[Column]) -> None:
        """Count the rows (indices into the batch) by the context labels and `columns` (cut to those rows)."""
        if not len(rows):
            return
        context = [column.rows(rows) for column in self.context_columns(batch)]
        metric.add([*context, *columns])

    def context_columns(self, batch: MetricsBatch) -> list[Column]:
        """The context labels over the whole batch, made once per batch for this handler."""
        return batch.memo(("context", id(self)), lambda: self.context.columns(batch))

    def context_values(self, batch: MetricsBatch, row: int) -> tuple[str, ...]:
        """The context labels of one record (for the L7 handlers, which count message by message)."""
        return tuple(column.values[column.codes[row]] for column in self.context_columns(batch))
