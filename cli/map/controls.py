"""What the keys of `flowscope map` change: the selected node, the focused one, pause, and the filter line.

The filter line is top's own (cli/top/controls.Controls: `/` edits it with observe's flags, checked as typed;
Enter applies it, Esc cancels; a server's refusal goes back to the filter before): every key goes to it while
it is being edited. Nodes are remembered by index, which never changes, so a selection survives new traffic.
Kept apart from the terminal and rich so tests can drive it key by key.
"""

from __future__ import annotations

from collections.abc import Callable

from flowscope.cli.map.graph import MapSnapshot
from flowscope.cli.top.controls import Action, Controls

HELP = "q quit  / filter  ↑↓ j k ←→ h l select  Enter focus  Esc back  p pause"


class MapControls:
    def __init__(self, filter_text: str, validate: Callable[[str], str | None]) -> None:
        self.filter = Controls(filter_text, validate)
        self.selected: int | None = None
        self.focus: int | None = None  # Enter: this node's edges only, and its latest flows
        self.pause = False
        self.paused: MapSnapshot | None = None
        self.order: list[int] = []  # the nodes on screen in reading order, set by each frame
        self.columns: dict[int, int] = {}  # node → its column on screen, set by each frame
        self._whole: tuple[list[int], dict[int, int]] = ([], {})  # the same for the last frame of the whole map

    def handle(self, key: str) -> Action | None:
        """Apply one key (a character or a name from cli/top/keys.decode)."""
        if self.filter.editing is not None or key == "/":
            return self.filter.handle(key)
        if key in ("q", "Q", "ctrl-c"):
            return Action.QUIT
        if key in ("p", " "):
            self.pause = not self.pause
        elif key == "enter" and self.selected is not None:
            self.focus = self.selected
        elif key == "esc" and self.focus is not None:
            # Back to the whole map's nodes at once: a key typed before its next frame (Esc then j) steps
            # through the whole map, not through the focused node's neighbours still on screen.
            self.focus = None
            self.order, self.columns = self._whole
        elif key in ("up", "k", "down", "j"):
            self._step(-1 if key in ("up", "k") else 1)
        elif key in ("left", "h", "right", "l"):
            self._jump(-1 if key in ("left", "h") else 1)
        return None

    def settle(self, order: list[int], columns: dict[int, int]) -> None:
        """The nodes a frame showed: a selection that is not among them moves to the first."""
        self.order, self.columns = order, columns
        if self.focus is None:
            self._whole = (order, columns)
        if self.selected not in columns:
            self.selected = order[0] if order else None

    def _step(self, step: int) -> None:
        if not self.order:
            return
        index = self.order.index(self.selected) if self.selected in self.order else 0
        self.selected = self.order[max(0, min(len(self.order) - 1, index + step))]

    def _jump(self, step: int) -> None:
        """To the first node of the next column left or right (the same row's neighbour, roughly)."""
        if self.selected is None:
            return
        column = self.columns[self.selected] + step
        candidates = [node for node in self.order if self.columns[node] == column]
        if candidates:
            self.selected = candidates[0]

    def view(self, take: Callable[[], MapSnapshot]) -> MapSnapshot:
        """The snapshot to draw: the paused one, or a new one."""
        if not self.pause:
            self.paused = None
        snapshot = self.paused if self.paused is not None else take()
        if self.pause:
            self.paused = snapshot
        return snapshot
