"""The lab's plan: which namespaces, pods and addresses a lab of a given name and size has.

Everything here is computed from the lab's name and node count alone, without touching the system, so the
builder, the traffic generator, `lab status` and tests all agree on names and addresses without reading state.

Addressing (n is the node's number, k the pod's number on its node):
    underlay    10.77.0.0/24, fd77::/64        node n: 10.77.0.n, fd77::n      world: 10.77.0.254, fd77::fe
    pods        node n's pod CIDR 10.200.n.0/24, fd00:200:n::/64; pod k: 10.200.n.(10+k), fd00:200:n::(10+k)
    gateway     pods reach their node through 169.254.1.1 and fe80::1, answered by the host side `lxc<id>`
    overlay     (--tunnel vxlan) node n's fs_vxlan has MAC 02:fd:00:00:00:nn; VNI 77, UDP port 8472
    services    ClusterIPs from 10.96.0.0/16 and fd96::/112, the same offset in both, derived from the service's
                namespace/name (cluster_ips); NodePorts on every node's underlay addresses
Endpoint ids are n*1000 + k, unique in the cluster, and name the host-side interface (`lxc1001`).
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from flowscope.common.paths import DEFAULT_SOCKET, RUN_DIR
from flowscope.observer.metadata import Cluster, Endpoint, Node, Service, ServicePort

LABS_DIR = RUN_DIR / "labs"
DEFAULT_AGENT_SOCKET = DEFAULT_SOCKET  # the CLI's default, used by one-node labs
AGENT_PORT = 4244
DOMAIN = "svc.lab"  # services resolve as <service>.<namespace>.svc.lab., and so do pods no service shadows
POD_DOMAIN = "pod.lab"  # every pod resolves as <pod>.<namespace>.pod.lab.
MAX_NODES = 250
TUNNELS = ("disabled", "vxlan")  # Cilium's routing modes: native routing, or an overlay (its default, vxlan)
TUNNEL_DEVICE = "fs_vxlan"  # Cilium's cilium_vxlan
TUNNEL_VNI = 77  # Cilium carries the source's identity here; the lab's routes carry one VNI for all

GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
HTTP_PORT = 80
HTTPS_PORT = 443
DNS_PORT = 53
TCP_RR_PORT = 9000
UDP_ECHO_PORT = 9001
SERVICE_CIDR_V4 = ipaddress.IPv4Network("10.96.0.0/16")
SERVICE_CIDR_V6 = ipaddress.IPv6Network("fd96::/112")
SERVER_NODE_PORT = 30900

# (pod, Kubernetes namespace, labels), placed round-robin over the nodes so with two nodes or more the
# client's traffic to the server and the web pod crosses nodes while its DNS stays local, and the two web pods
# (the web service's backends) are on different nodes. New pods go at the end: the others keep their places.
_PODS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("client", "default", {"app": "client"}),
    ("server", "default", {"app": "server"}),
    ("coredns", "kube-system", {"k8s-app": "kube-dns"}),
    ("web", "web", {"app": "web"}),
    ("web2", "web", {"app": "web"}),
)

# The lab's services: web/web in front of both web pods (HTTP and HTTPS), the cluster DNS, and a NodePort the
# world host can reach on any node (the server pod's request/response port).
_SERVICES: tuple[Service, ...] = (
    Service(
        name="web",
        namespace="web",
        ports=(
            ServicePort(name="http", protocol="TCP", port=HTTP_PORT, target_port=HTTP_PORT),
            ServicePort(name="https", protocol="TCP", port=HTTPS_PORT, target_port=HTTPS_PORT),
        ),
        selector={"app": "web"},
    ),
    Service(
        name="kube-dns",
        namespace="kube-system",
        ports=(
            ServicePort(name="dns", protocol="UDP", port=DNS_PORT, target_port=DNS_PORT),
            ServicePort(name="dns-tcp", protocol="TCP", port=DNS_PORT, target_port=DNS_PORT),
        ),
        selector={"k8s-app": "kube-dns"},
    ),
    Service(
        name="server-np",
        namespace="default",
        type="NodePort",
        ports=(
            ServicePort(
                name="rr", protocol="TCP", port=TCP_RR_PORT, target_port=TCP_RR_PORT, node_port=SERVER_NODE_PORT
            ),
        ),
        selector={"app": "server"},
    ),
)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def validate_name(name: str) -> str:
    """Lab names become part of namespace and file names: lower-case letters, digits and dashes only."""
    if not _NAME.match(name):
        raise ValueError(f"bad lab name {name!r}: use 1-32 lower-case letters, digits and inner dashes")
    return name


def netns_prefix(lab: str) -> str:
    return f"fs-{lab}-"


def owns_netns(lab: str, netns: str) -> bool:
    """Whether a namespace belongs to this lab.

    Every namespace a lab makes is `fs-<lab>-<one word>`, so a lab named `a` never claims `fs-a-b-node1`,
    which belongs to the lab named `a-b`.
    """
    prefix = netns_prefix(lab)
    rest = netns[len(prefix) :]
    return netns.startswith(prefix) and bool(rest) and "-" not in rest


@dataclass(frozen=True)
class Host:
    """A machine on the underlay: a node, or the world host outside the cluster."""

    name: str
    netns: str
    ipv4: str
    ipv6: str


@dataclass(frozen=True)
class NodeHost(Host):
    index: int = 0
    pod_cidr_v4: str = ""
    pod_cidr_v6: str = ""

    @property
    def tunnel_mac(self) -> str:
        """Its tunnel device's MAC address: fixed, so other nodes can route to it without asking."""
        return f"02:fd:00:00:00:{self.index:02x}"

    def labels(self) -> dict[str, str]:
        """Labels as a Kubernetes node carries them, for `--node-label` to select (zones: odd nodes a, even b)."""
        zone = "lab-a" if self.index % 2 else "lab-b"
        return {"kubernetes.io/hostname": self.name, "topology.kubernetes.io/zone": zone, "role": "worker"}


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str  # the Kubernetes namespace
    labels: dict[str, str]
    node: str
    endpoint_id: int
    netns: str  # the pod's network namespace
    node_netns: str  # where its host-side interface lives
    ifname: str  # the host-side interface, lxc<endpoint id>
    ipv4: str
    ipv6: str

    @property
    def fqdn(self) -> str:
        """The name that always resolves to this pod (the svc zone's name may be a service's: web/web)."""
        return f"{self.name}.{self.namespace}.{POD_DOMAIN}."

    def endpoint(self) -> Endpoint:
        """The pod as the cluster file lists it: one mapping, used for the lab's pods and for any added later."""
        return Endpoint(
            id=self.endpoint_id,
            node=self.node,
            namespace=self.namespace,
            pod=self.name,
            labels=dict(self.labels),
            interface=self.ifname,
            netns=self.netns,
            ipv4=self.ipv4,
            ipv6=self.ipv6,
        )


