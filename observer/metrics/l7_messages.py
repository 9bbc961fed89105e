"""The L7 messages of a batch, for the dns and http handlers: each L7 record's Layer7 message, parsed once.

L7 records are references to the L7 store (observer/l7/store.py), and few among the flows, so the handlers
count them one message at a time in Python, as Hubble's do; the parse is shared by both handlers.
"""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.observer.metrics.batch import MetricsBatch


def l7_messages(batch: MetricsBatch, kind: str) -> list[tuple[int, flow_pb2.Layer7]]:
    """(row, Layer7) of the batch's L7 records of one kind ("dns", "http") whose entry the store still has."""

    def parse() -> list[tuple[str, int, flow_pb2.Layer7]]:
        parsed = []
        for row, entry in zip(batch.l7_rows.tolist(), batch.l7_entries, strict=True):
            layer7 = getattr(entry, "layer7", None)
            if entry is not None and layer7 is not None:
                parsed.append((entry.kind, row, flow_pb2.Layer7.FromString(layer7)))
        return parsed

    return [(row, message) for k, row, message in batch.memo("l7-messages", parse) if k == kind]
