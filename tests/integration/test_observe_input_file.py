"""`observe --input-file` against what a real agent wrote with `-o jsonpb`, and --node-label on the lab's nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_helpers import wait_for_flows

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab, netns

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
FILTERS = ("--from-pod", "default/client", "--protocol", "icmp", "--not", "--type", "trace:to-stack")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(f"t{os.getpid()}-infile") as lab:
        lab.up(traffic=False, agent=True)
        ping = netns.exec_argv(lab.pod("client").netns, ["ping", "-c", "2", lab.pod("server").ipv4])
        subprocess.run(ping, check=True, capture_output=True)
        wait_for_flows(lab, [flow_pb2.FlowFilter(protocol=["icmp"])], lambda fl: len(fl) >= 8)
        yield lab


def observe(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    server = f"unix://{lab.agent_socket('node1')}"
    everything = [] if {"--last", "--first"} & set(args) else ["--all"]
    argv = [FLOWSCOPE, "observe", *everything, "-o", "jsonpb", *args, "--server", server]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def uuids(output: str) -> list[str]:
    return [json.loads(line)["flow"]["uuid"] for line in output.splitlines()]


def test_a_written_file_reads_back_with_the_filters_applied(lab: Lab, tmp_path: Path) -> None:
    written = observe(lab)
    assert written.returncode == 0, written.stderr
    path = tmp_path / "flows.json"
    path.write_text(written.stdout)
    last = json.loads(written.stdout.splitlines()[-1])["time"]

    assert uuids(observe(lab, "--input-file", str(path)).stdout) == uuids(written.stdout)
    served = observe(lab, *FILTERS, "--until", last)
    offline = observe(lab, *FILTERS, "--input-file", str(path))
    assert offline.returncode == 0, offline.stderr
    assert uuids(offline.stdout) == uuids(served.stdout) != []
    assert len(uuids(observe(lab, "--last", "3", "--input-file", str(path)).stdout)) == 3

    cel = ["--cel-expression", '_flow.verdict == Verdict.FORWARDED && _flow.source.pod_name.startsWith("client")']
    served = observe(lab, *cel, "--until", last)
    offline = observe(lab, *cel, "--input-file", str(path))
    assert offline.returncode == 0, offline.stderr
    assert uuids(offline.stdout) == uuids(served.stdout) != []


def test_a_bad_line_is_named(lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    first = observe(lab).stdout.splitlines()[0]
    path.write_text(f"{first}\n{{not json\n")
    done = observe(lab, "--input-file", str(path))
    assert done.returncode != 0
    assert "line 2" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_node_labels_select_the_lab_node(lab: Lab) -> None:
    assert uuids(observe(lab, "--node-label", "topology.kubernetes.io/zone=lab-a").stdout) != []
    assert uuids(observe(lab, "--node-label", "topology.kubernetes.io/zone=lab-b").stdout) == []


def test_node_labels_select_one_node_of_two_through_the_relay() -> None:
    """Odd nodes are in zone lab-a, even ones in lab-b: through the relay each zone selects its node's flows."""
    with Lab(f"t{os.getpid()}-nodelabels", nodes=2) as lab:
        lab.up(traffic=True, agent=True, relay=True)
        relay = ["--server", lab.relay_address, "--all", "-o", "jsonpb"]

        def nodes(zone: str) -> set[str]:
            argv = [FLOWSCOPE, "observe", *relay, "--node-label", f"topology.kubernetes.io/zone={zone}"]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout
            return {json.loads(line)["flow"]["node_name"] for line in out.splitlines() if '"flow"' in line}

        deadline = time.monotonic() + 30  # the lab's traffic reaches both nodes within moments
        while (found := (nodes("lab-a"), nodes("lab-b"))) != ({"node1"}, {"node2"}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found == ({"node1"}, {"node2"})
