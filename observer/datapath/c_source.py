"""The datapath's C sources, made into the one translation unit bcc compiles, and the compile-time settings.

Why inline the headers: bcc rewrites map accesses (`events.ringbuf_reserve(...)`, `calls.call(...)`) only in
its main file, so helpers in headers that touch maps would not compile if clang included them. The C stays in
bpf/*.c and bpf/include/flowscope/*.h; here the quoted includes of our own headers are spliced in (once each,
with #line markers so compiler errors still name the real file and line). System includes (<...>) are left
to clang.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flowscope.common.capture import DEFAULT_CAPLEN, check_caplen
from flowscope.common.l7_ports import DEFAULT_L7_CAPLEN

# bpf/ installs as flowscope/bpf beside this package (setup.py); in a checkout it is the folder beside observer/.
BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
MAIN_SOURCE = "datapath.c"

_QUOTED_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
_CALL_SLOT = re.compile(r"^\s*#\s*define\s+FS_CALL_([A-Z0-9_]+)\s+(\d+)\b", re.MULTILINE)


@dataclass(frozen=True)
class DatapathConfig:
    """Compile-time settings of the datapath: changing one means compiling (and loading) it again."""

    caplen: int = DEFAULT_CAPLEN  # FS_CAPLEN: packet bytes an event can carry
    ring_buffer_pages: int = 1024  # FS_RINGBUF_PAGES: the `events` ring buffer, in pages (4 MiB)
    wakeup_every: int = 64  # FS_WAKEUP_EVERY: wake the reader on every N-th event of a CPU
    l7_caplen: int = DEFAULT_L7_CAPLEN  # FS_L7_CAPLEN: packet bytes an L7 record can carry (bpf/.../l7.h)
    l7_ring_buffer_pages: int = 1024  # FS_L7_RINGBUF_PAGES: the `l7_events` ring buffer, in pages (4 MiB)

    def __post_init__(self) -> None:
        check_caplen(self.caplen)
        check_caplen(self.l7_caplen)
        if self.l7_caplen < self.caplen:
            raise ValueError(f"l7_caplen must be at least caplen ({self.caplen}), not {self.l7_caplen}")
        for name in ("ring_buffer_pages", "l7_ring_buffer_pages"):
            pages = getattr(self, name)
            if pages <= 0 or pages & (pages - 1):
                raise ValueError(f"{name} must be a power of two, not {pages}")
        if self.wakeup_every <= 0:
            raise ValueError(f"wakeup_every must be positive, not {self.wakeup_every}")

    def defines(self) -> dict[str, int]:
        return {
            "FS_CAPLEN": self.caplen,
            "FS_RINGBUF_PAGES": self.ring_buffer_pages,
            "FS_WAKEUP_EVERY": self.wakeup_every,
            "FS_L7_CAPLEN": self.l7_caplen,
            "FS_L7_RINGBUF_PAGES": self.l7_ring_buffer_pages,
        }


def cflags(config: DatapathConfig, bpf_dir: Path = BPF_DIR) -> list[str]:
    return [f"-I{bpf_dir / 'include'}", *(f"-D{name}={value}" for name, value in config.defines().items())]


def translation_unit(bpf_dir: Path = BPF_DIR, main: str = MAIN_SOURCE) -> str:
    """The text of `main` with our own headers spliced in where they are first included."""
    include_dirs = [bpf_dir / "include", bpf_dir]
    return "".join(_splice(bpf_dir / main, include_dirs, seen=set()))


def _splice(path: Path, include_dirs: list[Path], seen: set[Path]) -> list[str]:
    out = [f'#line 1 "{path}"\n']
    for number, line in enumerate(path.read_text().splitlines(keepends=True), start=1):
        match = _QUOTED_INCLUDE.match(line)
        if not match:
            out.append(line)
            continue
        header = _find(match.group(1), [path.parent, *include_dirs])
        if header not in seen:
            seen.add(header)
            out.extend(_splice(header, include_dirs, seen))
        out.append(f'#line {number + 1} "{path}"\n')
    if out[-1] and not out[-1].endswith("\n"):
        out.append("\n")
    return out


def _find(name: str, dirs: list[Path]) -> Path:
    for directory in dirs:
        candidate = (directory / name).resolve()
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f'#include "{name}": not found in {", ".join(map(str, dirs))}')


def tail_call_slots(bpf_dir: Path = BPF_DIR) -> dict[int, str]:
    """Slot -> program name, from the FS_CALL_<NAME> defines of calls.h (program `stage_<name>`)."""
    text = (bpf_dir / "include" / "flowscope" / "calls.h").read_text()
    slots: dict[int, str] = {}
    for name, slot in _CALL_SLOT.findall(text):
        if int(slot) in slots:
            raise ValueError(f"calls.h: slot {slot} given to both {slots[int(slot)]} and stage_{name.lower()}")
        slots[int(slot)] = f"stage_{name.lower()}"
    return slots


def header_define(header: str, name: str, bpf_dir: Path = BPF_DIR) -> int:
    """The number a header of ours #defines `name` as (include/flowscope/<header>), for Python that must agree."""
    text = (bpf_dir / "include" / "flowscope" / header).read_text()
    match = re.search(rf"^\s*#\s*define\s+{name}\s+(0x[0-9a-fA-F]+|\d+)\b", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"{header}: no #define {name} <number>")
    return int(match.group(1), 0)
