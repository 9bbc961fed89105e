"""Kernel drops end to end: real drops in a lab, seen through the real agent's GetFlows and the real CLI.

UDP to a closed port in a pod is a NO_SOCKET drop in the pod's namespace; an nftables drop rule (in a pod, or in
the node's forward chain) is NETFILTER_DROP. Each must be one DROPPED flow with the kernel's reason, the exact
5-tuple, both endpoints and the node; a storm must be rate limited with counts that add up; drops in another
lab's namespaces (same machine, same kernel, same addresses) must not show up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from integration.flows_helpers import get_flows, wait_for_flows
from kdrop_helpers import kernel_drops, packets_of, rate_limited, send_from_pod

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.topology import Pod
from flowscope.observer.metadata import identity_of

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
AGENT_RATE = 1000  # AgentConfig.kernel_drop_rate: reports per second per reason and CPU


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-kdrop") as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def assert_endpoint(endpoint: flow_pb2.Endpoint, pod: Pod) -> None:
    labels = {**pod.labels, "io.kubernetes.pod.namespace": pod.namespace}
    assert (endpoint.ID, endpoint.pod_name, endpoint.namespace) == (pod.endpoint_id, pod.name, pod.namespace)
    assert endpoint.identity == identity_of(labels)
    assert sorted(endpoint.labels) == sorted(f"k8s:{k}={v}" for k, v in labels.items())


def mac(netns: str, ifname: str) -> str:
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show", ifname], capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout)[0]["address"])


def one_drop(lab: Lab, dport: int) -> flow_pb2.Flow:
    flows = wait_for_flows(lab, [kernel_drops(dport)], lambda f: len(f) >= 1)
    time.sleep(0.2)  # and no second one
    flows = get_flows(lab, [kernel_drops(dport)])
    assert len(flows) == 1, flows
    return flows[0]


def assert_udp_drop(flow: flow_pb2.Flow, src: str, dst: str, sport: int, dport: int, reason: str) -> None:
    assert flow.verdict == flow_pb2.DROPPED
    assert (flow.event_type.type, flow.event_type.sub_type) == (1, 0)
    assert flow.flowscope.kernel_drop_reason == reason
    assert (flow.IP.source, flow.IP.destination) == (src, dst)
    assert flow.IP.ipVersion == (flow_pb2.IPv6 if ":" in src else flow_pb2.IPv4)
    assert (flow.l4.UDP.source_port, flow.l4.UDP.destination_port) == (sport, dport)
    assert flow.node_name == "node1"
    assert flow.Type == flow_pb2.L3_L4
    assert not flow.flowscope.aggregated


@pytest.mark.parametrize("family", [4, 6])
def test_udp_to_a_closed_port_is_no_socket(lab: Lab, family: int) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    src, dst = (client.ipv4, server.ipv4) if family == 4 else (client.ipv6, server.ipv6)
    sport, dport = 42000 + family, 7700 + family
    send_from_pod(lab, "client", dst, dport, sport)
    flow = one_drop(lab, dport)

    assert_udp_drop(flow, src, dst, sport, dport, "NO_SOCKET")
    assert_endpoint(flow.source, client)
    assert_endpoint(flow.destination, server)
    assert flow.traffic_direction == flow_pb2.INGRESS  # dropped in the server's namespace, on the way in
    assert re.fullmatch(rf"__udp{'6' if family == 6 else '4'}_lib_rcv\+0x[0-9a-f]+", flow.flowscope.drop_location)
    # The frame as the server's eth0 received it: from the node's side of its veth.
    assert flow.ethernet.source == mac(server.node_netns, server.ifname)
    assert flow.ethernet.destination == mac(server.netns, "eth0")
    assert not flow.HasField("interface")  # the pod's own devices are not the node's to name


NftRule = Callable[[str, str, int], None]  # (netns, hook, UDP port to drop)


@pytest.fixture
def nft_rule(lab: Lab) -> Iterator[NftRule]:
    """Add an nftables table in a namespace for one test; it is deleted afterwards."""
    made: list[str] = []

    def add(netns: str, hook: str, dport: int) -> None:
        chain = f"chain c {{\n type filter hook {hook} priority 0;\n udp dport {dport} drop\n}}"
        rules = f"table inet fs_kdrop_test {{\n{chain}\n}}\n"
        subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=rules, text=True, check=True)
        made.append(netns)

    yield add
    for netns in made:
        subprocess.run(["ip", "netns", "exec", netns, "nft", "delete", "table", "inet", "fs_kdrop_test"], check=False)


def test_nftables_drop_in_a_pod_is_netfilter_drop(lab: Lab, nft_rule: NftRule) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    nft_rule(server.netns, "input", 7720)
    send_from_pod(lab, "client", server.ipv4, 7720, 42020)
    flow = one_drop(lab, 7720)
    assert_udp_drop(flow, client.ipv4, server.ipv4, 42020, 7720, "NETFILTER_DROP")
    assert_endpoint(flow.source, client)
    assert_endpoint(flow.destination, server)
    assert re.fullmatch(r"nft?_\w+\+0x[0-9a-f]+", flow.flowscope.drop_location)  # nft_do_chain+0x46f here


def test_nftables_drop_on_the_node_is_netfilter_drop(lab: Lab, nft_rule: NftRule) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    nft_rule(lab.netns("node1"), "forward", 7730)
    send_from_pod(lab, "client", server.ipv6, 7730, 42030)
    flow = one_drop(lab, 7730)
    assert_udp_drop(flow, client.ipv6, server.ipv6, 42030, 7730, "NETFILTER_DROP")
    assert_endpoint(flow.source, client)
    assert_endpoint(flow.destination, server)
    assert flow.interface.name == client.ifname  # in the node's namespace: the device it came in on


def test_nftables_drop_of_what_a_pod_sends(lab: Lab, nft_rule: NftRule) -> None:
    """Dropped on the way out, before any device: the namespace is the socket's, the Ethernet header made up."""
    client, server = lab.pod("client"), lab.pod("server")
    nft_rule(client.netns, "output", 7770)
    send_from_pod(lab, "client", server.ipv4, 7770, 42070)
    flow = one_drop(lab, 7770)
    assert_udp_drop(flow, client.ipv4, server.ipv4, 42070, 7770, "NETFILTER_DROP")
    assert_endpoint(flow.source, client)
    assert_endpoint(flow.destination, server)
    assert flow.traffic_direction == flow_pb2.EGRESS  # dropped in the client's namespace, on the way out
    assert not flow.HasField("ethernet")  # the kernel drop program made its header up: nothing to show


