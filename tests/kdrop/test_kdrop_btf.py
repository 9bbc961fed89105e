"""The BTF reader against bpftool's reading of the same file, and on small hand-built blobs.

bpftool (libbpf) is the reference: every type's kind, every struct's and union's members, every enum's values
must be what it says, and the offsets the kernel drop program is compiled with must be what resolving the
same paths over bpftool's types gives.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
from typing import Any

import pytest

from flowscope.observer.datapath.btf import ENUM, ENUM64, INT, STRUCT, TYPEDEF, UNION, VMLINUX, Btf, BtfError
from flowscope.observer.datapath.kdrop_layout import FIELDS, KernelLayout

KIND_NAMES = {
    1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM", 7: "FWD", 8: "TYPEDEF", 9: "VOLATILE",
    10: "CONST", 11: "RESTRICT", 12: "FUNC", 13: "FUNC_PROTO", 14: "VAR", 15: "DATASEC", 16: "FLOAT",
    17: "DECL_TAG", 18: "TYPE_TAG", 19: "ENUM64",
}  # fmt: skip
SEE_THROUGH = {"TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"}

Types = dict[int, dict[str, Any]]


@pytest.fixture(scope="module")
def btf() -> Btf:
    return Btf.load()


@pytest.fixture(scope="module")
def reference() -> Types:
    """Every type of the running kernel's BTF, as bpftool reads it."""
    out = subprocess.run(
        ["bpftool", "-j", "btf", "dump", "file", str(VMLINUX), "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def test_every_type_has_bpftools_kind_and_name(btf: Btf, reference: Types) -> None:
    assert btf.count == len(reference)
    for type_id, ref in reference.items():
        assert KIND_NAMES[btf.kind(type_id)] == ref["kind"], type_id
    for type_id in range(1, btf.count + 1, 97):  # names: a spread sample (decoding all takes a while)
        assert (btf.name(type_id) or "(anon)") == reference[type_id]["name"], type_id


def test_every_struct_and_union_has_bpftools_members(btf: Btf, reference: Types) -> None:
    records = [t for t in reference.values() if t["kind"] in ("STRUCT", "UNION")]
    assert len(records) > 5000
    for ref in records:
        ours = [(m.name or "(anon)", m.type_id, m.bit_offset, m.bitfield_size) for m in btf.members(ref["id"])]
        theirs = [(m["name"], m["type_id"], m["bits_offset"], m.get("bitfield_size", 0)) for m in ref["members"]]
        assert ours == theirs, ref["name"]
        assert btf.size(ref["id"]) == ref["size"]


def reference_value(ref: dict[str, Any], value: int) -> int:
    """bpftool 7.1's JSON sign-extends a 32-bit unsigned enum value (`format raw` text prints it right)."""
    if ref["kind"] == "ENUM" and ref["encoding"] == "UNSIGNED":
        return value & 0xFFFFFFFF
    return value - (1 << 64) if ref["encoding"] == "SIGNED" and value >= 1 << 63 else value


def test_every_enum_has_bpftools_values(btf: Btf, reference: Types) -> None:
    checked = 0
    for ref in reference.values():
        if ref["kind"] in ("ENUM", "ENUM64"):
            expected = {v["name"]: reference_value(ref, v["val"]) for v in ref["values"]}
            assert btf.enum_values(ref["id"]) == expected, ref["name"]
            checked += 1
    assert checked > 1000
    assert btf.enum("skb_drop_reason") == btf.enum_values(btf.find("skb_drop_reason", (ENUM, ENUM64)))


def _resolve(types: Types, type_id: int) -> dict[str, Any]:
    while types[type_id]["kind"] in SEE_THROUGH:
        type_id = types[type_id]["type_id"]
    return types[type_id]


def _find(types: Types, record: dict[str, Any], name: str) -> tuple[int, int] | None:
    """(bit offset, member type id), looking inside anonymous members: the C rule, written again."""
    for member in record.get("members", []):
        if member["name"] == name:
            return member["bits_offset"], member["type_id"]
        if member["name"] == "(anon)":
            inner = _find(types, _resolve(types, member["type_id"]), name)
            if inner is not None:
                return member["bits_offset"] + inner[0], inner[1]
    return None


def reference_offset(types: Types, struct_name: str, path: str) -> int:
    record = next(t for t in types.values() if t["kind"] == "STRUCT" and t["name"] == struct_name)
    bits = 0
    for part in path.split("."):
        found = _find(types, record, part)
        assert found is not None, (struct_name, path)
        bits += found[0]
        record = _resolve(types, found[1])
    return bits // 8


@pytest.mark.parametrize(("define", "where"), sorted(FIELDS.items()))
def test_kernel_drop_offsets_equal_bpftools(btf: Btf, reference: Types, define: str, where: tuple) -> None:
    struct_name, path, size = where
    field = btf.field(struct_name, path)
    assert field.offset == reference_offset(reference, struct_name, path)
    assert field.size == size
    assert KernelLayout.of(btf).offsets[define] == field.offset


def test_fields_inside_anonymous_groups_resolve(btf: Btf) -> None:
    """sk_buff keeps these inside anonymous unions and struct groups: none is a direct member."""
    direct = {m.name for m in btf.members(btf.find("sk_buff"))}
    nested = ("dev", "network_header", "transport_header", "mac_header", "hash", "protocol")
    assert direct.isdisjoint(nested)
    assert [btf.field("sk_buff", name).size for name in nested] == [8, 2, 2, 2, 4, 2]


def test_parse_is_fast() -> None:
    start = time.perf_counter()
    btf = Btf.load()
    btf.field("sk_buff", "head")
    assert time.perf_counter() - start < 1.0  # ~0.05 s here; bpftool's JSON alone takes longer


# Hand-built blobs: the corners the kernel's BTF may not show.


class Blob:
    """A little BTF writer: types in order (ids from 1), strings deduplicated."""

    def __init__(self) -> None:
        self.types = b""
        self.strings = b"\0"

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = self.strings.find(b"\0" + text.encode() + b"\0")
        if offset >= 0:
            return offset + 1
        self.strings += text.encode() + b"\0"
        return len(self.strings) - len(text) - 1

    def add(self, name: str, kind: int, vlen: int, size_or_type: int, trailer: bytes = b"", flag: int = 0) -> None:
        info = flag << 31 | kind << 24 | vlen
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + trailer

    def members(self, *members: tuple[str, int, int]) -> bytes:
        return b"".join(struct.pack("<III", self.name(n), t, off) for n, t, off in members)

    def build(self) -> bytes:
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return header + self.types + self.strings


def small_blob() -> bytes:
    b = Blob()
    b.add("unsigned int", INT, 0, 4, struct.pack("<I", 32))  # 1
    b.add("", UNION, 2, 4, b.members(("a", 1, 0), ("b", 1, 0)))  # 2: anonymous union {a, b}
    b.add("", STRUCT, 1, 4, b.members(("", 2, 0)))  # 3: anonymous struct holding it
    b.add("inner_t", TYPEDEF, 0, 3)  # 4
    b.add("outer", STRUCT, 3, 16, b.members(("x", 1, 0), ("", 3, 32), ("named", 4, 64)), flag=0)  # 5
    b.add("bits", STRUCT, 2, 4, b.members(("lo", 1, 4 << 24 | 0), ("hi", 1, 4 << 24 | 4)), flag=1)  # 6
    values = struct.pack("<III", b.name("BIG"), 0, 1) + struct.pack("<III", b.name("NEG"), 0xFFFFFFFF, 0xFFFFFFFF)
    b.add("wide", ENUM64, 2, 8, values, flag=1)  # 7: signed
    return b.build()


def test_anonymous_members_and_typedef_paths() -> None:
    btf = Btf(small_blob())
    assert btf.field("outer", "x").offset == 0
    assert btf.field("outer", "a").offset == 4  # through the anonymous struct and union
    assert btf.field("outer", "named.b").offset == 8  # through the typedef
    with pytest.raises(BtfError, match="no member"):
        btf.field("outer", "nothing")


def test_bitfields_are_refused() -> None:
    btf = Btf(small_blob())
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in btf.members(6)] == [("lo", 0, 4), ("hi", 4, 4)]
    with pytest.raises(BtfError, match="bitfield"):
        btf.field("bits", "hi")


def test_enum64_signed_values() -> None:
    assert Btf(small_blob()).enum("wide") == {"BIG": 1 << 32, "NEG": -1}


def test_not_btf_and_unknown_kinds() -> None:
    with pytest.raises(BtfError, match="magic"):
        Btf(b"\0" * 64)
    b = Blob()
    b.add("odd", 30, 0, 0)
    with pytest.raises(BtfError, match="unknown BTF kind 30"):
        Btf(b.build())
