"""drop: `hubble_drop_total{reason, protocol}`, flows whose verdict is DROPPED.

As in Hubble, every dropped flow counts: a drop event, and the policy verdict event a denied packet also gives.
The reason is flow.DropReason's name ("POLICY_DENIED"); a drop the kernel made (skb:kfree_skb, which Hubble
does not see) is named by the running kernel ("NO_SOCKET", the flow's flowscope.kernel_drop_reason), where
Hubble would have only DROP_REASON_UNKNOWN to say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.events import F_KERNEL_DROP
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.handler import Handler
from flowscope.observer.metrics.labels import Column

_KERNEL = 1 << 32
_ENUM_MAX = 0x7FFF_FFFF


def reason_namer(kernel_reasons: Mapping[int, str]) -> Callable[[int], str]:
    """The name of a drop reason key: a Cilium code, or a kernel reason with _KERNEL added."""

    def name(key: int) -> str:
        if key >= _KERNEL:
            return kernel_reasons.get(key - _KERNEL, str(key - _KERNEL))
        if key > _ENUM_MAX:
            return flow_pb2.DropReason.Name(0)
        return flow_pb2.DropReason.Name(key) if key in flow_pb2.DropReason.values() else str(key)

    return name


def drop_reasons(batch: MetricsBatch, rows: np.ndarray) -> Column:
    records = batch.records[rows]
    kernel = (records["flags"] & F_KERNEL_DROP) != 0
    keys = records["drop_reason"].astype(np.int64) + kernel * _KERNEL
    return Column.of(keys, reason_namer(batch.sources.kernel_reasons))


class DropHandler(Handler):
    name = "drop"

    def setup(self) -> None:
        self.drops = self.counter("drop_total", "Number of drops", ["reason", "protocol"])

    def count(self, batch: MetricsBatch) -> None:
        rows = np.flatnonzero(batch.verdicts == flow_pb2.DROPPED)
        if len(rows):
            self.add(self.drops, batch, rows, [drop_reasons(batch, rows), batch.protocols.rows(rows)])
