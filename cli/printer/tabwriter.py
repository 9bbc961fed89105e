"""Columns aligned the way Go's tabwriter aligns hubble's tables (padding 3, minimum width 2): every cell but
the last of a row is padded to the widest cell of its column; the last one is left as it is."""

from __future__ import annotations

from collections.abc import Sequence


def align(rows: Sequence[Sequence[str]], padding: int = 3, min_width: int = 2) -> list[str]:
    widths: dict[int, int] = {}
    for row in rows:
        for column, cell in enumerate(row[:-1]):
            widths[column] = max(widths.get(column, 0), len(cell) + padding, min_width)
    lines = []
    for row in rows:
        padded = [cell.ljust(widths[column]) for column, cell in enumerate(row[:-1])]
        lines.append("".join(padded) + (row[-1] if row else ""))
    return lines
