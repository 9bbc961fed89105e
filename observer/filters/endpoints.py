"""Filters on an endpoint's names (pod, labels, cluster): resolved once per request, looked up per record.

A name filter asks a question about an endpoint ("is it a pod in `default` starting with `client-`?"). The
registry snapshot has few endpoints and a batch many records, so the question is answered once per endpoint
when the filter is compiled, giving a boolean per index entry; a batch is then answered by looking up which
entry owns each record's address (observer.parser.EndpointIndex). Addresses nobody owns are the world entry,
so a filter that world satisfies (`reserved:world`) selects them too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flowscope.observer.endpoints import EndpointInfo
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.parser.columns import Side


def endpoint_predicate(ctx: FilterContext, side: Side, question: Callable[[EndpointInfo], bool]) -> Predicate:
    """A predicate selecting records whose source (or destination) endpoint answers yes."""
    index = ctx.index
    answers = index.matching(question)

    def by_endpoint(batch: Batch) -> np.ndarray:
        return answers[batch.entries(index, side)]

    return by_endpoint
