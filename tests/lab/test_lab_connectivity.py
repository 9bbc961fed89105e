"""Pods reach each other, the cluster DNS and the world over IPv4 and IPv6, on one node and across two."""

from __future__ import annotations

import sys

import pytest

from flowscope.lab import Lab
from flowscope.lab.topology import DOMAIN, TCP_RR_PORT, UDP_ECHO_PORT

pytestmark = pytest.mark.netns

FAMILIES = ["ipv4", "ipv6"]


@pytest.fixture(params=["one_node", "two_nodes"])
def lab(request: pytest.FixtureRequest) -> Lab:
    built: Lab = request.getfixturevalue(request.param)
    return built


def address(lab: Lab, pod: str, family: str) -> str:
    return str(getattr(lab.pod(pod), family))


def url(host: str) -> str:
    return f"http://[{host}]/" if ":" in host else f"http://{host}/"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", ["server", "coredns", "web"])
def test_ping_between_pods(lab: Lab, family: str, target: str) -> None:
    lab.exec("client", ["ping", "-c", "2", "-i", "0.2", "-W", "2", address(lab, target, family)])


@pytest.mark.parametrize("family", FAMILIES)
def test_http_to_the_web_pod(lab: Lab, family: str) -> None:
    page = lab.exec("client", ["curl", "-sS", "-g", "--max-time", "5", url(address(lab, "web", family))]).stdout
    assert f"flowscope lab {lab.name}" in page


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
@pytest.mark.parametrize("family", FAMILIES)
def test_dns_answers_with_the_pods_addresses(lab: Lab, family: str, transport: str) -> None:
    server = f"@{address(lab, 'coredns', family)}"
    for pod in lab.pods:
        for rtype, expected in (("A", pod.ipv4), ("AAAA", pod.ipv6)):
            answer = lab.exec("client", ["dig", "+short", "+time=2", transport, server, pod.fqdn, rtype]).stdout
            assert answer.split() == [expected]


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
@pytest.mark.parametrize("family", FAMILIES)
def test_dns_answers_service_names_with_their_cluster_ips(lab: Lab, family: str, transport: str) -> None:
    server = f"@{address(lab, 'coredns', family)}"
    for service in lab.topology.services:
        name = f"{service.name}.{service.namespace}.{DOMAIN}."
        for rtype, expected in zip(("A", "AAAA"), service.cluster_ips, strict=True):
            answer = lab.exec("client", ["dig", "+short", "+time=2", transport, server, name, rtype]).stdout
            assert answer.split() == [expected]


@pytest.mark.parametrize("pod", ["web", "web2"])
def test_each_web_pod_serves_a_page_naming_it(two_nodes: Lab, pod: str) -> None:
    page = two_nodes.exec("client", ["curl", "-sS", "--max-time", "5", url(address(two_nodes, pod, "ipv4"))]).stdout
    assert f"<p>hello from {pod}</p>" in page


def test_dns_says_nxdomain_for_unknown_names(lab: Lab) -> None:
    server = f"@{lab.pod('coredns').ipv4}"
    out = lab.exec("client", ["dig", "+time=2", server, f"nosuch.default.{DOMAIN}."]).stdout
    assert "status: NXDOMAIN" in out


@pytest.mark.parametrize("family", FAMILIES)
def test_tcp_request_response(lab: Lab, family: str) -> None:
    argv = [sys.executable, "-m", "flowscope.lab.echo_servers", "request", address(lab, "server", family)]
    lab.exec("client", [*argv, "--port", str(TCP_RR_PORT), "--count", "5"])


@pytest.mark.parametrize("family", FAMILIES)
def test_udp_echo(lab: Lab, family: str) -> None:
    argv = [sys.executable, "-m", "flowscope.lab.echo_servers", "datagram", address(lab, "server", family)]
    lab.exec("client", [*argv, "--port", str(UDP_ECHO_PORT), "--count", "5"])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_world_reaches_a_pod(lab: Lab, family: str) -> None:
    page = lab.exec("world", ["curl", "-sS", "-g", "--max-time", "5", url(address(lab, "web", family))]).stdout
    assert "flowscope lab" in page
    lab.exec("world", ["ping", "-c", "1", "-W", "2", address(lab, "server", family)])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_pod_reaches_the_world(lab: Lab, family: str) -> None:
    world = str(getattr(lab.world, family))
    page = lab.exec("client", ["curl", "-sS", "-g", "--max-time", "5", url(world)]).stdout
    assert "flowscope lab" in page
    lab.exec("server", ["ping", "-c", "1", "-W", "2", world])


def rx_packets(lab: Lab, node: str) -> int:
    out = lab.exec(node, ["cat", "/sys/class/net/eth0/statistics/rx_packets"]).stdout
    return int(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_traffic_between_nodes_crosses_the_underlay(two_nodes: Lab, family: str) -> None:
    client, server = two_nodes.pod("client"), two_nodes.pod("server")
    assert client.node != server.node
    before = rx_packets(two_nodes, server.node)
    two_nodes.exec("client", ["ping", "-c", "5", "-i", "0.01", "-W", "2", str(getattr(server, family))])
    assert rx_packets(two_nodes, server.node) - before >= 5


def test_pods_route_through_a_link_local_gateway(one_node: Lab) -> None:
    routes = one_node.exec("client", ["ip", "route"]).stdout
    assert "default via 169.254.1.1 dev eth0" in routes
    routes = one_node.exec("client", ["ip", "-6", "route"]).stdout
    assert "default via fe80::1 dev eth0" in routes
    host_routes = one_node.exec("node1", ["ip", "route"]).stdout
    client = one_node.pod("client")
    assert f"{client.ipv4} dev {client.ifname}" in host_routes
