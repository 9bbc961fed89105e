"""The C event struct and the numpy dtype describe the same bytes (compiled with the system C compiler)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flowscope.observer.events import HEADER_FIELDS, event_dtype

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("struct", "caplen"), [("fs_event", 128), ("fs_event", 256), ("fs_l7_event", 1024), ("fs_l7_event", 512)]
)
def test_struct_matches_dtype(tmp_path: Path, struct: str, caplen: int) -> None:
    """fs_event with FS_CAPLEN bytes, and the L7 capture (the same header) with FS_L7_CAPLEN bytes, both read
    with event_dtype(caplen)."""
    fields = [name for name, _ in HEADER_FIELDS] + ["data"]
    member = f"((struct {struct} *)0)->"
    prints = "\n".join(
        f'printf("{name} %zu %zu\\n", offsetof(struct {struct}, {name}), sizeof({member}{name}));' for name in fields
    )
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n"
        f"#define FS_CAPLEN {caplen}\n#define FS_L7_CAPLEN {caplen}\n"
        '#include "flowscope/event.h"\n'
        f'int main(void) {{ {prints} printf("total %zu 0\\n", sizeof(struct {struct})); return 0; }}\n'
    )
    binary = tmp_path / "layout"
    subprocess.run(["cc", "-I", str(ROOT / "bpf" / "include"), "-o", str(binary), str(source)], check=True)
    out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    rows = (line.split() for line in out.splitlines())
    c_layout = {name: (int(off), int(size)) for name, off, size in rows}
    dtype = event_dtype(caplen)
    for name in fields:
        offset = dtype.fields[name][1]
        size = dtype.fields[name][0].itemsize
        assert c_layout[name] == (offset, size), name
    assert c_layout["total"][0] == dtype.itemsize
