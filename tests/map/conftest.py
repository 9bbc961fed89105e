"""Fixtures for `flowscope map` tests: top's pseudo-terminal (tests/top/top_terminal.py) running `map`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS / "cli"))  # cli_runner
sys.path.insert(0, str(_TESTS / "top"))  # top_terminal

from top_terminal import Terminal  # noqa: E402  (found through the path above)


@pytest.fixture
def map_env() -> dict[str, str]:
    """A terminal type rich knows, and no size but the terminal's."""
    drop = ("COLUMNS", "LINES", "NO_COLOR")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env["TERM"] = "xterm-256color"
    return env


@pytest.fixture
def map_terminal(map_env: dict[str, str]) -> Iterator[Callable[..., Terminal]]:
    terminals: list[Terminal] = []

    def start(*args: str, rows: int = 45, cols: int = 160) -> Terminal:
        terminals.append(Terminal(list(args), map_env, rows=rows, cols=cols, command="map"))
        return terminals[-1]

    yield start
    for terminal in terminals:
        terminal.close()
