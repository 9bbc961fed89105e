"""One ingest batch as the metric handlers read it: the flow's fields Hubble's handlers test, as columns.

Hubble's handlers read decoded flows: `flow.GetVerdict()`, `flow.GetL4().GetTCP()`, `flow.GetReply()`... The
agent decodes a flow only when a client asks for it, so here the same facts come from the record columns, with
the decoder's own rules (observer/parser: which endpoint owns an address, the traffic direction, the reply
state; an L7 record is FORWARDED and a reply when its message is a response), computed once per batch on first
use, however many handlers read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar, cast

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.names import EVENT_L7, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP
from flowscope.observer.endpoints import Snapshot
from flowscope.observer.events import F_IPV6, F_REPLY, F_REPLY_KNOWN
from flowscope.observer.filters.base import Batch
from flowscope.observer.filters.l7_rows import L7Lookup, L7Record
from flowscope.observer.l7.names import NameSets
from flowscope.observer.metrics.labels import Column
from flowscope.observer.parser import EndpointIndex, index_of
from flowscope.observer.parser.columns import Side, has_ip, has_l4

# Hubble's v1.FlowProtocol: the L7 protocol when the flow has an L7 record, else the L4 one, else none.
PROTOCOLS = ("Unknown flow", "TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP", "DNS", "HTTP", "Unknown L7")
_L4_CODES = {IPPROTO_TCP: 1, IPPROTO_UDP: 2, IPPROTO_ICMP: 3, IPPROTO_ICMPV6: 4, IPPROTO_SCTP: 5}
_L7_CODES = {"dns": 6, "http": 7}
_L4_TABLE = np.zeros(256, dtype=np.int64)
for _number, _code in _L4_CODES.items():
    _L4_TABLE[_number] = _code

FAMILIES = ("IPv4", "IPv6")
T = TypeVar("T")


@dataclass(frozen=True)
class Sources:
    """What the handlers name records with, beyond the records: the agent's registry (endpoints), its name
    sets (the DNS names of addresses), its L7 store (the messages behind L7 records) and the running kernel's
    drop reason names."""

    snapshots: Callable[[], Snapshot]
    names: NameSets | None = None
    l7: L7Lookup | None = None
    kernel_reasons: Mapping[int, str] = field(default_factory=dict)


class MetricsBatch:
    """A batch of records and the flow facts derived from it, each computed on first use."""

    def __init__(self, records: np.ndarray, sources: Sources) -> None:
        self.records = records
        self.sources = sources
        self._batch = Batch(records, np.zeros(0, dtype=np.uint64))
        self._memo: dict[object, Any] = {}

    def __len__(self) -> int:
        return len(self.records)

    def memo(self, key: object, compute: Callable[[], T]) -> T:
        """What `compute` gives, once per batch and key (a handler's context labels, say)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return cast(T, self._memo[key])

    @cached_property
    def index(self) -> EndpointIndex:
        return index_of(self.sources.snapshots())

    def entries(self, side: Side) -> np.ndarray:
        """The registry entry owning each record's source or destination address (world where none does)."""
        return self._batch.entries(self.index, side)

    @cached_property
    def directions(self) -> np.ndarray:
        """flow.TrafficDirection of each record, as the decoder gives it."""
        return self._batch.directions(self.index)

    @cached_property
    def l7_rows(self) -> np.ndarray:
        return np.flatnonzero(self.records["type"] == EVENT_L7)

    @cached_property
    def l7_entries(self) -> list[L7Record | None]:
        """The store entry behind each L7 record (in l7_rows' order); None where the store has none."""
        store = self.sources.l7
        if store is None:
            return [None] * len(self.l7_rows)
        return [store.get(seq) for seq in self.records["location"][self.l7_rows].tolist()]

    @cached_property
    def l7_kinds(self) -> np.ndarray:
        """Per record: 0 none, else the PROTOCOLS code of its L7 message (DNS, HTTP)."""
        kinds = np.zeros(len(self), dtype=np.int64)
        if len(self.l7_rows):
            kinds[self.l7_rows] = [0 if e is None else _L7_CODES.get(e.kind, 8) for e in self.l7_entries]
        return kinds

    @cached_property
    def verdicts(self) -> np.ndarray:
        """flow.Verdict of each record: an L7 flow is FORWARDED, as the decoder makes it."""
        verdicts = self.records["verdict"].astype(np.int64)
        verdicts[self.l7_rows] = flow_pb2.FORWARDED
        return verdicts

    @cached_property
    def l4(self) -> np.ndarray:
        """Records whose flow has an l4 message (TCP, UDP, SCTP, ICMPv4 or ICMPv6)."""
        return has_l4(self.records) & (_L4_TABLE[self.records["l4_proto"]] != 0)

    @cached_property
    def ip(self) -> np.ndarray:
        """Records whose flow has an IP message."""
        return has_ip(self.records)

    @cached_property
    def l4_protocols(self) -> np.ndarray:
        """Per record, the PROTOCOLS code of its L4 protocol (0 without one)."""
        return np.where(self.l4, _L4_TABLE[self.records["l4_proto"]], 0)

    @cached_property
    def protocols(self) -> Column:
        """Hubble's protocol label (v1.FlowProtocol): DNS or HTTP for an L7 flow with its message, else TCP,
        UDP, ICMPv4, ICMPv6, SCTP, else "Unknown flow"."""
        return Column.table(np.where(self.l7_kinds != 0, self.l7_kinds, self.l4_protocols), PROTOCOLS)

    @cached_property
    def replies(self) -> np.ndarray:
        """flow.reply of each record: conntrack's word, or for an L7 flow whether its message is a response."""
        both = F_REPLY_KNOWN | F_REPLY
        reply = (self.records["flags"] & both) == both  # reply_state() == IS_REPLY, on the byte itself
        if len(self.l7_rows):
            responses = [e is not None and e.l7_type == flow_pb2.RESPONSE for e in self.l7_entries]
            known = np.array([e is not None for e in self.l7_entries], dtype=bool)
            reply[self.l7_rows[known]] = np.array(responses, dtype=bool)[known]
        return reply

    @cached_property
    def families(self) -> Column:
        """IPv4 or IPv6 (read only where `ip` holds)."""
        return Column.table((self.records["flags"] & F_IPV6) != 0, FAMILIES)
