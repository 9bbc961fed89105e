"""One frame of `flowscope top`: header, the visible slice of the view's rows (connections, or L7 messages:
l7render.py), the opened connection's latest flows (flowpanel.py), footer.

Rendering costs time linear in the rows laid out, so only the rows on screen ever are, and every column has
a fixed width, so a row is one line of text cut and padded to those widths (see `table`). When the screen is
narrow, the least needed columns go first, rather than squeezing names to dots; the ones that say what happened
(the drop reason, how many flows, when last) give way only once names would be shorter than NARROW_NAME. The
frame is built from a Snapshot, at the refresh rate, never per flow.

A connection's last minute is a sparkline (LAST 60s), and once there are L7 flows a connection with L7 has an
L7 column (its busiest request, answers by status, p50/p95: l7render.connection_cell); both are the first to go
on a narrow screen (the L7 view shows the L7 whole, and rates say how busy).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from functools import partial

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text

from flowscope.cli.top.cells import NARROW_NAME, Cell, Column, age, fit, human, layout, rate, sparklines
from flowscope.cli.top.controls import Controls
from flowscope.cli.top.l7render import L7_CELL, L7_COLUMNS, SORTED_TITLES, connection_cell, l7_cells
from flowscope.cli.top.state import WINDOWS, Nodes, Snapshot

HEADER_LINES, FOOTER_LINES = 2, 3
CHROME = HEADER_LINES + 1 + FOOTER_LINES  # every line that is not a row: header, column titles, footer
SELECTED = "on grey23"  # the row Enter opens
NO_L7 = "no L7 flows yet: agents report DNS and HTTP on the ports of their --l7-ports (v: back to connections)"


SPARK, L7 = "LAST 60s", "L7"
SPARK_WIDTH = 15  # 4 s a bar
COLUMNS = (
    Column("SOURCE", 0),
    Column("DESTINATION", 0),
    Column("PROTO", 9),
    Column("VERDICT", 9),
    Column("REASON", 14, drop_rank=1, min_name=NARROW_NAME),
    Column(L7, L7_CELL, drop_rank=8),  # only once there are L7 flows
    *(Column(f"{window}s/s", 7, right=True, drop_rank={2: 4, 10: 0, 40: 7}[window]) for window in WINDOWS),
    Column(SPARK, SPARK_WIDTH, drop_rank=9),
    Column("FLOWS", 7, right=True, drop_rank=2, min_name=NARROW_NAME),
    Column("PKTS", 7, right=True, drop_rank=6),
    Column("BYTES", 7, right=True, drop_rank=5),
    Column("SEEN", 5, right=True, drop_rank=3, min_name=NARROW_NAME),
)


def visible_rows(height: int, extra: int = 0) -> int:
    """Rows that fit under the chrome and `extra` lines (a server's refusal)."""
    return max(1, height - CHROME - extra)


def refusal(controls: Controls, width: int) -> list[Text]:
    """Why a server refused the last filter, wrapped rather than cut: the reason is the part that says what to
    fix, and it comes last."""
    if controls.refusal is None:
        return []
    lines = textwrap.wrap(f"✗ {controls.refusal}", max(width - 1, 20), subsequent_indent="  ")
    return [Text(line, style="bold red", no_wrap=True, overflow="crop") for line in lines]


def _cells(snapshot: Snapshot, titles: frozenset[str], sparks: dict[int, str], row: int) -> dict[str, Cell]:
    """The row's cells; the sparkline (drawn for all visible rows at once: `sparks`) and the L7 cell only when
    their columns are on screen (`titles`)."""
    key = snapshot.keys[row]
    aggregated = bool(snapshot.aggregated[row])
    cells: dict[str, Cell] = {
        "SOURCE": (key.source, "cyan"),
        "DESTINATION": (key.destination, "cyan"),
        "PROTO": (key.protocol, "yellow"),
        "VERDICT": (key.verdict, f"bold {key.style}" if key.drop else key.style),
        "REASON": (key.reason, "red"),
        "FLOWS": (human(float(snapshot.total[row])), ""),
        "PKTS": (human(float(snapshot.packets[row])), "") if aggregated else ("-", "dim"),
        "BYTES": (human(float(snapshot.bytes[row])), "") if aggregated else ("-", "dim"),
        "SEEN": (age(snapshot.now - float(snapshot.last_seen[row])), ""),
    }
    for index, window in enumerate(WINDOWS):
        cells[f"{window}s/s"] = rate(float(snapshot.rates[index, row]))
    if SPARK in titles:
        cells[SPARK] = (sparks[row], "green")
    if L7 in titles:
        cells[L7] = connection_cell(snapshot.l7, (key.source, key.destination, key.protocol))
    return cells


def table(snapshot: Snapshot, rows: np.ndarray, controls: Controls, width: int) -> Text:
    """The column titles and the visible rows, as one Text of fixed-width lines.

    Not a rich Table: with every width fixed there is nothing for a Table to lay out, and it costs ~1 ms a
    row to render (a Padding and a wrap per cell), where a line of text costs a few tens of microseconds."""
    cells_of: Callable[[int], dict[str, Cell]]
    if controls.shown == "l7":
        columns, name_width = layout(width, L7_COLUMNS)
        sorted_title = SORTED_TITLES
        cells_of = partial(l7_cells, snapshot.l7)
    else:
        columns, name_width = layout(width, COLUMNS if len(snapshot.l7) else [c for c in COLUMNS if c.title != L7])
        sorted_title = {"last": "SEEN", "total": "FLOWS", "drops": "VERDICT"}
        on_screen = frozenset(column.title for column in columns)
        drawn = sparklines(snapshot.history.of_rows(rows), SPARK_WIDTH) if SPARK in on_screen else []
        cells_of = partial(_cells, snapshot, on_screen, dict(zip(rows.tolist(), drawn, strict=False)))
    placed = [(column, column.width or name_width * column.share) for column in columns]
    marked = "" if controls.freeze else sorted_title.get(controls.sort, f"{WINDOWS[controls.window]}s/s")
    text = Text(no_wrap=True, overflow="crop")
    titles = [fit(column.title + "▼" * (column.title == marked), size, column.right) for column, size in placed]
    text.append(" ".join(titles) + " ", style="bold reverse")
    selected = controls.selected - controls.offset if controls.shown == "flows" else -1
    for position, row in enumerate(rows):
        cells = cells_of(int(row))
        text.append("\n")
        start = len(text)
        for column, size in placed:
            value, style = cells[column.title]
            text.append(fit(value, size, column.right), style=style or None)
            text.append(" ")
        if position == selected:
            text.stylize(SELECTED, start, len(text))
    return text


def header(controls: Controls) -> list[Text]:
    """The title with the view (when it is L7), the sort and the FROZEN/PAUSED states, then the filter line (or
    the one being typed)."""
    flags = [name for name, on in (("FROZEN", controls.freeze), ("PAUSED", controls.pause)) if on]
    title = Text.assemble(
        ("flowscope top", "bold"),
        ("  L7 view (DNS, HTTP)" if controls.shown == "l7" else "", "bold magenta"),
        f"  sort: {controls.sort_label}  ",
        (" ".join(flags), "bold yellow"),
        no_wrap=True,
        overflow="ellipsis",
    )
    if controls.editing is not None:
        line = Text.assemble(("filter> ", "bold"), controls.editing.text, ("█", "blink"), "  ")
        if controls.editing.error is None:
            line.append("✓ Enter applies, Esc cancels", style="green")
        else:
            line.append(f"✗ {controls.editing.error}", style="bold red")
    else:
        line = Text.assemble(("filter: ", "bold"), controls.filter_text or ("none (/ to type one)", "dim"))
    line.no_wrap, line.overflow = True, "ellipsis"
    return [title, line]


def _nodes(nodes: Nodes) -> Text:
    if not nodes.relayed:
        seen = sorted(nodes.seen)
        return Text(f"nodes {len(seen)} seen in flows: {', '.join(seen[:5])}" if seen else "nodes: none seen yet")
    text = Text(f"nodes {len(nodes.connected)} connected")  # what the relay said
    if nodes.unavailable:
        down = ", ".join(f"{name} ({why})" for name, why in sorted(nodes.unavailable.items())[:5])
        text.append(f", {len(nodes.unavailable)} unavailable: {down}", style="bold red")
    return text


def _l7_stats(snapshot: Snapshot, span: str) -> Text:
    """The L7 view's counts: requests/s over 2 s, answers, errors, lost events, L7 messages."""
    l7 = snapshot.l7
    errors = int(l7.errors.sum())
    return Text.assemble(
        ("requests/s ", "bold"),
        f"{float(l7.rates[0].sum()):.1f}   ",
        ("answers ", "bold"),
        f"{int(l7.responses.sum()):,}   ",
        ("errors ", "bold"),
        (f"{errors:,}", "bold red" if errors else ""),
        ("   lost events ", "bold"),
        (f"{snapshot.lost:,}", "bold red" if snapshot.lost else ""),
        ("   L7 messages ", "bold"),
        f"{l7.messages:,} of {snapshot.flows:,} flows",
        ("   rows ", "bold"),
        f"{len(l7):,} (showing {span})",
    )


def footer(snapshot: Snapshot, first: int, shown: int, server: str, view: str = "flows", keys: str = "") -> list[Text]:
    """The counts that matter (flows/s and drops/s over 2 s, drops, lost events; in the L7 view requests/s and
    errors), where the flows come from (the server, a broken stream, the nodes), and the keys."""
    span = f"{first + 1}-{first + shown}" if shown else "0"
    stats = _l7_stats(snapshot, span) if view == "l7" else _flow_stats(snapshot, span)
    state = Text.assemble(("server ", "bold"), server, "   ")
    if snapshot.error:  # before the nodes: a narrow screen cuts the end of the line
        state.append(f"✗ {snapshot.error}   ", style="bold red")
    state.append_text(_nodes(snapshot.nodes))
    lines = [stats, state, Text(keys, style="dim")]
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return lines


def _flow_stats(snapshot: Snapshot, span: str) -> Text:
    flows_rate = float(snapshot.rates[0].sum())
    drops_rate = float(snapshot.rates[0][snapshot.drop].sum())
    return Text.assemble(
        ("flows/s ", "bold"),
        f"{flows_rate:.1f}   ",
        ("drops/s ", "bold"),
        (f"{drops_rate:.1f}", "bold red" if drops_rate else ""),
        ("   drops ", "bold"),
        (f"{snapshot.drops:,}", "red" if snapshot.drops else ""),
        ("   lost events ", "bold"),
        (f"{snapshot.lost:,}", "bold red" if snapshot.lost else ""),
        ("   flows ", "bold"),
        f"{snapshot.flows:,}",
        ("   rows ", "bold"),
        f"{len(snapshot):,} (showing {span})",
    )


def _empty_hint(snapshot: Snapshot, controls: Controls) -> str | None:
    """What an empty view says: where L7 flows come from, or that the rows are in the other view (a filter
    such as `-t l7` leaves the connections empty)."""
    if controls.shown == "l7":
        return NO_L7 if not len(snapshot) else f"no L7 flows yet; {len(snapshot):,} connections: v shows them"
    return f"no connections; {len(snapshot.l7):,} L7 rows: v shows them" if len(snapshot.l7) else None


def frame(
    snapshot: Snapshot,
    order: np.ndarray,
    controls: Controls,
    server: str,
    width: int,
    height: int,
    below: list[Text] | None = None,
) -> Group:
    """The whole screen: only `controls.page` rows from `controls.offset` are laid out; `below` them, the opened
    connection's flows (counted out of the page already)."""
    rows = order[controls.offset : controls.offset + controls.page]
    filler = controls.page - len(rows)
    parts: list[RenderableType] = [*header(controls), *refusal(controls, width), table(snapshot, rows, controls, width)]
    hint = _empty_hint(snapshot, controls) if not len(rows) else None
    if hint:
        parts.append(Text(hint, style="dim", no_wrap=True, overflow="ellipsis"))
        filler -= 1
    if filler:
        parts.append(Text("\n" * (filler - 1)))
    parts += below or []
    parts += footer(snapshot, controls.offset, len(rows), server, controls.shown, controls.help)
    return Group(*parts)
