"""An agent started again over an unchanged datapath loads its programs from the compile cache, and the lab's
packets pass through them: a real agent process in a one-node lab, its first start compiling, its second not."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab

pytestmark = pytest.mark.bpf

LOADED = "compile cache: loading the programs compiled earlier"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-ccache") as lab:
        lab.up(traffic=False, agent=False)
        yield lab


def pings_seen(lab: Lab, count: int, timeout: float = 30.0) -> list[flow_pb2.Flow]:
    """Ping the server from the client until node1's agent has stored `count` flows to the server's address."""
    server = lab.pod("server").ipv4
    wanted = flow_pb2.FlowFilter(destination_ip=[server], protocol=["icmp"])
    request = observer_pb2.GetFlowsRequest(whitelist=[wanted])
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"unix://{lab.agent_socket('node1')}") as channel:
        stub = observer_pb2_grpc.ObserverStub(channel)
        while True:
            lab.exec("client", ["ping", "-c", "1", "-W", "1", server], check=False)
            flows = [r.flow for r in stub.GetFlows(request, timeout=20) if r.HasField("flow")]
            if len(flows) >= count or time.monotonic() > deadline:
                return flows


def test_a_warm_started_agent_loads_from_the_cache_and_sees_the_lab(lab: Lab, tmp_path: Path) -> None:
    flags = ["--compile-cache", str(tmp_path)]
    (cold,) = lab.start_agents(extra_args=flags)
    try:
        assert pings_seen(lab, 1)
    finally:
        lab.stop(cold)
    assert len(list(tmp_path.glob("*.bpfobj"))) == 2  # bpf/datapath.c and bpf/kdrop.c
    assert LOADED not in Path(cold.log).read_text()

    logged = Path(cold.log).stat().st_size
    (warm,) = lab.start_agents(extra_args=flags)
    try:
        with open(warm.log, errors="replace") as log:
            log.seek(logged if warm.log == cold.log else 0)
            assert log.read().count(LOADED) == 2
        flows = pings_seen(lab, 2)
        assert len(flows) >= 2 and all(f.verdict == flow_pb2.FORWARDED for f in flows)
    finally:
        lab.stop(warm)
    assert len(list(tmp_path.glob("*.bpfobj"))) == 2  # hits write nothing new


def test_no_compile_cache_neither_reads_nor_writes(lab: Lab, tmp_path: Path) -> None:
    (agent,) = lab.start_agents(extra_args=["--compile-cache", str(tmp_path), "--no-compile-cache"])
    try:
        assert pings_seen(lab, 1)
    finally:
        lab.stop(agent)
    assert list(tmp_path.iterdir()) == []
