"""The agent's capabilities in deploy/kubernetes/agent.yaml are the ones it needs, and no more: a real agent,
root with exactly those capabilities (as a container runtime gives them: the bounding set, nothing inheritable,
no new privileges), loads its datapath in a lab node and serves the flows of a ping, and the manifest's exec
probe answers; without any one of them it does not start.

The container runtime itself is not here (no runtime on this machine); setpriv makes the same capability sets
for a root process, which is what the kernel checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from deploy_manifests import container, exec_probes, parse

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab
from flowscope.lab.daemons import DaemonError

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")


def granted() -> list[str]:
    """The capabilities the manifest adds to the agent (it drops all others)."""
    security = container("flowscope-agent", "agent").spec["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    return list(security["capabilities"]["add"])


def as_container_would(capabilities: list[str]) -> list[str]:
    """A command prefix running `flowscope` as root with only these capabilities."""
    wanted = ",".join(["-all", *(f"+{name.lower()}" for name in capabilities)])
    return ["setpriv", "--bounding-set", wanted, "--inh-caps", "-all", "--no-new-privs", "--", FLOWSCOPE]


@pytest.fixture
def lab_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A lab name of this run (tests/conftest.py sweeps a killed run's namespaces by it), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    suffix = request.node.callspec.id.lower().replace("_", "") if hasattr(request.node, "callspec") else "all"
    name = f"t{os.getpid()}-caps{suffix}"
    Lab(name).down()
    yield name
    Lab(name).down()


def icmp_flows(lab: Lab, source: str) -> list[flow_pb2.Flow]:
    request = observer_pb2.GetFlowsRequest(
        whitelist=[flow_pb2.FlowFilter(source_ip=[source], protocol=["icmp"])],
    )
    with grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}") as channel:
        stub = observer_pb2_grpc.ObserverStub(channel)
        return [r.flow for r in stub.GetFlows(request, timeout=20) if r.HasField("flow")]


def test_the_agent_serves_flows_with_exactly_the_manifests_capabilities(lab_name: str) -> None:
    lab = Lab(lab_name, nodes=1, agent_command=as_container_would(granted()))
    lab.up(traffic=False, agent=True)
    client, server = lab.pods[0], lab.pods[1]
    deadline = time.monotonic() + 30
    flows: list[flow_pb2.Flow] = []
    while not flows and time.monotonic() < deadline:
        lab.exec(client.name, ["ping", "-c", "1", "-W", "2", server.ipv4], check=False)
        flows = icmp_flows(lab, client.ipv4)
    assert flows, "no flow of the ping"
    assert flows[0].IP.destination == server.ipv4
    # the manifest's probes, asking this lab's agent instead of /run/flowscope/hubble.sock
    for kind, command in exec_probes(container("flowscope-agent", "agent")).items():
        probe = parse(command[1:])
        argv = [FLOWSCOPE, *command[1:]]
        argv[argv.index(probe.server)] = f"unix://{lab.agent_socket('node1')}"
        answer = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0, (kind, answer.stderr)


@pytest.mark.parametrize("missing", granted())
def test_without_any_one_of_them_the_agent_does_not_start(lab_name: str, missing: str) -> None:
    fewer = [name for name in granted() if name != missing]
    lab = Lab(lab_name, nodes=1, agent_command=as_container_would(fewer))
    with pytest.raises(DaemonError, match="exited"):
        lab.up(traffic=False, agent=True)
