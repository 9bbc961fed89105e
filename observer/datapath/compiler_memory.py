"""Giving back the memory that compiling the programs took, once every program is loaded.

bcc compiles in this process: clang and LLVM run through some 80 MiB of their libraries' code and allocate far
more heap than they keep. Once the agent's programs are loaded it never runs that code again (its maps are read
and written with system calls), yet the memory stays counted as the agent's:
- glibc keeps the freed heap in its arenas for later allocations: malloc_trim(0) hands it back to the kernel;
- the pages of the compiler's code stay mapped: madvise(MADV_DONTNEED) drops them from this process (they stay
  in the page cache, and fault back in from the file should a later compilation need them).
Only mappings that cannot have been written (no write permission) and hold no private copy of a page (smaps
`Anonymous: 0`) are dropped, so what the process sees there afterwards is the same bytes, read from the file.
"""

from __future__ import annotations

import ctypes
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

COMPILER_LIBRARIES = re.compile(r"/lib(LLVM|clang-cpp)[^/]*\.so")
MADV_DONTNEED = 4
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.malloc_trim.argtypes = [ctypes.c_size_t]


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    path: str
    rss: int  # bytes resident
    anonymous: int  # bytes of private copies (written pages)


def mappings(smaps: Path = Path("/proc/self/smaps")) -> list[Mapping]:
    found: list[Mapping] = []
    head: re.Match[str] | None = None
    fields: dict[str, int] = {}

    def close() -> None:
        if head is not None:
            start, end, perms, path = int(head[1], 16), int(head[2], 16), head[3], head[4]
            found.append(Mapping(start, end, perms, path, fields.get("Rss", 0), fields.get("Anonymous", 0)))

    for line in smaps.read_text().splitlines():
        match = _MAPPING.match(line)
        if match:
            close()
            head, fields = match, {}
        elif line.endswith(" kB"):
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
    close()
    return found


def release_compiler_memory() -> int:
    """Hand back the freed heap and the compiler's resident code pages; how many bytes of code pages it dropped."""
    _libc.malloc_trim(0)
    dropped = 0
    for mapping in mappings():
        if not COMPILER_LIBRARIES.search(mapping.path) or "w" in mapping.perms or mapping.anonymous or not mapping.rss:
            continue
        if _libc.madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) == 0:
            dropped += mapping.rss
        else:
            log.debug("madvise %s: errno %d", mapping.path, ctypes.get_errno())
    return dropped
