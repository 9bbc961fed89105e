"""verdict: FORWARDED, DROPPED, ... as the record holds it (flow.Verdict wire values)."""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, Predicate


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.verdict:
        return []
    wanted = np.array(list(ff.verdict), dtype=np.int64)

    def by_verdict(batch: Batch) -> np.ndarray:
        return np.isin(batch.records["verdict"], wanted)

    return [by_verdict]
