"""Events lost in the kernel's buffer are counted and reach clients as LostEvents, never silently.

The agent gets a one-page kernel buffer (16 events) and a UDP flood overflows it between two ingest passes.
Every event of the flood is then either stored or counted as lost: stored + lost covers what was sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_helpers import stub

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab

pytestmark = pytest.mark.bpf

FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 44001))
for _ in range(int(sys.argv[2])):
    s.sendto(b"x" * 16, (sys.argv[1], 9001))
"""
PACKETS = 20000


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-lost") as lab:
        lab.up(traffic=False, agent=False)
        lab.start_agents(extra_args=["--ring-buffer-pages", "1"])
        lab.exec("client", [sys.executable, "-c", FLOOD, lab.pod("server").ipv4, str(PACKETS)])
        time.sleep(1.5)  # lost counts are turned into LostEvents once a second
        yield lab


def test_lost_events_are_counted_and_sent(lab: Lab) -> None:
    status = stub(lab).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)
    lost = status.flowscope_lost.kernel_buffer
    assert lost > 0, "the flood did not overflow a one-page buffer"

    responses = list(stub(lab).GetFlows(observer_pb2.GetFlowsRequest(), timeout=30))
    reports = [r.lost_events for r in responses if r.HasField("lost_events")]
    assert reports, "no LostEvent reached the client"
    assert all(r.source == flow_pb2.PERF_EVENT_RING_BUFFER for r in reports)
    assert all(r.HasField("cpu") for r in reports)
    assert sum(r.num_events_lost for r in reports) == lost

    # Each datagram passes the client's veth (from-endpoint) and the server's (to-endpoint): two events. What
    # the agent stored of the flood, plus every event counted lost, covers them all.
    flood = [
        r.flow
        for r in responses
        if r.HasField("flow") and 44001 in (r.flow.l4.UDP.source_port, r.flow.l4.UDP.destination_port)
    ]
    assert len(flood) < 2 * PACKETS
    assert len(flood) + lost >= 2 * PACKETS


def test_the_cli_prints_lost_events(lab: Lab) -> None:
    flowscope = str(Path(sys.executable).parent / "flowscope")
    server = f"unix://{lab.agent_socket('node1')}"
    done = subprocess.run(
        [flowscope, "observe", "--all", "--server", server], capture_output=True, text=True, timeout=60, check=True
    )
    assert "EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(" in done.stdout
    status = subprocess.run(
        [flowscope, "status", "--server", server], capture_output=True, text=True, timeout=30, check=True
    )
    assert "lost" in status.stdout.lower()
