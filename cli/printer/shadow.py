"""A message type's shadow: the same fields, but every submessage left as its bytes, so that protobuf's C parser
splits a message into its fields without building the messages inside it.

Why: the printers want text, and most of a flow's bytes repeat from flow to flow (endpoints, addresses,
interface, event type, node). Parsed as a shadow, a flow gives its submessages as bytes, and bytes are keys: the
text made of them once is remembered by them. A `Split` goes further: it reads the fields that change from
flow to flow (time, ports, summary...) and gives the bytes of all the others together, one key for their text.

A shadow re-serializes to the bytes it was parsed from when they are canonical: each singular field once, no
default value written out, numbers packed. Otherwise the caller is told (NotCanonical) and parses the message
as protobuf does (a submessage twice is merged, a scalar twice is the last), so nothing is ever read otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

# The fields of a flow that change from one flow to the next; the others (endpoints, addresses, interface, event
# type, node...) come again and again together.
CHANGING = {"flow.Flow": ("time", "uuid", "l4", "Summary", "flowscope")}


class NotCanonical(Exception):
    """Bytes (or a type) the shadows do not take: the caller parses them as protobuf does."""


def parser(descriptor: Descriptor, only: tuple[str, ...] = ()) -> Any:
    """`FromString` of the type's shadow (see `shadow`)."""
    return GetMessageClass(shadow(descriptor, only)).FromString


def parsed(parse: Any, payload: bytes) -> Message:
    """The shadow `parse` makes of the bytes; NotCanonical for bytes it would re-serialize otherwise."""
    message: Message = parse(payload)
    if message.ByteSize() != len(payload):
        raise NotCanonical
    return message


class Split:
    """A message's bytes as (its `changing` fields present, as the shadow holds them; the bytes of every other
    field together, as they came)."""

    def __init__(self, descriptor: Descriptor, changing: tuple[str, ...]) -> None:
        self.view = shadow(descriptor, changing)
        self._parse = GetMessageClass(self.view).FromString

    def __call__(self, payload: bytes) -> tuple[Sequence[tuple[FieldDescriptor, Any]], bytes]:
        message = parsed(self._parse, payload)
        present = message.ListFields()
        for field, _ in present:
            message.ClearField(field.name)
        return present, message.SerializeToString()  # what it did not know: the other fields, kept as they came


_SHADOWS = descriptor_pool.DescriptorPool()
_KINDS = {
    FieldDescriptor.TYPE_MESSAGE: FieldDescriptor.TYPE_BYTES,
    FieldDescriptor.TYPE_ENUM: FieldDescriptor.TYPE_INT32,
}


@cache
def shadow(descriptor: Descriptor, only: tuple[str, ...] = ()) -> Descriptor:
    """The type's shadow: the same fields, numbers, oneofs and presence, but each message field as `bytes` and
    each enum as int32 (an open enum holds any int32), so parsing it leaves submessages as their bytes. With
    `only`, the shadow knows those fields alone and keeps the others' bytes as unknown fields."""
    if any(field.message_type and field.message_type.GetOptions().map_entry for field in descriptor.fields):
        raise NotCanonical  # maps: json_format writes them
    name = descriptor.full_name.replace("_", "__").replace(".", "_") + ("_changing" if only else "")
    file = descriptor_pb2.FileDescriptorProto(name=f"shadow/{name}.proto", package="shadow", syntax="proto3")
    message = file.message_type.add(name=name)
    for oneof in descriptor.oneofs:
        if not _synthetic(oneof):
            message.oneof_decl.add(name=oneof.name)
    for field in descriptor.fields:
        if only and field.name not in only:
            continue
        copy = message.field.add(name=field.name, number=field.number, type=_KINDS.get(field.type, field.type))
        copy.label = copy.LABEL_REPEATED if field.is_repeated else copy.LABEL_OPTIONAL
        group = field.containing_oneof
        if group is not None and not _synthetic(group):
            copy.oneof_index = [oneof for oneof in descriptor.oneofs if not _synthetic(oneof)].index(group)
        elif field.has_presence and not field.is_repeated:
            copy.proto3_optional = True  # a message, proto3 `optional`: a synthetic oneof, after the real ones
    for copy in message.field:
        if copy.proto3_optional:
            copy.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name="_" + copy.name)
    _SHADOWS.Add(file)
    return _SHADOWS.FindMessageTypeByName(f"shadow.{name}")


def _synthetic(oneof: Any) -> bool:
    """A proto3 `optional` field's own oneof, which JSON does not see."""
    return len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name
