"""One frame of `flowscope top`: header, the visible slice of the rows, footer.

Rendering costs time linear in the rows laid out, so only the rows on screen ever are, and every column has
a fixed width, so a row is one line of text cut and padded to those widths (see `table`). When the screen is
narrow, the least needed columns go first, rather than squeezing names to dots; the ones that say what happened
(the drop reason, how many flows, when last) give way only once names would be shorter than NARROW_NAME. The
frame is built from a Snapshot, at the refresh rate, never per flow.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from rich.cells import cell_len, set_cell_size
from rich.console import Group, RenderableType
from rich.text import Text

from flowscope.cli.top.controls import HELP, Controls
from flowscope.cli.top.state import WINDOWS, Nodes, Snapshot

HEADER_LINES, FOOTER_LINES = 2, 3
CHROME = HEADER_LINES + 1 + FOOTER_LINES  # every line that is not a row: header, column titles, footer
MIN_NAME = 14  # narrowest source/destination before the extra columns (40 s rate, packets, bytes, 2 s rate) go
NARROW_NAME = 8  # ... and before the reason, flows and last-seen columns go: at 80 columns they stay

Cell = tuple[str, str]  # text and style


@dataclass(frozen=True)
class Column:
    title: str
    width: int  # 0: shares what the fixed columns leave
    right: bool = False
    drop_rank: int = 0  # removed first when the screen is narrow (higher goes first); 0 stays
    min_name: int = MIN_NAME  # it gives way only while the names would be narrower than this


COLUMNS = (
    Column("SOURCE", 0),
    Column("DESTINATION", 0),
    Column("PROTO", 9),
    Column("VERDICT", 9),
    Column("REASON", 14, drop_rank=1, min_name=NARROW_NAME),
    *(Column(f"{window}s/s", 7, right=True, drop_rank={2: 4, 10: 0, 40: 7}[window]) for window in WINDOWS),
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


def layout(width: int) -> tuple[list[Column], int]:
    """The columns that fit `width` and the width of each name column."""
    columns = list(COLUMNS)
    while True:
        fixed = sum(column.width + 1 for column in columns if column.width) + 2
        name_width = (width - fixed) // 2
        optional = [column for column in columns if column.drop_rank and name_width < column.min_name]
        if not optional:
            return columns, max(name_width, 6)
        columns.remove(max(optional, key=lambda column: column.drop_rank))


def human(value: float) -> str:
    """A count in at most 6 characters: 950, 12.3k, 4.5M, 1.2G."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def rate(value: float) -> Cell:
    """Flows per second, with two decimals below 1 (a connection seen once in 40 s is 0.03, not 0.0)."""
    if value <= 0:
        return ("·", "dim")
    if value < 1:
        return (f"{value:.2f}", "")
    return (f"{value:.1f}" if value < 100 else human(value), "")


def age(seconds: float) -> str:
    if seconds < 1:
        return "now"
    for limit, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= limit:
            return f"{seconds // limit:.0f}{unit}"
    return f"{seconds:.0f}s"


def fit(text: str, width: int, right: bool = False) -> str:
    """Exactly `width` terminal cells: cut short with an ellipsis, or padded."""
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…"
    padding = " " * (width - length)
    return padding + text if right else text + padding


def _cells(snapshot: Snapshot, row: int) -> dict[str, Cell]:
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
    return cells


def table(snapshot: Snapshot, rows: np.ndarray, controls: Controls, width: int) -> Text:
    """The column titles and the visible rows, as one Text of fixed-width lines.

    Not a rich Table: with every width fixed there is nothing for a Table to lay out, and it costs ~1 ms a
    row to render (a Padding and a wrap per cell), where a line of text costs a few tens of microseconds."""
    columns, name_width = layout(width)
    placed = [(column, column.width or name_width) for column in columns]
    sorted_title = {"rate": f"{WINDOWS[controls.window]}s/s", "last": "SEEN", "total": "FLOWS", "drops": "VERDICT"}
    marked = "" if controls.freeze else sorted_title[controls.sort]
    text = Text(no_wrap=True, overflow="crop")
    titles = [fit(column.title + "▼" * (column.title == marked), size, column.right) for column, size in placed]
    text.append(" ".join(titles) + " ", style="bold reverse")
    for row in rows:
        cells = _cells(snapshot, int(row))
        text.append("\n")
        for column, size in placed:
            value, style = cells[column.title]
            text.append(fit(value, size, column.right), style=style or None)
            text.append(" ")
    return text


def header(controls: Controls) -> list[Text]:
    """The title with the sort and the FROZEN/PAUSED states, then the filter line (or the one being typed)."""
    flags = [name for name, on in (("FROZEN", controls.freeze), ("PAUSED", controls.pause)) if on]
    title = Text.assemble(
        ("flowscope top", "bold"),
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


def footer(snapshot: Snapshot, first: int, shown: int, server: str) -> list[Text]:
    """The counts that matter (flows/s and drops/s over 2 s, drops, lost events), where the flows come from
    (the server, a broken stream, the nodes), and the keys."""
    flows_rate = float(snapshot.rates[0].sum())
    drops_rate = float(snapshot.rates[0][snapshot.drop].sum())
    span = f"{first + 1}-{first + shown}" if shown else "0"
    stats = Text.assemble(
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
    state = Text.assemble(("server ", "bold"), server, "   ")
    if snapshot.error:  # before the nodes: a narrow screen cuts the end of the line
        state.append(f"✗ {snapshot.error}   ", style="bold red")
    state.append_text(_nodes(snapshot.nodes))
    lines = [stats, state, Text(HELP, style="dim")]
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return lines


def frame(snapshot: Snapshot, order: np.ndarray, controls: Controls, server: str, width: int, height: int) -> Group:
    """The whole screen: only `controls.page` rows from `controls.offset` are laid out."""
    rows = order[controls.offset : controls.offset + controls.page]
    filler = controls.page - len(rows)
    parts: list[RenderableType] = [*header(controls), *refusal(controls, width), table(snapshot, rows, controls, width)]
    if filler:
        parts.append(Text("\n" * (filler - 1)))
    parts += footer(snapshot, controls.offset, len(rows), server)
    return Group(*parts)