def test_a_drop_storm_is_rate_limited_with_counts(lab: Lab) -> None:
    server = lab.pod("server")
    storm, dport = 4 * AGENT_RATE, 7740
    limited_before = rate_limited(lab)
    elapsed = send_from_pod(lab, "client", server.ipv4, dport, 42040, count=storm, cpu=0)
    time.sleep(1.5)  # the bucket fills again: the next drop is reported, carrying what was suppressed
    send_from_pod(lab, "client", server.ipv4, dport, 42040, count=1, cpu=0)
    flows = wait_for_flows(lab, [kernel_drops(dport)], lambda f: sum(map(packets_of, f)) >= storm + 1, timeout=10)
    time.sleep(1.2)  # the agent reads the rate-limited counter once a second
    limited = rate_limited(lab) - limited_before

    assert all(f.flowscope.kernel_drop_reason == "NO_SOCKET" for f in flows)
    assert len(flows) <= AGENT_RATE * (1 + elapsed) + 1  # a burst, then the rate; and the last one
    assert len(flows) < storm
    assert len(flows) + limited == storm + 1  # each drop was reported, or counted as rate limited
    assert sum(map(packets_of, flows)) == storm + 1  # and the reports' counts carry every one
    assert flows[-1].flowscope.aggregated and flows[-1].flowscope.packets > 1


TCP_EXCHANGE = """
import socket, sys
with socket.create_connection((sys.argv[1], 9000), timeout=5) as s:
    print(s.getsockname()[1])
    with s.makefile("rwb") as stream:
        for i in range(3):
            stream.write(b"request %d\\n" % i)
            stream.flush()
            stream.readline()
"""


def test_normal_traffic_shows_no_kernel_drops(lab: Lab) -> None:
    """A TCP connection that closes (its last FIN left unread) and a ping (root: a raw socket) lose nothing."""
    server = lab.pod("server")
    sport = int(lab.exec("client", [sys.executable, "-c", TCP_EXCHANGE, server.ipv4]).stdout)
    lab.exec("client", ["ping", "-c", "2", "-i", "0.2", server.ipv6])
    send_from_pod(lab, "client", server.ipv4, 7780, 42080)  # a real drop, made last
    one_drop(lab, 7780)
    assert get_flows(lab, [flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED], source_port=[str(sport)])]) == []
    assert get_flows(lab, [flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED], destination_port=[str(sport)])]) == []
    assert get_flows(lab, [flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED], protocol=["icmpv6"])]) == []


def test_drops_in_another_labs_namespaces_do_not_show(lab: Lab) -> None:
    with Lab(f"t{os.getpid()}-kdother") as other:
        other.up(traffic=False, agent=False)  # same pods, same addresses, no agent: its drops are nobody's here
        send_from_pod(other, "client", other.pod("server").ipv4, 7750, 42050)
        send_from_pod(lab, "client", lab.pod("server").ipv4, 7751, 42051)
        one_drop(lab, 7751)  # this lab's drop, made after the other's, is in
        assert get_flows(lab, [kernel_drops(7750)]) == []


def test_the_cli_shows_the_kernel_reason(lab: Lab) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    send_from_pod(lab, "client", server.ipv4, 7760, 42060)
    one_drop(lab, 7760)
    done = subprocess.run(
        [
            FLOWSCOPE,
            "observe",
            "--server",
            f"unix://{lab.agent_socket('node1')}",
            "--port",
            "7760",
            "--verdict",
            "DROPPED",
            "-o",
            "compact",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    (line,) = done.stdout.splitlines()
    ids = {p.name: identity_of({**p.labels, "io.kubernetes.pod.namespace": p.namespace}) for p in (client, server)}
    # `->`: the server's conntrack saw the datagram arrive as its connection's first packet (reply_marks.py)
    assert line.split(": ", 1)[1] == (
        f"default/client:42060 (ID:{ids['client']}) -> default/server:7760 (ID:{ids['server']}) NO_SOCKET DROPPED (UDP)"
    )
