"""`-o json` is written by cli/printer/protojson.py, not json_format: it must give json_format's text exactly, on
the printers' samples, on decoded records and on responses with every field set to awkward values, from messages
and straight from their wire bytes, both by the C writer (cli/printer/jsonwire.c) and by the Python one it falls
back to; bytes a parser would read otherwise than they look are left to the parser, and no bytes crash C."""

from __future__ import annotations

import io
import random
from typing import Any

import cli_samples as samples
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from records import ACK, SYN, lab_registry, record, tcp4, udp4

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.printer import PrintOptions, Sink, make_printer
from flowscope.cli.printer.protojson import (
    NotCanonical,
    compiled_json,
    python_wire_json,
    slow_json,
    timestamp_text,
    to_json,
    wire_json,
)
from flowscope.observer.parser import FlowDecoder

STRINGS = ["", "a", "default/client", 'quote " and \\ back', "tab\tnew\nline\x01", "café ✓", "\U0001f600", "0"]
INTS = {
    FieldDescriptor.CPPTYPE_INT32: [0, 1, -1, 2**31 - 1, -(2**31)],
    FieldDescriptor.CPPTYPE_UINT32: [0, 1, 2**32 - 1],
    FieldDescriptor.CPPTYPE_INT64: [0, -1, 2**63 - 1, -(2**63)],
    FieldDescriptor.CPPTYPE_UINT64: [0, 1, 2**64 - 1],
}


def _value(field: FieldDescriptor, rng: random.Random) -> Any:
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        numbers = [value.number for value in field.enum_type.values]
        return rng.choice([*numbers, max(numbers) + 7])  # now and then a number this schema does not name
    if kind == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
        return rng.choice(STRINGS)
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return rng.choice([True, False])
    if kind in INTS:
        return rng.choice(INTS[kind])
    raise AssertionError(f"no values for {field.full_name}")


def _fill(message: Any, descriptor: Descriptor, rng: random.Random, depth: int) -> None:
    """Sets a random half of the fields (every kind: oneofs, repeated, wrappers, enums), nested `depth` deep."""
    for field in descriptor.fields:
        if rng.random() < 0.5:
            continue
        if field.message_type is not None:
            if depth == 0 or field.message_type.full_name == "google.protobuf.Any":
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                stamp = getattr(message, field.name).add() if field.is_repeated else getattr(message, field.name)
                stamp.seconds = rng.choice([0, 1_700_000_000, 253_402_300_799])
                stamp.nanos = rng.choice([0, 5_000_000, 5_000, 5, 999_999_999])
                continue
            for _ in range(rng.randrange(1, 3) if field.is_repeated else 1):
                child = getattr(message, field.name).add() if field.is_repeated else getattr(message, field.name)
                child.SetInParent()
                _fill(child, field.message_type, rng, depth - 1)
        elif field.is_repeated:
            getattr(message, field.name).extend(_value(field, rng) for _ in range(rng.randrange(1, 4)))
        else:
            setattr(message, field.name, _value(field, rng))


def test_random_responses_print_as_json_format_prints_them() -> None:
    rng = random.Random(15)
    for _ in range(400):
        response = observer_pb2.GetFlowsResponse()
        _fill(response, response.DESCRIPTOR, rng, depth=4)
        _assert_written_as_json_format_writes(response)


def _assert_written_as_json_format_writes(response: observer_pb2.GetFlowsResponse) -> None:
    """By every path: from the message, from its bytes, by C (which must write it: nothing in it is unusual) and
    by the Python writer C falls back to."""
    expected, data = slow_json(response), response.SerializeToString()
    assert to_json(response) == expected
    assert wire_json(data, response.DESCRIPTOR) == expected
    assert compiled_json(data, response.DESCRIPTOR) == expected
    assert python_wire_json(data, response.DESCRIPTOR) == expected


