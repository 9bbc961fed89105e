"""Running the real `flowscope` command as a subprocess, the way a person would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def flowscope_command() -> list[str]:
    """The installed `flowscope` entry point next to this Python, else `python -m cli.main`."""
    script = Path(sys.executable).parent / "flowscope"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowscope.cli.main"]


def run_flowscope(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*flowscope_command(), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def start_flowscope(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A running `flowscope` whose stdout the test reads line by line (for --follow)."""
    return subprocess.Popen(
        [*flowscope_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
