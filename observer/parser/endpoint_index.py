"""The endpoint registry snapshot, numbered: which endpoint owns an address, for one record or a whole batch.

The registry answers one address at a time through `ipaddress` objects, which is right for people and too slow
for a batch of 65,535 records. This index numbers the snapshot's distinct endpoints once (world last, so an
address nobody owns maps to the last entry) and keeps their addresses as sorted numbers, so a batch of records
turns into an array of entry numbers with one `searchsorted`. Anything per endpoint (identity, endpoint id,
does it match a filter?) then becomes a small array indexed by those numbers.

The decoder uses the same numbering for one record, through a dict of packed addresses: both must name the
same endpoint for the same address, or a flow the filters select would decode differently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from flowscope.observer.endpoints import EndpointInfo, Snapshot
from flowscope.observer.parser.columns import Side, addresses, has_ip, is_ipv6


@dataclass(frozen=True, eq=False)
class EndpointIndex:
    snapshot: Snapshot
    entries: tuple[EndpointInfo, ...]  # the snapshot's distinct endpoints; world is the last
    by_packed: dict[bytes, int]  # packed address (4 or 16 bytes) -> entry
    ids: np.ndarray  # endpoint id per entry (0 unless a local endpoint)
    identities: np.ndarray  # identity per entry
    _v4_keys: np.ndarray
    _v4_entries: np.ndarray
    _v6_keys: np.ndarray
    _v6_entries: np.ndarray

    @property
    def world(self) -> int:
        return len(self.entries) - 1

    def entry_of(self, packed: bytes) -> int:
        """The entry owning one packed address (b"" for none)."""
        return self.by_packed.get(packed, len(self.entries) - 1)

    def entries_for(self, records: np.ndarray, side: Side) -> np.ndarray:
        """The entry owning each record's source or destination address (world where none does)."""
        found = np.full(len(records), self.world, dtype=np.int32)
        view = addresses(records, side)
        v6 = is_ipv6(records)
        ip = has_ip(records)
        _search(found, ip & ~v6, view["v4"], self._v4_keys, self._v4_entries)
        _search(found, ip & v6, view["raw"], self._v6_keys, self._v6_entries)
        return found

    def matching(self, predicate: Callable[[EndpointInfo], bool]) -> np.ndarray:
        """Which entries satisfy a predicate, as a boolean array to index with entry numbers."""
        return np.fromiter((predicate(info) for info in self.entries), dtype=bool, count=len(self.entries))


def _search(found: np.ndarray, rows: np.ndarray, column: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
    """Where `rows` is set and the column's value is a key, write that key's value into `found`."""
    if not len(keys) or not rows.any():
        return
    where = np.flatnonzero(rows)
    wanted = column[where]
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    hit = keys[pos] == wanted
    found[where[hit]] = values[pos[hit]]


def _sorted(keys: Sequence[object], values: Sequence[int], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    key_array = np.array(keys, dtype=dtype)
    value_array = np.array(values, dtype=np.int32)
    order = np.argsort(key_array, kind="stable")
    return key_array[order], value_array[order]


def build_index(snapshot: Snapshot) -> EndpointIndex:
    numbers: dict[EndpointInfo, int] = {}
    by_packed: dict[bytes, int] = {}
    for ip, info in snapshot.by_ip.items():
        by_packed[ip.packed] = numbers.setdefault(info, len(numbers))
    entries = (*numbers, snapshot.world)
    v4 = [(int.from_bytes(packed), entry) for packed, entry in by_packed.items() if len(packed) == 4]
    v6 = [(packed, entry) for packed, entry in by_packed.items() if len(packed) == 16]
    v4_keys, v4_entries = _sorted([k for k, _ in v4], [e for _, e in v4], ">u4")
    v6_keys, v6_entries = _sorted([k for k, _ in v6], [e for _, e in v6], "S16")
    return EndpointIndex(
        snapshot=snapshot,
        entries=entries,
        by_packed=by_packed,
        ids=np.array([info.id for info in entries], dtype=np.uint32),
        identities=np.array([info.identity for info in entries], dtype=np.uint32),
        _v4_keys=v4_keys,
        _v4_entries=v4_entries,
        _v6_keys=v6_keys,
        _v6_entries=v6_entries,
    )


_lock = threading.Lock()
_latest: EndpointIndex | None = None


def index_of(snapshot: Snapshot) -> EndpointIndex:
    """The index of a snapshot, built once: snapshots are immutable and replaced whole."""
    global _latest
    latest = _latest
    if latest is not None and latest.snapshot is snapshot:
        return latest
    with _lock:
        if _latest is None or _latest.snapshot is not snapshot:
            _latest = build_index(snapshot)
        return _latest
