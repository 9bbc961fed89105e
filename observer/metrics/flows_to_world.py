"""flows-to-world: `hubble_flows_to_world_total{protocol, verdict}`, flows leaving for the world (a destination
with the reserved world identity) that are known not to be replies, as Hubble's handler counts them.

Options: `any-drop` counts dropped flows too (by default only forwarded ones), `port` adds the destination port
as a label (TCP, UDP, SCTP; "" otherwise), `syn-only` counts a TCP flow only for its SYN (a connection once).
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.names import IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP
from flowscope.observer.events import F_REPLY, F_REPLY_KNOWN
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.handler import VERDICTS, Handler
from flowscope.observer.metrics.labels import Column
from flowscope.observer.metrics.tcp import ACK, SYN

_WORLD_LABELS = frozenset({"reserved:world", "reserved:world-ipv4", "reserved:world-ipv6"})


class FlowsToWorldHandler(Handler):
    name = "flows-to-world"
    option_keys = ("any-drop", "port", "syn-only")

    def setup(self) -> None:
        self.any_drop = "any-drop" in self.options
        self.include_port = "port" in self.options
        self.syn_only = "syn-only" in self.options
        labels = ["protocol", "verdict", *(["port"] if self.include_port else [])]
        self.flows = self.counter("flows_to_world_total", "Total number of flows to reserved:world", labels)
        self._world: tuple[object, np.ndarray] | None = None

    def count(self, batch: MetricsBatch) -> None:
        records, verdicts = batch.records, batch.verdicts
        counted = verdicts == flow_pb2.FORWARDED
        if self.any_drop:
            counted |= verdicts == flow_pb2.DROPPED
        not_reply = (records["flags"] & (F_REPLY_KNOWN | F_REPLY)) == F_REPLY_KNOWN
        wanted = counted & not_reply & self._to_world(batch)
        if self.syn_only:
            tcp = batch.l4 & (records["l4_proto"] == IPPROTO_TCP)
            first = (records["tcp_flags"] & (SYN | ACK)) == SYN
            wanted &= ~tcp | first
        rows = np.flatnonzero(wanted)
        if not len(rows):
            return
        columns = [batch.protocols.rows(rows), Column.table(verdicts[rows], VERDICTS)]
        if self.include_port:
            ported = batch.l4[rows] & np.isin(records["l4_proto"][rows], (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP))
            ports = np.where(ported, records["dport"][rows].astype(np.int64), -1)
            columns.append(Column.of(ports + 1, lambda number: str(number - 1) if number else ""))
        self.add(self.flows, batch, rows, columns)

    def _to_world(self, batch: MetricsBatch) -> np.ndarray:
        """Records whose destination's endpoint carries a reserved world label."""
        index = batch.index
        if self._world is None or self._world[0] is not index:
            is_world = index.matching(lambda info: not _WORLD_LABELS.isdisjoint(info.labels))
            self._world = (index, is_world)
        return self._world[1][batch.entries("dst")]
