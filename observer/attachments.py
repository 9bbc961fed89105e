"""Keeps the datapath attached to exactly what the cluster metadata says this node has.

Reconciling instead of reacting to events: on each new cluster metadata (the watcher of observer/metadata_watch.py
hands it over), and every half second besides, the agent compares what should be attached (this node's endpoints
whose interfaces exist, the node's device, and its tunnel device in an overlay cluster) with what is, and fixes
the difference. So endpoints that appear, leave, or come back with a new interface (a restarted pod) are handled
by one mechanism, without a restart, and metadata written before its interfaces exist simply waits for them.

The kernel drop program is kept in step the same way: it is told, every round, which network namespace each of
this node's endpoints lives in (it reports drops there and in the node's own namespace only).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from flowscope.observer.endpoints import EndpointRegistry
from flowscope.observer.metadata import IDENTITY_HOST, Cluster, Endpoint

log = logging.getLogger(__name__)

ENDPOINT_HOOKS = ("from-container", "to-container")
DEVICE_HOOKS = ("from-netdev", "to-netdev")
OVERLAY_HOOKS = ("from-overlay", "to-overlay")  # the tunnel device, Cilium's cilium_vxlan


class Datapath(Protocol):
    """What reconciling needs from observer.datapath."""

    def attach(self, ifname: str, hooks: tuple[str, ...]) -> None: ...
    def detach(self, ifname: str) -> None: ...
    def set_endpoint(self, ifindex: int, ep_id: int, identity: int) -> None: ...
    def remove_endpoint(self, ifindex: int) -> None: ...


class NamespaceFollower(Protocol):
    """What reconciling tells the programs that follow packets in the node's namespaces (observer.datapath.kdrop,
    observer.datapath.pathtrace): endpoint id -> the name of its network namespace, and the attached devices."""

    def follow_endpoints(self, endpoints: Mapping[int, str]) -> None: ...
    def follow_devices(self, ifindexes: Iterable[int]) -> None: ...


@dataclass(frozen=True)
class Attached:
    ifname: str
    ifindex: int
    ep_id: int  # 0 for the node's device


def _ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


class Attachments:
    """The datapath's attachments to this node's device and endpoints; `registry` learns their names."""

    def __init__(
        self,
        datapath: Datapath,
        registry: EndpointRegistry,
        device: str | None,
        followers: Sequence[NamespaceFollower] = (),
        tunnel_device: str | None = None,
    ) -> None:
        self._datapath = datapath
        self._followers = tuple(followers)  # kernel drops and packet-path sessions: the node's namespaces
        self._registry = registry
        self._device = device
        self._tunnel_device = tunnel_device
        self._local: list[Endpoint] = []  # this node's endpoints, as the last metadata said
        self._attached: dict[str, Attached] = {}
        self._lock = threading.Lock()  # the watcher's thread and the agent's reconcile loop both reconcile

    @property
    def attached(self) -> list[Attached]:
        return list(self._attached.values())

    def update(self, cluster: Cluster) -> None:
        """Take new cluster metadata: attach to what it adds to this node, detach from what it took away."""
        with self._lock:
            self._local = cluster.endpoints_on(self._registry.node_name)
            self._reconcile()

    def reconcile(self) -> None:
        """Attach to interfaces that appeared since, and detach from those that vanished or changed."""
        with self._lock:
            self._reconcile()

    def close(self) -> None:
        with self._lock:
            for att in list(self._attached.values()):
                self._detach(att)

    def _reconcile(self) -> None:
        wanted: dict[str, tuple[int, int, tuple[str, ...]]] = {}  # ifname -> (ep_id, identity, hooks)
        for ep in self._local:
            wanted[ep.interface] = (ep.id, ep.identity, ENDPOINT_HOOKS)
        if self._device:
            wanted[self._device] = (0, IDENTITY_HOST, DEVICE_HOOKS)
        if self._tunnel_device:
            wanted[self._tunnel_device] = (0, IDENTITY_HOST, OVERLAY_HOOKS)
        for ifname, att in list(self._attached.items()):
            if ifname not in wanted or _ifindex(ifname) != att.ifindex or wanted[ifname][0] != att.ep_id:
                self._detach(att)
        for ifname, (ep_id, identity, hooks) in wanted.items():
            if ifname in self._attached:
                continue
            ifindex = _ifindex(ifname)
            if ifindex is None:
                continue  # not there yet: the next round tries again
            self._attach(ifname, ifindex, ep_id, identity, hooks)
        namespaces = {ep.id: ep.netns for ep in self._local if ep.netns}
        for follower in self._followers:
            follower.follow_endpoints(namespaces)
            follower.follow_devices([att.ifindex for att in self._attached.values()])

    def _attach(self, ifname: str, ifindex: int, ep_id: int, identity: int, hooks: tuple[str, ...]) -> None:
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
