"""Filters select exactly the flows whose decoded form matches: checked against the decoder, field by field.

Each filter is also written the way Hubble evaluates it, over a decoded flow.Flow; both must agree on every
record of a varied batch, and so must the same filter applied to the decoded flows (observer/filters/messages.py,
for flows read from a file). The batch includes sides named by the datapath's identity alone (a pod's fe80::
address, an ARP frame), so the endpoint filters are checked on those as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import numpy as np
import pytest
from filter_cases import INSTANCE, RECORDS, context
from records import CLIENT, DNS, IFINDEX, SERVER, arp, batch_of, ether, icmp6, ipv6, lab_registry, record

from flowscope.api.flow import flow_pb2 as pb
from flowscope.common import names
from flowscope.common.names import IDENTITY_HOST
from flowscope.observer.filters import Batch, compile_filters
from flowscope.observer.filters.label_selector import parse_selector
from flowscope.observer.filters.messages import compile_flow_filters
from flowscope.observer.parser import FlowDecoder

FROM_CLIENT = {"subtype": names.TRACE_FROM_LXC, "ep_id": CLIENT.id, "ifindex": IFINDEX["lxc1001"]}
# Sides whose address nobody owns, named by the datapath's identity: the client's router solicitation and ARP,
# a neighbour advertisement to the server's fe80::, one from an identity nobody knows.
BY_IDENTITY = [
    record(ether(ipv6("fe80::11", "ff02::2", 58, icmp6(133)), 0x86DD), src_identity=CLIENT.identity, **FROM_CLIENT),
    record(arp(), src_identity=CLIENT.identity, **FROM_CLIENT),
    record(
        ether(ipv6("fe80::1", "fe80::12", 58, icmp6(136)), 0x86DD),
        src_identity=IDENTITY_HOST,
        dst_identity=SERVER.identity,
    ),
    record(ether(ipv6("fe80::99", "fe80::12", 58, icmp6(135)), 0x86DD), src_identity=12345),
]
RECORDS = batch_of(RECORDS, BY_IDENTITY)
FLOWS = [FlowDecoder("node1", lab_registry(), INSTANCE).decode(r, i) for i, r in enumerate(RECORDS)]


def in_net(text: str, net: str) -> bool:
    return bool(text) and ipaddress.ip_address(text) in ipaddress.ip_network(net)


def l4_name(flow: pb.Flow) -> str:
    return flow.l4.WhichOneof("protocol") or ""


def ports(flow: pb.Flow) -> tuple[int, int] | None:
    kind = l4_name(flow)
    if kind not in ("TCP", "UDP", "SCTP"):
        return None
    l4 = getattr(flow.l4, kind)
    return l4.source_port, l4.destination_port


CASES: list[tuple[dict[str, object], Callable[[pb.Flow], bool]]] = [
    ({"source_ip": ["10.200.1.0/24"]}, lambda f: in_net(f.IP.source, "10.200.1.0/24")),
    ({"destination_ip": ["fd00:200::/32"]}, lambda f: in_net(f.IP.destination, "fd00:200::/32")),
    ({"ip_version": [pb.IP_NOT_USED]}, lambda f: f.IP.ipVersion == pb.IP_NOT_USED),
    ({"protocol": ["icmp"]}, lambda f: l4_name(f) in ("ICMPv4", "ICMPv6")),
    ({"protocol": ["tcp", "sctp"]}, lambda f: l4_name(f) in ("TCP", "SCTP")),
    ({"destination_port": ["80", "53"]}, lambda f: (ports(f) or (0, 0))[1] in (80, 53)),
    ({"source_port": ["40000"]}, lambda f: (ports(f) or (0, 0))[0] == 40000),
    ({"tcp_flags": [pb.TCPFlags(SYN=True)]}, lambda f: f.l4.TCP.flags.SYN),
    ({"tcp_flags": [pb.TCPFlags(ACK=True, NS=True)]}, lambda f: f.l4.TCP.flags.ACK and f.l4.TCP.flags.NS),
    ({"verdict": [pb.DROPPED]}, lambda f: f.verdict == pb.DROPPED),
    ({"drop_reason_desc": [pb.DROP_REASON_UNKNOWN, pb.POLICY_DENIED]}, lambda f: f.verdict == pb.DROPPED),
    (
        {"event_type": [pb.EventTypeFilter(type=4, match_sub_type=True, sub_type=0)]},
        lambda f: f.event_type.type == 4 and f.event_type.sub_type == 0,
    ),
    (
        {"reply": [False]},
        lambda f: (
            (f.HasField("is_reply") and not f.is_reply.value)
            or (not f.HasField("is_reply") and f.verdict == pb.DROPPED)
        ),
    ),
    ({"reply": [True]}, lambda f: f.is_reply.value),
    ({"traffic_direction": [pb.INGRESS]}, lambda f: f.traffic_direction == pb.INGRESS),
    ({"traffic_direction": [pb.EGRESS]}, lambda f: f.traffic_direction == pb.EGRESS),
    (
        {"traffic_direction": [pb.TRAFFIC_DIRECTION_UNKNOWN]},
        lambda f: f.traffic_direction == pb.TRAFFIC_DIRECTION_UNKNOWN,
    ),
    ({"interface": [pb.NetworkInterface(name="lxc1001")]}, lambda f: f.interface.name == "lxc1001"),
    (
        {"source_pod": ["default/cl"]},
        lambda f: f.source.namespace == "default" and f.source.pod_name.startswith("cl"),
    ),
    ({"destination_pod": ["kube-system/"]}, lambda f: f.destination.namespace == "kube-system"),
    ({"destination_pod": ["default/"]}, lambda f: f.destination.namespace == "default"),
    (
        {"source_label": ["app=client"]},
        lambda f: parse_selector("app=client").matches(f.source.labels),
    ),
    (
        {"destination_label": ["k8s:io.kubernetes.pod.namespace=default,tier=web"]},
        lambda f: parse_selector("k8s:io.kubernetes.pod.namespace=default,tier=web").matches(f.destination.labels),
    ),
    ({"source_label": ["reserved:host"]}, lambda f: "reserved:host" in f.source.labels),
    (
        {"source_label": ["reserved:world"]},
        lambda f: parse_selector("reserved:world").matches(f.source.labels),
    ),
    (
        {"destination_label": ["app notin (server)"]},
        lambda f: parse_selector("app notin (server)").matches(f.destination.labels),
    ),
    ({"source_identity": [CLIENT.identity, 2]}, lambda f: f.source.identity in (CLIENT.identity, 2)),
    ({"source_identity": [12345]}, lambda f: f.source.identity == 12345),
    (
        {"destination_identity": [SERVER.identity, DNS.identity]},
        lambda f: f.destination.identity in (SERVER.identity, DNS.identity),
    ),
    ({"source_cluster_name": ["lab"]}, lambda f: f.source.cluster_name == "lab"),
    ({"uuid": [FLOWS[4].uuid, FLOWS[9].uuid]}, lambda f: f.uuid in (FLOWS[4].uuid, FLOWS[9].uuid)),
]


@pytest.mark.parametrize(("fields", "reference"), CASES, ids=[next(iter(c[0])) for c in CASES])
def test_filter_agrees_with_the_decoded_flow(fields: dict[str, object], reference: Callable[[pb.Flow], bool]) -> None:
    predicate = compile_filters([pb.FlowFilter(**fields)], [], context())  # type: ignore[arg-type]
    mask = predicate(Batch(RECORDS, np.arange(len(RECORDS), dtype=np.uint64)))
    expected = [bool(reference(flow)) for flow in FLOWS]
    assert mask.tolist() == expected
    assert any(expected), "each case should select something, or it proves little"


ENDPOINT_CASES = [case for case in CASES if next(iter(case[0])).startswith(("source_", "destination_"))]


@pytest.mark.parametrize(("fields", "reference"), ENDPOINT_CASES, ids=[next(iter(c[0])) for c in ENDPOINT_CASES])
def test_a_filter_on_records_selects_what_it_selects_on_the_decoded_flows(
    fields: dict[str, object], reference: Callable[[pb.Flow], bool]
) -> None:
    """The record path (the agent) and the message path (a file read back) name endpoints alike."""
    flow_filter = pb.FlowFilter(**fields)  # type: ignore[arg-type]
    mask = compile_filters([flow_filter], [], context())(Batch(RECORDS, np.arange(len(RECORDS), dtype=np.uint64)))
    on_messages = compile_flow_filters([flow_filter], [])
    assert mask.tolist() == [on_messages(flow) for flow in FLOWS]


def test_the_identity_named_sides_are_selected_by_their_pods_labels() -> None:
    """The case this batch was extended for: each of its identity-named records is selected by the labels, the
    namespace and the identity of the pod behind it, and not by world's."""
    rows = np.arange(len(RECORDS) - len(BY_IDENTITY), len(RECORDS), dtype=np.uint64)
    batch = Batch(RECORDS[rows.astype(np.int64)], rows)

    def selected(**fields: object) -> list[bool]:
        return compile_filters([pb.FlowFilter(**fields)], [], context())(batch).tolist()  # type: ignore[arg-type]

    assert selected(source_label=["app=client"]) == [True, True, False, False]
    assert selected(source_pod=["default/"]) == [True, True, False, False]
    assert selected(source_label=["reserved:world"]) == [False, False, False, True]
    assert selected(destination_label=["app=server"]) == [False, False, True, False]
    assert selected(destination_pod=["default/server"]) == [False, False, False, False]  # no pod name to match
