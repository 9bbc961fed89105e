"""node_labels: label selectors over the labels of the node that observed the flow (Flow.node_labels).

A node's labels come from the cluster metadata (observer/metadata.py, `Cluster.node_labels`), as `key=value`
strings like Kubernetes' node labels; selectors are ORed. Every flow a node stores carries that node's labels,
so the filter is decided once per registry snapshot, not per record.
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import Snapshot
from flowscope.observer.filters.base import Batch, FilterContext, Predicate, everything, nothing
from flowscope.observer.filters.labels import parse_selectors


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.node_labels:
        return []
    selectors = parse_selectors(ff.node_labels, "node labels")

    def resolve(snapshot: Snapshot) -> Predicate:
        labels = snapshot.cluster.node_labels(snapshot.node_name)
        return everything if any(selector.matches(labels) for selector in selectors) else nothing

    resolved = ctx.following(resolve)

    def by_node_labels(batch: Batch) -> np.ndarray:
        return resolved()(batch)

    return [by_node_labels]
