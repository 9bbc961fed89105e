"""Flow logs of a real agent in a lab: after a ping and a curl, the files hold exactly the flows GetFlows gives for
the exporters' filters (same uuids), field-masked where asked; `observe --input-file` reads them back with its
filters; the dynamic configuration adds, changes and removes exporters while the agent runs, and a bad one is
refused with its line while the running exporters go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conntrack.agent_control import CLIENT_FLOWS, curl_web, flows, ping_server
from flow_log_files import whole_lines, whole_text
from waiting import polled, wait_for

from flowscope.api.flow import flow_pb2
from flowscope.lab import Lab
from flowscope.lab.daemons import Daemon

pytestmark = pytest.mark.bpf

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")
ALLOW = '{"source_pod":["default/client"]}, {"destination_pod":["default/client"]}'  # Hubble's list: two filters
ICMP = """
  - name: icmp
    filePath: {folder}/icmp.log
    fieldMask: [time, source, destination, l4, verdict]
    includeFilters:
      - protocol: [icmp]
"""
TCP = """
  - name: tcp
    filePath: {folder}/tcp.log
    includeFilters:
      - protocol: [tcp]
        source_pod: [default/client]
"""


class Node1:
    """The lab and its node1 agent exporting to `folder`."""

    def __init__(self, lab: Lab, agent: Daemon, folder: Path) -> None:
        self.lab, self.agent, self.folder = lab, agent, folder
        self.config = folder / "flowlogs.yaml"

    def lines(self, name: str) -> list[dict[str, object]]:
        return whole_lines(self.folder / name)

    def uuids(self, name: str) -> list[str]:
        return [line["flow"]["uuid"] for line in self.lines(name) if "flow" in line]  # type: ignore[index]

    def configure(self, *entries: str) -> None:
        temporary = self.config.with_suffix(".new")
        temporary.write_text("flowLogs:\n" + "".join(e.format(folder=self.folder) for e in entries))
        os.replace(temporary, self.config)

    def log(self) -> str:
        return Path(self.agent.log).read_text(errors="replace")


@pytest.fixture(scope="module")
def node1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node1]:
    folder = tmp_path_factory.mktemp("flowlogs")
    with Lab(f"t{os.getpid()}-export") as lab:
        lab.up(traffic=False, agent=False)
        (folder / "flowlogs.yaml").write_text("flowLogs:\n" + ICMP.format(folder=folder))
        args = ["--export-file", str(folder / "all.log"), "--export-allowlist", ALLOW]
        args += ["--flowlogs-config", str(folder / "flowlogs.yaml")]
        (agent,) = lab.start_agents(["node1"], extra_args=args)
        yield Node1(lab, agent, folder)


def test_the_files_hold_the_flows_getflows_gives_for_their_filters(node1: Node1) -> None:
    ping_server(node1.lab)
    curl_web(node1.lab)
    client_tcp = flow_pb2.FlowFilter(protocol=["tcp"], source_pod=["default/client"])
    client_icmp = flow_pb2.FlowFilter(protocol=["icmp"], source_pod=["default/client"])
    wait_for(lambda: len(flows(node1.lab, client_tcp)) >= 3 and len(flows(node1.lab, client_icmp)) >= 2, timeout=15)
    wanted = [f.uuid for f in flows(node1.lab, *CLIENT_FLOWS)]
    icmp = [f.uuid for f in flows(node1.lab, flow_pb2.FlowFilter(protocol=["icmp"]))]
    wait_for(lambda: set(wanted) <= set(node1.uuids("all.log")), timeout=15)
    # the file holds the client's flows, each once, and nothing the allowlist leaves out (late packets of the
    # connection may still come: the two sides are compared until they agree)
    wait_for(lambda: set(node1.uuids("all.log")) == {f.uuid for f in flows(node1.lab, *CLIENT_FLOWS)}, timeout=15)
    all_uuids = node1.uuids("all.log")
    assert len(all_uuids) == len(set(all_uuids))
    wait_for(lambda: len(node1.lines("icmp.log")) >= len(icmp), timeout=15)
    masked = node1.lines("icmp.log")
    assert all(set(line["flow"]) <= {"time", "source", "destination", "l4", "verdict"} for line in masked)  # type: ignore[arg-type]
    assert all(line["node_name"] == "node1" and "time" in line for line in masked)
    l4s = [set(line["flow"]["l4"]) for line in masked]  # type: ignore[index]
    assert all(l4 in ({"ICMPv4"}, {"ICMPv6"}) for l4 in l4s), l4s  # Hubble's "icmp" is both


def test_observe_input_file_reads_the_flow_log_back_with_its_filters(node1: Node1, tmp_path: Path) -> None:
    ping_server(node1.lab)
    icmp = flow_pb2.FlowFilter(protocol=["icmp"], source_pod=["default/client"])
    pings = {f.uuid for f in flows(node1.lab, icmp)}
    wait_for(lambda: pings <= set(node1.uuids("all.log")), timeout=15)
    copy = tmp_path / "all.log"  # the file as it is now: the agent may append the ping's last flows meanwhile
    copy.write_text(whole_text(node1.folder / "all.log"))
    argv = [FLOWSCOPE, "observe", "--input-file", str(copy), "-o", "jsonpb"]
    argv += ["--protocol", "icmp", "--from-pod", "default/client"]
    read = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert read.returncode == 0, read.stderr
    read_uuids = [json.loads(line)["flow"]["uuid"] for line in read.stdout.splitlines()]
    in_copy = {json.loads(line)["flow"]["uuid"] for line in copy.read_text().splitlines() if '"flow"' in line}
    stored = {f.uuid for f in flows(node1.lab, icmp)}  # what the agent itself selects with the same filters
    assert set(read_uuids) == stored & in_copy and len(read_uuids) >= 4


def test_exporters_change_while_the_agent_runs_and_a_bad_file_keeps_them(node1: Node1) -> None:
    node1.configure(ICMP, TCP)  # tcp added
    wait_for(lambda: "flow log tcp started" in node1.log(), timeout=10)
    curl_web(node1.lab)
    wait_for(lambda: len(node1.uuids("tcp.log")) >= 3, timeout=15)
    assert all(line["flow"]["l4"].get("TCP") for line in node1.lines("tcp.log"))  # type: ignore[index]

    node1.configure(TCP)  # icmp removed
    wait_for(lambda: "flow log icmp removed" in node1.log(), timeout=10)
    before = node1.lines("icmp.log")
    ping_server(node1.lab)
    pings = {f.uuid for f in flows(node1.lab, flow_pb2.FlowFilter(protocol=["icmp"], source_pod=["default/client"]))}
    wait_for(lambda: pings <= set(node1.uuids("all.log")), timeout=15)
    assert node1.lines("icmp.log") == before

    node1.config.write_text("flowLogs:\n  - name: tcp\n    filePath: [\n")
    wait_for(lambda: "refused" in node1.log(), timeout=10)
    assert "flowlogs.yaml:4: not YAML" in node1.log()
    count = len(node1.uuids("tcp.log"))
    curl_web(node1.lab)
    wait_for(lambda: len(node1.uuids("tcp.log")) >= count + 3, timeout=15)
    os.kill(node1.agent.pid, 0)  # the agent runs on


def test_a_full_disk_stops_the_exporter_with_one_error_and_the_agent_goes_on(node1: Node1, tmp_path: Path) -> None:
    """Last in this module: it restarts node1's agent exporting to a 16 KiB tmpfs (mounted here, unmounted at
    the end whatever happens), and fills it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], check=True)
    try:
        node1.lab.stop(node1.agent)
        (agent,) = node1.lab.start_agents(["node1"], extra_args=["--export-file", str(disk / "flows.log")])
        log = Path(agent.log)
        ping_server(node1.lab, count=30, interval=0.05)
        wait_for(lambda: "stopped" in log.read_text(errors="replace"), timeout=15)
        ping_server(node1.lab)
        icmp = flow_pb2.FlowFilter(protocol=["icmp"])
        since = polled(lambda: flows(node1.lab, icmp), lambda got: len(got) >= 60, timeout=30)
        assert len(since) >= 60  # the agent serves its flows on
        os.kill(agent.pid, 0)
        stops = [line for line in log.read_text(errors="replace").splitlines() if "exporter static stopped" in line]
        assert len(stops) == 1 and "No space left on device" in stops[0]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