@dataclass(frozen=True)
class Topology:
    name: str
    nodes: tuple[NodeHost, ...]
    pods: tuple[Pod, ...]
    world: Host
    underlay_netns: str
    default_socket: bool = False  # a one-node lab's agent serves on the CLI's default socket
    tunnel: str = "disabled"  # TUNNELS: how nodes reach each other's pods
    services: tuple[Service, ...] = ()

    @property
    def state_dir(self) -> Path:
        return LABS_DIR / self.name

    @property
    def cluster_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def netns_names(self) -> list[str]:
        hosts: list[Host | Pod] = [*self.nodes, self.world, *self.pods]
        return [self.underlay_netns, *(h.netns for h in hosts)]

    def pod(self, name: str) -> Pod:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(f"lab {self.name} has no pod {name!r}")

    def pod_with(self, key: str, value: str) -> Pod:
        """The first pod carrying a label, e.g. pod_with("k8s-app", "kube-dns")."""
        for pod in self.pods:
            if pod.labels.get(key) == value:
                return pod
        raise KeyError(f"lab {self.name} has no pod labelled {key}={value}")

    def service(self, key: str) -> Service:
        """A service by namespace/name, e.g. service("web/web")."""
        for service in self.services:
            if service.key == key:
                return service
        raise KeyError(f"lab {self.name} has no service {key!r}")

    def node(self, name: str) -> NodeHost:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"lab {self.name} has no node {name!r}")

    def netns_of(self, name: str) -> str:
        """The namespace of a pod, node, `world` or `underlay`, by its short name."""
        if name == "underlay":
            return self.underlay_netns
        if name == self.world.name:
            return self.world.netns
        hosts: list[Host | Pod] = [*self.nodes, *self.pods]
        for host in hosts:
            if host.name == name:
                return host.netns
        raise KeyError(f"lab {self.name} has no pod or host {name!r}")

    def agent_socket(self, node: str) -> Path:
        """Where the node's agent listens: the CLI's default socket when asked for (one node only).

        Test labs keep their own sockets, so several one-node labs with agents can run at once.
        """
        if self.default_socket and len(self.nodes) == 1:
            return DEFAULT_AGENT_SOCKET
        return self.state_dir / node / "hubble.sock"

    def cluster(self) -> Cluster:
        """The cluster metadata the agents read (observer/metadata.py)."""
        nodes = tuple(
            Node(
                name=n.name,
                device="eth0",
                ipv4=n.ipv4,
                ipv6=n.ipv6,
                address=f"{n.ipv4}:{AGENT_PORT}",
                labels=n.labels(),
            )
            for n in self.nodes
        )
        endpoints = tuple(p.endpoint() for p in self.pods)
        return Cluster(name=self.name, nodes=nodes, endpoints=endpoints, services=self.services)


