"""drop_reason_desc: dropped flows by Cilium drop reason.

Kernel drops (F_KERNEL_DROP) carry the kernel's own reason, which is not a Cilium one: their drop_reason_desc
is DROP_REASON_UNKNOWN, so that is what they match.
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.events import F_KERNEL_DROP
from flowscope.observer.filters.base import Batch, FilterContext, Predicate


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.drop_reason_desc:
        return []
    wanted = np.array(list(ff.drop_reason_desc), dtype=np.int64)

    def by_drop_reason(batch: Batch) -> np.ndarray:
        records = batch.records
        kernel = (records["flags"] & F_KERNEL_DROP) != 0
        reason = np.where(kernel, 0, records["drop_reason"])
        return (records["verdict"] == flow_pb2.DROPPED) & np.isin(reason, wanted)

    return [by_drop_reason]
