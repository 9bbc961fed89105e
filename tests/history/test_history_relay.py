"""The relay's history writer over a 3-node lab (`lab up --history`): every node's flows reach the lab's
ClickHouse through the relay's merged stream, each with its node's name, and read back through the relay
(`observe --history-from-relay`) they are the flows the relay serves live."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conntrack.agent_control import ping_server
from google.protobuf import json_format
from history_server import needs_clickhouse
from waiting import wait_for

from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab
from flowscope.lab import history as lab_history
from flowscope.observer.history.clickhouse import ClickHouse as Client

pytestmark = [pytest.mark.bpf, needs_clickhouse]

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
ICMP_FROM_CLIENT = ["--protocol", "icmp", "--from-pod", "default/client"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-hrel", nodes=3) as lab:
        lab.up(traffic=False, history=True)
        yield lab


def observe(*args: str) -> list[observer_pb2.GetFlowsResponse]:
    done = subprocess.run([FLOWSCOPE, "observe", *args, "-o", "jsonpb"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json_format.Parse(line, observer_pb2.GetFlowsResponse()) for line in done.stdout.splitlines()]


def test_every_node_flows_reach_the_history_with_their_node_names(lab: Lab) -> None:
    ping_server(lab, count=3)
    relay = lab.status().state.relay  # type: ignore[union-attr]
    live = observe("--server", relay, "--since", "5m", *ICMP_FROM_CLIENT)
    nodes = {r.node_name for r in live}
    assert len(nodes) >= 2  # the client's node and the server's
    url = lab_history.lab_url(lab.state_dir)
    assert url is not None
    client = Client.connect(url)

    def stored() -> set[str]:
        try:
            return set(client.execute("SELECT uuid FROM flows").decode().split())
        except Exception:
            return set()

    wait_for(lambda: {r.flow.uuid for r in live} <= stored(), timeout=30)
    client.close()
    history = observe("--server", relay, "--history-from-relay", "--since", "5m", *ICMP_FROM_CLIENT)
    by_uuid = {r.flow.uuid: r for r in history}
    for response in live:
        assert by_uuid[response.flow.uuid].flow == response.flow
        assert by_uuid[response.flow.uuid].node_name == response.node_name
    times = [r.time.ToNanoseconds() for r in history]
    assert times == sorted(times)  # the merged history is in time order across nodes
