"""The relay on a real three-node lab, with real agents: the issue's "done when".

One lab for the module (building it and loading three datapaths takes seconds); each test leaves it as it
found it, all three agents running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from certificates import authority, signed
from relay_client import Follower
from relay_lab import (
    AGENT,
    agent_of,
    by_port,
    datagram,
    flows_of,
    lab_name,
    stub,
    wait_connected,
)
from waiting import polled

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.api.relay import relay_pb2
from flowscope.common.tls import ServerTLS
from flowscope.lab import Lab
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayConfig, RelayServer

pytestmark = pytest.mark.bpf

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(lab_name("relay"), nodes=3, agent_command=AGENT) as lab:
        lab.up(traffic=False, agent=True, relay=True)
        wait_connected(lab.relay_address, 3)
        yield lab


def restart(lab: Lab, node: str) -> None:
    lab.start_agents([node])
    wait_connected(lab.relay_address, 3)


def seen_by_agents(lab: Lab, sport: int) -> list[tuple[int, str, int, str]]:
    """(time, node, observation point, source address) of every flow of the exchange, asked of each agent itself."""
    request = observer_pb2.GetFlowsRequest(whitelist=by_port(sport))
    seen = []
    for node in lab.nodes:
        for r in flows_of(list(stub(f"unix://{lab.agent_socket(node.name)}").GetFlows(request, timeout=10))):
            seen.append(point(r))
    return sorted(seen)


def point(r: observer_pb2.GetFlowsResponse) -> tuple[int, str, int, str]:
    return r.flow.time.ToNanoseconds(), r.node_name, r.flow.trace_observation_point, r.flow.IP.source


def quiet_flows(follower: Follower, quiet: float = 0.7, timeout: float = 10.0) -> list[observer_pb2.GetFlowsResponse]:
    """Flows the follower gets until none came for `quiet` seconds."""
    flows, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, response = follower.until(lambda r: r.HasField("flow"), timeout=quiet)
        except AssertionError:
            break
        flows.append(response)
    return flows


def exchanged_until(
    lab: Lab, follower: Follower, sport: int, wanted: Callable[[observer_pb2.GetFlowsResponse], bool]
) -> list[observer_pb2.GetFlowsResponse]:
    """The flows the follower got of a datagram from the client (from `sport`) to the server and its echo, the
    exchange made again until one of them is `wanted` (within 15 s; the last exchange's flows otherwise).

    For a node just named connected again: the relay names it as it asks it for the stream, and the agent,
    just restarted or thawed, serves it a moment later; an exchange made meanwhile may go unseen there, so
    the test waits for the node's flows rather than for a guessed time."""

    def exchange() -> list[observer_pb2.GetFlowsResponse]:
        datagram(lab, "client", "server", sport)
        return quiet_flows(follower)

    return polled(exchange, lambda flows: any(wanted(r) for r in flows), timeout=15, every=0)


def test_cross_node_traffic_is_merged_once_per_observation_point_in_time_order(lab: Lab) -> None:
    client_node, server_node = lab.pod("client").node, lab.pod("server").node
    assert client_node != server_node
    follower = Follower(channel(lab), observer_pb2.GetFlowsRequest(follow=True, whitelist=by_port(41001)))
    follower.until(is_status(relay_pb2.NODE_CONNECTED))
    datagram(lab, "client", "server", 41001)
    merged = [point(r) for r in quiet_flows(follower)]
    follower.cancel()
    # Exactly what the agents saw, each observation once, in time order, named after its node: both nodes of
    # the exchange, the request and its reply.
    assert merged == seen_by_agents(lab, 41001)
    assert {node for _, node, _, _ in merged} == {client_node, server_node}
    assert {source for _, _, _, source in merged} == {lab.pod("client").ipv4, lab.pod("server").ipv4}

    # The same through `--last`, and through `flowscope observe` as a person runs it.
    request = observer_pb2.GetFlowsRequest(number=100, whitelist=by_port(41001))
    assert [point(r) for r in flows_of(list(stub(lab.relay_address).GetFlows(request, timeout=10)))] == merged
    observed = subprocess.run(
        [sys.executable, "-m", "flowscope.cli.main", "observe", "--server", lab.relay_address, "--last", "100",
         "--port", "41001", "-o", "compact"],
        capture_output=True, text=True, timeout=30, cwd=PROJECT,
    )  # fmt: skip
    assert observed.returncode == 0, observed.stderr
    assert len([line for line in observed.stdout.splitlines() if "41001" in line]) == len(merged)


def test_kill_9_of_an_agent_names_it_and_its_flows_come_back_in_the_same_stream(lab: Lab) -> None:
    client_node, server_node = lab.pod("client").node, lab.pod("server").node
    ports = [*by_port(41002), *by_port(41003)]
    follower = Follower(channel(lab), observer_pb2.GetFlowsRequest(follow=True, whitelist=ports))
    follower.until(is_status(relay_pb2.NODE_CONNECTED))
    killed = time.monotonic()
    os.kill(agent_of(lab, server_node).pid, signal.SIGKILL)
    at, error = follower.until(is_status(relay_pb2.NODE_ERROR, relay_pb2.NODE_UNAVAILABLE))
    assert list(error.node_status.node_names) == [server_node] and at - killed < 2.0, (at - killed, error)
    datagram(lab, "client", "server", 41002)
    assert {r.node_name for r in quiet_flows(follower)} == {client_node}  # the stream goes on, without it
    lab.start_agents([server_node])
    _, back = follower.until(is_status(relay_pb2.NODE_CONNECTED), timeout=15)
    assert list(back.node_status.node_names) == [server_node]
    # A new exchange, as the new agent knows nothing of the old one: its new flows, in the same stream.
    flows = exchanged_until(lab, follower, 41003, lambda r: r.node_name == server_node)
    assert server_node in {r.node_name for r in flows}
    assert follower.error is None
    follower.cancel()


def test_a_frozen_agent_is_named_and_its_flows_come_back_when_it_thaws(lab: Lab) -> None:
    """A node that stops answering without closing its connection (SIGSTOP here; a cut-off network alike):
    the relay's keepalive pings find it out, the stream names it and goes on, and once it answers again its
    flows come back in the same stream."""
    client_node, server_node = lab.pod("client").node, lab.pod("server").node
    ports = [*by_port(41004), *by_port(41005)]
    follower = Follower(channel(lab), observer_pb2.GetFlowsRequest(follow=True, whitelist=ports))
    follower.until(is_status(relay_pb2.NODE_CONNECTED))
    pid = agent_of(lab, server_node).pid
    frozen = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        at, error = follower.until(is_status(relay_pb2.NODE_ERROR, relay_pb2.NODE_UNAVAILABLE), timeout=10)
        assert list(error.node_status.node_names) == [server_node] and at - frozen < 4.0, (at - frozen, error)
        datagram(lab, "client", "server", 41004)
        assert {r.node_name for r in quiet_flows(follower)} == {client_node}  # the stream goes on, without it
    finally:
        os.kill(pid, signal.SIGCONT)
    _, back = follower.until(is_status(relay_pb2.NODE_CONNECTED), timeout=15)
    assert list(back.node_status.node_names) == [server_node]
    flows = exchanged_until(
        lab, follower, 41005, lambda r: r.node_name == server_node and r.flow.l4.UDP.destination_port == 41005
    )
    assert server_node in {r.node_name for r in flows if r.flow.l4.UDP.destination_port == 41005}
    assert follower.error is None
    follower.cancel()


def test_server_status_and_nodes_report_three_then_two_then_three(lab: Lab) -> None:
    observer = stub(lab.relay_address)

    def connected() -> tuple[int, int, list[str]]:
        s = observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
        return s.num_connected_nodes.value, s.num_unavailable_nodes.value, list(s.unavailable_nodes)

    def states() -> list[tuple[str, int]]:
        return [(n.name, n.state) for n in observer.GetNodes(observer_pb2.GetNodesRequest(), timeout=5).nodes]

    assert connected() == (3, 0, [])
    assert states() == [(f"node{i}", relay_pb2.NODE_CONNECTED) for i in (1, 2, 3)]
    os.kill(agent_of(lab, "node3").pid, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while connected() != (2, 1, ["node3"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert states()[2] == ("node3", relay_pb2.NODE_UNAVAILABLE)
    restart(lab, "node3")
    assert connected() == (3, 0, [])
    nodes = observer.GetNodes(observer_pb2.GetNodesRequest(), timeout=5).nodes
    assert all(n.state == relay_pb2.NODE_CONNECTED and n.uptime_ns > 0 and n.max_flows > 0 for n in nodes)


def test_under_mutual_tls_a_client_without_a_certificate_is_refused(lab: Lab, tmp_path: Path) -> None:
    ca = authority(tmp_path)
    relay_pair = signed(tmp_path, ca, "relay", ["localhost"], ["127.0.0.1"])
    client = signed(tmp_path, ca, "client", ["client"])
    config = RelayConfig(
        listen_address="localhost:0",
        peers=[Peer(n.name, f"unix://{lab.agent_socket(n.name)}") for n in lab.nodes],
        server_tls=ServerTLS(relay_pair.cert, relay_pair.key, client_cas=(ca.cert,)),
    )
    with RelayServer(config) as relay:

        def credentials(with_certificate: bool) -> grpc.ChannelCredentials:
            return grpc.ssl_channel_credentials(
                ca.cert.read_bytes(),
                client.key.read_bytes() if with_certificate else None,
                client.cert.read_bytes() if with_certificate else None,
            )

        with grpc.secure_channel(f"localhost:{relay.port}", credentials(False)) as anonymous:
            with pytest.raises(grpc.RpcError) as refused:
                observer_pb2_grpc.ObserverStub(anonymous).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.secure_channel(f"localhost:{relay.port}", credentials(True)) as known:
            status = observer_pb2_grpc.ObserverStub(known).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
            assert status.num_connected_nodes.value == 3


def channel(lab: Lab) -> grpc.Channel:
    return grpc.insecure_channel(lab.relay_address)


def is_status(*states: relay_pb2.NodeState) -> Callable[[observer_pb2.GetFlowsResponse], bool]:
    return lambda r: r.HasField("node_status") and r.node_status.state_change in states
