"""The agent events ring and what fills it: Hubble's selectors over it, the events a cluster change and a policy
change make, and how the CLI prints each kind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.printer import PrintOptions
from flowscope.cli.printer.agent_events import EventPrinter
from flowscope.cli.printer.sink import Sink
from flowscope.observer.agent_events import AgentEvents, ClusterEvents
from flowscope.observer.event_ring import EventRing, Stamped
from flowscope.observer.metadata import Cluster, Endpoint, Node, Service, ServicePort
from flowscope.observer.policy.compile import Compiled
from flowscope.observer.policy.manager import Status
from flowscope.observer.policy.parse import parse_policies
from flowscope.observer.server.events import EventSelection, select_events
from flowscope.observer.server.getflows import InvalidRequest
from flowscope.observer.service_ids import service_ids

SECOND = 1_000_000_000


def ring_of(count: int) -> EventRing[flow_pb2.AgentEvent]:
    """Events 1..count, one a second from t=1s; each carries its number as an ipcache identity."""
    ring: EventRing[flow_pb2.AgentEvent] = EventRing(capacity=10)
    for n in range(1, count + 1):
        event = flow_pb2.AgentEvent(ipcache_update=flow_pb2.IPCacheNotification(identity=n))
        ring.add(event, time_ns=n * SECOND)
    return ring


def numbers(events: Iterator[Stamped[flow_pb2.AgentEvent]]) -> list[int]:
    return [event.message.ipcache_update.identity for event in events]


def selection(**fields: object) -> EventSelection:
    return EventSelection.of(observer_pb2.GetAgentEventsRequest(**fields))  # type: ignore[arg-type]


def test_the_ring_keeps_the_newest_events() -> None:
    ring = ring_of(15)
    assert len(ring) == 10 and ring.written == 15
    assert numbers(iter(ring.since(0))) == list(range(6, 16))
    assert numbers(iter(ring.since(13))) == [14, 15]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"number": 3}, [3, 4, 5]),  # --last 3
        ({"number": 2, "first": True}, [1, 2]),  # --first 2
        ({}, [1, 2, 3, 4, 5]),  # everything stored
        ({"number": 3, "since": {"seconds": 4}}, [4, 5]),
        ({"until": {"seconds": 2}}, [1, 2]),
    ],
)
def test_selectors_read_the_ring_as_hubble_does(fields: dict[str, object], expected: list[int]) -> None:
    assert numbers(select_events(ring_of(5), selection(**fields), lambda: True)) == expected


def test_follow_without_a_number_starts_at_the_newest_and_sees_what_comes() -> None:
    ring = ring_of(3)
    stop = threading.Event()
    events = select_events(ring, selection(follow=True), lambda: not stop.is_set())
    threading.Timer(0.05, lambda: ring.add(flow_pb2.AgentEvent(ipcache_update={"identity": 99}))).start()
    assert next(events).message.ipcache_update.identity == 99
    stop.set()


def test_bad_selectors_are_refused_with_the_reason() -> None:
    with pytest.raises(InvalidRequest, match="first cannot be combined with follow"):
        selection(first=True, follow=True)
    with pytest.raises(InvalidRequest, match="since is after until"):
        selection(since={"seconds": 5}, until={"seconds": 1})


def endpoint(id_: int, node: str, ip: str, app: str = "web") -> Endpoint:
    return Endpoint(id_, node, "default", f"pod-{id_}", {"app": app}, f"lxc{id_}", ipv4=ip)


def kinds(events: AgentEvents) -> list[str]:
    return [flow_pb2.AgentEventType.Name(event.message.type) for event in events.ring.since(0)]


def test_cluster_changes_become_endpoint_and_ipcache_events() -> None:
    events = AgentEvents()
    follow = ClusterEvents(events, "node1")
    nodes = (Node("node1", ipv4="192.168.50.1"), Node("node2", ipv4="192.168.50.2"))
    mine, theirs = endpoint(7, "node1", "10.200.1.7"), endpoint(8, "node2", "10.200.2.8")
    follow.update(Cluster(nodes=nodes, endpoints=(mine, theirs)))
    assert kinds(events) == ["ENDPOINT_CREATED"] + ["IPCACHE_UPSERTED"] * 4  # only this node's endpoints
    created = events.ring.since(0)[0].message.endpoint_update
    assert (created.id, created.namespace, created.pod_name, list(created.labels)) == (
        7,
        "default",
        "pod-7",
        ["k8s:app=web"],
    )
    pod = [e.message.ipcache_update for e in events.ring.since(0)][-1]
    assert (pod.cidr, pod.host_ip, pod.pod_name) == ("10.200.2.8/32", "192.168.50.2", "pod-8")

    written = events.ring.written
    relabelled = replace(theirs, labels={"app": "db"})
    follow.update(Cluster(nodes=nodes, endpoints=(relabelled,)))
    changes = [event.message for event in events.ring.since(written)]
    assert [flow_pb2.AgentEventType.Name(m.type) for m in changes] == [
        "ENDPOINT_DELETED",
        "IPCACHE_DELETED",
        "IPCACHE_UPSERTED",
    ]
    assert changes[1].ipcache_update.cidr == "10.200.1.7/32"
    assert changes[2].ipcache_update.old_identity.value == theirs.identity
    assert changes[2].ipcache_update.identity == relabelled.identity


def test_service_changes_become_service_events_per_frontend() -> None:
    events = AgentEvents()
    follow = ClusterEvents(events, "node1")
    web = endpoint(7, "node1", "10.200.1.7")
    http = ServicePort(name="http", port=80, target_port=8080)
    service = Service(
        name="svc", namespace="default", cluster_ips=("10.96.0.10",), ports=(http,), selector={"app": "web"}
    )
    follow.update(Cluster(endpoints=(web,), services=(service,)))
    written = events.ring.written
    upserted = events.ring.since(0)[-1].message
    ids = service_ids(Cluster(endpoints=(web,), services=(service,)))
    assert upserted.type == flow_pb2.SERVICE_UPSERTED
    assert upserted.service_upsert == flow_pb2.ServiceUpsertNotification(
        id=ids[("10.96.0.10", 80, 6)],
        frontend_address={"ip": "10.96.0.10", "port": 80},
        backend_addresses=[{"ip": "10.200.1.7", "port": 8080}],
        type="ClusterIP",
        name="svc",
        namespace="default",
        ext_traffic_policy="Cluster",
        int_traffic_policy="Cluster",
    )

    follow.update(Cluster(endpoints=(web,), services=(service,)))  # nothing changed: nothing said
    assert events.ring.written == written

    second = endpoint(8, "node2", "10.200.2.8")
    follow.update(Cluster(endpoints=(web, second), services=(service,)))  # a backend more
    changed = events.ring.since(written)[-1].message.service_upsert
    assert (changed.id, [b.ip for b in changed.backend_addresses]) == (
        upserted.service_upsert.id,
        ["10.200.1.7", "10.200.2.8"],
    )

    written = events.ring.written
    follow.update(Cluster(endpoints=(web, second)))
    deleted = [event.message for event in events.ring.since(written)]
    assert [(m.type, m.service_delete.id) for m in deleted] == [(flow_pb2.SERVICE_DELETED, upserted.service_upsert.id)]


def status(revision: int, text: str) -> Status:
    return Status(revision, "", text, tuple(parse_policies(text, "test")), Compiled())


def test_a_policy_change_reports_what_was_updated_and_what_was_deleted() -> None:
    events = AgentEvents()
    both = "policies:\n  - {name: a, endpointSelector: {}}\n  - {name: b, namespace: web, endpointSelector: {}}\n"
    events.policy_changed(status(0, ""), status(1, both))
    events.policy_changed(status(1, both), status(2, "policies:\n  - {name: b, namespace: web, endpointSelector: {}}"))
    updated, deleted, kept = (event.message for event in events.ring.since(0))
    assert updated.type == flow_pb2.POLICY_UPDATED and updated.policy_update.rule_count == 2
    assert "k8s:io.cilium.k8s.policy.name=a" in updated.policy_update.labels
    assert deleted.type == flow_pb2.POLICY_DELETED
    assert list(deleted.policy_update.labels) == [
        "k8s:io.cilium.k8s.policy.derived-from=CiliumClusterwideNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=a",
    ]
    assert (deleted.policy_update.revision, kept.policy_update.revision, kept.policy_update.rule_count) == (2, 2, 1)


class Lines:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def printed(output: str, *responses: observer_pb2.GetAgentEventsResponse | observer_pb2.GetDebugEventsResponse) -> str:
    lines = Lines()
    printer = EventPrinter(output, Sink(lines), PrintOptions(node_name=True))  # type: ignore[arg-type]
    for response in responses:
        printer.write(response)
    printer.close()
    return lines.text


def agent_response(**event: object) -> observer_pb2.GetAgentEventsResponse:
    response = observer_pb2.GetAgentEventsResponse(agent_event=flow_pb2.AgentEvent(**event), node_name="k8s1")  # type: ignore[arg-type]
    response.time.FromNanoseconds(1234 * SECOND + 567_800_000)
    return response


def test_compact_prints_each_notification_as_hubble_does() -> None:
    policy = {"labels": ["k8s:a=b", "k8s:c=d"], "revision": 3, "rule_count": 1}
    ipcache = {"cidr": "10.0.0.1/32", "identity": 42, "old_identity": {"value": 7}, "host_ip": "192.168.1.1"}
    text = printed(
        "compact",
        agent_response(type=flow_pb2.AGENT_STARTED, agent_start={"time": {"seconds": 1234, "nanos": 567_800_000}}),
        agent_response(type=flow_pb2.POLICY_UPDATED, policy_update=policy),
        agent_response(type=flow_pb2.ENDPOINT_CREATED, endpoint_update={"id": 9, "namespace": "ns", "pod_name": "p"}),
        agent_response(type=flow_pb2.IPCACHE_UPSERTED, ipcache_update=ipcache),
    )
    assert text.splitlines() == [
        "Jan  1 00:20:34.567 [k8s1]: AGENT_STARTED (start time: Jan  1 00:20:34.567)",
        "Jan  1 00:20:34.567 [k8s1]: POLICY_UPDATED (labels: [k8s:a=b,k8s:c=d], revision: 3, count: 1)",
        "Jan  1 00:20:34.567 [k8s1]: ENDPOINT_CREATED (id: 9, namespace: ns, pod name: p)",
        "Jan  1 00:20:34.567 [k8s1]: IPCACHE_UPSERTED (cidr: 10.0.0.1/32, identity: 42, old identity: 7, "
        "host ip: 192.168.1.1, encrypt key: 0)",
    ]


def test_a_debug_event_prints_as_hubble_does() -> None:
    debug = flow_pb2.DebugEvent(
        type=flow_pb2.DBG_CT_VERDICT,
        source=flow_pb2.Endpoint(ID=690, namespace="cilium-test", pod_name="pod-a"),
        hash={"value": 180354257},
        cpu={"value": 1},
        message="CT verdict: New, revnat=0",
    )
    response = observer_pb2.GetDebugEventsResponse(debug_event=debug, node_name="k8s1")
    response.time.FromNanoseconds(1234 * SECOND + 567_800_000)
    assert printed("compact", response) == (
        "Jan  1 00:20:34.567 [k8s1]: cilium-test/pod-a (ID: 690) DBG_CT_VERDICT MARK: 0xabffcd1 CPU: 01 "
        "(CT verdict: New, revnat=0)\n"
    )
    assert '"debug_event":{"type":"DBG_CT_VERDICT"' in printed("jsonpb", response)
