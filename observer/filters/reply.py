"""reply: whether the flow is a reply, as flow.is_reply says.

Like Hubble, a flow whose reply status is unknown matches nothing, except a dropped one, which counts as not
a reply (older clients such as Hubble UI filter drops with reply=false).
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.parser.direction import IS_REPLY, NOT_REPLY, REPLY_UNKNOWN


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.reply:
        return []
    want_reply, want_other = True in ff.reply, False in ff.reply

    def by_reply(batch: Batch) -> np.ndarray:
        state = batch.reply_states()
        hit = np.zeros(len(batch), dtype=bool)
        if want_reply:
            hit |= state == IS_REPLY
        if want_other:
            dropped = batch.records["verdict"] == flow_pb2.DROPPED
            hit |= (state == NOT_REPLY) | ((state == REPLY_UNKNOWN) & dropped)
        return hit

    return [by_reply]
