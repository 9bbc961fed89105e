"""`flowscope observe agent-events` against a lab's real agent: its start, a policy applied with `flowscope
policy apply`, and an endpoint added to the cluster file, as they happen (--follow) and afterwards (--last);
`observe debug-events` is served too (empty for now)."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowscope.lab import Lab
from flowscope.observer.metadata import Cluster

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
POLICY = Path(__file__).resolve().parents[2] / "docs" / "examples" / "lab-policy.yaml"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-aev") as lab:
        lab.up(traffic=False, agent=True)
        yield lab


def server(lab: Lab) -> str:
    return f"unix://{lab.agent_socket('node1')}"


def flowscope(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWSCOPE, *args, "--server", server(lab)], capture_output=True, text=True, timeout=30, check=False
    )


class Follower:
    """A running `observe agent-events --follow --since 1h -o json` whose lines arrive on a queue: it prints what
    the agent reported so far first, so its AGENT_STARTED says that it follows from now on."""

    def __init__(self, lab: Lab) -> None:
        argv = [
            FLOWSCOPE,
            "observe",
            "agent-events",
            "--follow",
            "--since",
            "1h",
            "-o",
            "json",
            "--server",
            server(lab),
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def next_of_type(self, kind: str, timeout: float = 20) -> dict:
        """The next event of this type (others before it are passed over)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.close()
                raise AssertionError(f"no {kind} event; stderr: {self.process.stderr.read()}") from None  # type: ignore[union-attr]
            event = json.loads(line)["agent_event"]
            if event["type"] == kind:
                return event

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def test_agent_events_show_the_start_a_policy_and_a_new_endpoint(lab: Lab) -> None:
    follower = Follower(lab)
    try:
        started = follower.next_of_type("AGENT_STARTED")
        assert started["agent_start"]["time"]
        applied = flowscope(lab, "policy", "apply", str(POLICY))
        assert applied.returncode == 0, applied.stderr
        policy = follower.next_of_type("POLICY_UPDATED")["policy_update"]
        assert "k8s:io.cilium.k8s.policy.name=server-in" in policy["labels"]

        cluster = Cluster.load(lab.cluster_file)
        template = next(ep for ep in cluster.endpoints if ep.node == "node1")
        extra = dataclasses.replace(
            template, id=1098, pod="extra", namespace="batch", interface="lxc1098", ipv4="10.200.1.98", ipv6=""
        )
        dataclasses.replace(cluster, endpoints=(*cluster.endpoints, extra)).save(lab.cluster_file)
        created = follower.next_of_type("ENDPOINT_CREATED")["endpoint_update"]
        assert (created["id"], created["namespace"], created["pod_name"]) == ("1098", "batch", "extra")
        upserted = follower.next_of_type("IPCACHE_UPSERTED")["ipcache_update"]
        assert upserted["cidr"] == "10.200.1.98/32"
    finally:
        follower.close()

    shown = flowscope(lab, "observe", "agent-events", "--last", "4095", "--print-node-name")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(" [node1]: AGENT_STARTED (start time: " in line for line in lines)
    assert any("POLICY_UPDATED (labels: [" in line and "policy.name=server-in" in line for line in lines)
    assert any("ENDPOINT_CREATED (id: 1098, namespace: batch, pod name: extra)" in line for line in lines)

    first = flowscope(lab, "observe", "agent-events", "--first", "1")
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) == 1

    debug = flowscope(lab, "observe", "debug-events")
    assert (debug.returncode, debug.stdout) == (0, ""), debug.stderr

    refused = flowscope(lab, "observe", "agent-events", "--first", "1", "--follow")
    assert refused.returncode != 0 and "cannot set both --first and --follow" in refused.stderr


def test_services_of_the_cluster_file_are_upserted_and_deleted_as_it_changes(lab: Lab) -> None:
    """The lab's services are reported at start (one upsert per frontend); a service added to the file is
    upserted, and deleted again when it goes."""
    shown = flowscope(lab, "observe", "agent-events", "--last", "4095", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    upserts = [json.loads(line)["agent_event"] for line in shown.stdout.splitlines()]
    frontends = {
        (u["service_upsert"]["namespace"], u["service_upsert"]["name"], u["service_upsert"]["frontend_address"]["ip"])
        for u in upserts
        if u["type"] == "SERVICE_UPSERTED"
    }
    web = lab.topology.service("web/web")
    assert {("web", "web", ip) for ip in web.cluster_ips} <= frontends
    assert {("default", "server-np", ip) for ip in (lab.node("node1").ipv4, lab.node("node1").ipv6)} <= frontends

    follower = Follower(lab)
    try:
        follower.next_of_type("AGENT_STARTED")
        cluster = Cluster.load(lab.cluster_file)
        extra = dataclasses.replace(web, name="extra", cluster_ips=("10.96.0.77",))
        dataclasses.replace(cluster, services=(*cluster.services, extra)).save(lab.cluster_file)
        upserted = follower.next_of_type("SERVICE_UPSERTED")["service_upsert"]
        assert (upserted["name"], upserted["namespace"], upserted["frontend_address"], upserted["type"]) == (
            "extra",
            "web",
            {"ip": "10.96.0.77", "port": 80},
            "ClusterIP",
        )
        backends = sorted(b["ip"] for b in upserted["backend_addresses"])
        assert backends == sorted(lab.pod(pod).ipv4 for pod in ("web", "web2"))
        cluster.save(lab.cluster_file)
        deleted = follower.next_of_type("SERVICE_DELETED")["service_delete"]
        assert deleted["id"] == upserted["id"]
    finally:
        follower.close()
