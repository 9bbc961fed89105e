"""A network policy as flowscope understands it, after parsing and before compiling.

The shape is Cilium's (CiliumNetworkPolicy's spec): an endpoint selector picks the subjects; ingress and egress
rules allow peers (endpoints by labels, CIDRs, entities) on ports; ingressDeny and egressDeny deny them. A rule's
peer kinds add up (any of them), and its ports narrow them; no peers means any peer, no ports any port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowscope.common.names import IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PORTED_PROTOCOLS = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)  # what "ANY" with a port means, as in Cilium

NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
ENTITIES = ("all", "world", "cluster", "host", "remote-node")
SECTIONS = ("ingress", "ingressDeny", "egress", "egressDeny")
POLICY_LABEL = "k8s:io.cilium.k8s.policy."  # the labels Cilium gives a rule after the object it came from


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry: key In/NotIn values, or key Exists/DoesNotExist."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        present = labels.get(self.key)
        if self.operator == "In":
            return present in self.values
        return present not in self.values  # NotIn


@dataclass(frozen=True)
class Selector:
    """A label selector; the empty one selects every endpoint."""

    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels) and all(r.matches(labels) for r in self.expressions)

    def names_label(self, key: str) -> bool:
        return any(k == key for k, _ in self.labels) or any(r.key == key for r in self.expressions)

    def within(self, namespace: str | None) -> Selector:
        """The selector a namespaced policy means: its own namespace unless it names one itself (Cilium's)."""
        if namespace is None or self.names_label(NAMESPACE_LABEL):
            return self
        return Selector((*self.labels, (NAMESPACE_LABEL, namespace)), self.expressions)


@dataclass(frozen=True)
class CIDRSet:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class PortRule:
    """A protocol (0: TCP, UDP and SCTP) and a port range (0: every port)."""

    proto: int = 0
    port: int = 0
    end_port: int = 0

    def map_keys(self) -> list[tuple[int, int]]:
        """(protocol, port) pairs of the policy map this stands for."""
        protos = PORTED_PROTOCOLS if self.proto == 0 and self.port else (self.proto,)
        last = max(self.end_port, self.port)
        return [(proto, port) for proto in protos for port in range(self.port, last + 1)]


@dataclass(frozen=True)
class Rule:
    endpoints: tuple[Selector, ...] = ()
    cidrs: tuple[CIDRSet, ...] = ()
    entities: tuple[str, ...] = ()
    ports: tuple[PortRule, ...] = ()

    @property
    def any_peer(self) -> bool:
        """No peer given: the rule is about its ports, whoever the peer (Cilium's L4-only rules)."""
        return not (self.endpoints or self.cidrs or self.entities)


@dataclass(frozen=True)
class Policy:
    name: str
    subject: Selector
    namespace: str | None = None
    ingress: tuple[Rule, ...] = ()
    ingress_deny: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    egress_deny: tuple[Rule, ...] = ()
    # The policy as flowscope's own YAML spells it, so what is left after `policy delete NAME` can be shown.
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def section(self, name: str) -> tuple[Rule, ...]:
        return {
            "ingress": self.ingress,
            "ingressDeny": self.ingress_deny,
            "egress": self.egress,
            "egressDeny": self.egress_deny,
        }[name]

    @property
    def selects(self) -> Selector:
        return self.subject.within(self.namespace)

    @property
    def kind(self) -> str:
        """The Cilium object it stands for: namespaced, a CiliumNetworkPolicy; else a cluster-wide one."""
        return "CiliumNetworkPolicy" if self.namespace is not None else "CiliumClusterwideNetworkPolicy"

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels Cilium derives its rules' from the object (sorted by key, as Cilium keeps them), which
        flows name a policy by (docs/reference/hubble-api.md, Policy.labels)."""
        labels = {"derived-from": self.kind, "name": self.name}
        if self.namespace is not None:
            labels["namespace"] = self.namespace
        return tuple(f"{POLICY_LABEL}{key}={value}" for key, value in sorted(labels.items()))
