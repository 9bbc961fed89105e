"""The ipcache as the cluster metadata fills it: every address of the cluster, with its identity.

The datapath looks up the far end of each packet here to learn its identity (for policy and for flows), as
Cilium's ipcache map does: pods get their labels' identity, this node's addresses `host`, the other nodes'
`remote-node`, and an address nobody in the cluster has is `world` by being absent.

    watcher.subscribe("ipcache", ClusterIpcache(datapath, node_name).update)
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from flowscope.observer.metadata import IDENTITY_HOST, IDENTITY_REMOTE_NODE, Cluster

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpcacheDatapath(Protocol):
    """What filling the ipcache needs from observer.datapath."""

    def replace_ipcache(self, entries: dict[Network, tuple[int, int]]) -> None: ...


def ipcache_entries(cluster: Cluster, node_name: str) -> dict[Network, tuple[int, int]]:
    """Address → (identity, endpoint id) for every pod and node of the cluster; the rest is world."""
    entries: dict[Network, tuple[int, int]] = {}
    for node in cluster.nodes:
        identity = IDENTITY_HOST if node.name == node_name else IDENTITY_REMOTE_NODE
        for ip in (node.ipv4, node.ipv6):
            if ip:
                entries[ipaddress.ip_network(ip)] = (identity, 0)
    for ep in cluster.endpoints:
        local_id = ep.id if ep.node == node_name else 0
        for ip in ep.ips:
            entries[ipaddress.ip_network(ip)] = (ep.identity, local_id)
    return entries


class ClusterIpcache:
    """Keeps the datapath's ipcache equal to the entries of the cluster metadata, as seen from one node."""

    def __init__(self, datapath: IpcacheDatapath, node_name: str) -> None:
        self._datapath = datapath
        self._node_name = node_name

    def update(self, cluster: Cluster) -> None:
        self._datapath.replace_ipcache(ipcache_entries(cluster, self._node_name))
