"""The relay's metrics in a real lab: `flowscope relay --metrics-address` in front of two nodes' agents, and a real
Prometheus scraping it. A GetFlows call is counted in grpc_server_handled_total with its code (OK, and
INVALID_ARGUMENT for a request the relay refuses), its responses in grpc_server_msg_sent_total and
flowscope_relay_responses_total; the pool's gauge counts both peers READY, then one fewer once a node's agent
stops, and again two when it is back."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_server import Prometheus, prometheus
from relay_lab import AGENT, agent_of, lab_name, stub, wait_connected
from waiting import polled, stopped

from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab
from flowscope.lab.agent import default_command
from flowscope.lab.relay import free_address, relay_service

pytestmark = pytest.mark.bpf

GETFLOWS = 'grpc_service="observer.Observer",grpc_method="GetFlows",grpc_type="server_stream"'
POOL = "hubble_relay_pool_peer_connection_status"


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no relay outlives a killed test run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(lab_name("relay-metrics"), nodes=2, agent_command=AGENT) as lab:
        lab.up(traffic=False, agent=True, relay=False)
        yield lab


@pytest.fixture(scope="module")
def relay(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The lab's relay, as `lab up` starts it, with --metrics-address: (its address, its metrics target)."""
    address, target = free_address(), f"127.0.0.1:{_free_port()}"
    argv = [*relay_service(lab.topology, address).argv, "--metrics-address", target]
    log = (tmp_path_factory.mktemp("relay") / "relay.log").open("w")
    process = subprocess.Popen(argv, stderr=log, preexec_fn=_die_with_parent)
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        wait_connected(address, 2)
        yield address, target
    finally:
        stopped(process)
        log.close()


@pytest.fixture(scope="module")
def scraper(relay: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with prometheus(tmp_path_factory.mktemp("prometheus"), [relay[1]]) as server:
        yield server


def value(server: Prometheus, promql: str) -> float:
    """A query's one sample, 0 while there is none (a counter not yet counted, a scrape not yet made)."""
    return server.value(promql) or 0.0


def settle(server: Prometheus, expected: dict[str, float], timeout: float = 30.0) -> None:
    """Wait until every query answers its expected value (Prometheus scrapes every second); fail showing them."""
    got = polled(lambda: {q: value(server, q) for q in expected}, lambda got: got == expected, timeout, every=0.3)
    assert got == expected


def test_a_getflows_call_is_counted_with_its_code(relay: tuple[str, str], scraper: Prometheus) -> None:
    address, _ = relay
    ok, refused = (
        f'grpc_server_handled_total{{{GETFLOWS},grpc_code="OK"}}',
        (f'grpc_server_handled_total{{{GETFLOWS},grpc_code="INVALID_ARGUMENT"}}'),
    )
    started = f"grpc_server_started_total{{{GETFLOWS}}}"
    settle(scraper, {"up": 1})
    before = {q: value(scraper, q) for q in (ok, refused, started, f"grpc_server_msg_sent_total{{{GETFLOWS}}}")}
    delivered_before = value(scraper, 'flowscope_relay_responses_total{outcome="delivered"}')

    responses = list(stub(address).GetFlows(observer_pb2.GetFlowsRequest(number=5), timeout=20))
    assert responses  # the nodes' status at least, then their flows
    bad = observer_pb2.GetFlowsRequest()
    bad.since.seconds, bad.until.seconds = 20, 10  # until before since: the relay refuses it
    with pytest.raises(grpc.RpcError) as refusal:
        list(stub(address).GetFlows(bad, timeout=20))
    assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    settle(scraper, {ok: before[ok] + 1, refused: before[refused] + 1, started: before[started] + 2})
    sent = value(scraper, f"grpc_server_msg_sent_total{{{GETFLOWS}}}")
    assert sent == before[f"grpc_server_msg_sent_total{{{GETFLOWS}}}"] + len(responses)
    assert value(scraper, 'flowscope_relay_responses_total{outcome="delivered"}') == delivered_before + len(responses)
    assert value(scraper, "flowscope_relay_getflows_streams") == 0


def test_the_pool_gauge_follows_a_node_whose_agent_stops(lab: Lab, relay: tuple[str, str], scraper: Prometheus) -> None:
    address, _ = relay
    ready = f'{POOL}{{status="READY"}}'
    not_ready = f'sum({POOL}{{status!="READY"}})'
    settle(scraper, {ready: 2, not_ready: 0})
    assert value(scraper, 'flowscope_relay_peer_state{node="node2",state="READY"}') == 1

    lab.stop(agent_of(lab, "node2"))
    try:
        settle(scraper, {ready: 1, not_ready: 1})
        assert value(scraper, 'flowscope_relay_peer_state{node="node2",state="READY"}') == 0
        assert value(scraper, 'flowscope_relay_peer_state{node="node1",state="READY"}') == 1
    finally:
        lab.start_agents(["node2"])
        wait_connected(address, 2)
    settle(scraper, {ready: 2, not_ready: 0})


def test_the_metrics_address_is_checked_before_anything_starts(tmp_path: Path) -> None:
    result = subprocess.run(
        [*default_command(), "relay", "--peers", "n=unix:///nowhere", "--metrics-address", "9966"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("flowscope: error: relay: --metrics-address '9966'")
