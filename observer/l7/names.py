"""Names for addresses: what each pod learnt an address is called, attached to records as they are stored.

A flow to 10.200.1.12 says little; a flow to web.web.svc.lab says what the pod meant. Cilium learns this from
the DNS answers its proxy sees, per endpoint (the FQDN cache), and Hubble fills `source_names` /
`destination_names` from it. flowscope sees the same answers without a proxy (observer/l7/source.py parses
them) and TLS ClientHellos' server names besides, and keeps them here:

- `NameCache`: client address -> peer address -> {name: expiry}. Per client, because two pods may resolve one
  address to different names, and a name one pod resolved says nothing about another pod's connection.
- `NameSets`: the names are attached to a record when it is stored (`annotate`), as two u32 ids of name sets
  in its header (src_names, dst_names). Storing ids keeps records fixed-size, and a `--last` long after the
  TTL ran out still shows what the name was when the packet passed.

Both are bounded (figures below), and `annotate` costs next to nothing on a batch with no named address: a
vectorised membership test over the address columns, Python only for the rows that match.

Names are kept lower-case without the trailing dot, as Hubble shows them ("web.web.svc.lab"). An answer's
TTL is honoured with a floor of MIN_TTL_S (Cilium's --tofqdns-min-ttl defaults to 0 since it has connection
tracking to keep names of live connections; flowscope has no such zombie list, so a floor plus "a flow that
uses a name keeps it alive" stand in for it).
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Protocol

import numpy as np

from flowscope.common.names import XLATED_FLAG
from flowscope.observer.events import F_REPLY, F_REPLY_KNOWN
from flowscope.observer.parser.columns import Side

NANOS = 1_000_000_000
MIN_TTL_S = 60  # a name outlives a shorter TTL by this much: connections opened just after the answer keep it
SNI_TTL_S = 300  # a ClientHello carries no TTL; the connection it opens is usually short
MAX_SETS = 65_536  # name sets remembered; an older id reads as no names
MAX_PAIRS = 65_536  # (client, peer) pairs with names, over all clients
MAX_PEERS_PER_CLIENT = 4_096  # so one pod resolving without end cannot push every other pod's names out
MAX_NAMES_PER_PAIR = 4  # a query and its CNAMEs; more are dropped, the one expiring first

_ADDRESS_OFFSET = {"src": 80, "dst": 96}  # saddr and daddr in struct fs_event
_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top 16 bits of the product pick the bucket
_BUCKET_SHIFT = np.uint64(48)
_REPLY = F_REPLY | F_REPLY_KNOWN  # both set: conntrack knew the connection and this is its reply

Address = bytes  # 16 bytes, as the record holds it: IPv4 in the first 4, zeros after (observer/events.py)


class DnsAnswer(Protocol):
    """What the cache reads of a DNS response (observer/l7/dns.py's DnsMessage has these)."""

    @property
    def query(self) -> str: ...
    @property
    def cnames(self) -> Sequence[str]: ...
    @property
    def ips(self) -> Sequence[str]: ...
    @property
    def ttl(self) -> int: ...


def canonical_name(name: str) -> str:
    """A name as flows show it and filters match it: lower-case, without the root's trailing dot."""
    return name.strip().lower().rstrip(".")


def record_address(text: str) -> Address | None:
    """An address as text ("10.200.1.12", "fd00::12") in the record's 16-byte form; None when it is none."""
    try:
        packed = ipaddress.ip_address(text).packed
    except ValueError:
        return None
    return packed.ljust(16, b"\0")


@cache
def _halves(itemsize: int, side: Side) -> np.dtype:
    offset = _ADDRESS_OFFSET[side]
    return np.dtype(
        {"names": ["a", "b"], "formats": ["<u8", "<u8"], "offsets": [offset, offset + 8], "itemsize": itemsize}
    )


def _fold(records: np.ndarray, side: Side) -> np.ndarray:
    """Each record's address on one side folded into one uint64, its two halves xor-ed as the CPU reads them
    (no byte swap: the fold only has to be the same for the same address)."""
    view = records.view(_halves(records.dtype.itemsize, side))
    return np.asarray(view["a"] ^ view["b"])


def _fold_one(address: Address) -> int:
    return int.from_bytes(address[:8], "little") ^ int.from_bytes(address[8:16], "little")


class _PeerIndex:
    """The addresses some client has names for, folded: which rows of a batch may be one of them.

    Every row pays a bucket test (a multiplicative hash into a 64 KB table that stays in the CPU's cache); the
    few rows in a used bucket pay a binary search; the rows that pass it are looked up exactly in Python.
    """

    def __init__(self, addresses: Iterable[Address]) -> None:
        self._sorted = np.unique(np.array([_fold_one(address) for address in addresses], dtype=np.uint64))
        self._buckets = np.zeros(1 << 16, dtype=bool)
        self._buckets[_bucket(self._sorted)] = True

    def rows(self, folded: np.ndarray) -> np.ndarray:
        candidates = np.flatnonzero(self._buckets[_bucket(folded)])
        if not len(candidates):
            return candidates
        values = folded[candidates]
        at = np.searchsorted(self._sorted, values)
        at[at == len(self._sorted)] = 0
        return candidates[self._sorted[at] == values]


def _bucket(folded: np.ndarray) -> np.ndarray:
    return (folded * _HASH) >> _BUCKET_SHIFT


class NameSets:
    """Interned tuples of names, each known by a u32 id (0 = no names), the last MAX_SETS of them.

    Ids grow and are never given twice, so an id held by an old record either still reads as the names it was
    given or, once MAX_SETS newer sets were made, as () — never as someone else's names. A set still in use is
    given a fresh id when its own has aged past half the ring, so the names of live traffic do not age out.
    """

    def __init__(self, capacity: int = MAX_SETS) -> None:
        self._capacity = capacity
        self._slots: list[tuple[int, tuple[str, ...]]] = [(0, ())] * capacity
        self._ids: dict[tuple[str, ...], int] = {}
        self._next = 1
        self._lock = threading.Lock()  # interned on the ingest thread, read by every stream's decoder

    def intern(self, names: tuple[str, ...]) -> int:
        if not names:
            return 0
        with self._lock:
            known = self._ids.get(names)
            if known is not None and known > self._next - self._capacity // 2:
                return known
            set_id = self._next
            self._next += 1
            if self._next > 0xFFFF_FFFF:
                self._next = 1  # after four billion sets: old ids may come back; they have long been evicted
            slot = set_id % self._capacity
            evicted_id, evicted = self._slots[slot]
            if evicted_id and self._ids.get(evicted) == evicted_id:
                del self._ids[evicted]
            self._slots[slot] = (set_id, names)
            self._ids[names] = set_id
            return set_id

    def names(self, set_id: int) -> tuple[str, ...]:
        if not set_id:
            return ()
        stored_id, names = self._slots[set_id % self._capacity]
        return names if stored_id == set_id else ()

    def memory_bytes(self) -> int:
        """A rough figure: the slots and the index, plus the names' text."""
        with self._lock:
            text = sum(sum(len(name) + 49 for name in names) + 56 for names in self._ids)
        return self._capacity * 8 + len(self._ids) * 100 + text


class NameCache:
    """What each client learnt its peers are called, with expiry times (Cilium's per-endpoint FQDN cache).

    Bounds: MAX_PAIRS (client, peer) pairs in all, MAX_PEERS_PER_CLIENT per client, MAX_NAMES_PER_PAIR names
    per pair; the least recently learnt goes first. A pair with one name costs ~500 bytes (tracemalloc), so
    the cache stays under ~33 MB at its cap with one name a pair (~60 MB with four), and takes a few KB in a lab.

    `learn_*` and `annotate` run on the ingest thread; a lock keeps them whole should anything else call them.
    Times are wall-clock ns (time.time_ns(), or a record's stamped ts), so they compare with the records'.
    """

    def __init__(
        self, sets: NameSets, min_ttl_s: int = MIN_TTL_S, frontend_ip: Callable[[int], str | None] | None = None
    ) -> None:
        """`frontend_ip` gives the address of a service frontend by the id a translated record carries."""
        self.sets = sets
        self._frontend_ip = frontend_ip
        self._min_ttl_ns = min_ttl_s * NANOS
        self._clients: OrderedDict[Address, OrderedDict[Address, dict[str, int]]] = OrderedDict()
        self._pairs = 0
        self._peers = _PeerIndex(())
        self._peers_stale = False
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many (client, peer) pairs have names."""
        return self._pairs

    # --- learning ------------------------------------------------------------------------------------------

    def learn_dns(self, client: Address, message: DnsAnswer, now_ns: int) -> None:
        """A DNS response `client` received: each A/AAAA address is called the query and every CNAME."""
        ips = [address for address in map(record_address, message.ips) if address is not None]
        names = [canonical_name(name) for name in (message.query, *message.cnames)]
        names = [name for name in dict.fromkeys(names) if name]
        if not ips or not names:
            return
        expiry = now_ns + max(int(message.ttl) * NANOS, self._min_ttl_ns)
        with self._lock:
            for peer in ips:
                self._learn(client, peer, names, expiry)

    def learn_sni(self, client: Address, server: Address, name: str, now_ns: int) -> int:
        """A TLS ClientHello from `client` to `server` naming the server it wants (SNI). Returns the id of the
        name's own set (0 for no name), which the ClientHello's record carries so its flow can say which name
        this very packet asked for, wherever in the hello it was (the flow ring keeps only its first bytes)."""
        canonical = canonical_name(name)
        if not canonical:
            return 0
        with self._lock:
            self._learn(client, server, [canonical], now_ns + SNI_TTL_S * NANOS)
        return self.sets.intern((canonical,))

    def _learn(self, client: Address, peer: Address, names: Iterable[str], expiry: int) -> None:
        if not any(peer):
            return  # the unspecified address names nothing (and folds to every empty header's 0)
        peers = self._clients.get(client)
        if peers is None:
            peers = self._clients[client] = OrderedDict()
        self._clients.move_to_end(client)
        entry = peers.get(peer)
        if entry is None:
            entry = peers[peer] = {}
            self._pairs += 1
            self._peers_stale = True
        peers.move_to_end(peer)
        for name in names:
            entry[name] = max(entry.get(name, 0), expiry)
            if len(entry) > MAX_NAMES_PER_PAIR:
                del entry[min(entry, key=entry.__getitem__)]  # the one that expires first
        if len(peers) > MAX_PEERS_PER_CLIENT:
            peers.popitem(last=False)
            self._pairs -= 1
        while self._pairs > MAX_PAIRS:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        client, peers = next(iter(self._clients.items()))
        peers.popitem(last=False)
        self._pairs -= 1
        if not peers:
            del self._clients[client]
        self._peers_stale = True

    def memory_bytes(self) -> int:
        """An estimate of what the cache holds (tracemalloc: ~420 bytes a pair, ~70 a name), its name sets apart."""
        with self._lock:
            names = sum(
                len(name) + 49 for peers in self._clients.values() for entry in peers.values() for name in entry
            )
            return self._pairs * 420 + len(self._clients) * 400 + names

    # --- looking up ----------------------------------------------------------------------------------------

    def lookup(self, client: Address, peer: Address, now_ns: int) -> tuple[str, ...]:
        """The names `client` knows `peer` by at `now_ns`, sorted; a hit keeps them alive MIN_TTL_S longer, as
        Cilium keeps the names of an address a live connection still uses."""
        with self._lock:
            return self._lookup(client, peer, now_ns)

    def _lookup(self, client: Address, peer: Address, now_ns: int) -> tuple[str, ...]:
        peers = self._clients.get(client)
        entry = peers.get(peer) if peers is not None else None
        if not entry:
            return ()
        alive = sorted(name for name, expiry in entry.items() if expiry > now_ns)
        if len(alive) < len(entry):
            for name in [name for name, expiry in entry.items() if expiry <= now_ns]:
                del entry[name]
            if not entry:
                del peers[peer]  # type: ignore[union-attr]
                self._pairs -= 1
                self._peers_stale = True
                return ()
        keep = now_ns + self._min_ttl_ns
        for name in alive:
            if entry[name] < keep:
                entry[name] = keep
        return tuple(alive)

    def _peer_index(self) -> _PeerIndex:
        if self._peers_stale:
            self._peers = _PeerIndex(peer for peers in self._clients.values() for peer in peers)
            self._peers_stale = False
        return self._peers

    def annotate(self, batch: np.ndarray) -> None:
        """Set src_names / dst_names of a writable batch of records (before it is stored): dst_names = what the
        source calls the destination, src_names = what the destination calls the source (a reply's client is
        its destination). Rows whose addresses have no names anywhere cost one vectorised test.

        A record of a connection a service translated is named by the frontend its client asked for (the name
        resolved to the ClusterIP), whatever addresses the packet had where it was seen: the backend's side of
        the connection carries the service's name too."""
        if not self._pairs or not len(batch):
            return
        with self._lock:
            peers = self._peer_index()
            src = _Side(batch["saddr"], _fold(batch, "src"))
            dst = _Side(batch["daddr"], _fold(batch, "dst"))
            if self._frontend_ip is not None:
                self._as_asked(batch, src, dst, self._frontend_ip)
            for column, clients, named in (("dst_names", batch["saddr"], dst), ("src_names", batch["daddr"], src)):
                rows = peers.rows(named.folded)
                if len(rows):
                    batch[column][rows] = self._name_set_ids(clients[rows], named.addresses[rows], batch["ts"][rows])

    def _as_asked(self, batch: np.ndarray, src: _Side, dst: _Side, frontend_ip: Callable[[int], str | None]) -> None:
        """Put the frontend in place of the service's end of translated records: the destination of a request,
        the source of a reply. Per distinct frontend in the batch, not per record."""
        marked = np.flatnonzero(batch["policy_flags"] & XLATED_FLAG)
        if not len(marked):
            return
        numbers, which = np.unique(batch["rule"][marked], return_inverse=True)
        frontends = [record_address(frontend_ip(number) or "") for number in numbers.tolist()]
        known = np.array([frontend is not None for frontend in frontends])[which]
        raw = np.array([frontend or bytes(16) for frontend in frontends], dtype="V16")[which]
        folded = np.array([_fold_one(frontend or bytes(16)) for frontend in frontends], dtype=np.uint64)[which]
        reply = (batch["flags"][marked] & _REPLY) == _REPLY
        for side, chosen in ((dst, known & ~reply), (src, known & reply)):
            if chosen.any():
                side.replace(marked[chosen], raw[chosen], folded[chosen])

    def _name_set_ids(self, clients: np.ndarray, named: np.ndarray, ts: np.ndarray) -> list[int]:
        """The name-set id of each row: what its client calls its named address. A batch holds many packets of
        few connections, so each (client, peer) pair is looked up once per batch."""
        known: dict[tuple[bytes, bytes], int] = {}
        ids: list[int] = []
        for pair in zip(clients.tolist(), named.tolist(), strict=True):
            set_id = known.get(pair)
            if set_id is None:
                set_id = known[pair] = self.sets.intern(self._lookup(pair[0], pair[1], int(ts[len(ids)])))
            ids.append(set_id)
        return ids


class _Side:
    """One end of a batch's records as annotate reads it: the addresses and their folds, copied only when a
    translated record's frontend replaces some of them."""

    def __init__(self, addresses: np.ndarray, folded: np.ndarray) -> None:
        self.addresses = addresses
        self.folded = folded
        self._own = False

    def replace(self, rows: np.ndarray, addresses: np.ndarray, folded: np.ndarray) -> None:
        if not self._own:
            self.addresses, self._own = self.addresses.copy(), True
        self.addresses[rows] = addresses
        self.folded[rows] = folded
