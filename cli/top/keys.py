"""Keys from the terminal: single key presses without Enter or echo, and names for the escape sequences.

The terminal is put in cbreak mode (termios: no canonical line editing, no echo) rather than fully raw:
output processing stays on, so the newlines rich writes still return the carriage, and Ctrl-C still raises
KeyboardInterrupt, which unwinds through `RawTerminal.__exit__` like any exception does, so the terminal is
always given back as it was.
"""

from __future__ import annotations

import os
import select
import termios
import tty
from types import TracebackType

_SEQUENCES = {
    "[A": "up",
    "[B": "down",
    "[C": "right",
    "[D": "left",
    "OA": "up",
    "OB": "down",
    "OC": "right",
    "OD": "left",
    "[5~": "pgup",
    "[6~": "pgdn",
    "[H": "home",
    "[F": "end",
    "OH": "home",
    "OF": "end",
    "[1~": "home",
    "[4~": "end",
    "[7~": "home",
    "[8~": "end",
    "[3~": "delete",
}
_CONTROLS = {
    "\r": "enter",
    "\n": "enter",
    "\x7f": "backspace",
    "\x08": "backspace",
    "\x03": "ctrl-c",
    "\x15": "ctrl-u",
    "\x17": "ctrl-w",
    "\t": "tab",
}


def decode(data: bytes) -> list[str]:
    """Key names in what one read returned: printable characters as themselves, `up`, `pgdn`, `enter`,
    `esc`... An escape sequence not known here is dropped whole rather than typed as characters."""
    text = data.decode("utf-8", "replace")
    keys: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if char != "\x1b":
            keys.append(_CONTROLS.get(char, char))
            continue
        if index >= len(text) or text[index] not in "[O":
            keys.append("esc")  # a lone Escape (a sequence always comes in one read)
            continue
        end = index + 1
        while end < len(text) and not (text[end].isalpha() or text[end] == "~"):
            end += 1
        sequence = text[index : end + 1]
        index = end + 1
        if sequence in _SEQUENCES:
            keys.append(_SEQUENCES[sequence])
    return keys


def read_keys(fd: int, timeout: float) -> list[str]:
    """The keys pressed within `timeout` seconds (an empty list when none was); `eof` when the terminal
    went away (a closed pseudo-terminal reads as EOF or fails with EIO)."""
    ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    if not ready:
        return []
    try:
        data = os.read(fd, 1024)
    except OSError:
        return ["eof"]
    return decode(data) if data else ["eof"]


class RawTerminal:
    """cbreak mode on a terminal for the length of a `with`; the saved settings come back on any exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[int | list[bytes | int]] | None = None

    def __enter__(self) -> RawTerminal:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
