"""peer.Peer/Notify on the agent: which nodes the cluster has, so a relay can find every agent from one.

A new Notify stream first gets PEER_ADDED for every node of the cluster metadata file, then PEER_ADDED,
PEER_DELETED and PEER_UPDATED as the file changes (it is polled, like the agent's own re-reading of it). Each
notification carries the node's name, the address its agent serves on (`address` in the file, or its IP and
port 4244) and, when agents serve TLS, the name a relay must expect in the node's certificate; Hubble's
format, `<node>.<cluster>.hubble-grpc.cilium.io`, so certificates made for Hubble work here too.

    add_peer_service(server, cluster_file, tls_enabled=True, stopping=state.stopping)
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from flowscope.api.peer import peer_pb2, peer_pb2_grpc
from flowscope.observer.metadata import Cluster, Node

log = logging.getLogger(__name__)

AGENT_PORT = 4244
TLS_DOMAIN = "hubble-grpc.cilium.io"
POLL_S = 0.5
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
    """Serves Notify from the cluster file, watched by one thread for every stream."""

    def __init__(
        self,
        cluster_file: Path | None,
        tls_enabled: bool = False,
        stopping: threading.Event | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self._file = cluster_file
        self._tls = tls_enabled
        self._stopping = stopping or threading.Event()
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[peer_pb2.ChangeNotification]] = []
        self._stamp: tuple[int, int, int] | None = None
        self._peers: Peers = {}
        self._refresh()
        self._watcher = threading.Thread(target=self._watch, name="peer-watch", daemon=True)
        self._watcher.start()

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

    def _watch(self) -> None:
        while not self._stopping.wait(self._poll_s):
            try:
                self._refresh()
            except Exception:  # keep serving what we knew; say what went wrong
                log.exception("reading the cluster file for peer notifications failed")

    def _refresh(self) -> None:
        """Re-read the cluster file if it changed, and tell every stream what changed."""
        if self._file is None:
            return
        try:
            st = self._file.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            peers = peers_of(Cluster.load(self._file), self._tls)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("cannot read %s for peer notifications: %s", self._file, exc)
            return
        self._stamp = stamp
        with self._lock:
            news = changes(self._peers, peers)
            self._peers = peers
            for inbox in self._subscribers:
                for change in news:
                    inbox.put(change)


def add_peer_service(
    server: grpc.Server,
    cluster_file: Path | None,
    *,
    tls_enabled: bool = False,
    stopping: threading.Event | None = None,
) -> None:
    """Serve peer.Peer on the agent's gRPC server (ObserverServer's `extra_services` takes a partial of this)."""
    peer_pb2_grpc.add_PeerServicer_to_server(PeerService(cluster_file, tls_enabled, stopping), server)
