"""Protobuf messages as compact JSON text, the same text as `json.dumps(MessageToDict(message,
preserving_proto_field_name=True), separators=(",", ":"))` at a fraction of its cost, written from the message's
wire bytes.

Why: json_format walks every field of every message through a chain of Python calls and builds a dict that
json.dumps then walks again; for a Flow that is ~150 us, which caps `observe -o json` near 6,000 flows/s. The
CLI receives bytes and wants text, and most of a flow's bytes repeat from flow to flow (endpoints, addresses,
interface, event type, node). So a message is parsed in C as its shadow (cli/printer/shadow.py), whose
submessages stay bytes, and each type is compiled once into a table of its fields' quoted keys and value
writers; the text of a submessage whose values repeat is remembered by its bytes, and a flow's repeating fields
are written as one block remembered by their bytes together (shadow.Split), so a flow costs little more than
its time, ports, uuid and summary.

The rules are json_format's: fields in field-number order (ListFields' order), enums by name (by number when
this schema does not know the value), 64-bit integers as strings, bytes as base64, wrappers as their value,
Timestamps as RFC 3339 with 0, 3, 6 or 9 digits, strings escaped to ASCII as json.dumps escapes them, unknown
fields left out. Bytes a parser would read otherwise than their shadow does (a field twice, a default written
out: shadow.NotCanonical), and types this writer does not cover (floats, maps, Any, Duration, Struct...) go to
json_format: never wrong, only slower. tests/cli compare both on a corpus, from messages and from bytes.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable
from functools import cache
from itertools import pairwise
from json.encoder import encode_basestring_ascii
from typing import Any

from google.protobuf import descriptor_pool, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from flowscope.cli.printer import jsonwire
from flowscope.cli.printer.shadow import CHANGING, NotCanonical, Split, _synthetic, parsed, parser, shadow

_EPOCH = datetime.datetime(1970, 1, 1)
_WRAPPERS = "google/protobuf/wrappers.proto"
_TIMESTAMP = "google.protobuf.Timestamp"
# Every other well-known type has a JSON form of its own: json_format writes those.
_SPECIAL = {"google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.FieldMask"}
_SPECIAL |= {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
_REMEMBERED = 4096  # texts kept for each message type

PayloadText = Callable[[bytes], str]


def to_json(message: Message) -> str:
    """The message as one line of JSON, byte for byte what json_format and json.dumps make of it."""
    try:
        return wire_json(message.SerializeToString(), message.DESCRIPTOR)
    except NotCanonical:
        return slow_json(message)


def wire_json(data: bytes, descriptor: Any) -> str:
    """The message of type `descriptor` (a Descriptor) whose wire bytes are `data`, as to_json writes it parsed;
    NotCanonical for bytes (or types) left to the parser and json_format. Written in C (compiled_json), or in
    Python when C leaves the bytes (python_wire_json)."""
    text = compiled_json(data, descriptor)
    return python_wire_json(data, descriptor) if text is None else text


def compiled_json(data: bytes, descriptor: Descriptor) -> str | None:
    """The text cli/printer/jsonwire.c writes of the bytes; None for bytes or types it leaves to Python."""
    schema, index = compiled(descriptor)
    return schema.write(index, data)


def python_wire_json(data: bytes, descriptor: Any) -> str:
    """wire_json in Python: the reference beside C, and its fallback."""
    try:
        return _message_text(descriptor)(data)
    except NotCanonical:
        raise
    except Exception as exc:  # truncated bytes, bad UTF-8, a time out of range: json_format says what is wrong
        raise NotCanonical from exc


def slow_json(message: Message) -> str:
    """json_format's own rendering, the reference this module matches (and its fallback)."""
    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), separators=(",", ":"))


def timestamp_text(stamp: Any) -> str:
    """Timestamp.ToJsonString's text."""
    return to_json(stamp)


