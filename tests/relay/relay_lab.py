"""Helpers for relay tests on a real lab: its agents, traffic between pods, and flows read through a relay."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import grpc

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab
from flowscope.lab.daemons import Daemon, is_alive
from flowscope.lab.state import LabState

# The agent, with peer.Peer served (tests/relay/agent_with_peers.py says why); FLOWSCOPE_RELAY_TEST_AGENT
# runs another build instead (a command line), e.g. a checkout of the last commit while the tree is mid-edit.
AGENT = shlex.split(os.environ.get("FLOWSCOPE_RELAY_TEST_AGENT", "")) or [
    sys.executable,
    str(Path(__file__).with_name("agent_with_peers.py")),
]


def lab_name(word: str) -> str:
    return f"t{os.getpid()}-{word}"


def agent_of(lab: Lab, node: str) -> Daemon:
    state = LabState.load(lab.state_file)
    assert state is not None
    return next(d for d in reversed(state.daemons) if d.role == f"agent-{node}" and is_alive(d))


def datagram(lab: Lab, source: str, target: str, sport: int) -> None:
    """One UDP datagram from pod `source` (from port sport) to pod `target`'s echo server, and its echo."""
    address = lab.pod(target).ipv4
    code = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); "
        f"s.bind(('', {sport})); s.sendto(b'relay-test', ('{address}', 9001)); s.recvfrom(100)"
    )
    lab.exec(source, [sys.executable, "-c", code], timeout=10)


def by_port(sport: int) -> list[flow_pb2.FlowFilter]:
    """Flows from or to a client port: both directions of one exchange (whitelist filters are ORed)."""
    return [flow_pb2.FlowFilter(source_port=[str(sport)]), flow_pb2.FlowFilter(destination_port=[str(sport)])]


def stub(address: str) -> observer_pb2_grpc.ObserverStub:
    return observer_pb2_grpc.ObserverStub(grpc.insecure_channel(address))


def flows_of(responses: list[observer_pb2.GetFlowsResponse]) -> list[observer_pb2.GetFlowsResponse]:
    return [r for r in responses if r.HasField("flow")]


def wait_connected(address: str, count: int, timeout: float = 20.0) -> observer_pb2.ServerStatusResponse:
    deadline = time.monotonic() + timeout
    observer = stub(address)
    while True:
        status = observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5)
        if status.num_connected_nodes.value == count:
            return status
        assert time.monotonic() < deadline, f"{status.num_connected_nodes.value} of {count} nodes connected"
        time.sleep(0.2)
