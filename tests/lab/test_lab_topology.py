"""The lab's plan, computed without touching the system: names, addresses, placement, metadata."""

from __future__ import annotations

import ipaddress

import pytest

from flowscope.lab.topology import DEFAULT_AGENT_SOCKET, LABS_DIR, owns_netns, plan, validate_name
from flowscope.observer.metadata import Cluster


@pytest.mark.parametrize("nodes", [1, 2, 3, 5])
def test_every_pod_has_a_unique_id_and_addresses_from_its_nodes_cidrs(nodes: int) -> None:
    topology = plan("t1", nodes)
    ids = [pod.endpoint_id for pod in topology.pods]
    assert len(ids) == len(set(ids))
    for pod in topology.pods:
        node = topology.node(pod.node)
        assert ipaddress.ip_address(pod.ipv4) in ipaddress.ip_network(node.pod_cidr_v4)
        assert ipaddress.ip_address(pod.ipv6) in ipaddress.ip_network(node.pod_cidr_v6)
        assert pod.ifname == f"lxc{pod.endpoint_id}"
        assert len(pod.ifname) <= 15
        assert pod.node_netns == node.netns


def test_namespaces_are_named_after_the_lab() -> None:
    topology = plan("demo", 2)
    names = topology.netns_names()
    assert len(names) == len(set(names)) == 1 + 2 + 1 + 4  # underlay, nodes, world, pods
    assert all(name.startswith("fs-demo-") and owns_netns("demo", name) for name in names)
    assert "fs-demo-node1" in names
    assert topology.netns_of("client") == "fs-demo-client"
    assert topology.netns_of("world") == "fs-demo-world"
    assert topology.netns_of("underlay") == "fs-demo-underlay"


def test_a_lab_never_claims_another_labs_namespaces() -> None:
    assert owns_netns("a", "fs-a-node1")
    assert not owns_netns("a", "fs-a-b-node1")  # lab "a-b"
    assert owns_netns("a-b", "fs-a-b-node1")
    assert not owns_netns("a", "fs-a-")
    assert not owns_netns("a", "fs-ab-node1")


def test_with_two_nodes_the_clients_traffic_crosses_nodes() -> None:
    topology = plan("t1", 2)
    client = topology.pod_with("app", "client")
    assert topology.pod_with("app", "server").node != client.node
    assert topology.pod_with("app", "web").node != client.node
    assert {pod.namespace for pod in topology.pods} >= {"default", "kube-system", "web"}


@pytest.mark.parametrize("name", ["", "Lab", "a_b", "-a", "a-", "a b", "x" * 33, "../etc"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        validate_name(name)


def test_bad_node_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        plan("t1", 0)


def test_agent_sockets() -> None:
    assert plan("t1", 1, default_socket=True).agent_socket("node1") == DEFAULT_AGENT_SOCKET
    assert plan("t1", 1).agent_socket("node1") == LABS_DIR / "t1" / "node1" / "hubble.sock"
    assert plan("t1", 2).agent_socket("node2") == LABS_DIR / "t1" / "node2" / "hubble.sock"


def test_cluster_metadata_describes_nodes_and_endpoints() -> None:
    topology = plan("t1", 2)
    cluster = Cluster.from_json(topology.cluster().to_json())
    assert cluster == topology.cluster()
    assert cluster.name == "t1"
    node1 = cluster.node("node1")
    assert node1 is not None
    assert (node1.device, node1.ipv4, node1.ipv6, node1.address) == (
        "eth0",
        "10.77.0.1",
        "fd77::1",
        "10.77.0.1:4244",
    )
    client = next(ep for ep in cluster.endpoints if ep.pod == "client")
    assert client.namespace == "default"
    assert client.labels == {"app": "client"}
    assert (client.node, client.interface, client.netns) == ("node1", "lxc1001", "fs-t1-client")
    assert (client.ipv4, client.ipv6) == ("10.200.1.11", "fd00:200:1::11")
    assert len(cluster.endpoints_on("node2")) == 2
