"""FlowDecoder names services: destination_service / source_service and flowscope's original_destination."""

from __future__ import annotations

from dataclasses import replace

import pytest
from records import (
    ACK,
    CLIENT,
    CLIENT_V4,
    CLIENT_V6,
    IFINDEX,
    KNOWN,
    NODE1_V4,
    REPLY,
    SERVER_V4,
    SERVER_V6,
    SYN,
    ether,
    ipv6,
    record,
    tcp,
    tcp4,
    udp4,
)
from service_records import (
    EMPTY_V4,
    KUBE_DNS_V4,
    SERVICES_LAB,
    WEB,
    WEB_V4,
    WEB_V6,
    frontend_id,
    services_registry,
    translated,
)

from flowscope.api.flow import flow_pb2
from flowscope.common import names
from flowscope.observer.parser import FlowDecoder
from flowscope.observer.policy import RuleOrigin

AT_CLIENT = {"ep_id": CLIENT.id, "ifindex": IFINDEX["lxc1001"], "subtype": names.TRACE_FROM_LXC}
WEB_ID = frontend_id(WEB_V4, 80)
WEB_PB = flow_pb2.Service(name="web", namespace="default")
KUBE_DNS_PB = flow_pb2.Service(name="kube-dns", namespace="kube-system")


@pytest.fixture
def decoder() -> FlowDecoder:
    return FlowDecoder("node1", services_registry(), b"instance-1")


def original(ip: str, port: int) -> flow_pb2.FlowscopeAddress:
    return flow_pb2.FlowscopeAddress(ip=ip, port=port)


def test_where_the_client_sent_it_the_flow_shows_the_clusterip(decoder: FlowDecoder) -> None:
    flow = decoder.decode(translated(tcp4(CLIENT_V4, WEB_V4), WEB_ID, flags=KNOWN, **AT_CLIENT)[0], 1)
    assert (flow.IP.destination, flow.l4.TCP.destination_port) == (WEB_V4, 80)
    assert flow.destination_service == WEB_PB
    assert not flow.HasField("source_service")
    assert flow.flowscope.original_destination == original(WEB_V4, 80)
    assert flow.destination.identity == names.IDENTITY_WORLD  # a ClusterIP is nobody's address


def test_past_the_translation_the_backend_and_the_frontend_it_stands_for(decoder: FlowDecoder) -> None:
    flow = decoder.decode(translated(tcp4(CLIENT_V4, SERVER_V4), WEB_ID, flags=KNOWN)[0], 1)
    assert (flow.IP.destination, flow.destination.pod_name) == (SERVER_V4, "server-5c4b")
    assert flow.destination_service == WEB_PB
    assert flow.flowscope.original_destination == original(WEB_V4, 80)


def test_a_reply_names_the_service_as_its_source(decoder: FlowDecoder) -> None:
    reply = tcp4(WEB_V4, CLIENT_V4, 80, 40000, SYN | ACK)
    flow = decoder.decode(translated(reply, WEB_ID, flags=REPLY, ep_id=CLIENT.id, ifindex=IFINDEX["lxc1001"])[0], 1)
    assert flow.is_reply.value
    assert flow.source_service == WEB_PB
    assert not flow.HasField("destination_service")
    assert flow.flowscope.original_destination == original(WEB_V4, 80)
    backend_reply = tcp4(SERVER_V4, CLIENT_V4, 80, 40000, SYN | ACK)
    flow = decoder.decode(translated(backend_reply, WEB_ID, flags=REPLY)[0], 2)
    assert (flow.source.pod_name, flow.source_service) == ("server-5c4b", WEB_PB)


def test_ipv6_frontend(decoder: FlowDecoder) -> None:
    packet = ether(ipv6(CLIENT_V6, SERVER_V6, 6, tcp(40000, 80)), 0x86DD)
    flow = decoder.decode(translated(packet, frontend_id(WEB_V6, 80), flags=KNOWN)[0], 1)
    assert flow.destination_service == WEB_PB
    assert flow.flowscope.original_destination == original(WEB_V6, 80)


