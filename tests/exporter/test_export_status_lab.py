"""What a real agent's flow log lost, seen where operators look: an agent in a lab with a one-page kernel buffer
(16 events) and a file exporter, overflowed by a UDP flood. The flow log writes Hubble's lost_events lines for
every event the kernel buffer lost; /metrics, scraped over HTTP, and `flowscope status` report the exporter's
counts, and they agree with each other and with the files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from flow_log_files import whole_lines
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually, wait_for

from flowscope.api.observer import observer_pb2, observer_pb2_grpc
from flowscope.lab import Lab, netns
from flowscope.observer.exporter.file import backups

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
METRICS = "127.0.0.1:9965"  # in the node's own namespace
FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    s.sendto(b"x" * 16, (sys.argv[1], 9001))
"""
PACKETS = 10000
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


class Node1:
    """The lab's node1 agent, exporting every flow to `log` in files of 1 MB, all kept."""

    def __init__(self, lab: Lab, log: Path) -> None:
        self.lab, self.log = lab, log

    def status(self) -> observer_pb2.ServerStatusResponse:
        with grpc.insecure_channel(f"unix://{self.lab.agent_socket('node1')}") as channel:
            stub = observer_pb2_grpc.ObserverStub(channel)
            return stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)

    def exporter(self) -> observer_pb2.ExporterStatus:
        (exporter,) = self.status().flowscope_exporters
        return exporter

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """/metrics over HTTP inside the node (loopback: reading adds no flows): each sample by name and labels."""
        with netns.inside(self.lab.netns("node1")), DIRECT.open(f"http://{METRICS}/metrics", timeout=5) as reply:
            families = text_string_to_metric_families(reply.read().decode())
            return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}

    def files(self) -> list[Path]:
        return [*backups(self.log), self.log]

    def lost_lines(self) -> list[dict[str, object]]:
        lines = (line for path in self.files() for line in whole_lines(path))
        return [line["lost_events"] for line in lines if "lost_events" in line]


@pytest.fixture(scope="module")
def node1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node1]:
    log = tmp_path_factory.mktemp("flowlog") / "flows.log"
    with Lab(f"t{os.getpid()}-xstatus") as lab:
        lab.up(traffic=False, agent=False)
        args = ["--ring-buffer-pages", "1", "--metrics-address", METRICS, "--export-file", str(log)]
        args += ["--export-file-max-size-mb", "1", "--export-file-max-backups", "0"]
        lab.start_agents(["node1"], extra_args=args)
        node = Node1(lab, log)
        lab.exec("client", [sys.executable, "-c", FLOOD, lab.pod("server").ipv4, str(PACKETS)])
        wait_for(lambda: node.status().flowscope_lost.kernel_buffer > 0, timeout=15)  # reported once a second
        yield node


def kernel_lost_in_the_file(node: Node1) -> int:
    return sum(int(str(e["num_events_lost"])) for e in node.lost_lines() if e["source"] == "PERF_EVENT_RING_BUFFER")


def test_the_flow_log_writes_every_event_the_kernel_buffer_lost(node1: Node1) -> None:
    # the agent reports a loss a tick after it happens and the exporter writes it after that: wait for both
    assert eventually(lambda: kernel_lost_in_the_file(node1) == node1.status().flowscope_lost.kernel_buffer, 15), (
        f"file {kernel_lost_in_the_file(node1)}, agent {node1.status().flowscope_lost.kernel_buffer}"
    )
    perf = [e for e in node1.lost_lines() if e["source"] == "PERF_EVENT_RING_BUFFER"]
    assert perf and all("cpu" in e for e in perf)


def test_metrics_and_status_report_the_exporters_counts_and_agree_with_the_files(node1: Node1) -> None:
    label = {("exporter", "static"), ("kind", "file")}

    def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **more: str) -> int:
        return int(samples[(name, frozenset(label | set(more.items())))])

    def agree() -> bool:
        """Status, a scrape and status again: equal when nothing was exported in between."""
        before, samples, after = node1.exporter(), node1.scrape(), node1.exporter()
        return before == after and [
            after.flows_exported,
            after.flows_filtered,
            after.flows_dropped,
            after.lost_events,
            after.bytes_written,
            after.rotations,
        ] == [
            sample(samples, "flowscope_exporter_flows_total", outcome="exported"),
            sample(samples, "flowscope_exporter_flows_total", outcome="filtered"),
            sample(samples, "flowscope_exporter_flows_total", outcome="dropped"),
            sample(samples, "flowscope_exporter_lost_events_total"),
            sample(samples, "flowscope_exporter_bytes_total"),
            sample(samples, "flowscope_exporter_file_rotations_total"),
        ]

    wait_for(lambda: kernel_lost_in_the_file(node1) == node1.status().flowscope_lost.kernel_buffer, 15)
    wait_for(agree, timeout=15)
    exporter = node1.exporter()
    assert (exporter.name, exporter.kind, exporter.target, exporter.node_name) == (
        "static",
        "file",
        str(node1.log),
        "node1",
    )
    assert exporter.flows_exported > 0 and not exporter.stopped and exporter.flows_failed == 0
    assert exporter.lost_events >= node1.status().flowscope_lost.kernel_buffer  # and its own queue's drops, if any
    assert exporter.bytes_written == sum(path.stat().st_size for path in node1.files())
    assert exporter.rotations == len(backups(node1.log))


def test_flowscope_status_prints_the_exporter(node1: Node1) -> None:
    server = ["--server", f"unix://{node1.lab.agent_socket('node1')}"]
    done = subprocess.run([FLOWSCOPE, "status", *server], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("Exporter ")]
    assert line.startswith(f"Exporter static (file {node1.log}): ") and "flows exported" in line
    assert "lost events reported" in line and "MB written" in line and "rotations" in line
    done = subprocess.run([FLOWSCOPE, "status", *server, "-o", "json"], capture_output=True, text=True, timeout=30)
    (exporter,) = json.loads(done.stdout)["flowscope_exporters"]
    assert exporter["name"] == "static" and int(exporter["lost_events"]) > 0
