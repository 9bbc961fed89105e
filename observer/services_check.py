"""What is wrong with the services of a cluster file, said once, for the agent's log and events.

Kubernetes' API server refuses a bad Service before any node sees it; flowscope's cluster file has no such
gate, so the agent checks each service when the file is loaded. An error leaves that service out (a ClusterIP
that is a pod's address would steal the pod's traffic, a port out of range cannot be put in a map); a warning
is a legal service worth a word (one whose selector picks no pod exists and drops its packets with
SERVICE_BACKEND_NOT_FOUND, as Cilium's does). The datapath's maps are bounded, so services beyond their room
are left out too, in file order, with the limit named.

    checked = check_services(cluster)
    for problem in checked.problems: log(problem)
    install(checked.valid)

The agent logs them through ProblemLog. They are not agent events: Hubble's AgentEventType has no kind for a
refused object (Cilium's API server refuses it before an agent sees it).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowscope.observer.metadata import Cluster, Service

log = logging.getLogger(__name__)

# The datapath's room for services, as bpf/include/flowscope/lb.h sizes its maps (FS_LB_FRONTENDS_MAX,
# FS_LB_BACKENDS_MAX; tests/metadata/test_services.py keeps them equal).
FRONTENDS_MAX = 1024  # service frontends (address, port, protocol) in the whole cluster
BACKENDS_MAX = 64  # backends behind one frontend

PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}  # a service port's protocol, and its IP protocol number
SERVICE_TYPES = ("ClusterIP", "NodePort")
PORTS = range(1, 65536)
NODE_PORTS = range(30000, 32768)  # Kubernetes' default --service-node-port-range


@dataclass(frozen=True)
class ServiceProblem:
    service: str  # namespace/name
    message: str
    error: bool  # True: the service is left out; False: a warning, the service is in force

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CheckedServices:
    problems: list[ServiceProblem]
    valid: tuple[Service, ...]


def check_services(cluster: Cluster) -> CheckedServices:
    """Every problem of every service, and the services left in force, in file order."""
    owners = _address_owners(cluster)
    problems: list[ServiceProblem] = []
    valid: list[Service] = []
    claimed: dict[tuple[str, int, int], str] = {}  # frontend -> the service in force that has it
    names: set[str] = set()
    room = FRONTENDS_MAX
    for service in cluster.services:
        errors = [] if service.key not in names else ["is defined more than once: the first one is in force"]
        names.add(service.key)
        errors += _shape_errors(service, owners)
        frontends = [] if errors else cluster.frontends(service)
        for frontend in frontends:
            other = claimed.get(frontend.key)
            if other is not None:
                errors.append(f"frontend {frontend} is also service {other}'s")
            backends = len(cluster.backends(frontend))
            if backends > BACKENDS_MAX:
                errors.append(
                    f"{backends} backends behind {frontend}, more than the datapath's {BACKENDS_MAX} per frontend"
                )
        if not errors and len(frontends) > room:
            errors.append(
                f"left out: its {len(frontends)} frontends do not fit in the datapath's {FRONTENDS_MAX} "
                f"({FRONTENDS_MAX - room} taken by the services before it)"
            )
        problems += [ServiceProblem(service.key, f"service {service.key}: {error}", True) for error in errors]
        if errors:
            continue
        valid.append(service)
        room -= len(frontends)
        claimed.update((frontend.key, service.key) for frontend in frontends)
        if not cluster.selected(service):
            message = (
                f"service {service.key} selects no pod: it exists with no backends and drops with "
                "SERVICE_BACKEND_NOT_FOUND"
            )
            problems.append(ServiceProblem(service.key, message, False))
    return CheckedServices(problems, tuple(valid))


class ProblemLog:
    """Logs the services' problems of each cluster metadata (a metadata_watch subscriber): a problem once, when
    it first appears, not again on every reload of the file while it lasts."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def update(self, cluster: Cluster) -> None:
        problems = check_services(cluster).problems
        for problem in problems:
            if problem.message not in self._said:
                log.log(logging.ERROR if problem.error else logging.WARNING, "%s", problem.message)
        self._said = {problem.message for problem in problems}


def _shape_errors(service: Service, owners: dict[str, str]) -> list[str]:
    """What is wrong with a service on its own (its type, addresses and ports), or given the pods' and nodes'
    addresses."""
    errors = []
    if service.type not in SERVICE_TYPES:
        errors.append(f"type {service.type!r} is not one of {', '.join(SERVICE_TYPES)}")
    families = []
    for text in service.cluster_ips:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            errors.append(f"cluster ip {text!r} is not an IP address")
            continue
        families.append(address.version)
        owner = owners.get(str(address))
        if owner is not None:
            errors.append(f"cluster ip {address} is {owner}'s address")
    if len(set(families)) != len(families):
        errors.append("has two cluster ips of one family")
    if not service.ports:
        errors.append("has no ports")
    for port in service.ports:
        if port.protocol not in PROTOCOLS:
            errors.append(f"port {port.port}: protocol {port.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if port.port not in PORTS:
            errors.append(f"port {port.port} is out of range (1-65535)")
        if port.target_port not in PORTS:
            errors.append(f"port {port.port}: target port {port.target_port} is out of range (1-65535)")
        if service.type == "NodePort" and port.node_port not in NODE_PORTS:
            errors.append(f"port {port.port}: node port {port.node_port} is out of range (30000-32767)")
        if service.type != "NodePort" and port.node_port:
            errors.append(f"port {port.port}: a {service.type} service has no node port ({port.node_port})")
    return errors


def _address_owners(cluster: Cluster) -> dict[str, str]:
    """Every pod's and node's address, and whose it is (`pod default/client`, `node node1`)."""
    owners = {
        str(ipaddress.ip_address(ip)): f"pod {ep.namespace}/{ep.pod}" for ep in cluster.endpoints for ip in ep.ips
    }
    for node in cluster.nodes:
        owners.update((str(ipaddress.ip_address(ip)), f"node {node.name}") for ip in (node.ipv4, node.ipv6) if ip)
    return owners
