"""The version the agent and the relay report is the one pyproject.toml declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

from flowscope.common.version import VERSION
from flowscope.observer.server import state
from flowscope.relay import status

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_version_is_pyprojects() -> None:
    assert VERSION == tomllib.loads(PYPROJECT.read_text())["project"]["version"]


def test_agent_and_relay_report_it() -> None:
    assert state.VERSION == f"flowscope {VERSION}"
    assert status.VERSION == f"flowscope-relay {VERSION}"
