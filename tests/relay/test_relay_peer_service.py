"""Discovery: the agent's peer.Peer service follows the cluster file, and the relay follows the service."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from waiting import wait_for

from flowscope.api.peer import peer_pb2, peer_pb2_grpc
from flowscope.observer.metadata import Cluster, Node
from flowscope.observer.metadata_watch import MetadataWatcher
from flowscope.observer.server.peer import PeerService, add_peer_service, changes, peers_of
from flowscope.relay.dial import Dialer
from flowscope.relay.peers import PeerServiceFollower
from flowscope.relay.pool import PeerPool

ADDED, DELETED, UPDATED = peer_pb2.PEER_ADDED, peer_pb2.PEER_DELETED, peer_pb2.PEER_UPDATED


def cluster(*nodes: Node) -> Cluster:
    return Cluster(name="lab", nodes=nodes)


def node(n: int, address: str = "") -> Node:
    return Node(name=f"node{n}", ipv4=f"10.77.0.{n}", address=address)


def summary(change: peer_pb2.ChangeNotification) -> tuple[int, str, str, str]:
    return change.type, change.name, change.address, change.tls.server_name


def test_peers_of_a_cluster_and_what_changes_between_two() -> None:
    old = peers_of(cluster(node(1), node(2, "10.77.0.2:5000")), tls_enabled=True)
    assert [summary(p) for p in old.values()] == [
        (ADDED, "node1", "10.77.0.1:4244", "node1.lab.hubble-grpc.cilium.io"),
        (ADDED, "node2", "10.77.0.2:5000", "node2.lab.hubble-grpc.cilium.io"),
    ]
    new = peers_of(cluster(node(1, "10.77.0.9:4244"), node(3)), tls_enabled=True)
    assert [summary(c)[:3] for c in changes(old, new)] == [
        (DELETED, "node2", "10.77.0.2:5000"),
        (UPDATED, "node1", "10.77.0.9:4244"),
        (ADDED, "node3", "10.77.0.3:4244"),
    ]
    assert changes(new, new) == []
    assert peers_of(cluster(node(1)), tls_enabled=False)["node1"].HasField("tls") is False


Serve = Callable[[Path, str], tuple[threading.Event, grpc.Server]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Serve the peer service of a cluster file on a unix socket, as an agent would."""
    servers: list[tuple[grpc.Server, threading.Event, MetadataWatcher]] = []

    def start(cluster_file: Path, target: str) -> tuple[threading.Event, grpc.Server]:
        stopping = threading.Event()
        metadata = MetadataWatcher(cluster_file)
        metadata.start()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_peer_service(server, metadata, tls_enabled=False, stopping=stopping)
        server.add_insecure_port(target)
        server.start()
        servers.append((server, stopping, metadata))
        return stopping, server

    yield start
    for server, stopping, metadata in servers:
        stopping.set()
        server.stop(grace=None)
        metadata.stop()


def test_notify_announces_every_node_then_each_change_of_the_file(short_tmp: Path, serve: Serve) -> None:
    file, target = short_tmp / "cluster.json", f"unix://{short_tmp}/agent.sock"
    cluster(node(1), node(2)).save(file)
    serve(file, target)
    with grpc.insecure_channel(target) as channel:
        stream = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=10)
        assert [summary(next(stream))[:3] for _ in range(2)] == [
            (ADDED, "node1", "10.77.0.1:4244"),
            (ADDED, "node2", "10.77.0.2:4244"),
        ]
        cluster(node(1), node(3)).save(file)
        assert [summary(next(stream))[:2] for _ in range(2)] == [(DELETED, "node2"), (ADDED, "node3")]
        stream.cancel()


def test_the_relay_follows_the_peer_service_and_forgets_nodes_gone_while_away(short_tmp: Path, serve: Serve) -> None:
    file, target = short_tmp / "cluster.json", f"unix://{short_tmp}/agent.sock"
    cluster(node(1), node(2)).save(file)
    stopping, server = serve(file, target)
    pool = PeerPool(Dialer())
    follower = PeerServiceFollower(target, pool, Dialer())
    follower.start()
    try:
        wait_for(lambda: pool.names() == {"node1", "node2"})
        cluster(node(1), node(2), node(3)).save(file)
        wait_for(lambda: pool.names() == {"node1", "node2", "node3"})
        stopping.set()
        server.stop(grace=None)  # the service goes away; the relay keeps what it knows
        wait_for(lambda: not follower.connected.is_set())  # the follower saw its stream end
        assert pool.names() == {"node1", "node2", "node3"}
        cluster(node(1), node(3)).save(file)  # node2 leaves meanwhile
        serve(file, target)
        wait_for(lambda: pool.names() == {"node1", "node3"}, timeout=10)
    finally:
        follower.stop()
        pool.close()


def test_a_peer_service_without_a_file_announces_nothing() -> None:
    service = PeerService()
    MetadataWatcher(None).subscribe("peer service", service.update)
    assert service._peers == {}
