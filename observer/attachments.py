"""Keeps the datapath attached to exactly what the cluster metadata says this node has.

Reconciling instead of reacting to events: every half second the agent compares what should be attached (this
node's endpoints whose interfaces exist, and the node's device) with what is, and fixes the difference. So
endpoints that appear, leave, or come back with a new interface (a restarted pod) are handled by one mechanism,
without a restart, and a metadata file written before its interfaces exist simply waits for them.

The kernel drop program is kept in step the same way: it is told, every round, which network namespace each of
this node's endpoints lives in (it reports drops there and in the node's own namespace only).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.metadata import IDENTITY_HOST, IDENTITY_REMOTE_NODE, Cluster

log = logging.getLogger(__name__)

ENDPOINT_HOOKS = ("from-container", "to-container")
DEVICE_HOOKS = ("from-netdev", "to-netdev")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Datapath(Protocol):
    """What reconciling needs from observer.datapath."""

    def attach(self, ifname: str, hooks: tuple[str, ...]) -> None: ...
    def detach(self, ifname: str) -> None: ...
    def set_endpoint(self, ifindex: int, ep_id: int, identity: int) -> None: ...
    def remove_endpoint(self, ifindex: int) -> None: ...
    def replace_ipcache(self, entries: dict[Network, tuple[int, int]]) -> None: ...


class NamespaceFollower(Protocol):
    """What reconciling needs from observer.datapath.kdrop: endpoint id -> the name of its network namespace."""

    def follow_endpoints(self, endpoints: Mapping[int, str]) -> None: ...
    def follow_devices(self, ifindexes: Iterable[int]) -> None: ...


@dataclass(frozen=True)
class Attached:
    ifname: str
    ifindex: int
    ep_id: int  # 0 for the node's device


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


def _ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


class Attachments:
    def __init__(
        self,
        datapath: Datapath,
        registry: EndpointRegistry,
        cluster_file: Path | None,
        device: str | None,
        kernel_drops: NamespaceFollower | None = None,
    ) -> None:
        self._datapath = datapath
        self._kernel_drops = kernel_drops
        self._registry = registry
        self._cluster_file = cluster_file
        self._device = device
        self._file_stamp: tuple[int, int] | None = None
        self._attached: dict[str, Attached] = {}

    @property
    def attached(self) -> list[Attached]:
        return list(self._attached.values())

    def reconcile(self) -> None:
        self._reload()
        wanted: dict[str, tuple[int, int]] = {}  # ifname -> (ep_id, identity)
        for ep in self._registry.snapshot.local.values():
            wanted[ep.interface] = (ep.id, ep.identity)
        if self._device:
            wanted[self._device] = (0, IDENTITY_HOST)
        for ifname, att in list(self._attached.items()):
            if ifname not in wanted or _ifindex(ifname) != att.ifindex or wanted[ifname][0] != att.ep_id:
                self._detach(att)
        for ifname, (ep_id, identity) in wanted.items():
            if ifname in self._attached:
                continue
            ifindex = _ifindex(ifname)
            if ifindex is None:
                continue  # not there yet: the next round tries again
            self._attach(ifname, ifindex, ep_id, identity)
        if self._kernel_drops is not None:
            local = self._registry.snapshot.local.values()
            self._kernel_drops.follow_endpoints({ep.id: ep.netns for ep in local if ep.netns})
            self._kernel_drops.follow_devices(att.ifindex for att in self._attached.values())

    def close(self) -> None:
        for att in list(self._attached.values()):
            self._detach(att)

    def _reload(self) -> None:
        if self._cluster_file is None:
            return
        try:
            st = self._cluster_file.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._file_stamp:
            return
        try:
            cluster = Cluster.load(self._cluster_file)
        except (OSError, ValueError, TypeError) as exc:
            log.error("cannot read %s: %s (keeping the previous metadata)", self._cluster_file, exc)
            self._file_stamp = stamp
            return
        self._file_stamp = stamp
        added, removed = self._registry.update(cluster)
        self._datapath.replace_ipcache(ipcache_entries(cluster, self._registry.node_name))
        log.info(
            "cluster metadata: %d nodes, %d endpoints (%d added or changed here, %d removed)",
            len(cluster.nodes),
            len(cluster.endpoints),
            len(added),
            len(removed),
        )

    def _attach(self, ifname: str, ifindex: int, ep_id: int, identity: int) -> None:
        hooks = ENDPOINT_HOOKS if ep_id else DEVICE_HOOKS
        try:
            self._datapath.set_endpoint(ifindex, ep_id, identity)
            self._datapath.attach(ifname, hooks)
        except OSError as exc:  # the interface vanished between lookup and attach
            log.warning("cannot attach to %s: %s", ifname, exc)
            return
        self._registry.set_interface(ifindex, ifname)
        self._attached[ifname] = Attached(ifname, ifindex, ep_id)
        log.info("attached %s to %s (ifindex %d, endpoint %d)", ", ".join(hooks), ifname, ifindex, ep_id)

    def _detach(self, att: Attached) -> None:
        try:
            self._datapath.detach(att.ifname)
        except OSError as exc:  # already gone with its interface
            log.debug("detach %s: %s", att.ifname, exc)
        self._datapath.remove_endpoint(att.ifindex)
        del self._attached[att.ifname]
        log.info("detached from %s", att.ifname)
