"""Fixtures for the CLI tests: a fake Observer server on a unix socket, and a way to run `flowscope`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cli_samples
import pytest
from cli_fake_server import FakeServer


@pytest.fixture
def server(short_tmp: Path) -> Iterator[FakeServer]:
    with FakeServer(short_tmp / "hubble.sock", flows=cli_samples.canned()) as fake:
        yield fake


@pytest.fixture
def cli_env(short_tmp: Path) -> dict[str, str]:
    """An environment where the default server and the fallback socket lead nowhere unless a test says so."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWSCOPE_")}
    env["FLOWSCOPE_DEFAULT_SOCKET_PATH"] = str(short_tmp / "no-agent.sock")
    env.pop("NO_COLOR", None)
    return env
