"""A character grid for drawing the map: lines kept as the directions they go in, so crossings, corners and
joins come out as the right box-drawing character whatever order they were drawn in, and text over them.

Each cell holds its directions (up, down, left, right), or text, and a style; `lines()` turns the grid into
rich Text, a run of one style at a time.
"""

from __future__ import annotations

from rich.text import Text

UP, DOWN, LEFT, RIGHT = 1, 2, 4, 8
_GLYPHS = {
    LEFT: "─",
    RIGHT: "─",
    LEFT | RIGHT: "─",
    UP: "│",
    DOWN: "│",
    UP | DOWN: "│",
    DOWN | RIGHT: "┌",
    DOWN | LEFT: "┐",
    UP | RIGHT: "└",
    UP | LEFT: "┘",
    UP | DOWN | RIGHT: "├",
    UP | DOWN | LEFT: "┤",
    LEFT | RIGHT | DOWN: "┬",
    LEFT | RIGHT | UP: "┴",
    UP | DOWN | LEFT | RIGHT: "┼",
}


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._mask = [[0] * width for _ in range(height)]
        self._text: list[list[str | None]] = [[None] * width for _ in range(height)]
        self._style = [[""] * width for _ in range(height)]

    def _inside(self, x: int, y: int) -> bool:
        return 0 <= x < self.width and 0 <= y < self.height

    def mark(self, x: int, y: int, directions: int, style: str = "") -> None:
        if self._inside(x, y):
            self._mask[y][x] |= directions
            if style or not self._style[y][x]:
                self._style[y][x] = style

    def horizontal(self, y: int, x0: int, x1: int, style: str = "") -> None:
        """A line from x0 to x1 (inclusive), joining whatever it meets at its ends."""
        if x1 < x0:
            x0, x1 = x1, x0
        for x in range(x0, x1 + 1):
            self.mark(x, y, (LEFT if x > x0 else 0) | (RIGHT if x < x1 else 0), style)

    def vertical(self, x: int, y0: int, y1: int, style: str = "") -> None:
        if y1 < y0:
            y0, y1 = y1, y0
        for y in range(y0, y1 + 1):
            self.mark(x, y, (UP if y > y0 else 0) | (DOWN if y < y1 else 0), style)

    def box(self, x0: int, y0: int, x1: int, y1: int, style: str = "") -> None:
        self.horizontal(y0, x0, x1, style)
        self.horizontal(y1, x0, x1, style)
        self.vertical(x0, y0, y1, style)
        self.vertical(x1, y0, y1, style)

    def write(self, x: int, y: int, text: str, style: str = "", limit: int | None = None) -> None:
        """Text from x, cut at `limit` (exclusive) or the edge of the canvas."""
        end = self.width if limit is None else min(limit, self.width)
        for offset, char in enumerate(text):
            if x + offset >= end:
                break
            if self._inside(x + offset, y):
                self._text[y][x + offset] = char
                self._style[y][x + offset] = style

    def lines(self, rows: int | None = None) -> list[Text]:
        result = []
        for y in range(self.height if rows is None else min(rows, self.height)):
            line = Text(no_wrap=True, overflow="crop")
            run: list[str] = []
            style = ""
            texts, masks, styles = self._text[y], self._mask[y], self._style[y]
            for x in range(self.width):
                char = texts[x]
                if char is None:
                    char = _GLYPHS.get(masks[x], " ")
                if styles[x] != style:
                    line.append("".join(run), style or None)
                    run, style = [], styles[x]
                run.append(char)
            line.append("".join(run).rstrip() if not style else "".join(run), style or None)  # no trailing blanks
            result.append(line)
        return result
