"""Hypothesis draws constants from flowscope's code, not from the packages our venv sees (Debian's bcc among
them): tests/conftest.py tells it every site directory is someone else's. Before, a clean run parsed Debian's
bcc/__init__.py and printed `<unknown>:749: DeprecationWarning: invalid escape sequence '\\.'` (its line 749)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import bcc  # type: ignore[import-not-found]  # imported, as the agent's modules import it in a full run
from hypothesis.internal.constants_ast import is_local_module_file

from flowscope.observer.filters import core

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "tests/reliability/test_hostile_requests.py::test_bytes_that_are_no_request_are_refused_in_words"


def test_debian_packages_are_not_ours_and_flowscope_is() -> None:
    assert bcc.__file__.startswith("/usr/lib/python3/dist-packages/")
    assert not is_local_module_file(bcc.__file__)
    assert is_local_module_file(core.__file__)


def test_a_clean_run_parses_flowscope_only_and_warns_of_nothing(tmp_path: Path) -> None:
    """A property test run as CI runs it, with no constants cached yet, beside this module, which imports bcc:
    Hypothesis parses flowscope's modules and no package's, and nothing warns."""
    this = f"{Path(__file__).relative_to(ROOT)}::test_debian_packages_are_not_ours_and_flowscope_is"
    pytest = [str(Path(sys.executable).parent / "pytest"), "-q", "-p", "no:cacheprovider", this, HOSTILE]
    env = {**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path)}
    done = subprocess.run(pytest, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout
    assert "invalid escape sequence" not in done.stdout + done.stderr, done.stdout
    parsed = [line.split(": ", 1)[1] for file in (tmp_path / "constants").iterdir() for line in _header(file)]
    assert any("/flowscope/" in path for path in parsed), parsed
    packages = [Path(directory).resolve() for directory in site.getsitepackages()]
    assert [path for path in parsed if any(Path(path).resolve().is_relative_to(d) for d in packages)] == []


def _header(file: Path) -> list[str]:
    """The `# file: PATH` line Hypothesis writes at the top of each module's cached constants."""
    return [line for line in file.read_text().splitlines()[:2] if line.startswith("# file: ")]
