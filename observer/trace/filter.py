"""A trace session's filter, compiled into the terms the datapath runs as packets enter it.

    compiled = compile_filter(request.filters, request.pcap_filter, RegistryPods(registry))
    session.terms = encode(compiled.terms)     # and compiled.text is what SessionStarted.filter shows

"Filter once, then track": the datapath picks a packet by its headers where it enters, so only what headers
say can pick it. `filters` keep Hubble's meaning (any filter; in one, every field set; in a field, any value)
for the fields headers carry: source/destination ip, pod (its addresses, looked up now), port, protocol,
tcp_flags, ip_version; any other field is refused, saying why. `pcap_filter` is a pcap expression
(pcap_filter.py has its grammar). A packet must match both: each is brought to clauses of terms and the two
multiplied (terms.py), which must fit the datapath's FS_PATH_TERMS_MAX terms.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from flowscope.api.flow import flow_pb2
from flowscope.common.filter_values import port_number, protocol_name
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.filters.base import FilterError
from flowscope.observer.filters.ip import parse_networks
from flowscope.observer.filters.pod import parse_namespaced_names
from flowscope.observer.filters.protocol import L4_PROTOCOLS
from flowscope.observer.trace.pcap_filter import parse_pcap
from flowscope.observer.trace.terms import (
    TERMS_MAX,
    TRUE,
    All,
    AnyOf,
    Expr,
    Field,
    Not,
    Term,
    dnf,
    encode,
    flatten,
    render,
)

__all__ = ["CompiledFilter", "FilterError", "PodAddresses", "RegistryPods", "Term", "compile_filter", "encode"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
V = TypeVar("V")

SUPPORTED_FIELDS = (
    "source_ip",
    "destination_ip",
    "source_pod",
    "destination_pod",
    "source_port",
    "destination_port",
    "protocol",
    "tcp_flags",
    "ip_version",
)
# TCPFlags fields by the bit they are in the flags byte; NS is not in it (the datapath keeps only that byte)
_TCP_FLAG_FIELDS = {
    "FIN": 0x01,
    "SYN": 0x02,
    "RST": 0x04,
    "PSH": 0x08,
    "ACK": 0x10,
    "URG": 0x20,
    "ECE": 0x40,
    "CWR": 0x80,
}


class PodAddresses(Protocol):
    """Where a pod is: its IPv4 and IPv6 addresses (none when no such pod is known)."""

    def pod_addresses(self, namespace: str, pod: str) -> Sequence[IPAddress]: ...


@dataclass(frozen=True)
class RegistryPods:
    """The pods the agent's endpoint registry knows now, in the whole cluster (departed ones are not pods)."""

    registry: EndpointRegistry

    def pod_addresses(self, namespace: str, pod: str) -> Sequence[IPAddress]:
        return [
            ipaddress.ip_address(ip)
            for ep in self.registry.snapshot.cluster.endpoints
            if ep.namespace == namespace and ep.pod == pod
            for ip in ep.ips
        ]


@dataclass(frozen=True)
class CompiledFilter:
    terms: tuple[Term, ...]  # what the datapath runs: clauses separated by Field.OR terms; () picks everything
    text: str  # the same, readable: "(src host 10.200.1.11 and tcp and dst port 80) or (...)"

    def encoded(self) -> bytes:
        return encode(self.terms)


def compile_filter(filters: Sequence[flow_pb2.FlowFilter], pcap_filter: str, pods: PodAddresses) -> CompiledFilter:
    """The terms that pick what `filters` and `pcap_filter` both select; FilterError says what cannot be run."""
    wanted = AnyOf(tuple(_flow_filter(ff, pods) for ff in filters)) if filters else TRUE
    clauses = dnf(All((wanted, parse_pcap(pcap_filter))))
    if not clauses:
        raise FilterError("the filter can match no packet (it asks for a term and its opposite together)")
    terms = flatten(clauses)
    if len(terms) > TERMS_MAX:
        raise FilterError(
            f"the filter expands to {len(terms)} terms, more than the datapath's {TERMS_MAX} "
            f"({len(clauses)} alternatives of ANDed terms); write a simpler filter, e.g. fewer values ORed "
            "inside an AND, or a CIDR for several addresses"
        )
    return CompiledFilter(terms, render(terms))


