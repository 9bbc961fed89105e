"""tcp_flags: TCP packets carrying every flag set in one of the given TCPFlags (several are ORed).

The header column holds the flags byte (FIN ... CWR). NS lives in the byte before it and is not a column, so
an entry that asks for NS reads the captured packet of the few records that pass every other test.
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.filters.base import Batch, FilterContext, Predicate
from flowscope.observer.parser.columns import has_l4
from flowscope.observer.parser.packet import IPPROTO_TCP, TCP_NS, parse_packet

_BITS = {
    "FIN": 0x01,
    "SYN": 0x02,
    "RST": 0x04,
    "PSH": 0x08,
    "ACK": 0x10,
    "URG": 0x20,
    "ECE": 0x40,
    "CWR": 0x80,
}


def _required(flags: flow_pb2.TCPFlags) -> tuple[int, bool]:
    """The flags byte an entry requires, and whether it requires NS."""
    return sum(bit for name, bit in _BITS.items() if getattr(flags, name)), flags.NS


def _with_ns(records: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which of the given rows have the NS flag set in their captured TCP header."""
    hit = np.zeros(len(records), dtype=bool)
    for row in np.flatnonzero(rows):
        record = records[row]
        data = bytes(record["data"])[: int(record["len_cap"])]
        flags = parse_packet(data).tcp_flags if data else None
        hit[row] = flags is not None and bool(flags & TCP_NS)
    return hit


def build(ff: flow_pb2.FlowFilter, ctx: FilterContext) -> list[Predicate]:
    if not ff.tcp_flags:
        return []
    entries = [_required(flags) for flags in ff.tcp_flags]

    def by_tcp_flags(batch: Batch) -> np.ndarray:
        records = batch.records
        tcp = has_l4(records) & (records["l4_proto"] == IPPROTO_TCP)
        present = records["tcp_flags"]
        hit = np.zeros(len(batch), dtype=bool)
        for byte, ns in entries:
            match = tcp & ((present & byte) == byte)
            if ns:
                match = _with_ns(records, match & ~hit)
            hit |= match
        return hit

    return [by_tcp_flags]
