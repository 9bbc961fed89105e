"""The cluster's services in the datapath: what the cluster file says becomes the load-balancing maps.

One subscriber of the metadata watcher (observer/metadata_watch.py), like the ipcache and the attachments: each
new cluster is turned into the datapath's frontends (observer/datapath/lbmaps.py) and written whole. Every
node holds every frontend, as Cilium's agents do: a pod on any node may call any ClusterIP. A NodePort frontend
listens on each node's own addresses only, so a node writes the NodePort frontends of its own addresses.

Frontend ids are the registry snapshot's (observer/service_table.py, from observer/service_ids.py): the ids the
decoder names flows by are the ids the datapath writes into events, kept while a frontend exists. The registry
subscribes to the watcher before this does, so its snapshot is of the same cluster when this runs. Services the
file gets wrong are left out (observer/services_check.py says what is wrong, once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from flowscope.observer.datapath.lbmaps import Backend, Frontend
from flowscope.observer.metadata import Cluster
from flowscope.observer.service_ids import FrontendKey

log = logging.getLogger(__name__)


class LoadBalancer(Protocol):
    def replace(self, frontends: list[Frontend]) -> None: ...


class ClusterServices:
    """Subscriber: the datapath's frontends follow the cluster's services."""

    def __init__(self, lb: LoadBalancer, node_name: str, ids: Callable[[], Mapping[FrontendKey, int]]) -> None:
        self._lb = lb
        self._node = node_name
        self._ids = ids
        self._written: list[Frontend] | None = None

    def update(self, cluster: Cluster) -> None:
        frontends = datapath_frontends(cluster, self._node, self._ids())
        if frontends != self._written:
            self._lb.replace(frontends)
            self._written = frontends
            log.info("services: %d frontends in the datapath", len(frontends))


def datapath_frontends(cluster: Cluster, node_name: str, ids: Mapping[FrontendKey, int]) -> list[Frontend]:
    """Every frontend this node's datapath answers: all ClusterIPs, and the NodePorts of its own addresses."""
    own = cluster.node(node_name)
    own_addresses = {ip for ip in (own.ipv4, own.ipv6) if ip} if own else set()
    out = []
    for service in cluster.valid_services():
        for frontend in cluster.frontends(service):
            if frontend.nodeport and frontend.address not in own_addresses:
                continue
            address, port, protocol = frontend.key
            backends = tuple(Backend(b.address, b.port) for b in cluster.backends(frontend))
            out.append(Frontend(ids[frontend.key], address, port, protocol, frontend.nodeport, backends))
    return out
