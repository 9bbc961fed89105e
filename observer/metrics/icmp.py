"""icmp: `hubble_icmp_total{family, type}`, ICMP messages by IP family and gopacket's name of their type and
code ("EchoRequest", "DestinationUnreachable(Port)"), as Hubble's handler labels them."""

from __future__ import annotations

import numpy as np

from flowscope.common.icmp import ICMPV4_TYPES, ICMPV6_TYPES, icmp_type_code
from flowscope.common.names import IPPROTO_ICMP, IPPROTO_ICMPV6
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.handler import Handler
from flowscope.observer.metrics.labels import Column


def _type_name(key: int) -> str:
    v6, rest = divmod(key, 1 << 16)
    icmp_type, code = divmod(rest, 256)
    return icmp_type_code(ICMPV6_TYPES if v6 else ICMPV4_TYPES, icmp_type, code)


class IcmpHandler(Handler):
    name = "icmp"

    def setup(self) -> None:
        self.messages = self.counter("icmp_total", "Number of ICMP messages", ["family", "type"])

    def count(self, batch: MetricsBatch) -> None:
        proto = batch.records["l4_proto"]
        v6 = proto == IPPROTO_ICMPV6
        rows = np.flatnonzero(batch.l4 & ((proto == IPPROTO_ICMP) | v6))
        if not len(rows):
            return
        records = batch.records[rows]
        keys = v6[rows] * (1 << 16) + (records["sport"].astype(np.int64) & 0xFF) * 256 + (records["dport"] & 0xFF)
        families = Column.table(v6[rows], ("IPv4", "IPv6"))
        self.add(self.messages, batch, rows, [families, Column.of(keys, _type_name)])
