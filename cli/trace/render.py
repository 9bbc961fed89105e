"""Showing a trace session: a tree per packet path (the default), one JSON object per hop (`-o json`), each
TraceEvent as protobuf JSON (`-o jsonpb`), or a table of path groups (`--summary`).

Events stream in; a path is printed once nothing more can happen to it: its packet was dropped or delivered
and it started on this side of the network (a packet that entered from the network may still be linked to the
packet that sent it from another node, so it waits for the session's end, as does anything without a fate).
`-o jsonpb` needs no path and prints each event as it arrives. Hops a node lost are said at the end, in bold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from google.protobuf import json_format
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from flowscope.api.trace import trace_pb2
from flowscope.cli.printer.jsonpb import to_json
from flowscope.cli.trace import hoptext
from flowscope.cli.trace.fate import CONSUME, DELIVERED, DROPPED, FORWARDED, KFREE, Fate, where
from flowscope.cli.trace.paths import LINK_DIGEST, Path, PathGroup, PathHop, Session, assemble, summary

FATE_STYLES = {DELIVERED: "green", FORWARDED: "yellow", DROPPED: "bold red"}
OUTPUTS = ("tree", "json", "jsonpb")


class Renderer:
    """Prints a session's events on `console` as they come; `finish()` prints what waited for the end.

    Notices (each node's session start, lost hops) go to `err`, the console itself unless told otherwise, so
    that JSON output stays JSON."""

    def __init__(self, console: Console, output: str = "tree", summary: bool = False, err: Console | None = None):
        if output not in OUTPUTS:
            raise ValueError(f"unknown trace output {output!r}: expected one of {', '.join(OUTPUTS)}")
        self.console = console
        self.err = err or console
        self.output = output
        self.summary = summary
        self.events: list[trace_pb2.TraceEvent] = []
        self._kernel_hooks: dict[str, bool] = {}
        self._printed: dict[tuple[str, str], int] = {}  # a path's first packet -> the number it was shown with

    def event(self, event: trace_pb2.TraceEvent) -> None:
        self.events.append(event)
        if self.output == "jsonpb" and not self.summary:
            self.console.print(to_json(event), markup=False, highlight=False, soft_wrap=True)
        kind = event.WhichOneof("event")
        if kind == "started":
            self._kernel_hooks[event.node_name] = event.started.kernel_hooks
            self._started(event.node_name, event.started)
        elif kind == "hop" and self.output != "jsonpb" and not self.summary and self._ends_packet(event):
            self._print_paths(assemble(self.events), at_end=False)
        elif kind == "node_status":  # from a relay: a node whose session did not start or broke off
            self.err.print(Text(event.node_status.message, style="bold"))

    def finish(self) -> Session:
        """Print what is left (or the summary) and the lost hops; the assembled session, for whoever asks."""
        session = assemble(self.events)
        if self.summary:
            self._summary(summary(session))
        else:
            self._print_paths(session, at_end=True)
        for path in session.paths:  # the numbers shown, so that a pcapng file written beside says the same
            path.id = self._printed.get(path.packets[0].key, path.id)
        session.paths.sort(key=lambda path: path.id)
        if not session.paths and self.output == "tree":
            self.err.print(Text("no packet was picked", style="dim"))
        for node, lost in session.lost().items():
            words = "hop was" if lost == 1 else "hops were"
            line = f"{lost} {words} lost on {node}: its buffers were full, so its paths may miss hops"
            self.err.print(Text(line, style="bold"))
        return session

    def _ends_packet(self, event: trace_pb2.TraceEvent) -> bool:
        hop = event.hop
        if hop.kind == trace_pb2.KERNEL:
            return hop.hook in (KFREE, CONSUME)
        return hop.kind == trace_pb2.TC_DROP and not self._kernel_hooks.get(event.node_name, True)

    def _print_paths(self, session: Session, at_end: bool) -> None:
        if self.summary or self.output == "jsonpb":
            return
        for path in session.paths:
            first = path.packets[0].key
            if first in self._printed:
                continue
            if not at_end and not (path.fate.final and not path.packets[0].entered_from_network()):
                continue
            self._printed[first] = len(self._printed) + 1
            path.id = self._printed[first]
            if self.output == "json":
                for line in hop_lines(path):
                    self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                self.console.print(tree(path))

    def _started(self, node: str, started: trace_pb2.SessionStarted) -> None:
        if self.output != "tree" and self.err is self.console:
            return
        seconds = started.duration.seconds + started.duration.nanos / 1e9
        line = f"{node}: session {started.session_id} tracing {started.filter or 'every packet'}"
        line += f" ({started.count} packets, {seconds:g}s)"
        if not started.kernel_hooks:
            line += "; kernel tracepoints not followed"
        self.err.print(Text(line, style="dim"))
        for note in started.notes:
            self.err.print(Text(f"{node}: {note}", style="dim"))

    def _summary(self, groups: list[PathGroup]) -> None:
        if self.output != "tree":
            for group in groups:
                shown = {"count": group.count, "path": steps_text(group.steps), "fate": group.fate}
                self.console.print(json.dumps(shown | {"paths": list(group.path_ids)}, ensure_ascii=False))
            return
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("COUNT", justify="right")
        table.add_column("PATH")
        table.add_column("FATE")
        for group in groups:
            kind = group.fate.split(":", 1)[0]
            table.add_row(str(group.count), steps_text(group.steps), Text(group.fate, FATE_STYLES.get(kind, "dim")))
        self.console.print(table)


def steps_text(steps: Iterable[tuple[str, str]]) -> str:
    """`node1:from-endpoint → stage:ct → ... → node2:from-network → ...`: the node named where it changes."""
    shown, node = [], ""
    for step_node, hook in steps:
        shown.append(f"{step_node}:{hook}" if step_node != node else hook)
        node = step_node
    return " → ".join(shown)


def root_line(path: Path) -> Text:
    first = path.packets[0].hops[0]
    return Text.assemble(
        (f"packet {path.id}", "bold"), f"  {hoptext.tuple_text(first)} {hoptext.protocol_text(first)}".rstrip()
    )


def delta_text(hop: PathHop) -> str:
    """`+12.3µs`, `~+85.0µs` across nodes (wall clocks), blank on the path's first hop."""
    if hop.delta_us is None:
        return ""
    return f"{'~' if hop.clock_dependent else ''}+{hop.delta_us:,.1f}µs"


def hop_text(hop: PathHop, previous: trace_pb2.Hop | None) -> Text:
    words = hoptext.decisions(hop.hop, previous)
    label, style = hoptext.label(hop.hop)
    verdict = hoptext.verdict(hop.hop)
    return Text.assemble(
        (f"{delta_text(hop):>11}  ", "dim"),
        (f"{label:<24}", style),
        f" {where(hop.hop):<22}",
        f" {'; '.join(words)}" if words else "",
        (f" {verdict[0]}", verdict[1]) if verdict[0] else "",
    )


def fate_text(fate: Fate) -> Text:
    return Text(fate.text(), style=FATE_STYLES.get(fate.kind, "dim"))


def tree(path: Path) -> Tree:
    """A path as a tree: its packet, a branch per node with a line per hop, then its fate."""
    root = Tree(root_line(path), guide_style="dim")
    branch: Tree | None = None
    node = ""
    previous: trace_pb2.Hop | None = None
    for hop in path.hops():
        if branch is None or hop.node != node or hop.link:
            title = Text(hop.node, style="bold")
            if hop.link:
                key = hop.hop.digest if hop.link == LINK_DIGEST else f"{hop.hop.flow_digest} seq {hop.hop.tcp_seq}"
                title.append(f"  ↳ linked by {hop.link} {key} (inferred)", style="italic")
            branch, node = root.add(title), hop.node
        line = hop_text(hop, previous)
        line.rstrip()
        branch.add(line)
        previous = hop.hop
    root.add(fate_text(path.fate))
    return root


def hop_lines(path: Path) -> list[str]:
    """`-o json`: each hop of the path as one flat JSON object, the path's fate on its last hop."""
    hops = path.hops()
    lines = []
    for i, hop in enumerate(hops):
        record: dict[str, object] = {
            "path": path.id,
            "node": hop.node,
            "packet_id": hop.packet_id,
            "delta_us": hop.delta_us,
        }
        if hop.clock_dependent:
            record["clock_dependent"] = True
        if hop.link:
            record["link"] = hop.link
        record |= flat(json_format.MessageToDict(hop.hop, preserving_proto_field_name=True))
        if i == len(hops) - 1:
            record["fate"] = path.fate.kind
            record["fate_text"] = path.fate.text()
        lines.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    return lines


def flat(message: dict[str, object], prefix: str = "") -> dict[str, object]:
    """Nested message fields as one level, their names joined by `_`: `IP_source`, `l4_TCP_source_port`."""
    out: dict[str, object] = {}
    for name, value in message.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{name}_")
        else:
            out[f"{prefix}{name}"] = value
    return out