def test_a_service_without_backends_drops_named(decoder: FlowDecoder) -> None:
    drop = translated(
        tcp4(CLIENT_V4, EMPTY_V4),
        frontend_id(EMPTY_V4, 80),
        type=names.EVENT_DROP,
        drop_reason=names.DROP_SERVICE_BACKEND_NOT_FOUND,
        verdict=names.VERDICT_DROPPED,
        **{**AT_CLIENT, "subtype": names.DROP_SERVICE_BACKEND_NOT_FOUND},
    )
    flow = decoder.decode(drop[0], 1)
    assert flow.destination_service == flow_pb2.Service(name="empty", namespace="default")
    assert flow.drop_reason_desc == flow_pb2.SERVICE_BACKEND_NOT_FOUND
    assert flow.flowscope.original_destination == original(EMPTY_V4, 80)


def test_unmarked_flows_to_and_from_a_frontend_are_named_as_hubble_names_them(decoder: FlowDecoder) -> None:
    query = decoder.decode(record(udp4(CLIENT_V4, KUBE_DNS_V4, 40000, 53), flags=KNOWN)[0], 1)
    assert query.destination_service == KUBE_DNS_PB
    assert not query.flowscope.HasField("original_destination")  # nothing was translated
    answer = decoder.decode(record(udp4(KUBE_DNS_V4, CLIENT_V4, 53, 40000), flags=REPLY)[0], 2)
    assert (answer.source_service, answer.HasField("destination_service")) == (KUBE_DNS_PB, False)
    nodeport = decoder.decode(record(tcp4(CLIENT_V4, NODE1_V4, 40000, 30080))[0], 3)
    assert nodeport.destination_service == flow_pb2.Service(name="web-np", namespace="default")


@pytest.mark.parametrize(
    "packet",
    [
        tcp4(CLIENT_V4, WEB_V4, dport=8080),  # not a port of the service
        udp4(CLIENT_V4, WEB_V4, dport=80),  # not its protocol
        tcp4(CLIENT_V4, SERVER_V4),  # a backend reached directly
        tcp4(WEB_V4, CLIENT_V4, 80, 40000),  # from a frontend, but not a reply
    ],
)
def test_other_flows_name_no_service(decoder: FlowDecoder, packet: bytes) -> None:
    flow = decoder.decode(record(packet, flags=KNOWN)[0], 1)
    assert not flow.HasField("source_service") and not flow.HasField("destination_service")
    assert not flow.HasField("flowscope")


def test_a_frontend_id_is_not_a_policy_rule(decoder: FlowDecoder) -> None:
    class EveryRule:
        def name(self, number: int) -> str:
            return f"policy/{number}"

        def origin(self, number: int) -> RuleOrigin | None:
            return None

    decoder.rules = EveryRule()
    flow = decoder.decode(translated(tcp4(CLIENT_V4, SERVER_V4), WEB_ID, flags=KNOWN)[0], 1)
    assert flow.flowscope.policy_rule == ""
    assert flow.destination_service == WEB_PB


def test_an_unknown_frontend_id_names_nothing(decoder: FlowDecoder) -> None:
    unknown = next(n for n in range(1, 65536) if n not in frontend_ids())
    flow = decoder.decode(translated(tcp4(CLIENT_V4, SERVER_V4), unknown, flags=KNOWN)[0], 1)
    assert not flow.HasField("destination_service") and not flow.HasField("flowscope")


def frontend_ids() -> set[int]:
    return set(services_registry().snapshot.services.by_id)


def test_a_removed_service_still_names_the_flows_it_translated() -> None:
    registry = services_registry()
    decoder = FlowDecoder("node1", registry, b"instance-1")
    registry.update(replace(SERVICES_LAB, services=tuple(s for s in SERVICES_LAB.services if s is not WEB)))
    flow = decoder.decode(translated(tcp4(CLIENT_V4, SERVER_V4), WEB_ID, flags=KNOWN)[0], 1)
    assert flow.destination_service == flow_pb2.Service(name="web", namespace="default")
    unmarked = decoder.decode(record(tcp4(CLIENT_V4, WEB_V4), flags=KNOWN)[0], 2)
    assert not unmarked.HasField("destination_service")  # only the frontends in force answer for an address


def test_ids_stay_while_their_frontend_exists() -> None:
    registry = services_registry()
    before = dict(registry.snapshot.services.ids)
    moved = replace(SERVICES_LAB, services=tuple(reversed(SERVICES_LAB.services)))
    registry.update(moved)
    assert registry.snapshot.services.ids == before
    assert registry.snapshot.services.by_id[WEB_ID].name == "web"


def test_no_services_no_table() -> None:
    registry = services_registry()
    assert registry.snapshot.services
    registry.update(replace(SERVICES_LAB, services=()))
    assert not registry.snapshot.services.by_key
