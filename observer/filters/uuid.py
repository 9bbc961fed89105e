"""uuid: flows by their uuid, which names the stored record's sequence number (observer.parser.uuids)."""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, FilterError, Predicate


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.uuid:
        return []
    ids = ctx.flow_ids
    if ids is None:
        raise FilterError("uuid filters are not available: the server did not say which agent instance it is")
    wanted: list[int] = []
    for text in ff.uuid:
        try:
            seq = ids.seq(text)
        except ValueError:
            raise FilterError(f"invalid uuid filter: {text!r} is not a uuid") from None
        if seq is not None:  # a uuid of another agent (or an earlier run) names none of our flows
            wanted.append(seq)
    seqs = np.array(wanted, dtype=np.uint64)

    def by_uuid(batch: Batch) -> np.ndarray:
        return np.isin(batch.seqs, seqs)

    return [by_uuid]