@cache
def _seconds_text(seconds: int) -> str:
    """`2023-11-14T22:13:20`: flows come in time order, so one second's text serves many of them."""
    day_seconds = seconds % 86_400
    return (_EPOCH + datetime.timedelta((seconds - day_seconds) // 86_400, day_seconds)).isoformat()


def _time_text(seconds: int, nanos: int) -> str:
    if not 0 <= nanos < 1_000_000_000 or not -62_135_596_800 <= seconds <= 253_402_300_799:
        raise NotCanonical  # out of range: json_format raises as it does
    date = _seconds_text(seconds)
    if nanos == 0:
        return f'"{date}Z"'
    if nanos % 1_000_000 == 0:
        return f'"{date}.{nanos // 1_000_000:03d}Z"'
    if nanos % 1_000 == 0:
        return f'"{date}.{nanos // 1_000:06d}Z"'
    return f'"{date}.{nanos:09d}Z"'


def _message_text(descriptor: Descriptor) -> PayloadText:
    """How a message of this type is written from its bytes (made once per type, on first use: types refer to
    each other, so a field's writer asks for its type's at its first value)."""
    writer = _message_writers.get(descriptor.full_name)
    if writer is None:
        writer = _message_writers[descriptor.full_name] = _make_message_text(descriptor)
    return writer


_message_writers: dict[str, PayloadText] = {}


def _make_message_text(descriptor: Descriptor) -> PayloadText:
    if descriptor.full_name == _TIMESTAMP:
        return _timestamp
    try:
        changing = CHANGING.get(descriptor.full_name)
        write = _split_writer(descriptor, changing) if changing else _fields_writer(descriptor)
    except NotCanonical:  # a wrapper, a type with a JSON form of its own, floats, maps
        message_class = GetMessageClass(descriptor)
        return _remembered(lambda payload: slow_json(message_class.FromString(payload)))
    return write


def _fields_writer(descriptor: Descriptor) -> PayloadText:
    """The writer of a plain message: its bytes parsed (in C) as its shadow, whose submessages stay bytes, and
    each field present written by the table: its key and how its value is written."""
    parse, table = _table(descriptor)

    def write(payload: bytes) -> str:
        message = parse(payload)
        if message.ByteSize() != len(payload):
            raise NotCanonical  # shadow.parsed, written out: this runs for every message
        pieces = []
        for field, item in message.ListFields():
            key, value, repeated = table[field]
            pieces.append(key + "[" + ",".join(map(value, item)) + "]" if repeated else key + value(item))
        return "{" + ",".join(pieces) + "}"

    return write


def _numbered_pieces(descriptor: Descriptor) -> Callable[[bytes], list[tuple[int, str]]]:
    """(field number, `"key":value`) for each field present in the bytes, in field-number order."""
    parse, table = _table(descriptor)

    def pieces(payload: bytes) -> list[tuple[int, str]]:
        written = []
        for field, item in parsed(parse, payload).ListFields():
            key, value, repeated = table[field]
            text = key + "[" + ",".join(map(value, item)) + "]" if repeated else key + value(item)
            written.append((field.number, text))
        return written

    return pieces


_Table = dict[FieldDescriptor, tuple[str, Callable[[Any], str], bool]]


def _table(descriptor: Descriptor) -> tuple[Any, _Table]:
    """The parser of the type's shadow, and for each of the shadow's fields its key, how a value is written and
    whether it is a list."""
    if descriptor.full_name in _SPECIAL or descriptor.file.name == _WRAPPERS:
        raise NotCanonical
    fields = shadow(descriptor).fields_by_name
    table: _Table = {}
    for field in descriptor.fields:
        key = encode_basestring_ascii(field.name) + ":"
        table[fields[field.name]] = (key, _value_writer(field), field.is_repeated)
    return parser(descriptor), table


def _split_writer(descriptor: Descriptor, changing: tuple[str, ...]) -> PayloadText:
    """The writer of a message whose `changing` fields are new in every value and whose other fields repeat as a
    block (shadow.Split): the block's text is remembered by its bytes, cut where the changing fields go, to keep
    field-number order."""
    split = Split(descriptor, changing)
    fields = sorted((field for field in descriptor.fields if field.name in changing), key=lambda field: field.number)
    if any(field.containing_oneof is not None or field.is_repeated for field in fields):
        raise NotCanonical  # a oneof split between the two, or a list: never the case for the types in CHANGING
    table = {
        split.view.fields_by_name[field.name]: (slot, encode_basestring_ascii(field.name) + ":", _value_writer(field))
        for slot, field in enumerate(fields)
    }
    blocks = _remembered_blocks(descriptor, [field.number for field in fields])
    size = 2 * len(fields) + 1

    def write(payload: bytes) -> str:
        present, rest = split(payload)
        pieces: list[str] = [""] * size  # block, changing field, block, ..., block
        for field, item in present:
            slot, key, value = table[field]
            pieces[2 * slot + 1] = key + value(item)
        pieces[::2] = blocks(rest)
        return "{" + ",".join(filter(None, pieces)) + "}"

    return write


def _remembered_blocks(descriptor: Descriptor, cuts: list[int]) -> Callable[[bytes], list[str]]:
    """The text of the repeating fields' bytes as len(cuts) + 1 pieces: the fields before the first cut, between
    the first and the second... (each piece `"key":value,...` or empty)."""
    whole = _numbered_pieces(descriptor)
    texts: dict[bytes, list[str]] = {}

    def blocks(payload: bytes) -> list[str]:
        parts = texts.get(payload)
        if parts is None:
            if len(texts) >= _REMEMBERED:
                texts.clear()
            pieces = whole(payload)
            bounds = [0, *cuts, 1 << 30]
            parts = texts[payload] = [
                ",".join([piece for number, piece in pieces if low < number < high]) for low, high in pairwise(bounds)
            ]
        return parts

    return blocks


def _value_writer(field: FieldDescriptor) -> Callable[[Any], str]:
    """How one value of the field, as its shadow holds it, is written."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        message_type = field.message_type
        assert message_type is not None  # a message field has its type
        return _late(message_type)
    if kind == FieldDescriptor.TYPE_STRING:
        return encode_basestring_ascii
    if kind == FieldDescriptor.TYPE_BYTES:
        return lambda data: '"' + base64.b64encode(data).decode() + '"'
    if kind == FieldDescriptor.TYPE_ENUM:
        names = _enum_names(field)
        return lambda number: names.get(number) or str(number)
    if kind == FieldDescriptor.TYPE_BOOL:
        return lambda flag: "true" if flag else "false"
    if kind in _INT64_TYPES:
        return lambda number: f'"{number}"'
    if kind in _INT32_TYPES:
        return int.__repr__
    raise NotCanonical  # float and double: json_format's rules for NaN, infinities and shortest floats


def _late(descriptor: Descriptor) -> PayloadText:
    """The writer of a submessage type: types refer to each other (and to themselves), so a type's writer is
    made when its first value is written. Values of types that repeat are remembered here, by their bytes."""
    if descriptor.full_name == _TIMESTAMP:
        return _timestamp  # one in every flow and response: no indirection
    write: PayloadText | None = None

    def text(payload: bytes) -> str:
        nonlocal write
        if write is None:
            write = _message_text(descriptor)
        return write(payload)

    return _remembered(text) if _repeats(descriptor) else text


_INT32_TYPES = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_SINT32}
_INT32_TYPES |= {FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32}
_INT64_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64}
_INT64_TYPES |= {FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def _enum_names(field: FieldDescriptor) -> dict[int, str]:
    enum = field.enum_type
    assert enum is not None  # an enum field has its type
    if enum.full_name == "google.protobuf.NullValue" or enum.is_closed or _has_json_enum_names():
        raise NotCanonical
    return {number: encode_basestring_ascii(value.name) for number, value in enum.values_by_number.items()}


def _has_json_enum_names() -> bool:
    """Whether some loaded .proto renames enum values for JSON (`pb.enumvalue.json`): then json_format decides."""
    try:
        descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return False
    return True


def _timestamp(payload: bytes) -> str:
    """A Timestamp as RFC 3339. A response repeats its flow's time, hence the memory of the last one."""
    global _last_time
    last = _last_time  # one read: another thread may write the next
    if payload == last[0]:
        return last[1]
    stamp = timestamp_pb2.Timestamp.FromString(payload)
    if stamp.ByteSize() != len(payload):
        raise NotCanonical
    text = _time_text(stamp.seconds, stamp.nanos)
    _last_time = (payload, text)
    return text


_last_time = (b"", "")


def _repeats(descriptor: Descriptor) -> bool:
    """Whether values of this type come again and again (endpoints, interfaces, ports, addresses): any plain
    message without a time of its own. A Flow, a response, a Timestamp are new every time."""
    return not any(field.message_type and field.message_type.full_name == _TIMESTAMP for field in descriptor.fields)


def _remembered(write: PayloadText) -> PayloadText:
    """`write` with a memory of what it wrote, keyed by the bytes. Forgotten whole when full: a bound, and a
    cheap one."""
    texts: dict[bytes, str] = {}

    def remembered(payload: bytes) -> str:
        text = texts.get(payload)
        if text is None:
            if len(texts) >= _REMEMBERED:
                texts.clear()
            text = texts[payload] = write(payload)
        return text

    return remembered


# The C writer's tables (cli/printer/jsonwire.c), made from the descriptors: the kinds below are its enums.
_KIND = {
    FieldDescriptor.TYPE_INT32: 0,
    FieldDescriptor.TYPE_INT64: 1,
    FieldDescriptor.TYPE_UINT32: 2,
    FieldDescriptor.TYPE_UINT64: 3,
    FieldDescriptor.TYPE_SINT32: 4,
    FieldDescriptor.TYPE_SINT64: 5,
    FieldDescriptor.TYPE_FIXED32: 6,
    FieldDescriptor.TYPE_FIXED64: 7,
    FieldDescriptor.TYPE_SFIXED32: 8,
    FieldDescriptor.TYPE_SFIXED64: 9,
    FieldDescriptor.TYPE_BOOL: 10,
    FieldDescriptor.TYPE_ENUM: 11,
    FieldDescriptor.TYPE_STRING: 12,
    FieldDescriptor.TYPE_BYTES: 13,
    FieldDescriptor.TYPE_MESSAGE: 14,
}
_UNSUPPORTED = 15  # floats, groups, maps, enums json_format names otherwise: present, they go to Python
_PLAIN, _TIMESTAMP_KIND, _WRAPPER, _UNSUPPORTED_TYPE = range(4)
_MAX_ONEOFS = 64


@cache
def compiled(descriptor: Descriptor) -> tuple[jsonwire.Schema, int]:
    """The C writer of the type and of every type it reaches, and the type's index among them."""
    tables: list[jsonwire.TypeTable] = []
    indices: dict[str, int] = {}

    def index(message_type: Descriptor) -> int:
        found = indices.get(message_type.full_name)
        if found is None:
            found = indices[message_type.full_name] = len(tables)
            tables.append((_UNSUPPORTED_TYPE, [], b""))  # its place, while its fields refer to it
            tables[found] = _type_table(message_type, index)
        return found

    root = index(descriptor)
    return jsonwire.Schema(tables), root


def _type_table(descriptor: Descriptor, index: Callable[[Descriptor], int]) -> jsonwire.TypeTable:
    """A type as the C writer's table: how it is written (plain, Timestamp, wrapper, left to Python) and its
    fields. A wrapper keeps json_format's text of its empty value, written when the value is not."""
    oneofs = [oneof for oneof in descriptor.oneofs if not _synthetic(oneof)]
    fields = [_field_table(field, oneofs, index) for field in descriptor.fields]
    if descriptor.full_name == _TIMESTAMP:
        return (_TIMESTAMP_KIND, fields, b"")
    if descriptor.file.name == _WRAPPERS:
        if any(kind == _UNSUPPORTED for _, _, kind, *_ in fields):
            return (_UNSUPPORTED_TYPE, [], b"")  # FloatValue, DoubleValue
        return (_WRAPPER, fields, slow_json(GetMessageClass(descriptor)()).encode())
    if descriptor.full_name in _SPECIAL or len(oneofs) > _MAX_ONEOFS:
        return (_UNSUPPORTED_TYPE, [], b"")
    return (_PLAIN, fields, b"")


def _field_table(field: FieldDescriptor, oneofs: list[Any], index: Callable[[Descriptor], int]) -> jsonwire.FieldTable:
    kind = _KIND.get(field.type, _UNSUPPORTED)
    names: list[tuple[int, bytes]] = []
    message_index = -1
    if kind == _KIND[FieldDescriptor.TYPE_ENUM]:
        try:
            names = [(number, name.encode()) for number, name in _enum_names(field).items()]
        except NotCanonical:
            kind = _UNSUPPORTED
    elif kind == _KIND[FieldDescriptor.TYPE_MESSAGE]:
        message_type = field.message_type
        assert message_type is not None  # a message field has its type
        if message_type.GetOptions().map_entry:
            kind = _UNSUPPORTED
        else:
            message_index = index(message_type)
    group = field.containing_oneof
    oneof = oneofs.index(group) if group in oneofs else -1
    key = (encode_basestring_ascii(field.name) + ":").encode()
    packed = field.is_packed and kind != _UNSUPPORTED
    presence = field.has_presence and not field.is_repeated
    return (field.number, key, kind, field.is_repeated, packed, presence, oneof, message_index, names)
