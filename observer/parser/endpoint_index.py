"""The endpoint registry snapshot, numbered: which endpoint a record's side names, for one record or a whole batch.

The registry answers one address at a time through `ipaddress` objects, which is right for people and too slow
for a batch of 65,535 records. This index numbers the snapshot's distinct endpoints once and keeps their
addresses as sorted numbers, so a batch of records turns into an array of entry numbers with one `searchsorted`.
Anything per endpoint (identity, endpoint id, does it match a filter?) then becomes a small array indexed by
those numbers.

An endpoint is found by its address first. An address nobody owns (a pod's fe80:: link-local address, an ARP
frame's missing one) is still named when the datapath knew whose packet it was (from-endpoint gives the pod's
identity), as Hubble's ResolveEndpoint does: the identity's labels, the namespace from its namespace label, no
pod name and no endpoint id; a reserved identity (host, remote-node) gets its reserved label. Those identity
entries follow the addressed ones; world is last, for the rest.

The decoder uses the same numbering for one record, through dicts of packed addresses and identities: both
must name the same endpoint for the same record, or a flow the filters select would decode differently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flowscope.common.names import IDENTITY_WORLD
from flowscope.observer.endpoints import EndpointInfo, Snapshot
from flowscope.observer.metadata import RESERVED_IDENTITY_NAMES
from flowscope.observer.parser.columns import Side, addresses, has_ip, is_ipv6

_NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace="
_IDENTITY_COLUMN = {"src": "src_identity", "dst": "dst_identity"}


@dataclass(frozen=True, eq=False)
class EndpointIndex:
    snapshot: Snapshot
    entries: tuple[EndpointInfo, ...]  # addressed endpoints, then those known by identity alone; world is last
    by_packed: dict[bytes, int]  # packed address (4 or 16 bytes) -> entry
    by_identity: dict[int, int]  # identity -> entry, for a side whose address nobody owns
    ids: np.ndarray  # endpoint id per entry (0 unless a local endpoint)
    identities: np.ndarray  # identity per entry
    _v4_keys: np.ndarray
    _v4_entries: np.ndarray
    _v6_keys: np.ndarray
    _v6_entries: np.ndarray
    _identity_keys: np.ndarray
    _identity_entries: np.ndarray

    @property
    def world(self) -> int:
        return len(self.entries) - 1

    def entry_of(self, packed: bytes, identity: int = 0) -> int:
        """The entry a record's side names: the owner of its packed address (b"" for none), else the endpoint
        its datapath identity stands for, else world."""
        entry = self.by_packed.get(packed)
        if entry is None:
            return self.by_identity.get(identity, len(self.entries) - 1)
        return entry

    def entries_for(self, records: np.ndarray, side: Side) -> np.ndarray:
        """`entry_of` for each record's source or destination."""
        found = np.full(len(records), -1, dtype=np.int32)
        view = addresses(records, side)
        v6 = is_ipv6(records)
        ip = has_ip(records)
        _search(found, ip & ~v6, view["v4"], self._v4_keys, self._v4_entries)
        _search(found, ip & v6, view["raw"], self._v6_keys, self._v6_entries)
        unowned = found < 0
        _search(found, unowned, records[_IDENTITY_COLUMN[side]], self._identity_keys, self._identity_entries)
        found[found < 0] = self.world
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


def _by_identity_alone(addressed: Iterable[EndpointInfo], cluster: str) -> dict[int, EndpointInfo]:
    """What each identity the snapshot knows says of an endpoint without its address: a pod's identity its
    labels and namespace (the same for every pod of the identity, unlike pod name and endpoint id), a reserved
    one its reserved label. World is left out: it is the answer for everything else."""
    known = {
        identity: EndpointInfo(identity=identity, labels=(f"reserved:{name}",), cluster=cluster)
        for identity, name in RESERVED_IDENTITY_NAMES.items()
        if identity != IDENTITY_WORLD
    }
    for info in addressed:
        if info.is_pod:
            namespace = next(
                (label[len(_NAMESPACE_LABEL) :] for label in info.labels if label.startswith(_NAMESPACE_LABEL)), ""
            )
            known[info.identity] = EndpointInfo(
                identity=info.identity, namespace=namespace, labels=info.labels, cluster=info.cluster
            )
    return known


def build_index(snapshot: Snapshot) -> EndpointIndex:
    numbers: dict[EndpointInfo, int] = {}
    by_packed: dict[bytes, int] = {}
    for ip, info in snapshot.by_ip.items():
        by_packed[ip.packed] = numbers.setdefault(info, len(numbers))
    by_identity = {
        identity: numbers.setdefault(info, len(numbers))
        for identity, info in _by_identity_alone(snapshot.by_ip.values(), snapshot.world.cluster).items()
    }
    entries = (*numbers, snapshot.world)
    v4 = [(int.from_bytes(packed), entry) for packed, entry in by_packed.items() if len(packed) == 4]
    v6 = [(packed, entry) for packed, entry in by_packed.items() if len(packed) == 16]
    v4_keys, v4_entries = _sorted([k for k, _ in v4], [e for _, e in v4], ">u4")
    v6_keys, v6_entries = _sorted([k for k, _ in v6], [e for _, e in v6], "S16")
    identity_keys, identity_entries = _sorted(list(by_identity), list(by_identity.values()), "u4")
    return EndpointIndex(
        snapshot=snapshot,
        entries=entries,
        by_packed=by_packed,
        by_identity=by_identity,
        ids=np.array([info.id for info in entries], dtype=np.uint32),
        identities=np.array([info.identity for info in entries], dtype=np.uint32),
        _v4_keys=v4_keys,
        _v4_entries=v4_entries,
        _v6_keys=v6_keys,
        _v6_entries=v6_entries,
        _identity_keys=identity_keys,
        _identity_entries=identity_entries,
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
