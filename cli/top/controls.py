"""What the keys of `flowscope top` change: the view (connections or L7), sort key, frozen order, pause, scroll
position and selected row, the connection opened on its latest flows, the filter line.

The selected row leads the scrolling: ↑/↓ move it and the page with it (it is the top row until the last page,
where it walks down to the last row), so scrolling reads as it always did and every row can be selected. Enter
opens the selected connection (its latest flows below the table); Enter or Esc closes it. The connection is
kept by its key, not its place, so it stays opened while rows reorder, and through a new filter.

`s` starts a packet-path session (`flowscope trace`) on the opened connection, or on the selected row when none
is opened: flowpanel's `trace_arguments` gives the session's filter flags, and the screen runs it (cli/top/session.py).
In the L7 view `s` stays the slowest-first sort.

Kept apart from the terminal and from rich so it can be driven key by key in tests. `handle` returns an
`Action` only for what the command itself must do (quit, reconnect with a new filter); everything else is
state the next frame reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from flowscope.cli.top.grouping import RowKey
from flowscope.cli.top.state import WINDOWS, Rows, Snapshot, sort_order

SORTS = {"r": "rate", "l": "last", "d": "drops", "t": "total", "s": "slow"}
VIEWS = ("flows", "l7")  # `v` goes round them
HELP = {
    "flows": "q quit  / filter  v L7 view  r rate (again: window)  l last seen  d drops  t total  f freeze  p pause  "
    "↑↓ PgUp PgDn  Enter flows  s trace",
    "opened": "q quit  Enter/Esc close the flows  s trace them  / filter  v L7 view  r rate  l last seen  d drops  "
    "t total  f freeze  p pause  ↑↓ select",
    "l7": "q quit  / filter  v connections  r rate (again: window)  l last seen  d errors  t total  s slowest p95  "
    "f freeze  p pause  ↑↓ PgUp PgDn",
}


class Action(Enum):
    QUIT = "quit"
    FILTER = "filter"  # apply `Controls.filter_text`: reconnect with it
    TRACE = "trace"  # start a packet-path session on `Controls.connection`, then come back


@dataclass
class FilterLine:
    """The filter being typed: its text and, after every key, why it does not parse (None when it does)."""

    text: str
    error: str | None = None


class Controls:
    """The viewer's state between frames."""

    def __init__(self, filter_text: str, validate: Callable[[str], str | None], shown: str = "flows") -> None:
        self.filter_text = filter_text  # the filter the stream uses
        self.fallback: str | None = None  # the filter before it, to go back to if a server refuses this one
        self.refusal: str | None = None  # why a server refused the last filter applied, shown whole
        self.validate = validate
        self.editing: FilterLine | None = None
        self.shown = shown  # `v`: the connections (L3/L4 flows) or the L7 messages (DNS, HTTP)
        self.sort = "rate"
        self.window = 1  # index into WINDOWS that rate sorting uses: 10 s, steady enough to read
        self.freeze = False  # `f`: keep the order rows had when it was pressed, new rows at the end
        self.frozen: np.ndarray | None = None  # that order, captured by the next frame
        self.pause = False  # `p`: keep showing one snapshot (the stream is still counted meanwhile)
        self.paused: Snapshot | None = None  # that snapshot, captured by the next frame
        self.offset = 0  # first visible row
        self.selected = 0  # the row Enter opens, a place in the view's order (connections only)
        self.opening = False  # Enter was pressed: the next view opens the selected row
        self.opened: RowKey | None = None  # the connection whose latest flows are shown
        self.current: RowKey | None = None  # the selected row's connection in the last frame
        self.page = 20  # visible rows, set by each frame for PgUp/PgDn
        self.rows = 0  # rows in the last frame, to keep scrolling inside them

    @property
    def sort_label(self) -> str:
        if self.sort == "rate":
            return f"rate {WINDOWS[self.window]}s"
        if self.shown == "l7":
            return {"drops": "errors", "slow": "slowest p95"}.get(self.sort, self.sort)
        return self.sort

    @property
    def connection(self) -> RowKey | None:
        """The connection `s` traces: the opened one, or else the selected row's."""
        return self.opened if self.opened is not None else self.current

    @property
    def help(self) -> str:
        return HELP["opened" if self.opened is not None and self.shown == "flows" else self.shown]

    def handle(self, key: str) -> Action | None:
        """Apply one key (a character or a name from `keys.decode`)."""
        if self.editing is not None:
            return self._edit(self.editing, key)
        if key in ("q", "Q", "ctrl-c"):
            return Action.QUIT
        if key == "/":
            text = self.filter_text + " " if self.filter_text else ""  # ready for the next flag
            self.editing = FilterLine(text, self.validate(text))
        elif key == "s" and self.shown == "flows":
            return Action.TRACE if self.connection is not None else None
        elif key == "enter" and self.shown == "flows":
            self.opening, self.opened = self.opened is None, None
        elif key == "esc":
            self.opening, self.opened = False, None
        elif key == "v":
            self.shown = VIEWS[(VIEWS.index(self.shown) + 1) % len(VIEWS)]
            self.freeze, self.frozen, self.offset, self.selected = False, None, 0, 0  # a frozen order is of the other
            self.opening, self.opened = False, None  # view's rows, and so is an opened one
            if self.sort == "slow" and self.shown != "l7":
                self.sort = "rate"
        elif key in SORTS and not (SORTS[key] == "slow" and self.shown != "l7"):  # only L7 rows have latency
            if SORTS[key] == "rate" and self.sort == "rate":
                self.window = (self.window + 1) % len(WINDOWS)
            self.sort = SORTS[key]
            self.freeze = False  # choosing a sort means wanting it now
            self.offset = self.selected = 0
        elif key == "f":
            self.freeze = not self.freeze
        elif key in ("p", " "):
            self.pause = not self.pause
        else:
            self._scroll(key)
        return None

    def refuse(self, message: str) -> bool:
        """A server refused the filter in use (INVALID_ARGUMENT): keep its reason on screen and go back to the
        filter before it. True when there is one to go back to; sending the refused one again would only be
        refused again, so it never is."""
        self.refusal = f"the server refused {self.filter_text or 'no filter'!r}: {message}"
        if self.fallback is None:
            return False
        self.filter_text, self.fallback = self.fallback, None
        return True

    def _scroll(self, key: str) -> None:
        moves = {"up": -1, "down": 1, "pgup": -self.page, "pgdn": self.page, "k": -1, "j": 1}
        if key in moves:
            self.selected += moves[key]
        elif key in ("home", "g"):
            self.selected = 0
        elif key in ("end", "G"):
            self.selected = self.rows
        self._follow()

    def _follow(self) -> None:
        """Keep the selected row inside the rows, and the page at it (the last page holds the last rows)."""
        self.selected = max(0, min(self.selected, self.rows - 1))
        self.offset = max(0, min(self.selected, self.rows - self.page))

    def _edit(self, line: FilterLine, key: str) -> Action | None:
        if key == "ctrl-c":
            return Action.QUIT
        if key == "esc":
            self.editing = None
            return None
        if key == "enter":
            if line.error is not None:
                return None  # an invalid filter is never sent; the error stays on screen
            self.editing = None
            if line.text.strip() == self.filter_text:
                return None
            self.fallback, self.filter_text, self.refusal = self.filter_text, line.text.strip(), None
            self.freeze, self.pause, self.offset, self.selected = False, False, 0, 0
            return Action.FILTER
        if key == "backspace":
            line.text = line.text[:-1]
        elif key == "ctrl-u":
            line.text = ""
        elif key == "ctrl-w":
            line.text = line.text.rstrip().rpartition(" ")[0] + (" " if " " in line.text.rstrip() else "")
        elif len(key) == 1 and key.isprintable():
            line.text += key
        else:
            return None
        line.error = self.validate(line.text)
        return None

    def view(self, take: Callable[[], Snapshot]) -> tuple[Snapshot, np.ndarray]:
        """The snapshot to show (the paused one, or a new one) and the rows of the view in display order."""
        if not self.pause:
            self.paused = None
        snapshot = self.paused if self.paused is not None else take()
        if self.pause:
            self.paused = snapshot
        rows: Rows = snapshot.l7 if self.shown == "l7" else snapshot
        if self.sort == "slow" and self.shown == "l7":
            order = snapshot.l7.slowest_first(self.window)
        else:
            order = sort_order(rows, "rate" if self.sort == "slow" else self.sort, self.window)
        if not self.freeze:
            self.frozen = None
        elif self.frozen is None:
            self.frozen = order
        else:  # rows are never removed, so rows new since the freeze are exactly the higher indexes
            order = np.concatenate([self.frozen, np.arange(len(self.frozen), len(rows))])
        self.rows = len(order)
        self._follow()
        self.current = snapshot.keys[int(order[self.selected])] if self.shown == "flows" and self.rows else None
        if self.opening and self.current is not None:
            self.opening, self.opened = False, self.current
        return snapshot, order
