"""The opened connection of `flowscope top`: its latest flows below the table, each the line `observe` prints.

The lines are observe's compact printer's own (cli/printer/compact.py), caught as segments instead of written
to a stream, so a flow reads the same in top as in `observe` and there is one way to word a flow. Only the
flows that fit the panel are formatted, once a frame.

The panel's title names the packet-path session for the connection (`trace_arguments`), which key `s` starts
(cli/top/session.py); it is also a command to paste elsewhere.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich.text import Text

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.printer.compact import CompactPrinter
from flowscope.cli.printer.sink import Segment, Sink
from flowscope.cli.top.grouping import RowKey

MAX_LINES = 16  # the panel's height at most, title included: the table keeps the rest


class _Caught(Sink):
    """A Sink that keeps the printer's lines as segments, for rich to draw."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.lines: list[list[Segment]] = []

    def line(self, segments: Iterable[Segment]) -> None:
        self.lines.append(list(segments))


def compact_lines(flows: Iterable[flow_pb2.Flow]) -> list[Text]:
    """Each flow as observe's compact line (network-supplied names cleaned of control characters by Text)."""
    caught = _Caught()
    printer = CompactPrinter(caught, caught)
    for flow in flows:
        printer.flow(observer_pb2.GetFlowsResponse(flow=flow))
    return [_text(segments) for segments in caught.lines]


def _text(segments: list[Segment]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for value, style in segments:
        text.append("".join(char if char.isprintable() else "?" for char in value), style=style or None)
    return text


def height(screen_height: int) -> int:
    """Lines the panel takes on a screen: up to a third of it, at least a title and two flows."""
    return max(3, min(MAX_LINES, screen_height // 3))


def trace_arguments(key: RowKey) -> list[str]:
    """`flowscope trace` filter flags that pick this connection's packets: the protocol and destination port
    (first: a narrow title cuts the end), then pods by name and other ends by address."""
    arguments: list[str] = []
    kind, _, port = key.protocol.partition("/")
    if kind in ("TCP", "UDP", "SCTP"):
        arguments += ["--protocol", kind.lower()]
        if port:
            arguments += ["--to-port", port]
    for side, name in (("from", key.source), ("to", key.destination)):
        address = name.split(" (", 1)[0]  # `10.0.0.1 (host)`: the reserved identity is not an address
        if "/" in name and " " not in name:
            arguments += [f"--{side}-pod", name]
        elif address and address != "?":
            arguments += [f"--{side}-ip", address]
    return arguments


def panel(key: RowKey, flows: list[flow_pb2.Flow], lines: int) -> list[Text]:
    """`lines` lines: a title naming the connection (and its trace command), then its latest flows, newest
    last, as `observe` shows them."""
    title = Text.assemble(
        (f" {key.source} → {key.destination} {key.protocol} {key.verdict} ", "bold reverse"),
        f" latest {min(len(flows), lines - 1)} · s trace: ",
        ("flowscope trace " + " ".join(trace_arguments(key)), "dim"),
        no_wrap=True,
        overflow="ellipsis",
    )
    shown = compact_lines(flows[-(lines - 1) :]) if lines > 1 else []
    if not shown:
        shown = [Text("no flows of it kept yet: new ones show here", style="dim")]
    filler = [Text("") for _ in range(lines - 1 - len(shown))]
    return [title, *shown, *filler]
