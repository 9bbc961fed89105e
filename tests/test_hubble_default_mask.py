"""The field mask the hubble CLI sends by default is accepted by an agent and by a relay in front of it.

The hubble CLI (v1.19) sends this mask for its compact, dict and table output unless told otherwise
(docs/reference/hubble-api.md, "Wire rules"); it names upstream fields flowscope never fills (ip_trace_id), so
a server that rejected them would break hubble's most common command. A real agent's gRPC server over a ring
of synthetic records answers here, and a real relay server dials it as it dials any node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from records import record, tcp4
from served_records import agent_serving, relay_in_front

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.cli.observe.request import HUBBLE_FIELD_MASK

FLOWS = 5


@pytest.fixture
def agent_socket() -> Iterator[Path]:
    """A node agent's gRPC server on a unix socket, its ring holding FLOWS TCP flows from the lab's client."""
    with agent_serving(np.concatenate([record(tcp4(sport=40000 + i)) for i in range(FLOWS)])) as socket:
        yield socket


@pytest.fixture
def relay_target(agent_socket: Path) -> Iterator[str]:
    """A relay on a free localhost port whose one node is that agent."""
    with relay_in_front(agent_socket) as target:
        yield target


def get_flows(target: str, paths: list[str]) -> list[observer_pb2.GetFlowsResponse]:
    with grpc.insecure_channel(target) as channel:
        request = observer_pb2.GetFlowsRequest(number=FLOWS, field_mask=FieldMask(paths=paths))
        return list(observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=10))


def assert_masked_flows(responses: list[observer_pb2.GetFlowsResponse]) -> None:
    flows = [r.flow for r in responses if r.HasField("flow")]
    assert [f.l4.TCP.source_port for f in flows] == [40000 + i for i in range(FLOWS)]
    for flow in flows:
        assert flow.node_name == "node1" and flow.HasField("time") and flow.IP.source
        assert flow.source.pod_name == "client-7d9f" and flow.source.namespace == "default"
        assert not flow.source.labels and not flow.HasField("interface")  # what the mask leaves out is cleared


def test_an_agent_answers_the_hubble_default_mask(agent_socket: Path) -> None:
    assert_masked_flows(get_flows(f"unix://{agent_socket}", list(HUBBLE_FIELD_MASK)))


def test_a_relay_answers_the_hubble_default_mask(relay_target: str) -> None:
    assert_masked_flows(get_flows(relay_target, list(HUBBLE_FIELD_MASK)))


@pytest.mark.parametrize("where", ["agent", "relay"])
def test_a_mask_naming_no_field_is_invalid_and_says_which(where: str, request: pytest.FixtureRequest) -> None:
    target = f"unix://{request.getfixturevalue('agent_socket')}"
    if where == "relay":
        target = request.getfixturevalue("relay_target")
    with pytest.raises(grpc.RpcError) as raised:
        get_flows(target, [*HUBBLE_FIELD_MASK, "source.no_such_field"])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no field 'no_such_field'" in (raised.value.details() or "")
