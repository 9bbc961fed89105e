"""The relay end to end against stand-in agents: fan-out, merge, node status events, failures, slow clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from relay_client import Follower
from relay_fakes import FakeAgent
from relay_samples import MS, flow, time_of

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.api.relay import relay_pb2
from flowscope.relay.pool import Peer
from flowscope.relay.server import RelayServer

Start = Callable[..., RelayServer]
Follow = Callable[..., Follower]


def now_ns() -> int:
    return time.time_ns()


def stub(relay: RelayServer) -> observer_pb2_grpc.ObserverStub:
    return observer_pb2_grpc.ObserverStub(grpc.insecure_channel(f"localhost:{relay.port}"))


def channel(relay: RelayServer) -> grpc.Channel:
    return grpc.insecure_channel(f"localhost:{relay.port}")


def agents(tmp: Path, *names: str) -> list[FakeAgent]:
    return [FakeAgent(name, tmp / f"{name}.sock").start() for name in names]


def peers(*agents: FakeAgent) -> list[Peer]:
    return [Peer(a.name, a.target) for a in agents]


def is_status(state: relay_pb2.NodeState, *names: str) -> Callable[[observer_pb2.GetFlowsResponse], bool]:
    def check(r: observer_pb2.GetFlowsResponse) -> bool:
        s = r.node_status
        return r.HasField("node_status") and s.state_change == state and (not names or list(s.node_names) == [*names])

    return check


def is_flow(node: str, port: int) -> Callable[[observer_pb2.GetFlowsResponse], bool]:
    return lambda r: r.HasField("flow") and r.node_name == node and r.flow.l4.TCP.destination_port == port


def test_every_nodes_flows_merge_in_time_order_with_their_node_names(short_tmp: Path, start_relay: Start) -> None:
    base = now_ns() - 10_000 * MS
    nodes = agents(short_tmp, "node1", "node2", "node3")
    for k, agent in enumerate(nodes):
        agent.history = [flow(agent.name, base + (3 * i + k) * MS, port=3 * i + k) for i in range(5)]
    relay = start_relay(peers=peers(*nodes))
    responses = list(stub(relay).GetFlows(observer_pb2.GetFlowsRequest(), timeout=10))
    statuses = [r for r in responses if r.HasField("node_status")]
    flows = [r for r in responses if r.HasField("flow")]
    assert [(s.node_status.state_change, list(s.node_status.node_names)) for s in statuses] == [
        (relay_pb2.NODE_CONNECTED, ["node1", "node2", "node3"])
    ]
    assert [r.flow.l4.TCP.destination_port for r in flows] == list(range(15))
    assert [r.node_name for r in flows] == ["node1", "node2", "node3"] * 5
    assert all(r.HasField("time") for r in responses)
    for agent in nodes:
        agent.stop()


def test_the_request_reaches_every_node_unchanged_so_number_is_per_node(short_tmp: Path, start_relay: Start) -> None:
    base = now_ns() - 10_000 * MS
    nodes = agents(short_tmp, "node1", "node2")
    for agent in nodes:
        agent.history = [flow(agent.name, base + i * MS, port=i) for i in range(10)]
    relay = start_relay(peers=peers(*nodes))
    request = observer_pb2.GetFlowsRequest(
        number=3,
        whitelist=[flow_pb2.FlowFilter(source_pod=["default/client"])],
        blacklist=[flow_pb2.FlowFilter(destination_port=["53"])],
        field_mask=field_mask_pb2.FieldMask(paths=["time", "l4"]),
    )
    flows = [r for r in stub(relay).GetFlows(request, timeout=10) if r.HasField("flow")]
    assert sorted((r.node_name, r.flow.l4.TCP.destination_port) for r in flows) == [
        (n, p) for n in ("node1", "node2") for p in (7, 8, 9)
    ]
    for agent in nodes:
        assert agent.requests == [request]
        agent.stop()


def test_a_stream_starts_by_naming_the_nodes_that_answer_and_those_that_do_not(
    short_tmp: Path, start_relay: Start, follow: Follow
) -> None:
    (up,) = agents(short_tmp, "node1")
    relay = start_relay(peers=[*peers(up), Peer("node2", f"unix://{short_tmp}/node2.sock")])
    follower = follow(channel(relay), follow=True)
    follower.until(is_status(relay_pb2.NODE_CONNECTED, "node1"))
    follower.until(is_status(relay_pb2.NODE_UNAVAILABLE, "node2"))
    assert len(follower.seen) == 2
    up.stop()


def test_a_node_that_dies_is_named_the_stream_goes_on_and_its_flows_come_back(
    short_tmp: Path, start_relay: Start, follow: Follow
) -> None:
    n1, n2 = agents(short_tmp, "node1", "node2")
    relay = start_relay(peers=peers(n1, n2))
    follower = follow(channel(relay), follow=True)
    assert n1.following() and n2.following()
    n1.push(flow("node1", now_ns(), port=1))
    n2.push(flow("node2", now_ns(), port=2))
    follower.until(is_flow("node2", 2))
    died = time.monotonic()
    n2.stop()
    at, error = follower.until(is_status(relay_pb2.NODE_ERROR, "node2"))
    assert at - died < 2.0 and error.node_status.message
    n1.push(flow("node1", now_ns(), port=3))
    follower.until(is_flow("node1", 3))  # the others go on
    n2.history = [flow("node2", now_ns() - 60_000 * MS, port=4), flow("node2", now_ns(), port=5)]
    n2.start()
    follower.until(is_status(relay_pb2.NODE_CONNECTED, "node2"), timeout=10)
    follower.until(is_flow("node2", 5))  # what it saw while the relay was away, not what it sent before
    assert not any(is_flow("node2", 4)(r) for r in follower.seen)
    resumed = n2.requests[-1]
    assert resumed.follow and resumed.HasField("since") and resumed.number == 0
    assert n2.following()
    n2.push(flow("node2", now_ns(), port=6))
    follower.until(is_flow("node2", 6))
    assert follower.error is None
    n1.stop()
    n2.stop()


def test_a_slow_client_loses_flows_as_a_lost_event_and_never_slows_the_others(
    short_tmp: Path, start_relay: Start, follow: Follow
) -> None:
    (agent,) = agents(short_tmp, "node1")
    relay = start_relay(peers=peers(agent), client_buffer=500)
    slow = stub(relay).GetFlows(observer_pb2.GetFlowsRequest(follow=True))  # opened, never read for now
    fast = follow(channel(relay), follow=True)
    assert agent.following(2)
    padding = "x" * 2000  # big flows fill gRPC's windows sooner
    sent = 0
    while relay.stats.dropped == 0 and sent < 100_000:
        batch = []
        for _ in range(200):
            response = flow("node1", now_ns(), port=sent % 60000)
            response.flow.Summary = padding
            batch.append(response)
            sent += 1
        agent.push(*batch)
        fast.until(is_flow("node1", (sent - 1) % 60000), timeout=10)  # the reading client keeps up
    assert relay.stats.dropped > 0
    lost = next(r for r in slow if r.HasField("lost_events"))
    assert lost.lost_events.source == flow_pb2.OBSERVER_EVENTS_QUEUE and lost.lost_events.num_events_lost > 0
    assert lost.node_name == "relay"
    slow.cancel()
    assert not any(r.HasField("lost_events") for r in fast.seen)
    agent.stop()


def test_server_status_and_nodes_count_what_answers(short_tmp: Path, start_relay: Start) -> None:
    n1, n2, n3 = nodes = agents(short_tmp, "node1", "node2", "node3")
    relay = start_relay(peers=peers(*nodes))
    observer = stub(relay)

    def counts() -> tuple[int, int, list[str]]:
        s = observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
        return s.num_connected_nodes.value, s.num_unavailable_nodes.value, list(s.unavailable_nodes)

    assert counts() == (3, 0, [])
    status = observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
    assert (status.num_flows, status.max_flows, status.seen_flows) == (30, 3 * 4095, 60)
    n2.stop()
    assert counts() == (2, 1, ["node2"])
    listed = observer.GetNodes(observer_pb2.GetNodesRequest(), timeout=5).nodes
    assert [(n.name, n.state) for n in listed] == [
        ("node1", relay_pb2.NODE_CONNECTED),
        ("node2", relay_pb2.NODE_UNAVAILABLE),
        ("node3", relay_pb2.NODE_CONNECTED),
    ]
    assert listed[0].version == "fake" and listed[0].max_flows == 4095 and listed[0].address == n1.target
    n2.start()
    deadline = time.monotonic() + 10
    while counts() != (3, 0, []):
        assert time.monotonic() < deadline, "node2 never came back"
        time.sleep(0.1)
    for agent in (n1, n2, n3):
        agent.stop()


def test_namespaces_are_merged(short_tmp: Path, start_relay: Start) -> None:
    n1, n2 = agents(short_tmp, "node1", "node2")
    n1.namespaces, n2.namespaces = ["default", "web"], ["default", "kube-system"]
    relay = start_relay(peers=peers(n1, n2))
    reply = stub(relay).GetNamespaces(observer_pb2.GetNamespacesRequest(), timeout=5)
    assert [ns.namespace for ns in reply.namespaces] == ["default", "kube-system", "web"]
    n1.stop()
    n2.stop()


def test_an_invalid_request_is_refused_as_the_nodes_refuse_it(short_tmp: Path, start_relay: Start) -> None:
    n1, n2 = agents(short_tmp, "node1", "node2")
    relay = start_relay(peers=peers(n1, n2))
    with pytest.raises(grpc.RpcError) as refused:
        list(stub(relay).GetFlows(observer_pb2.GetFlowsRequest(first=True, follow=True), timeout=5))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for agent in (n1, n2):
        agent.abort = (grpc.StatusCode.INVALID_ARGUMENT, "bad regular expression in dns_query")
    with pytest.raises(grpc.RpcError) as refused:
        list(stub(relay).GetFlows(observer_pb2.GetFlowsRequest(), timeout=5))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bad regular expression" in (refused.value.details() or "")
    n1.stop()
    n2.stop()


def test_nodes_come_and_go_as_the_peer_service_says(short_tmp: Path, start_relay: Start, follow: Follow) -> None:
    from flowscope.api.peer import peer_pb2

    n1, n2, n3 = agents(short_tmp, "node1", "node2", "node3")
    n1.peers = [("node1", n1.target), ("node2", n2.target)]
    relay = start_relay(peer_service=n1.target)
    deadline = time.monotonic() + 5
    while relay.pool.names() != {"node1", "node2"}:
        assert time.monotonic() < deadline, relay.pool.names()
        time.sleep(0.02)
    follower = follow(channel(relay), follow=True)
    follower.until(is_status(relay_pb2.NODE_CONNECTED, "node1", "node2"))
    n1.announce(peer_pb2.ChangeNotification(name="node3", address=n3.target, type=peer_pb2.PEER_ADDED))
    follower.until(is_status(relay_pb2.NODE_CONNECTED, "node3"))
    assert n3.following()
    n3.push(flow("node3", now_ns(), port=33))
    follower.until(is_flow("node3", 33))
    n1.announce(peer_pb2.ChangeNotification(name="node2", address=n2.target, type=peer_pb2.PEER_DELETED))
    follower.until(is_status(relay_pb2.NODE_GONE, "node2"))
    for agent in (n1, n2, n3):
        agent.stop()


def test_a_response_without_a_node_name_gets_its_nodes(short_tmp: Path, start_relay: Start) -> None:
    (agent,) = agents(short_tmp, "node1")
    agent.history = [flow("node1", now_ns() - 1000 * MS, named=False)]
    relay = start_relay(peers=peers(agent))
    flows = [r for r in stub(relay).GetFlows(observer_pb2.GetFlowsRequest(), timeout=5) if r.HasField("flow")]
    assert [r.node_name for r in flows] == ["node1"]
    assert time_of(flows[0]) == agent.history[0].time.ToNanoseconds()
    agent.stop()
