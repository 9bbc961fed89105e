"""A real ClickHouse for the history tests: Debian's clickhouse-server on loopback ports, in a folder of the
test's own, stopped at the end (also on failure); and flow responses made up for the tests that need no lab."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab.history import ClickHouse
from flowscope.observer.history.clickhouse import ClickHouse as Client

needs_clickhouse = pytest.mark.skipif(
    shutil.which("clickhouse-server") is None, reason="clickhouse-server is not installed (scripts/setup)"
)


@contextmanager
def clickhouse(folder: Path) -> Iterator[ClickHouse]:
    server = ClickHouse.start(folder, die_with_parent=True)
    try:
        yield server
    finally:
        server.stop()


def fresh_database(server: ClickHouse, name: str) -> str:
    """A new, empty database on `server`; the URL that names it."""
    admin = Client.connect(server.url)
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    admin.close()
    return f"{server.url}/?database={name}"


def made_up(
    count: int, start_ns: int, node: str = "node1", step_ns: int = 1_000_000
) -> list[observer_pb2.GetFlowsResponse]:
    """`count` flows a `step_ns` apart: TCP from default/client-{i % 3} to web/web:80 (or port 53 UDP every 4th),
    verdicts alternating FORWARDED and DROPPED, labels app=client-{i % 3}."""
    responses = []
    for i in range(count):
        response = observer_pb2.GetFlowsResponse(node_name=node)
        response.time.FromNanoseconds(start_ns + i * step_ns)
        f = response.flow
        f.time.CopyFrom(response.time)
        f.uuid = f"{node}-{i:08d}"
        f.node_name = node
        f.verdict = flow_pb2.FORWARDED if i % 2 == 0 else flow_pb2.DROPPED
        f.Type = flow_pb2.L3_L4
        f.event_type.type = 4
        f.IP.source, f.IP.destination, f.IP.ipVersion = f"10.0.0.{1 + i % 3}", "10.0.1.5", flow_pb2.IPv4
        if i % 4 == 3:
            f.l4.UDP.source_port, f.l4.UDP.destination_port = 40000 + i % 1000, 53
        else:
            f.l4.TCP.source_port, f.l4.TCP.destination_port = 40000 + i % 1000, 80
            f.l4.TCP.flags.SYN = True
        f.source.namespace, f.source.pod_name = "default", f"client-{i % 3}"
        f.source.labels.append(f"k8s:app=client-{i % 3}")
        f.destination.namespace, f.destination.pod_name = "web", "web"
        f.destination.identity = 1234
        f.trace_observation_point = flow_pb2.TO_ENDPOINT
        f.is_reply.value = False
        responses.append(response)
    return responses
