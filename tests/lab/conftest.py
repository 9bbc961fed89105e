"""Fixtures for lab tests: root, unique lab names, and labs shared by a module.

Lab tests build real network namespaces, so they need root. Like the `bpf` tests they are skipped elsewhere
but fail under CI=true. Test labs are named `t<pid>-<word>`, so their namespaces start with `fs-t<pid>-` and
tests/conftest.py sweeps them if this run is killed before it cleans up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowscope.lab import Lab
from flowscope.lab.topology import LABS_DIR


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: builds network namespaces (needs root)")


@pytest.fixture(scope="session")
def needs_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("lab tests must run under CI, but they need root")
        pytest.skip("lab tests need root")
    _sweep_labs_of_dead_runs()


def _sweep_labs_of_dead_runs() -> None:
    """Take down test labs whose run was killed: tests/conftest.py removes their namespaces, this the rest."""
    for state_dir in LABS_DIR.glob("t*-*"):
        match = re.fullmatch(r"t(\d+)-[a-z0-9]+", state_dir.name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            Lab(state_dir.name).down()


def lab_name(word: str) -> str:
    return f"t{os.getpid()}-{word}"


@pytest.fixture
def fresh_name(needs_root: None) -> Iterator[str]:
    """A lab name for one test, whose lab is removed afterwards whatever happened."""
    name = lab_name("x")
    Lab(name).down()
    yield name
    Lab(name).down()


@pytest.fixture(scope="module")
def one_node(needs_root: None) -> Iterator[Lab]:
    with Lab(lab_name("one"), nodes=1) as lab:
        lab.up(traffic=False, agent=False)
        yield lab


@pytest.fixture(scope="module")
def two_nodes(needs_root: None) -> Iterator[Lab]:
    with Lab(lab_name("two"), nodes=2) as lab:
        lab.up(traffic=False, agent=False)
        yield lab
