"""The map drawn: namespace boxes in columns, edges between them with their labels, and (in the focus view) a
node's edges and latest flows as lines of text below.

An edge leaves its source's box on a line of its own (`├`), carries its label (`TCP/9000 24/s`), turns in a
lane of the gap between the columns that belongs to its destination, and arrives with `▶` on the destination's
first line; edges into the same node share its lane, so they read as one trunk merging in. An edge to a node
that is not in the next column ends in a stub naming it (`──▶ web/web`). Drops colour an edge red, L7 errors
(HTTP 5xx, DNS NXDOMAIN/SERVFAIL) yellow; red is drawn last so it stays visible where edges overlap.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from rich.text import Text

from flowscope.cli.map.canvas import RIGHT, Canvas
from flowscope.cli.map.graph import MapSnapshot
from flowscope.cli.map.layout import NAME_WIDTH, SPARE, Layout, Memory, Placed, arrange

LABEL_WIDTH = 30  # longest edge label drawn; longer ones are cut
MAX_LANES = 10  # vertical lanes in one gap; more destinations share them
DROP, ERROR, SELECTED = "bold red", "yellow", "reverse"


@dataclass(frozen=True)
class Picture:
    lines: list[Text]
    layout: Layout


def rate_text(rate: float) -> str:
    if rate >= 10:
        return f"{rate:.0f}/s"
    if rate >= 0.05:
        return f"{rate:.1f}/s"
    return "0/s"


def share_text(share: float) -> str:
    return "<1%" if share < 0.01 else f"{share * 100:.0f}%"


def label(snapshot: MapSnapshot, edge: int) -> str:
    """`TCP/9000 24/s`, with `2% dropped` and `5% L7 errors` when there are any."""
    text = f"{snapshot.edges[edge].protocol} {rate_text(float(snapshot.rate[edge]))}"
    if snapshot.drop_share[edge] > 0:
        text += f" {share_text(float(snapshot.drop_share[edge]))} dropped"
    if snapshot.error_share[edge] > 0:
        text += f" {share_text(float(snapshot.error_share[edge]))} L7 errors"
    return text


def style(snapshot: MapSnapshot, edge: int) -> str:
    if snapshot.drop_share[edge] > 0:
        return DROP
    return ERROR if snapshot.error_share[edge] > 0 else ""


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def draw(
    snapshot: MapSnapshot,
    nodes: Collection[int],
    edges: Collection[int],
    width: int,
    height: int,
    selected: int | None = None,
    memory: Memory | None = None,
) -> Picture:
    """The map of `nodes` and the `edges` among them in `width` x `height` (fewer lines when it needs fewer);
    with a `memory`, boxes and columns stay where the last frame drew them (layout.py)."""
    layout = arrange(snapshot, nodes, edges, height, memory=memory)
    columns = len(layout.columns)
    box_widths = [0] * columns
    for placed in layout.placed.values():
        node = snapshot.nodes[placed.node]
        title = len(_cut(node.namespace, NAME_WIDTH)) + 6 if node.namespace else 0
        spine = 2 if placed.edges and not node.namespace else 0  # a boxless node's edges fan out right of its name
        box_widths[placed.column] = max(box_widths[placed.column], len(_cut(node.label, NAME_WIDTH)) + 4 + spine, title)
    labels = {edge: label(snapshot, edge) for placed in layout.placed.values() for edge in placed.edges}
    gaps = [0] * columns
    lanes: list[dict[int, int]] = [{} for _ in range(columns)]  # per gap: destination node → lane
    for placed in sorted(layout.placed.values(), key=lambda p: (p.column, p.top)):
        for edge in placed.edges:
            target = layout.placed.get(snapshot.edges[edge].destination)
            if target is None:
                continue
            text = labels[edge]
            if target.column != placed.column + 1:
                text += " ──▶ " + snapshot.nodes[target.node].full
            gaps[placed.column] = max(gaps[placed.column], min(len(text), LABEL_WIDTH + 24) + 4)
    for column in range(columns - 1):
        lanes[column] = _lanes(layout, snapshot, column)
    lane_room = [min(len(lanes[column]), MAX_LANES) + 3 for column in range(columns)]
    if memory is not None:
        _widest(memory, layout.columns, box_widths, gaps, lane_room)
    spare = width - sum(box_widths) - sum(lane_room) - sum(gaps)
    while spare < 0 and max(gaps, default=0) > 16:  # too wide: the widest gap gives a column at a time
        widest = gaps.index(max(gaps))
        gaps[widest] -= 1
        spare += 1
    lefts, x = [], 0
    for column in range(columns):
        lefts.append(x)
        x += box_widths[column] + gaps[column] + lane_room[column]
    canvas = Canvas(max(width, 1), max(layout.height, 1))
    for group in layout.groups:
        if group.namespace:
            left = lefts[group.column]
            right = left + box_widths[group.column] - 1
            canvas.box(left, group.top, right, group.bottom)
            canvas.write(left + 2, group.top, f" {_cut(group.namespace, NAME_WIDTH)} ", limit=right)
    for placed in layout.placed.values():
        node = snapshot.nodes[placed.node]
        left = lefts[placed.column]
        name = _cut(node.label, NAME_WIDTH)
        canvas.write(left + 2, placed.top, name, SELECTED if placed.node == selected else "")
        if not node.namespace and placed.edges:  # boxless: its edges fan out from right after the name
            spine = left + 4 + len(name)
            canvas.horizontal(placed.top, spine - 1, spine)
            canvas.vertical(spine, placed.top, placed.top + len(placed.edges) - 1)
            for line in range(len(placed.edges)):
                canvas.horizontal(placed.top + line, spine, left + box_widths[placed.column] - 1)
        hidden = layout.hidden_edges.get(placed.node)
        if hidden:
            canvas.write(left + 4, placed.top + len(placed.edges), f"+{hidden} more", "dim")
    for column, (line, count) in layout.more.items():
        canvas.write(lefts[column] + 2, line, f"+{count} more", "dim")
    drawn = [(placed, line, edge) for placed in layout.placed.values() for line, edge in enumerate(placed.edges)]
    order = {"": 0, ERROR: 1, DROP: 2}
    drawn.sort(key=lambda item: order[style(snapshot, item[2])])
    for placed, line, edge in drawn:
        target = layout.placed.get(snapshot.edges[edge].destination)
        if target is None:
            continue
        _edge(canvas, snapshot, edge, labels[edge], placed.column, placed.top + line, target, lefts, box_widths, lanes)
    return Picture(canvas.lines(layout.height), layout)


def _widest(memory: Memory, layers: list[int], box_widths: list[int], gaps: list[int], lane_room: list[int]) -> None:
    """Each column as wide as its layer has been (in place), and remembered so: columns only ever widen. A gap
    that has to widen makes room ahead: for labels of LABEL_WIDTH (a rate's digits, a drop share that appears),
    and for twice the lanes it needs (up to MAX_LANES), so the next destinations move nothing either."""
    for column, layer in enumerate(layers):
        box, gap, lanes = memory.widths.get(layer, (0, 0, 0))
        box_widths[column] = max(box_widths[column], box)
        if gaps[column] > gap:
            gaps[column] = max(gaps[column] + SPARE, LABEL_WIDTH + 4)
        else:
            gaps[column] = gap
        if lane_room[column] > lanes:
            lane_room[column] = min(2 * (lane_room[column] - 3), MAX_LANES) + 3
        else:
            lane_room[column] = lanes
        memory.widths[layer] = (box_widths[column], gaps[column], lane_room[column])


def _lanes(layout: Layout, snapshot: MapSnapshot, column: int) -> dict[int, int]:
    """The lane of each destination in the gap right of `column` (0: the one nearest the destinations).

    An edge runs along its source's row to its destination's lane; an arrival runs along its destination's
    first row from the lane to the box. On a row where both happen they overlap, and read as one line, unless
    the edge leaving turns before the arrival starts: its destination's lane must be left of the arriving one's.
    Lanes are ordered to keep those constraints (a topological order; where they go round in a circle, the
    lowest destination goes left first), else the lower a destination the further left its lane, which keeps
    downward edges clear of arrivals by itself."""
    placed = layout.placed
    rows: dict[int, int] = {}  # destination's first row → destination
    departures: list[tuple[int, int]] = []  # (row, destination)
    for source in placed.values():
        if source.column != column:
            continue
        for line, edge in enumerate(source.edges):
            target = placed.get(snapshot.edges[edge].destination)
            if target is not None and target.column == column + 1:
                rows[target.top] = target.node
                departures.append((source.top + line, target.node))
    targets = sorted(set(rows.values()), key=lambda node: -placed[node].top)
    left_of: dict[int, set[int]] = {node: set() for node in targets}  # node → destinations that must be right of it
    for row, destination in departures:
        other = rows.get(row)
        if other is not None and other != destination:
            left_of[destination].add(other)
    waiting = {node: sum(node in right for right in left_of.values()) for node in targets}
    order: list[int] = []
    remaining = list(targets)  # lowest first
    while remaining:
        ready = [node for node in remaining if waiting[node] == 0] or remaining[:1]
        node = ready[0]
        remaining.remove(node)
        order.append(node)
        for right in left_of[node]:
            waiting[right] -= 1
    return {node: (len(order) - 1 - position) % MAX_LANES for position, node in enumerate(order)}


def _edge(
    canvas: Canvas,
    snapshot: MapSnapshot,
    edge: int,
    text: str,
    column: int,
    y: int,
    target: Placed,
    lefts: list[int],
    box_widths: list[int],
    lanes: list[dict[int, int]],
) -> None:
    paint = style(snapshot, edge)
    start = lefts[column] + box_widths[column] - 1
    canvas.mark(start, y, RIGHT, paint)
    if target.column != column + 1:  # a stub naming where it goes
        limit = lefts[column + 1] - 3 - len(lanes[column]) if column + 1 < len(lefts) else canvas.width
        room = limit - start - 3
        name = snapshot.nodes[target.node].full
        name = _cut(name, max(10, room - len(text) - 5))  # the label first: a name cut short still says enough
        canvas.horizontal(y, start, start + 1, paint)
        canvas.write(start + 2, y, f" {_cut(text, room - len(name) - 5)} ──▶ {name}", paint, limit=limit)
        return
    arrival = lefts[target.column] - 1
    lane = arrival - 2 - lanes[column].get(target.node, 0)
    canvas.horizontal(y, start, lane, paint)
    canvas.vertical(lane, y, target.top, paint)
    canvas.horizontal(target.top, lane, arrival - 1, paint)
    canvas.write(arrival, target.top, "▶", paint)
    canvas.write(start + 2, y, f" {_cut(text, lane - start - 4)} ", paint, limit=lane)


def clock(stamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp))
