"""The .proto files carry all of upstream Hubble's API: every message, field, enum value and method, numbered alike.

Clients name any upstream field in field masks and filters (the hubble CLI's default mask names ip_trace_id,
which flowscope never fills), so a field flowscope leaves empty must still exist. The expected schema is read
from docs/reference/hubble-api.md, "The schema, message by message", whose lines look like
`- **Flow**: time=1 google.protobuf.Timestamp; ... — reserved 7,12` and `- enum **Verdict**: FORWARDED=1, ...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor

import flowscope.api.flow.flow_pb2
import flowscope.api.observer.observer_pb2
import flowscope.api.peer.peer_pb2
import flowscope.api.relay.relay_pb2  # noqa: F401  (each import registers its file in the default pool)

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "hubble-api.md"
POOL = descriptor_pool.Default()
SCALARS = {
    "string": FieldDescriptor.TYPE_STRING,
    "bool": FieldDescriptor.TYPE_BOOL,
    "bytes": FieldDescriptor.TYPE_BYTES,
    "double": FieldDescriptor.TYPE_DOUBLE,
    "int32": FieldDescriptor.TYPE_INT32,
    "int64": FieldDescriptor.TYPE_INT64,
    "uint32": FieldDescriptor.TYPE_UINT32,
    "uint64": FieldDescriptor.TYPE_UINT64,
}


@dataclass(frozen=True)
class Entry:
    """One schema line of the reference: an enum, a message or a method, in its package."""

    package: str
    kind: str  # "enum", "message" or "rpc"
    name: str
    body: str


def reference_entries() -> list[Entry]:
    entries: list[Entry] = []
    package = ""
    for line in REFERENCE.read_text().split("\n# The schema, message by message", 1)[1].splitlines():
        if heading := re.match(r"## package `(\w+)`", line):
            package = heading[1]
        elif enum := re.match(r"- enum \*\*([\w.]+)\*\*: (.*)", line):
            entries.append(Entry(package, "enum", enum[1], enum[2]))
        elif message := re.match(r"- \*\*([\w.]+)\*\*: (.*)", line):
            entries.append(Entry(package, "message", message[1], message[2]))
        elif rpc := re.match(r"- rpc `(/[\w.]+/\w+)`(.*)", line):
            entries.append(Entry(package, "rpc", rpc[1], rpc[2]))
    return entries


ENTRIES = reference_entries()


def by_kind(kind: str) -> list[Entry]:
    return [entry for entry in ENTRIES if entry.kind == kind]


def test_the_reference_lists_the_whole_schema() -> None:
    """Guards the parser: a reworded reference must not leave the other tests checking nothing."""
    assert {e.package for e in ENTRIES} == {"flow", "relay", "peer", "observer"}
    assert (len(by_kind("enum")), len(by_kind("message")), len(by_kind("rpc"))) == (18, 66, 7)
    assert any(e.name == "Flow" and "ip_trace_id=40 IPTraceID" in e.body for e in ENTRIES)


@pytest.mark.parametrize("entry", by_kind("enum"), ids=lambda e: f"{e.package}.{e.name}")
def test_each_enum_has_every_upstream_value_with_its_number(entry: Entry) -> None:
    enum: EnumDescriptor = POOL.FindEnumTypeByName(f"{entry.package}.{entry.name}")
    expected = {name: int(number) for name, number in (value.split("=") for value in entry.body.split(", "))}
    assert {name: enum.values_by_name[name].number for name in expected if name in enum.values_by_name} == expected


@pytest.mark.parametrize("entry", by_kind("message"), ids=lambda e: f"{e.package}.{e.name}")
def test_each_message_has_every_upstream_field_with_its_number_and_type(entry: Entry) -> None:
    message: Descriptor = POOL.FindMessageTypeByName(f"{entry.package}.{entry.name}")
    fields, *notes = entry.body.split(" — ")
    if fields != "(empty)":
        for text in fields.split("; "):
            name, number, *kind = re.split(r"[= ]", text)
            assert name in message.fields_by_name, f"{message.full_name} has no field {name}"
            field = message.fields_by_name[name]
            assert field.number == int(number), f"{message.full_name}.{name}"
            assert field.is_repeated == (kind[0] == "repeated"), f"{message.full_name}.{name}"
            assert type_name(field, entry.package) == kind[-1], f"{message.full_name}.{name}"
    for note in notes:
        if reserved := re.fullmatch(r"reserved ([\d,]+)", note):
            proto = descriptor_pb2.DescriptorProto()
            message.CopyToProto(proto)
            numbers = {n for r in proto.reserved_range for n in range(r.start, r.end)}
            assert {int(n) for n in reserved[1].split(",")} <= numbers, message.full_name
        elif oneof := re.fullmatch(r"oneof (\w+): \{(.*)\}", note):
            members = [field.name for field in message.oneofs_by_name[oneof[1]].fields]
            assert members == oneof[2].split(", "), message.full_name
        else:
            pytest.fail(f"{message.full_name}: a note this test does not know: {note!r}")


def type_name(field: FieldDescriptor, package: str) -> str:
    """The field's type as the reference writes it: a scalar's keyword, or a name relative to the package."""
    named = field.message_type or field.enum_type
    if named is None:
        return next(keyword for keyword, kind in SCALARS.items() if kind == field.type)
    full: str = named.full_name
    return full.removeprefix(f"{package}.")


@pytest.mark.parametrize("entry", by_kind("rpc"), ids=lambda e: e.name)
def test_each_upstream_method_exists_with_its_types(entry: Entry) -> None:
    service_name, method_name = entry.name.strip("/").split("/")
    service: ServiceDescriptor = POOL.FindServiceByName(service_name)
    method = service.methods_by_name[method_name]
    shape = re.fullmatch(r"\(([\w.]+)\) returns \((stream )?([\w.]+)\)", entry.body)
    assert shape is not None, entry.body
    proto = descriptor_pb2.MethodDescriptorProto()
    method.CopyToProto(proto)
    assert (method.input_type.full_name, method.output_type.full_name) == (shape[1], shape[3])
    assert proto.server_streaming == bool(shape[2]) and not proto.client_streaming
