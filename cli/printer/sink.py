"""Where printed lines go: a stream, coloured through rich on a terminal, plain text otherwise.

A line is a list of (text, style) segments, so one printer serves both a terminal and a pipe. Plain output is
written straight to the stream (cheap enough for thousands of flows a second); colour goes through rich.
Names that come from the network (pod names, DNS names) are cleaned of control characters first, so a crafted
name cannot drive the terminal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

Segment = tuple[str, str]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def wants_color(choice: str, stream: TextIO) -> bool:
    """--color: `always`, `never`, or `auto`: a terminal that did not ask for none (NO_COLOR, TERM=dumb)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Sink:
    """Writes lines to one stream. `flush_each` (follow mode) pushes every line out as soon as it is made.

    Otherwise, into a file or a pipe, lines are gathered and written `BATCH` at a time: one write of many lines
    costs what one write of one line does, and 20,000 writes were a tenth of `observe --last 20000`. A terminal
    gets each line at once, as before (its order against stderr's lines is what a person sees)."""

    BATCH = 512

    def __init__(self, stream: TextIO, color: bool = False, flush_each: bool = False) -> None:
        self.stream = stream
        self.color = color
        self.flush_each = flush_each
        self._console: Console | None = None
        isatty = getattr(stream, "isatty", None)
        self._gathers = not flush_each and not color and not (isatty and isatty())
        self._pending: list[str] = []

    def line(self, segments: Iterable[Segment]) -> None:
        if self.color:
            from rich.text import Text

            self.console().print(Text.assemble(*[(_escape(text), style) for text, style in segments]))
            if self.flush_each:
                self.stream.flush()
            return
        text = "".join([text for text, _ in segments])
        self._write(_escape(text) if _CONTROL.search(text) else text)  # the same, escaped per segment or whole

    def text(self, text: str) -> None:
        """Already-formatted text (JSON, aligned tables), written as it is."""
        self._write(text[:-1] if text.endswith("\n") else text)

    def texts(self, lines: list[str]) -> None:
        """Lines of already-formatted text without their newlines, as `text` writes them, in one go."""
        if self._gathers:
            self._pending += lines
            if len(self._pending) >= self.BATCH:
                self._write_pending()
            return
        self.stream.write("\n".join(lines) + "\n")
        if self.flush_each:
            self.stream.flush()

    def _write(self, line: str) -> None:
        """One line, without its newline."""
        if self._gathers:
            self._pending.append(line)
            if len(self._pending) >= self.BATCH:
                self._write_pending()
            return
        self.stream.write(line + "\n")
        if self.flush_each:
            self.stream.flush()

    def _write_pending(self) -> None:
        if self._pending:
            self._pending.append("")  # the last line's newline
            self.stream.write("\n".join(self._pending))
            self._pending.clear()

    def flush(self) -> None:
        self._write_pending()
        self.stream.flush()

    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=self.stream,
                force_terminal=True,
                color_system="standard",
                highlight=False,
                markup=False,
                emoji=False,
                soft_wrap=True,
                no_color=False,
            )
        return self._console
