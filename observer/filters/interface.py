"""interface: the network interface of the observation point, by index and/or name (both must match if given).

Names resolve to interface indexes through the registry snapshot, again whenever it is replaced. A record seen
on no interface (index 0) has no interface in its flow and never matches.
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import Snapshot
from flowscope.observer.filters.base import Batch, FilterContext, Predicate


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.interface:
        return []

    def resolve(snapshot: Snapshot) -> list[np.ndarray | None]:
        """Allowed indexes per wanted interface (None: any index)."""
        entries: list[np.ndarray | None] = []
        for wanted in ff.interface:
            allowed = None if not wanted.index else {wanted.index}
            if wanted.name:
                named = {index for index, name in snapshot.interfaces.items() if name == wanted.name}
                allowed = named if allowed is None else allowed & named
            entries.append(None if allowed is None else np.array(sorted(allowed), dtype=np.uint32))
        return entries

    resolved = ctx.following(resolve)

    def by_interface(batch: Batch) -> np.ndarray:
        ifindex = batch.records["ifindex"]
        hit = np.zeros(len(batch), dtype=bool)
        for allowed in resolved():
            hit |= np.ones(len(batch), dtype=bool) if allowed is None else np.isin(ifindex, allowed)
        return hit & (ifindex != 0)

    return [by_interface]
