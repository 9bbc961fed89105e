"""`flowscope ct` against a real two-node lab: a curl from the client pod (node1) to web/web's ClusterIP is
listed on node1 with the ClusterIP as sent, a backend pod as translated, the service and packets both ways; a
plain connection is listed without service or translation; bad filters are one line and a non-zero exit."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cli.cli_runner import run_flowscope  # tests/ is on the path (its conftest)
from conntrack.agent_control import TCP_CLIENT, run_python

from flowscope.lab import Lab
from flowscope.lab.topology import TCP_RR_PORT

pytestmark = pytest.mark.bpf

CURL_PORT = 41777  # the client's source port of the curl, so that its connection is told from any other
PLAIN_PORT = 41778


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-ct", nodes=2) as lab:
        lab.up(traffic=False)
        yield lab


def connections(lab: Lab, *flags: str) -> dict[str, Any]:
    """Every node's answer to `flowscope ct -o json`, by node."""
    done = run_flowscope("ct", "--lab", lab.name, "-o", "json", *flags, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def web_ip(lab: Lab) -> str:
    return next(ip for ip in lab.topology.service("web/web").cluster_ips if ":" not in ip)


def test_a_connection_to_a_cluster_ip_is_listed_with_its_translation_service_and_counters(lab: Lab) -> None:
    address, client = web_ip(lab), lab.pod("client")
    backends = {lab.pod(p).ipv4 for p in ("web", "web2")}
    page = lab.exec("client", ["curl", "-s", "-m", "3", "--local-port", str(CURL_PORT), f"http://{address}/"])
    assert "hello from" in page.stdout

    node1 = connections(lab, "--service", "web/web")["node1"]
    ours = [c for c in node1["connections"] if c["original"]["source_port"] == CURL_PORT]
    assert ours, node1  # the client's entry (and web2's too, when web2 on node1 answered)
    backend = ours[0]["translated"]["destination_ip"]
    assert backend in backends
    for connection in ours:
        assert connection["protocol"] == 6
        assert connection["service"] == "web/web"
        assert connection["original"] == {
            "source_ip": client.ipv4,
            "source_port": CURL_PORT,
            "destination_ip": address,
            "destination_port": 80,
        }
        assert connection["translated"] == {
            "source_ip": client.ipv4,
            "source_port": CURL_PORT,
            "destination_ip": backend,
            "destination_port": 80,
        }
        assert int(connection["forward"]["packets"]) > 0 and int(connection["reply"]["packets"]) > 0
        assert int(connection["forward"]["bytes"]) > 0 and int(connection["reply"]["bytes"]) > 0
        assert connection["state"] in ("established", "closing")  # curl's connection ends with the answer
        assert 0 <= float(connection.get("age", "0s").rstrip("s")) < 120  # made by this test's curl, seconds ago
        assert float(connection.get("age", "0s").rstrip("s")) >= float(connection.get("idle", "0s").rstrip("s")) - 1
        assert connection["forward"]["point"] and connection["forward"]["device"]
    # --ip finds it by the backend too (either end, as sent or as translated)
    by_backend = connections(lab, "--ip", backend, "--port", str(CURL_PORT))["node1"]["connections"]
    assert {c["original"]["destination_ip"] for c in by_backend} == {address}

    table = run_flowscope("ct", "--lab", lab.name, "--service", "web/web", "--port", str(CURL_PORT))
    assert table.returncode == 0, table.stderr
    line = next(row for row in table.stdout.splitlines() if row.startswith("node1"))
    assert f"{client.ipv4}:{CURL_PORT}" in line and f"{address}:80" in line and f"{backend}:80" in line
    assert "web/web" in line and "TCP" in line


def test_a_plain_connection_is_listed_without_a_service(lab: Lab) -> None:
    client, server = lab.pod("client"), lab.pod("server")
    done = run_python(lab, "client", TCP_CLIENT, server.ipv4, TCP_RR_PORT, PLAIN_PORT, 3)
    assert done.returncode == 0, done.stdout + done.stderr

    node1 = connections(lab, "--ip", server.ipv4, "--protocol", "tcp")["node1"]
    ours = [c for c in node1["connections"] if c["original"]["source_port"] == PLAIN_PORT]
    assert ours, node1
    for connection in ours:
        assert connection["service"] == "" and "translated" not in connection
        assert connection["frontend_id"] == 0
        assert connection["original"] == {
            "source_ip": client.ipv4,
            "source_port": PLAIN_PORT,
            "destination_ip": server.ipv4,
            "destination_port": TCP_RR_PORT,
        }
        assert int(connection["forward"]["packets"]) > 0 and int(connection["reply"]["packets"]) > 0
    assert not connections(lab, "--service", "web/web", "--port", str(PLAIN_PORT))["node1"]["connections"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--service", "web"), "flowscope: error: node1: service 'web': give it as namespace/name\n"),
        (("--ip", "10.0.0"), "flowscope: error: node1: ip '10.0.0' is not an IPv4 or IPv6 address\n"),
    ],
)
def test_bad_filters_are_one_line_and_a_non_zero_exit(lab: Lab, flags: tuple[str, ...], message: str) -> None:
    done = run_flowscope("ct", "--lab", lab.name, *flags)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", message)
