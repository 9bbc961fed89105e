"""Fields about data flowscope does not have: workloads, tracing, source NAT (DNS names: fqdn.py, L7: http.py).

Each is checked the way Hubble checks it (so a malformed value is still an error) and then decided as a Hubble
node without that data would decide it: a flow with no workload or trace id
matches none of those filters; a flow is never marked encrypted, so `encrypted: false` matches every flow and
`true` none.
"""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import FilterContext, Predicate, everything, nothing
from flowscope.observer.filters.ip import parse_networks


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    parse_networks(ff.source_ip_xlated, "source IP xlated")

    absent = (
        ff.source_workload,
        ff.destination_workload,
        ff.source_ip_xlated,
        ff.trace_id,
        ff.ip_trace_id,
    )
    predicates: list[Predicate] = [nothing for values in absent if len(values)]
    if len(ff.encrypted):
        predicates.append(everything if False in ff.encrypted else nothing)
    return predicates
