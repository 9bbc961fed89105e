"""source_label / destination_label: Kubernetes label selectors over the endpoint's labels (see label_selector.py).

Several selectors in one field are ORed. Endpoints are judged by the labels the decoder shows for them: pod
labels ("k8s:app=client", "k8s:io.kubernetes.pod.namespace=default") or a reserved label ("reserved:world",
"reserved:host", "reserved:remote-node"), so `reserved:world` selects traffic to and from outside the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import EndpointInfo
from flowscope.observer.filters.base import FilterContext, FilterError, Predicate
from flowscope.observer.filters.endpoints import endpoint_predicate
from flowscope.observer.filters.label_selector import Selector, parse_selector
from flowscope.observer.parser.columns import Side


def parse_selectors(texts: Iterable[str], what: str) -> list[Selector]:
    selectors = []
    for text in texts:
        try:
            selectors.append(parse_selector(text))
        except FilterError as exc:
            raise FilterError(f"invalid {what} filter: {exc}") from None
    return selectors


def _label_predicate(ctx: FilterContext, texts: Iterable[str], side: Side, what: str) -> Predicate:
    selectors = parse_selectors(texts, what)

    def matches(info: EndpointInfo) -> bool:
        return any(selector.matches(info.labels) for selector in selectors)

    return endpoint_predicate(ctx, side, matches)


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_label:
        predicates.append(_label_predicate(ctx, ff.source_label, "src", "source label"))
    if ff.destination_label:
        predicates.append(_label_predicate(ctx, ff.destination_label, "dst", "destination label"))
    return predicates
