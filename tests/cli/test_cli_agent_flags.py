"""`flowscope agent`'s flags start where the agent's own settings do: their defaults are taken, never copied."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowscope.cli.config import agent_settings
from flowscope.cli.main import build_parser
from flowscope.common.aggregation import AggregationSettings
from flowscope.common.capture import DEFAULT_CAPLEN


def test_aggregation_flags_default_to_the_agents_settings() -> None:
    args = build_parser().parse_args(["agent"])
    assert agent_settings(args)["aggregation"] == AggregationSettings()


def test_aggregation_flags_take_what_config_set_takes() -> None:
    argv = ["agent", "--monitor-aggregation", "low", "--monitor-aggregation-interval", "2000\u03bcs"]
    args = build_parser().parse_args([*argv, "--monitor-aggregation-flags", "syn|psh"])
    assert agent_settings(args)["aggregation"] == AggregationSettings(level=2, interval_ms=2, flags=0x0A)


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["agent", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "medium or maximum (medium)" in text and "at medium and above (5s)" in text
    assert "(syn,fin,rst; or all)" in text


def test_capture_length_defaults_to_the_agents() -> None:
    assert build_parser().parse_args(["agent"]).caplen == DEFAULT_CAPLEN


def test_a_cluster_file_that_does_not_exist_stops_the_agent_at_start(tmp_path: Path) -> None:
    """It used to report `ready` and serve an empty cluster, with one INFO line in its log."""
    argv = [sys.executable, "-m", "flowscope.cli.main", "agent", "--cluster-file", str(tmp_path / "nosuch.json")]
    done = subprocess.run(
        [*argv, "--socket", str(tmp_path / "agent.sock"), "--listen-address", ""],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == f"flowscope agent: cluster file {tmp_path / 'nosuch.json'} does not exist\n"
