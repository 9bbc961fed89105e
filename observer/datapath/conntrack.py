"""The conntrack tables (`ct4` and `ct6`) as the agent sees them: whole-table reads as numpy arrays, in one
key layout for both families, and the sweep that reports what quiet connections counted and nobody reported yet.

The tables are hash tables kept in BPF arrays (bpf/include/flowscope/cttable.h); the agent maps them read-only,
so a read is a pass over memory for the slots that hold a connection, not a system call per entry.

Why the agent sweeps: at monitor aggregation medium and above a connection reports only when something happens
(bpf/include/flowscope/aggregate.h), so the packets after its last report — the final ACK of a TCP close, the
last datagrams of a UDP exchange — would stay counted in the map and never reach anyone. Once per tick the agent
reads the map in a few batch syscalls, picks the entries whose pending counts are older than the interval (or
that are stale), and runs the datapath's own `ct_flush` program on each with BPF_PROG_TEST_RUN. That program
claims the counts with the same atomic exchange a packet uses and writes the same kind of record into the same
ring buffer: one mechanism, so every packet is reported exactly once whichever way its report comes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import mmap
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowscope.observer.datapath.bpfsys import map_info
from flowscope.observer.datapath.testrun import prog_test_run

ETH_HLEN = 14  # a test run's packet starts with an Ethernet header's worth of bytes; the key follows

# The agent's view of a key of either family: ct6's layout, IPv4 addresses in the first 4 bytes of each.
KEY_DTYPE = np.dtype(
    [("addr", "V16", (2,)), ("port", "<u2", (2,)), ("proto", "u1"), ("family", "u1"), ("scope", "<u2")]
)
KEY4_DTYPE = np.dtype(
    [("addr", "V4", (2,)), ("port", "<u2", (2,)), ("proto", "u1"), ("family", "u1"), ("scope", "<u2")]
)
DIR_DTYPE = np.dtype(
    [
        ("packets", "<u8"),
        ("bytes", "<u8"),
        ("pend_packets", "<u8"),
        ("pend_bytes", "<u8"),
        ("pend_flags", "<u8"),
        ("last_report", "<u8"),
        ("ifindex", "<u4"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("point", "u1"),
        ("flags_seen", "u1"),
        ("to_host", "u1"),  # the datapath's cache: 0 not asked yet, 1 no, 2 yes
        ("pad", "V1"),
        ("born_s", "<u4"),  # the original direction's: when the connection was first seen, monotonic seconds
    ]
)
ENTRY_DTYPE = np.dtype(
    [
        ("expires", "<u8"),
        ("identity", "<u4", (2,)),
        ("policy_rev", "<u4"),
        ("rule", "<u4"),
        ("drop_reason", "<u4"),
        ("initiator", "u1"),
        ("flags", "u1"),
        ("match", "u1"),
        ("seen", "u1", (2,)),
        ("closing", "u1", (2,)),
        ("lb_checked", "u1"),
        ("frontend", "<u2"),
        ("pad2", "V2"),
        ("dir", DIR_DTYPE, (2,)),
    ]
)
SLOT4_DTYPE = np.dtype([("key", KEY4_DTYPE), ("busy", "<u8"), ("e", ENTRY_DTYPE)])
SLOT6_DTYPE = np.dtype([("key", KEY_DTYPE), ("busy", "<u8"), ("pad", "V40"), ("e", ENTRY_DTYPE)])
assert (KEY_DTYPE.itemsize, KEY4_DTYPE.itemsize, DIR_DTYPE.itemsize, ENTRY_DTYPE.itemsize) == (40, 16, 64, 168)
assert (SLOT4_DTYPE.itemsize, SLOT6_DTYPE.itemsize) == (192, 256)

NO_REVISION = 0xFFFFFFFF  # a policy revision no agent reaches (observer/policy/manager.py counts from 1)
CT_F_JUDGED = 0x01
CT_F_DENIED = 0x02
CT_F_MIDSTREAM = 0x04  # first seen mid-stream: which end opened it is not known (maps.h)
ORIGINAL, REPLY = 0, 1
WINDOW = 4  # FS_CT_WINDOW (cttable.h): the slots a key may live in, from its home slot on
_HASH_MULTIPLIER = 0x9E3779B97F4A7C15
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Direction:
    packets: int  # every packet seen this way, reported or not
    bytes: int
    pending_packets: int  # of those, counted but not reported yet
    pending_bytes: int
    ifindex: int
    point: int  # observation point (trace subtype) where this direction is seen
    flags_seen: int  # every TCP flag seen this way


@dataclass(frozen=True)
class Connection:
    """One ct entry, oriented: `source` opened the connection."""

    scope: int  # endpoint id of the side keeping it; 0 = the node's device
    proto: int
    source: str
    source_port: int
    destination: str
    destination_port: int
    original: Direction
    reply: Direction
    denied: bool
    policy_rev: int

    @classmethod
    def of(cls, key: np.void, entry: np.void) -> Connection:
        opener = int(entry["initiator"]) & 1
        family = int(key["family"])
        addrs = [_address(bytes(key["addr"][i]), family) for i in (0, 1)]
        ports = [int(key["port"][i]) for i in (0, 1)]
        return cls(
            scope=int(key["scope"]),
            proto=int(key["proto"]),
            source=addrs[opener],
            source_port=ports[opener],
            destination=addrs[opener ^ 1],
            destination_port=ports[opener ^ 1],
            original=_direction(entry["dir"][ORIGINAL]),
            reply=_direction(entry["dir"][REPLY]),
            denied=bool(int(entry["flags"]) & CT_F_DENIED),
            policy_rev=int(entry["policy_rev"]),
        )


def _address(raw: bytes, family: int) -> str:
    return str(ipaddress.ip_address(raw if family == 6 else raw[:4]))


def _direction(d: np.void) -> Direction:
    return Direction(
        packets=int(d["packets"]) + int(d["pend_packets"]),
        bytes=int(d["bytes"]) + int(d["pend_bytes"]),
        pending_packets=int(d["pend_packets"]),
        pending_bytes=int(d["pend_bytes"]),
        ifindex=int(d["ifindex"]),
        point=int(d["point"]),
        flags_seen=int(d["flags_seen"]),
    )


def monotonic_ns() -> int:
    """The clock of bpf_ktime_get_ns(), which the entries' times are in."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class ConntrackTable:
    """The agent's handle on `ct4` and `ct6` and on the program that flushes one of their entries."""

    def __init__(self, bpf: Any, flush_fd: int, seed: int = 0) -> None:
        """`seed`: the tables' FS_CT_SEED, which says where a key lives (needed by `find` only)."""
        self._seed = seed
        self._tables = (bpf[b"ct4"], bpf[b"ct6"])
        self._used_table = bpf[b"ct_used"]
        self._flush_fd = flush_fd
        self._maps: list[mmap.mmap] = []
        self._slots = [self._map(self._tables[0], SLOT4_DTYPE), self._map(self._tables[1], SLOT6_DTYPE)]
        self.slots = len(self._slots[0])  # of each table
        self._used = self._map(self._used_table, np.dtype("<u8"))  # a bit per slot: ct4's, then ct6's
        if len(self._used) * 64 != 2 * self.slots:
            raise RuntimeError(f"ct_used has {len(self._used) * 64} bits for {2 * self.slots} slots")

    def _map(self, table: Any, dtype: np.dtype) -> np.ndarray:
        """A table's values, mapped read-only."""
        fd = int(table.map_fd)
        info = map_info(fd)
        if info.value_size != dtype.itemsize:
            raise RuntimeError(f"{info.name} has {info.value_size}-byte values, conntrack.py expects {dtype.itemsize}")
        size = -(-info.max_entries * dtype.itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
        mapped = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        self._maps.append(mapped)
        return np.frombuffer(mapped, dtype, info.max_entries)

    def forget_verdicts(self) -> int:
        """Make every connection's policy verdict out of date, so that its next packet is judged again; how many.

        For tables an earlier agent left (ct_pins.py): their verdicts were taken under that agent's revisions,
        which this agent's own count from 0 would meet again, with another policy. NO_REVISION is one no agent
        reaches; only `policy_rev` is written (a 4-byte store), which nothing but a judgement writes."""
        forgotten = 0
        for table, dtype, held in zip(self._tables, (SLOT4_DTYPE, SLOT6_DTYPE), self._held_indexes(), strict=True):
            fd = int(table.map_fd)
            size = -(-map_info(fd).max_entries * dtype.itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
            with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mapped:
                revisions = np.frombuffer(mapped, dtype, self.slots)["e"]["policy_rev"]
                revisions[held] = NO_REVISION
                del revisions
            forgotten += len(held)
        return forgotten

    def close(self) -> None:
        """Unmap the tables (a mapping still lent to an array someone kept goes with that array)."""
        self._slots.clear()
        del self._used
        for mapped in self._maps:
            with contextlib.suppress(BufferError):
                mapped.close()
        self._maps.clear()

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, entries) of every connection, IPv4's first, as arrays of KEY_DTYPE and ENTRY_DTYPE."""
        slots4, slots6 = (slots[slots["key"]["family"] != 0] for slots in self._held())
        keys4 = slots4["key"]
        widened = np.zeros(len(keys4), KEY_DTYPE)
        addr = widened["addr"].view("u1").reshape(-1, 2, 16)
        addr[:, :, :4] = keys4["addr"].view("u1").reshape(-1, 2, 4)
        for field in ("port", "proto", "family", "scope"):
            widened[field] = keys4[field]
        return np.concatenate([widened, slots6["key"]]), np.concatenate([slots4["e"], slots6["e"]])

    def _held(self) -> list[np.ndarray]:
        """Copies of the slots ct_used marks, of each table (a slot being written may be among them, empty)."""
        return [slots[held] for slots, held in zip(self._slots, self._held_indexes(), strict=True)]

    def _held_indexes(self) -> list[np.ndarray]:
        """The indexes of the slots ct_used marks, of each table."""
        bits = np.unpackbits(self._used.view(np.uint8), bitorder="little")
        return [np.flatnonzero(bits[i * self.slots : (i + 1) * self.slots]) for i in range(len(self._slots))]

    def find(self, key: bytes) -> np.void | None:
        """A copy of the entry of connection `key` (as its own table has it: 16 bytes for ct4, 40 for ct6), or
        None: looked for where the datapath looks (fs_ct_find), its home slot and the rest of its window, so one
        connection costs a few reads of memory, whatever the tables hold."""
        slots = self._slots[len(key) == KEY_DTYPE.itemsize]
        home = home_slot(key, self._seed)
        for step in range(WINDOW):
            slot = slots[(home + step) & (self.slots - 1)]
            if slot["key"].tobytes() == key:
                entry: np.void = slot["e"].copy()
                return entry
        return None

    def connections(self) -> list[Connection]:
        keys, entries = self.read()
        return [Connection.of(k, e) for k, e in zip(keys, entries, strict=True)]

    def clear(self) -> None:
        """Forget every connection: every slot written empty (tests and benchmarks, with no traffic going)."""
        for table, slots in zip(self._tables, self._slots, strict=True):
            for index in np.flatnonzero(slots["key"]["family"]):
                table[table.Key(int(index))] = table.Leaf()
        for word in np.flatnonzero(self._used):
            self._used_table[self._used_table.Key(int(word))] = self._used_table.Leaf(0)

    def sweep(self, interval_ns: int, now_ns: int | None = None) -> int:
        """Report the pending counts of every connection whose last report is at least `interval_ns` old, and
        remove stale entries (after reporting all they held); how many records that made."""
        now = monotonic_ns() if now_ns is None else now_ns
        keys, entries = self.read()
        if not len(keys):
            return 0
        dirs = entries["dir"]
        quiet = (dirs["pend_packets"] > 0) & (now - dirs["last_report"].astype(np.int64) >= interval_ns)
        due = quiet.any(axis=1) | (entries["expires"] < now)
        return sum(self.flush(key.tobytes(), interval_ns) for key in keys[due])

    def flush(self, key: bytes, min_age_ns: int) -> int:
        """Run ct_flush on one entry (its key as KEY_DTYPE bytes): report the directions whose last report is
        at least `min_age_ns` old (everything, and remove it, when it is stale); how many records that made."""
        ipv6, raw = _table_key(key)
        request = bytes(ETH_HLEN) + raw.ljust(KEY_DTYPE.itemsize, b"\0")
        request += struct.pack("<IIQ", ipv6, 0, max(min_age_ns, 0))
        return prog_test_run(self._flush_fd, request).retval


def home_slot(key: bytes, seed: int) -> int:
    """fs_ct_home (cttable.h): a multiply-xorshift over the key's 64-bit words, from the seed."""
    h = seed
    for (word,) in struct.iter_unpack("<Q", key):
        h = ((h ^ word) * _HASH_MULTIPLIER) & _U64
        h ^= h >> 29
    return h & 0xFFFFFFFF


def _table_key(key: bytes) -> tuple[bool, bytes]:
    """A KEY_DTYPE key as its own table has it: (whether it is ct6's, the key's bytes)."""
    record = np.frombuffer(key, KEY_DTYPE)[0]
    if int(record["family"]) == 6:
        return True, key
    narrow = np.zeros(1, KEY4_DTYPE)
    narrow["addr"].view("u1").reshape(2, 4)[:] = np.frombuffer(key[:32], "u1").reshape(2, 16)[:, :4]
    for field in ("port", "proto", "family", "scope"):
        narrow[field] = record[field]
    return False, narrow.tobytes()
