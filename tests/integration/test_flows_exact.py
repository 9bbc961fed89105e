"""Real packets between lab pods become exactly the flows they should, checked against tcpdump in the pods.

A lab with one node and the real agent; real sockets and ping make TCP (handshake, data, FIN), UDP and ICMP
echo over IPv4 and IPv6. Every packet a pod sent must be one from-endpoint flow on its veth and one
to-endpoint flow on the receiver's veth, in order, with the pods' names, labels, identities and the node name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_helpers import Packet, capture, flag_names, packet_of, run_in, wait_for_flows

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.topology import Pod
from flowscope.observer.metadata import identity_of

pytestmark = pytest.mark.bpf

TCP_CLIENT = """
import socket, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    s.connect((host, port))
    with s.makefile("rwb") as stream:
        for i in range(3):
            stream.write(b"request %d\\n" % i)
            stream.flush()
            assert stream.readline() == b"ok request %d\\n" % i
"""

UDP_CLIENT = """
import socket, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    s.settimeout(2)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    for i in range(3):
        s.sendto(b"datagram %d" % i, (host, port))
        assert s.recv(100) == b"datagram %d" % i
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-flows") as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def address(pod: Pod, family: int) -> str:
    return pod.ipv4 if family == 4 else pod.ipv6


def sent_by(packets: list[Packet], ip: str) -> list[Packet]:
    return [p for p in packets if p.src == ip]


def at(flows: list[flow_pb2.Flow], point: int, ifname: str) -> list[flow_pb2.Flow]:
    return [f for f in flows if f.trace_observation_point == point and f.interface.name == ifname]


def assert_endpoint(endpoint: flow_pb2.Endpoint, pod: Pod) -> None:
    namespace_label = {"io.kubernetes.pod.namespace": pod.namespace}
    assert endpoint.ID == pod.endpoint_id
    assert endpoint.namespace == pod.namespace
    assert endpoint.pod_name == pod.name
    assert endpoint.identity == identity_of({**pod.labels, **namespace_label})
    assert sorted(endpoint.labels) == sorted(f"k8s:{k}={v}" for k, v in {**pod.labels, **namespace_label}.items())


def check_exchange(
    flows: list[flow_pb2.Flow], a: Pod, b: Pod, ip_a: str, ip_b: str, seen_a: list[Packet], seen_b: list[Packet]
) -> None:
    """Each packet a pod saw leave is a from-endpoint flow on its veth and a to-endpoint flow on the other's."""
    for sender, receiver, ip, seen in ((a, b, ip_a, seen_a), (b, a, ip_b, seen_b)):
        sent = sent_by(seen, ip)
        assert sent, f"{sender.name} sent nothing"
        leaving = at(flows, flow_pb2.FROM_ENDPOINT, sender.ifname)
        arriving = at(flows, flow_pb2.TO_ENDPOINT, receiver.ifname)
        assert [packet_of(f) for f in leaving] == sent
        assert [packet_of(f) for f in arriving] == sent
        for flow in leaving + arriving:
            assert flow.verdict == flow_pb2.FORWARDED
            assert flow.node_name == "node1"
            assert flow.Type == flow_pb2.L3_L4
            assert flow.event_type.type == 4
            assert flow.IP.ipVersion == (flow_pb2.IPv6 if ":" in ip else flow_pb2.IPv4)
            assert flow.ethernet.source and flow.ethernet.destination
            assert_endpoint(flow.source, sender)
            assert_endpoint(flow.destination, receiver)
        for flow in leaving:
            assert flow.event_type.sub_type == 5  # from-endpoint
        for flow in arriving:
            assert flow.event_type.sub_type == 0  # to-endpoint


def conversation(ip_a: str, ip_b: str, port_a: int) -> list[flow_pb2.FlowFilter]:
    return [
        flow_pb2.FlowFilter(source_ip=[ip_a], destination_ip=[ip_b], source_port=[str(port_a)]),
        flow_pb2.FlowFilter(source_ip=[ip_b], destination_ip=[ip_a], destination_port=[str(port_a)]),
    ]


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_connection(lab: Lab, family: int, tmp_path: Path) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    ip_c, ip_s, sport = address(client, family), address(server, family), 41000 + family
    bpf = f"tcp and port {sport}"
    with capture(lab, "client", bpf, tmp_path) as seen_c, capture(lab, "server", bpf, tmp_path) as seen_s:
        run_in(lab, "client", TCP_CLIENT, ip_s, "9000", str(sport))
    expected = 2 * len(seen_c)
    flows = wait_for_flows(lab, conversation(ip_c, ip_s, sport), lambda fl: len(fl) >= expected)
    assert len(flows) == expected
    check_exchange(flows, client, server, ip_c, ip_s, seen_c, seen_s)

    # The TCP flag sequence: a three-way handshake, data both ways, and both sides closing.
    from_client = [flag_names(f.l4.TCP.flags) for f in at(flows, flow_pb2.FROM_ENDPOINT, client.ifname)]
    from_server = [flag_names(f.l4.TCP.flags) for f in at(flows, flow_pb2.FROM_ENDPOINT, server.ifname)]
    assert from_client[0] == {"SYN"}
    assert from_server[0] == {"SYN", "ACK"}
    assert from_client[1] == {"ACK"}
    assert sum("PSH" in f for f in from_client) == 3  # three requests
    assert sum("PSH" in f for f in from_server) == 3  # three responses
    assert any("FIN" in f for f in from_client)
    assert any("FIN" in f for f in from_server)
    assert from_client[-1] == {"ACK"} or from_server[-1] == {"ACK"}
    for flow in flows:
        tcp = flow.l4.TCP
        assert {tcp.source_port, tcp.destination_port} == {sport, 9000}
        assert flow.Summary.startswith("TCP Flags: ")


