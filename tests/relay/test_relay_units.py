"""The relay's small pieces: reading responses on the wire, backoff, static peers, and adding up status."""

from __future__ import annotations

import grpc
import pytest
from relay_samples import MS, T0, flow, parse, ts

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.relay import status, wire
from flowscope.relay.backoff import Backoff
from flowscope.relay.dial import keepalive_options
from flowscope.relay.fanout import has_history, resumed
from flowscope.relay.peers import parse_static
from flowscope.relay.pool import Peer


def test_scan_reads_kind_time_and_name_without_decoding_the_flow() -> None:
    scanned = wire.scan(flow("node1", T0 + 5 * MS).SerializeToString())
    assert scanned == wire.Scanned(wire.FLOW, T0 + 5 * MS, True)
    lost = observer_pb2.GetFlowsResponse(lost_events=flow_pb2.LostEvent(num_events_lost=3, last=ts(T0)))
    assert wire.scan(lost.SerializeToString()) == wire.Scanned(wire.LOST_EVENTS, T0, False)


def test_scan_falls_back_to_the_flows_own_time() -> None:
    response = flow("node1", T0 + 7 * MS)
    response.ClearField("time")
    assert wire.scan(response.SerializeToString()).time_ns == T0 + 7 * MS
    with pytest.raises(wire.DecodeError):
        wire.scan(b"\xff\xff\xff")


def test_a_name_suffix_names_a_response_that_had_none() -> None:
    response = flow("node1", T0, named=False)
    named = parse(response.SerializeToString() + wire.name_suffix("node7"))
    assert named.node_name == "node7" and named.flow == response.flow


def test_relay_messages() -> None:
    status_event = parse(wire.node_status(relay_pb2.NODE_ERROR, ["b", "a"], "relay", T0, "gone"))
    assert list(status_event.node_status.node_names) == ["a", "b"]
    assert status_event.node_status.message == "gone" and status_event.node_name == "relay"
    assert status_event.time.ToNanoseconds() == T0


def test_backoff_doubles_up_to_its_maximum_and_starts_over_after_a_success() -> None:
    backoff = Backoff(initial=0.2, maximum=2.0, jitter=0.0)
    assert [backoff.next() for _ in range(6)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.2)
    jittered = Backoff(initial=1.0, jitter=0.2)
    for _ in range(20):
        jittered.reset()
        assert 0.8 <= jittered.next() <= 1.2


def test_keepalive_pings_on_idle_streams_or_not_at_all() -> None:
    options = dict(keepalive_options(1.5))
    assert options["grpc.keepalive_time_ms"] == options["grpc.keepalive_timeout_ms"] == 1500
    assert options["grpc.http2.ping_timeout_ms"] == 1500  # gRPC's own default would wait a minute
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert keepalive_options(0) == []


def test_static_peers() -> None:
    assert parse_static(["node1=10.77.0.1:4244,node2=unix:///a.sock", "node3=[fd77::3]:4244"]) == [
        Peer("node1", "10.77.0.1:4244"),
        Peer("node2", "unix:///a.sock"),
        Peer("node3", "[fd77::3]:4244"),
    ]
    assert parse_static(["10.0.0.1:4244"]) == [Peer("10.0.0.1:4244", "10.0.0.1:4244")]
    with pytest.raises(ValueError, match="twice"):
        parse_static(["a=x:1", "a=y:1"])
    with pytest.raises(ValueError, match="bad peer"):
        parse_static(["=x:1"])


def test_a_resumed_follow_starts_after_what_the_client_got() -> None:
    request = observer_pb2.GetFlowsRequest(
        follow=True, number=20, whitelist=[flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED])]
    )
    again = resumed(request, T0)
    assert again.since.ToNanoseconds() == T0 and again.number == 0 and again.follow
    assert list(again.whitelist) == list(request.whitelist)
    assert has_history(request) and not has_history(observer_pb2.GetFlowsRequest(follow=True))
    later = observer_pb2.GetFlowsRequest(follow=True, since=ts(T0 + MS))
    assert resumed(later, T0).since.ToNanoseconds() == T0 + MS  # never earlier than the client asked


def answer(name: str, reply: object = None, code: grpc.StatusCode | None = None) -> status.Answer:
    return status.Answer(name, f"{name}:4244", False, "", reply=reply, code=code)


def test_server_status_sums_the_nodes_that_answer_and_names_at_most_ten_others() -> None:
    node = observer_pb2.ServerStatusResponse(num_flows=5, max_flows=10, seen_flows=7, flows_rate=1.5)
    node.flowscope_lost.kernel_buffer = 2
    answers = [answer("a", node), answer("b", node)]
    answers += [answer(f"x{i:02}", code=grpc.StatusCode.UNAVAILABLE) for i in range(12)]
    summary = status.summarise(answers, started_ns=0)
    assert (summary.num_flows, summary.max_flows, summary.seen_flows, summary.flows_rate) == (10, 20, 14, 3.0)
    assert summary.flowscope_lost.kernel_buffer == 4
    assert (summary.num_connected_nodes.value, summary.num_unavailable_nodes.value) == (2, 12)
    assert list(summary.unavailable_nodes) == [f"x{i:02}" for i in range(10)]
    assert summary.version.startswith("flowscope-relay")


def test_server_status_lists_every_nodes_exporters_then_the_relays_own() -> None:
    def node(name: str) -> observer_pb2.ServerStatusResponse:
        reply = observer_pb2.ServerStatusResponse()
        reply.flowscope_exporters.add(name="static", kind="file", node_name=name, flows_exported=3)
        return reply

    own = observer_pb2.ExporterStatus(name="clickhouse", kind="clickhouse", node_name="relay", rows_stored=6)
    summary = status.summarise([answer("a", node("a")), answer("b", node("b"))], started_ns=0, own_exporters=[own])
    assert [(e.node_name, e.name) for e in summary.flowscope_exporters] == [
        ("a", "static"),
        ("b", "static"),
        ("relay", "clickhouse"),
    ]


def test_nodes_are_connected_unavailable_or_in_error() -> None:
    node = observer_pb2.ServerStatusResponse(num_flows=5, max_flows=10, seen_flows=7, uptime_ns=9, version="v")
    answers = [
        answer("a", node),
        answer("b", code=grpc.StatusCode.UNAVAILABLE),
        answer("c", code=grpc.StatusCode.PERMISSION_DENIED),
    ]
    listed = status.nodes(answers).nodes
    assert [(n.name, n.state) for n in listed] == [
        ("a", relay_pb2.NODE_CONNECTED),
        ("b", relay_pb2.NODE_UNAVAILABLE),
        ("c", relay_pb2.NODE_ERROR),
    ]
    assert (listed[0].num_flows, listed[0].uptime_ns, listed[0].version, listed[0].address) == (5, 9, "v", "a:4244")


def test_namespaces_are_merged_once_each() -> None:
    def spaces(*names: str) -> observer_pb2.GetNamespacesResponse:
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(cluster="lab", namespace=n) for n in names]
        )

    merged = status.namespaces([answer("a", spaces("web", "default")), answer("b", spaces("default", "kube"))])
    assert [n.namespace for n in merged.namespaces] == ["default", "kube", "web"]
