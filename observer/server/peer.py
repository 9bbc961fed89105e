"""peer.Peer/Notify on the agent: which nodes the cluster has, so a relay can find every agent from one.

A new Notify stream first gets PEER_ADDED for every node of the cluster metadata, then PEER_ADDED, PEER_DELETED
and PEER_UPDATED as the metadata changes (the agent's one watcher of the cluster file hands it over). Each
notification carries the node's name, the address its agent serves on (`address` in the file, or its IP and
port 4244) and, when agents serve TLS, the name a relay must expect in the node's certificate; Hubble's
format, `<node>.<cluster>.hubble-grpc.cilium.io`, so certificates made for Hubble work here too.

    ObserverServer(..., services=[peer_service(metadata_watcher, tls_enabled=True, stopping=state.stopping)])
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Iterator

import grpc

from flowscope.api.peer import peer_pb2, peer_pb2_grpc
from flowscope.observer.metadata import Cluster, Node
from flowscope.observer.metadata_watch import MetadataWatcher
from flowscope.observer.server.serve import Service

log = logging.getLogger(__name__)

AGENT_PORT = 4244
TLS_DOMAIN = "hubble-grpc.cilium.io"
SERVICE_NAME = peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name
_WAIT_S = 0.25

Peers = dict[str, peer_pb2.ChangeNotification]


def tls_server_name(node: str, cluster: str) -> str:
    return f"{node}.{cluster}.{TLS_DOMAIN}"


def address_of(node: Node) -> str:
    if node.address:
        return node.address
    if node.ipv4:
        return f"{node.ipv4}:{AGENT_PORT}"
    return f"[{node.ipv6}]:{AGENT_PORT}" if node.ipv6 else ""


def peers_of(cluster: Cluster, tls_enabled: bool) -> Peers:
    """Each node of the cluster as a PEER_ADDED notification, by name (nodes without an address left out)."""
    peers: Peers = {}
    for node in cluster.nodes:
        address = address_of(node)
        if not address:
            continue
        change = peer_pb2.ChangeNotification(name=node.name, address=address, type=peer_pb2.PEER_ADDED)
        if tls_enabled:
            change.tls.server_name = tls_server_name(node.name, cluster.name)
        peers[node.name] = change
    return peers


def changes(old: Peers, new: Peers) -> list[peer_pb2.ChangeNotification]:
    """The notifications that take a relay from knowing `old` to knowing `new`."""
    out = []
    for name in sorted(old.keys() - new.keys()):
        out.append(peer_pb2.ChangeNotification(name=name, address=old[name].address, type=peer_pb2.PEER_DELETED))
    for name in sorted(new):
        if name not in old:
            out.append(new[name])
        elif _without_type(old[name]) != _without_type(new[name]):
            updated = peer_pb2.ChangeNotification()
            updated.CopyFrom(new[name])
            updated.type = peer_pb2.PEER_UPDATED
            out.append(updated)
    return out


def _without_type(change: peer_pb2.ChangeNotification) -> tuple[str, str]:
    return change.address, change.tls.server_name


class PeerService(peer_pb2_grpc.PeerServicer):
    """Serves Notify from the cluster metadata it is given (`update`), to every stream."""

    def __init__(self, tls_enabled: bool = False, stopping: threading.Event | None = None) -> None:
        self._tls = tls_enabled
        self._stopping = stopping or threading.Event()
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[peer_pb2.ChangeNotification]] = []
        self._peers: Peers = {}

    def Notify(
        self, request: peer_pb2.NotifyRequest, context: grpc.ServicerContext
    ) -> Iterator[peer_pb2.ChangeNotification]:
        inbox: queue.Queue[peer_pb2.ChangeNotification] = queue.Queue()
        with self._lock:
            current = [self._peers[name] for name in sorted(self._peers)]
            self._subscribers.append(inbox)
        try:
            yield from current
            while context.is_active() and not self._stopping.is_set():
                try:
                    yield inbox.get(timeout=_WAIT_S)
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self._subscribers.remove(inbox)

    def update(self, cluster: Cluster) -> None:
        """Take new cluster metadata, and tell every stream what changed."""
        peers = peers_of(cluster, self._tls)
        with self._lock:
            news = changes(self._peers, peers)
            self._peers = peers
            for inbox in self._subscribers:
                for change in news:
                    inbox.put(change)


def peer_service(
    metadata: MetadataWatcher,
    *,
    tls_enabled: bool = False,
    stopping: threading.Event | None = None,
) -> Service:
    """peer.Peer following `metadata`, as ObserverServer takes it: read-only, so on every port (Hubble's relay
    finds the nodes through an agent's 4244)."""
    service = PeerService(tls_enabled, stopping)
    metadata.subscribe("peer service", service.update)
    return Service(SERVICE_NAME, functools.partial(peer_pb2_grpc.add_PeerServicer_to_server, service), writes=False)


def add_peer_service(
    server: grpc.Server,
    metadata: MetadataWatcher,
    *,
    tls_enabled: bool = False,
    stopping: threading.Event | None = None,
) -> None:
    """Serve peer.Peer on one gRPC server, following `metadata`."""
    peer_service(metadata, tls_enabled=tls_enabled, stopping=stopping).add(server)
