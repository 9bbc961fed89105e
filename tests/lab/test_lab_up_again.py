"""`lab up` over a lab that is up leaves it alone; it rebuilds only with --recreate, and says what is lost."""

from __future__ import annotations

import dataclasses

import pytest
from lab_helpers import cli

from flowscope.lab import Lab
from flowscope.lab.state import LabState

pytestmark = pytest.mark.netns


def pids(lab: Lab) -> list[int]:
    state = LabState.load(lab.state_file)
    assert state is not None
    return sorted(d.pid for d in state.daemons)


def test_up_again_touches_nothing_and_recreate_rebuilds(fresh_name: str) -> None:
    first = cli("up", "--name", fresh_name, "--no-agent")
    assert first.returncode == 0, first.stderr
    assert f'lab "{fresh_name}" is up' in first.stdout
    lab = Lab.existing(fresh_name)
    before = pids(lab)

    again = cli("up", "--name", fresh_name, "--no-agent")
    assert again.returncode == 0, again.stderr
    assert f'lab "{fresh_name}" is already up (1 node' in again.stdout
    assert pids(lab) == before

    bigger = cli("up", "--name", fresh_name, "--nodes", "2", "--no-agent")
    assert bigger.returncode != 0
    assert "with 1 node, not 2" in bigger.stderr and "--recreate" in bigger.stderr
    assert pids(lab) == before

    rebuilt = cli("up", "--name", fresh_name, "--nodes", "2", "--no-agent", "--recreate")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "stored flows are lost" in rebuilt.stdout
    state = LabState.load(lab.state_file)
    assert state is not None and state.nodes == 2
    assert not set(before) & set(pids(lab))


def test_status_prints_where_the_agent_serves_as_recorded(fresh_name: str) -> None:
    """What status prints comes from the record the agents were started with, not from a plan made again."""
    lab = Lab(fresh_name).up(traffic=False, agent=False)
    state = LabState.load(lab.state_file)
    assert state is not None
    elsewhere = lab.state_dir / "elsewhere.sock"
    # A live daemon recorded as node1's agent, serving somewhere the plan would not put it.
    state.daemons.append(dataclasses.replace(state.daemons[0], role="agent-node1"))
    state.agents["node1"] = str(elsewhere)
    state.save(lab.state_file)
    status = cli("status", "--name", fresh_name)
    assert f"serves on unix://{elsewhere}" in status.stdout
    assert "node1/hubble.sock" not in status.stdout
