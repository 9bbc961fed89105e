"""The L7 store: what an L7 flow says beyond its packet headers, kept beside the flow ring.

The flow ring holds fixed 248-byte records, which is what makes it cheap; a DNS answer or an HTTP request line
does not fit in one, and most flows have none. So an L7 message lives here, as a small frozen entry, and its
flow in the ring is an ordinary record (type 129, Cilium's access-log type) whose `location` holds the entry's
sequence number. The decoder looks the entry up when a client is sent the flow; the L7 filters look up the
entries of the type-129 rows of a batch.

Bounded: a ring of `capacity` entries (default 16,383, about a quarter of the flow ring's 65,535, since L7
messages are a fraction of the flows). A reader asking for an entry that was overwritten gets None and shows
the flow without its L7 fields. Measured with tracemalloc (tests/l7/test_l7_store.py), a typical entry (an
HTTP response with a 50-character URL: its serialized Layer7, Summary and filter columns) costs about 650 bytes
of Python objects, so a full store of 16,383 costs about 11 MB (a flow ring of 65,535 records: 16 MB).
`memory_bytes()` reports the running sum of the entries' estimated sizes (`entry_bytes`, within 10% of that
measure), for the agent's memory figure.

One writer (the ingest thread) and many readers (the server's streams): each slot holds (sequence, entry) as
one tuple, replaced in one assignment, so a reader either sees the entry it asked for or knows it is gone. No
lock is needed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

DEFAULT_CAPACITY = 16383
_PAIR = 56  # the tuple holding one header's name and value
_ENTRY_OVERHEAD = 200  # the dataclass instance and its slot tuple, beyond the values: fitted to tracemalloc


@dataclass(frozen=True, slots=True)
class L7Entry:
    """One L7 message: its Layer7 message ready to send, and the columns filters test.

    `layer7` is a serialized flow.Layer7 (type, latency_ns, dns or http), parsed into the flow only when it is
    sent; `summary` is Hubble's Summary text. The columns repeat what filters need without a protobuf parse.
    """

    layer7: bytes
    summary: str
    truncated: bool = False
    kind: str = ""  # "dns" | "http"
    l7_type: int = 0  # flow.L7FlowType: REQUEST 1, RESPONSE 2
    dns_query: str = ""
    dns_rcode: int = 0
    http_code: int = 0
    http_method: str = ""
    http_url: str = ""
    http_path: str = ""
    http_headers: tuple[tuple[str, str], ...] = ()


def entry_bytes(entry: L7Entry) -> int:
    """An estimate of what one entry costs in memory: its values' sizes plus a measured fixed overhead. Small
    ints, booleans, "" and the kind literals are objects Python shares, so they cost the entry nothing."""
    size = _ENTRY_OVERHEAD + sys.getsizeof(entry.layer7) + sys.getsizeof(entry.summary)
    for text in (entry.dns_query, entry.http_method, entry.http_url, entry.http_path):
        if text:
            size += sys.getsizeof(text)
    if entry.http_code > 256:
        size += sys.getsizeof(entry.http_code)
    if entry.http_headers:
        size += sys.getsizeof(entry.http_headers)
        size += sum(sys.getsizeof(k) + sys.getsizeof(v) + _PAIR for k, v in entry.http_headers)
    return size


class L7Store:
    """A bounded ring of L7 entries, addressed by sequence number (1, 2, ...)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"the L7 store needs room for at least one entry, not {capacity}")
        self.capacity = capacity
        self._slots: list[tuple[int, L7Entry, int] | None] = [None] * capacity
        self._last = 0
        self._bytes = 0
        self.evicted = 0  # entries overwritten by newer ones

    def add(self, entry: L7Entry) -> int:
        """Keep `entry`, overwriting the oldest when full; its sequence number."""
        seq = self._last + 1
        index = seq % self.capacity
        old = self._slots[index]
        size = entry_bytes(entry)
        if old is not None:
            self._bytes -= old[2]
            self.evicted += 1
        self._slots[index] = (seq, entry, size)
        self._bytes += size
        self._last = seq
        return seq

    def get(self, seq: int) -> L7Entry | None:
        """The entry of `seq`, or None when it was never added or has been overwritten."""
        if seq <= 0 or seq > self._last:
            return None
        slot = self._slots[seq % self.capacity]
        if slot is None or slot[0] != seq:
            return None
        return slot[1]

    def __len__(self) -> int:
        return min(self._last, self.capacity)

    @property
    def last(self) -> int:
        """The newest sequence number (0 before the first entry)."""
        return self._last

    def memory_bytes(self) -> int:
        """What the entries held now cost, estimated per entry (entry_bytes) when each was added."""
        return self._bytes + sys.getsizeof(self._slots)
