"""The agent's export flags: Hubble's FlowFilter list syntax, and one clear line for a bad flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowscope.observer.exporter.settings import parse_filters

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")


@pytest.mark.parametrize(
    "text",
    [
        '{"verdict":["DROPPED"]} {"sourcePod":["default/"]}',
        '{"verdict":["DROPPED"]}\n{"source_pod":["default/"]}\n',
        '{"verdict":["DROPPED"]},{"source_pod":["default/"]}',
        '[{"verdict":["DROPPED"]}, {"source_pod":["default/"]}]',
    ],
)
def test_filter_lists_take_hubbles_forms(text: str) -> None:
    first, second = parse_filters(text)
    assert list(first.verdict) == [2] and list(second.source_pod) == ["default/"]


def test_an_empty_list_is_no_filter() -> None:
    assert parse_filters("") == () and parse_filters(" \n") == ()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--export-allowlist", '{"nope":1}'], '--export-allowlist #1: Message type "flow.FlowFilter" has no field'),
        (["--export-denylist", '{"verdict":'], "--export-denylist: not JSON at character"),
        (["--export-fieldmask", "source,bogus"], "--export-fieldmask: flow.Flow has no field 'bogus'"),
        (["--export-file-max-size-mb", "0"], "--export-file-max-size-mb must be at least 1"),
    ],
)
def test_a_bad_flag_is_one_line_and_a_failing_exit(tmp_path: Path, flags: list[str], words: str) -> None:
    argv = [FLOWSCOPE, "agent", "--node-name", "n", "--export-file", str(tmp_path / "flows.log"), *flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"flowscope agent: {words}")
    assert not (tmp_path / "flows.log").exists()


def test_filter_flags_need_an_export_file() -> None:
    argv = [FLOWSCOPE, "agent", "--node-name", "n", "--export-allowlist", '{"verdict":["DROPPED"]}']
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "need --export-file" in done.stderr
