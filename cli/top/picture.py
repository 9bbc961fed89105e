"""`flowscope top --once`: the table as it stands after a short read, printed, or written as a picture to share
(`--svg FILE`, `--html FILE`: rich's recorded console, exported).

The picture is the live screen's frame, built by the same render.frame from the same table, so it shows what
top would have shown then; only its size differs: as wide as asked (or the terminal), and as tall as its rows,
up to ROWS of them, with no keys line (nobody can press them in a picture).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console

from flowscope.cli.errors import CliError
from flowscope.cli.top import render
from flowscope.cli.top.controls import Controls
from flowscope.cli.top.state import FlowTable

READ_SECONDS = 2.0  # after the backfill (the last 40 s), live flows for the 2 s rate column to mean something
ROWS = 60  # rows in a picture at most
WIDTH = 200  # a picture's width (and --once's into a pipe): room for the L7 column and the sparklines


def write(table: FlowTable, shown: str, server: str, svg: Path | None, html: Path | None, width: int | None) -> None:
    """Print the frame (no picture asked for) or record it and write the pictures asked for."""
    controls = Controls("", lambda text: None, shown)
    snapshot, order = controls.view(table.snapshot)
    controls.page = max(1, min(len(order), ROWS))
    picture = svg is not None or html is not None
    console = Console(
        file=io.StringIO() if picture else sys.stdout,
        record=picture,
        width=width or (WIDTH if picture or not sys.stdout.isatty() else None),
        highlight=False,
        markup=False,
        emoji=False,
    )
    height = controls.page + render.CHROME
    frame = render.frame(snapshot, order, controls, server, console.width, height)
    frame.renderables.pop()  # the keys line
    console.print(frame)
    exports = (
        (svg, lambda: console.export_svg(title="flowscope top", clear=False)),
        (html, lambda: console.export_html(clear=False)),
    )
    for path, export in exports:
        if path is None:
            continue
        try:
            path.write_text(export(), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
