"""Protobuf messages as compact JSON text, the same text as `json.dumps(MessageToDict(message,
preserving_proto_field_name=True), separators=(",", ":"))` at a fraction of its cost.

Why: json_format walks every field of every message through a chain of Python calls and builds a dict that
json.dumps then walks again; for a Flow that is ~150 us, which caps `observe -o json` near 6,000 flows/s. Here
each message type is compiled once into a table of field writers (the key text already quoted, the conversion
chosen by the field's type), and a message is written as the joined output of its set fields in ListFields
order, which is the order json_format uses. The rules are json_format's: enums by name (by number when this
schema does not know the value), 64-bit integers as strings, bytes as base64, wrappers as their value,
Timestamps as RFC 3339 with 0, 3, 6 or 9 digits, strings escaped to ASCII as json.dumps escapes them. A type
this writer does not cover (floats, maps, Any, Duration, Struct...) is handed to json_format as it is, so it is
never wrong, only slower; tests/cli compare both on a corpus.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable
from functools import cache
from json.encoder import encode_basestring_ascii
from typing import Any

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

Writer = Callable[[Any], str]

_EPOCH = datetime.datetime(1970, 1, 1)
_WRAPPERS = "google/protobuf/wrappers.proto"
_REMEMBERED = 4096  # texts kept for each message type
_TIMESTAMP = "google.protobuf.Timestamp"
# Every other well-known type has a JSON form of its own: json_format writes those.
_SPECIAL = {"google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.FieldMask"}
_SPECIAL |= {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}


def to_json(message: Message) -> str:
    """The message as one line of JSON, byte for byte what json_format and json.dumps make of it."""
    return _writer(message.DESCRIPTOR)(message)


def slow_json(message: Message) -> str:
    """json_format's own rendering, the reference this module matches (and its fallback)."""
    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), separators=(",", ":"))


@cache
def _seconds_text(seconds: int) -> str:
    """`2023-11-14T22:13:20`: flows come in time order, so one second's text serves many of them."""
    day_seconds = seconds % 86_400
    return (_EPOCH + datetime.timedelta((seconds - day_seconds) // 86_400, day_seconds)).isoformat()


def timestamp_text(stamp: Any) -> str:
    """Timestamp.ToJsonString's text, with the date of each second made once."""
    seconds, nanos = stamp.seconds, stamp.nanos
    if not 0 <= nanos < 1_000_000_000 or not -62_135_596_800 <= seconds <= 253_402_300_799:
        return slow_json(stamp)  # out of range: json_format raises as it does
    date = _seconds_text(seconds)
    if nanos == 0:
        return f'"{date}Z"'
    if nanos % 1_000_000 == 0:
        return f'"{date}.{nanos // 1_000_000:03d}Z"'
    if nanos % 1_000 == 0:
        return f'"{date}.{nanos // 1_000:06d}Z"'
    return f'"{date}.{nanos:09d}Z"'


def _has_json_enum_names() -> bool:
    """Whether some loaded .proto renames enum values for JSON (`pb.enumvalue.json`): then json_format decides."""
    try:
        descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return False
    return True


@cache
def _writer(descriptor: Descriptor) -> Writer:
    """The writer for one message type: made once, on first use (types refer to each other, hence the cache)."""
    if descriptor.file.name == _WRAPPERS:
        inner = _value_writer(descriptor.fields_by_name["value"])
        if inner is None:
            return slow_json
        return lambda message: inner(message.value)  # a wrapper is its value, even a default one
    if descriptor.full_name == _TIMESTAMP:
        return timestamp_text
    if descriptor.full_name in _SPECIAL:
        return slow_json
    table: dict[FieldDescriptor, Writer] = {}
    for field in descriptor.fields:
        value = _value_writer(field)
        if value is None or (field.message_type is not None and field.message_type.GetOptions().map_entry):
            return slow_json
        key = encode_basestring_ascii(field.name) + ":"
        table[field] = _repeated(key, value) if field.is_repeated else _single(key, value)

    def write(message: Any) -> str:
        try:
            return "{" + ",".join([table[field](value) for field, value in message.ListFields()]) + "}"
        except KeyError:  # an extension: json_format names those
            return slow_json(message)

    return write


def _single(key: str, value: Writer) -> Writer:
    return lambda item: key + value(item)


def _repeated(key: str, value: Writer) -> Writer:
    return lambda items: key + "[" + ",".join([value(item) for item in items]) + "]"


def _value_writer(field: FieldDescriptor) -> Writer | None:
    """How one value of the field is written, or None for the kinds left to json_format."""
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        message_type = field.message_type
        assert message_type is not None  # a message field has its type
        if _repeats(message_type):
            return _remembered(message_type)
        return lambda message: _writer(message_type)(message)
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        return _enum_writer(field)
    if kind == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return lambda data: '"' + base64.b64encode(data).decode() + '"'
        return encode_basestring_ascii
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return lambda flag: "true" if flag else "false"
    if kind in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return lambda number: f'"{number}"'
    if kind in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32):
        return int.__repr__
    return None  # float and double: json_format's rules for NaN, infinities and shortest floats


def _repeats(descriptor: Descriptor) -> bool:
    """Whether values of this type come again and again (endpoints, interfaces, ports, addresses): any plain
    message without a time of its own. A Flow, a response, a Timestamp are new every time."""
    plain = descriptor.file.name != _WRAPPERS and descriptor.full_name not in _SPECIAL
    return plain and not any(
        field.message_type and field.message_type.full_name == _TIMESTAMP for field in descriptor.fields
    )


def _remembered(descriptor: Descriptor) -> Writer:
    """The type's writer with a memory of what it wrote, keyed by the value's wire bytes (serialising a message is
    ~10 times cheaper than writing its JSON). Forgotten whole when full: a bound, and a cheap one."""
    texts: dict[bytes, str] = {}

    def write(message: Any) -> str:
        key = message.SerializeToString()
        text = texts.get(key)
        if text is None:
            if len(texts) >= _REMEMBERED:
                texts.clear()
            text = texts[key] = _writer(descriptor)(message)
        return text

    return write


def _enum_writer(field: FieldDescriptor) -> Writer | None:
    enum = field.enum_type
    assert enum is not None  # an enum field has its type
    if enum.full_name == "google.protobuf.NullValue" or enum.is_closed or _has_json_enum_names():
        return None
    names = {number: encode_basestring_ascii(value.name) for number, value in enum.values_by_number.items()}
    return lambda number: names.get(number) or int.__repr__(number)
