"""Where each box of `flowscope map` goes: columns by layer (sources left, destinations right), and within a
column the boxes of each namespace together, in the order they were first seen.

Stable by construction: a node's column is the layer it was first seen in, and the order within a column is
first-seen order (namespaces by their first node, nodes within them by their own), which new traffic can only
append to, never re-sort. A box with several edges out takes a line per edge, so it grows downwards as it gains
edges; a live map therefore remembers where it drew each box (`Memory`) and leaves spare lines below each new
one (up to `SPARE`, as the terminal's free lines allow): a box that gains an edge grows into them, and a box in
a new namespace goes below the rest, so nothing already drawn moves. Only a box that outgrows its spare lines,
or a namespace box that gains a box (at its foot), pushes what is below it down (leaving spare lines again), and
only a column that no longer fits with its spare lines is drawn compact again. Pictures and the focus view have
no memory: they are drawn compact.

When a column does not fit the terminal, its quietest nodes (least flows/s in and out) are left out and counted
in a `+N more` line at its foot; so are a busy node's quietest edges past what fits beside it. The rest keep
their order.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from flowscope.cli.map.graph import MapSnapshot

BOX_PADDING = 2  # a group's box adds its top and bottom border lines
SPARE = 2  # lines left free below a new box of a live map, for the edges it gains next
NAME_WIDTH = 22  # longest name shown in a box; longer ones are cut with `…`


@dataclass(frozen=True)
class Placed:
    """One node on screen."""

    node: int
    column: int
    top: int  # its first line
    height: int  # lines: one per edge out (at least one)
    edges: tuple[int, ...]  # the edges drawn from it, one per line, in first-seen order


@dataclass(frozen=True)
class Group:
    """A namespace's box in a column (boxless for the world, the host and remote nodes: `namespace` empty)."""

    column: int
    namespace: str
    top: int
    bottom: int  # its last line (its bottom border when boxed)


@dataclass
class Layout:
    columns: list[int] = field(default_factory=list)  # the layers shown, left to right
    placed: dict[int, Placed] = field(default_factory=dict)  # node → where
    groups: list[Group] = field(default_factory=list)
    more: dict[int, tuple[int, int]] = field(default_factory=dict)  # column → (line, nodes left out)
    hidden_edges: dict[int, int] = field(default_factory=dict)  # node → its edges left out
    height: int = 0  # lines used

    def order(self) -> list[int]:
        """Nodes in reading order (column by column, top to bottom): what the arrow keys walk through."""
        return [p.node for p in sorted(self.placed.values(), key=lambda p: (p.column, p.top))]


@dataclass
class Memory:
    """Where a live map drew its boxes in the last frame, so the next one draws them there again: each node's
    first line, each namespace box's top and bottom line by layer and namespace, and the widest each layer's
    boxes, labels and lanes have been (so a label growing moves no column: render._widest). Node indexes are
    the table's, so a new table (a new filter) needs a new memory."""

    tops: dict[int, int] = field(default_factory=dict)
    boxes: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    widths: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # layer → box, gap, lanes

    def remember(self, layer: int, placed: list[Placed], groups: list[Group]) -> None:
        self.tops.update((place.node, place.top) for place in placed)
        self.boxes.update(((layer, group.namespace), (group.top, group.bottom)) for group in groups if group.namespace)


def arrange(
    snapshot: MapSnapshot,
    nodes: Collection[int],
    edges: Collection[int],
    height: int,
    edge_lines: int = 8,
    memory: Memory | None = None,
) -> Layout:
    """Place `nodes` (and the `edges` among them) in `height` lines; `edge_lines` caps the lines one node's
    edges take before the rest become `+N more`. With a `memory`, boxes stay where it says (and it is updated)."""
    layout = Layout()
    shown = sorted(nodes)
    layout.columns = sorted({snapshot.layers[node] for node in shown})
    busy_nodes = snapshot.node_rates()
    outgoing: dict[int, list[int]] = {node: [] for node in shown}
    for edge in sorted(edges):
        source = snapshot.edges[edge].source
        if source in outgoing and snapshot.edges[edge].destination in outgoing:
            outgoing[source].append(edge)
    for column, layer in enumerate(layout.columns):
        members = [node for node in shown if snapshot.layers[node] == layer]
        _place_column(layout, snapshot, column, members, outgoing, busy_nodes, height, edge_lines, memory)
    return layout


