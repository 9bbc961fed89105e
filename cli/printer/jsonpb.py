"""`-o json` / `-o jsonpb`: each GetFlowsResponse as one line of JSON, in protobuf's JSON mapping with the
.proto field names (`node_name`, `is_reply`, enum names, RFC3339 times), the shape hubble prints, so the
output feeds jq and other tools unchanged."""

from __future__ import annotations

from collections.abc import Iterable

from flowscope.api.observer import observer_pb2
from flowscope.cli.printer.base import FlowPrinter
from flowscope.cli.printer.protojson import NotCanonical, to_json, wire_json

__all__ = ["JsonPrinter", "to_json"]

_RESPONSE = observer_pb2.GetFlowsResponse.DESCRIPTOR
_FLOW_FIRST = b"\x0a"  # GetFlowsResponse.flow (field 1, length-delimited) as the first field


class JsonPrinter(FlowPrinter):
    def write_bytes(self, batch: Iterable[bytes]) -> None:
        """A flow's response is written from its bytes, never parsed (protojson.wire_json), and a batch's lines
        go out together; anything else (node status, lost events, bytes protojson leaves to json_format) goes
        through `write`, in its place."""
        lines: list[str] = []
        for data in batch:
            if data[:1] == _FLOW_FIRST:
                try:
                    lines.append(wire_json(data, _RESPONSE))
                    continue  # the one member of the response's oneof was the flow: wire_json checks that
                except NotCanonical:
                    pass
            self._write_lines(lines)
            self.write(observer_pb2.GetFlowsResponse.FromString(data))
        self._write_lines(lines)

    def _write_lines(self, lines: list[str]) -> None:
        if lines:
            self.out.texts(lines)
            self.printed += len(lines)
            lines.clear()

    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.out.text(to_json(response))

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.out.text(to_json(response))

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.err.text(to_json(response))
