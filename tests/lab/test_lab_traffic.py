"""The traffic generator: every probe of a round succeeds, on one node and across nodes."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from flowscope.lab import Lab
from flowscope.lab.state import LabState
from flowscope.lab.traffic import probes, run_round

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("fixture", ["one_node", "two_nodes"])
def test_every_probe_succeeds(request: pytest.FixtureRequest, fixture: str) -> None:
    lab: Lab = request.getfixturevalue(fixture)
    assert run_round(probes(lab.topology)) == []


def test_probes_cover_the_kinds_of_traffic(one_node: Lab) -> None:
    argv0 = {p.argv[0] if "python" not in p.argv[0] else p.argv[3] for p in probes(one_node.topology)}
    assert argv0 == {"curl", "dig", "ping", "request", "datagram"}
    netns = {p.netns for p in probes(one_node.topology)}
    assert one_node.world.netns in netns  # world to pod
    assert any(one_node.world.ipv6 in " ".join(p.argv) for p in probes(one_node.topology))  # pod to world


def test_the_generator_runs_rounds_in_the_background(fresh_name: str) -> None:
    lab = Lab(fresh_name, nodes=2).up(traffic=True, agent=False)
    state = LabState.load(lab.state_file)
    assert state is not None
    log = Path(next(d for d in state.daemons if d.role == "traffic").log)
    deadline = time.monotonic() + 15
    rounds: list[tuple[str, str]] = []
    while len(rounds) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        rounds = re.findall(r"round \d+: (\d+)/(\d+) ok", log.read_text())
    assert len(rounds) >= 2, log.read_text()
    assert all(ok == total for ok, total in rounds), log.read_text()
    lab.down()
