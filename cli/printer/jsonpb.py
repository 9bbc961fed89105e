"""`-o json` / `-o jsonpb`: each GetFlowsResponse as one line of JSON, in protobuf's JSON mapping with the
.proto field names (`node_name`, `is_reply`, enum names, RFC3339 times), the shape hubble prints, so the
output feeds jq and other tools unchanged."""

from __future__ import annotations

from flowscope.api.observer import observer_pb2
from flowscope.cli.printer.base import FlowPrinter
from flowscope.cli.printer.protojson import to_json

__all__ = ["JsonPrinter", "to_json"]


class JsonPrinter(FlowPrinter):
    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.out.text(to_json(response))

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.out.text(to_json(response))

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.err.text(to_json(response))
