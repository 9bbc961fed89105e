"""`flowscope status` asked of a relay that writes ClickHouse (`relay --export-clickhouse`): it lists each node's
exporters (here node1's flow log) and then its own writer, with the rows it stored, as the relay's answer to
ServerStatus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conntrack.agent_control import ping_server
from history_server import needs_clickhouse
from waiting import wait_for

from flowscope.lab import Lab

pytestmark = [pytest.mark.bpf, needs_clickhouse]

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    log = tmp_path_factory.mktemp("flowlog") / "flows.log"
    with Lab(f"t{os.getpid()}-hstat") as lab:
        lab.up(traffic=False, agent=False, relay=False, history=True)
        lab.start_agents(extra_args=["--export-file", str(log)])
        lab.start_relay()
        yield lab


def status(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [FLOWSCOPE, "status", "--server", lab.relay_address, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done


def exporters(lab: Lab) -> list[dict[str, str]]:
    return list(json.loads(status(lab, "-o", "json").stdout).get("flowscope_exporters", []))


def test_the_relay_lists_each_nodes_exporters_then_its_own_writer(lab: Lab) -> None:
    ping_server(lab)
    wait_for(lambda: [e.get("name") for e in exporters(lab)] == ["static", "clickhouse"], timeout=15)
    wait_for(lambda: int(exporters(lab)[1].get("rows_stored", "0")) > 0, timeout=30)  # sent within a second or so
    static, writer = exporters(lab)
    assert (static["kind"], static["node_name"]) == ("file", "node1") and int(static["flows_exported"]) > 0
    assert writer["kind"] == "clickhouse" and writer["target"].startswith("http://")
    assert int(writer["flows_exported"]) >= int(writer["rows_stored"])
    lines = [line for line in status(lab).stdout.splitlines() if line.startswith("Exporter ")]
    assert len(lines) == 2
    assert lines[0].startswith("Exporter static on node1 (file ")
    assert lines[1].startswith(f"Exporter clickhouse on {writer['node_name']} (clickhouse http://")
    assert "rows stored" in lines[1]
