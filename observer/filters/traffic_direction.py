"""traffic_direction: INGRESS or EGRESS, computed by the decoder's own rules (observer.parser.direction)."""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.parser import index_of


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.traffic_direction:
        return []
    wanted = np.array(list(ff.traffic_direction), dtype=np.int64)
    current_index = ctx.following(index_of)

    def by_direction(batch: Batch) -> np.ndarray:
        return np.isin(batch.directions(current_index()), wanted)

    return [by_direction]
