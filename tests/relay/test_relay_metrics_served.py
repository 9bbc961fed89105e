"""A relay's /metrics, read directly: a follow stream shows as open while it runs and is counted CANCELLED once its
client leaves; unary calls are counted as such; the ClickHouse writer of --export-clickhouse shows its
flowscope_exporter_* figures (here against a port nobody listens on, so its inserts fail and are counted)."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from relay_client import Follower
from waiting import polled

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.relay.server import RelayServer

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(relay: RelayServer) -> Samples:
    assert relay.metrics is not None
    with DIRECT.open(f"http://127.0.0.1:{relay.metrics.port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


GETFLOWS = {"grpc_service": "observer.Observer", "grpc_method": "GetFlows", "grpc_type": "server_stream"}


@pytest.fixture
def channel() -> Iterator[Callable[[RelayServer], grpc.Channel]]:
    channels: list[grpc.Channel] = []

    def open_one(relay: RelayServer) -> grpc.Channel:
        channels.append(grpc.insecure_channel(f"localhost:{relay.port}"))
        return channels[-1]

    yield open_one
    for made in channels:
        made.close()


def test_a_follow_stream_is_open_while_it_runs_and_cancelled_when_its_client_leaves(
    start_relay: Callable[..., RelayServer],
    follow: Callable[..., Follower],
    channel: Callable[[RelayServer], grpc.Channel],
) -> None:
    relay = start_relay(metrics_address=f"127.0.0.1:{free_port()}")
    observer_pb2_grpc.ObserverStub(channel(relay)).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)
    follower = follow(channel(relay), follow=True)
    samples = polled(lambda: scrape(relay), lambda s: sample(s, "flowscope_relay_getflows_streams") == 1, 10)
    assert sample(samples, "flowscope_relay_getflows_streams") == 1
    assert sample(samples, "grpc_server_started_total", **GETFLOWS) == 1
    assert sample(samples, "grpc_server_handled_total", **GETFLOWS, grpc_code="CANCELLED") is None
    unary = {"grpc_service": "observer.Observer", "grpc_method": "ServerStatus", "grpc_type": "unary"}
    assert sample(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == 1
    assert sample(samples, "grpc_server_msg_sent_total", **unary) == 1

    follower.cancel()
    cancelled = {**GETFLOWS, "grpc_code": "CANCELLED"}
    samples = polled(lambda: scrape(relay), lambda s: sample(s, "grpc_server_handled_total", **cancelled) == 1, 10)
    assert sample(samples, "grpc_server_handled_total", **cancelled) == 1
    assert sample(samples, "flowscope_relay_getflows_streams") == 0


def test_the_clickhouse_writer_shows_its_exporter_figures(start_relay: Callable[..., RelayServer]) -> None:
    with socket.socket() as closed:  # a port nobody listens on: every insert fails, and is counted
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        relay = start_relay(metrics_address=f"127.0.0.1:{free_port()}", export_clickhouse=url)
        samples = scrape(relay)
    writer = {"exporter": "clickhouse", "kind": "clickhouse"}
    assert sample(samples, "flowscope_exporter_flows_total", **writer, outcome="exported") == 0
    assert sample(samples, "flowscope_exporter_rows_stored_total", **writer) == 0
    assert sample(samples, "flowscope_exporter_stopped", **writer) == 0
