"""`-o compact`, hubble's default: one line a flow,
`TIME[ [node]]: SRC SRCID ARROW DST DSTID[ via FRONTEND] TYPE VERDICT (SUMMARY)`, where ` via 10.96.0.10:80` is
flowscope's: the service frontend a translated flow's client addressed, once the flow shows the backend.

From bytes (`write_bytes`), a flow is split (shadow.Split) into the fields that change from flow to flow (time,
ports, summary) and the bytes of all the others, which key what they say on the line (ends, identities, arrow,
type, verdict), made once: a line then costs its time, its ports and a join, not a walk through the flow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from google.protobuf.descriptor import Descriptor
from google.protobuf.timestamp_pb2 import Timestamp

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.printer import fields
from flowscope.cli.printer.base import FlowPrinter, PrintOptions
from flowscope.cli.printer.events import lost_source, node_status_line
from flowscope.cli.printer.shadow import CHANGING, NotCanonical, Split, parsed, parser
from flowscope.cli.printer.sink import Segment, Sink
from flowscope.cli.timefmt import format_timestamp

_RESPONSE = parser(cast(Descriptor, observer_pb2.GetFlowsResponse.DESCRIPTOR))
_FLOW = Split(cast(Descriptor, flow_pb2.Flow.DESCRIPTOR), CHANGING["flow.Flow"])
_FLOW_FIRST = b"\x0a"  # GetFlowsResponse.flow (field 1, length-delimited) as the first field
_REMEMBERED = 4096


@dataclass(frozen=True)
class _Said:
    """What a flow's repeating fields say on its line, source first as the flow has it (a reply swaps)."""

    node: str  # ` [node]` or empty
    hosts: tuple[str, str] | None  # an IP flow's ends, each shown with its port
    ends: tuple[list[Segment], list[Segment]]  # a flow without IP: its ends as they are
    identities: tuple[Segment, Segment]
    is_reply: bool | None
    kind: str  # the flow's type
    verdict: Segment
    summary_suffix: str


class CompactPrinter(FlowPrinter):
    def __init__(self, out: Sink, err: Sink, options: PrintOptions | None = None) -> None:
        super().__init__(out, err, options)
        self._said: dict[bytes, _Said] = {}

    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        flow = response.flow
        source, destination = fields.endpoints(flow, self.options.ip_translation)
        is_reply = flow.is_reply.value if flow.HasField("is_reply") else None
        identities = fields.identity(flow.source.identity), fields.identity(flow.destination.identity)
        when = format_timestamp(flow.time, self.options.time_format)
        node = f" [{flow.node_name}]" if self.options.node_name else ""
        via = fields.original_destination(flow)
        verdict = fields.verdict(flow, self.options.policy_names)
        self.out.line(
            _line(
                when,
                node,
                source,
                destination,
                identities,
                is_reply,
                via,
                fields.flow_type(flow),
                verdict,
                fields.summary(flow),
            )
        )

    def write_bytes(self, batch: Iterable[bytes]) -> None:
        """Flows split from their bytes (a flow with flowscope's extras or without a Summary, and anything but a
        flow, goes through `write`)."""
        for data in batch:
            line = self._line_of(data) if data[:1] == _FLOW_FIRST else None
            if line is None:
                self.write(observer_pb2.GetFlowsResponse.FromString(data))
            else:
                self.out.line(line)
                self.printed += 1

    def _line_of(self, data: bytes) -> list[Segment] | None:
        try:
            response = parsed(_RESPONSE, data)
            changing, rest = _FLOW(response.flow)  # type: ignore[attr-defined]
        except NotCanonical:
            return None
        values = {field.name: value for field, value in changing}
        summary = values.get("Summary")
        if not summary or "flowscope" in values:
            return None  # words made here, counts, a frontend, a kernel drop reason: the whole flow is read
        said = self._said.get(rest)
        if said is None:
            if len(self._said) >= _REMEMBERED:
                self._said.clear()
            said = self._said[rest] = self._say(flow_pb2.Flow.FromString(rest))
        when = format_timestamp(Timestamp.FromString(values.get("time", b"")), self.options.time_format)
        if said.hosts is None:
            source, destination = said.ends
        else:
            src_port, dst_port = fields.layer4_ports(flow_pb2.Layer4.FromString(values.get("l4", b"")))
            source, destination = fields.with_port(said.hosts[0], src_port), fields.with_port(said.hosts[1], dst_port)
        return _line(
            when,
            said.node,
            source,
            destination,
            said.identities,
            said.is_reply,
            [],
            said.kind,
            said.verdict,
            summary + said.summary_suffix,
        )

    def _say(self, flow: flow_pb2.Flow) -> _Said:
        """What a flow without its changing fields says: all but its time, ports and Summary's words."""
        return _Said(
            node=f" [{flow.node_name}]" if self.options.node_name else "",
            hosts=fields.hosts(flow, self.options.ip_translation),
            ends=fields.endpoints(flow, self.options.ip_translation),
            identities=(fields.identity(flow.source.identity), fields.identity(flow.destination.identity)),
            is_reply=flow.is_reply.value if flow.HasField("is_reply") else None,
            kind=fields.flow_type(flow),
            verdict=fields.verdict(flow, self.options.policy_names),
            summary_suffix=fields.summary_suffix(flow),
        )

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        lost = response.lost_events
        when = format_timestamp(response.time, self.options.time_format) + " " if response.HasField("time") else ""
        text = f"EVENTS LOST: {lost_source(lost)} CPU({lost.cpu.value}) {lost.num_events_lost}"
        self.out.line([(when, ""), (text, "red")])

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        self.err.line([(node_status_line(response, self.options.time_format), "")])


def _line(
    when: str,
    node: str,
    source: list[Segment],
    destination: list[Segment],
    identities: tuple[Segment, Segment],
    is_reply: bool | None,
    via: list[Segment],
    kind: str,
    verdict: Segment,
    summary: str,
) -> list[Segment]:
    """The line; a reply is shown from the side that opened the connection (`<-`), an unknown direction `<>`."""
    source_id, destination_id = identities
    arrow = "->"
    if is_reply is None:
        arrow = "<>"
    elif is_reply:
        source, destination = destination, source
        source_id, destination_id = destination_id, source_id
        arrow = "<-"
    line: list[Segment] = [(when, "")]
    if node:
        line.append((node, ""))
    line.append((": ", ""))
    line += [*source, (" ", ""), source_id, (f" {arrow} ", ""), *destination, (" ", ""), destination_id, *via]
    line += [(f" {kind} ", ""), verdict, (f" ({summary})", "")]
    return line
