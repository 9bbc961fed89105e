"""One screen of `flowscope map`: a header, the map (or the focused node's part of it, with its edges and
latest flows listed below), and a footer with the stream's numbers and the keys."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from flowscope.cli.map.controls import HELP, MapControls
from flowscope.cli.map.graph import MapSnapshot
from flowscope.cli.map.layout import Memory
from flowscope.cli.map.render import clock, draw, label, style

FOCUS_FLOWS = 8  # latest flows listed under a focused node


def frame(
    snapshot: MapSnapshot,
    controls: MapControls | None,
    target: str,
    by: str,
    width: int,
    height: int,
    memory: Memory | None = None,
) -> Group:
    """Everything on screen; `controls` None for a picture (no selection, no keys). A live screen's `memory`
    keeps the whole map's boxes in place from frame to frame; the focus view is drawn afresh."""
    focus = controls.focus if controls is not None else None
    edges = list(range(len(snapshot.edges)))
    nodes = list(range(len(snapshot.nodes)))
    below: list[Text] = []
    if focus is not None:
        edges = [e for e in edges if focus in (snapshot.edges[e].source, snapshot.edges[e].destination)]
        nodes = sorted({focus} | {end for e in edges for end in snapshot.edges[e][:2]})
        below = _focus_lines(snapshot, focus, edges, width)
    footer = _footer(snapshot, controls)
    room = max(3, height - 1 - len(footer) - len(below))
    selected = controls.selected if controls is not None else None
    picture = draw(snapshot, nodes, edges, width, room, selected, memory if focus is None else None)
    if controls is not None:
        placed = picture.layout.placed
        controls.settle(picture.layout.order(), {node: p.column for node, p in placed.items()})
    header = Text(f"flowscope map  {target}  by {by}", style="bold", no_wrap=True, overflow="ellipsis")
    header.append(f"   {len(snapshot.nodes)} nodes  {len(snapshot.edges)} edges", style="")
    if focus is not None:
        header.append(f"   focus: {snapshot.nodes[focus].full} (Esc: back)", style="cyan")
    if controls is not None and controls.pause:
        header.append("   PAUSED", style="bold yellow")
    if not snapshot.nodes:
        return Group(header, Text("waiting for flows…", style="dim"), *footer)
    return Group(header, *picture.lines, *below, *footer)


def _focus_lines(snapshot: MapSnapshot, focus: int, edges: list[int], width: int) -> list[Text]:
    lines = [Text("edges", style="bold")]
    for edge in edges:
        ends = snapshot.edges[edge]
        text = (
            f"  {snapshot.nodes[ends.source].full} → {snapshot.nodes[ends.destination].full}  {label(snapshot, edge)}"
        )
        lines.append(Text(text, style=style(snapshot, edge), no_wrap=True, overflow="ellipsis"))
    lines.append(Text("latest flows", style="bold"))
    recent = [flow for flow in snapshot.recent if focus in (flow.source, flow.destination)][-FOCUS_FLOWS:]
    for flow in reversed(recent):
        text = (
            f"  {clock(flow.stamp)}  {snapshot.nodes[flow.source].full} → {snapshot.nodes[flow.destination].full}"
            f"  {flow.protocol}  {flow.verdict}  {flow.detail}"
        )
        paint = "red" if flow.verdict in ("DROPPED", "ERROR") else ""
        lines.append(Text(text.rstrip(), style=paint, no_wrap=True, overflow="ellipsis"))
    return lines


def _footer(snapshot: MapSnapshot, controls: MapControls | None) -> list[Text]:
    table = snapshot.table
    rate = float(snapshot.rate.sum()) if len(snapshot.rate) else 0.0
    line = Text(f"flows {table.flows}  {rate:.1f}/s  drops {table.drops}  lost {table.lost}", no_wrap=True)
    if table.nodes.seen:
        line.append(f"  nodes {len(table.nodes.seen)} seen in flows: {', '.join(sorted(table.nodes.seen))}")
    if table.nodes.unavailable:
        down = ", ".join(f"{node} ({why})" for node, why in sorted(table.nodes.unavailable.items()))
        line.append(f"  unavailable: {down}", style="red")
    if table.error:
        line.append(f"  {table.error}", style="red")
    lines = [line]
    if controls is None:
        return lines
    editing = controls.filter.editing
    if editing is not None:
        lines.append(Text(f"filter: {editing.text}", style="bold"))
        if editing.error:
            lines.append(Text(editing.error, style="red"))
    else:
        if controls.filter.refusal:
            lines.append(Text(controls.filter.refusal, style="red"))
        shown = f"filter: {controls.filter.filter_text}  " if controls.filter.filter_text else ""
        lines.append(Text(shown + HELP, style="dim", no_wrap=True, overflow="ellipsis"))
    return lines
