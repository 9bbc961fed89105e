"""Hubble's FlowFilters over decoded Flow messages, for flows that no longer have a record: read back from a file.

The agent filters stored records column by column (the other modules here); a flow written by `observe -o jsonpb`
(flowscope's or Hubble's) has only its message, so its fields are compared as the message states them, the way
Hubble's own filters read a Flow. The value rules (addresses, ports, pod names, label selectors, node patterns)
are the same functions the record filters use, so a value is accepted or refused alike on both paths. A field
this module cannot judge from a message is refused with FilterError rather than silently matching.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence

from flowscope.api.flow import flow_pb2
from flowscope.common.filter_values import Network, protocol_name
from flowscope.observer.filters.base import FilterError
from flowscope.observer.filters.cel_expression import flow_tests
from flowscope.observer.filters.dns_query import flow_predicates as dns_query_predicates
from flowscope.observer.filters.fqdn import compile_fqdn_patterns, names_match
from flowscope.observer.filters.http import flow_predicates as http_predicates
from flowscope.observer.filters.ip import parse_networks
from flowscope.observer.filters.label_selector import Selector
from flowscope.observer.filters.labels import parse_selectors
from flowscope.observer.filters.node_name import compile_node_patterns
from flowscope.observer.filters.pod import parse_namespaced_names
from flowscope.observer.filters.port import parse_ports

FlowPredicate = Callable[[flow_pb2.Flow], bool]
Side = Callable[[flow_pb2.Flow], flow_pb2.Endpoint]

_JUDGED = {
    *(f"{side}_{field}" for side in ("source", "destination")
      for field in ("ip", "pod", "service", "label", "identity", "port", "cluster_name", "fqdn")),
    "protocol", "verdict", "traffic_direction", "reply", "event_type", "node_name", "node_labels", "tcp_flags",
    "ip_version", "uuid", "interface", "drop_reason_desc", "experimental",
    "http_status_code", "http_method", "http_path", "http_url", "http_header", "dns_query",
}  # fmt: skip
_TCP_FLAGS = tuple(field.name for field in flow_pb2.TCPFlags.DESCRIPTOR.fields)


def compile_flow_filters(
    whitelist: Sequence[flow_pb2.FlowFilter], blacklist: Sequence[flow_pb2.FlowFilter]
) -> FlowPredicate:
    """Whether a flow passes: any whitelist filter matches (or there is none) and no blacklist filter does."""
    allowed = [compile_flow_filter(f) for f in whitelist]
    denied = [compile_flow_filter(f) for f in blacklist]
    return lambda flow: (not allowed or any(p(flow) for p in allowed)) and not any(p(flow) for p in denied)


def compile_flow_filter(ff: flow_pb2.FlowFilter) -> FlowPredicate:
    """One FlowFilter: every field set must match."""
    unjudged = [field.name for field, _ in ff.ListFields() if field.name not in _JUDGED]
    if unjudged:
        raise FilterError(f"{', '.join(unjudged)} filters cannot be applied to flows read from a file")
    predicates = [*_endpoint_predicates(ff), *_flow_predicates(ff)]
    return lambda flow: all(p(flow) for p in predicates)


def _endpoint_predicates(ff: flow_pb2.FlowFilter) -> Iterable[FlowPredicate]:
    for side, endpoint in (("source", _source), ("destination", _destination)):
        if ips := getattr(ff, f"{side}_ip"):
            yield _address_predicate(parse_networks(ips, f"{side} ip"), side)
        if pods := getattr(ff, f"{side}_pod"):
            yield _endpoint_predicate(endpoint, _pod_question(parse_namespaced_names(pods, f"{side} pod")))
        if services := getattr(ff, f"{side}_service"):
            yield _service_predicate(parse_namespaced_names(services, f"{side} service"), side)
        if labels := getattr(ff, f"{side}_label"):
            selectors = parse_selectors(labels, f"{side} label")
            yield _endpoint_predicate(endpoint, _label_question(selectors))
        if identities := set(getattr(ff, f"{side}_identity")):
            yield _endpoint_predicate(endpoint, _field_question("identity", identities))
        if clusters := set(getattr(ff, f"{side}_cluster_name")):
            yield _endpoint_predicate(endpoint, _field_question("cluster_name", clusters))
        if ports := getattr(ff, f"{side}_port"):
            yield _port_predicate(set(parse_ports(ports, f"{side} port").tolist()), side)
        if patterns := getattr(ff, f"{side}_fqdn"):
            yield _names_predicate(compile_fqdn_patterns(patterns, f"{side} FQDN"), side)


def _source(flow: flow_pb2.Flow) -> flow_pb2.Endpoint:
    return flow.source


def _destination(flow: flow_pb2.Flow) -> flow_pb2.Endpoint:
    return flow.destination


def _endpoint_predicate(endpoint: Side, question: Callable[[flow_pb2.Endpoint], bool]) -> FlowPredicate:
    return lambda flow: question(endpoint(flow))


def _pod_question(pairs: list[tuple[str, str]]) -> Callable[[flow_pb2.Endpoint], bool]:
    """Hubble's rule, as observer/filters/pod.py applies it: an endpoint with neither namespace nor pod name never
    matches; one named by its identity alone (a namespace, no pod) matches "namespace/"."""

    def matches(e: flow_pb2.Endpoint) -> bool:
        return bool(e.namespace or e.pod_name) and any(
            e.namespace == ns and e.pod_name.startswith(prefix) for ns, prefix in pairs
        )

    return matches


def _service_predicate(pairs: list[tuple[str, str]], side: str) -> FlowPredicate:
    """Hubble's rule: a service with neither namespace nor name (none) never matches."""

    def matches(flow: flow_pb2.Flow) -> bool:
        service = flow.source_service if side == "source" else flow.destination_service
        return bool(service.namespace or service.name) and any(
            service.namespace == ns and service.name.startswith(prefix) for ns, prefix in pairs
        )

    return matches