@pytest.mark.parametrize("family", [4, 6])
def test_udp_datagrams(lab: Lab, family: int, tmp_path: Path) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    ip_c, ip_s, sport = address(client, family), address(server, family), 42000 + family
    bpf = f"udp and port {sport}"
    with capture(lab, "client", bpf, tmp_path) as seen_c, capture(lab, "server", bpf, tmp_path) as seen_s:
        run_in(lab, "client", UDP_CLIENT, ip_s, "9001", str(sport))
    assert len(seen_c) == 6  # three datagrams, three echoes
    flows = wait_for_flows(lab, conversation(ip_c, ip_s, sport), lambda fl: len(fl) >= 12)
    assert len(flows) == 12
    check_exchange(flows, client, server, ip_c, ip_s, seen_c, seen_s)
    assert all(f.Summary == "UDP" for f in flows)


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_echo(lab: Lab, family: int, tmp_path: Path) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    ip_c, ip_s = address(client, family), address(server, family)
    echo_types = "icmp[0] == 8 or icmp[0] == 0" if family == 4 else "ip6[40] == 128 or ip6[40] == 129"
    bpf = f"({'icmp' if family == 4 else 'icmp6'}) and ({echo_types})"
    with capture(lab, "client", bpf, tmp_path) as seen_c, capture(lab, "server", bpf, tmp_path) as seen_s:
        lab.exec("client", ["ping", f"-{family}", "-c", "2", "-i", "0.2", ip_s])
    assert len(seen_c) == 4
    protocol = "icmpv4" if family == 4 else "icmpv6"
    whitelist = [
        flow_pb2.FlowFilter(source_ip=[ip_c], destination_ip=[ip_s], protocol=[protocol]),
        flow_pb2.FlowFilter(source_ip=[ip_s], destination_ip=[ip_c], protocol=[protocol]),
    ]
    request, reply = (8, 0) if family == 4 else (128, 129)

    def echoes(flows: list[flow_pb2.Flow]) -> list[flow_pb2.Flow]:
        return [f for f in flows if packet_of(f).sport in (request, reply)]

    flows = echoes(wait_for_flows(lab, whitelist, lambda fl: len(echoes(fl)) >= 8))
    assert len(flows) == 8
    check_exchange(flows, client, server, ip_c, ip_s, seen_c, seen_s)
    kinds = [packet_of(f).sport for f in at(flows, flow_pb2.FROM_ENDPOINT, client.ifname)]
    assert kinds == [request, request]
    name = "ICMPv4" if family == 4 else "ICMPv6"
    assert {f.Summary for f in flows} == {f"{name} EchoRequest", f"{name} EchoReply"}


def test_world_traffic_crosses_the_node_device(lab: Lab, tmp_path: Path) -> None:
    """A ping to the world leaves through the node's eth0 (to-network) and its reply comes back (from-network)."""
    client, world = lab.pod("client"), lab.world.ipv4
    whitelist = [
        flow_pb2.FlowFilter(source_ip=[client.ipv4], destination_ip=[world], protocol=["icmpv4"]),
        flow_pb2.FlowFilter(source_ip=[world], destination_ip=[client.ipv4], protocol=["icmpv4"]),
    ]
    lab.exec("client", ["ping", "-4", "-c", "1", world])
    flows = wait_for_flows(lab, whitelist, lambda fl: len(fl) >= 4)
    points = [(f.trace_observation_point, f.interface.name, packet_of(f).sport) for f in flows]
    assert points == [
        (flow_pb2.FROM_ENDPOINT, client.ifname, 8),
        (flow_pb2.TO_NETWORK, "eth0", 8),
        (flow_pb2.FROM_NETWORK, "eth0", 0),
        (flow_pb2.TO_ENDPOINT, client.ifname, 0),
    ]
    to_world = flows[1]
    assert to_world.destination.identity == 2
    assert list(to_world.destination.labels) == ["reserved:world"]
    assert to_world.source.pod_name == "client"
    assert to_world.source.ID == client.endpoint_id
