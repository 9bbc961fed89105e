"""The endpoint registry: which address, interface and identity belong to which pod.

The datapath only carries numbers (ifindex, endpoint id, identity) and addresses; this registry turns them into
the names a person reads (namespace, pod, labels). It is read by the decoder and the filters on every query
and replaced whole when the cluster metadata changes, so readers take one immutable snapshot and never lock.

Endpoints that leave are remembered (until their address is given to someone else) so flows recorded while
they lived still carry their names: the ring is decoded lazily, long after the packet. The snapshot also holds
the service frontends flows are named with (observer/service_table.py), rebuilt with it.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flowscope.common.names import IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD
from flowscope.observer.metadata import (
    RESERVED_IDENTITY_NAMES,
    Cluster,
    Endpoint,
    label_strings,
)
from flowscope.observer.service_table import ServiceTable, service_table

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class EndpointInfo:
    """One side of a flow as Hubble names it."""

    identity: int
    id: int = 0  # endpoint id; set only for endpoints of this node, as in Hubble
    namespace: str = ""
    pod: str = ""
    labels: tuple[str, ...] = ()  # "k8s:app=client" form, sorted
    node: str = ""
    cluster: str = ""

    @property
    def is_pod(self) -> bool:
        return bool(self.pod)


def _reserved(identity: int, cluster: str) -> EndpointInfo:
    return EndpointInfo(identity=identity, labels=(f"reserved:{RESERVED_IDENTITY_NAMES[identity]}",), cluster=cluster)


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the cluster from one node."""

    node_name: str
    cluster: Cluster
    by_ip: dict[IPAddress, EndpointInfo] = field(default_factory=dict)
    local: dict[int, Endpoint] = field(default_factory=dict)  # endpoint id -> endpoint on this node
    interfaces: dict[int, str] = field(default_factory=dict)  # ifindex -> name, for attached devices
    world: EndpointInfo = field(default_factory=lambda: _reserved(IDENTITY_WORLD, ""))
    services: ServiceTable = field(default_factory=ServiceTable)

    def lookup(self, ip: IPAddress | None) -> EndpointInfo:
        """The endpoint that owns an address; world when nobody in the cluster does."""
        if ip is None:
            return self.world
        return self.by_ip.get(ip, self.world)

    def endpoints(self) -> Iterable[EndpointInfo]:
        return self.by_ip.values()

    def ips_where(self, predicate: Callable[[EndpointInfo], bool]) -> list[IPAddress]:
        return [ip for ip, info in self.by_ip.items() if predicate(info)]

    def namespaces(self) -> set[str]:
        return {ep.namespace for ep in self.cluster.endpoints}

    def interface_name(self, ifindex: int) -> str:
        return self.interfaces.get(ifindex, "")


def _build(
    node_name: str,
    cluster: Cluster,
    interfaces: dict[int, str],
    departed: dict[IPAddress, EndpointInfo],
    services: ServiceTable | None = None,
) -> Snapshot:
    by_ip: dict[IPAddress, EndpointInfo] = dict(departed)
    for node in cluster.nodes:
        identity = IDENTITY_HOST if node.name == node_name else IDENTITY_REMOTE_NODE
        info = EndpointInfo(
            identity=identity,
            labels=(f"reserved:{RESERVED_IDENTITY_NAMES[identity]}",),
            node=node.name,
            cluster=cluster.name,
        )
        for ip in (node.ipv4, node.ipv6):
            if ip:
                by_ip[ipaddress.ip_address(ip)] = info
    local: dict[int, Endpoint] = {}
    for ep in cluster.endpoints:
        info = EndpointInfo(
            identity=ep.identity,
            id=ep.id if ep.node == node_name else 0,
            namespace=ep.namespace,
            pod=ep.pod,
            labels=tuple(label_strings({**ep.labels, "io.kubernetes.pod.namespace": ep.namespace})),
            node=ep.node,
            cluster=cluster.name,
        )
        for ip in ep.ips:
            by_ip[ipaddress.ip_address(ip)] = info
        if ep.node == node_name:
            local[ep.id] = ep
    return Snapshot(
        node_name=node_name,
        cluster=cluster,
        by_ip=by_ip,
        local=local,
        interfaces=dict(interfaces),
        world=_reserved(IDENTITY_WORLD, cluster.name),
        services=service_table(cluster, services),
    )


class EndpointRegistry:
    """Holds the current Snapshot; writers replace it, readers just read `registry.snapshot`."""

    def __init__(self, node_name: str, cluster: Cluster | None = None) -> None:
        self._lock = threading.Lock()
        self._interfaces: dict[int, str] = {}
        self._departed: dict[IPAddress, EndpointInfo] = {}
        self.snapshot = _build(node_name, cluster or Cluster(), {}, {})

    @property
    def node_name(self) -> str:
        return self.snapshot.node_name

    def update(self, cluster: Cluster) -> tuple[list[Endpoint], list[Endpoint]]:
        """Take new cluster metadata; returns this node's (added or changed, removed) endpoints."""
        with self._lock:
            old = self.snapshot
            new_ips = {ipaddress.ip_address(ip) for ep in cluster.endpoints for ip in ep.ips}
            for ip, info in old.by_ip.items():
                if info.is_pod and ip not in new_ips:
                    self._departed[ip] = info
            for ip in new_ips:
                self._departed.pop(ip, None)
            self.snapshot = _build(old.node_name, cluster, self._interfaces, self._departed, old.services)
            new_local = self.snapshot.local
            added = [ep for eid, ep in new_local.items() if old.local.get(eid) != ep]
            removed = [ep for eid, ep in old.local.items() if new_local.get(eid) != ep]
            return added, removed

    def set_interface(self, ifindex: int, name: str | None) -> None:
        """Record (or forget, with None) the name of a device the datapath is attached to."""
        with self._lock:
            if name is None:
                self._interfaces.pop(ifindex, None)
            else:
                self._interfaces[ifindex] = name
            old = self.snapshot
            self.snapshot = Snapshot(
                node_name=old.node_name,
                cluster=old.cluster,
                by_ip=old.by_ip,
                local=old.local,
                interfaces=dict(self._interfaces),
                world=old.world,
                services=old.services,
            )
