"""Hostile GetFlows requests, against a real agent server and through a real relay (issue 10).

Every FlowFilter field and GetFlows argument is fed what a careless or hostile client may send: empty and huge
strings, regex bombs, nonsense label selectors, out-of-range enums and numbers, timestamps far outside any
clock, field masks naming nothing, thousands of filters, and bytes that are not a GetFlowsRequest at all. Each
answer must be flows or a refusal in a few words (common/statuses.py cuts what a reason quotes: a status
larger than the client's metadata limit reaches it as "metadata size exceeds", not as the reason); never a
crash, a hang (every call has a deadline) or a server that stops answering.

FlowFilter's fields are read from its descriptor, so a field added to the schema is fed hostile values too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from reliability_nodes import Node
from waiting import wait_for

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc

DEADLINE_S = 20.0  # per call: far above what any answer takes, so only a hang reaches it
DETAIL_LIMIT = 300  # characters of a refusal's details (common/statuses.py keeps them near 180)
MAX_REQUEST = 3 << 20  # below gRPC's 4 MiB receive limit, past which gRPC itself refuses (its own test below)
GET_FLOWS = "/observer.Observer/GetFlows"
FLOWS_WRITTEN = 256

SETTINGS = settings(
    max_examples=60,
    deadline=None,  # gRPC round trips on a loaded 2-core machine; the per-call deadline bounds each one
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- hostile values -------------------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "*",
    "**/**",
    "\x00",
    "\u202e",  # right-to-left override
    "\ufffd",
    "😀",
    "(a+)+$",  # a backtracking bomb for `re`; RE2 matches it in linear time
    "(a|aa)*b",
    "(?P<x>a)(?P=x)",  # a backreference: RE2 refuses it
    "(?=a)",  # lookahead: refused too
    "[",
    "\\",
    "a{1000}{1000}",  # a repetition past RE2's limit
    ".*" * 500,
    "!app",
    "app in (",
    "app notin ()",
    "k8s:app=",
    "reserved:",
    "a=b,,c=d",
    "x > y",
    "cluster/ns/pod/extra",
    "/",
    "0/0",
    "::/0",
    "256.256.256.256",
    "10.0.0.1/33",
    "-1",
    "65536",
    "99999999999999999999999",
    "0x1f",
    "%s%n%x",
    "${jndi:ldap://x}",
    "flow.source.pod_name.matches('(a+)+$')",
    "size(flow.source.labels) > 0",
    "true",
    "1 / 0 == 1",
    "(" * 200 + "true" + ")" * 200,
    "'a'" + " + 'a'" * 600,
]
HUGE = st.builds(
    lambda unit, n: unit * n, st.sampled_from(["a", "(", "*", "=", "é", "𝕏", "a,"]), st.integers(1, 60_000)
)
STRINGS = st.one_of(st.sampled_from(NASTY), st.text(max_size=40), HUGE)

INT32 = (-(2**31), 2**31 - 1)
RANGES: dict[int, tuple[int, int]] = {
    descriptor.FieldDescriptor.CPPTYPE_INT32: INT32,
    descriptor.FieldDescriptor.CPPTYPE_ENUM: INT32,  # proto3 enums are open: any int32 reaches the server
    descriptor.FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    descriptor.FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    descriptor.FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Any integer of the range, the edges and their neighbours most often."""
    edges = sorted(e for e in {low, low + 1, -1, 0, 1, high - 1, high} if low <= e <= high)
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def values(field: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    """Hostile values of one field's type (a message: one with hostile fields)."""
    kind = field.cpp_type
    if kind == descriptor.FieldDescriptor.CPPTYPE_STRING:
        return STRINGS
    if kind == descriptor.FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if kind == descriptor.FieldDescriptor.CPPTYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    if kind in RANGES:
        return integers(*RANGES[kind])
    raise AssertionError(f"FlowFilter field {field.full_name} has a type this test does not feed: {kind}")


def messages(message: descriptor.Descriptor, depth: int = 0, most: int = 4) -> st.SearchStrategy[Message]:
    """Instances of `message` with up to `most` of its fields set to hostile values."""
    fields = list(message.fields)
    if depth > 2:
        return st.just(_class(message)())

    def field_values(field: descriptor.FieldDescriptor) -> st.SearchStrategy[tuple[descriptor.FieldDescriptor, Any]]:
        one = values(field, depth)
        many = st.lists(one, min_size=1, max_size=3) if _repeated(field) else one
        return st.tuples(st.just(field), many)

    chosen = st.lists(st.sampled_from(fields), max_size=most, unique_by=lambda f: f.number)
    return chosen.flatmap(lambda picked: st.tuples(*map(field_values, picked))).map(
        lambda assignments: _build(message, assignments)
    )


def _repeated(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _class(message: descriptor.Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(message)


def _build(message: descriptor.Descriptor, assignments: tuple[tuple[descriptor.FieldDescriptor, Any], ...]) -> Message:
    built = _class(message)()
    for field, value in assignments:
        target = getattr(built, field.name)
        is_message = field.cpp_type == descriptor.FieldDescriptor.CPPTYPE_MESSAGE
        if _repeated(field) and is_message:
            for item in value:
                target.add().CopyFrom(item)
        elif _repeated(field):
            target.extend(value)
        elif is_message:
            target.CopyFrom(value)
        else:
            setattr(built, field.name, value)
    return built


FILTERS = st.lists(messages(flow_pb2.FlowFilter.DESCRIPTOR), max_size=3)
TIMESTAMPS = st.builds(
    timestamp_pb2.Timestamp, seconds=integers(-(2**63), 2**63 - 1), nanos=integers(*INT32)
) | st.builds(timestamp_pb2.Timestamp, seconds=st.integers(0, 2**34), nanos=st.integers(0, 999_999_999))
MASKS = st.builds(
    field_mask_pb2.FieldMask,
    paths=st.lists(
        st.one_of(
            STRINGS,
            st.sampled_from(["time", "source.labels", "l4", "l4.TCP.source_port", "verdict"]),
            st.text(alphabet="abcxyz_.", max_size=30),
            st.builds(lambda tail: "source." + tail, st.text(max_size=20)),
        ),
        max_size=5,
    ),
)


@st.composite
def requests(draw: st.DrawFn) -> observer_pb2.GetFlowsRequest:
    """A GetFlowsRequest with hostile filters and arguments; `follow` stays off, so that flows end the call."""
    request = observer_pb2.GetFlowsRequest(
        number=draw(integers(*RANGES[descriptor.FieldDescriptor.CPPTYPE_UINT64])),
        first=draw(st.booleans()),
        whitelist=draw(FILTERS),
        blacklist=draw(FILTERS),
    )
    for name, strategy in (("since", TIMESTAMPS), ("until", TIMESTAMPS), ("field_mask", MASKS)):
        if draw(st.booleans()):
            getattr(request, name).CopyFrom(draw(strategy))
    return request


# --- the servers ----------------------------------------------------------------------------------------------


@dataclass
class Servers:
    node: Node
    agent: grpc.Channel  # the agent server's own unix socket
    relay: grpc.Channel  # the relay in front of it

    @property
    def channels(self) -> dict[str, grpc.Channel]:
        return {"agent": self.agent, "relay": self.relay}


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with Node("hostile", capacity=1023) as node, node.relay() as relay:
        node.write(FLOWS_WRITTEN)
        agent = grpc.insecure_channel(node.target)
        through = grpc.insecure_channel(f"localhost:{relay.port}")
        try:
            wait_for(lambda: count_flows(through, observer_pb2.GetFlowsRequest(number=1)) == 1, timeout=15)
            yield Servers(node, agent, through)
        finally:
            agent.close()
            through.close()


def count_flows(channel: grpc.Channel, request: observer_pb2.GetFlowsRequest) -> int:
    """How many flows `request` gets (None of a failed call: -1)."""
    try:
        responses = list(observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=DEADLINE_S))
    except grpc.RpcError:
        return -1
    return sum(r.HasField("flow") for r in responses)


def check_refusal(where: str, exc: grpc.RpcError, codes: set[grpc.StatusCode]) -> None:
    """A refusal in words: one of `codes`, its details short, and not the client's metadata limit."""
    details = exc.details() or ""
    assert exc.code() in codes, f"{where}: {exc.code()} {details[:500]!r}"
    assert details, f"{where}: {exc.code()} without a reason"
    assert len(details) <= DETAIL_LIMIT, f"{where}: {len(details)} characters of details"
    assert "metadata size exceeds" not in f"{details} {exc.debug_error_string()}", where


def ask(servers: Servers, request: observer_pb2.GetFlowsRequest) -> dict[str, str]:
    """Each server's answer to `request`: "flows" or the refusal's code; fails on anything else."""
    answers = {}
    for where, channel in servers.channels.items():
        try:
            for response in observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=DEADLINE_S):
                assert response.WhichOneof("response_types") in ("flow", "lost_events", "node_status"), where
            answers[where] = "flows"
        except grpc.RpcError as exc:
            check_refusal(where, exc, {grpc.StatusCode.INVALID_ARGUMENT})
            answers[where] = exc.code().name
    return answers


def asks_to_follow(body: bytes) -> bool:
    """Whether random bytes happen to be a valid GetFlowsRequest with `follow` on."""
    try:
        return observer_pb2.GetFlowsRequest.FromString(body).follow
    except DecodeError:
        return False


def ask_raw(servers: Servers, body: bytes) -> dict[str, str]:
    """`body` sent as a GetFlowsRequest's bytes: flows, or a refusal gRPC or the server gives in a few words."""
    answers = {}
    for where, channel in servers.channels.items():
        answers[where] = "flows"
        try:
            list(channel.unary_stream(GET_FLOWS)(body, timeout=DEADLINE_S))
        except grpc.RpcError as exc:
            # Bytes that are no GetFlowsRequest fail in gRPC's own deserializer, before any handler: INTERNAL,
            # as Go's gRPC answers Hubble's clients ("error unmarshalling request").
            check_refusal(where, exc, {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL})
            answers[where] = exc.code().name
    return answers


def count(answers: dict[str, str]) -> None:
    """Counts each server's answer (shown by --hypothesis-show-statistics): the examples reach both outcomes."""
    for where, answer in answers.items():
        event(f"{where}: {answer}")


def assert_serving(servers: Servers) -> None:
    """Both servers still answer: health, status, and a plain GetFlows with every flow."""
    for where, channel in servers.channels.items():
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
        assert health.status == health_pb2.HealthCheckResponse.SERVING, where
        status = observer_pb2_grpc.ObserverStub(channel).ServerStatus(
            observer_pb2.ServerStatusRequest(), timeout=DEADLINE_S
        )
        assert status.num_flows == FLOWS_WRITTEN, where
        assert count_flows(channel, observer_pb2.GetFlowsRequest(number=FLOWS_WRITTEN)) == FLOWS_WRITTEN, where


# --- the properties -------------------------------------------------------------------------------------------


@SETTINGS
@given(request=requests())
@example(request=observer_pb2.GetFlowsRequest(first=True, follow=True))
@example(request=observer_pb2.GetFlowsRequest(number=2**64 - 1, first=True))
def test_hostile_get_flows_requests_get_flows_or_a_short_refusal(
    servers: Servers, request: observer_pb2.GetFlowsRequest
) -> None:
    assume(request.ByteSize() < MAX_REQUEST)
    count(ask(servers, request))
    assert_serving(servers)


STRING_FIELDS = [
    f for f in flow_pb2.FlowFilter.DESCRIPTOR.fields if f.cpp_type == descriptor.FieldDescriptor.CPPTYPE_STRING
]


@settings(SETTINGS, max_examples=5)
@given(value=st.sampled_from([nasty for nasty in NASTY if len(nasty) <= 100]), field=st.sampled_from(STRING_FIELDS))
def test_ten_thousand_filters_are_answered(servers: Servers, value: str, field: descriptor.FieldDescriptor) -> None:
    """10,000 FlowFilters in the whitelist and 100 in the blacklist, each with a value of its own (short values:
    10,000 long ones pass gRPC's 4 MiB message limit, which test_a_request_past_grpcs_size_limit_... covers)."""
    many = [flow_pb2.FlowFilter(**{field.name: [f"{value}{i}"]}) for i in range(10_000)]
    count(ask(servers, observer_pb2.GetFlowsRequest(number=10, whitelist=many, blacklist=many[:100])))
    assert_serving(servers)


def test_a_field_mask_of_ten_thousand_nonsense_paths_is_answered(servers: Servers) -> None:
    mask = field_mask_pb2.FieldMask(paths=[f"source.nonsense{i}" for i in range(10_000)])
    ask(servers, observer_pb2.GetFlowsRequest(number=1, field_mask=mask))
    assert_serving(servers)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


@SETTINGS
@given(
    label=st.builds(
        lambda head, rest: head + rest, st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"]), st.binary(max_size=300)
    ),
    field=st.sampled_from(STRING_FIELDS),
)
def test_invalid_utf8_in_a_filter_string_is_refused_in_words(
    servers: Servers, label: bytes, field: descriptor.FieldDescriptor
) -> None:
    """Labels and every other string field carry bytes on the wire; ones that are not UTF-8 are no proto3 string."""
    whitelist = observer_pb2.GetFlowsRequest.DESCRIPTOR.fields_by_name["whitelist"].number
    count(ask_raw(servers, _length_delimited(whitelist, _length_delimited(field.number, label))))
    assert_serving(servers)


@settings(SETTINGS, max_examples=40)
@given(body=st.binary(max_size=400))
def test_bytes_that_are_no_request_are_refused_in_words(servers: Servers, body: bytes) -> None:
    assume(not asks_to_follow(body))  # b"\x18\x01" is a real request: follow, which never ends by itself
    count(ask_raw(servers, body))
    assert_serving(servers)


def test_a_request_past_grpcs_size_limit_is_refused_and_the_servers_go_on(servers: Servers) -> None:
    request = observer_pb2.GetFlowsRequest(whitelist=[flow_pb2.FlowFilter(source_label=["a" * (5 << 20)])])
    for where, channel in servers.channels.items():
        with pytest.raises(grpc.RpcError) as refused:
            list(observer_pb2_grpc.ObserverStub(channel).GetFlows(request, timeout=DEADLINE_S))
        check_refusal(where, refused.value, {grpc.StatusCode.RESOURCE_EXHAUSTED})
    assert_serving(servers)
