"""NodePort and hairpin on a real two-node lab with the real agents.

`default/server-np` serves node port 30900 on every node's underlay address, over the `server` pod (node2), whose
echo server answers each line with `ok <line>`. From the `world` host, node1's address is a remote backend away
(DNAT and SNAT to node1's address: node2 sees node1 as the client) and node2's a local one (DNAT only).
Hairpin: the `web` pod asks the `web/web` ClusterIP, whose backends are itself and `web2`: the requests the hash
sends to itself come to it from the loopback address (169.254.42.1, fd96::a9fe:2a01), and every one is answered,
over IPv4 and IPv6.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from flows_helpers import get_flows
from waiting import wait_for

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.topology import SERVER_NODE_PORT, TCP_RR_PORT

pytestmark = pytest.mark.bpf

CONNECTIONS = 20
HAIRPIN_LOOPBACK = {4: "169.254.42.1", 6: "fd96::a9fe:2a01"}  # Cilium's IPV4_LOOPBACK; lb.h fs_lb_loopback


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-np", nodes=2) as lab:
        lab.up(traffic=False)
        yield lab


def ask(lab: Lab, where: str, address: str, port: int) -> str:
    """One connection of three request lines; the echo client's exit status says every answer was right."""
    argv = [sys.executable, "-m", "flowscope.lab.echo_servers", "request", address, "--port", str(port)]
    done = lab.exec(where, [*argv, "--count", "3"], check=False)
    return "ok" if done.returncode == 0 else f"failed: {done.stdout}{done.stderr}"


def from_world(lab: Lab, node: str) -> list[flow_pb2.Flow]:
    """The flows of world's connections to the NodePort on `node`'s address, as `node` stored them."""
    address = lab.node(node).ipv4
    world = lab.world.ipv4
    asked = flow_pb2.FlowFilter(source_ip=[world], destination_ip=[address], destination_port=[str(SERVER_NODE_PORT)])
    return get_flows(lab, [asked], node=node)


def test_the_node_port_answers_on_the_node_without_the_backend_through_snat(lab: Lab) -> None:
    node1, server = lab.node("node1").ipv4, lab.pod("server").ipv4
    assert [ask(lab, "world", node1, SERVER_NODE_PORT) for _ in range(CONNECTIONS)] == ["ok"] * CONNECTIONS

    # node1: from-network, the client to node1's address at the NodePort, naming the service
    wait_for(lambda: len(syns(from_world(lab, "node1"))) >= CONNECTIONS)
    arrived = syns(from_world(lab, "node1"))
    assert {f.trace_observation_point for f in arrived} == {flow_pb2.FROM_NETWORK}
    assert {(f.destination_service.namespace, f.destination_service.name) for f in arrived} == {
        ("default", "server-np")
    }
    # then the translated packet leaves node1, from node1's address (the SNAT) to the server pod itself
    snat = flow_pb2.FlowFilter(source_ip=[node1], destination_ip=[server], destination_port=[str(TCP_RR_PORT)])
    wait_for(lambda: len(syns(get_flows(lab, [snat]))) >= CONNECTIONS)
    sent_on = syns(get_flows(lab, [snat]))
    assert {f.trace_observation_point for f in sent_on} == {flow_pb2.TO_NETWORK}
    assert {f.destination_service.name for f in sent_on} == {"server-np"}
    # node2 sees the connections come from node1's address, never from the world host
    wait_for(lambda: len(syns(get_flows(lab, [snat], node="node2"))) >= CONNECTIONS)
    assert (
        get_flows(lab, [flow_pb2.FlowFilter(source_ip=[lab.world.ipv4], destination_ip=[server])], node="node2") == []
    )


def test_the_node_port_answers_on_the_node_with_the_backend_through_dnat_only(lab: Lab) -> None:
    node2, server = lab.node("node2").ipv4, lab.pod("server").ipv4
    assert [ask(lab, "world", node2, SERVER_NODE_PORT) for _ in range(CONNECTIONS)] == ["ok"] * CONNECTIONS
    # the server pod sees the world host itself
    direct = flow_pb2.FlowFilter(
        source_ip=[lab.world.ipv4], destination_ip=[server], destination_port=[str(TCP_RR_PORT)]
    )
    wait_for(lambda: len(syns(get_flows(lab, [direct], node="node2"))) >= CONNECTIONS)
    arrived = syns(from_world(lab, "node2"))
    assert len(arrived) >= CONNECTIONS
    assert {f.destination_service.name for f in arrived} == {"server-np"}


def syns(flows: list[flow_pb2.Flow]) -> list[flow_pb2.Flow]:
    """The trace flows of connections' first packets (one per connection)."""
    return [f for f in flows if f.event_type.type == 4 and f.l4.TCP.flags.SYN and not f.l4.TCP.flags.ACK]


@pytest.mark.parametrize("version", [4, 6])
def test_a_pod_reaching_itself_through_its_service_is_answered_every_time(lab: Lab, version: int) -> None:
    address = next(ip for ip in lab.topology.service("web/web").cluster_ips if (":" in ip) == (version == 6))
    url = f"http://[{address}]/" if version == 6 else f"http://{address}/"
    answered_by = []
    for _ in range(CONNECTIONS):
        page = lab.exec("web", ["curl", "-s", "-m", "3", url], check=False).stdout
        answered_by.append(page.rsplit("hello from ", 1)[-1].split("<")[0] if "hello from " in page else "nobody")
    assert "nobody" not in answered_by, answered_by
    assert set(answered_by) == {"web", "web2"}  # 20 connections, 2 backends: both (the odds otherwise: 2^-19)
    # those the hash sent to `web` itself came to it from the loopback address, and left it for that address
    pod = lab.pod("web").ipv4 if version == 4 else lab.pod("web").ipv6
    hairpin = flow_pb2.FlowFilter(source_ip=[HAIRPIN_LOOPBACK[version]], destination_ip=[pod])
    assert syns(get_flows(lab, [hairpin], node="node2")), f"no connection came to web from {HAIRPIN_LOOPBACK[version]}"
