"""Hubble's FlowFilter semantics over a batch: whitelist, blacklist, and the fields inside one filter.

Result = (no whitelist, or any whitelist filter matches) AND no blacklist filter matches. Inside one
FlowFilter, each field is a predicate (one module per field, as Hubble decomposes them) and the predicates are
ANDed; the values of one field are ORed inside its predicate. A FlowFilter with no field set matches every
flow, as in Hubble.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters import (
    cluster_name,
    drop_reason,
    event_type,
    identity,
    interface,
    ip,
    ip_version,
    labels,
    node_labels,
    node_name,
    pod,
    port,
    protocol,
    reply,
    tcp_flags,
    traffic_direction,
    unobservable,
    uuid,
    verdict,
)
from flowscope.observer.filters.base import Batch, FilterContext, Predicate

FieldBuilder = Callable[[flow_pb2.FlowFilter, FilterContext], list[Predicate]]

# Cheap column tests first: a FlowFilter stops evaluating once nothing in the batch can match.
FIELDS: tuple[FieldBuilder, ...] = (
    unobservable.build,
    node_name.build,
    node_labels.build,
    uuid.build,
    event_type.build,
    verdict.build,
    drop_reason.build,
    reply.build,
    protocol.build,
    port.build,
    tcp_flags.build,
    ip_version.build,
    ip.build,
    interface.build,
    traffic_direction.build,
    identity.build,
    pod.build,
    labels.build,
    cluster_name.build,
)


def compile_filter(flow_filter: flow_pb2.FlowFilter, ctx: FilterContext) -> Predicate:
    """One FlowFilter: all its fields must match."""
    predicates = [predicate for build in FIELDS for predicate in build(flow_filter, ctx)]

    def all_fields(batch: Batch) -> np.ndarray:
        mask = np.ones(len(batch), dtype=bool)
        for predicate in predicates:
            if not mask.any():
                break
            mask &= predicate(batch)
        return mask

    return all_fields


def compile_filters(
    whitelist: Sequence[flow_pb2.FlowFilter], blacklist: Sequence[flow_pb2.FlowFilter], ctx: FilterContext
) -> Predicate:
    """The predicate of a GetFlows request; raises FilterError for a filter that cannot be applied."""
    allowed = [compile_filter(f, ctx) for f in whitelist]
    denied = [compile_filter(f, ctx) for f in blacklist]

    def selected(batch: Batch) -> np.ndarray:
        if allowed:
            mask = np.zeros(len(batch), dtype=bool)
            for predicate in allowed:
                mask |= predicate(batch)
        else:
            mask = np.ones(len(batch), dtype=bool)
        for predicate in denied:
            if not mask.any():
                break
            mask &= ~predicate(batch)
        return mask

    return selected