def _label_question(selectors: list[Selector]) -> Callable[[flow_pb2.Endpoint], bool]:
    return lambda e: any(selector.matches(e.labels) for selector in selectors)


def _field_question(name: str, wanted: set[int] | set[str]) -> Callable[[flow_pb2.Endpoint], bool]:
    return lambda e: getattr(e, name) in wanted


def _address_predicate(networks: list[Network], side: str) -> FlowPredicate:
    def matches(flow: flow_pb2.Flow) -> bool:
        try:
            ip = ipaddress.ip_address(flow.IP.source if side == "source" else flow.IP.destination)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    return matches


def _names_predicate(regex: re.Pattern[str], side: str) -> FlowPredicate:
    return lambda flow: names_match(regex, flow.source_names if side == "source" else flow.destination_names)


def _port_predicate(wanted: set[int], side: str) -> FlowPredicate:
    def matches(flow: flow_pb2.Flow) -> bool:
        kind = flow.l4.WhichOneof("protocol")
        if kind not in ("TCP", "UDP", "SCTP"):
            return False
        layer = getattr(flow.l4, kind)
        return int(layer.source_port if side == "source" else layer.destination_port) in wanted

    return matches


def _flow_predicates(ff: flow_pb2.FlowFilter) -> Iterable[FlowPredicate]:
    if ff.protocol:
        protocols = {kind for name in ff.protocol for kind in _protocols(name)}
        yield lambda f: _layers(f) & protocols != set()
    if verdicts := set(ff.verdict):
        yield lambda f: f.verdict in verdicts
    if directions := set(ff.traffic_direction):
        yield lambda f: f.traffic_direction in directions
    if replies := set(ff.reply):
        yield lambda f: f.HasField("is_reply") and f.is_reply.value in replies
    if ff.event_type:
        types = list(ff.event_type)
        yield lambda f: any(
            f.event_type.type == t.type and (not t.match_sub_type or f.event_type.sub_type == t.sub_type) for t in types
        )
    if ff.node_name:
        regex = compile_node_patterns(ff.node_name)
        yield lambda f: bool(f.node_name) and bool(regex.fullmatch(_qualified(f)))
    if ff.node_labels:
        node_selectors = parse_selectors(ff.node_labels, "node labels")
        yield lambda f: any(s.matches(f.node_labels) for s in node_selectors)
    if ff.tcp_flags:
        required = [{name for name in _TCP_FLAGS if getattr(flags, name)} for flags in ff.tcp_flags]
        yield lambda f: f.l4.HasField("TCP") and any(all(getattr(f.l4.TCP.flags, n) for n in r) for r in required)
    if versions := set(ff.ip_version):
        yield lambda f: f.IP.ipVersion in versions
    if uuids := {u.lower() for u in ff.uuid}:
        yield lambda f: f.uuid.lower() in uuids
    if ff.interface:
        interfaces = list(ff.interface)
        yield (
            lambda f: (
                f.HasField("interface")
                and any(
                    (not i.index or i.index == f.interface.index) and (not i.name or i.name == f.interface.name)
                    for i in interfaces
                )
            )
        )
    if reasons := set(ff.drop_reason_desc):
        yield lambda f: f.drop_reason_desc in reasons
    yield from http_predicates(ff)  # l7.http, as the agent's L7 entries are tested (filters/http.py)
    yield from dns_query_predicates(ff)
    yield from flow_tests(ff)  # cel_expression: the agent's own compiled expressions


def _protocols(name: str) -> set[str]:
    """The Layer4 or Layer7 kinds a protocol name selects, lowered ("icmp" stands for both ICMP versions)."""
    try:
        lowered = protocol_name(name)
    except ValueError as exc:
        raise FilterError(f"invalid protocol filter: {exc}") from None
    return {"icmpv4", "icmpv6"} if lowered == "icmp" else {lowered}


def _layers(flow: flow_pb2.Flow) -> set[str]:
    """The flow's L4 and L7 kinds, lowered: {"tcp"}, {"udp", "dns"}."""
    return {(flow.l4.WhichOneof("protocol") or "").lower(), (flow.l7.WhichOneof("record") or "").lower()}


def _qualified(flow: flow_pb2.Flow) -> str:
    """The node's "cluster/node" name, the cluster taken from the flow's source when the name has none."""
    name = flow.node_name
    return name if "/" in name else f"{flow.source.cluster_name or 'default'}/{name}"
