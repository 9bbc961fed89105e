"""How filter flags become FlowFilters, the way hubble's CLI does it (cmd/observe/flows_filter.go).

Each flag is applied in command-line order. `--X` (ip, pod, label, ...) means "source OR destination", so the
whitelist is kept as two filters, `left` and `right`, that are ORed by the server: `--X` puts its value in the
source field of `left` and the destination field of `right`, while every other flag (`--from-X`, `--to-X`,
`--verdict`, ...) goes into both, so it is ANDed with whichever side matched. When both sides end up equal
only one filter is sent. Namespaces are kept aside and folded into the pod/service filters at the end, and
`--not` sends the next flag, only that one, to a second pair of filters: the blacklist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowscope.api.flow import flow_pb2
from flowscope.cli.observe.values import (
    parse_bool,
    parse_drop_reason,
    parse_event_type,
    parse_http_header,
    parse_identity,
    parse_ip,
    parse_ip_trace_id,
    parse_ip_version,
    parse_port,
    parse_protocol,
    parse_tcp_flags,
    parse_traffic_direction,
    parse_verdict,
    parse_workload,
)

# Flags that cannot be given together in one list (hubble's conflict groups).
_CONFLICTS: tuple[tuple[str, ...], ...] = (
    (
        "from-fqdn",
        "from-ip",
        "ip",
        "fqdn",
        "from-namespace",
        "namespace",
        "from-all-namespaces",
        "all-namespaces",
    ),
    ("from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace", "to-all-namespaces", "all-namespaces"),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"),
    ("to-pod", "namespace", "all-namespaces"),
    ("from-pod", "namespace", "all-namespaces"),
    ("to-service", "namespace", "all-namespaces"),
    ("from-service", "namespace", "all-namespaces"),
    ("snat-ip",),
    ("label", "from-label"),
    ("label", "to-label"),
    ("service", "from-service"),
    ("service", "to-service"),
    ("verdict",),
    ("drop-reason-desc",),
    ("type",),
    ("http-status",),
    ("http-method",),
    ("http-path",),
    ("http-url",),
    ("http-header",),
    ("protocol",),
    ("port", "to-port"),
    ("port", "from-port"),
    ("identity", "to-identity"),
    ("identity", "from-identity"),
    ("workload", "to-workload"),
    ("workload", "from-workload"),
    ("node-label",),
    ("tcp-flags",),
    ("uuid",),
    ("traffic-direction",),
    ("cel-expression",),
    ("encrypted", "unencrypted"),
)


# `--X` / `--from-X` / `--to-X`: X → (source field, destination field, how to read a value).
_SIDED: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "ip": ("source_ip", "destination_ip", parse_ip),
    "pod": ("source_pod", "destination_pod", str),
    "fqdn": ("source_fqdn", "destination_fqdn", str),
    "label": ("source_label", "destination_label", str),
    "service": ("source_service", "destination_service", str),
    "port": ("source_port", "destination_port", parse_port),
    "identity": ("source_identity", "destination_identity", parse_identity),
    "workload": ("source_workload", "destination_workload", parse_workload),
    "cluster": ("source_cluster_name", "destination_cluster_name", str),
}

# Flags that go into both filters unchanged: flag → (FlowFilter field, how to read a value).
_SHARED: dict[str, tuple[str, Callable[[str], Any]]] = {
    "uuid": ("uuid", str),
    "snat-ip": ("source_ip_xlated", parse_ip),
    "ipv4": ("ip_version", lambda _: flow_pb2.IPv4),
    "ipv6": ("ip_version", lambda _: flow_pb2.IPv6),
    "ip-version": ("ip_version", parse_ip_version),
    "trace-id": ("trace_id", str),
    "ip-trace-id": ("ip_trace_id", parse_ip_trace_id),
    "verdict": ("verdict", parse_verdict),
    "drop-reason-desc": ("drop_reason_desc", parse_drop_reason),
    "http-status": ("http_status_code", str),
    "http-method": ("http_method", str),
    "http-path": ("http_path", str),
    "http-url": ("http_url", str),
    "http-header": ("http_header", parse_http_header),
    "type": ("event_type", parse_event_type),
    "protocol": ("protocol", parse_protocol),
    "node-name": ("node_name", str),
    "node-label": ("node_labels", str),
    "tcp-flags": ("tcp_flags", parse_tcp_flags),
    "traffic-direction": ("traffic_direction", parse_traffic_direction),
    "interface": ("interface", lambda name: flow_pb2.NetworkInterface(name=name)),
    "encrypted": ("encrypted", lambda _: True),
    "unencrypted": ("encrypted", lambda _: False),
    "reply": ("reply", parse_bool),
    "dns-query": ("dns_query", str),
}

# Namespace flags: which list they extend, and the value an "all namespaces" flag stands for.
_NAMESPACES = {
    "namespace": "ns",
    "from-namespace": "src_ns",
    "to-namespace": "dst_ns",
    "all-namespaces": "ns",
    "from-all-namespaces": "src_ns",
    "to-all-namespaces": "dst_ns",
}

FILTER_NAMES = frozenset(
    [
        *_SIDED,
        *(f"from-{x}" for x in _SIDED),
        *(f"to-{x}" for x in _SIDED),
        *_SHARED,
        *_NAMESPACES,
        "cel-expression",
    ]
)


def _append(filter_: flow_pb2.FlowFilter, field_name: str, value: Any) -> None:
    values = getattr(filter_, field_name)
    if hasattr(value, "DESCRIPTOR"):
        values.add().CopyFrom(value)
    else:
        values.append(value)


def _with_namespaces(values: list[str], namespaces: list[str]) -> list[str]:
    if not namespaces or not values:
        return values
    return [value if "/" in value else f"{ns}/{value}" for value in values for ns in namespaces]


def _namespace_of(name: str) -> str:
    namespace, slash, _ = name.partition("/")
    return namespace if slash else ""


@dataclass
class _Tracker:
    """One list (whitelist or blacklist) as `left OR right`, plus the namespaces still to fold in."""

    left: flow_pb2.FlowFilter | None = None
    right: flow_pb2.FlowFilter | None = None
    ns: list[str] = field(default_factory=list)
    src_ns: list[str] = field(default_factory=list)
    dst_ns: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def sides(self) -> tuple[flow_pb2.FlowFilter, flow_pb2.FlowFilter]:
        """Both filters, made on first use."""
        return self.source_side(), self.destination_side()

    def source_side(self) -> flow_pb2.FlowFilter:
        if self.left is None:
            self.left = flow_pb2.FlowFilter()
        return self.left

    def destination_side(self) -> flow_pb2.FlowFilter:
        if self.right is None:
            self.right = flow_pb2.FlowFilter()
        return self.right

    def set(self, name: str, value: str) -> None:
        if name not in self.changed:
            self.changed.append(name)
        self._check_conflicts()
        if name in _NAMESPACES:
            getattr(self, _NAMESPACES[name]).append("" if "all-namespaces" in name else value)
        elif name in _SIDED:
            source, destination, parse = _SIDED[name]
            parsed = parse(value)
            _append(self.source_side(), source, parsed)
            _append(self.destination_side(), destination, parsed)
        elif name.startswith(("from-", "to-")) and name.split("-", 1)[1] in _SIDED:
            direction, base = name.split("-", 1)
            source, destination, parse = _SIDED[base]
            parsed = parse(value)
            for side in self.sides():
                _append(side, source if direction == "from" else destination, parsed)
        elif name == "cel-expression":
            for side in self.sides():
                side.experimental.cel_expression.append(value)
        else:
            field_name, parse = _SHARED[name]
            parsed = parse(value)
            for side in self.sides():
                _append(side, field_name, parsed)
        for made in (self.left, self.right):
            if made is not None:
                self._check_namespaces(made)

    def _check_conflicts(self) -> None:
        for group in _CONFLICTS:
            present = [flag for flag in group if flag in self.changed]
            if len(present) > 1:
                raise ValueError(f"filters --{present[0]} and --{present[1]} cannot be combined")

    def _check_namespaces(self, side: flow_pb2.FlowFilter) -> None:
        checks = [
            (
                self.ns,
                [*side.source_pod, *side.source_service, *side.destination_pod, *side.destination_service],
            ),
            (self.src_ns, [*side.source_pod, *side.source_service]),
            (self.dst_ns, [*side.destination_pod, *side.destination_service]),
        ]
        for namespaces, names_ in checks:
            for ns in namespaces:
                for name in names_:
                    if _namespace_of(name) and _namespace_of(name) != ns:
                        raise ValueError(f"namespace conflict: {ns!r} does not contain {name!r}")
        for pods, services in (
            (side.source_pod, side.source_service),
            (side.destination_pod, side.destination_service),
        ):
            for pod in pods:
                for service in services:
                    if _namespace_of(pod) and _namespace_of(service) != _namespace_of(pod):
                        raise ValueError(f"namespace of service {service!r} conflicts with pod {pod!r}")

    def flow_filters(self) -> list[flow_pb2.FlowFilter]:
        if self.left is None and self.right is None and not (self.ns or self.src_ns or self.dst_ns):
            return []
        left, right = self.sides()
        for namespaces, sides, source in (
            (self.dst_ns, (left, right), False),
            (self.src_ns, (left, right), True),
            (self.ns, (left,), True),
            (self.ns, (right,), False),
        ):
            if namespaces:
                for side in sides:
                    _fold_namespaces(side, namespaces, source)
        return [left] if left == right else [left, right]


def _fold_namespaces(side: flow_pb2.FlowFilter, namespaces: list[str], source: bool) -> None:
    """Turn namespaces into pod/service prefixes (`ns/`) on one end of a filter, as hubble does."""
    pod_field, service_field = (
        ("source_pod", "source_service") if source else ("destination_pod", "destination_service")
    )
    pods, services = list(getattr(side, pod_field)), list(getattr(side, service_field))
    if not pods and not services:
        pods = [""]
    for field_name, values in ((pod_field, pods), (service_field, services)):
        del getattr(side, field_name)[:]
        getattr(side, field_name).extend(_with_namespaces(values, namespaces))


class FilterBuilder:
    """Collects filter flags in command-line order and hands back (whitelist, blacklist)."""

    def __init__(self) -> None:
        self._whitelist = _Tracker()
        self._blacklist = _Tracker()
        self._negate_next = False

    def set(self, name: str, value: str = "true") -> None:
        """Apply one flag; ValueError (with hubble's wording) when it is invalid or conflicts."""
        if name == "not":
            if self._negate_next:
                raise ValueError("consecutive --not statements")
            self._negate_next = True
            return
        if name not in FILTER_NAMES:
            raise ValueError(f"unknown filter --{name}")
        tracker = self._blacklist if self._negate_next else self._whitelist
        self._negate_next = False
        tracker.set(name, value)

    def build(self) -> tuple[list[flow_pb2.FlowFilter], list[flow_pb2.FlowFilter]]:
        if self._negate_next:
            raise ValueError("trailing --not found in the arguments")
        return self._whitelist.flow_filters(), self._blacklist.flow_filters()
