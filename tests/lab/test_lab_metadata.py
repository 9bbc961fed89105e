"""The cluster metadata file a lab writes describes what is really there."""

from __future__ import annotations

import ipaddress
import json

import pytest

from flowscope.lab import Lab
from flowscope.observer.metadata import Cluster

pytestmark = pytest.mark.netns


def addresses(lab: Lab, where: str, device: str) -> set[str]:
    out = lab.exec(where, ["ip", "-j", "address", "show", "dev", device]).stdout
    return {a["local"] for link in json.loads(out) for a in link["addr_info"] if a["scope"] == "global"}


def test_the_metadata_file_matches_the_namespaces(two_nodes: Lab) -> None:
    cluster = Cluster.load(two_nodes.cluster_file)
    assert cluster.name == two_nodes.name
    assert [n.name for n in cluster.nodes] == ["node1", "node2"]
    for node in cluster.nodes:
        assert node.device == "eth0"
        assert node.address == f"{node.ipv4}:4244"
        assert addresses(two_nodes, node.name, "eth0") == {node.ipv4, node.ipv6}
    assert {ep.pod for ep in cluster.endpoints} == {"client", "server", "coredns", "web", "web2"}
    assert len({ep.id for ep in cluster.endpoints}) == len(cluster.endpoints)
    for ep in cluster.endpoints:
        assert ep.netns == two_nodes.netns(ep.pod)
        assert ep.interface == f"lxc{ep.id}"
        two_nodes.exec(ep.node, ["ip", "link", "show", "dev", ep.interface])  # the host side is on its node
        assert addresses(two_nodes, ep.pod, "eth0") == {ep.ipv4, ep.ipv6}
        assert ipaddress.ip_address(ep.ipv4) in ipaddress.ip_network(two_nodes.node(ep.node).pod_cidr_v4)
    labels = {ep.pod: (ep.namespace, ep.labels) for ep in cluster.endpoints}
    assert labels["coredns"] == ("kube-system", {"k8s-app": "kube-dns"})
    assert labels["web"] == labels["web2"] == ("web", {"app": "web"})
    assert [s.key for s in cluster.services] == ["web/web", "kube-system/kube-dns", "default/server-np"]
    assert cluster.service_problems() == []
    assert labels["client"] == ("default", {"app": "client"})


def test_pod_info_for_tests(one_node: Lab) -> None:
    client = one_node.pod("client")
    assert client.netns == f"fs-{one_node.name}-client"
    assert client.node_netns == f"fs-{one_node.name}-node1"
    assert (client.ifname, client.endpoint_id, client.ipv4, client.ipv6) == (
        "lxc1001",
        1001,
        "10.200.1.11",
        "fd00:200:1::11",
    )
    assert (
        one_node.exec("client", ["cat", "/sys/class/net/eth0/iflink"]).stdout.strip()
        == one_node.exec("node1", ["cat", f"/sys/class/net/{client.ifname}/ifindex"]).stdout.strip()
    )
