"""Fields about the event: verdict, event type, drop reason, reply, direction, interface, node name, uuid."""

from __future__ import annotations

import pytest
from filter_cases import INSTANCE, NAMES, context, only, select

from flowscope.api.flow import flow_pb2 as pb
from flowscope.observer.filters import FilterContext, FilterError
from flowscope.observer.parser import FlowIds

DROPS = ["denied", "kernel"]


def test_verdict() -> None:
    assert only(verdict=[pb.DROPPED]) == DROPS
    assert only(verdict=[pb.FORWARDED]) == [n for n in NAMES if n not in DROPS]
    assert only(verdict=[pb.AUDIT]) == []


def test_event_type_and_sub_type() -> None:
    assert only(event_type=[pb.EventTypeFilter(type=1)]) == DROPS
    assert only(event_type=[pb.EventTypeFilter(type=5)]) == ["policy"]
    assert only(event_type=[pb.EventTypeFilter(type=4, match_sub_type=True, sub_type=5)]) == ["synack", "dns"]
    assert only(event_type=[pb.EventTypeFilter(type=1, match_sub_type=True, sub_type=133)]) == ["denied"]
    assert only(event_type=[pb.EventTypeFilter(type=0, match_sub_type=True, sub_type=3)]) == ["kernel"]
    assert only(event_type=[pb.EventTypeFilter(type=0)]) == NAMES
    assert only(event_type=[pb.EventTypeFilter(type=4, sub_type=5)]) == [
        n for n in NAMES if n not in ("denied", "kernel", "policy")
    ]
    assert only(event_type=[pb.EventTypeFilter(type=1000), pb.EventTypeFilter(type=-1)]) == []


def test_drop_reason_desc() -> None:
    assert only(drop_reason_desc=[pb.POLICY_DENIED]) == ["denied"]
    assert only(drop_reason_desc=[pb.DROP_REASON_UNKNOWN]) == ["kernel"]  # kernel reasons are not Cilium's
    assert only(drop_reason_desc=[pb.CT_MAP_INSERTION_FAILED]) == []


def test_reply() -> None:
    assert only(reply=[True]) == ["synack", "pong6"]
    # unknown is no match, except for drops, which count as not a reply (as in Hubble)
    assert only(reply=[False]) == ["syn", "dns", "ping", "denied", "kernel", "sctp", "ns6"]
    assert only(reply=[True, False]) == [
        "syn",
        "synack",
        "dns",
        "ping",
        "pong6",
        "denied",
        "kernel",
        "sctp",
        "ns6",
    ]


def test_traffic_direction() -> None:
    assert only(traffic_direction=[pb.INGRESS]) == ["syn", "synack", "ping", "sctp", "ns6"]
    assert only(traffic_direction=[pb.EGRESS]) == ["dns", "pong6", "denied", "policy"]
    unknown = only(traffic_direction=[pb.TRAFFIC_DIRECTION_UNKNOWN])
    assert unknown == ["world", "arp", "kernel", "fragment", "to_dns6"]


@pytest.mark.parametrize(
    ("interfaces", "expected"),
    [
        ([pb.NetworkInterface(name="lxc1001")], ["dns", "denied", "fragment", "to_dns6"]),
        ([pb.NetworkInterface(index=2)], ["arp"]),
        ([pb.NetworkInterface(index=2, name="eth0")], ["arp"]),
        ([pb.NetworkInterface(index=11, name="lxc1002")], []),  # both given: both must match
        (
            [pb.NetworkInterface(name="lxc1001"), pb.NetworkInterface(name="eth0")],
            ["dns", "arp", "denied", "fragment", "to_dns6"],
        ),
        ([pb.NetworkInterface()], [n for n in NAMES if n != "kernel"]),  # any interface, but one is needed
        ([pb.NetworkInterface(name="nope0")], []),
    ],
)
def test_interface(interfaces: list[pb.NetworkInterface], expected: list[str]) -> None:
    assert only(interface=interfaces) == expected


@pytest.mark.parametrize(
    ("patterns", "matches"),
    [
        (["node1"], True),
        (["NODE1"], True),
        (["node*"], True),
        (["lab/node1"], True),
        (["*/node1"], True),
        (["/node1"], True),
        (["lab/"], True),
        (["l*b/*"], True),
        (["node1."], True),
        (["node2"], False),
        (["other/node1"], False),
        (["node2", "lab/node1"], True),
    ],
)
def test_node_name(patterns: list[str], matches: bool) -> None:
    assert only(node_name=patterns) == (NAMES if matches else [])


def test_node_name_with_a_cluster_in_it_and_without_one() -> None:
    snapshot = context().snapshot
    qualified = FilterContext(node_name="lab/node1", snapshot=snapshot)
    assert select([pb.FlowFilter(node_name=["lab/node1"])], ctx=qualified) == NAMES
    default = FilterContext(node_name="node1", snapshot=snapshot)  # cluster from the snapshot: "lab"
    assert select([pb.FlowFilter(node_name=["lab/*"])], ctx=default) == NAMES
    nameless = FilterContext(node_name="", snapshot=snapshot)
    assert select([pb.FlowFilter(node_name=["*"])], ctx=nameless) == []


def test_uuid() -> None:
    ids = FlowIds(INSTANCE)
    assert only(uuid=[ids.uuid(3), ids.uuid(5).upper()]) == [NAMES[3], NAMES[5]]
    assert only(uuid=[FlowIds(b"another agent").uuid(3)]) == []
    assert only(uuid=[ids.uuid(10_000)]) == []


def test_uuid_needs_the_instance() -> None:
    ctx = FilterContext(node_name="node1", snapshot=context().snapshot)
    with pytest.raises(FilterError, match="instance"):
        select([pb.FlowFilter(uuid=[FlowIds(INSTANCE).uuid(1)])], ctx=ctx)
