"""A running agent follows its cluster file: a change of the node's cluster name and address reaches what it
reports (GetNodes, GetNamespaces, peer.Peer), as a new endpoint reaches its registry, without a restart."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import grpc
import pytest
from waiting import eventually

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.api.peer import peer_pb2, peer_pb2_grpc
from flowscope.lab import Lab
from flowscope.observer.metadata import Cluster, Endpoint

pytestmark = pytest.mark.bpf


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-meta") as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def test_a_change_of_the_nodes_cluster_and_address_reaches_what_the_agent_reports(lab: Lab) -> None:
    target = f"unix://{lab.agent_socket('node1')}"
    with grpc.insecure_channel(target) as channel:
        observer = observer_pb2_grpc.ObserverStub(channel)
        peers = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=20)
        first = next(peers)
        assert first.type == peer_pb2.PEER_ADDED and first.name == "node1"

        def node1() -> observer_pb2.Node:
            return observer.GetNodes(observer_pb2.GetNodesRequest(), timeout=5).nodes[0]

        def clusters() -> set[str]:
            reply = observer.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=5)
            return {n.cluster for n in reply.namespaces}

        cluster = Cluster.load(lab.cluster_file)
        assert node1().address == cluster.node("node1").address  # type: ignore[union-attr]
        assert clusters() == {cluster.name}

        moved = [dataclasses.replace(n, address="127.0.0.1:5244") if n.name == "node1" else n for n in cluster.nodes]
        newcomer = Endpoint(1099, "node1", "batch", "newcomer", {"app": "newcomer"}, "lxc1099", ipv4="10.200.1.99")
        changed = dataclasses.replace(
            cluster, name="renamed", nodes=tuple(moved), endpoints=(*cluster.endpoints, newcomer)
        )
        changed.save(lab.cluster_file)

        assert eventually(lambda: node1().address == "127.0.0.1:5244"), node1()
        assert eventually(lambda: clusters() == {"renamed"}), clusters()
        namespaces = observer.GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=5).namespaces
        assert "batch" in {n.namespace for n in namespaces}  # the registry took the same change
        updates = {}
        while "node1" not in updates:
            change = next(peers)
            updates[change.name] = change
        assert updates["node1"].type == peer_pb2.PEER_UPDATED
        assert updates["node1"].address == "127.0.0.1:5244"
        peers.cancel()
