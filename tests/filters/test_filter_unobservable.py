"""Fields about data flowscope does not have: decided as a Hubble node without that data decides them."""

from __future__ import annotations

import pytest
from filter_cases import NAMES, only, select

from flowscope.api.flow import flow_pb2 as pb


@pytest.mark.parametrize(
    "fields",
    [
        {"source_fqdn": ["*.example.com"]},
        {"destination_fqdn": ["api.example.com."]},
        {"source_workload": [pb.Workload(name="client", kind="Deployment")]},
        {"destination_workload": [pb.Workload(kind="DaemonSet")]},
        {"source_ip_xlated": ["10.0.0.0/8"]},
        {"trace_id": ["4bf92f3577b34da6a3ce929d0e0e4736"]},
        {"ip_trace_id": [12345]},
        {"encrypted": [True]},
        {"node_labels": ["kubernetes.io/hostname=node1"]},
    ],
)
def test_selects_nothing(fields: dict[str, object]) -> None:
    assert only(**fields) == []


def test_selects_everything() -> None:
    assert only(encrypted=[False]) == NAMES  # no flow is ever marked encrypted
    assert only(node_labels=["!role"]) == NAMES  # a node without labels has no `role`
    assert only(node_labels=[""]) == NAMES


def test_can_be_excluded() -> None:
    assert only() == NAMES
    assert select(blacklist=[pb.FlowFilter(source_fqdn=["*"])]) == NAMES
