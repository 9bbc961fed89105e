"""Which way a kernel drop went in its connection: the datapath's conntrack, asked by the agent.

The kfree_skb program (bpf/kdrop.c) sees a packet where the kernel frees it, away from the tc hooks that track
connections, so its records came without FS_F_REPLY_KNOWN: is_reply unknown. A late reply, a DNS answer that
arrives after dig gave up (NO_SOCKET in the client), was then a flow from the server's port to the client's
ephemeral one that nothing turned around, and `flowscope top` and `map` drew it as a connection of its own:
`(world) → default/client UDP/49568` (with is_reply unknown a reply from a ClusterIP is not named by its
service either).

The connection is in the conntrack table of the side the packet was dropped on: the endpoint the drop's network
namespace belongs to (the record's ep_id, 0 for the node), which keys its entries with its own id. So the
agent looks each record up there before the batch is stored, where the datapath would (ConntrackTable.find),
and marks it as the datapath marks a packet it tracks: REPLY_KNOWN, and REPLY when the packet goes against the
end that opened the connection. A connection through a service is in the table under the backend the datapath
chose (services are translated before conntrack), so an end that is a frontend is tried as each of its backends.
A record whose connection is not there (gone, or never seen by this node's hooks) stays unknown, as in Hubble.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from flowscope.observer.datapath.conntrack import CT_F_MIDSTREAM, ConntrackTable, monotonic_ns
from flowscope.observer.datapath.lbmaps import Frontend
from flowscope.observer.events import F_IPV6, F_L4, F_REPLY, F_REPLY_KNOWN
from flowscope.observer.ingest import BatchSource

_PORTED = (6, 17, 132)  # TCP, UDP, SCTP: the protocols whose ports the key and the record carry alike


class End:
    """One end of a packet as the conntrack key holds it: raw address bytes (4 or 16) and port."""

    __slots__ = ("address", "port")

    def __init__(self, address: bytes, port: int) -> None:
        self.address, self.port = address, port

    def order(self) -> tuple[int, ...]:
        """What fs_ct4_source_end / fs_ct6_source_end compare: host-order (little-endian) words, then the port."""
        words = struct.unpack("<I" if len(self.address) == 4 else "<2Q", self.address)
        return (*words, self.port)


def conntrack_key(source: End, destination: End, proto: int, scope: int) -> tuple[bytes, int]:
    """(the key as its table holds it, the end 0 or 1 the source took): fs_ct_key_fill (conntrack.h)."""
    end = 0 if source.order() <= destination.order() else 1
    ends = (source, destination) if end == 0 else (destination, source)
    family = 6 if len(source.address) == 16 else 4
    key = ends[0].address + ends[1].address + struct.pack("<HHBBH", ends[0].port, ends[1].port, proto, family, scope)
    return key, end


class ReplyMarks:
    """A BatchSource: the kernel drop program's records, each marked with its direction when conntrack knows its
    connection (the module docstring says why and how)."""

    def __init__(
        self, source: BatchSource, conntrack: ConntrackTable, frontends: Callable[[], Sequence[Frontend]]
    ) -> None:
        self._source = source
        self._conntrack = conntrack
        self._frontends = frontends  # read at most once per batch, and only for a record not found as it is

    def read_batch(self, timeout: float) -> np.ndarray:
        batch = self._source.read_batch(timeout)
        if len(batch):
            self.mark(batch)
        return batch

    def mark(self, records: np.ndarray) -> int:
        """Set the reply flags of the records whose connection conntrack holds; how many were marked."""
        wanted = np.flatnonzero(
            ((records["flags"] & (F_L4 | F_REPLY_KNOWN)) == F_L4) & np.isin(records["l4_proto"], _PORTED)
        )
        if not len(wanted):
            return 0
        now, marked = monotonic_ns(), 0
        backends: dict[tuple[bytes, int, int], list[End]] | None = None
        rows = records[wanted]  # each column as Python values once: reading a numpy record field by field is slow
        columns = zip(
            wanted.tolist(),
            rows["flags"].tolist(),
            rows["saddr"].tolist(),
            rows["sport"].tolist(),
            rows["daddr"].tolist(),
            rows["dport"].tolist(),
            rows["l4_proto"].tolist(),
            rows["ep_id"].tolist(),
            strict=True,
        )
        for index, flags, saddr, sport, daddr, dport, proto, scope in columns:
            width = 16 if flags & F_IPV6 else 4
            source, destination = End(saddr[:width], sport), End(daddr[:width], dport)
            reply = self._direction(source, destination, proto, scope, now)
            if reply is None:
                backends = self._backends() if backends is None else backends
                for other_source, other_destination in _translations(source, destination, proto, backends):
                    reply = self._direction(other_source, other_destination, proto, scope, now)
                    if reply is not None:
                        break
            if reply is not None:
                records["flags"][index] |= F_REPLY_KNOWN | (F_REPLY if reply else 0)
                marked += 1
        return marked

    def _direction(self, source: End, destination: End, proto: int, scope: int, now: int) -> bool | None:
        """Whether a packet from `source` to `destination` is a reply in its connection; None: no live one, or
        one first seen mid-stream, whose direction the datapath does not know either."""
        key, end = conntrack_key(source, destination, proto, scope)
        entry = self._conntrack.find(key)
        if entry is None or int(entry["expires"]) < now or int(entry["flags"]) & CT_F_MIDSTREAM:
            return None
        return end != int(entry["initiator"]) & 1

    def _backends(self) -> dict[tuple[bytes, int, int], list[End]]:
        """Each frontend (address bytes, port, protocol) with its backends, as the datapath translates now."""
        table: dict[tuple[bytes, int, int], list[End]] = {}
        for frontend in self._frontends():
            ends = [End(ipaddress.ip_address(b.address).packed, b.port) for b in frontend.backends]
            table[(ipaddress.ip_address(frontend.address).packed, frontend.port, frontend.protocol)] = ends
        return table


def _translations(
    source: End, destination: End, proto: int, backends: dict[tuple[bytes, int, int], list[End]]
) -> Iterator[tuple[End, End]]:
    """The packet's ends as conntrack may know them: a frontend on either side replaced by each of its backends."""
    for backend in backends.get((source.address, source.port, proto), ()):
        yield backend, destination
    for backend in backends.get((destination.address, destination.port, proto), ()):
        yield source, backend
