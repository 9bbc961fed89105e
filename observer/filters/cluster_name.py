"""source_cluster_name / destination_cluster_name: the cluster an endpoint belongs to (exact names)."""

from __future__ import annotations

from collections.abc import Iterable

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import EndpointInfo
from flowscope.observer.filters.base import FilterContext, FilterError, Predicate
from flowscope.observer.filters.endpoints import endpoint_predicate
from flowscope.observer.parser.columns import Side


def _cluster_predicate(ctx: FilterContext, values: Iterable[str], side: Side, what: str) -> Predicate:
    names = set(values)
    if "" in names:
        raise FilterError(f"invalid {what} filter: a cluster name must not be empty")

    def matches(info: EndpointInfo) -> bool:
        return info.cluster in names

    return endpoint_predicate(ctx, side, matches)


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_cluster_name:
        predicates.append(_cluster_predicate(ctx, ff.source_cluster_name, "src", "source cluster name"))
    if ff.destination_cluster_name:
        names = ff.destination_cluster_name
        predicates.append(_cluster_predicate(ctx, names, "dst", "destination cluster name"))
    return predicates
