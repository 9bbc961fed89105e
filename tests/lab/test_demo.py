"""`flowscope demo`: a bad observe flag is refused before any lab is built."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lab_helpers import PROJECT, assert_nothing_left

pytestmark = pytest.mark.netns


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowscope.cli.main", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT,
        check=False,
    )


@pytest.mark.parametrize(
    ("flags", "error"),
    [(["--bogus"], "unrecognized arguments: --bogus"), (["--protocol", "tpc"], "tpc")],
)
def test_a_bad_observe_flag_fails_before_the_lab_is_built(fresh_name: str, flags: list[str], error: str) -> None:
    result = demo("--name", fresh_name, "--", *flags)
    assert result.returncode == 2, result
    assert result.stdout == ""  # not even "building lab"
    (line,) = result.stderr.splitlines()
    assert error in line and line.startswith("flowscope")
    assert_nothing_left(fresh_name)
