"""`-o compact`, hubble's default: one line a flow,
`TIME[ [node]]: SRC SRCID ARROW DST DSTID[ via FRONTEND] TYPE VERDICT (SUMMARY)`, where ` via 10.96.0.10:80` is
flowscope's: the service frontend a translated flow's client addressed, once the flow shows the backend."""

from __future__ import annotations

from flowscope.api.observer import observer_pb2
from flowscope.cli.printer import fields
from flowscope.cli.printer.base import FlowPrinter
from flowscope.cli.printer.events import lost_source, node_status_line
from flowscope.cli.printer.sink import Segment
from flowscope.cli.timefmt import format_timestamp


class CompactPrinter(FlowPrinter):
    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        flow = response.flow
        source, destination = fields.endpoints(flow, self.options.ip_translation)
        source_id = fields.identity(flow.source.identity)
        destination_id = fields.identity(flow.destination.identity)
        arrow = "->"
        if not flow.HasField("is_reply"):
            arrow = "<>"  # the direction is unknown
        elif flow.is_reply.value:
            source, destination = destination, source
            source_id, destination_id = destination_id, source_id
            arrow = "<-"
        line: list[Segment] = [(format_timestamp(flow.time, self.options.time_format), "")]
        if self.options.node_name:
            line.append((f" [{flow.node_name}]", ""))
        line.append((": ", ""))
        line += [*source, (" ", ""), source_id, (f" {arrow} ", ""), *destination, (" ", ""), destination_id]
        line += fields.original_destination(flow)
        line += [
            (f" {fields.flow_type(flow)} ", ""),
            fields.verdict(flow, self.options.policy_names),
            (f" ({fields.summary(flow)})", ""),
        ]
        self.out.line(line)

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        lost = response.lost_events
        when = format_timestamp(response.time, self.options.time_format) + " " if response.HasField("time") else ""
        text = f"EVENTS LOST: {lost_source(lost)} CPU({lost.cpu.value}) {lost.num_events_lost}"
        self.out.line([(when, ""), (text, "red")])

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.err.line([(node_status_line(response, self.options.time_format), "")])