def test_samples_and_decoded_records_print_as_json_format_prints_them() -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"protojson")
    decoded = [decoder.decode(record(packet)[0], seq) for seq, packet in enumerate((tcp4(flags=SYN | ACK), udp4()))]
    responses = [*samples.canned(), *(samples.response(flow) for flow in decoded)]
    for response in responses * 2:  # the second time from the remembered texts
        _assert_written_as_json_format_writes(response)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (numbers below 16, short payloads)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def _printed(output: str, batch: list[bytes], from_bytes: bool, **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    printer = make_printer(output, Sink(out), Sink(err), PrintOptions(debug=True, **options))
    if from_bytes:
        printer.write_bytes(batch)
    else:
        for data in batch:
            printer.write(observer_pb2.GetFlowsResponse.FromString(data))
    printer.close()
    return out.getvalue(), err.getvalue()


def _unusual(flow: flow_pb2.Flow) -> list[bytes]:
    """Responses whose bytes protobuf reads otherwise than field by field: a submessage twice (merged), a
    scalar twice (the last wins), a default written out, fields out of order, an unknown field, two members of
    the response's oneof (the last wins); and bytes cut short."""
    flow_bytes = flow.SerializeToString()
    ip_again = _field(5, flow_pb2.IP(destination="10.9.9.9").SerializeToString())
    verdict_zero = b"\x10\x00"  # verdict = 0, written out
    lost = observer_pb2.GetFlowsResponse(lost_events=flow_pb2.LostEvent(num_events_lost=3)).SerializeToString()
    tail = observer_pb2.GetFlowsResponse(node_name="n", time=flow.time).SerializeToString()
    flows = [
        flow_bytes + ip_again,
        flow_bytes + verdict_zero,
        verdict_zero + flow_bytes,
        flow_bytes + _field(11, b"other-node"),  # node_name twice
        _field(6, flow.l4.SerializeToString()) + flow_bytes,  # l4 first, then every field again
        flow_bytes + b"\xf8\x07\x01",  # field 127, unknown
    ]
    framed = [b"\x0a" + bytes([len(data)]) + data + tail for data in flows]
    truncated = framed[0][: len(framed[0]) // 2]
    return [*framed, b"\x0a" + bytes([len(flow_bytes)]) + flow_bytes + lost, truncated]


@pytest.mark.parametrize("output", ["json", "compact"])
def test_unusual_bytes_print_as_the_parsed_message_prints(output: str) -> None:
    flows = [samples.tcp_flow(), samples.kernel_drop(), samples.aggregated_flow(), samples.udp_dns_flow()]
    for flow in flows:
        for data in _unusual(flow):
            try:
                observer_pb2.GetFlowsResponse.FromString(data)
            except DecodeError:
                with pytest.raises(DecodeError):
                    _printed(output, [data], from_bytes=True)
                continue
            assert _printed(output, [data], from_bytes=True) == _printed(output, [data], from_bytes=False)


def test_bytes_that_do_not_read_field_by_field_are_not_written_from_the_wire() -> None:
    for data in _unusual(samples.tcp_flow()):
        assert compiled_json(data, observer_pb2.GetFlowsResponse.DESCRIPTOR) is None
        with pytest.raises(NotCanonical):
            wire_json(data, observer_pb2.GetFlowsResponse.DESCRIPTOR)


def _mutated(data: bytes, rng: random.Random) -> bytes:
    """The bytes with a few bytes changed, inserted or removed, or cut short."""
    changed = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(changed) + 1)
        match rng.randrange(4):
            case 0 if changed[at:]:
                changed[at] = rng.randrange(256)
            case 1:
                del changed[at : at + rng.randrange(1, 4)]
            case 2:
                changed.insert(at, rng.randrange(256))
            case _:
                del changed[at:]
    return bytes(changed)


def test_c_writes_any_bytes_as_json_format_or_leaves_them() -> None:
    """Random and mutated bytes: C gives None (the parser then says what is wrong, or json_format writes them) or
    exactly json_format's text of what the parser reads; never anything else, never a crash."""
    rng = random.Random(1515)
    descriptor = observer_pb2.GetFlowsResponse.DESCRIPTOR
    seeds = [samples.response(samples.tcp_flow()).SerializeToString()]
    for _ in range(100):
        response = observer_pb2.GetFlowsResponse()
        _fill(response, descriptor, rng, depth=4)
        seeds.append(response.SerializeToString())
    written = 0
    for count in range(20_000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(40))) if count % 10 == 0 else None
        data = data if data is not None else _mutated(rng.choice(seeds), rng)
        text = compiled_json(data, descriptor)
        if text is not None:
            assert text == slow_json(observer_pb2.GetFlowsResponse.FromString(data)), data
            written += 1
    assert written > 1000  # mutations that keep the bytes readable are written by C, not all left to Python


