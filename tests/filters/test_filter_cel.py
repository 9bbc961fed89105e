"""experimental.cel_expression: CEL over the decoded flow as `_flow`, checked against flow.Flow as Hubble checks it."""

from __future__ import annotations

import dataclasses

import pytest
from filter_cases import NAMES, context, select
from records import lab_registry

from flowscope.api.flow import flow_pb2 as pb
from flowscope.observer.filters import FilterContext, FilterError
from flowscope.observer.parser import FlowDecoder

CTX = dataclasses.replace(context(), decoder=FlowDecoder("node1", lab_registry(), b"filter-tests"))


def cel(*expressions: str, **fields: object) -> pb.FlowFilter:
    return pb.FlowFilter(experimental=pb.FlowFilter.Experimental(cel_expression=expressions), **fields)  # type: ignore[arg-type]


def test_an_expression_selects_the_flows_it_is_true_of() -> None:
    assert select([cel("_flow.verdict == Verdict.DROPPED")], ctx=CTX) == ["denied", "kernel"]
    assert select([cel("_flow.verdict == 2 && _flow.l4.UDP.destination_port == 9999u")], ctx=CTX) == ["kernel"]
    assert select([cel("_flow.l4.TCP.destination_port == 8080u")], ctx=CTX) == ["policy"]
    assert select([cel("_flow.IP.source.startsWith('93.')")], ctx=CTX) == ["world"]


def test_expressions_of_one_filter_are_ored_and_anded_with_its_other_fields() -> None:
    either = cel("_flow.l4.TCP.destination_port == 8080u", "_flow.IP.source.startsWith('93.')")
    assert select([either], ctx=CTX) == ["world", "policy"]
    assert select([cel("_flow.verdict == Verdict.DROPPED", protocol=["udp"])], ctx=CTX) == ["kernel"]


def test_an_expression_can_exclude() -> None:
    assert select(blacklist=[cel("_flow.IP.ipVersion != IPVersion.IPv4")], ctx=CTX) == [
        name for name in NAMES if name not in ("pong6", "ns6", "to_dns6", "arp")
    ]


def test_an_expression_that_fails_on_a_flow_does_not_select_it() -> None:
    assert select([cel("_flow.source.labels[5] == 'x'")], ctx=CTX) == []


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("_flow.verdict ==", "invalid cel expression '_flow.verdict ==': 1:17: Syntax error"),
        ("_flow.no_such_field == 1", "undefined field 'no_such_field'"),
        ("_flow.verdict", "its result is int, not a boolean"),
        ("_flow.l4.TCP.destination_port == 9000", "unsigned numbers: 9000u"),
        ("true || " * 600 + "true", "longer than 4096 characters"),
    ],
)
def test_a_bad_expression_is_refused_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(FilterError, match="invalid cel expression") as raised:
        select([cel(expression)], ctx=CTX)
    assert reason in str(raised.value) and "\n" not in str(raised.value)
    assert len(str(raised.value)) < 400


def test_an_expression_needs_the_decoder() -> None:
    bare: FilterContext = context()
    with pytest.raises(FilterError, match="decoder"):
        select([cel("true")], ctx=bare)
