"""The ingest subscriber that counts: every batch, every handler, on the ingest thread.

Counting is quick (a few numpy passes over the batch's columns and one increment per distinct label set), so it
runs inline, as observer/subscribers.py allows for quick subscribers; it never blocks (a scrape reads the
counters under prometheus-client's own short locks). It also counts the events ingested, by where they came
from and their kind, for the agent's own metrics. A handler that fails on a batch is logged (once per handler)
and skipped: counting must never stop ingest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from flowscope.common.names import EVENT_L7, EVENT_TYPES
from flowscope.observer.events import F_KERNEL_DROP
from flowscope.observer.metrics.batch import MetricsBatch, Sources
from flowscope.observer.metrics.handler import Handler

log = logging.getLogger(__name__)

_TYPE_NAMES = {number: name for name, number in EVENT_TYPES.items()}


class IngestedCounts:
    """Events ingested, by source (datapath, kernel-drops, l7) and event type: read by the agent's collector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, batch: np.ndarray) -> None:
        kernel = (batch["flags"] & F_KERNEL_DROP) != 0
        l7 = batch["type"] == EVENT_L7
        source = np.where(kernel, 1, np.where(l7, 2, 0))
        keys = source.astype(np.int64) * 256 + batch["type"]
        distinct, counts = np.unique(keys, return_counts=True)
        with self._lock:
            for key, count in zip(distinct.tolist(), counts.tolist(), strict=True):
                where, event_type = divmod(key, 256)
                label = (("datapath", "kernel-drops", "l7")[where], _TYPE_NAMES.get(event_type, str(event_type)))
                self._counts[label] = self._counts.get(label, 0) + count

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class MetricsSubscriber:
    """Counts each batch with every handler (observer/subscribers.py: a subscriber on the ingest thread)."""

    def __init__(self, handlers: Sequence[Handler], sources: Sources) -> None:
        self.handlers = list(handlers)
        self.sources = sources
        self.ingested = IngestedCounts()
        self._failed: set[str] = set()

    def __call__(self, records: np.ndarray) -> None:
        self.ingested.add(records)
        batch = MetricsBatch(records, self.sources)
        for handler in self.handlers:
            try:
                handler.count(batch)
            except Exception:  # one handler's bug must not stop ingest, nor the other handlers
                if handler.name not in self._failed:
                    self._failed.add(handler.name)
                    log.exception("metrics: handler %s failed on a batch (logged once)", handler.name)
