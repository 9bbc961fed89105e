"""event_type: Cilium monitor type (DROP=1, TRACE=4, POLICY_VERDICT=5) and, when asked, its sub-type.

Type 0 matches every type; the sub-type is compared only when `match_sub_type` is set (a trace's sub-type is
its observation point, a drop's the low byte of its reason), as flow.event_type shows them: an L7 flow (type
129, `-t l7`) shows sub-type 0, as Hubble's do, though its record keeps the observation point it was seen at.
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.names import EVENT_TYPES
from flowscope.observer.filters.base import Batch, FilterContext, Predicate

EVENT_L7 = EVENT_TYPES["l7"]


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.event_type:
        return []
    wanted = [(f.type, f.sub_type if f.match_sub_type else None) for f in ff.event_type]

    def by_event_type(batch: Batch) -> np.ndarray:
        types, subtypes = batch.records["type"], batch.records["subtype"]
        if any(subtype is not None for _, subtype in wanted):
            subtypes = np.where(types == EVENT_L7, 0, subtypes)
        hit = np.zeros(len(batch), dtype=bool)
        for event_type, subtype in wanted:
            match = np.ones(len(batch), dtype=bool) if event_type == 0 else types == event_type
            if subtype is not None:
                match &= subtypes == subtype
            hit |= match
        return hit

    return [by_event_type]