def cluster_ips(keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """A ClusterIP pair (v4, v6) for each service namespace/name: the same offset into both service CIDRs, from
    a CRC of the name (probing on past one already given), so a service keeps its addresses from lab to lab and
    the v4 and v6 addresses read alike (10.96.x.y, fd96::xxyy). The offsets skip the CIDRs' first and last."""
    size = SERVICE_CIDR_V4.num_addresses - 2
    taken: set[int] = set()
    found = {}
    for key in keys:
        offset = zlib.crc32(key.encode()) % size + 1
        while offset in taken:
            offset = offset % size + 1
        taken.add(offset)
        found[key] = (str(SERVICE_CIDR_V4[offset]), str(SERVICE_CIDR_V6[offset]))
    return found


def _with_cluster_ips(services: Iterable[Service]) -> tuple[Service, ...]:
    services = tuple(services)
    ips = cluster_ips(service.key for service in services)
    return tuple(replace(service, cluster_ips=ips[service.key]) for service in services)


def plan(name: str, nodes: int = 1, default_socket: bool = False, tunnel: str = "disabled") -> Topology:
    """The topology of lab `name` with `nodes` nodes (default_socket: see Topology.agent_socket; tunnel: one of
    TUNNELS)."""
    validate_name(name)
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"a lab has 1 to {MAX_NODES} nodes, not {nodes}")
    if tunnel not in TUNNELS:
        raise ValueError(f"bad tunnel {tunnel!r}: one of {', '.join(TUNNELS)}")
    prefix = netns_prefix(name)
    node_hosts = tuple(
        NodeHost(
            name=f"node{n}",
            netns=f"{prefix}node{n}",
            ipv4=f"10.77.0.{n}",
            ipv6=f"fd77::{n}",
            index=n,
            pod_cidr_v4=f"10.200.{n}.0/24",
            pod_cidr_v6=f"fd00:200:{n}::/64",
        )
        for n in range(1, nodes + 1)
    )
    pods: list[Pod] = []
    per_node: dict[int, int] = {}
    for i, (pod, namespace, labels) in enumerate(_PODS):
        node = node_hosts[i % nodes]
        k = per_node[node.index] = per_node.get(node.index, 0) + 1
        endpoint_id = node.index * 1000 + k
        pods.append(
            Pod(
                name=pod,
                namespace=namespace,
                labels=dict(labels),
                node=node.name,
                endpoint_id=endpoint_id,
                netns=f"{prefix}{pod}",
                node_netns=node.netns,
                ifname=f"lxc{endpoint_id}",
                ipv4=f"10.200.{node.index}.{10 + k}",
                ipv6=f"fd00:200:{node.index}::{10 + k}",
            )
        )
    world = Host(name="world", netns=f"{prefix}world", ipv4="10.77.0.254", ipv6="fd77::fe")
    return Topology(
        name=name,
        nodes=node_hosts,
        pods=tuple(pods),
        world=world,
        underlay_netns=f"{prefix}underlay",
        default_socket=default_socket,
        tunnel=tunnel,
        services=_with_cluster_ips(_SERVICES),
    )
