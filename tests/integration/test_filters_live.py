"""Filters against a real agent: what each includes and what it leaves out, and malformed ones refused.

Traffic of known shape (TCP, UDP and ICMP over IPv4 and IPv6 between client and server, HTTP from client to
web, a ping to the world) is made once; each test asks the agent with one filter and checks every flow it gets
back satisfies it and that flows it left out exist (so the filter did something).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator

import grpc
import pytest
from flows_helpers import get_flows, run_in, stub, wait_for_flows

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab

pytestmark = pytest.mark.bpf

TRAFFIC = """
import socket, sys
for host in sys.argv[1:]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_connection((host, 9000)) as s:
        s.sendall(b"hello\\n"); s.recv(100)
    with socket.socket(family, socket.SOCK_DGRAM) as u:
        u.settimeout(2); u.sendto(b"hi", (host, 9001)); u.recv(100)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-filters") as lab:
        lab.up(traffic=False, agent=True)
        server, web = lab.pod("server"), lab.pod("web")
        run_in(lab, "client", TRAFFIC, server.ipv4, server.ipv6)
        for family, ip in (("-4", server.ipv4), ("-6", server.ipv6)):
            lab.exec("client", ["ping", family, "-c", "1", ip])
        lab.exec("client", ["curl", "-s", "-o", "/dev/null", f"http://{web.ipv4}/"])
        lab.exec("client", ["ping", "-4", "-c", "1", lab.world.ipv4])
        # The last events reach the ring (one ring buffer, in order): the ping's reply into the client pod.
        replies = wait_for_flows(lab, [flow_pb2.FlowFilter(source_ip=[lab.world.ipv4])], reached_the_client)
        assert reached_the_client(replies), [(f.IP.destination, f.trace_observation_point) for f in replies]
        yield lab


def reached_the_client(flows: list[flow_pb2.Flow]) -> bool:
    return any(f.trace_observation_point == flow_pb2.TO_ENDPOINT and f.l4.HasField("ICMPv4") for f in flows)


@pytest.fixture(scope="module")
def everything(lab: Lab) -> list[flow_pb2.Flow]:
    flows = get_flows(lab)
    assert len(flows) > 50
    return flows


def check(
    lab: Lab, everything: list[flow_pb2.Flow], ff: flow_pb2.FlowFilter, rule: Callable[[flow_pb2.Flow], bool]
) -> None:
    """The filter returns exactly the flows the rule accepts (and both sides are non-empty).

    Up to the newest flow of `everything`: pods keep talking (IPv6 neighbour discovery) meanwhile.
    """
    kept = get_flows(lab, [ff], until=everything[-1].time)
    assert kept, "the filter kept nothing"
    assert all(rule(f) for f in kept)
    uuids = {f.uuid for f in kept}
    assert uuids == {f.uuid for f in everything if rule(f)}
    assert len(uuids) < len(everything), "the filter left nothing out"


def pod_of(endpoint: flow_pb2.Endpoint) -> str:
    return f"{endpoint.namespace}/{endpoint.pod_name}"


def test_source_pod(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    check(
        lab,
        everything,
        flow_pb2.FlowFilter(source_pod=["default/client"]),
        lambda f: pod_of(f.source) == "default/client",
    )


def test_destination_namespace_prefix(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    check(lab, everything, flow_pb2.FlowFilter(destination_pod=["web/"]), lambda f: f.destination.namespace == "web")


def test_destination_port(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    check(lab, everything, flow_pb2.FlowFilter(destination_port=["9001"]), lambda f: f.l4.UDP.destination_port == 9001)


def test_protocol_icmp_means_both_versions(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    check(
        lab,
        everything,
        flow_pb2.FlowFilter(protocol=["icmp"]),
        lambda f: f.l4.WhichOneof("protocol") in ("ICMPv4", "ICMPv6"),
    )


def test_cidr(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    net = ipaddress.ip_network("10.200.0.0/16")
    check(
        lab,
        everything,
        flow_pb2.FlowFilter(source_ip=[str(net)]),
        lambda f: f.IP.source != "" and ipaddress.ip_address(f.IP.source) in net,
    )


def test_ip_version(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    check(lab, everything, flow_pb2.FlowFilter(ip_version=[flow_pb2.IPv6]), lambda f: f.IP.ipVersion == flow_pb2.IPv6)


def test_label(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    check(
        lab,
        everything,
        flow_pb2.FlowFilter(destination_label=["k8s:app=server"]),
        lambda f: "k8s:app=server" in f.destination.labels,
    )


def test_world_identity(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    check(lab, everything, flow_pb2.FlowFilter(destination_identity=[2]), lambda f: f.destination.identity == 2)


def test_observation_point(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    ff = flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=4, match_sub_type=True, sub_type=11)])
    check(lab, everything, ff, lambda f: f.trace_observation_point == flow_pb2.TO_NETWORK)


def test_tcp_flags(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    ff = flow_pb2.FlowFilter(tcp_flags=[flow_pb2.TCPFlags(SYN=True)])
    check(lab, everything, ff, lambda f: f.l4.TCP.flags.SYN)


def test_interface(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    name = lab.pod("web").ifname
    ff = flow_pb2.FlowFilter(interface=[flow_pb2.NetworkInterface(name=name)])
    check(lab, everything, ff, lambda f: f.interface.name == name)


def test_node_name_glob(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    until = everything[-1].time
    assert len(get_flows(lab, [flow_pb2.FlowFilter(node_name=["node*"])], until=until)) == len(everything)
    assert get_flows(lab, [flow_pb2.FlowFilter(node_name=["elsewhere*"])]) == []


def test_whitelists_are_ored_and_blacklist_wins(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    whitelist = [flow_pb2.FlowFilter(protocol=["udp"]), flow_pb2.FlowFilter(protocol=["icmpv4"])]
    blacklist = [flow_pb2.FlowFilter(destination_pod=["default/server"])]
    kept = get_flows(lab, whitelist, blacklist, until=everything[-1].time)
    assert kept
    assert all(f.l4.WhichOneof("protocol") in ("UDP", "ICMPv4") for f in kept)
    assert all(pod_of(f.destination) != "default/server" for f in kept)
    assert any(pod_of(f.destination) == "default/server" and f.l4.HasField("UDP") for f in everything)


def test_number_counts_matches_from_the_newest(lab: Lab, everything: list[flow_pb2.Flow]) -> None:
    tcp = [f for f in everything if f.l4.HasField("TCP")]
    last = get_flows(lab, [flow_pb2.FlowFilter(protocol=["tcp"])], number=5)
    assert len(last) == 5
    assert [f.uuid for f in last] == [f.uuid for f in tcp[-5:]]


@pytest.mark.parametrize(
    ("ff", "reason"),
    [
        (flow_pb2.FlowFilter(source_ip=["10.0.0.0/33"]), "10.0.0.0/33"),
        (flow_pb2.FlowFilter(destination_port=["http"]), "http"),
        (flow_pb2.FlowFilter(source_label=["app in (a"]), "app in (a"),
        (flow_pb2.FlowFilter(protocol=["tcpp"]), "tcpp"),
    ],
)
def test_malformed_filter_is_invalid_argument(lab: Lab, ff: flow_pb2.FlowFilter, reason: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub(lab).GetFlows(observer_pb2.GetFlowsRequest(whitelist=[ff]), timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in caught.value.details()


def test_first_with_follow_is_invalid_argument(lab: Lab) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub(lab).GetFlows(observer_pb2.GetFlowsRequest(first=True, follow=True), timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
