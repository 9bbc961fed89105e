"""Where each box of `flowscope map` goes: columns by layer (sources left, destinations right), and within a
column the boxes of each namespace together, in the order they were first seen.

Stable by construction: a node's column is the layer it was first seen in, and the order within a column is
first-seen order (namespaces by their first node, nodes within them by their own), which new traffic can only
append to, never re-sort. A box with several edges out takes a line per edge, so it can grow downwards; what is
below it moves down with it, but never changes column or order.

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


def arrange(
    snapshot: MapSnapshot, nodes: Collection[int], edges: Collection[int], height: int, edge_lines: int = 8
) -> Layout:
    """Place `nodes` (and the `edges` among them) in `height` lines; `edge_lines` caps the lines one node's
    edges take before the rest become `+N more`."""
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
        _place_column(layout, snapshot, column, members, outgoing, busy_nodes, height, edge_lines)
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
) -> None:
    lines = {
        node: _cap(layout, snapshot, node, outgoing[node], max(1, min(edge_lines, height - 3))) for node in members
    }
    kept = list(members)
    while kept and _needed(layout, snapshot, kept, lines) + (len(kept) < len(members)) > height:
        kept.remove(min(kept, key=lambda node: (busy[node], -node)))  # the quietest, the newest of equals
    line = 0
    for namespace, group in _groups(snapshot, kept):
        boxed = bool(namespace)
        top = line
        line += boxed
        for node in group:
            edges = lines[node]
            size = _lines(layout, node, edges)
            layout.placed[node] = Placed(node, column, line, size, tuple(edges))
            line += size
        layout.groups.append(Group(column, namespace, top, line if boxed else line - 1))
        line += boxed
    if len(kept) < len(members):
        layout.more[column] = (line, len(members) - len(kept))
        line += 1
    layout.height = max(layout.height, line)


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
