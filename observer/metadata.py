"""What the agent is told about the cluster: its nodes, their endpoints (pods) and the services in front of them.

In Kubernetes this comes from the API server; here it comes from a JSON file that `flowscope lab` writes (or a
person writes by hand), which the agent re-reads whenever it changes (observer/metadata_watch.py, its one reader).
Every agent reads the whole cluster: it attaches to its own node's endpoints and uses the others to name the far
end of a flow, as Cilium's ipcache does.

File format (JSON):
    {"cluster": "lab",
     "nodes": [{"name": "node1", "device": "eth0", "ipv4": "10.77.0.1", "ipv6": "fd77::1",
                "address": "10.77.0.1:4244", "labels": {"role": "worker"}}],
     "endpoints": [{"id": 1001, "node": "node1", "namespace": "default", "pod": "client-7d9f",
                    "labels": {"app": "client"}, "interface": "lxc1001", "netns": "fs-lab-client",
                    "ipv4": "10.200.1.11", "ipv6": "fd00:200:1::11"}],
     "services": [{"name": "web", "namespace": "web", "type": "ClusterIP",
                   "cluster_ips": ["10.96.0.10", "fd96::10"],
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80, "target_port": 80, "node_port": 0}],
                   "selector": {"app": "web"}}]}

A file without "services" has none. Services are checked by observer/services_check.py (Cluster.service_problems).
"""

from __future__ import annotations

import ipaddress
import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowscope.observer.services_check import PROTOCOLS, ServiceProblem, check_services

# Reserved identities, as Cilium numbers them.
IDENTITY_UNKNOWN = 0
IDENTITY_HOST = 1
IDENTITY_WORLD = 2
IDENTITY_REMOTE_NODE = 6
RESERVED_IDENTITY_NAMES = {IDENTITY_HOST: "host", IDENTITY_WORLD: "world", IDENTITY_REMOTE_NODE: "remote-node"}

_FIRST_USER_IDENTITY = 256
_IDENTITY_SPACE = (1 << 24) - _FIRST_USER_IDENTITY


def identity_of(labels: Mapping[str, str]) -> int:
    """The numeric identity of a set of labels.

    Derived from the labels alone, so every node (and every restart) gives the same labels the same number
    without a shared allocator; Cilium allocates through the kvstore instead. Identities start at 256 like
    Cilium's, below which numbers are reserved (host, world, ...).
    """
    text = "\n".join(f"{key}={labels[key]}" for key in sorted(labels))
    return _FIRST_USER_IDENTITY + zlib.crc32(text.encode()) % _IDENTITY_SPACE


def label_strings(labels: Mapping[str, str], source: str = "k8s") -> list[str]:
    """Labels the way Hubble shows them: `k8s:app=client`, sorted."""
    return [f"{source}:{key}={labels[key]}" for key in sorted(labels)]


@dataclass(frozen=True)
class Node:
    name: str
    device: str = "eth0"
    ipv4: str = ""
    ipv6: str = ""
    address: str = ""  # where its observer listens, host:port or unix:///path
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    id: int
    node: str
    namespace: str
    pod: str
    labels: dict[str, str]
    interface: str  # the host-side veth, in the node's network namespace
    netns: str = ""
    ipv4: str = ""
    ipv6: str = ""

    @property
    def identity(self) -> int:
        return identity_of({**self.labels, "io.kubernetes.pod.namespace": self.namespace})

    @property
    def ips(self) -> list[str]:
        return [ip for ip in (self.ipv4, self.ipv6) if ip]


@dataclass(frozen=True, kw_only=True)
class ServicePort:
    """One port of a service: `port` on its ClusterIPs (and `node_port` on every node's addresses for a NodePort
    service) leads to `target_port` on a backend."""

    name: str = ""
    protocol: str = "TCP"  # one of PROTOCOLS
    port: int
    target_port: int
    node_port: int = 0  # NodePort services only: 30000-32767

    @property
    def protocol_number(self) -> int:
        return PROTOCOLS.get(self.protocol, 0)


@dataclass(frozen=True, kw_only=True)
class Service:
    """A Kubernetes Service: ClusterIPs (one per family) and ports, in front of the pods its selector picks."""

    name: str
    namespace: str
    type: str = "ClusterIP"  # one of SERVICE_TYPES
    cluster_ips: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    selector: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """How Hubble and kubectl name it: namespace/name."""
        return f"{self.namespace}/{self.name}"

    def selects(self, endpoint: Endpoint) -> bool:
        """Whether a pod is one of its backends. An empty selector selects nothing, as in Kubernetes (a service
        without a selector has its endpoints set by hand, which the cluster file has no way to say)."""
        return (
            bool(self.selector)
            and endpoint.namespace == self.namespace
            and all(endpoint.labels.get(key) == value for key, value in self.selector.items())
        )

    @classmethod
    def from_dict(cls, raw: dict) -> Service:
        return cls(
            **{
                **raw,
                "cluster_ips": tuple(raw.get("cluster_ips", ())),
                "ports": tuple(ServicePort(**port) for port in raw.get("ports", ())),
            }
        )


