"""`-o table`: aligned columns, printed when the stream ends (alignment needs every row, which is also why
hubble refuses it with --follow). Plain text: colour codes would break the alignment."""

from __future__ import annotations

from flowscope.api.observer import observer_pb2
from flowscope.cli.printer import fields
from flowscope.cli.printer.base import FlowPrinter, PrintOptions
from flowscope.cli.printer.events import lost_source, node_status_line
from flowscope.cli.printer.sink import Sink
from flowscope.cli.printer.tabwriter import align
from flowscope.cli.timefmt import format_timestamp


class TablePrinter(FlowPrinter):
    def __init__(self, out: Sink, err: Sink, options: PrintOptions | None = None) -> None:
        super().__init__(out, err, options)
        header = ["TIMESTAMP", *(["NODE"] if self.options.node_name else []), "SOURCE", "DESTINATION"]
        self.rows: list[list[str]] = [[*header, "TYPE", "VERDICT", "SUMMARY"]]

    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        flow = response.flow
        source, destination = fields.endpoints(flow, self.options.ip_translation)
        row = [format_timestamp(flow.time, self.options.time_format)]
        if self.options.node_name:
            row.append(flow.node_name)
        row += ["".join(text for text, _ in source), "".join(text for text, _ in destination)]
        row += [fields.flow_type(flow), fields.verdict(flow, self.options.policy_names)[0], fields.summary(flow)]
        self.rows.append(row)

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        lost = response.lost_events
        row = ["", *([""] if self.options.node_name else []), lost_source(lost), "", "EVENTS LOST", ""]
        self.rows.append([*row, f"CPU({lost.cpu.value}) - {lost.num_events_lost}"])

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.err.line([(node_status_line(response, self.options.time_format), "")])

    def close(self) -> None:
        if len(self.rows) > 1:
            self.out.text("\n".join(align(self.rows)))
        super().close()