def _flow_filter(ff: flow_pb2.FlowFilter, pods: PodAddresses) -> Expr:
    """One FlowFilter: every field set holds, each by one of its values."""
    for descriptor, _ in ff.ListFields():
        if descriptor.name not in SUPPORTED_FIELDS:
            raise FilterError(
                f"flow filter field {descriptor.name} cannot pick packets in the datapath: a trace picks a packet "
                f"by its headers as it enters, before {descriptor.name} is known (supported: "
                f"{', '.join(SUPPORTED_FIELDS)})"
            )
    parts = [
        _values(ff.source_ip, lambda v: _addresses(Field.SRC_ADDR, v, "source IP")),
        _values(ff.destination_ip, lambda v: _addresses(Field.DST_ADDR, v, "destination IP")),
        _values(ff.source_pod, lambda v: _pod(Field.SRC_ADDR, v, pods, "source pod")),
        _values(ff.destination_pod, lambda v: _pod(Field.DST_ADDR, v, pods, "destination pod")),
        _values(ff.source_port, lambda v: _port(Field.SRC_PORT, v, "source port")),
        _values(ff.destination_port, lambda v: _port(Field.DST_PORT, v, "destination port")),
        _values(ff.protocol, _protocol),
        _values(ff.tcp_flags, _tcp_flags),
        _values(ff.ip_version, _ip_version),
    ]
    return All(tuple(part for part in parts if part is not None))


def _values(values: Sequence[V], expr: Callable[[V], Expr]) -> Expr | None:
    """A field: any of its values (None when the field is not set)."""
    return AnyOf(tuple(expr(value) for value in values)) if values else None


def _addresses(field: Field, value: str, what: str) -> Expr:
    (net,) = parse_networks([value], what)
    return Term.address(field, net)


def _pod(field: Field, value: str, pods: PodAddresses, what: str) -> Expr:
    ((namespace, pod),) = parse_namespaced_names([value], what)
    if not pod:
        raise FilterError(f"invalid {what} filter {value!r}: a trace picks the packets of one pod, named exactly")
    addresses = pods.pod_addresses(namespace, pod)
    if not addresses:
        raise FilterError(f"invalid {what} filter {value!r}: no pod {namespace}/{pod} is known to this node")
    return AnyOf(tuple(Term.address(field, ipaddress.ip_network(ip)) for ip in addresses))


def _port(field: Field, value: str, what: str) -> Expr:
    try:
        port = port_number(value)
    except ValueError as exc:
        raise FilterError(f"invalid {what} filter: {exc}") from None
    return Term.ports(field, port, port)


def _protocol(value: str) -> Expr:
    try:
        name = protocol_name(value)
    except ValueError as exc:
        raise FilterError(f"invalid protocol filter: {exc}") from None
    if name not in L4_PROTOCOLS:
        raise FilterError(f"protocol {name} cannot pick packets in the datapath: it is an L7 protocol, not in headers")
    return AnyOf(tuple(Term.protocol(number) for number in L4_PROTOCOLS[name]))


def _tcp_flags(flags: flow_pb2.TCPFlags) -> Expr:
    if flags.NS:
        raise FilterError("tcp_flags NS cannot pick packets in the datapath: it keeps only the FIN ... CWR byte")
    bits = sum(bit for name, bit in _TCP_FLAG_FIELDS.items() if getattr(flags, name))
    return Term.tcp_flags(bits, bits)


def _ip_version(version: int) -> Expr:
    if version == flow_pb2.IPv4:
        return Term.ip_family(4)
    if version == flow_pb2.IPv6:
        return Term.ip_family(6)
    return All((Not(Term.ip_family(4)), Not(Term.ip_family(6))))  # IP_NOT_USED
