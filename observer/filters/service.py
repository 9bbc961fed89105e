"""source_service / destination_service: "namespace/service-name-prefix", read as Hubble reads them.

The values are those of source_pod / destination_pod ("ns/prefix", "ns/" for every service of a namespace, a
bare "prefix" in "default"; observer/filters/pod.py), matched against the service a flow names: a translated
connection's frontend id, or the frontend its address is (observer/parser/services.py, the decoder's rule).
A flow without a service never matches.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import Snapshot
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.filters.pod import parse_namespaced_names
from flowscope.observer.parser.columns import Side
from flowscope.observer.parser.services import service_ids
from flowscope.observer.service_table import ServiceTable

_IDS = 1 << 16  # frontend ids are 16 bits


def _service_predicate(ctx: FilterContext, values: Iterable[str], side: Side, what: str) -> Predicate:
    pairs = parse_namespaced_names(values, what)

    def resolve(snapshot: Snapshot) -> tuple[ServiceTable, np.ndarray]:
        """The table, and which frontend ids belong to a service the values name."""
        table = snapshot.services
        wanted = np.zeros(_IDS, dtype=bool)
        for number, info in table.by_id.items():
            wanted[number] = any(info.namespace == ns and info.name.startswith(prefix) for ns, prefix in pairs)
        return table, wanted

    current = ctx.following(resolve)

    def by_service(batch: Batch) -> np.ndarray:
        table, wanted = current()
        if not table:
            return np.zeros(len(batch), dtype=bool)
        ids = batch.derived((id(table), "service", side), lambda: service_ids(batch.records, table, side))
        return (ids < _IDS) & wanted[ids & (_IDS - 1)]  # a rule beyond 16 bits is no frontend id

    return by_service


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_service:
        predicates.append(_service_predicate(ctx, ff.source_service, "src", "source service"))
    if ff.destination_service:
        predicates.append(_service_predicate(ctx, ff.destination_service, "dst", "destination service"))
    return predicates
