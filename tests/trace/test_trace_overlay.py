"""A packet-path session over the VXLAN overlay lab: the SYN is followed into the tunnel on node1 (to-overlay on
fs_vxlan, then the same sk_buff, encapsulated, out of eth0: filter once, then track), and out of it on node2
(from-overlay), linked across the nodes by the digest of its inner headers, and delivered."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from sessions_live import hops, live_session

from flowscope.api.flow import flow_pb2
from flowscope.cli.trace.fate import DELIVERED
from flowscope.cli.trace.paths import assemble
from flowscope.common.overlay import VXLAN_PORT
from flowscope.lab import Lab
from flowscope.lab.topology import TCP_RR_PORT, TUNNEL_VNI

pytestmark = pytest.mark.bpf

CONNECT = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-trvx", nodes=2, tunnel="vxlan") as lab:
        lab.up(traffic=False)
        yield lab


def test_a_syn_crosses_the_overlay_inner_headers_linking_the_nodes(lab: Lab) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    syn = flow_pb2.FlowFilter(
        source_ip=[client.ipv4], destination_port=[str(TCP_RR_PORT)], tcp_flags=[flow_pb2.TCPFlags(SYN=True)]
    )
    with live_session(lab, filters=[syn], count=1) as session:
        lab.exec("client", [sys.executable, "-c", CONNECT, server.ipv4, str(TCP_RR_PORT)])
        events = session.events()

    node1, node2 = hops(events, "node1"), hops(events, "node2")
    entries1 = [h.hook for h in node1 if h.hook in ("from-endpoint", "to-overlay", "to-network")]
    assert entries1 == ["from-endpoint", "to-overlay", "to-network"]
    assert [h.hook for h in node2 if h.hook in ("from-overlay", "to-endpoint")] == ["from-overlay", "to-endpoint"]
    into_tunnel = next(h for h in node1 if h.hook == "to-overlay")
    on_the_wire = next(h for h in node1 if h.hook == "to-network")
    out_of_tunnel = next(h for h in node2 if h.hook == "from-overlay")
    assert into_tunnel.interface == out_of_tunnel.interface == "fs_vxlan"
    assert into_tunnel.IP.destination == server.ipv4  # the inner packet
    assert on_the_wire.IP.source == lab.node("node1").ipv4 and on_the_wire.l4.UDP.destination_port == VXLAN_PORT
    assert on_the_wire.skb == into_tunnel.skb  # the same sk_buff, now encapsulated
    assert (out_of_tunnel.tunnel.protocol, out_of_tunnel.tunnel.vni) == (flow_pb2.Tunnel.VXLAN, TUNNEL_VNI)
    assert out_of_tunnel.tunnel.IP.source == lab.node("node1").ipv4
    # the inner headers' digest, the same on the wire (encapsulated) as out of the tunnel
    assert on_the_wire.digest == into_tunnel.digest == out_of_tunnel.digest != ""

    path = assemble(events).paths[0]
    assert [p.node for p in path.packets] == ["node1", "node2"]
    assert path.fate.kind == DELIVERED and path.fate.where == "default/server"
