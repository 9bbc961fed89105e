"""Filters on endpoint names: pod, label selectors, cluster name, identity."""

from __future__ import annotations

import pytest
from filter_cases import NAMES, context, only, select
from records import CLIENT, DNS, LAB, NODE1_V4, NODE2_V4, SERVER, batch_of, lab_registry, record, tcp4

from flowscope.api.flow import flow_pb2 as pb
from flowscope.observer.metadata import Cluster, Endpoint

FROM_CLIENT = ["syn", "dns", "ping", "denied", "kernel", "policy", "sctp", "ns6", "fragment", "to_dns6"]


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        (["default/client-7d9f"], FROM_CLIENT),
        (["default/client"], FROM_CLIENT),
        (["default/"], [n for n in NAMES if n not in ("world", "arp")]),
        (["client"], FROM_CLIENT),  # no namespace: "default"
        (["kube-system/client"], []),
        (["default/server", "default/client"], [n for n in NAMES if n not in ("world", "arp")]),
        (["/client"], []),  # the empty namespace: no pod lives there
    ],
)
def test_source_pod(pods: list[str], expected: list[str]) -> None:
    assert sorted(only(source_pod=pods)) == sorted(expected)


def test_destination_pod_and_world_never_matches() -> None:
    assert only(destination_pod=["kube-system/"]) == ["dns", "kernel", "fragment"]
    assert "world" not in only(source_pod=["default/"])


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("k8s:app=client", FROM_CLIENT),
        ("app=client", FROM_CLIENT),
        ("app in (client, server)", [n for n in NAMES if n not in ("world", "arp")]),
        ("app notin (client)", ["synack", "world", "pong6", "arp"]),
        ("app!=client", ["synack", "world", "pong6", "arp"]),
        ("!app", ["world", "arp"]),
        ("app", [n for n in NAMES if n not in ("world", "arp")]),
        ("reserved:world", ["world", "arp"]),
        ("reserved:host", []),
        ("k8s:io.kubernetes.pod.namespace=default", [n for n in NAMES if n not in ("world", "arp")]),
        ("app=client,k8s:tier=web", []),
        ("app=server,tier=web", ["synack", "pong6"]),
        ("", NAMES),
    ],
)
def test_source_label(selector: str, expected: list[str]) -> None:
    assert sorted(only(source_label=[selector])) == sorted(expected)


def test_label_selectors_of_one_field_are_ored() -> None:
    assert sorted(only(destination_label=["k8s-app=kube-dns", "reserved:world"])) == sorted(
        ["dns", "kernel", "fragment", "to_dns6", "arp"]
    )


def test_nodes_carry_reserved_labels() -> None:
    registry = lab_registry()
    node_ctx = context(registry)
    records = batch_of(record(tcp4(NODE1_V4, NODE2_V4)))
    assert select([pb.FlowFilter(source_label=["reserved:host"])], records=records, ctx=node_ctx) == ["0"]
    assert select([pb.FlowFilter(destination_label=["reserved:remote-node"])], records=records, ctx=node_ctx) == ["0"]


def test_cluster_name() -> None:
    assert only(source_cluster_name=["lab"]) == NAMES  # world too is named for the cluster that saw it
    assert only(destination_cluster_name=["elsewhere"]) == []


def test_identity_resolved_from_the_address_unless_the_datapath_recorded_one() -> None:
    assert only(destination_identity=[DNS.identity]) == ["dns", "kernel", "fragment"]
    assert only(source_identity=[2]) == ["world", "arp"]
    assert sorted(only(source_identity=[CLIENT.identity, SERVER.identity])) == sorted(
        [n for n in NAMES if n not in ("world", "arp")]
    )
    records = record(tcp4(), src_identity=4242)
    assert select([pb.FlowFilter(source_identity=[4242])], records=records) == ["0"]
    assert select([pb.FlowFilter(source_identity=[CLIENT.identity])], records=records) == []


def test_names_resolve_against_the_snapshot_given() -> None:
    late = Endpoint(1003, "node1", "default", "late-1", {"app": "client"}, "lxc1003", ipv4="93.184.216.34")
    registry = lab_registry(cluster=Cluster(LAB.name, LAB.nodes, (*LAB.endpoints, late)))
    assert "world" in select([pb.FlowFilter(source_pod=["default/late"])], ctx=context(registry))
    assert "world" not in select([pb.FlowFilter(source_pod=["default/late"])])
