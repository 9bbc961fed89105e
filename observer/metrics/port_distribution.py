"""port-distribution: `hubble_port_distribution_total{protocol, port}`, the destination ports of forwarded
flows that are not replies (ICMP counts under port "0"), as Hubble's handler counts them."""

from __future__ import annotations

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.metrics.batch import PROTOCOLS, MetricsBatch
from flowscope.observer.metrics.handler import Handler
from flowscope.observer.metrics.labels import Column

_ICMP = (PROTOCOLS.index("ICMPv4"), PROTOCOLS.index("ICMPv6"))


class PortDistributionHandler(Handler):
    name = "port-distribution"

    def setup(self) -> None:
        self.ports = self.counter(
            "port_distribution_total", "Numbers of packets distributed by destination port", ["protocol", "port"]
        )

    def count(self, batch: MetricsBatch) -> None:
        rows = np.flatnonzero((batch.verdicts == flow_pb2.FORWARDED) & batch.l4 & ~batch.replies)
        if not len(rows):
            return
        protocols = batch.l4_protocols[rows]
        ports = np.where(np.isin(protocols, _ICMP), 0, batch.records["dport"][rows])
        self.add(self.ports, batch, rows, [Column.table(protocols, PROTOCOLS), Column.of(ports, str)])
