"""A real agent's gRPC server answers CEL and regular-expression filters: the flows asked for, at once, or why not.

CEL expressions are evaluated on the flows the other filters kept (observer/filters/cel_expression.py); every
pattern a client sends is RE2 (observer/filters/regex.py), so a pattern that would make a backtracking engine
run for ever (`(a+)+$` against a long string) is answered at once. Each call carries a generous gRPC deadline:
a hang fails the call (DEADLINE_EXCEEDED) instead of the test run.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from records import DNS_V4, record, tcp4, udp4
from served_records import agent_serving

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.common import names

DEADLINE_S = 20
DROPPED = {"type": names.EVENT_DROP, "verdict": names.VERDICT_DROPPED, "subtype": 133, "drop_reason": 133}
# source port -> what the flow is; tests name flows by source port
FLOWS = {
    40000: record(tcp4(sport=40000, dport=9000)),
    40001: record(tcp4(sport=40001, dport=9000), **DROPPED),
    40002: record(tcp4(sport=40002, dport=80), **DROPPED),
    40003: record(udp4(sport=40003, dport=53)),
}
BOMB = "(a+)+$"  # exponential for a backtracking engine on "aaaa...!"


@pytest.fixture
def agent() -> Iterator[observer_pb2_grpc.ObserverStub]:
    """A node agent's gRPC server on a unix socket, its ring holding FLOWS; a client of it."""
    with (
        agent_serving(np.concatenate(list(FLOWS.values()))) as socket,
        grpc.insecure_channel(f"unix://{socket}") as channel,
    ):
        yield observer_pb2_grpc.ObserverStub(channel)


def source_ports(stub: observer_pb2_grpc.ObserverStub, *whitelist: flow_pb2.FlowFilter) -> list[int]:
    request = observer_pb2.GetFlowsRequest(number=len(FLOWS), whitelist=whitelist)
    responses = stub.GetFlows(request, timeout=DEADLINE_S)
    return [r.flow.l4.TCP.source_port or r.flow.l4.UDP.source_port for r in responses if r.HasField("flow")]


def cel(*expressions: str) -> flow_pb2.FlowFilter:
    return flow_pb2.FlowFilter(experimental=flow_pb2.FlowFilter.Experimental(cel_expression=expressions))


def refusal(stub: observer_pb2_grpc.ObserverStub, flow_filter: flow_pb2.FlowFilter) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        source_ports(stub, flow_filter)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return raised.value.details() or ""


def test_cel_expressions_select_exactly_the_flows_they_are_true_of(agent: observer_pb2_grpc.ObserverStub) -> None:
    assert source_ports(agent, cel("_flow.verdict == 2 && _flow.l4.TCP.destination_port == 9000u")) == [40001]
    assert source_ports(agent, cel("_flow.verdict == Verdict.FORWARDED")) == [40000, 40003]
    assert source_ports(agent, cel(f"_flow.IP.destination == '{DNS_V4}'", "_flow.l4.TCP.destination_port == 80u")) == [
        40002,
        40003,
    ]
    narrowed = cel("_flow.l4.TCP.destination_port == 9000u")
    narrowed.verdict.append(flow_pb2.FORWARDED)
    assert source_ports(agent, narrowed) == [40000]


def test_a_cel_syntax_error_is_invalid_argument_naming_it(agent: observer_pb2_grpc.ObserverStub) -> None:
    details = refusal(agent, cel("_flow.verdict =="))
    assert details.startswith("invalid cel expression '_flow.verdict ==': 1:17: Syntax error")
    assert "undefined field 'sauce'" in refusal(agent, cel("_flow.sauce.pod_name == 'x'"))


def test_a_regex_bomb_is_answered_at_once(agent: observer_pb2_grpc.ObserverStub) -> None:
    victim = "a" * 2000 + "!"
    assert source_ports(agent, cel(f"('{victim}' + _flow.node_name).matches('{BOMB}')")) == []
    assert source_ports(agent, cel(f"_flow.source.pod_name.matches('^client-') && '{victim}'.matches('{BOMB}')")) == []
    assert source_ports(agent, cel("_flow.source.pod_name.matches('^client-')")) == list(FLOWS)
    for field in ("dns_query", "http_path", "http_url"):
        assert source_ports(agent, flow_pb2.FlowFilter(**{field: [BOMB]})) == []  # flowscope sees no L7


@pytest.mark.parametrize("field", ["dns_query", "http_path", "http_url"])
def test_an_invalid_regex_is_invalid_argument_naming_it(agent: observer_pb2_grpc.ObserverStub, field: str) -> None:
    details = refusal(agent, flow_pb2.FlowFilter(**{field: ["(?<=behind)x"]}))
    assert details == f"invalid {field.replace('_', ' ')} filter '(?<=behind)x': invalid perl operator: (?<="
