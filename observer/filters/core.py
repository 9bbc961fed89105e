"""Hubble's FlowFilter semantics over a batch: whitelist, blacklist, and the fields inside one filter.

Result = (no whitelist, or any whitelist filter matches) AND no blacklist filter matches. Inside one
FlowFilter, each field is a predicate (one module per field, as Hubble decomposes them) and the predicates are
ANDed; the values of one field are ORed inside its predicate. A FlowFilter with no field set matches every
flow, as in Hubble.

Fields no record column holds (CEL expressions) are tests of the decoded flow, far dearer than a column test:
they run last, only on the records the FlowFilter's column tests kept and the request still wants (a whitelist
filter skips what an earlier one selected, a blacklist filter what is already out), each record decoded at
most once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters import (
    cel_expression,
    cluster_name,
    dns_query,
    drop_reason,
    event_type,
    fqdn,
    http,
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
    service,
    tcp_flags,
    traffic_direction,
    unobservable,
    uuid,
    verdict,
)
from flowscope.observer.filters.base import Batch, FilterContext, FilterError, FlowTest, Predicate
from flowscope.observer.parser import FlowDecoder

FieldBuilder = Callable[[flow_pb2.FlowFilter, FilterContext], list[Predicate]]
FlowFieldBuilder = Callable[[flow_pb2.FlowFilter, FilterContext], list[FlowTest]]
Within = Callable[[Batch, np.ndarray], np.ndarray]  # which of the rows still in question (a mask) match

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
    fqdn.build,
    interface.build,
    traffic_direction.build,
    identity.build,
    pod.build,
    service.build,
    labels.build,
    cluster_name.build,
    http.build,  # L7 fields: the store entries of the few L7 records, tested in Python
    dns_query.build,
)
FLOW_FIELDS: tuple[FlowFieldBuilder, ...] = (cel_expression.build,)


def _decoded(batch: Batch, rows: np.ndarray, decoder: FlowDecoder) -> list[flow_pb2.Flow]:
    """The flows of these rows, each record decoded once per batch however many FlowFilters test it."""
    flows = batch.derived(("flows", id(decoder)), lambda: np.full(len(batch), None, dtype=object))
    for row in rows:
        if flows[row] is None:
            flows[row] = decoder.decode(batch.records[row], int(batch.seqs[row]))
    return list(flows[rows])


def _compile(flow_filter: flow_pb2.FlowFilter, ctx: FilterContext) -> Within:
    predicates = [predicate for build in FIELDS for predicate in build(flow_filter, ctx)]
    flow_tests = [test for build in FLOW_FIELDS for test in build(flow_filter, ctx)]
    decoder = ctx.decoder
    if flow_tests and decoder is None:
        raise FilterError("cel_expression filters need the agent's flow decoder, which this server lacks")

    def all_fields(batch: Batch, within: np.ndarray) -> np.ndarray:
        mask = within.copy()
        for predicate in predicates:
            if not mask.any():
                break
            mask &= predicate(batch)
        if flow_tests and decoder is not None and mask.any():
            rows = np.flatnonzero(mask)
            flows = _decoded(batch, rows, decoder)
            mask[rows] = [all(test(flow) for test in flow_tests) for flow in flows]
        return mask

    return all_fields


def compile_filter(flow_filter: flow_pb2.FlowFilter, ctx: FilterContext) -> Predicate:
    """One FlowFilter: all its fields must match."""
    matches = _compile(flow_filter, ctx)
    return lambda batch: matches(batch, np.ones(len(batch), dtype=bool))


def compile_filters(
    whitelist: Sequence[flow_pb2.FlowFilter], blacklist: Sequence[flow_pb2.FlowFilter], ctx: FilterContext
) -> Predicate:
    """The predicate of a GetFlows request; raises FilterError for a filter that cannot be applied."""
    allowed = [_compile(f, ctx) for f in whitelist]
    denied = [_compile(f, ctx) for f in blacklist]

    def selected(batch: Batch) -> np.ndarray:
        if allowed:
            mask = np.zeros(len(batch), dtype=bool)
            for matches in allowed:
                mask |= matches(batch, ~mask)
        else:
            mask = np.ones(len(batch), dtype=bool)
        for matches in denied:
            if not mask.any():
                break
            mask &= ~matches(batch, mask)
        return mask

    return selected