@dataclass(frozen=True)
class ServiceFrontend:
    """Where a service port is reached: a ClusterIP at `port`, or (NodePort) a node's address at `node_port`."""

    service: Service
    port: ServicePort
    address: str
    nodeport: bool = False

    @property
    def number(self) -> int:
        """The port number the frontend listens on."""
        return self.port.node_port if self.nodeport else self.port.port

    @property
    def key(self) -> tuple[str, int, int]:
        """What the datapath looks a packet up by: (address, port, IP protocol), the address in its one spelling."""
        return (str(ipaddress.ip_address(self.address)), self.number, self.port.protocol_number)

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.number}/{self.port.protocol}"


@dataclass(frozen=True)
class ServiceBackend:
    """A pod behind a service port, at its address of the frontend's family and the port's target_port."""

    endpoint: Endpoint
    address: str
    port: int


@dataclass(frozen=True)
class Cluster:
    name: str = "default"
    nodes: tuple[Node, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    services: tuple[Service, ...] = ()

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def node_labels(self, name: str) -> list[str]:
        """A node's labels as Hubble puts them on its flows (Flow.node_labels): `key=value`, sorted."""
        node = self.node(name)
        return [] if node is None else [f"{key}={node.labels[key]}" for key in sorted(node.labels)]

    def endpoints_on(self, node: str) -> list[Endpoint]:
        return [ep for ep in self.endpoints if ep.node == node]

    def service(self, key: str) -> Service | None:
        """A service by namespace/name."""
        return next((s for s in self.services if s.key == key), None)

    def selected(self, service: Service) -> list[Endpoint]:
        """The pods a service's selector picks, on any node, by endpoint id."""
        return sorted((ep for ep in self.endpoints if service.selects(ep)), key=lambda ep: ep.id)

    def frontends(self, service: Service) -> list[ServiceFrontend]:
        """Where each of a service's ports is reached: its ClusterIPs, and for a NodePort service every node's
        addresses too (each node answers on its own; Cilium's NodePort listens on every node)."""
        found = [ServiceFrontend(service, port, ip) for port in service.ports for ip in service.cluster_ips]
        if service.type == "NodePort":
            found += [
                ServiceFrontend(service, port, ip, nodeport=True)
                for port in service.ports
                for node in self.nodes
                for ip in (node.ipv4, node.ipv6)
                if ip
            ]
        return found

    def backends(self, frontend: ServiceFrontend) -> list[ServiceBackend]:
        """The backends behind a frontend: each selected pod's address of the frontend's family, at the port's
        target_port. A pod without an address of that family is no backend of it."""
        version = ipaddress.ip_address(frontend.address).version
        return [
            ServiceBackend(ep, ip, frontend.port.target_port)
            for ep in self.selected(frontend.service)
            for ip in ep.ips
            if ipaddress.ip_address(ip).version == version
        ]

    def service_problems(self) -> list[ServiceProblem]:
        """What is wrong with the services, errors (the service is left out) and warnings; see services_check."""
        return check_services(self).problems

    def valid_services(self) -> tuple[Service, ...]:
        """The services the datapath can take: those without errors, within its limits, in file order."""
        return check_services(self).valid

    def to_json(self) -> str:
        return json.dumps(
            {
                "cluster": self.name,
                "nodes": [asdict(n) for n in self.nodes],
                "endpoints": [asdict(e) for e in self.endpoints],
                "services": [asdict(s) for s in self.services],
            },
            indent=2,
        )

    def save(self, path: Path) -> None:
        """Write atomically, so an agent re-reading the file never sees half of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def from_json(cls, text: str) -> Cluster:
        raw = json.loads(text)
        return cls(
            name=raw.get("cluster", "default"),
            nodes=tuple(Node(**n) for n in raw.get("nodes", [])),
            endpoints=tuple(Endpoint(**e) for e in raw.get("endpoints", [])),
            services=tuple(Service.from_dict(s) for s in raw.get("services", [])),
        )

    @classmethod
    def load(cls, path: Path) -> Cluster:
        return cls.from_json(path.read_text())
