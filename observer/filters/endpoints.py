"""Filters on an endpoint's names (pod, labels, cluster): resolved once per snapshot, looked up per record.

A name filter asks a question about an endpoint ("is it a pod in `default` starting with `client-`?"). The
registry snapshot has few endpoints and a batch many records, so the question is answered once per endpoint of
each snapshot (FilterContext.following), giving a boolean per index entry; a batch is then answered by looking up
which entry owns each record's address (observer.parser.EndpointIndex). Addresses nobody owns are the world
entry, so a filter that world satisfies (`reserved:world`) selects them too.
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
