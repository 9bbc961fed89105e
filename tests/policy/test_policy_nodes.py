"""Policy and settings on a two-node lab with real agents: one command reaches every agent of the lab, and
`policy check` takes each side's verdict from the node that hosts it (client on node1, server on node2)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conntrack.agent_control import UDP_CLIENT, run_python

from flowscope.lab import Lab
from flowscope.lab.topology import UDP_ECHO_PORT

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
POLICY = """
policies:
  - name: server-in
    endpointSelector: {matchLabels: {app: server}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
  - name: typo
    endpointSelector: {matchLabels: {app: sever}}
    ingress: [{}]
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-polnodes", nodes=2) as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def flowscope(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWSCOPE, *argv], capture_output=True, text=True, timeout=60, check=False)


def test_policy_applies_to_every_agent_and_check_asks_the_server_s_node(lab: Lab, tmp_path: Path) -> None:
    assert (lab.pod("client").node, lab.pod("server").node) == ("node1", "node2")
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    applied = flowscope("policy", "apply", str(path), "--lab", lab.name)
    assert applied.returncode == 0, applied.stderr
    assert [line.split(":")[0] for line in applied.stdout.splitlines()] == ["node1", "node2"]
    assert "warning: policy 'typo' selects no pod" in applied.stderr

    check = ["policy", "check", "client", "default/server", "--port", str(UDP_ECHO_PORT), "--protocol", "udp"]
    answer = flowscope(*check, "--lab", lab.name)
    assert answer.returncode == 3, answer.stdout + answer.stderr
    assert "ingress of default/server: denied (no rule allows it): POLICY_DENIED" in answer.stdout
    assert run_python(lab, "client", UDP_CLIENT, lab.pod("server").ipv4, UDP_ECHO_PORT, 42101).returncode != 0
    node1 = flowscope(*check, "--server", f"unix://{lab.agent_socket('node1')}")
    assert node1.returncode == 4 and node1.stdout.startswith("NOT KNOWN"), node1.stdout + node1.stderr
    assert "ingress of default/server: not known: it lives on node2" in node1.stdout

    deleted = flowscope("policy", "delete", "--lab", lab.name)
    assert deleted.returncode == 0, deleted.stderr
    assert all(": 0 policies" in line for line in deleted.stdout.splitlines())
    answer = flowscope(*check, "--lab", lab.name)
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_config_set_changes_every_agent(lab: Lab) -> None:
    done = flowscope("config", "set", "monitor-aggregation", "low", "--lab", lab.name)
    assert done.returncode == 0, done.stderr
    got = flowscope("config", "get", "monitor-aggregation", "--lab", lab.name)
    assert got.stdout.splitlines() == ["node1: low", "node2: low"]
