"""Filters on an endpoint's names (pod, labels, cluster): resolved once per snapshot, looked up per record.

A name filter asks a question about an endpoint ("is it a pod in `default` starting with `client-`?"). The
registry snapshot has few endpoints and a batch many records, so the question is answered once per endpoint of
each snapshot (FilterContext.following), giving a boolean per index entry; a batch is then answered by looking up
which entry names each record's side (observer.parser.EndpointIndex): the owner of its address, else the
endpoint its datapath identity stands for (a pod's fe80:: address: the pod's labels and namespace), else world,
so a filter that world satisfies (`reserved:world`) selects the rest too. The decoder names sides the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flowscope.observer.endpoints import EndpointInfo, Snapshot
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.parser import EndpointIndex, index_of
from flowscope.observer.parser.columns import Side


def endpoint_predicate(ctx: FilterContext, side: Side, question: Callable[[EndpointInfo], bool]) -> Predicate:
    """A predicate selecting records whose source (or destination) endpoint answers yes."""

    def resolve(snapshot: Snapshot) -> tuple[EndpointIndex, np.ndarray]:
        index = index_of(snapshot)
        return index, index.matching(question)

    resolved = ctx.following(resolve)

    def by_endpoint(batch: Batch) -> np.ndarray:
        index, answers = resolved()
        return answers[batch.entries(index, side)]

    return by_endpoint
