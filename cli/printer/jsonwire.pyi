"""Types of the C extension cli/printer/jsonwire.c: protobuf wire bytes written as json_format's JSON text."""

from collections.abc import Sequence

# A type: (kind, fields, the text of its empty value). A field: (number, `"key":` as bytes, kind, repeated,
# packed, presence, oneof index or -1, type index of a message field, [(enum number, quoted name)]).
FieldTable = tuple[int, bytes, int, bool, bool, bool, int, int, list[tuple[int, bytes]]]
TypeTable = tuple[int, list[FieldTable], bytes]

class Schema:
    def __init__(self, types: Sequence[TypeTable]) -> None: ...
    def write(self, index: int, data: bytes, /) -> str | None: ...
    def block(self, index: int, batch: list[bytes], start: int, lead: bytes, /) -> tuple[str, int]: ...
