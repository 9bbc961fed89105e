"""`-o json` / `-o jsonpb`: each GetFlowsResponse as one line of JSON, in protobuf's JSON mapping with the
.proto field names (`node_name`, `is_reply`, enum names, RFC3339 times), the shape hubble prints, so the
output feeds jq and other tools unchanged."""

from __future__ import annotations

from collections.abc import Iterable

from flowscope.api.observer import observer_pb2
from flowscope.cli.printer.base import FlowPrinter
from flowscope.cli.printer.protojson import NotCanonical, compiled, to_json, wire_json
from flowscope.cli.printer.sink import Sink

__all__ = ["JsonPrinter", "to_json"]

_RESPONSE = observer_pb2.GetFlowsResponse.DESCRIPTOR
_FLOW_FIRST = b"\x0a"  # GetFlowsResponse.flow (field 1, length-delimited) as the first field


class JsonPrinter(FlowPrinter):
    _written = 0  # self.printed when the sink last wrote

    def write_bytes(self, batch: Iterable[bytes]) -> None:
        """A flow's response is written from its bytes, never parsed: in C, a run of flows as one text
        (protojson.compiled), else in Python (protojson.wire_json); a batch's texts go out together. Anything
        else (node status, lost events, bytes protojson leaves to json_format) goes through `write`, in its
        place."""
        batch = batch if isinstance(batch, list) else list(batch)
        schema, response = compiled(_RESPONSE)
        texts: list[str] = []  # each of one line or more
        at = 0
        while at < len(batch):
            block, stop = schema.block(response, batch, at, _FLOW_FIRST)
            if stop > at:
                texts.append(block)
                self.printed += stop - at
                at = stop
                continue
            data = batch[at]
            at += 1
            if data[:1] == _FLOW_FIRST:
                try:
                    texts.append(wire_json(data, _RESPONSE))
                    self.printed += 1
                    continue  # the one member of the response's oneof was the flow: wire_json checks that
                except NotCanonical:
                    pass
            self._write_texts(texts)
            self.write(observer_pb2.GetFlowsResponse.FromString(data))
        self._write_texts(texts)

    def _write_texts(self, texts: list[str]) -> None:
        """The texts to the sink; a sink gathers BATCH texts before it writes, and a block of C's holds many
        lines: so once BATCH lines are gathered, they are written (one write for many lines, as the sink's)."""
        if texts:
            self.out.texts(texts)
            texts.clear()
            if self.printed - self._written >= Sink.BATCH:
                self.out.flush()
                self._written = self.printed

    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.out.text(to_json(response))

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.out.text(to_json(response))

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.err.text(to_json(response))
