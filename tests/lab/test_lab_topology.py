"""The lab's plan, computed without touching the system: names, addresses, placement, metadata."""

from __future__ import annotations

import ipaddress

import pytest

from flowscope.lab.topology import (
    DEFAULT_AGENT_SOCKET,
    LABS_DIR,
    SERVICE_CIDR_V4,
    SERVICE_CIDR_V6,
    cluster_ips,
    owns_netns,
    plan,
    validate_name,
)
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
    assert len(names) == len(set(names)) == 1 + 2 + 1 + 5  # underlay, nodes, world, pods
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


@pytest.mark.parametrize("nodes", [2, 3, 5])
def test_the_web_services_two_backends_are_on_different_nodes(nodes: int) -> None:
    topology = plan("t1", nodes)
    cluster = topology.cluster()
    backends = cluster.selected(topology.service("web/web"))
    assert sorted(ep.pod for ep in backends) == ["web", "web2"]
    assert backends[0].node != backends[1].node


def test_a_one_node_lab_keeps_its_pods_and_puts_both_web_pods_on_node1() -> None:
    topology = plan("t1", 1)
    placed = [(pod.name, pod.node, pod.endpoint_id, pod.ipv4) for pod in topology.pods]
    assert placed == [
        ("client", "node1", 1001, "10.200.1.11"),
        ("server", "node1", 1002, "10.200.1.12"),
        ("coredns", "node1", 1003, "10.200.1.13"),
        ("web", "node1", 1004, "10.200.1.14"),
        ("web2", "node1", 1005, "10.200.1.15"),
    ]


def test_the_labs_services() -> None:
    topology = plan("t1", 2)
    cluster = topology.cluster()
    assert cluster.service_problems() == []
    shown = {
        service.key: (
            service.type,
            service.cluster_ips,
            [(p.protocol, p.port, p.target_port, p.node_port) for p in service.ports],
        )
        for service in topology.services
    }
    assert shown == {
        "web/web": ("ClusterIP", ("10.96.16.153", "fd96::1099"), [("TCP", 80, 80, 0), ("TCP", 443, 443, 0)]),
        "kube-system/kube-dns": ("ClusterIP", ("10.96.77.224", "fd96::4de0"), [("UDP", 53, 53, 0), ("TCP", 53, 53, 0)]),
        "default/server-np": ("NodePort", ("10.96.176.17", "fd96::b011"), [("TCP", 9000, 9000, 30900)]),
    }
    for service in topology.services:
        for ip in service.cluster_ips:
            network = SERVICE_CIDR_V4 if ipaddress.ip_address(ip).version == 4 else SERVICE_CIDR_V6
            assert ipaddress.ip_address(ip) in network
    frontends = [str(f) for f in cluster.frontends(topology.service("default/server-np"))]
    assert frontends == [
        "10.96.176.17:9000/TCP",
        "[fd96::b011]:9000/TCP",
        "10.77.0.1:30900/TCP",
        "[fd77::1]:30900/TCP",
        "10.77.0.2:30900/TCP",
        "[fd77::2]:30900/TCP",
    ]
    dns = cluster.frontends(topology.service("kube-system/kube-dns"))
    assert [(b.endpoint.pod, b.address, b.port) for b in cluster.backends(dns[1])] == [
        ("coredns", "fd00:200:1::12", 53)
    ]


def test_cluster_ips_are_derived_from_names_and_never_shared() -> None:
    assert cluster_ips(["web/web"]) == {"web/web": ("10.96.16.153", "fd96::1099")}
    many = cluster_ips(f"ns/s{n}" for n in range(3000))
    v4 = [pair[0] for pair in many.values()]
    assert len(set(v4)) == 3000
    assert all(ip not in ("10.96.0.0", "10.96.255.255") for ip in v4)
    assert all(ipaddress.ip_address(v6).packed[-2:] == ipaddress.ip_address(v4).packed[-2:] for v4, v6 in many.values())
