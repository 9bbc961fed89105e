"""tcp: `hubble_tcp_flags_total{flag, family}`, TCP flags of forwarded (or redirected) flows.

As Hubble's: a flow counts once for each of FIN, SYN (without ACK), SYN-ACK and RST it carries; family is the
IP version (IPv4, IPv6).
"""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.common.names import IPPROTO_TCP
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.handler import Handler
from flowscope.observer.metrics.labels import Column

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


class TcpHandler(Handler):
    name = "tcp"

    def setup(self) -> None:
        self.flags = self.counter("tcp_flags_total", "TCP flag occurrences", ["flag", "family"])

    def count(self, batch: MetricsBatch) -> None:
        verdicts = batch.verdicts
        tcp = (
            ((verdicts == flow_pb2.FORWARDED) | (verdicts == flow_pb2.REDIRECTED))
            & batch.l4
            & batch.ip
            & (batch.records["l4_proto"] == IPPROTO_TCP)
        )
        if not tcp.any():
            return
        bits = batch.records["tcp_flags"]
        syn = (bits & SYN) != 0
        acked = (bits & ACK) != 0
        for flag, has in (
            ("FIN", (bits & FIN) != 0),
            ("SYN", syn & ~acked),
            ("SYN-ACK", syn & acked),
            ("RST", (bits & RST) != 0),
        ):
            rows = np.flatnonzero(tcp & has)
            if len(rows):
                self.add(self.flags, batch, rows, [Column.constant(flag, len(rows)), batch.families.rows(rows)])
