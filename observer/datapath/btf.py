"""A reader of the running kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets and enum values.

Why: the kernel drop program reads kernel-internal structs (sk_buff, net_device, net, sock) whose layout changes
between kernels and configurations, and the only kernel headers on the machine are for another kernel. BTF
describes the running kernel exactly, so the loader takes offsets from it and hands them to the C as defines.

Why our own parser: the format is simple (kernel Documentation/bpf/btf.rst: a header, a type section, a string
section) and reading it here takes tens of milliseconds, where `bpftool btf dump ... -j` takes a third of a
second and then 17 MB of JSON to parse. One pass over the type section records where each type starts (types
have different sizes, so the pass is sequential); everything else is read on demand from those offsets.

Resolving a member follows what C does: anonymous struct and union members are searched recursively (sk_buff
keeps `dev`, `head`, `network_header` inside such groups), and a dotted path walks into named members
(`nd_net.net`), looking through typedefs and qualifiers.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from array import array
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE_HEADER = 12  # name_off, info, size/type

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)

# Bytes after the common header: (fixed, per vlen item), by kind.
_TRAILER: dict[int, tuple[int, int]] = {
    INT: (4, 0),
    PTR: (0, 0),
    ARRAY: (12, 0),
    STRUCT: (0, 12),
    UNION: (0, 12),
    ENUM: (0, 8),
    FWD: (0, 0),
    TYPEDEF: (0, 0),
    VOLATILE: (0, 0),
    CONST: (0, 0),
    RESTRICT: (0, 0),
    FUNC: (0, 0),
    FUNC_PROTO: (0, 8),
    VAR: (4, 0),
    DATASEC: (0, 12),
    FLOAT: (0, 0),
    DECL_TAG: (4, 0),
    TYPE_TAG: (0, 0),
    ENUM64: (0, 12),
}
_FIXED = [_TRAILER.get(kind, (-1, 0))[0] for kind in range(32)]
_PER_ITEM = [_TRAILER.get(kind, (-1, 0))[1] for kind in range(32)]
_SEE_THROUGH = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
_POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)


class BtfError(LookupError):
    """The BTF does not have what was asked for (or is not BTF at all)."""


@dataclass(frozen=True)
class Member:
    """One member of a struct or union as BTF records it (bit_offset within its own struct)."""

    name: str  # "" for an anonymous struct or union member
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 unless the member is a bitfield


@dataclass(frozen=True)
class Field:
    """A resolved member path: where it starts in the outermost struct, and how big it is."""

    offset: int  # bytes from the start of the outermost struct
    size: int  # bytes
    type_id: int


class Btf:
    """The types of one BTF blob, indexed by id (1..count; 0 is void)."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < _HEADER.size:
            raise BtfError("not BTF: too short")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(blob)
        if magic != _MAGIC:
            raise BtfError(f"not BTF (or another byte order): magic {magic:#x}")
        if version != 1:
            raise BtfError(f"BTF version {version} is not supported")
        self._blob = blob
        self._types_start = hdr_len + type_off
        self._strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        self._offsets = self._index(self._types_start, self._types_start + type_len)
        self._name_offs: np.ndarray | None = None  # every type's name offset, made on the first lookup
        # answers already given: the kernel drop program and the packet-path offsets ask the same questions
        self._found: dict[tuple[str, tuple[int, ...]], int] = {}
        self._fields: dict[tuple[str, str], Field] = {}

    @classmethod
    def load(cls, path: Path = VMLINUX) -> Btf:
        return cls(path.read_bytes())

    @property
    def count(self) -> int:
        """How many types (the largest type id)."""
        return len(self._offsets) - 1

    # the one pass

    def _index(self, start: int, end: int) -> array[int]:
        """Where each type starts; offsets[0] stands for void. Sequential: a type's size depends on its kind."""
        if sys.byteorder != "little":
            raise BtfError("only little-endian BTF is supported")
        info_of = struct.Struct("<I").unpack_from
        fixed, per_item, blob = _FIXED, _PER_ITEM, self._blob
        offsets = array("Q", [0])
        append = offsets.append
        pos = start
        while pos < end:
            append(pos)
            (info,) = info_of(blob, pos + 4)
            kind = (info >> 24) & 0x1F
            extra = fixed[kind]
            if extra < 0:
                raise BtfError(f"unknown BTF kind {kind} at type {len(offsets) - 1}")
            pos += _TYPE_HEADER + extra + per_item[kind] * (info & 0xFFFF)
        if pos != end:
            raise BtfError("the type section does not end on a type boundary")
        return offsets

    # reading one type

    def _header(self, type_id: int) -> tuple[int, int, int, int, int]:
        """(kind, vlen, kind_flag, name_off, size_or_type) of a type."""
        if not 0 < type_id < len(self._offsets):
            raise BtfError(f"no type {type_id}")
        name_off, info, size_or_type = struct.unpack_from("<III", self._blob, self._offsets[type_id])
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, name_off, size_or_type

    def string(self, offset: int) -> str:
        end = self._strings.index(b"\0", offset)
        return self._strings[offset:end].decode()

    def kind(self, type_id: int) -> int:
        return self._header(type_id)[0]

    def name(self, type_id: int) -> str:
        return self.string(self._header(type_id)[3])

    def resolve(self, type_id: int) -> int:
        """The type behind typedefs and qualifiers."""
        while type_id and self.kind(type_id) in _SEE_THROUGH:
            type_id = self._header(type_id)[4]
        return type_id

    def size(self, type_id: int) -> int:
        """sizeof(type), in bytes."""
        type_id = self.resolve(type_id)
        kind, _vlen, _flag, _name, size_or_type = self._header(type_id)
        if kind == PTR:
            return _POINTER_SIZE
        if kind == ARRAY:
            element, _index, count = struct.unpack_from("<III", self._blob, self._offsets[type_id] + _TYPE_HEADER)
            return count * self.size(element)
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return size_or_type
        raise BtfError(f"type {type_id} ({self.name(type_id) or 'anonymous'}) has no size")

    def members(self, type_id: int) -> list[Member]:
        kind, vlen, kind_flag, _name, _size = self._header(type_id)
        if kind not in (STRUCT, UNION):
            raise BtfError(f"type {type_id} is not a struct or union")
        start = self._offsets[type_id] + _TYPE_HEADER
        out = []
        for name_off, member_type, offset in struct.iter_unpack("<III", self._blob[start : start + 12 * vlen]):
            bits, bitfield = (offset & 0xFFFFFF, offset >> 24) if kind_flag else (offset, 0)
            out.append(Member(self.string(name_off), member_type, bits, bitfield))
        return out

    # by name

    def find(self, name: str, kinds: tuple[int, ...] = (STRUCT, UNION)) -> int:
        """The id of the named type of one of `kinds` (a complete struct, never its forward declaration)."""
        if (name, kinds) in self._found:
            return self._found[name, kinds]
        for type_id in self._named(name):
            if self.kind(type_id) in kinds:
                self._found[name, kinds] = type_id
                return type_id
        raise BtfError(f"no {'/'.join(map(str, kinds))}-kind type named {name!r} in this kernel's BTF")

    def _named(self, name: str) -> list[int]:
        """Ids of the types called `name`: find the name in the string section, then its users among the types.

        Vectorised over every type's first two words, so a lookup costs a few milliseconds, not a decode of
        a hundred thousand names.
        """
        offsets = self._string_offsets(name)
        if not offsets:
            return []
        if self._name_offs is None:
            starts = np.frombuffer(self._offsets, dtype=np.uint64)[1:] // 4
            self._name_offs = np.frombuffer(self._blob, dtype="<u4", count=len(self._blob) // 4)[starts]
        return [int(position) + 1 for position in np.flatnonzero(np.isin(self._name_offs, offsets))]

    def _string_offsets(self, name: str) -> list[int]:
        """Every offset at which `name` is a whole string of the string section (it starts with an empty one)."""
        needle = b"\0" + name.encode() + b"\0"
        found, start = [], self._strings.find(needle)
        while start >= 0:
            found.append(start + 1)
            start = self._strings.find(needle, start + 1)
        return found

    def field(self, struct_name: str, path: str) -> Field:
        """Where `struct <struct_name>`'s member `path` ("nd_net.net", "ns.inum") lies, and its size."""
        if (struct_name, path) not in self._fields:
            self._fields[struct_name, path] = self._field(struct_name, path)
        return self._fields[struct_name, path]

    def _field(self, struct_name: str, path: str) -> Field:
        type_id = self.find(struct_name)
        offset_bits = 0
        for part in path.split("."):
            found = self._member_path(self.resolve(type_id), part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path!r} (stuck at {part!r})")
            bits, member = found
            if member.bitfield_size or bits % 8:
                raise BtfError(f"{struct_name}.{path} is a bitfield; read it some other way")
            offset_bits += bits
            type_id = member.type_id
        return Field(offset_bits // 8, self.size(type_id), type_id)

    def _member_path(self, type_id: int, name: str) -> tuple[int, Member] | None:
        """(bit offset, member) of a named member, looking inside anonymous structs and unions."""
        if self.kind(type_id) not in (STRUCT, UNION):
            return None
        for member in self.members(type_id):
            if member.name == name:
                return member.bit_offset, member
            if not member.name:
                inner = self._member_path(self.resolve(member.type_id), name)
                if inner is not None:
                    return member.bit_offset + inner[0], inner[1]
        return None

    def enum(self, name: str) -> dict[str, int]:
        """The enumerators of `enum <name>` and their values (signed when the enum says so)."""
        return self.enum_values(self.find(name, (ENUM, ENUM64)))

    def enum_values(self, type_id: int) -> dict[str, int]:
        kind, vlen, signed, _name, _size = self._header(type_id)
        if kind not in (ENUM, ENUM64):
            raise BtfError(f"type {type_id} is not an enum")
        start = self._offsets[type_id] + _TYPE_HEADER
        values: dict[str, int] = {}
        if kind == ENUM:
            layout = "<Ii" if signed else "<II"
            for name_off, value in struct.iter_unpack(layout, self._blob[start : start + 8 * vlen]):
                values[self.string(name_off)] = value
            return values
        for name_off, low, high in struct.iter_unpack("<III", self._blob[start : start + 12 * vlen]):
            value = high << 32 | low
            if signed and value >= 1 << 63:
                value -= 1 << 64
            values[self.string(name_off)] = value
        return values


@cache
def running_kernel() -> Btf:
    """The running kernel's BTF, read and indexed once a process (kdrop.c and the packet-path offsets both need
    it at start-up; it changes only with the kernel)."""
    return Btf.load()
