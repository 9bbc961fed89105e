"""Kernel code addresses as "symbol+0xoffset", from /proc/kallsyms: where a kernel drop happened.

A kernel drop's `location` is the address that called kfree_skb (udp_queue_rcv_one_skb+0x1c0 reads better
than 0xffffffff8a3c51e0). The table has over 100,000 lines (0.2 s to read), so it is read once, on the first
address asked about (most agents never decode a kernel drop), into a sorted list that a lookup bisects.

Only text symbols (t, T) count: a drop location is code. Addresses read as zero when kptr_restrict hides them
from the caller; then nothing is named and the decoder shows the bare address.
"""

from __future__ import annotations

import bisect
import threading
from pathlib import Path

KALLSYMS = Path("/proc/kallsyms")
_TEXT = (b"t", b"T")
_MAX_OFFSET = 1 << 20  # past the last symbol, an address this far on is not in any function we know


class KernelSymbols:
    """Callable: address -> "name+0xoff" (or "name+0xoff [module]"), None when no symbol covers it."""

    def __init__(self, path: Path = KALLSYMS) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._addresses: list[int] | None = None
        self._names: list[str] = []

    def __call__(self, address: int) -> str | None:
        addresses = self._addresses if self._addresses is not None else self._load()
        index = bisect.bisect_right(addresses, address) - 1
        if not address or index < 0:
            return None
        offset = address - addresses[index]
        if index == len(addresses) - 1 and offset > _MAX_OFFSET:
            return None
        return f"{self._names[index]}+{offset:#x}"

    def _load(self) -> list[int]:
        with self._lock:
            if self._addresses is None:
                symbols: list[tuple[int, str]] = []
                for line in self._path.read_bytes().splitlines():
                    parts = line.split(maxsplit=3)
                    if len(parts) < 3 or parts[1] not in _TEXT:
                        continue
                    address = int(parts[0], 16)
                    if address:
                        name = parts[2].decode(errors="replace")
                        if len(parts) == 4:
                            name += " " + parts[3].decode(errors="replace")
                        symbols.append((address, name))
                symbols.sort()
                self._names = [name for _, name in symbols]
                self._addresses = [address for address, _ in symbols]
            return self._addresses
