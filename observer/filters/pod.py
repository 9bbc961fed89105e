"""source_pod / destination_pod: "namespace/pod-name-prefix", as Hubble reads it.

- "ns/prefix": pods in namespace `ns` whose name starts with `prefix`;
- "ns/": every pod in `ns` (what `hubble observe --namespace ns` sends);
- "prefix" (no slash): the namespace is "default";
- "" is rejected. Hubble ignores anything after a second slash; a pod name cannot hold one, so flowscope
  rejects it instead of silently matching something else.
An endpoint without namespace and pod name (world, host, remote nodes) never matches; one named by its identity
alone (a pod's fe80:: address: a namespace, no pod name) matches "ns/" only, as the decoded flow would in Hubble.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import EndpointInfo
from flowscope.observer.filters.base import FilterContext, FilterError, Predicate
from flowscope.observer.filters.endpoints import endpoint_predicate
from flowscope.observer.parser.columns import Side


def parse_namespaced_names(values: Iterable[str], what: str) -> list[tuple[str, str]]:
    """(namespace, name prefix) pairs, with Hubble's defaults."""
    pairs = []
    for value in values:
        parts = value.split("/")
        if len(parts) > 2:
            raise FilterError(f"invalid {what} filter {value!r}: must be [namespace/][<name>], with one slash")
        if len(parts) == 2:
            pairs.append((parts[0], parts[1]))
        elif value:
            pairs.append(("default", value))
        else:
            raise FilterError(f"invalid {what} filter: must be [namespace/][<name>], got an empty string")
    return pairs


def _pod_predicate(ctx: FilterContext, values: Iterable[str], side: Side, what: str) -> Predicate:
    pairs = parse_namespaced_names(values, what)

    def matches(info: EndpointInfo) -> bool:
        if not info.namespace and not info.pod:
            return False
        return any(info.namespace == ns and info.pod.startswith(prefix) for ns, prefix in pairs)

    return endpoint_predicate(ctx, side, matches)


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    predicates = []
    if ff.source_pod:
        predicates.append(_pod_predicate(ctx, ff.source_pod, "src", "source pod"))
    if ff.destination_pod:
        predicates.append(_pod_predicate(ctx, ff.destination_pod, "dst", "destination pod"))
    return predicates