def test_types_json_format_writes_by_rules_of_its_own_are_left_to_python() -> None:
    """A double, an Any: json_format's rules (shortest floats, type URLs), so C leaves them; absent, C writes the
    rest of the message."""
    status = observer_pb2.ServerStatusResponse(num_flows=3, flows_rate=0.5)
    assert compiled_json(status.SerializeToString(), status.DESCRIPTOR) is None
    assert wire_json(status.SerializeToString(), status.DESCRIPTOR) == slow_json(status)
    status.ClearField("flows_rate")
    assert compiled_json(status.SerializeToString(), status.DESCRIPTOR) == slow_json(status)
    flow = samples.tcp_flow()
    flow.extensions.Pack(flow_pb2.IP(source="10.0.0.1"))
    assert compiled_json(flow.SerializeToString(), flow.DESCRIPTOR) is None
    assert wire_json(flow.SerializeToString(), flow.DESCRIPTOR) == slow_json(flow)


def _plain(response: observer_pb2.GetFlowsResponse) -> observer_pb2.GetFlowsResponse:
    """The response's flow as the agent mostly sends it: with its Summary, without flowscope's extras."""
    plain = observer_pb2.GetFlowsResponse()
    plain.CopyFrom(response)
    if plain.HasField("flow"):
        plain.flow.Summary = plain.flow.Summary or "words"
        plain.flow.ClearField("flowscope")
    return plain


OPTIONS: list[dict[str, Any]] = [{}, {"node_name": True, "ip_translation": False, "policy_names": True}]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("output", ["compact", "dict", "json", "jsonpb", "table"])
def test_every_printer_prints_bytes_as_it_prints_messages(output: str, options: dict[str, Any]) -> None:
    decoder = FlowDecoder("node1", lab_registry(), b"protojson")
    decoded = [decoder.decode(record(packet)[0], seq) for seq, packet in enumerate((tcp4(flags=SYN | ACK), udp4()))]
    responses = [*samples.canned(), *(samples.response(flow) for flow in decoded)]
    responses += [_plain(response) for response in responses]
    batch = [response.SerializeToString() for response in responses * 2]  # the second time from what is remembered
    assert _printed(output, batch, True, **options) == _printed(output, batch, False, **options)
    if output.startswith("json"):  # the flows at least were written by C
        flows = [data for data in batch if data[:1] == b"\x0a"]
        assert flows and all(compiled_json(data, observer_pb2.GetFlowsResponse.DESCRIPTOR) for data in flows)


def test_compact_lines_of_plain_flows_are_made_from_their_bytes() -> None:
    """The test above would pass if every flow were parsed: the flows an agent mostly sends are not."""
    printer = make_printer("compact", Sink(io.StringIO()), Sink(io.StringIO()), PrintOptions())
    for response in samples.canned():
        if response.HasField("flow"):
            data = _plain(response).SerializeToString()
            assert printer._line_of(data) is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("nanos", [0, 120_000_000, 120_300_000, 120_300_400])
def test_timestamps_keep_0_3_6_or_9_digits(nanos: int) -> None:
    stamp = samples.stamp()
    stamp.nanos = nanos
    assert timestamp_text(stamp) == f'"{stamp.ToJsonString()}"'


@pytest.mark.parametrize("output", ["json", "jsonpb"])
def test_long_mixed_batches_print_from_bytes_as_parsed(output: str) -> None:
    """Runs of flows longer than one of C's blocks, broken by lost events, node status and bytes C leaves to
    Python, in one batch: the same lines, in the same order, on the same streams as the parsed messages."""
    rng = random.Random(99)
    flows = [response.SerializeToString() for response in samples.canned() if response.HasField("flow")]
    others = [response.SerializeToString() for response in samples.canned() if not response.HasField("flow")]
    others += [data for data in _unusual(samples.tcp_flow()) if _parses(data)]
    batch = [rng.choice(flows) for _ in range(600)]
    for at in sorted(rng.sample(range(len(batch)), 12), reverse=True):
        batch.insert(at, rng.choice(others))
    assert _printed(output, batch, True) == _printed(output, batch, False)


def _parses(data: bytes) -> bool:
    try:
        observer_pb2.GetFlowsResponse.FromString(data)
    except DecodeError:
        return False
    return True


def test_mutated_bytes_print_as_parsed_or_raise_as_the_parser_does() -> None:
    rng = random.Random(7)
    seeds = [response.SerializeToString() for response in samples.canned()]
    for _ in range(2000):
        data = _mutated(rng.choice(seeds), rng)
        try:
            parsed = _printed("json", [data], from_bytes=False)
        except DecodeError:
            with pytest.raises(DecodeError):
                _printed("json", [data], from_bytes=True)
            continue
        assert _printed("json", [data], from_bytes=True) == parsed
