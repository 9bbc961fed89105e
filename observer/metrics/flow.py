"""flow: `hubble_flows_processed_total{protocol, type, subtype, verdict}`, every flow the agent saw.

Labels as Hubble's flow handler gives them: type Trace (subtype the observation point, "to-endpoint"...),
Drop, PolicyVerdict, Capture, L7 (subtype DNS or HTTP), or Unknown (subtype the event type's number); protocol
as v1.FlowProtocol (DNS, HTTP, TCP, UDP, ICMPv4, ICMPv6, SCTP, "Unknown flow"); verdict as flow.Verdict names it.
"""

from __future__ import annotations

import numpy as np

from flowscope.common.names import EVENT_DROP, EVENT_L7, EVENT_POLICY_VERDICT, EVENT_TRACE, TRACE_POINTS
from flowscope.observer.metrics.batch import PROTOCOLS, MetricsBatch
from flowscope.observer.metrics.handler import VERDICTS, Handler
from flowscope.observer.metrics.labels import Column

_TYPES = {EVENT_DROP: "Drop", 3: "Capture", EVENT_TRACE: "Trace", EVENT_POLICY_VERDICT: "PolicyVerdict", EVENT_L7: "L7"}


def _subtype(key: int) -> str:
    event_type, sub = divmod(key, 1024)
    if event_type == EVENT_TRACE:
        return TRACE_POINTS.get(sub, "")
    if event_type == EVENT_L7:
        return PROTOCOLS[sub] if sub else ""
    if event_type in _TYPES:
        return ""
    return str(event_type)


class FlowHandler(Handler):
    name = "flow"

    def setup(self) -> None:
        self.flows = self.counter(
            "flows_processed_total", "Total number of flows processed", ["protocol", "type", "subtype", "verdict"]
        )

    def count(self, batch: MetricsBatch) -> None:
        types = batch.records["type"].astype(np.int64)
        sub = np.where(types == EVENT_TRACE, batch.records["subtype"], 0) + np.where(
            types == EVENT_L7, batch.l7_kinds, 0
        )
        columns = [
            batch.protocols,
            Column.of(types, lambda number: _TYPES.get(number, "Unknown")),
            Column.of(types * 1024 + sub, _subtype),
            Column.table(batch.verdicts, VERDICTS),
        ]
        self.add(self.flows, batch, np.arange(len(batch)), columns)
