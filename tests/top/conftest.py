"""Fixtures for `flowscope top` tests: the CLI tests' fake Observer server, and terminals to run top in."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))  # cli_fake_server, cli_samples, cli_runner

from cli_fake_server import FakeServer
from top_terminal import Terminal


@pytest.fixture
def server(short_tmp: Path) -> Iterator[FakeServer]:
    with FakeServer(short_tmp / "hubble.sock") as fake:
        yield fake


@pytest.fixture
def env(short_tmp: Path) -> dict[str, str]:
    """No server but the one a test names, a terminal type rich knows, and no size but the terminal's."""
    drop = ("FLOWSCOPE_", "COLUMNS", "LINES", "NO_COLOR")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env["FLOWSCOPE_DEFAULT_SOCKET_PATH"] = str(short_tmp / "no-agent.sock")
    env["TERM"] = "xterm-256color"
    return env


@pytest.fixture
def terminal_for(env: dict[str, str]) -> Iterator[Callable[..., Terminal]]:
    terminals: list[Terminal] = []

    def start(*args: str, cols: int = 150) -> Terminal:
        terminals.append(Terminal(list(args), env, cols=cols))
        return terminals[-1]

    yield start
    for terminal in terminals:
        terminal.close()
