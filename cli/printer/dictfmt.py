"""`-o dict`: one `KEY: value` block a flow, separated by a dashed line."""

from __future__ import annotations

from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.printer import fields
from flowscope.cli.printer.base import FlowPrinter
from flowscope.cli.printer.events import join_with_cutoff, lost_source
from flowscope.cli.printer.sink import Segment, Sink
from flowscope.cli.timefmt import format_timestamp

SEPARATOR = "------------"


class DictPrinter(FlowPrinter):
    def _record(self, sink: Sink, rows: list[tuple[str, list[Segment]]]) -> None:
        if self.printed:
            sink.line([(SEPARATOR, "")])
        for key, value in rows:
            sink.line([(f"{key:>11}: ", ""), *value])

    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        flow = response.flow
        source, destination = fields.endpoints(flow, self.options.ip_translation)
        rows: list[tuple[str, list[Segment]]] = [
            ("TIMESTAMP", [(format_timestamp(flow.time, self.options.time_format), "")])
        ]
        if self.options.node_name:
            rows.append(("NODE", [(flow.node_name, "")]))
        rows += [
            ("SOURCE", source),
            ("DESTINATION", destination),
            ("TYPE", [(fields.flow_type(flow), "")]),
            ("VERDICT", [fields.verdict(flow, self.options.policy_names)]),
            ("SUMMARY", [(fields.summary(flow), "")]),
        ]
        self._record(self.out, rows)

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        lost = response.lost_events
        rows: list[tuple[str, list[Segment]]] = [
            ("TIMESTAMP", [(format_timestamp(response.time, self.options.time_format), "")])
        ]
        if self.options.node_name:
            rows.append(("NODE", [(response.node_name, "")]))
        rows += [
            ("SOURCE", [(lost_source(lost), "")]),
            ("TYPE", [("EVENTS LOST", "red")]),
            ("VERDICT", [("", "")]),
            ("SUMMARY", [(f"CPU({lost.cpu.value}) - {lost.num_events_lost}", "")]),
        ]
        self._record(self.out, rows)

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        status = response.node_status
        message = f'"{status.message}"' if status.message else "N/A"
        rows: list[tuple[str, list[Segment]]] = [
            ("TIMESTAMP", [(format_timestamp(response.time, self.options.time_format), "")]),
            ("STATE", [(relay_pb2.NodeState.Name(status.state_change), "")]),
            ("NODES", [(join_with_cutoff(list(status.node_names)), "")]),
            ("MESSAGE", [(message, "")]),
        ]
        self._record(self.err, rows)