def _place_column(
    layout: Layout,
    snapshot: MapSnapshot,
    column: int,
    members: list[int],
    outgoing: dict[int, list[int]],
    busy: np.ndarray,
    height: int,
    edge_lines: int,
    memory: Memory | None,
) -> None:
    lines = {
        node: _cap(layout, snapshot, node, outgoing[node], max(1, min(edge_lines, height - 3))) for node in members
    }
    kept = list(members)
    while kept and _needed(layout, snapshot, kept, lines) + (len(kept) < len(members)) > height:
        kept.remove(min(kept, key=lambda node: (busy[node], -node)))  # the quietest, the newest of equals
    groups = _groups(snapshot, kept)
    layer = snapshot.layers[members[0]] if members else 0
    stack = None
    if memory is not None and len(kept) == len(members):
        free = height - _needed(layout, snapshot, kept, lines)
        spare = max(0, min(SPARE, free // max(1, len(kept))))
        stack = _stack(layout, column, layer, groups, lines, memory, spare)
        if stack[2] > height:  # grown past the terminal with its spare lines: compact again
            stack = None
    if stack is None:
        stack = _stack(layout, column, layer, groups, lines, Memory(), 0)
    placed, boxes, line = stack
    layout.placed.update((place.node, place) for place in placed)
    layout.groups.extend(boxes)
    if memory is not None:
        memory.remember(layer, placed, boxes)
    if len(kept) < len(members):
        layout.more[column] = (line, len(members) - len(kept))
        line += 1
    layout.height = max(layout.height, line)


def _stack(
    layout: Layout,
    column: int,
    layer: int,
    groups: list[tuple[str, list[int]]],
    lines: dict[int, list[int]],
    memory: Memory,
    spare: int,
) -> tuple[list[Placed], list[Group], int]:
    """The column's boxes top to bottom, each on its remembered line unless what is above has grown into it;
    then (and for a new box) `spare` lines below what is above. Returns the boxes, groups and lines used."""
    placed: list[Placed] = []
    boxes: list[Group] = []
    line = room = 0  # the first free line, and the spare lines owed below what is above it
    for namespace, group in groups:
        remembered = memory.boxes.get((layer, namespace))
        if namespace:
            top = _settle(remembered[0] if remembered else None, line, line + room)
            line, room = top + 1, 0
        for node in group:
            edges = lines[node]
            first = _settle(memory.tops.get(node), line, line + room)
            size = _lines(layout, node, edges)
            placed.append(Placed(node, column, first, size, tuple(edges)))
            line, room = first + size, spare
        if namespace:
            bottom = _settle(remembered[1] if remembered else None, line, line + room)
            boxes.append(Group(column, namespace, top, bottom))
            line, room = bottom + 1, 0
        else:
            boxes.append(Group(column, namespace, placed[-1].top, line - 1))
    return placed, boxes, line


def _settle(remembered: int | None, floor: int, fresh: int) -> int:
    """A remembered line while what is above has not grown into it (`floor`: the first line free), else `fresh`."""
    return remembered if remembered is not None and remembered >= floor else fresh


def _cap(layout: Layout, snapshot: MapSnapshot, node: int, edges: list[int], room: int) -> list[int]:
    """A node's edges, the busiest `room - 1` of them in their order when they do not all fit (the last line
    says how many are left out)."""
    if len(edges) <= room:
        return edges
    keep = set(sorted(edges, key=lambda edge: -snapshot.rate[edge])[: room - 1])
    layout.hidden_edges[node] = len(edges) - len(keep)
    return [edge for edge in edges if edge in keep]


def _lines(layout: Layout, node: int, edges: list[int]) -> int:
    """A node's lines: one per edge drawn, one more for `+N more` when some are left out, at least one."""
    return max(1, len(edges) + (node in layout.hidden_edges))


def _needed(layout: Layout, snapshot: MapSnapshot, kept: list[int], lines: dict[int, list[int]]) -> int:
    groups = _groups(snapshot, kept)
    boxes = BOX_PADDING * sum(bool(namespace) for namespace, _ in groups)
    return sum(_lines(layout, node, lines[node]) for node in kept) + boxes


def _groups(snapshot: MapSnapshot, nodes: list[int]) -> list[tuple[str, list[int]]]:
    """Nodes by namespace, namespaces in the order of their first node; each boxless node on its own."""
    groups: dict[str, list[int]] = {}
    result: list[tuple[str, list[int]]] = []
    for node in nodes:
        namespace = snapshot.nodes[node].namespace
        if not namespace:
            result.append(("", [node]))
        elif namespace in groups:
            groups[namespace].append(node)
        else:
            groups[namespace] = [node]
            result.append((namespace, groups[namespace]))
    return result
