"""source_identity / destination_identity: the numeric security identity the flow shows.

That is the datapath's identity when it recorded one, else the identity of the endpoint owning the address,
exactly as the decoder fills Endpoint.identity.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.parser import index_of
from flowscope.observer.parser.columns import Side

_COLUMN = {"src": "src_identity", "dst": "dst_identity"}


def _identity_predicate(ctx: FilterContext, values: Iterable[int], side: Side) -> Predicate:
    wanted = np.array(list(values), dtype=np.uint32)
    current_index = ctx.following(index_of)

    def by_identity(batch: Batch) -> np.ndarray:
        index = current_index()
        recorded = batch.records[_COLUMN[side]]
        resolved = index.identities[batch.entries(index, side)]
        return np.isin(np.where(recorded != 0, recorded, resolved), wanted)

    return by_identity


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_identity:
        predicates.append(_identity_predicate(ctx, ff.source_identity, "src"))
    if ff.destination_identity:
        predicates.append(_identity_predicate(ctx, ff.destination_identity, "dst"))
    return predicates
