"""An overlay lab (--tunnel vxlan): pod traffic between nodes is seen at to-overlay and from-overlay with its
outer headers (Flow.tunnel), and the underlay carries it as VXLAN in UDP between the nodes' addresses.

A real two-node lab with the real agents; the client pod on node1 talks to the server pod on node2 with the
lab's own echo clients (TCP request/response, UDP datagrams) over IPv4 and IPv6, and tcpdump on the underlay
bridge shows what the wire carried.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from flows_helpers import get_flows, wait_for_flows
from waiting import eventually

from flowscope.api.flow import flow_pb2
from flowscope.common.overlay import VXLAN_PORT
from flowscope.lab import Lab, netns
from flowscope.lab.topology import TUNNEL_VNI

pytestmark = pytest.mark.bpf


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-vx", nodes=2, tunnel="vxlan") as lab:
        lab.up(traffic=False)
        yield lab


def _talk(lab: Lab, kind: str, family: str) -> tuple[str, str]:
    """One exchange from the client (node1) to the server (node2); its (source, destination) addresses."""
    client, server = lab.pod("client"), lab.pod("server")
    src, dst = (client.ipv4, server.ipv4) if family == "v4" else (client.ipv6, server.ipv6)
    command = "request" if kind == "tcp" else "datagram"
    lab.exec("client", [sys.executable, "-m", "flowscope.lab.echo_servers", command, dst])
    return src, dst


def _tunnel(source: str, destination: str) -> flow_pb2.Tunnel:
    return flow_pb2.Tunnel(
        protocol=flow_pb2.Tunnel.VXLAN,
        IP=flow_pb2.IP(source=source, destination=destination, ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(UDP=flow_pb2.UDP(destination_port=VXLAN_PORT)),
        vni=TUNNEL_VNI,
    )


def _at(flows: list[flow_pb2.Flow], point: int) -> list[flow_pb2.Flow]:
    return [f for f in flows if f.trace_observation_point == point]


@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_pod_traffic_crosses_the_overlay_with_its_outer_headers(lab: Lab, kind: str, family: str) -> None:
    src, dst = _talk(lab, kind, family)
    node1, node2 = lab.node("node1"), lab.node("node2")
    port = flow_pb2.FlowFilter(protocol=[kind], source_ip=[src], destination_ip=[dst])
    sent = wait_for_flows(lab, [port], lambda flows: bool(_at(flows, flow_pb2.TO_OVERLAY)))
    # node2's agent stores what it received on its own time: wait until it has every packet node1 sent over
    # (both read again each time, as the exchange's last packets may still be on their way)
    both: list[list[flow_pb2.Flow]] = []

    def every_packet_came_out() -> bool:
        sent_now = get_flows(lab, [port])
        received_now = _at(get_flows(lab, [port], node="node2"), flow_pb2.FROM_OVERLAY)
        both[:] = [sent_now, received_now]
        return len(received_now) == len(_at(sent_now, flow_pb2.TO_OVERLAY))

    eventually(every_packet_came_out, 5.0)
    sent, received = both

    to_overlay = _at(sent, flow_pb2.TO_OVERLAY)
    assert to_overlay, [flow_pb2.TraceObservationPoint.Name(f.trace_observation_point) for f in sent]
    for flow in to_overlay:
        assert flow.interface.name == "fs_vxlan"
        assert flow.tunnel == _tunnel(node1.ipv4, node2.ipv4)
        assert flow.source.pod_name == "client" and flow.destination.pod_name == "server"
    assert received and len(received) == len(to_overlay)  # every packet sent over came out on the other side
    for flow in received:
        assert flow.interface.name == "fs_vxlan"
        assert flow.tunnel == _tunnel(node1.ipv4, node2.ipv4)
        assert flow.source.pod_name == "client" and flow.destination.pod_name == "server"
    # The pods' own devices have no tunnel, and the underlay device never sees the pods' addresses.
    at_pod = _at(sent, flow_pb2.FROM_ENDPOINT)
    assert at_pod and not any(f.HasField("tunnel") for f in at_pod)
    assert not _at(sent, flow_pb2.TO_NETWORK) and not _at(sent, flow_pb2.FROM_NETWORK)


def test_the_underlay_carries_vxlan_between_the_nodes(lab: Lab) -> None:
    node1, node2 = lab.node("node1"), lab.node("node2")
    tcpdump = subprocess.Popen(
        netns.exec_argv(lab.netns("underlay"), ["tcpdump", "-nlc", "1", "-i", "br0", f"udp dst port {VXLAN_PORT}"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tcpdump.stderr is not None
        while "listening on" not in (line := tcpdump.stderr.readline()):
            assert line, "tcpdump exited before it listened"
        _talk(lab, "udp", "v6")
        out, _ = tcpdump.communicate(timeout=20)
    finally:
        tcpdump.kill()
        tcpdump.wait()
    assert f"IP {node1.ipv4}." in out and f"> {node2.ipv4}.{VXLAN_PORT}:" in out
    assert f"instance {TUNNEL_VNI}" in out
    assert lab.pod("client").ipv6 in out and lab.pod("server").ipv6 in out  # the inner packet

    # the agent shows those datagrams where they are: node to node on eth0, no pod's, no tunnel of their own
    outer = flow_pb2.FlowFilter(source_ip=[node1.ipv4], destination_ip=[node2.ipv4], destination_port=[str(VXLAN_PORT)])
    flows = wait_for_flows(lab, [outer], lambda flows: bool(_at(flows, flow_pb2.TO_NETWORK)))
    for flow in _at(flows, flow_pb2.TO_NETWORK):
        assert flow.interface.name == "eth0" and flow.l4.UDP.destination_port == VXLAN_PORT
        assert not flow.HasField("tunnel") and not flow.source.pod_name
