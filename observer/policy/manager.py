"""The policy in force on this node: applying a file, recompiling when the cluster changes, answering what it
does, and the table that names the rules behind the datapath's numbers.

Applying is all or nothing: the text is parsed and compiled before anything is written, so a bad file leaves
the running policy as it was. A new compiled policy is installed as a new revision (observer/datapath/
policymaps.py): live connections keep flowing when they are still allowed and are cut when not, because each
re-checks its verdict on its next packet once the revision it was judged at is no longer current.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import yaml

from flowscope.observer.datapath.maps import RuntimeConfig
from flowscope.observer.datapath.policymaps import PolicyMaps, PolicyValue, QueryAnswer
from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.metadata import RESERVED_IDENTITY_NAMES, Cluster
from flowscope.observer.policy.compile import Compiled, compile_policies
from flowscope.observer.policy.identities import Endpoints
from flowscope.observer.policy.model import PORTED_PROTOCOLS, IPNetwork, Policy
from flowscope.observer.policy.parse import PolicyError, parse_policies
from flowscope.observer.policy.rules import RuleTable


class PolicyDatapath(Protocol):
    """What the manager needs of observer.datapath.Datapath."""

    @property
    def policy(self) -> PolicyMaps: ...
    def replace_policy_ipcache(self, entries: dict[IPNetwork, int]) -> None: ...
    def update_config(self, **changes: int) -> RuntimeConfig: ...


@dataclass(frozen=True)
class Status:
    revision: int  # 0: no policy was ever applied
    source: str  # where the text came from (a file name)
    text: str
    policies: tuple[Policy, ...]
    compiled: Compiled


@dataclass(frozen=True)
class Check:
    source: str  # the addresses asked about
    destination: str
    answer: QueryAnswer
    # The nodes hosting each side ("" outside the cluster): a side's verdict is its own node's to give, since
    # each agent enforces the policy it was given, and a node's maps may not hold what another node's do.
    source_node: str = ""
    destination_node: str = ""


class PolicyManager:
    def __init__(
        self,
        datapath: PolicyDatapath,
        registry: EndpointRegistry,
        on_change: Callable[[Status, Status], None] = lambda before, after: None,
    ) -> None:
        """`on_change(before, after)` hears of every apply and delete (the agent's policy events), not of the
        recompiles that follow the cluster, which change no policy."""
        self._datapath = datapath
        self._registry = registry
        self._on_change = on_change
        self._lock = threading.Lock()
        self.rules = RuleTable()
        self._status = Status(0, "", "", (), Compiled())
        self._cluster: Cluster | None = None

    @property
    def status(self) -> Status:
        return self._status

    def apply(self, text: str, source: str = "") -> Status:
        """Parse, compile and install `text`; PolicyError (nothing changed) when it cannot be used."""
        policies = tuple(parse_policies(text, source))
        with self._lock:
            return self._enforce(policies, source, text)

    def delete(self, names: Sequence[str] = ()) -> Status:
        """Stop enforcing the named policies (all of them when none is named), as a new revision; PolicyError
        (nothing changed) for a name not in force. What is left keeps its rules and shows as flowscope YAML."""
        with self._lock:
            current = self._status
            unknown = [name for name in names if name not in {p.name for p in current.policies}]
            if unknown:
                applied = ", ".join(p.name for p in current.policies) or "none"
                raise PolicyError(f"no policy named {', '.join(map(repr, unknown))} is applied (applied: {applied})")
            kept = tuple(p for p in current.policies if names and p.name not in names)
            text = yaml.safe_dump({"policies": [dict(p.document) for p in kept]}, sort_keys=False) if kept else ""
            return self._enforce(kept, current.source if kept else "", text)

    def _enforce(self, policies: tuple[Policy, ...], source: str, text: str) -> Status:
        cluster = self._registry.snapshot.cluster
        compiled = compile_policies(policies, Endpoints.of(cluster))
        self.rules.enforce(policies)
        before, self._status = self._status, Status(self._install(compiled), source, text, policies, compiled)
        self._cluster = cluster
        self._on_change(before, self._status)
        return self._status

    def refresh(self) -> bool:
        """Recompile for the cluster as it is now (endpoints came, went or changed labels); whether a new
        revision was installed."""
        with self._lock:
            cluster = self._registry.snapshot.cluster
            if cluster is self._cluster or not self._status.revision:
                return False
            self._cluster = cluster
            compiled = compile_policies(self._status.policies, Endpoints.of(cluster))
            if compiled == self._status.compiled:
                return False
            self._status = replace(self._status, revision=self._install(compiled), compiled=compiled)
            return True

    def _install(self, compiled: Compiled) -> int:
        """Write the policy into the generation not in use, then switch the revision to it; the revision."""
        revision = self._status.revision + 1
        generation = revision & 1
        entries = {key: PolicyValue(self.rules.id(e.rule), e.deny) for key, e in compiled.entries.items()}
        maps = self._datapath.policy
        maps.write_generation(generation, entries, compiled.enforced)
        self._datapath.replace_policy_ipcache(compiled.ipcache)
        self._datapath.update_config(policy_rev=revision)
        maps.clear_generation(generation ^ 1)
        return revision

    # answering questions about it

    def check(self, source: str, destination: str, proto: int, port: int) -> Check:
        """Would `source` (a pod or an address) reach `destination` on proto/port? The datapath answers."""
        src, dst = self._address(source), self._address(destination)
        if src.version != dst.version:
            src, dst = self._address(source, dst.version), self._address(destination, src.version)
        if proto not in PORTED_PROTOCOLS:
            port = 0  # the datapath judges ICMP and protocols without ports by port 0
        answer = self._datapath.policy.query(str(src), str(dst), proto, port)
        return Check(str(src), str(dst), answer, self._node_of(src), self._node_of(dst))

    def _node_of(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        cluster = self._registry.snapshot.cluster
        hosts = (ep.node for ep in cluster.endpoints if address in map(ipaddress.ip_address, ep.ips))
        return next(hosts, "")

    @property
    def node_name(self) -> str:
        return self._registry.node_name

    def _address(self, name: str, version: int | None = None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        try:
            return ipaddress.ip_address(name)
        except ValueError:
            pass
        namespace, _, pod = name.rpartition("/")
        found = [
            ep
            for ep in self._registry.snapshot.cluster.endpoints
            if ep.pod == pod and (not namespace or ep.namespace == namespace)
        ]
        if not found:
            raise PolicyError(f"no pod {name!r} in the cluster metadata (give namespace/pod or an address)")
        if len(found) > 1:
            raise PolicyError(f"{name!r} names {len(found)} pods; say which: namespace/pod")
        addresses = [ipaddress.ip_address(ip) for ip in found[0].ips]
        for address in addresses:
            if version is None or address.version == version:
                return address
        raise PolicyError(f"pod {name!r} has no IPv{version} address")

    def identity_name(self, identity: int) -> str:
        """A person's name for an identity: its pods, a reserved name, a CIDR, or the number."""
        if identity == 0:
            return "any"
        if identity in RESERVED_IDENTITY_NAMES:
            return f"reserved:{RESERVED_IDENTITY_NAMES[identity]}"
        pods = Endpoints.of(self._registry.snapshot.cluster).pods.get(identity)
        if pods:
            return ",".join(pods)
        for prefix, number in self._status.compiled.ipcache.items():
            if number == identity:
                return f"cidr:{prefix}"
        return str(identity)

    def rule_name(self, number: int) -> str | None:
        return self.rules.name(number)
